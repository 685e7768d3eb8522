"""Maps ready for the metric: the container every map function returns, and grid helpers.

Every map function of the companion has one signature::

    maps(model, ev) -> LocalizationMaps        # ev: vssl_core.data.arrays.EvalArrays

(baselines need no model: ``maps(ev)``). A :class:`LocalizationMaps` holds ``(N, 224, 224)``
maps on the metric's grid plus the name of the ``postprocess`` that
:func:`vssl_core.eval.metrics.postprocess` must apply before the 0.5 threshold. Pass
``result.postprocess`` on; never choose it by hand.

============================  ===========================================  ===========
method                        maps returned                                postprocess
============================  ===========================================  ===========
RCGrad, FlowGrad-IC           CAM resized to 224 + min-max                  "clean"
FlowGrad-EN                   image CAM grid x flow CAM grid                "clean"
FlowGrad-H                    clean(RCGrad grid) x raw flow magnitude       "none"
flow only, centred box        raw flow magnitude (px/step), binary box      "none"
LVS, Hear The Flow            cosine map resized to 224 + min-max           "median"
Oya et al.                    softmax maps resized to 224                   "clean"
============================  ===========================================  ===========

FlowGrad-H and the flow-only maps are NOT renormalised: thresholding them at 0.5 keeps pixels
moving at >= 0.5 px per step (weighted by the clean RCGrad map for FlowGrad-H). See
``docs/conventions.md`` for why each family uses its rule.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vssl_core.eval.metrics import GRID, postprocess, resize_to_grid

__all__ = ["GRID", "POSTPROCESS", "LocalizationMaps", "MapFunction", "GridRows", "to_grid", "flow_to_grid", "clean",
           "minmax"]

#: The metric's ``postprocess`` for each method's maps (see the table above).
POSTPROCESS = {"rcgrad": "clean", "flowgrad_ic": "clean", "flowgrad_en": "clean",
               "flowgrad_h": "none", "flow_only": "none", "topline": "none", "centred_box": "none",
               "lvs": "median", "htf": "median", "oya": "clean"}


@dataclass(frozen=True)
class LocalizationMaps:
    """Maps ready for the metric, with the post-processing the metric must apply.

    Attributes
    ----------
    maps : ndarray float32, shape (N, 224, 224)
    postprocess : {"clean", "median", "none"}
        The ``postprocess`` argument for :func:`vssl_core.eval.metrics.postprocess`.
    method : str
        Short method name ("rcgrad", "flowgrad_h", ...).
    """

    maps: np.ndarray
    postprocess: str
    method: str

    def __post_init__(self) -> None:
        if self.maps.ndim != 3 or self.maps.shape[1:] != (GRID, GRID):
            raise ValueError(f"maps must be (N, {GRID}, {GRID}), got {self.maps.shape}")
        if self.postprocess not in ("clean", "median", "none"):
            raise ValueError(f"postprocess must be 'clean', 'median' or 'none', got {self.postprocess!r}")

    def relabel(self, postprocess: str) -> LocalizationMaps:
        """The same maps (no copy) scored with another post-processing rule."""
        return LocalizationMaps(self.maps, postprocess, self.method)


#: A loaded method: ``EvalArrays -> LocalizationMaps`` (a model's map function with its model bound).
MapFunction = Callable[[Any], LocalizationMaps]


def minmax(x: np.ndarray) -> np.ndarray:
    """Per-map min-max of (N, h, w) to [0, 1]; a constant map is left as it is."""
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    safe = np.where(span > 0, span, np.ones_like(span))
    return np.where(span > 0, (x - lo) / safe, x).astype(x.dtype, copy=False)


def to_grid(maps: np.ndarray, resize: str = "bilinear") -> np.ndarray:
    """Raw maps ``(N, h, w)`` -> ``(N, 224, 224)`` float32, resized then min-max per map (a
    constant map is left unchanged).

    ``resize="bilinear"``: :func:`vssl_core.eval.metrics.resize_to_grid` (half-pixel centres, as
    cv2; RCGrad, FlowGrad, LVS). ``"bicubic"``: ``cv2.resize(..., INTER_CUBIC)`` per map, as
    Hear The Flow's released evaluation resizes its maps (the cubic kernel may overshoot the
    input's range; the min-max after it brings the map back to [0, 1]).
    """
    x = np.asarray(maps, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {x.shape}")
    if resize == "bilinear":
        return minmax(resize_to_grid(x))
    if resize != "bicubic":
        raise ValueError(f"resize must be 'bilinear' or 'bicubic', got {resize!r}")
    import cv2

    grid = np.stack([cv2.resize(m, (GRID, GRID), interpolation=cv2.INTER_CUBIC) for m in x]) if len(x) \
        else np.zeros((0, GRID, GRID), np.float32)
    return minmax(grid.astype(np.float32, copy=False))


def flow_to_grid(flow_mag: np.ndarray) -> np.ndarray:
    """Flow magnitude ``(N, H, W)`` px/step -> ``(N, 224, 224)`` float32 with
    :func:`vssl_core.eval.metrics.resize_to_grid`; values are NOT rescaled (still px/step)."""
    x = np.asarray(flow_mag, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"flow_mag must be (N, H, W), got shape {x.shape}")
    return resize_to_grid(x)


def clean(maps: np.ndarray) -> np.ndarray:
    """The RCGrad "clean" post-processing of (N, 224, 224) maps: exactly
    ``vssl_core.eval.metrics.postprocess(maps, "clean")`` (one implementation), float32."""
    return postprocess(np.asarray(maps, dtype=np.float32), "clean")


class GridRows:
    """Heatmaps ``(N, H, W)`` of another size seen as ``(N, 224, 224)``: each block of rows is
    resized with :func:`~vssl_core.eval.metrics.resize_to_grid` as it is read, so the metric
    never holds every resized map (e.g. over a :class:`~vssl_core.data.streaming.NpyRows`).

    Parameters
    ----------
    source : array-like, shape (N, H, W)
        Rows indexable by slices (an ndarray, a memory map or an ``NpyRows``).

    Notes
    -----
    ``rows[a:b]`` returns a new ``(b - a, 224, 224)`` array, float32 for float32 sources and
    float64 otherwise, equal to ``resize_to_grid(source[a:b])``.
    """

    def __init__(self, source: Any) -> None:
        if len(source.shape) != 3:
            raise ValueError(f"GridRows needs (N, H, W) maps, got shape {tuple(source.shape)}")
        self.source = source
        self.shape = (int(source.shape[0]), GRID, GRID)
        self.ndim = 3
        src = np.dtype(source.dtype)
        self.dtype = src if src in (np.float32, np.float64) else np.dtype(np.float64)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return resize_to_grid(self.source[int(key)][None])[0]
        return resize_to_grid(self.source[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = resize_to_grid(np.asarray(self.source))
        return out if dtype is None else out.astype(dtype, copy=False)
