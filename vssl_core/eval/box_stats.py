"""Dataset-bias statistics of annotation boxes ("How to Listen" Fig. 2 and Table 2).

Conventions and units
---------------------
Every dataset's boxes are first mapped to **normalised corners** ``[x1, y1, x2, y2]`` in
[0, 1] (``x`` across, ``y`` down, origin at the top-left of the image):

``"urbansas"``
    ``[x, y, w, h]`` top-left corner and size in annotation-frame units (1280 x 720 by
    default, ``frame_size=(W, H)``).
``"vggss"``
    ``[x1, y1, x2, y2]`` already normalised.
``"flickr"``
    ``[xmin, ymin, xmax, ymax]`` in 256 x 256 image units.

Normalised corners are then clipped to the image: a box partly outside the frame is counted by
its visible part. Boxes with no visible area after clipping (degenerate boxes, VGG-SS sentinel
coordinates, boxes wholly outside) are dropped by :func:`box_table` and counted in
``df.attrs["dropped_boxes"]``.

- Areas are percentages of the image area (so they do not depend on the image's pixel size).
- Centres on the evaluation grid are in grid pixels, ``[0, 224]`` (``cx = 224 * (x1 + x2) / 2``).
- A frame without any (kept) box stays in the table as one row with ``box = -1`` and NaN
  coordinates, so it still counts as a frame with 0 boxes.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from vssl_core.errors import data_error
from vssl_core.eval.metrics import GRID, as_boxes, gt_map_vggss

Convention = Literal["urbansas", "vggss", "flickr"]
_CONVENTIONS = ("urbansas", "vggss", "flickr")
#: Default frame of Urbansas annotations (width, height).
URBANSAS_ANNOTATION_FRAME = (1280, 720)
#: Side of the Flickr-SoundNet annotation image.
FLICKR_IMAGE_SIZE = 256
BOX_COLUMNS = ["dataset", "sample_id", "box", "x1", "y1", "x2", "y2", "area_pct", "cx", "cy"]


def to_normalised_xyxy(boxes: np.ndarray, convention: Convention,
                       frame_size: tuple[float, float] | None = None) -> np.ndarray:
    """Map boxes of a dataset convention to normalised corners, clipped to [0, 1].

    Parameters
    ----------
    boxes : np.ndarray, shape (K, 4)
        Boxes in the dataset's convention (module docstring).
    convention : {"urbansas", "vggss", "flickr"}
    frame_size : (float, float), optional
        ``(W, H)`` of the Urbansas annotation frame (default 1280 x 720); ignored otherwise.

    Returns
    -------
    np.ndarray, float64, shape (K, 4)
        ``[x1, y1, x2, y2]`` in [0, 1].
    """
    if convention not in _CONVENTIONS:
        raise data_error(None, "convention", f"unknown convention {convention!r}",
                         f"choose one of {list(_CONVENTIONS)}")
    b = as_boxes(boxes, allow_nan=True)
    if convention == "urbansas":
        w, h = frame_size or URBANSAS_ANNOTATION_FRAME
        out = np.stack([b[:, 0] / w, b[:, 1] / h, (b[:, 0] + b[:, 2]) / w,
                        (b[:, 1] + b[:, 3]) / h], axis=1)
    elif convention == "flickr":
        out = b / FLICKR_IMAGE_SIZE
    else:
        out = b.copy()
    return np.clip(out, 0.0, 1.0)


def box_area_percent(boxes_xyxy: np.ndarray,
                     image_size: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Area of each box as a percentage of the image area (visible part only).

    Parameters
    ----------
    boxes_xyxy : np.ndarray, shape (K, 4)
        Corners ``[x1, y1, x2, y2]`` in image units (normalised: ``image_size=(1, 1)``).
    image_size : (float, float)
        ``(W, H)`` of the image in the same units.

    Returns
    -------
    np.ndarray, float64, shape (K,)
        ``100 * w * h / (W * H)`` after clipping to the image; 0 for degenerate boxes.
    """
    w_img, h_img = (float(v) for v in image_size)
    b = as_boxes(boxes_xyxy, "boxes_xyxy", allow_nan=True)
    x1, x2 = np.clip(b[:, 0], 0, w_img), np.clip(b[:, 2], 0, w_img)
    y1, y2 = np.clip(b[:, 1], 0, h_img), np.clip(b[:, 3], 0, h_img)
    return 100.0 * np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0) / (w_img * h_img)


def box_centres_grid(boxes_xyxy: np.ndarray,
                     image_size: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Box centres on the 224 x 224 evaluation grid.

    Parameters
    ----------
    boxes_xyxy : np.ndarray, shape (K, 4)
        Corners in image units of an image of ``image_size = (W, H)``.

    Returns
    -------
    np.ndarray, float64, shape (K, 2)
        ``(cx, cy)`` in grid pixels, ``cx = 224 * (x1 + x2) / (2 W)``.
    """
    w_img, h_img = (float(v) for v in image_size)
    b = as_boxes(boxes_xyxy, "boxes_xyxy", allow_nan=True)
    return np.stack([GRID * (b[:, 0] + b[:, 2]) / (2 * w_img),
                     GRID * (b[:, 1] + b[:, 3]) / (2 * h_img)], axis=1)


def centre_histogram(centres: np.ndarray, bins: int = 28,
                     density: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """2-D histogram of box centres on the grid (for a Fig. 2-style heatmap).

    Parameters
    ----------
    centres : np.ndarray, shape (K, 2)
        ``(cx, cy)`` in grid pixels (:func:`box_centres_grid`); NaN rows are ignored.
    bins : int
        Bins per axis over ``[0, 224]``.
    density : bool
        Divide the counts by their sum (a distribution) instead of raw counts.

    Returns
    -------
    hist : np.ndarray, shape (bins, bins)
        ``hist[row, col]`` counts centres with ``cy`` in row bin and ``cx`` in column bin
        (image orientation: row 0 at the top).
    edges : np.ndarray, shape (bins + 1,)
        Bin edges in grid pixels (the same for both axes).
    """
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    c = c[~np.isnan(c).any(axis=1)]
    edges = np.linspace(0.0, GRID, bins + 1)
    hist, _, _ = np.histogram2d(c[:, 1], c[:, 0], bins=[edges, edges])
    if density and hist.sum() > 0:
        hist = hist / hist.sum()
    return hist, edges


def box_table(samples: Iterable[tuple[str, np.ndarray]], convention: Convention,
              dataset: str | None = None, frame_size: tuple[float, float] | None = None,
              drop_degenerate: bool = True) -> pd.DataFrame:
    """One row per box, every dataset in normalised corners.

    Parameters
    ----------
    samples : iterable of (sample_id, boxes)
        ``boxes`` of shape (K, 4) in ``convention`` units; ``K`` may be 0. One item per
        annotated frame.
    convention : {"urbansas", "vggss", "flickr"}
    dataset : str, optional
        Value of the ``dataset`` column (default: the convention name).
    frame_size : (float, float), optional
        Urbansas annotation frame (default 1280 x 720).
    drop_degenerate : bool
        Drop boxes with no visible area after clipping (counted in
        ``df.attrs["dropped_boxes"]``).

    Returns
    -------
    pd.DataFrame
        Columns ``dataset, sample_id, box, x1, y1, x2, y2, area_pct, cx, cy`` (corners and
        centres normalised to [0, 1], area in percent). A frame without boxes keeps one row
        with ``box = -1`` and NaN values.
    """
    name = dataset or convention
    rows: list[tuple] = []
    dropped = 0
    for sample_id, boxes in samples:
        norm = to_normalised_xyxy(boxes, convention, frame_size)
        area = box_area_percent(norm)
        if drop_degenerate:
            keep = area > 0
            dropped += int((~keep).sum())
            norm, area = norm[keep], area[keep]
        if len(norm) == 0:
            rows.append((name, str(sample_id), -1) + (np.nan,) * 7)
            continue
        for j, (box, a) in enumerate(zip(norm.tolist(), area.tolist())):
            x1, y1, x2, y2 = box
            rows.append((name, str(sample_id), j, x1, y1, x2, y2, a,
                         (x1 + x2) / 2, (y1 + y2) / 2))
    df = pd.DataFrame(rows, columns=BOX_COLUMNS)
    df["box"] = df["box"].astype(np.int64)
    df.attrs["dropped_boxes"] = dropped
    return df


def boxes_per_frame(df: pd.DataFrame) -> pd.Series:
    """Number of boxes of each frame (``sample_id``), 0 for frames without boxes."""
    return df.groupby(["dataset", "sample_id"], sort=False)["x1"].count().rename("n_boxes")


def table2_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per-dataset summary in the spirit of "How to Listen" Table 2.

    Parameters
    ----------
    df : pd.DataFrame
        From :func:`box_table` (one or several datasets concatenated).

    Returns
    -------
    pd.DataFrame
        Indexed by ``dataset``; columns ``frames``, ``boxes``, ``min_boxes``, ``max_boxes``,
        ``pct_single_box`` (percent of frames with exactly one box), ``mean_area_pct`` and
        ``median_area_pct`` (percent of the image area, over boxes).
    """
    counts = boxes_per_frame(df)
    out = []
    for name, per_frame in counts.groupby(level="dataset", sort=False):
        areas = df.loc[df["dataset"] == name, "area_pct"].dropna()
        out.append({
            "dataset": name, "frames": int(per_frame.size), "boxes": int(per_frame.sum()),
            "min_boxes": int(per_frame.min()), "max_boxes": int(per_frame.max()),
            "pct_single_box": float(100.0 * (per_frame == 1).mean()),
            "mean_area_pct": float(areas.mean()) if len(areas) else float("nan"),
            "median_area_pct": float(areas.median()) if len(areas) else float("nan"),
        })
    return pd.DataFrame(out).set_index("dataset")


def centred_box_map(area_fraction: float = 0.5) -> np.ndarray:
    """The naive baseline's map: one centred box covering ``area_fraction`` of the image.

    The box has the image's aspect ratio (side fractions ``sqrt(area_fraction)`` of the width
    and of the height), so on the normalised 224 x 224 grid it is a centred square. Its corners
    ``(1 -+ s) / 2`` go through the VGG-SS integer rule ``int(224 * v)``, e.g. 0.5 gives rows and
    columns 32..190 (159 px, 50.4 % of the grid).

    Returns
    -------
    np.ndarray, float32, shape (224, 224)
        Binary map, usable as a heatmap or as a GT-style map.
    """
    if not 0.0 < area_fraction <= 1.0:
        raise data_error(None, "area_fraction", f"must lie in (0, 1], got {area_fraction}",
                         "pass e.g. 0.5")
    s = float(np.sqrt(area_fraction))
    lo, hi = (1.0 - s) / 2.0, (1.0 + s) / 2.0
    return gt_map_vggss(np.array([[lo, lo, hi, hi]]))


def quadrant_boxes_map(area_fraction: float = 1 / 8) -> np.ndarray:
    """Music Synthesis baseline: four boxes, each centred in an image quadrant and covering
    ``area_fraction`` of the image (same aspect ratio as the image). Shape (224, 224), float32."""
    if not 0.0 < area_fraction <= 0.25:
        raise data_error(None, "area_fraction", f"must lie in (0, 0.25], got {area_fraction}",
                         "pass e.g. 1/8")
    s = float(np.sqrt(area_fraction))
    boxes = [[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]
             for cy in (0.25, 0.75) for cx in (0.25, 0.75)]
    return gt_map_vggss(np.array(boxes))
