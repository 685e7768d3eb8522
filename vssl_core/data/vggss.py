"""VGG-Sound Source (VGG-SS) test annotations: reader, defect report, ground-truth maps.

File format
-----------
``vggss.json`` is a JSON list of ``{"file": str, "class": str, "bbox": [[x1, y1, x2, y2], ...]}``
with box corners normalised to [0, 1] (``x`` across, ``y`` down, origin top-left). The
released test set has 5,158 entries.

Defects of the real file and the policy here
--------------------------------------------
- *Sentinel* coordinates: some boxes hold a huge value (about ``-2.88e16``) in place of a
  coordinate. A box is a sentinel box when any ``|v| > SENTINEL_ABS`` (10).
- *Degenerate* boxes: ``x2 <= x1`` or ``y2 <= y1`` in the raw coordinates (this includes every
  sentinel box of the real file, whose sentinel sits in ``x2`` or ``y2``).
- *Empty maps*: entries whose ground-truth map (the original rule, see below) has no pixel.

Measured on the released file: 12 sentinel boxes (14 sentinel coordinates), 18 degenerate
boxes (the 12 sentinel boxes and 6 zero-width or zero-height ones), 2 entries with an empty map
(``M1P1xla8rg0_000000``: one zero-height box; ``MKC9LvRivTM_000030``: one sentinel box).

Policy: by default (``drop_invalid=False``) the boxes are kept exactly as in the file and the
ground-truth map follows the original rule (:func:`vssl_core.eval.metrics.gt_map_vggss`: each
coordinate ``int(224 * max(v, 0))``), under which sentinel and degenerate boxes paint nothing;
the two empty-map entries therefore score 0/0 with an empty prediction (see the empty-map policy
of :mod:`vssl_core.eval.metrics`). ``drop_invalid=True`` removes sentinel and degenerate boxes from
``boxes`` (for box statistics, see :mod:`vssl_core.eval.box_stats`). For the released file the maps are
the same either way (its sentinels are all negative and sit in ``x2``/``y2``); a positive
sentinel would paint to the border under the original rule and nothing once dropped.
Defects are always counted in :class:`VGGSSDefects`, never hidden.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vssl_core.errors import data_error
from vssl_core.eval.metrics import GRID, gt_map_vggss

#: A coordinate with a larger absolute value is a sentinel, not a position.
SENTINEL_ABS = 10.0


@dataclass(frozen=True, eq=False)
class VGGSSEntry:
    """One annotated VGG-SS test clip.

    Attributes
    ----------
    file : str
        Clip id, e.g. ``"zpWuikVorYg_000032"``.
    label : str
        VGG-Sound class name (the ``"class"`` key of the JSON).
    boxes : np.ndarray, float64, shape (K, 4)
        ``[x1, y1, x2, y2]`` normalised corners, as in the file (or cleaned, see
        ``drop_invalid``).
    """

    file: str
    label: str
    boxes: np.ndarray

    def gt_map(self) -> np.ndarray:
        """Binary (224, 224) float32 ground-truth map (original rule)."""
        return gt_map_vggss(self.boxes)


@dataclass(frozen=True)
class VGGSSDefects:
    """Defects found while reading; each item is ``(entry index, box index)`` or a clip id.

    Attributes
    ----------
    sentinel_boxes : tuple of (int, int)
        Boxes with a coordinate ``|v| > SENTINEL_ABS``.
    degenerate_boxes : tuple of (int, int)
        Boxes with ``x2 <= x1`` or ``y2 <= y1`` (raw coordinates; includes sentinel boxes
        that are degenerate).
    empty_maps : tuple of str
        Clip ids whose ground-truth map is empty.
    dropped_boxes : int
        Boxes removed by ``drop_invalid=True`` (0 otherwise).
    """

    sentinel_boxes: tuple[tuple[int, int], ...]
    degenerate_boxes: tuple[tuple[int, int], ...]
    empty_maps: tuple[str, ...]
    dropped_boxes: int = 0

    def counts(self) -> dict[str, int]:
        """Counts: ``sentinel_boxes``, ``degenerate_boxes``, ``empty_maps``, ``dropped_boxes``."""
        return {"sentinel_boxes": len(self.sentinel_boxes),
                "degenerate_boxes": len(self.degenerate_boxes),
                "empty_maps": len(self.empty_maps), "dropped_boxes": self.dropped_boxes}


@dataclass(frozen=True, eq=False)
class VGGSSAnnotations:
    """All entries of a ``vggss.json`` with the defects found.

    Attributes
    ----------
    path : Path
    entries : tuple of VGGSSEntry
        In file order.
    defects : VGGSSDefects
    drop_invalid : bool
        Whether sentinel/degenerate boxes were removed from ``entries``.
    """

    path: Path
    entries: tuple[VGGSSEntry, ...]
    defects: VGGSSDefects
    drop_invalid: bool = False
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[VGGSSEntry]:
        return iter(self.entries)

    def __getitem__(self, key: int | str) -> VGGSSEntry:
        """Entry by position or by clip id."""
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"{key!r} is not in {self.path}")
            return self.entries[self._index[key]]
        return self.entries[key]

    @property
    def files(self) -> list[str]:
        """Clip ids in file order."""
        return [e.file for e in self.entries]

    def gt_maps(self, keys: Sequence[int | str] | None = None) -> np.ndarray:
        """Stacked ground-truth maps, shape (len(keys), 224, 224), float32 (all entries if None).

        All 5,158 maps take 1 GB; pass ``keys`` for a subset.
        """
        chosen = self.entries if keys is None else [self[k] for k in keys]
        out = np.zeros((len(chosen), GRID, GRID), dtype=np.float32)
        for i, entry in enumerate(chosen):
            out[i] = entry.gt_map()
        return out


def _box_paints(box: np.ndarray) -> bool:
    """Whether the original rule paints at least one pixel for this box (no map built)."""
    x1, y1, x2, y2 = (min(int(GRID * max(v, 0)), GRID) for v in box.tolist())
    return x2 > x1 and y2 > y1


def _parse_boxes(raw: object, path: Path, where: str) -> np.ndarray:
    fix = "each 'bbox' must be a list of [x1, y1, x2, y2] lists of numbers"
    if not isinstance(raw, list):
        raise data_error(path, f"{where}.bbox", f"expected a list, got {type(raw).__name__}", fix)
    try:
        boxes = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise data_error(path, f"{where}.bbox", f"not numeric boxes ({exc})", fix) from exc
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise data_error(path, f"{where}.bbox", f"expected shape (K, 4), got {boxes.shape}", fix)
    if not np.isfinite(boxes).all():
        raise data_error(path, f"{where}.bbox", "NaN or inf coordinate", fix)
    return boxes


def load_vggss(path: str | Path, drop_invalid: bool = False) -> VGGSSAnnotations:
    """Read ``vggss.json`` and report its defects.

    Parameters
    ----------
    path : path
        The JSON file (e.g. ``$VSSL_SHARED_DATA/vggss/vggss.json``).
    drop_invalid : bool
        Remove sentinel and degenerate boxes from the entries (maps unchanged, see the module
        docstring). Default False: keep the file's boxes.

    Returns
    -------
    VGGSSAnnotations

    Raises
    ------
    DataError
        Missing or unreadable file, invalid JSON, an entry without ``file``/``class``/``bbox``,
        malformed boxes, duplicate clip ids.
    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, None, "file not found", "pass the path of vggss.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise data_error(path, None, f"invalid JSON ({exc})",
                         "pass the original vggss.json (a JSON list)") from exc
    if not isinstance(data, list):
        raise data_error(path, None, f"expected a JSON list, got {type(data).__name__}",
                         "pass the original vggss.json (a JSON list of entries)")
    entries: list[VGGSSEntry] = []
    sentinel: list[tuple[int, int]] = []
    degenerate: list[tuple[int, int]] = []
    empty: list[str] = []
    index: dict[str, int] = {}
    dropped = 0
    for i, item in enumerate(data):
        where = f"[{i}]"
        if not isinstance(item, dict):
            raise data_error(path, where, f"expected an object, got {type(item).__name__}",
                             "each entry must be {'file', 'class', 'bbox'}")
        for key in ("file", "class", "bbox"):
            if key not in item:
                raise data_error(path, f"{where}.{key}", "missing key",
                                 "each entry must have 'file', 'class' and 'bbox'")
        file_id = str(item["file"])
        if file_id in index:
            raise data_error(path, f"{where}.file", f"duplicate clip id {file_id!r} (also "
                             f"entry {index[file_id]})", "keep one entry per clip")
        index[file_id] = i
        boxes = _parse_boxes(item["bbox"], path, where)
        bad = np.zeros(len(boxes), dtype=bool)
        for j, box in enumerate(boxes):
            if (np.abs(box) > SENTINEL_ABS).any():
                sentinel.append((i, j))
                bad[j] = True
            if box[2] <= box[0] or box[3] <= box[1]:
                degenerate.append((i, j))
                bad[j] = True
        if not any(_box_paints(b) for b in boxes):
            empty.append(file_id)
        if drop_invalid:
            dropped += int(bad.sum())
            boxes = boxes[~bad]
        boxes.setflags(write=False)
        entries.append(VGGSSEntry(file=file_id, label=str(item["class"]), boxes=boxes))
    defects = VGGSSDefects(tuple(sentinel), tuple(degenerate), tuple(empty), dropped)
    return VGGSSAnnotations(path=path, entries=tuple(entries), defects=defects,
                            drop_invalid=drop_invalid, _index=index)
