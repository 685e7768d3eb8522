"""Non-learned references: flow only, the centred box, and the vision-only+CF+TF topline.

Every map function returns a :class:`~vssl_core.models.rcgrad_maps.LocalizationMaps` (224x224 maps and
the ``postprocess`` the metric must use; see :mod:`vssl_core.models.rcgrad_maps`):

======================  =======================================  ===========  =========
method                  map                                      postprocess  threshold
======================  =======================================  ===========  =========
flow only               raw flow magnitude, px/frame             "none"       0.5 px/frame
centred box             binary box covering 50% of the image     "none"       0.5
topline (CF + TF)       union of kept detector boxes, binary     "none"       0.5
======================  =======================================  ===========  =========

Topline (FlowGrad paper section 3; docs/conventions.md, "FlowGrad models")
-----------------------------------------------
A :class:`Detector` gives boxes per (clip, time). Class filter (CF): keep car, bus, truck and
motorbike (COCO's "motorcycle" is mapped to "motorbike"). Temporal filter (TF): a box at time
``t`` is dropped when its IoU with some (class-filtered) box at ``t + 0.5 s`` is ``> 0.95``
(a stationary object). At the last frame of a clip (``t + 0.5 > clip_end``) there is no later
frame: the box is compared with the frame ``0.5 s`` EARLIER instead, so a parked car is also
removed at the end of a clip. ``symmetric=True`` follows the paper's wording instead ("both
boxes are discarded"): a box is dropped when it matches a box at ``t - 0.5`` or ``t + 0.5``.

Detectors
---------
:class:`OracleDetector` reads the synthetic generator's ``annotations/objects.csv`` and sees
every object whose ``visible_fraction >= 0.5``, sounding or not (parked cars, idling cars,
pedestrians, ...): what a perfect detector would see. :class:`TorchvisionDetector` wraps
torchvision's Faster R-CNN (ResNet-50 FPN) with a user-supplied COCO state dict; it never
downloads anything.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from vssl_core.data.urbansas import URBANSAS_FRAME
from vssl_core.errors import data_error
from vssl_core.eval.maps import LocalizationMaps, flow_to_grid
from vssl_core.eval.metrics import GRID, gt_map_urbansas, resize_to_grid

__all__ = [
    "VEHICLE_CLASSES", "COCO_VEHICLES", "FLOW_THRESHOLD", "Detection", "Detector", "OracleDetector",
    "TorchvisionDetector", "flow_only_map", "flow_only_maps", "centred_box", "centred_box_maps", "random_maps", "box_iou", "class_filter",
    "temporal_filter", "topline_boxes", "topline_maps", "build_fasterrcnn",
]

VEHICLE_CLASSES = ("car", "bus", "truck", "motorbike")
COCO_VEHICLES = {3: "car", 4: "motorbike", 6: "bus", 8: "truck"}  # COCO category id -> label
FLOW_THRESHOLD = 0.5  # px/frame: the flow-only baseline's threshold (docs/conventions.md, "Map post-processing")
TF_DT = 0.5  # s: temporal-filter frame gap
TF_IOU = 0.95


# -- simple maps ----------------------------------------------------------------------------------
def flow_only_map(flow_mag: np.ndarray) -> LocalizationMaps:
    """Flow-only baseline on plain arrays: the raw magnitude ``(N, H, W)`` px/step on the 224
    grid, ``postprocess="none"`` (the metric's 0.5 threshold keeps pixels moving at >= 0.5 px
    per step; no min-max)."""
    return LocalizationMaps(flow_to_grid(flow_mag), "none", "flow_only")


def flow_only_maps(ev) -> LocalizationMaps:
    """Flow-only baseline of the pairs ``ev`` (an ``EvalArrays``): :func:`flow_only_map` of its flow."""
    return flow_only_map(ev.flow)


def centred_box(n: int, area_fraction: float = 0.5) -> LocalizationMaps:
    """The naive centred box ("How to Listen": 50% of the image) for ``n`` samples, "none".

    Delegates to :func:`vssl_core.eval.box_stats.centred_box_map` (one implementation).
    """
    from vssl_core.eval.box_stats import centred_box_map

    box = np.asarray(centred_box_map(area_fraction), dtype=np.float32)
    return LocalizationMaps(np.broadcast_to(box, (n, GRID, GRID)).copy(), "none", "centred_box")


def centred_box_maps(ev) -> LocalizationMaps:
    """The centred box for every pair of ``ev``: it ignores what is seen and heard."""
    return centred_box(len(ev))


def random_maps(n: int, map_size: int, seed: int = 0, rows: slice | None = None) -> LocalizationMaps:
    """The floor: uniform noise on a ``map_size x map_size`` grid, resized to 224 ("clean").

    ``rows`` keeps only those samples of the ``n`` drawn (the same values as drawing all)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((n, map_size, map_size), dtype=np.float32)
    if rows is not None:
        noise = noise[rows]
    return LocalizationMaps(resize_to_grid(noise).astype(np.float32), "clean", "random")


# -- detections -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes
    ----------
    box : tuple of 4 float
        ``(x, y, w, h)``, top-left corner, in 1280x720 annotation-frame units.
    label : str
        "car", "bus", "truck", "motorbike", or any other class name (e.g. "pedestrian").
    score : float
        Confidence in [0, 1] (1 for the oracle).
    """

    box: tuple[float, float, float, float]
    label: str
    score: float = 1.0


@runtime_checkable
class Detector(Protocol):
    """Anything that lists the objects of a clip's frame at a time (seconds)."""

    def detect(self, clip: str, time: float) -> list[Detection]: ...


class OracleDetector:
    """A perfect detector read from the synthetic ``objects.csv`` table.

    Parameters
    ----------
    objects : pandas.DataFrame
        Columns ``filename, time, label, x, y, w, h, visible_fraction`` (others are ignored);
        boxes in 1280x720 units, ``time`` in seconds.
    min_visible : float
        Objects with ``visible_fraction >= min_visible`` are seen (default 0.5).
    """

    REQUIRED = ("filename", "time", "label", "x", "y", "w", "h", "visible_fraction")

    def __init__(self, objects, min_visible: float = 0.5, source: str | Path | None = None) -> None:
        missing = [c for c in self.REQUIRED if c not in objects.columns]
        if missing:
            raise data_error(source, missing[0], "column missing from the objects table",
                             f"give a table with columns {', '.join(self.REQUIRED)}")
        seen = objects[objects["visible_fraction"] >= min_visible]
        self._by_key: dict[tuple[str, int], list[Detection]] = {}
        for row in seen.itertuples(index=False):
            key = (str(row.filename), _ms(row.time))
            self._by_key.setdefault(key, []).append(
                Detection((float(row.x), float(row.y), float(row.w), float(row.h)), str(row.label), 1.0))

    def detect(self, clip: str, time: float) -> list[Detection]:
        return list(self._by_key.get((clip, _ms(time)), []))


def _ms(t: float) -> int:
    """Time key in whole milliseconds (robust to float noise in 0.5-s steps)."""
    return int(round(float(t) * 1000))


# -- filters --------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xywh boxes ``a (K, 4)`` and ``b (M, 4)`` -> ``(K, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def class_filter(dets: Sequence[Detection], classes: Sequence[str] = VEHICLE_CLASSES) -> list[Detection]:
    """Keep detections whose label is one of ``classes`` (CF)."""
    keep = set(classes)
    return [d for d in dets if d.label in keep]


def temporal_filter(dets: Sequence[Detection], other: Sequence[Detection],
                    iou: float = TF_IOU) -> list[Detection]:
    """Drop detections with IoU ``> iou`` with any box of ``other`` (another frame) (TF)."""
    if not dets or not other:
        return list(dets)
    m = box_iou(np.array([d.box for d in dets]), np.array([d.box for d in other]))
    return [d for d, row in zip(dets, m) if not (row > iou).any()]


def topline_boxes(detector: Detector, clip: str, time: float, clip_end: float, *,
                  dt: float = TF_DT, iou: float = TF_IOU, symmetric: bool = False) -> list[Detection]:
    """Class- and temporally-filtered detections of one frame.

    Parameters
    ----------
    detector : Detector
    clip : str
    time : float
        Frame time in seconds.
    clip_end : float
        Time of the clip's last frame (s): when ``time + dt > clip_end`` there is no later
        frame and the frame ``time - dt`` is used instead.
    dt, iou : float
        Frame gap (0.5 s) and IoU cut-off (0.95, strict ``>``).
    symmetric : bool
        Compare with both neighbours (the paper's "both boxes are discarded").
    """
    eps = 1e-6
    dets = class_filter(detector.detect(clip, time))
    has_later = time + dt <= clip_end + eps
    neighbours = [time + dt] if has_later else [time - dt]
    if symmetric:
        neighbours = [t for t in (time - dt, time + dt) if -eps <= t <= clip_end + eps]
    for t in neighbours:
        if t < -eps:
            continue
        dets = temporal_filter(dets, class_filter(detector.detect(clip, t)), iou)
    return dets


def topline_maps(detector: Detector, clips: Sequence[str], times: Sequence[float],
                 clip_ends: Sequence[float] | float, *, frame_size: tuple[float, float] = URBANSAS_FRAME,
                 symmetric: bool = False) -> LocalizationMaps:
    """Vision-only+CF+TF topline: union of kept boxes rasterised on the 224 grid, binary.

    Boxes are rasterised exactly like Urbansas ground truth (:func:`vssl_core.eval.metrics.gt_map_urbansas`,
    integer truncation). ``clip_ends``: per-sample time (s) of the clip's last frame, or one value.
    Returns ``postprocess="none"``.
    """
    ends = np.broadcast_to(np.asarray(clip_ends, dtype=np.float64), (len(clips),))
    if len(times) != len(clips):
        raise ValueError(f"{len(clips)} clips but {len(times)} times")
    maps = np.zeros((len(clips), GRID, GRID), dtype=np.float32)
    for i, (clip, t, end) in enumerate(zip(clips, times, ends)):
        kept = topline_boxes(detector, clip, float(t), float(end), symmetric=symmetric)
        if kept:
            maps[i] = gt_map_urbansas(np.array([d.box for d in kept]), frame_size)
    return LocalizationMaps(maps, "none", "topline")


# -- torchvision Faster R-CNN ---------------------------------------------------------------------
def build_fasterrcnn(min_size: int = 800, max_size: int = 1333):
    """Faster R-CNN ResNet-50 FPN with random weights (``weights=None, weights_backbone=None``),
    91 COCO classes; nothing is downloaded."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                   min_size=min_size, max_size=max_size).eval()


class TorchvisionDetector:
    """COCO Faster R-CNN behind the :class:`Detector` interface.

    Parameters
    ----------
    weights_path : path
        A torchvision ``fasterrcnn_resnet50_fpn`` COCO state dict supplied by the user.
    frame_reader : callable(clip, time) -> ndarray uint8 (H, W, 3)
        Returns the RGB frame of ``clip`` at ``time`` seconds.
    score_threshold : float
        Detections below this score are dropped.
    device : str
    """

    def __init__(self, weights_path: str | os.PathLike, frame_reader: Callable[[str, float], np.ndarray],
                 score_threshold: float = 0.5, device: str = "cpu") -> None:
        from vssl_core.models.checkpoints import load_checkpoint

        path = Path(weights_path)
        if not path.is_file():
            raise data_error(path, "weights_path", "the Faster R-CNN weights file does not exist",
                             "download torchvision's fasterrcnn_resnet50_fpn COCO weights yourself "
                             "and pass the .pth path (nothing is downloaded automatically)")
        model = build_fasterrcnn()
        state = load_checkpoint(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise data_error(path, "state_dict", f"does not fit fasterrcnn_resnet50_fpn ({exc})",
                             "give the COCO fasterrcnn_resnet50_fpn state dict") from exc
        self._init(model, frame_reader, score_threshold, device)

    @classmethod
    def from_model(cls, model, frame_reader: Callable[[str, float], np.ndarray],
                   score_threshold: float = 0.5, device: str = "cpu") -> TorchvisionDetector:
        """Wrap an already built detection model (e.g. :func:`build_fasterrcnn` for tests)."""
        self = cls.__new__(cls)
        self._init(model, frame_reader, score_threshold, device)
        return self

    def _init(self, model, frame_reader, score_threshold: float, device: str) -> None:
        self.model = model.eval().to(device)
        self.frame_reader = frame_reader
        self.score_threshold = score_threshold
        self.device = device

    def detect(self, clip: str, time: float) -> list[Detection]:
        import torch

        frame = np.asarray(self.frame_reader(clip, time))
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame_reader must return uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        x = torch.from_numpy(frame).permute(2, 0, 1).float().div(255.0).to(self.device)
        with torch.no_grad():
            out = self.model([x])[0]
        sx, sy = URBANSAS_FRAME[0] / w, URBANSAS_FRAME[1] / h
        dets = []
        for (x1, y1, x2, y2), label, score in zip(out["boxes"].tolist(), out["labels"].tolist(),
                                                  out["scores"].tolist()):
            if score < self.score_threshold:
                continue
            name = COCO_VEHICLES.get(int(label), f"coco:{int(label)}")
            dets.append(Detection((x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy), name, float(score)))
        return dets
