"""Localisation metrics: ground-truth maps, map post-processing, cIoU, cIoU@a, AUC, bootstrap CIs.

Conventions and units
---------------------
- Every map is scored on a ``GRID x GRID`` (224 x 224) grid, index order ``[row (y), col (x)]``.
  Heatmaps of another size are resized first with :func:`resize_to_grid` (bilinear, half-pixel
  centres, no antialiasing: the same sampling as ``cv2.resize(..., INTER_LINEAR)`` and
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``).
- Batches are ``(N, 224, 224)``; a single ``(224, 224)`` map is treated as ``N = 1``.
- Arithmetic on heatmaps happens in their own floating dtype (float32 stays float32; other
  dtypes are converted to float64), so results are bit-identical to a per-sample loop that
  does the same operations. Pixel sums are accumulated in float64.
- Ground-truth maps ``G`` hold values in ``[0, 1]``: binary for Urbansas and VGG-SS, consensus
  values ``{0, 0.5, 1}`` for Flickr-SoundNet.
- Memory: :func:`validate`, :func:`validate_maps`, :func:`ciou` and :func:`evaluate` read their
  inputs a block of rows at a time (64 for checks, ``CHUNK`` for scoring). Besides ndarrays they
  accept 3-D row array-likes (``shape``, ``ndim``, ``dtype``, ``x[a:b]``), e.g.
  :class:`vssl_core.data.streaming.NpyRows` over a ``.npy`` file: 20,000 maps are then scored
  without holding them (``python -m vssl_core evaluate`` does this;
  ``benchmarks/memory_evaluate.py`` measures it).

Per-sample cIoU (docs/conventions.md, "Metrics: cIoU, cut-offs and AUC")
----------------------------------------
The heatmap is post-processed to ``P`` (:func:`postprocess`): ``"clean"`` (RCGrad/FlowGrad:
min-max, then values strictly below the median, the value at index 25088 of the ascending sort,
set to 0), ``"median"`` (LVS/HTF: min-max, then ``1`` where strictly above that median or at
the maximum, else ``0``: the released rule, which keeps the maximum's pixels when more than half
of a map sits at its maximum) or ``"none"``. It is binarised ``B = P >= threshold`` (0.5) and scored::

    ciou = sum(B * G) / (sum(G) + sum(B * [G == 0]))

With a binary ``G`` this is the plain IoU; with a consensus ``G`` intersection and ``|G|`` are
weighted and false positives count only where ``G == 0``.

Empty maps (the 0/0 policy)
---------------------------
The denominator is 0 only when ``G`` is all zero **and** ``B`` is empty (an empty ``G`` with a
non-empty ``B`` scores 0, an empty ``B`` with a non-empty ``G`` scores 0). For those samples:

``empty="compat"`` (default)
    The per-sample cIoU is NaN, as in the original implementations. In every dataset statistic
    (cIoU@a, AUC and their bootstrap) a NaN counts as a miss and stays in the denominator,
    which is what the originals' ``np.sum(ciou >= a) / N`` does.
``empty="error"``
    :func:`ciou` raises a :class:`~vssl_core.errors.DataError` naming the sample indices.
``empty="exclude"``
    The per-sample cIoU is NaN and the sample is dropped from every denominator;
    :func:`evaluate` reports how many were dropped (``n_empty``) and ``n`` counts the rest.

Nothing is ever dropped silently: :class:`EvalResult` always carries ``n_empty``.

The two readings of "cIoU@0.5"
------------------------------
The released code of every paper binarises at 0.5 and uses the ``@`` value ``a`` as the cut-off
on per-sample cIoU: cIoU@a = fraction of samples with ``ciou >= a``. This is ``reading="code"``
(default). The "How to Listen" text instead describes cIoU@a as binarising the heatmap at ``a``;
``reading="text"`` does that and keeps the conventional cut-off ``TEXT_READING_CUTOFF = 0.5`` on
per-sample cIoU (the text does not name one). The two agree for ``a = 0.5``. Always report the
cut-off (and the reading) next to a number.

AUC
---
``x_i = 0.05 * i`` for ``i = 0..20`` computed as Python floats (so ``0.15, 0.3, 0.6, 0.7, 0.85,
0.95`` are a hair above their decimal value, as in the originals), ``y_i`` = fraction of
samples with ``ciou >= x_i``, ``AUC = np.trapezoid(y, x)``. A sample with ``ciou = 0`` still
counts at ``x_0 = 0``, so all-zero scores give ``AUC = 0.025``, not 0.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vssl_core.eval.bootstrap import BootstrapCI, PairedBootstrap, bootstrap_ci, paired_bootstrap
from vssl_core.errors import data_error

__all__ = [
    "GRID", "MEDIAN_INDEX", "AUC_THRESHOLDS", "TEXT_READING_CUTOFF",
    "resize_to_grid", "gt_map_urbansas", "gt_map_vggss", "gt_map_flickr", "postprocess",
    "binarize", "ciou", "pixel_threshold", "score_cious", "validate", "validate_maps", "check_at",
    "success_fractions", "threshold_levels", "fractions_from_levels", "ciou_at", "auc", "evaluate",
    "EvalResult", "summary_row", "CIoUAt", "AUC", "bootstrap_ci", "paired_bootstrap", "BootstrapCI",
    "PairedBootstrap",
]

#: Side of the evaluation grid (pixels).
GRID = 224
#: Number of pixels of a grid map.
N_PIXELS = GRID * GRID
#: Index of the "median" in the ascending sort of the 50,176 values (= 224 * 224 / 2).
MEDIAN_INDEX = N_PIXELS // 2
#: AUC abscissae ``0.05 * i`` (i = 0..20) as Python floats, exactly like the originals.
AUC_THRESHOLDS: tuple[float, ...] = tuple(0.05 * i for i in range(21))
#: Cut-off on per-sample cIoU used by ``reading="text"``.
TEXT_READING_CUTOFF = 0.5
#: Urbansas annotation frame (width, height), the same value as
#: ``vssl_core.data.urbansas.URBANSAS_FRAME`` (kept here so metrics import no data module).
_ANNOTATION_FRAME: tuple[int, int] = (1280, 720)

Postprocess = Literal["clean", "median", "none"]
EmptyPolicy = Literal["compat", "error", "exclude"]
Reading = Literal["code", "text"]
_POSTPROCESS = ("clean", "median", "none")
_EMPTY = ("compat", "error", "exclude")
_READING = ("code", "text")
#: Samples processed at once by :func:`ciou`: small enough that its three work buffers
#: (CHUNK x 50,176 floats and bools) stay in the CPU cache, large enough to amortise Python.
CHUNK = 8
#: Samples scanned at once by :func:`validate`.
_SCAN = 64


def _check_choice(value: str, choices: Sequence[str], field: str) -> None:
    if value not in choices:
        raise data_error(None, field, f"unknown value {value!r}", f"choose one of {list(choices)}")


def _float_dtype(arr: np.ndarray) -> np.dtype:
    return arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _rows_or_array(x: Any) -> Any:
    """``x`` itself when it is a 3-D row-indexable array-like that is not an ndarray (``shape``,
    ``dtype``, ``x[a:b]`` -> ndarray: e.g. :class:`vssl_core.data.streaming.NpyRows` over a file,
    or :class:`vssl_core.eval.maps.GridRows`), so that checks and scoring read it a block of rows
    at a time and never hold all of it; anything else as an ndarray."""
    if isinstance(x, np.ndarray):
        return x
    if all(hasattr(x, a) for a in ("shape", "ndim", "dtype", "__getitem__", "__len__")) and len(x.shape) == 3:
        return x
    return np.asarray(x)


def _as_batch(maps: np.ndarray, field: str) -> np.ndarray:
    arr = _rows_or_array(maps)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise data_error(None, field, f"expected shape (N, H, W) or (H, W), got {arr.shape}",
                         "stack one 2-D map per sample")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise data_error(None, field, f"expected a numeric array, got dtype {arr.dtype}",
                         "pass float maps")
    return arr


# ----------------------------------------------------------------------------- resizing
@functools.lru_cache(maxsize=32)
def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix of 1-D linear interpolation with half-pixel centres."""
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.clip(src, 0.0, None)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = np.where(i0 == n_in - 1, 0.0, src - i0)
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(mat, (rows, i0), 1.0 - w1)
    np.add.at(mat, (rows, i1), w1)
    mat.setflags(write=False)
    return mat


def resize_to_grid(maps: np.ndarray) -> np.ndarray:
    """Resize heatmaps to the 224 x 224 evaluation grid (bilinear).

    Separable linear interpolation with half-pixel centres (source coordinate
    ``(dst + 0.5) * in / out - 0.5``, clamped to the border), no antialiasing: the sampling of
    ``cv2.resize(m, (224, 224), interpolation=cv2.INTER_LINEAR)`` and of
    ``F.interpolate(..., mode="bilinear", align_corners=False)``. Maps already 224 x 224 are
    returned unchanged (as a float array).

    Parameters
    ----------
    maps : np.ndarray, shape (N, H, W) or (H, W)
        Heatmaps, any real dtype.

    Returns
    -------
    np.ndarray, shape (N, 224, 224)
        float32 for float32 input, float64 otherwise.
    """
    arr = np.asarray(_as_batch(maps, "maps"))
    dtype = _float_dtype(arr)
    arr = arr.astype(dtype, copy=False)
    n, h, w = arr.shape
    if h < 1 or w < 1:
        raise data_error(None, "maps", f"empty maps of shape {arr.shape}", "pass non-empty maps")
    if (h, w) == (GRID, GRID):
        return arr
    my = _interp_matrix(h, GRID).astype(dtype)
    mx = _interp_matrix(w, GRID).astype(dtype)
    return np.matmul(np.matmul(my, arr), mx.T)


# ------------------------------------------------------------------------ ground truth
def as_boxes(boxes: np.ndarray, field: str = "boxes", allow_nan: bool = False) -> np.ndarray:
    """``boxes`` as a float64 ``(K, 4)`` array (one box of 4 numbers, or none, accepted)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise data_error(None, field, f"expected boxes of shape (K, 4), got {arr.shape}",
                         "pass one row of 4 coordinates per box")
    if not allow_nan and np.isnan(arr).any():
        raise data_error(None, field, "box coordinates contain NaN", "drop or fix those boxes")
    return arr


def _paint(gt: np.ndarray, x1: int, y1: int, x2: int, y2: int, value: float = 1.0) -> None:
    """Add ``value`` inside ``[y1:y2, x1:x2]`` after clipping the corners to the grid."""
    x1, x2 = min(max(x1, 0), GRID), min(max(x2, 0), GRID)
    y1, y2 = min(max(y1, 0), GRID), min(max(y2, 0), GRID)
    if x2 > x1 and y2 > y1:
        gt[y1:y2, x1:x2] += value


def gt_map_urbansas(boxes_xywh: np.ndarray,
                    frame_size: tuple[float, float] = _ANNOTATION_FRAME) -> np.ndarray:
    """Binary ground-truth map of Urbansas boxes.

    Each box ``[x, y, w, h]`` (top-left corner, annotation-frame units) becomes
    ``x1 = int(x / W * 224)``, ``bw = int(w / W * 224)``, ``y1 = int(y / H * 224)``,
    ``bh = int(h / H * 224)`` (``int`` truncates toward zero) and fills
    ``[y1:y1 + bh, x1:x1 + bw]``; the union is taken. Corners outside the grid are clipped to it
    (a plain NumPy slice would wrap a negative start instead; the FlowGrad pairs never contain
    negative coordinates, see docs/conventions.md, "Urbansas evaluation pairs").

    Parameters
    ----------
    boxes_xywh : np.ndarray, shape (K, 4)
        Boxes ``[x, y, w, h]``; ``K`` may be 0.
    frame_size : (float, float)
        ``(W, H)`` of the frame the boxes are in; default the 1280 x 720 annotation frame.

    Returns
    -------
    np.ndarray, float32, shape (224, 224)
        1 inside any box, 0 elsewhere.
    """
    boxes = as_boxes(boxes_xywh, "boxes_xywh")
    width, height = (float(v) for v in frame_size)
    if not (width > 0 and height > 0):
        raise data_error(None, "frame_size", f"must be positive, got {frame_size}",
                         "pass (width, height), e.g. (1280, 720)")
    gt = np.zeros((GRID, GRID), dtype=np.float32)
    for x, y, w, h in boxes.tolist():
        x1, y1 = int(x / width * GRID), int(y / height * GRID)
        bw, bh = int(w / width * GRID), int(h / height * GRID)
        _paint(gt, x1, y1, x1 + bw, y1 + bh)
    return np.minimum(gt, 1.0)


def gt_map_vggss(boxes_xyxy_norm: np.ndarray) -> np.ndarray:
    """Binary ground-truth map of VGG-SS boxes.

    Each coordinate ``v`` of ``[x1, y1, x2, y2]`` becomes ``int(224 * max(v, 0))`` and the box
    fills ``[y1:y2, x1:x2]`` (union over boxes). Values above 1 are clipped to the grid by the
    slice; degenerate boxes (``x2 <= x1`` or ``y2 <= y1``, including the real file's sentinel
    ``-2.88e16`` coordinates, which ``max(v, 0)`` turns into 0) paint nothing.

    Parameters
    ----------
    boxes_xyxy_norm : np.ndarray, shape (K, 4)
        Corners normalised to [0, 1]; ``K`` may be 0.

    Returns
    -------
    np.ndarray, float32, shape (224, 224)
    """
    boxes = as_boxes(boxes_xyxy_norm, "boxes_xyxy_norm")
    gt = np.zeros((GRID, GRID), dtype=np.float32)
    for coords in boxes.tolist():
        x1, y1, x2, y2 = (int(GRID * max(v, 0)) for v in coords)
        _paint(gt, x1, y1, x2, y2)
    return np.minimum(gt, 1.0)


def gt_map_flickr(annotators: Sequence[np.ndarray] | np.ndarray,
                  image_size: float = 256.0) -> np.ndarray:
    """Consensus ground-truth map of Flickr-SoundNet boxes.

    Every box ``[xmin, ymin, xmax, ymax]`` (``image_size`` units, 256 x 256 in the release)
    becomes ``int(224 * v / 256)`` per coordinate and adds 1 inside ``[ymin:ymax, xmin:xmax]``;
    the sum over all boxes of all annotators (up to 3) is divided by 2 and clipped at 1, giving
    values in ``{0, 0.5, 1}`` (two agreeing annotators make a pixel certain).

    Parameters
    ----------
    annotators : sequence of np.ndarray of shape (K_j, 4), or one (K, 4) array
        Boxes of each annotator (all boxes are summed alike).
    image_size : float
        Side of the annotation frame (256).

    Returns
    -------
    np.ndarray, float32, shape (224, 224)
    """
    if isinstance(annotators, np.ndarray) and annotators.ndim == 2:
        groups: Sequence[Any] = [annotators]
    else:
        groups = list(annotators)
    gt = np.zeros((GRID, GRID), dtype=np.float32)
    for boxes in groups:
        for coords in as_boxes(boxes, "annotators").tolist():
            x1, y1, x2, y2 = (int(GRID * v / image_size) for v in coords)
            _paint(gt, x1, y1, x2, y2)
    return np.minimum(gt / 2.0, 1.0).astype(np.float32)


# -------------------------------------------------------------------- post-processing
def _minmax(maps: np.ndarray) -> np.ndarray:
    """Per-map ``(m - min) / (max - min)``; constant maps are returned as they are."""
    lo = maps.min(axis=(1, 2), keepdims=True)
    hi = maps.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    flat = (span == 0).reshape(-1)
    out = (maps - lo) / np.where(span == 0, 1, span)
    if flat.any():
        out[flat] = maps[flat]
    return out


def _median_values(maps: np.ndarray) -> np.ndarray:
    """Value at index ``MEDIAN_INDEX`` of each map's ascending sort, shape (N,)."""
    flat = maps.reshape(maps.shape[0], -1)
    return np.partition(flat, MEDIAN_INDEX, axis=1)[:, MEDIAN_INDEX]


def _check_grid(maps: np.ndarray, field: str) -> None:
    if maps.shape[1:] != (GRID, GRID):
        raise data_error(None, field, f"expected maps of {GRID}x{GRID}, got {maps.shape[1:]}",
                         "resize heatmaps with vssl_core.eval.metrics.resize_to_grid first")


def postprocess(maps: np.ndarray, method: Postprocess = "clean") -> np.ndarray:
    """Post-process heatmaps before binarisation (vectorised over the batch).

    Parameters
    ----------
    maps : np.ndarray, shape (N, 224, 224) or (224, 224)
        Heatmaps on the evaluation grid.
    method : {"clean", "median", "none"}
        ``"clean"`` (RCGrad/FlowGrad): min-max normalise (constant maps left as they are), then
        set values strictly below the median (index 25088 of the ascending sort) to 0.
        ``"median"`` (LVS/HTF, their released rule): min-max, then 1 where strictly above that
        median or equal to the maximum (1 after min-max), else 0. The two differ only when the
        median is the maximum (more than half of a map at its maximum): those pixels are
        predicted, as the released ``pred[pred > med] = 1; pred[pred < 1] = 0`` does.
        ``"none"``: unchanged.

    Returns
    -------
    np.ndarray, shape (N, 224, 224)
        A new array in the maps' float dtype (float32 stays float32, else float64).
    """
    _check_choice(method, _POSTPROCESS, "postprocess")
    arr = _as_batch(maps, "maps")
    _check_grid(arr, "maps")
    arr = arr.astype(_float_dtype(arr), copy=False)
    if method == "none":
        return arr.copy()
    norm = _minmax(arr)
    med = _median_values(norm)[:, None, None]
    if method == "clean":
        return np.where(norm < med, norm.dtype.type(0), norm)
    out = norm > med
    ties = np.flatnonzero((med[:, 0, 0] == 1) & (arr.max(axis=(1, 2)) != arr.min(axis=(1, 2))))
    out[ties] = norm[ties] == 1  # the median is the maximum: the maximum's pixels stay predicted
    return out.astype(norm.dtype)


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """Number of True values per row of a 2-D bool array (a per-row loop of the SIMD
    ``count_nonzero`` is several times faster than ``count_nonzero(axis=1)``)."""
    return np.fromiter((np.count_nonzero(row) for row in mask), dtype=np.int64,
                       count=mask.shape[0])


def _binarize_rows(rows: np.ndarray, method: str, threshold: float, work: np.ndarray,
                   out: np.ndarray) -> np.ndarray:
    """Binary masks of flattened maps ``rows`` (k, 50176) into ``out`` (k, 50176) bool.

    ``work`` is a float buffer of the same shape and dtype as ``rows`` (overwritten). The
    arithmetic is exactly that of :func:`postprocess` followed by ``>= threshold``.
    """
    if method == "none":
        return np.greater_equal(rows, threshold, out=out)
    lo = rows.min(axis=1, keepdims=True)
    hi = rows.max(axis=1, keepdims=True)
    span = hi - lo
    np.subtract(rows, lo, out=work)
    np.divide(work, np.where(span == 0, 1, span), out=work)
    const = np.flatnonzero(span[:, 0] == 0)
    if const.size:
        work[const] = rows[const]
    if method == "median":
        # After min-max the minimum is exactly 0; with more than MEDIAN_INDEX zeros the
        # median is 0 and no partial sort is needed (the common case for sparse heatmaps).
        zeros = _row_counts(np.equal(work, 0, out=out))
        for r in range(len(work)):
            if zeros[r] > MEDIAN_INDEX and span[r, 0] != 0:
                med = work.dtype.type(0)
            else:
                med = np.partition(work[r], MEDIAN_INDEX)[MEDIAN_INDEX]
            if med == 1 and span[r, 0] != 0:  # the median is the maximum: those pixels (released rule)
                np.equal(work[r], 1, out=out[r])
            else:
                np.greater(work[r], med, out=out[r])
        # processed values are 0/1: ">= threshold" keeps the 1s for 0 < t <= 1
        if threshold <= 0:
            out[...] = True
        elif threshold > 1:
            out[...] = False
        return out
    if not threshold > 0:  # rare: zeros of the clean map pass the threshold too
        med = _median_values(work)[:, None]
        out[...] = np.where(work < med, work.dtype.type(0), work) >= threshold
        return out
    np.greater_equal(work, threshold, out=out)
    # clean mask = P >= max(threshold, median); the median < threshold  <=>  at least
    # MEDIAN_INDEX + 1 values lie below threshold, and then it cannot change the mask.
    need = np.flatnonzero(N_PIXELS - _row_counts(out) <= MEDIAN_INDEX)
    if need.size:
        above = np.empty(N_PIXELS, dtype=bool)
        for r in need:  # row views: no fancy-index copies; one partial sort per row
            med = np.partition(work[r], MEDIAN_INDEX)[MEDIAN_INDEX]
            np.logical_and(out[r], np.greater_equal(work[r], med, out=above), out=out[r])
    return out


def binarize(maps: np.ndarray, method: Postprocess = "clean", threshold: float = 0.5) -> np.ndarray:
    """Binary masks ``B = postprocess(maps, method) >= threshold``, shape (N, 224, 224), bool.

    Same values as ``postprocess(maps, method) >= threshold``, computed without the
    intermediate map. For ``"clean"`` and ``threshold > 0`` this is
    ``P >= max(threshold, median(P))`` with ``P`` the min-max map; the median (a partial sort)
    is only computed for maps where it can matter, i.e. where fewer than 25,089 values lie
    below ``threshold``.
    """
    _check_choice(method, _POSTPROCESS, "postprocess")
    arr = _as_batch(maps, "maps")
    _check_grid(arr, "maps")
    rows = arr.astype(_float_dtype(arr), copy=False).reshape(len(arr), N_PIXELS)
    out = np.empty(rows.shape, dtype=bool)
    _binarize_rows(rows, method, threshold, np.empty_like(rows), out)
    return out.reshape(arr.shape)


# ------------------------------------------------------------------------------ cIoU
def validate(maps: np.ndarray, gts: np.ndarray, *, maps_file: Any = None,
             gts_file: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Check heatmaps and ground truths before scoring.

    Parameters
    ----------
    maps : np.ndarray, shape (N, 224, 224) or (224, 224)
        Heatmaps on the grid; finite values.
    gts : np.ndarray, shape (N, 224, 224) or (224, 224)
        Ground-truth maps with values in [0, 1].
    maps_file, gts_file : path, optional
        Named in error messages.

    Returns
    -------
    (maps, gts) : np.ndarray, both shape (N, 224, 224)
        Batched views of the inputs.

    Raises
    ------
    DataError
        Wrong number of dimensions, maps not on the grid, GT not 224 x 224, different ``N``,
        NaN/inf heatmap values, a heatmap whose range ``max - min`` overflows its float dtype,
        ground-truth values outside [0, 1] or not finite.
    """
    m, g = _validate_shapes(maps, gts, maps_file, gts_file)
    for start in range(0, len(m), _SCAN):
        _validate_values(m[start:start + _SCAN], g[start:start + _SCAN], start, maps_file,
                         gts_file)
    return m, g


def _validate_shapes(maps: np.ndarray, gts: np.ndarray, maps_file: Any,
                     gts_file: Any) -> tuple[np.ndarray, np.ndarray]:
    m = _rows_or_array(maps)
    g = _rows_or_array(gts)
    for arr, field, file in ((m, "maps", maps_file), (g, "gts", gts_file)):
        if arr.ndim not in (2, 3):
            raise data_error(file, field, f"expected shape (N, 224, 224), got {arr.shape} "
                             f"({arr.ndim}-D)", "stack one 224x224 map per sample")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise data_error(file, field, f"expected a numeric array, got dtype {arr.dtype}",
                             "save float maps")
    m = m[None] if m.ndim == 2 else m
    g = g[None] if g.ndim == 2 else g
    if g.shape[1:] != (GRID, GRID):
        raise data_error(gts_file, "gts", f"ground-truth maps must be {GRID}x{GRID}, got "
                         f"{g.shape[1:]}", "build them with gt_map_urbansas/vggss/flickr")
    if m.shape[1:] != (GRID, GRID):
        raise data_error(maps_file, "maps", f"heatmaps must be {GRID}x{GRID}, got "
                         f"{m.shape[1:]}", "resize them with vssl_core.eval.metrics.resize_to_grid")
    if m.shape[0] != g.shape[0]:
        raise data_error(maps_file, "maps", f"{m.shape[0]} heatmaps but {g.shape[0]} "
                         "ground-truth maps", "pass one heatmap per ground-truth map, same order")
    if m.shape[0] == 0:
        raise data_error(maps_file, "maps", "no samples (N = 0)", "pass at least one sample")
    return m, g


def _check_map_values(m: np.ndarray, start: int, maps_file: Any) -> None:
    """Heatmap values of one block ``(k, H, W)``: finite, and ``max - min`` of each map finite in
    the dtype the maps are scored in (else min-max normalisation divides by inf and a perfect
    map scores 0)."""
    if m.dtype == np.bool_:
        return
    # min/max propagate NaN and show inf: finite extremes <=> all values finite (no mask).
    lo = m.min(axis=(1, 2))
    hi = m.max(axis=(1, 2))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        rows = start + np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
        raise data_error(maps_file, "maps", f"NaN or inf values in samples {rows[:10].tolist()}",
                         "replace non-finite heatmap values before scoring")
    dtype = _float_dtype(m)
    with np.errstate(over="ignore", invalid="ignore"):
        span = hi.astype(dtype) - lo.astype(dtype)
    if not np.isfinite(span).all():
        rows = start + np.flatnonzero(~np.isfinite(span))
        raise data_error(maps_file, "maps", f"the value range max - min of samples "
                         f"{rows[:10].tolist()} overflows {dtype} (values from {lo.min():.3g} to "
                         f"{hi.max():.3g})", "rescale the maps (e.g. divide each by its largest "
                         "absolute value) or save them as float64")


def validate_maps(maps: np.ndarray, *, maps_file: Any = None) -> np.ndarray:
    """Check heatmaps of any size ``(N, H, W)`` or ``(H, W)`` before resizing or scoring.

    Raises
    ------
    DataError
        Not 2-D/3-D, not numeric, empty, NaN/inf values, or a value range ``max - min`` that
        overflows the maps' float dtype.
    """
    arr = _as_batch(maps, "maps")
    if 0 in arr.shape:
        raise data_error(maps_file, "maps", f"empty maps of shape {arr.shape}", "pass non-empty maps")
    for start in range(0, len(arr), _SCAN):
        _check_map_values(arr[start:start + _SCAN], start, maps_file)
    return arr


def _validate_values(m: np.ndarray, g: np.ndarray, start: int, maps_file: Any,
                     gts_file: Any) -> None:
    """Value checks of one block of samples (``start`` = index of its first sample)."""
    _check_map_values(m, start, maps_file)
    g_min, g_max = float(g.min()), float(g.max())
    if not (0.0 <= g_min and g_max <= 1.0):  # also catches NaN (comparisons are False)
        bad = ~((g >= 0) & (g <= 1)).all(axis=(1, 2))
        rows = start + np.flatnonzero(bad)
        raise data_error(gts_file, "gts", f"values must lie in [0, 1], found range "
                         f"[{g_min}, {g_max}] in samples {rows[:10].tolist()}",
                         "pass binary or consensus (0/0.5/1) maps")


def _overlaps(b: np.ndarray, g: np.ndarray, scratch: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: ``sum(B * G)``, ``sum(G)`` and ``sum(B * [G == 0])`` as float64.

    Rows whose G holds only 0, 0.5 and 1 (binary and consensus maps) are computed from exact
    pixel counts; other rows from float64 sums. Both give the value of the float64 formula
    (sums of multiples of 0.5 are exact in float64).
    """
    gz = np.equal(g, 0, out=scratch)
    n0 = _row_counts(gz)
    false_pos = _row_counts(np.logical_and(b, gz, out=scratch))
    one = np.equal(g, 1, out=scratch)
    n1 = _row_counts(one)
    inter = _row_counts(np.logical_and(b, one, out=scratch)).astype(np.float64)
    size_g = n1.astype(np.float64)
    for r in np.flatnonzero(n0 + n1 < N_PIXELS):
        half = np.equal(g[r], 0.5)
        n_half = np.count_nonzero(half)
        if n0[r] + n1[r] + n_half == N_PIXELS:
            inter[r] += 0.5 * np.count_nonzero(half & b[r])
            size_g[r] += 0.5 * n_half
        else:  # general values in [0, 1]
            g64 = g[r].astype(np.float64)
            inter[r] = np.sum(b[r] * g64)
            size_g[r] = np.sum(g64)
    return inter, size_g, false_pos.astype(np.float64)


def ciou(maps: np.ndarray, gts: np.ndarray, postprocess: Postprocess = "clean",
         threshold: float = 0.5, empty: EmptyPolicy = "compat", *, maps_file: Any = None,
         gts_file: Any = None) -> np.ndarray:
    """Per-sample consensus IoU.

    ``ciou = sum(B * G) / (sum(G) + sum(B * [G == 0]))`` with
    ``B = postprocess(maps) >= threshold``, vectorised over samples in chunks of ``CHUNK``
    samples with reused buffers (cache-friendly, bounded memory).

    Parameters
    ----------
    maps : np.ndarray, shape (N, 224, 224) or (224, 224)
        Raw heatmaps on the grid (resize others with :func:`resize_to_grid`).
    gts : np.ndarray, shape (N, 224, 224) or (224, 224)
        Ground-truth maps, values in [0, 1].
    postprocess : {"clean", "median", "none"}
        See :func:`postprocess`.
    threshold : float
        Pixel binarisation threshold (0.5 in all released code).
    empty : {"compat", "error", "exclude"}
        0/0 policy (module docstring): NaN for ``"compat"`` and ``"exclude"``, raise for
        ``"error"``.
    maps_file, gts_file : path, optional
        Named in the errors of the checks :func:`validate` makes, which run block by block
        while scoring (one pass over the inputs).

    Returns
    -------
    np.ndarray, float64, shape (N,)
        Per-sample cIoU in [0, 1], NaN where both G and B are empty.
    """
    _check_choice(empty, _EMPTY, "empty")
    _check_choice(postprocess, _POSTPROCESS, "postprocess")
    m, g = _validate_shapes(maps, gts, maps_file, gts_file)
    n = len(m)
    dtype = _float_dtype(m)
    k_max = min(CHUNK, n)
    work = np.empty((k_max, N_PIXELS), dtype=dtype)
    mask = np.empty((k_max, N_PIXELS), dtype=bool)
    scratch = np.empty((k_max, N_PIXELS), dtype=bool)
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, CHUNK):
        k = min(CHUNK, n - s)
        mb, gb = m[s:s + k], g[s:s + k]  # views of arrays; one read of a row array-like
        _validate_values(mb, gb, s, maps_file, gts_file)  # while the block is in cache
        rows = mb.reshape(k, N_PIXELS).astype(dtype, copy=False)
        b = _binarize_rows(rows, postprocess, threshold, work[:k], mask[:k])
        inter, size_g, false_pos = _overlaps(b, gb.reshape(k, N_PIXELS), scratch[:k])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + k] = inter / (size_g + false_pos)
    if empty == "error":
        bad = np.flatnonzero(np.isnan(out))
        if bad.size:
            raise data_error(None, "gts", f"{bad.size} samples have an empty ground truth and "
                             f"an empty binarised map (cIoU 0/0), indices {bad[:20].tolist()}",
                             "drop them, or pass empty='compat' (NaN, a miss) or "
                             "empty='exclude' (left out of the denominators)")
    return out


# --------------------------------------------------------------- dataset statistics
def success_fractions(cious: np.ndarray, thresholds: Sequence[float] | np.ndarray,
                      empty: EmptyPolicy = "compat") -> np.ndarray:
    """Fraction of samples with ``ciou >= x`` for each threshold ``x``.

    Vectorised with one ``searchsorted`` and one ``bincount``: works on a whole block of
    bootstrap resamples at once.

    Parameters
    ----------
    cious : np.ndarray, shape (..., N)
        Per-sample cIoU along the last axis; NaN marks an empty sample.
    thresholds : sequence of float, length T
    empty : {"compat", "error", "exclude"}
        ``"exclude"`` drops NaN from the denominator; otherwise NaN is a miss counted in it.

    Returns
    -------
    np.ndarray, float64, shape (..., T)
        NaN where the denominator is 0.
    """
    _check_choice(empty, _EMPTY, "empty")
    c = np.asarray(cious, dtype=np.float64)
    lead, n = c.shape[:-1], c.shape[-1]
    levels, order = threshold_levels(c.reshape(-1, n), thresholds)
    frac = fractions_from_levels(levels, order, empty)
    return frac.reshape(*lead, order.size)


def threshold_levels(cious: np.ndarray, thresholds: Sequence[float] | np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Each cIoU's level: how many of the (sorted) thresholds it reaches; NaN gets level ``T + 1``.

    A sample passes sorted threshold ``j`` exactly when its level is in ``(j, T]``, so any
    resample's success fractions follow from its levels alone (:func:`fractions_from_levels`):
    the bootstrap gathers small integers instead of re-comparing floats.

    Parameters
    ----------
    cious : np.ndarray, shape (..., N)
    thresholds : sequence of float, length T (T <= 253)

    Returns
    -------
    levels : np.ndarray, uint8, shape (..., N)
    order : np.ndarray, intp, shape (T,)
        ``np.argsort(thresholds, kind="stable")``.
    """
    c = np.asarray(cious, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.size > 253:
        raise ValueError(f"at most 253 thresholds, got {thr.size}")
    order = np.argsort(thr, kind="stable")
    nan = np.isnan(c)
    k = np.searchsorted(thr[order], np.where(nan, -np.inf, c), side="right")
    k[nan] = thr.size + 1
    return k.astype(np.uint8), order


def fractions_from_levels(levels: np.ndarray, order: np.ndarray, empty: EmptyPolicy = "compat"
                          ) -> np.ndarray:
    """Success fractions ``(B, T)`` of ``B`` samples' levels ``(B, N)`` (:func:`threshold_levels`).

    One ``bincount`` counts each row's levels; reversed cumulative sums give the hits per
    threshold as exact integers. ``empty="exclude"`` drops NaN (level ``T + 1``) from the
    denominator; otherwise NaN is a miss counted in it. NaN where the denominator is 0.
    """
    levels = np.asarray(levels)
    rows = levels.reshape(-1, levels.shape[-1])
    n_t, n = order.size, rows.shape[1]
    width = n_t + 2
    offsets = (np.arange(rows.shape[0]) * width)[:, None]
    counts = np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * width)
    counts = counts.reshape(rows.shape[0], width)
    hits_sorted = np.cumsum(counts[:, n_t::-1], axis=1)[:, ::-1][:, 1:]   # levels j+1..T
    hits = np.empty_like(hits_sorted)
    hits[:, order] = hits_sorted
    denom = n - counts[:, n_t + 1] if empty == "exclude" else np.full(rows.shape[0], n)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = hits / denom[:, None].astype(np.float64)
    frac[denom == 0] = np.nan
    return frac


def ciou_at(cious: np.ndarray, at: float, empty: EmptyPolicy = "compat") -> np.ndarray | float:
    """Dataset-level cIoU@``at``: fraction of samples with ``ciou >= at``.

    Parameters
    ----------
    cious : np.ndarray, shape (..., N)
    at : float
        Cut-off on per-sample cIoU (0.5 for Flickr/VGG-SS, 0.3 for Urbansas / Music Synthesis).
    empty : {"compat", "error", "exclude"}
        NaN handling, see :func:`success_fractions`.

    Returns
    -------
    float for 1-D input, else np.ndarray of shape (...)
    """
    out = success_fractions(cious, [at], empty)[..., 0]
    return float(out) if out.ndim == 0 else out


def auc(cious: np.ndarray, empty: EmptyPolicy = "compat") -> np.ndarray | float:
    """Area under the success curve ``y_i = fraction(ciou >= 0.05 i)``, i = 0..20 (trapezoid).

    Parameters
    ----------
    cious : np.ndarray, shape (..., N)
    empty : {"compat", "error", "exclude"}

    Returns
    -------
    float for 1-D input, else np.ndarray of shape (...)
    """
    y = success_fractions(cious, AUC_THRESHOLDS, empty)
    out = np.trapezoid(y, x=np.asarray(AUC_THRESHOLDS), axis=-1)
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class CIoUAt:
    """Bootstrap statistic cIoU@``at`` (same values as ``ciou_at(c, at, empty)``).

    Has the ``resampled`` fast path of :mod:`vssl_core.eval.bootstrap`.
    """

    at: float
    empty: EmptyPolicy = "compat"

    def __call__(self, cious: np.ndarray) -> np.ndarray | float:
        return ciou_at(cious, self.at, self.empty)

    def resampled(self, cious: np.ndarray, rows: np.ndarray) -> np.ndarray:
        levels, order = threshold_levels(cious, [self.at])
        return fractions_from_levels(levels[rows], order, self.empty)[:, 0]


@dataclass(frozen=True)
class AUC:
    """Bootstrap statistic AUC (same values as ``auc(c, empty)``), with the fast path."""

    empty: EmptyPolicy = "compat"

    def __call__(self, cious: np.ndarray) -> np.ndarray | float:
        return auc(cious, self.empty)

    def resampled(self, cious: np.ndarray, rows: np.ndarray) -> np.ndarray:
        levels, order = threshold_levels(cious, AUC_THRESHOLDS)
        y = fractions_from_levels(levels[rows], order, self.empty)
        return np.trapezoid(y, x=np.asarray(AUC_THRESHOLDS), axis=-1)


# ------------------------------------------------------------------------- evaluate
@dataclass(frozen=True, eq=False)
class EvalResult:
    """Dataset-level scores of one method on one set of samples.

    Attributes
    ----------
    ciou : float
        cIoU@``cutoff``: fraction of counted samples with per-sample cIoU >= ``cutoff``.
    auc : float
        AUC of the success curve.
    ciou_lo, ciou_hi, auc_lo, auc_hi : float
        Percentile bootstrap bounds (NaN when ``n_boot == 0``).
    n : int
        Samples in the denominators (all of them, except for ``empty="exclude"``).
    n_empty : int
        Samples with an empty GT and an empty binary map (0/0).
    at : float
        The "@" value asked for.
    threshold : float
        Pixel binarisation threshold actually used.
    cutoff : float
        Cut-off on per-sample cIoU actually used.
    postprocess, reading, empty : str
    level : float
        Coverage of the intervals.
    n_boot, seed : int
    cious : np.ndarray, float64, shape (N_total,)
        Per-sample cIoU in input order (NaN for empty samples).
    """

    ciou: float
    auc: float
    ciou_lo: float
    ciou_hi: float
    auc_lo: float
    auc_hi: float
    n: int
    n_empty: int
    at: float
    threshold: float
    cutoff: float
    postprocess: str
    reading: str
    empty: str
    level: float
    n_boot: int
    seed: int
    cious: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-sample values)."""
        return {
            "cIoU": self.ciou, "AUC": self.auc,
            "cIoU_ci": [self.ciou_lo, self.ciou_hi], "AUC_ci": [self.auc_lo, self.auc_hi],
            "n": self.n, "n_empty": self.n_empty, "at": self.at, "threshold": self.threshold,
            "cutoff": self.cutoff, "postprocess": self.postprocess, "reading": self.reading,
            "empty": self.empty, "level": self.level, "n_boot": self.n_boot, "seed": self.seed,
        }


def evaluate(maps: np.ndarray, gts: np.ndarray, postprocess: Postprocess = "clean",
             at: float = 0.3, n_boot: int = 1000, seed: int = 0,
             empty: EmptyPolicy = "compat", reading: Reading = "code",
             level: float = 0.95, *, maps_file: Any = None, gts_file: Any = None) -> EvalResult:
    """Score heatmaps against ground truths: cIoU@at, AUC and bootstrap intervals.

    Parameters
    ----------
    maps : np.ndarray, shape (N, 224, 224)
        Raw heatmaps on the grid.
    gts : np.ndarray, shape (N, 224, 224)
        Ground-truth maps in [0, 1].
    postprocess : {"clean", "median", "none"}
    at : float
        The "@" value. ``reading="code"``: binarise at 0.5, cut-off ``at``; ``reading="text"``:
        binarise at ``at``, cut-off ``TEXT_READING_CUTOFF`` (0.5).
    n_boot : int
        Bootstrap resamples (0: no intervals).
    seed : int
        Seed of the bootstrap index matrix.
    empty : {"compat", "error", "exclude"}
        0/0 policy (module docstring).
    reading : {"code", "text"}
    level : float
        Interval coverage.
    maps_file, gts_file : path, optional
        Named in error messages (as :func:`validate`).

    Returns
    -------
    EvalResult
    """
    _check_choice(reading, _READING, "reading")
    threshold, _ = _threshold_and_cutoff(at, reading)
    per_sample = ciou(maps, gts, postprocess=postprocess, threshold=threshold, empty=empty,
                      maps_file=maps_file, gts_file=gts_file)
    return score_cious(per_sample, at=at, n_boot=n_boot, seed=seed, empty=empty,
                       reading=reading, level=level, postprocess=postprocess)


def check_at(at: float, field: str = "at") -> float:
    """``at`` as a float, or a :class:`DataError` unless it is a finite number in [0, 1]."""
    try:
        v = float(at)
    except (TypeError, ValueError):
        raise data_error(None, field, f"{at!r} is not a number", "give a cut-off in [0, 1]") from None
    if not 0.0 <= v <= 1.0:  # also refuses NaN
        raise data_error(None, field, f"{at!r} is outside [0, 1]", "give a cut-off in [0, 1], e.g. 0.3")
    return v


def _threshold_and_cutoff(at: float, reading: str) -> tuple[float, float]:
    at = check_at(at)
    return (0.5, at) if reading == "code" else (at, TEXT_READING_CUTOFF)


def pixel_threshold(at: float, reading: Reading = "code") -> float:
    """The pixel binarisation threshold :func:`evaluate` uses for ``at`` under ``reading``
    (0.5 for ``"code"``, ``at`` for ``"text"``); pass it to :func:`ciou` before
    :func:`score_cious`."""
    _check_choice(reading, _READING, "reading")
    return _threshold_and_cutoff(at, reading)[0]


def score_cious(cious: np.ndarray, at: float = 0.3, n_boot: int = 1000, seed: int = 0,
                empty: EmptyPolicy = "compat", reading: Reading = "code", level: float = 0.95,
                postprocess: str = "clean") -> EvalResult:
    """Dataset-level scores and bootstrap intervals from per-sample cIoUs.

    The second half of :func:`evaluate`, for callers that computed per-sample cIoUs
    themselves (in chunks, or once for several summaries). ``cious`` must have been computed
    with the pixel threshold that ``reading`` implies (0.5 for ``"code"``, ``at`` for
    ``"text"``); ``postprocess`` is recorded in the result only.
    """
    _check_choice(reading, _READING, "reading")
    _check_choice(empty, _EMPTY, "empty")
    threshold, cutoff = _threshold_and_cutoff(at, reading)
    per_sample = np.asarray(cious, dtype=np.float64)
    n_empty = int(np.isnan(per_sample).sum())
    if empty == "error" and n_empty:
        raise data_error(None, "cious", f"{n_empty} samples are 0/0 (empty GT and empty map)",
                         "use empty='compat' or 'exclude'")
    counted = per_sample[~np.isnan(per_sample)] if empty == "exclude" else per_sample
    if counted.size == 0:
        raise data_error(None, "gts", "every sample is empty (0/0) and empty='exclude' leaves "
                         "nothing to score", "use empty='compat' or check the ground truth")
    ci_c = bootstrap_ci(counted, CIoUAt(cutoff), n_boot=n_boot, seed=seed, level=level)
    ci_a = bootstrap_ci(counted, AUC(), n_boot=n_boot, seed=seed, level=level)
    return EvalResult(
        ciou=ci_c.estimate, auc=ci_a.estimate, ciou_lo=ci_c.lo, ciou_hi=ci_c.hi,
        auc_lo=ci_a.lo, auc_hi=ci_a.hi, n=int(counted.size), n_empty=n_empty, at=float(at),
        threshold=threshold, cutoff=cutoff, postprocess=postprocess, reading=reading,
        empty=empty, level=level, n_boot=n_boot, seed=seed, cious=per_sample)


def summary_row(name: str, result: EvalResult, digits: int | None = None) -> dict[str, Any]:
    """Flat dict for a results table: ``name``, ``cIoU@<cutoff>``, its CI, ``AUC``, its CI, ...

    Parameters
    ----------
    name : str
        Method name (first column).
    result : EvalResult
    digits : int, optional
        Round the scores to this many decimals (for display only).
    """
    def r(v: float) -> float:
        return round(v, digits) if digits is not None and np.isfinite(v) else v

    key = f"cIoU@{result.cutoff:g}"
    return {
        "method": name, key: r(result.ciou), f"{key}_lo": r(result.ciou_lo),
        f"{key}_hi": r(result.ciou_hi), "AUC": r(result.auc), "AUC_lo": r(result.auc_lo),
        "AUC_hi": r(result.auc_hi), "n": result.n, "n_empty": result.n_empty,
        "threshold": result.threshold, "postprocess": result.postprocess,
        "reading": result.reading, "empty": result.empty,
    }
