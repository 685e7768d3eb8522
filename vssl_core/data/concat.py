"""Concat-and-localize (Oya et al., section 5): two samples side by side, the sound of one.

Protocol
--------
Two (image, sound) samples ``i`` and ``j`` are put side by side (``i`` on the left, ``j`` on the
right), the ``H x 2W`` image is rescaled to ``H x W`` (or to ``size``), and only ONE of the two
sounds is given; the ground truth is the rescaled ground truth of the sample whose sound is given.
Both variants are produced per pair (paper: "This process is conducted for both sounds"), so a
pair gives two rows, ``side="left"`` (sound and GT of the left sample) then ``side="right"``.

Pairing (:func:`pair_indices`, seeded): every sample is an *anchor* once (``n_pairs = N``, the
default; ``n_pairs > N`` tiles several permutations, e.g. the paper's 500 pairs = 1,000 samples
from 250 images), its partner is drawn uniformly among the other ``N - 1`` samples, and a fair
coin puts the anchor on the left or on the right. Same seed, same rows, same bytes.

Images
------
Each half is resized on its own to ``(H_out, W_out / 2)`` with ``cv2.INTER_AREA`` (as the
evaluation sets resize frames) and the halves are concatenated. This is exactly area-resizing
the concatenated image when ``W_out`` is even (the seam falls on an output-pixel boundary, so no
output pixel mixes the two images); ``W_out`` must therefore be even.

Ground truth on the 224 grid (two equivalent routes)
----------------------------------------------------
A map column ``c`` of the output covers the same image fraction for any pixel size, so the
224x224 GT is defined in normalised coordinates and does not depend on ``size``.

From boxes (Urbansas ``[x, y, w, h]`` in ``frame_size`` units, default 1280x720)
    Boxes are first clipped horizontally to ``[0, W_f]`` (so no box leaks across the seam), then
    ``x' = x / 2 + offset`` with ``offset = 0`` (left) or ``W_f / 2`` (right), ``w' = w / 2``,
    ``y, h`` unchanged, and :func:`vssl_core.eval.metrics.gt_map_urbansas` paints them
    (``x1 = int(x' / W_f * 224)``, ``bw = int(w' / W_f * 224)``). The rescaled boxes are returned.
From maps (any ``(N, 224, 224)`` GT, e.g. Flickr consensus maps)
    Each map is resized to ``224 x 112`` by keeping its odd columns (``g[:, 1::2]``, nearest
    neighbour, values preserved) and put in its half (columns ``0:112`` or ``112:224``).

Equivalence: with ``u = x / W_f * 224`` and ``omega = w / W_f * 224`` the full-size map spans
columns ``[a, b)`` with ``a = floor(u)``, ``b = a + floor(omega)``. The box route gives
``[floor(u / 2), floor(u / 2) + floor(omega / 2))`` and the map route
``[floor(a / 2), floor(b / 2))``; the starts are equal (``floor(floor(u) / 2) = floor(u / 2)``)
and the ends differ by at most one column. Rows are identical (heights are unchanged).

Optional flow maps ``(N, h, w)`` (``w`` even) are resized like images (mean of column pairs,
i.e. area) into their half. Their values are not rescaled: a horizontal squeeze by 2 would halve
the horizontal component of the motion, which a magnitude alone cannot express.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from vssl_core.errors import data_error
from vssl_core.eval.metrics import GRID, gt_map_urbansas

if TYPE_CHECKING:
    from vssl_core.data.arrays import EvalArrays

__all__ = ["SIDES", "ConcatSet", "pair_indices", "concat_images", "concat_gt_maps",
           "concat_boxes", "concat_and_localize", "concat_dataset"]

SIDES = ("left", "right")
_HALF = GRID // 2


@dataclass(frozen=True, eq=False)
class ConcatSet:
    """Rows of a concat-and-localize set (``M = 2 * n_pairs``).

    Attributes
    ----------
    images : np.ndarray, uint8, shape (M, H_out, W_out, 3)
        Concatenated, rescaled RGB images (rows ``2k`` and ``2k + 1`` share an image).
    audio : np.ndarray, shape (M, ...)
        The audio of ``source`` (same dtype and trailing shape as the input audio).
    gts : np.ndarray, shape (M, 224, 224)
        Ground truth of ``source`` in its half: uint8 {0, 1} on the box route (binary, a
        quarter of float32's memory), float32 on the map route (consensus maps keep 0.5).
    left, right : np.ndarray, int64, shape (M,)
        Input indices of the samples shown on the left and on the right.
    source : np.ndarray, int64, shape (M,)
        Input index of the sample whose audio and GT the row carries (``left`` or ``right``).
    side : np.ndarray, str, shape (M,)
        ``"left"`` or ``"right"``: where ``source`` is.
    boxes : tuple of np.ndarray (K_m, 4) or None
        Rescaled boxes of ``source`` in ``frame_size`` units (box route only).
    flows : np.ndarray, float32, shape (M, h, w) or None
        Concatenated flow magnitudes, when flows were given.
    """

    images: np.ndarray
    audio: np.ndarray
    gts: np.ndarray
    left: np.ndarray
    right: np.ndarray
    source: np.ndarray
    side: np.ndarray
    boxes: tuple[np.ndarray, ...] | None = None
    flows: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def pairs(self, audio_sr: int) -> EvalArrays:
        """The rows as evaluation pairs (the input of every map function); ``audio_sr`` is the
        rate of :attr:`audio`. Needs the flows (pass ``flows`` to :func:`concat_and_localize`)."""
        from vssl_core.data.arrays import EvalArrays

        if self.flows is None:
            raise ValueError("the concat set has no flows: pass flows= to concat_and_localize")
        n = len(self)
        boxes = list(self.boxes) if self.boxes is not None else [np.zeros((0, 4))] * n
        return EvalArrays(np.asarray(self.side), self.source.astype(np.float64), self.images, self.flows,
                          self.audio, self.gts, boxes, None, int(audio_sr))


def pair_indices(n: int, seed: int, n_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded pairs ``(left, right)`` of distinct sample indices.

    Parameters
    ----------
    n : int
        Number of samples (>= 2).
    seed : int
        Seed of ``np.random.default_rng``.
    n_pairs : int, optional
        Number of pairs (default ``n``). Anchors are the first ``n_pairs`` entries of
        ``ceil(n_pairs / n)`` concatenated permutations, so every sample is an anchor
        ``floor`` or ``ceil(n_pairs / n)`` times.

    Returns
    -------
    left, right : np.ndarray, int64, shape (n_pairs,)
        ``left[k] != right[k]``; the anchor is on either side with probability 1/2.
    """
    if n < 2:
        raise data_error(None, "images", f"concat-and-localize needs >= 2 samples, got {n}",
                         "pass a set with at least two samples")
    n_pairs = n if n_pairs is None else int(n_pairs)
    if n_pairs < 1:
        raise data_error(None, "n_pairs", f"must be >= 1, got {n_pairs}", "pass e.g. n_pairs=500")
    rng = np.random.default_rng(seed)
    reps = -(-n_pairs // n)
    anchors = np.concatenate([rng.permutation(n) for _ in range(reps)])[:n_pairs]
    partners = (anchors + rng.integers(1, n, size=n_pairs)) % n
    anchor_left = rng.random(n_pairs) < 0.5
    left = np.where(anchor_left, anchors, partners).astype(np.int64)
    right = np.where(anchor_left, partners, anchors).astype(np.int64)
    return left, right


def _out_size(shape: tuple[int, ...], size: int | tuple[int, int] | None) -> tuple[int, int]:
    h, w = (shape[0], shape[1]) if size is None else (
        (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1])))
    if h < 1 or w < 2 or w % 2:
        raise data_error(None, "size", f"output size (H, W) = ({h}, {w}) needs an even width >= 2",
                         "pass an even width, e.g. size=224")
    return h, w


def concat_images(left: np.ndarray, right: np.ndarray,
                  size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Put two RGB images side by side and rescale (each half resized alone, ``INTER_AREA``).

    Parameters
    ----------
    left, right : np.ndarray, uint8, shape (H, W, 3)
    size : int or (H_out, W_out), optional
        Output size (default ``left``'s ``(H, W)``); ``W_out`` must be even.

    Returns
    -------
    np.ndarray, uint8, shape (H_out, W_out, 3)
    """
    h, w = _out_size(left.shape, size)
    halves = [cv2.resize(np.ascontiguousarray(im), (w // 2, h), interpolation=cv2.INTER_AREA)
              for im in (left, right)]
    return np.concatenate(halves, axis=1)


def _half_map(gt: np.ndarray) -> np.ndarray:
    return gt[..., 1::2]


def concat_gt_maps(gt: np.ndarray, side: str) -> np.ndarray:
    """Map route: a 224x224 GT resized to 224x112 (odd columns) and placed in its half.

    Parameters
    ----------
    gt : np.ndarray, shape (224, 224)
    side : {"left", "right"}

    Returns
    -------
    np.ndarray, float32, shape (224, 224)
    """
    if side not in SIDES:
        raise data_error(None, "side", f"unknown side {side!r}", f"choose one of {list(SIDES)}")
    if gt.shape != (GRID, GRID):
        raise data_error(None, "gts", f"expected a {GRID}x{GRID} map, got {gt.shape}",
                         "pass ground truths on the 224 grid")
    out = np.zeros((GRID, GRID), dtype=np.float32)
    cols = slice(0, _HALF) if side == "left" else slice(_HALF, GRID)
    out[:, cols] = _half_map(gt)
    return out


def concat_boxes(boxes: np.ndarray, side: str,
                 frame_size: tuple[float, float] = (1280, 720)) -> np.ndarray:
    """Box route: clip boxes to the frame horizontally, halve x and w, offset the right half.

    Parameters
    ----------
    boxes : np.ndarray, shape (K, 4)
        ``[x, y, w, h]`` in ``frame_size`` units; ``K`` may be 0.
    side : {"left", "right"}
    frame_size : (float, float)
        ``(W_f, H_f)`` of the boxes' frame.

    Returns
    -------
    np.ndarray, float64, shape (K, 4)
        Boxes of the concatenated image, same units.
    """
    if side not in SIDES:
        raise data_error(None, "side", f"unknown side {side!r}", f"choose one of {list(SIDES)}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    width = float(frame_size[0])
    x1 = np.clip(b[:, 0], 0.0, width)
    x2 = np.clip(b[:, 0] + b[:, 2], 0.0, width)
    b[:, 0] = x1 / 2.0 + (0.0 if side == "left" else width / 2.0)
    b[:, 2] = (x2 - x1) / 2.0
    return b


def _concat_flows(flows: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    f = np.asarray(flows, dtype=np.float32)
    if f.ndim != 3 or f.shape[2] % 2:
        raise data_error(None, "flows", f"expected (N, h, w) maps with an even w, got {f.shape}",
                         "pass flow magnitudes on the 224 grid")
    half = 0.5 * (f[:, :, 0::2] + f[:, :, 1::2])
    return np.concatenate([half[left], half[right]], axis=2)


def concat_and_localize(images: np.ndarray, audio: np.ndarray, *, gts: np.ndarray | None = None,
                        boxes: list[np.ndarray] | np.ndarray | None = None,
                        frame_size: tuple[float, float] = (1280, 720), seed: int = 0,
                        n_pairs: int | None = None, size: int | tuple[int, int] | None = None,
                        flows: np.ndarray | None = None) -> ConcatSet:
    """Build a concat-and-localize set from arrays (module docstring).

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, H, W, 3)
    audio : np.ndarray, shape (N, ...)
        E.g. ``(N, C, T)`` float32 waveforms; rows are copied unchanged.
    gts : np.ndarray, shape (N, 224, 224), optional
        Ground-truth maps (map route). Exactly one of ``gts`` and ``boxes``.
    boxes : sequence of N arrays (K_i, 4), optional
        Boxes ``[x, y, w, h]`` in ``frame_size`` units (box route); flattened rows of length
        ``4 K_i`` are accepted.
    frame_size : (float, float)
        ``(W_f, H_f)`` of the boxes (1280x720 for Urbansas).
    seed : int
        Pairing seed (:func:`pair_indices`).
    n_pairs : int, optional
        Number of pairs (default N); the set has ``2 * n_pairs`` rows.
    size : int or (H_out, W_out), optional
        Output image size (default the input ``(H, W)``); even width.
    flows : np.ndarray, shape (N, h, w), optional
        Flow magnitude maps, concatenated like the images.

    Returns
    -------
    ConcatSet
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise data_error(None, "images", f"expected uint8 (N, H, W, 3), got {images.dtype} "
                         f"{images.shape}", "pass RGB frames as uint8")
    n = images.shape[0]
    audio = np.asarray(audio)
    if audio.shape[0] != n:
        raise data_error(None, "audio", f"{audio.shape[0]} clips for {n} images",
                         "pass one audio clip per image")
    if (gts is None) == (boxes is None):
        raise data_error(None, "gts/boxes", "pass exactly one of gts (maps) and boxes",
                         "use boxes for Urbansas, gts for datasets given as maps")
    if gts is not None and np.shape(gts) != (n, GRID, GRID):
        raise data_error(None, "gts", f"expected shape ({n}, {GRID}, {GRID}), got {np.shape(gts)}",
                         "pass one 224x224 map per image")
    if boxes is not None and len(boxes) != n:
        raise data_error(None, "boxes", f"{len(boxes)} box lists for {n} images",
                         "pass one (K_i, 4) array per image")
    out_h, out_w = _out_size(images.shape[1:3], size)
    left, right = pair_indices(n, seed, n_pairs)
    m = 2 * left.size
    out_images = np.empty((m, out_h, out_w, 3), dtype=np.uint8)
    gt_out = np.empty((m, GRID, GRID), dtype=np.uint8 if boxes is not None else np.float32)
    box_out: list[np.ndarray] = []
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist())):
        img = concat_images(images[i], images[j], (out_h, out_w))
        out_images[2 * k] = img
        out_images[2 * k + 1] = img
        for r, (src, side) in enumerate(((i, "left"), (j, "right"))):
            if boxes is not None:
                b = concat_boxes(boxes[src], side, frame_size)
                box_out.append(b)
                gt_out[2 * k + r] = gt_map_urbansas(b, frame_size)
            else:
                gt_out[2 * k + r] = concat_gt_maps(np.asarray(gts[src]), side)
    row_left, row_right = np.repeat(left, 2), np.repeat(right, 2)
    side_arr = np.tile(np.array(SIDES), left.size)
    source = np.where(side_arr == "left", row_left, row_right)
    return ConcatSet(
        images=out_images, audio=audio[source], gts=gt_out, left=row_left, right=row_right,
        source=source, side=side_arr, boxes=tuple(box_out) if boxes is not None else None,
        flows=None if flows is None else _concat_flows(flows, row_left, row_right))


def concat_dataset(ds, *, use: str = "boxes", seed: int = 0, n_pairs: int | None = None,
                   size: int | tuple[int, int] | None = None, with_flow: bool = True,
                   frame_size: tuple[float, float] = (1280, 720)) -> ConcatSet:
    """:func:`concat_and_localize` on an evaluation set (a ``datasets.Dataset``).

    The columns are those of :mod:`vssl_core.data.evalset`.

    Parameters
    ----------
    ds : datasets.Dataset
        Columns ``image``, ``audio`` and ``boxes`` (``use="boxes"``) or ``gt`` (``use="gt"``);
        ``flow`` is used when present and ``with_flow``.
    use : {"boxes", "gt"}
        Ground-truth route.
    seed, n_pairs, size, frame_size
        As in :func:`concat_and_localize`.
    with_flow : bool
        Concatenate the ``flow`` column too (when the set has one).

    Returns
    -------
    ConcatSet
        ``left``, ``right`` and ``source`` index the rows of ``ds``.
    """
    from vssl_core.data.evalset import as_numpy

    if use not in ("boxes", "gt"):
        raise data_error(None, "use", f"unknown value {use!r}", "choose 'boxes' or 'gt'")
    need = ["image", "audio", use]
    missing = [c for c in need if c not in ds.column_names]
    if missing:
        raise data_error(None, ",".join(missing), f"the dataset lacks columns {missing} "
                         f"(has {ds.column_names})", "build it with vssl_core.data.evalset")
    cols = need + (["flow"] if with_flow and "flow" in ds.column_names else [])
    arr = as_numpy(ds, cols)
    kw = {"boxes": [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in arr["boxes"]]} \
        if use == "boxes" else {"gts": arr["gt"].astype(np.float32)}
    return concat_and_localize(arr["image"], arr["audio"], frame_size=frame_size, seed=seed,
                               n_pairs=n_pairs, size=size, flows=arr.get("flow"), **kw)
