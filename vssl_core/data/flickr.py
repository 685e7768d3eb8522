"""Flickr-SoundNet test annotations: XML box reader, test id lists, consensus ground-truth maps.

Assumed XML layout
------------------
The box files are not public; docs/conventions.md ("Ground-truth maps") states only what the original evaluation
reads: every ``<bbox>`` element holds, after one first child that is skipped, the four
children ``xmin, ymin, xmax, ymax`` (in this order) with integer pixel coordinates of the
256 x 256 image; there are up to 3 annotators per image. This reader therefore assumes one file
``<id>.xml`` per image of the form::

    <annotation>
      <filename>2432219254.png</filename>
      <object>
        <bbox>
          <annotator>1</annotator>      <!-- the skipped first child -->
          <xmin>40</xmin> <ymin>60</ymin> <xmax>180</xmax> <ymax>220</ymax>
        </bbox>
      </object>
      <object> ... one <bbox> per annotator ... </object>
    </annotation>

and reads it by position like the original: every ``<bbox>`` anywhere in the tree, first
child skipped (its text is kept as ``first_child`` for information only), the next four read as
numbers. The tags of those four are not checked, only their number and that they parse as
numbers; other elements are ignored. Coordinates are kept as floats in 256 units; the map uses
``int(224 * v / 256)`` per coordinate (:func:`vssl_core.eval.metrics.gt_map_flickr`).

Test id lists
-------------
``test_list.txt`` (250 ids) holds one image name ``<id>.png`` per line;
:func:`read_test_ids` returns the ids without folder and extension, so
``supervised_test_list.txt`` (280 paths ``.../<id>.mp4``, 250 distinct ids) and
``flickr_test.csv`` (``<id>,<n>`` rows, first column) read too. Measured on the shared copies:
``supervised_test_list.txt`` is *not* a superset of ``test_list.txt`` (it has ``3908875350``
where ``test_list.txt`` has ``3908875357``) and ``flickr_test.csv`` holds the 249 ids of
``test_list.txt`` other than ``3908875357``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from vssl_core.errors import data_error
from vssl_core.eval.metrics import GRID, gt_map_flickr

#: Side of the annotated image (box units).
IMAGE_SIZE = 256
#: Annotators per image in the release (more boxes are read but reported by ``n_boxes``).
MAX_ANNOTATORS = 3


@dataclass(frozen=True, eq=False)
class FlickrAnnotation:
    """Boxes of one Flickr-SoundNet test image.

    Attributes
    ----------
    id : str
        Image id (file stem), e.g. ``"2432219254"``.
    boxes : np.ndarray, float64, shape (K, 4)
        ``[xmin, ymin, xmax, ymax]`` in 256 x 256 image units, one row per ``<bbox>``.
    first_child : tuple of str
        Text of the skipped first child of each ``<bbox>`` (the annotator in the assumed
        layout); not used by the map.
    path : Path
        The XML file.
    """

    id: str
    boxes: np.ndarray
    first_child: tuple[str, ...]
    path: Path

    @property
    def n_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def gt_map(self) -> np.ndarray:
        """Consensus (224, 224) float32 map: boxes summed, divided by 2, clipped at 1."""
        return gt_map_flickr(self.boxes, image_size=IMAGE_SIZE)


def read_flickr_xml(path: str | Path) -> FlickrAnnotation:
    """Read one annotation XML (layout in the module docstring).

    Parameters
    ----------
    path : path
        ``<id>.xml``.

    Returns
    -------
    FlickrAnnotation

    Raises
    ------
    DataError
        Missing file, invalid XML, a ``<bbox>`` with fewer than 5 children or a coordinate
        that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, None, "annotation file not found",
                         "pass the folder holding one <id>.xml per test image")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise data_error(path, None, f"invalid XML ({exc})",
                         "each file must be an <annotation> XML document") from exc
    rows: list[list[float]] = []
    first: list[str] = []
    for k, bbox in enumerate(root.iter("bbox")):
        children = list(bbox)
        if len(children) < 5:
            raise data_error(path, f"bbox[{k}]", f"{len(children)} children, expected 5 "
                             "(one skipped, then xmin, ymin, xmax, ymax)",
                             "follow the layout in vssl_core/data/flickr.py")
        coords = []
        for child in children[1:5]:
            try:
                coords.append(float((child.text or "").strip()))
            except ValueError as exc:
                raise data_error(path, f"bbox[{k}].{child.tag}",
                                 f"not a number: {child.text!r}",
                                 "write pixel coordinates of the 256x256 image") from exc
        rows.append(coords)
        first.append((children[0].text or "").strip())
    boxes = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    boxes.setflags(write=False)
    return FlickrAnnotation(id=path.stem, boxes=boxes, first_child=tuple(first), path=path)


def read_test_ids(path: str | Path, on_duplicate: Literal["error", "drop"] = "error"
                  ) -> list[str]:
    """Image ids of a test list, in file order.

    One name per line: ``<id>.png`` (``test_list.txt``), a path such as
    ``/hdd/.../<id>.mp4`` (``supervised_test_list.txt``) or a csv row ``<id>,<n>``
    (``flickr_test.csv``, first column). Blank lines are ignored.

    Parameters
    ----------
    path : path
    on_duplicate : {"error", "drop"}
        What to do with an id listed again: raise (default; a duplicate would be scored twice),
        or keep its first occurrence only. (``supervised_test_list.txt`` lists 30 of its 250
        ids twice.)

    Raises
    ------
    DataError
        Missing file, or a duplicate id with ``on_duplicate="error"``.
    """
    if on_duplicate not in ("error", "drop"):
        raise data_error(None, "on_duplicate", f"unknown value {on_duplicate!r}",
                         "choose 'error' or 'drop'")
    path = Path(path)
    if not path.is_file():
        raise data_error(path, None, "test id list not found",
                         "pass e.g. flickr_soundnet/test_list.txt")
    ids: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        stem = PurePosixPath(name.split(",")[0]).stem
        if stem in seen:
            if on_duplicate == "drop":
                continue
            raise data_error(path, f"line {lineno}", f"duplicate id {stem!r}",
                             "list each test image once, or pass on_duplicate='drop'")
        seen.add(stem)
        ids.append(stem)
    return ids


def load_flickr(xml_dir: str | Path, ids: Sequence[str] | str | Path | None = None
                ) -> list[FlickrAnnotation]:
    """Read the annotations of a test set.

    Parameters
    ----------
    xml_dir : path
        Folder with one ``<id>.xml`` per image.
    ids : sequence of str, or path of an id list, or None
        The test ids in the wanted order (e.g. ``test_list.txt``); None reads every ``*.xml``
        in the folder, sorted by name.

    Returns
    -------
    list of FlickrAnnotation
        In the order of ``ids``.

    Raises
    ------
    DataError
        Missing folder, or an id without its XML file (named in the message).
    """
    xml_dir = Path(xml_dir)
    if not xml_dir.is_dir():
        raise data_error(xml_dir, None, "annotation folder not found",
                         "pass the folder holding one <id>.xml per test image")
    if ids is None:
        paths = sorted(xml_dir.glob("*.xml"))
    else:
        id_list = read_test_ids(ids) if isinstance(ids, (str, Path)) else list(ids)
        paths = [xml_dir / f"{i}.xml" for i in id_list]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise data_error(xml_dir, "ids", f"{len(missing)} annotation files missing, e.g. "
                             f"{missing[:5]}", "put <id>.xml for every listed id in the folder")
    return [read_flickr_xml(p) for p in paths]


def gt_maps(annotations: Sequence[FlickrAnnotation]) -> np.ndarray:
    """Stacked consensus maps, shape (N, 224, 224), float32, values in {0, 0.5, 1}."""
    out = np.zeros((len(annotations), GRID, GRID), dtype=np.float32)
    for i, ann in enumerate(annotations):
        out[i] = ann.gt_map()
    return out
