"""A no-training reference for concat-and-localize: pick the half whose motion matches the loudness.

The perfect listeners (:mod:`vssl_core.models.listeners`) know the *classes* of the heard vehicles.
On streets where nearly every sound holds a car, classes rarely tell two halves apart. This rule
knows no class at all. It hears only how loud the sound is and sees only how much each half moves:

1. ``loudness`` of each row's sound: the RMS level in dB (:func:`loudness_db`);
2. ``motion`` of each half: the mean optical-flow magnitude over that half, px per flow step;
3. both become mid-rank percentiles *within the set the rule is given* (the loudness among the rows'
   sounds, the motion among all halves), so no unit or scale has to be learned;
4. the rule keeps the half whose motion percentile is closer to the loudness percentile: a loud
   street goes with the busier half, a quiet one with the calmer half. On an exact tie it keeps both.

Its map is the flow magnitude of the kept half (the other half is 0), with the flow-only baseline's
post-processing (``"none"``), so the side accuracy and the cIoU read it like any other map.

The same two numbers, per frame instead of per half, give the rule's audio-flow retrieval: within a
batch, each sound picks the frame whose motion percentile is closest to its loudness percentile
(:func:`percentile_embedding`; FlowGrad-EN's audio-flow pair has to learn at least this much).

Conventions: the percentiles are transductive (they use every row of the set, as a naive baseline
may); images are never looked at; a row's two halves are the left and right ``W // 2`` columns of the
224-grid flow map, the layout of :func:`vssl_core.data.concat.concat_and_localize`.
"""
from __future__ import annotations

import numpy as np

from vssl_core.eval.maps import LocalizationMaps, flow_to_grid

__all__ = ["LOUDNESS_RULE", "loudness_db", "half_motion", "frame_motion", "mid_rank_percentiles", "loudness_side", "total_box_area", "kept_half_maps",
           "loudness_rule_maps", "percentile_embedding"]

#: Method name of :func:`loudness_rule_maps` in tables.
LOUDNESS_RULE = "Loudness + flow rule (no training)"
_SILENCE = 1e-12  # added to the mean square before the log: digital silence is -120 dB, not -inf


def loudness_db(audio: np.ndarray) -> np.ndarray:
    """RMS level of each waveform in dB relative to a full-scale amplitude of 1.

    Parameters
    ----------
    audio : np.ndarray, shape (N, T) or (N, C, T)
        Waveforms; channels are averaged to mono first.

    Returns
    -------
    np.ndarray, float64, shape (N,)
        ``10 * log10(mean(x ** 2) + 1e-12)``: a full-scale sine is about -3 dB.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 3:
        x = x.mean(axis=1)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"audio must be (N, T) or (N, C, T) with T > 0, got shape {np.shape(audio)}")
    return 10.0 * np.log10((x * x).mean(axis=1) + _SILENCE)


def half_motion(flow_grid: np.ndarray) -> np.ndarray:
    """Mean flow magnitude of the left and right halves, ``(M, 2)`` px/step, of ``(M, H, W)`` maps."""
    f = np.asarray(flow_grid, dtype=np.float64)
    if f.ndim != 3 or f.shape[2] < 2:
        raise ValueError(f"flow maps must be (M, H, W) with W >= 2, got shape {f.shape}")
    half = f.shape[2] // 2
    return np.stack([f[:, :, :half].mean(axis=(1, 2)), f[:, :, f.shape[2] - half:].mean(axis=(1, 2))], axis=1)


def frame_motion(flow: np.ndarray) -> np.ndarray:
    """Mean flow magnitude of each whole frame, ``(N,)`` px/step, of ``(N, H, W)`` maps (the
    per-frame counterpart of :func:`half_motion`)."""
    f = np.asarray(flow, dtype=np.float64)
    if f.ndim != 3:
        raise ValueError(f"flow maps must be (N, H, W), got shape {f.shape}")
    return f.reshape(len(f), -1).mean(axis=1)


def mid_rank_percentiles(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each of ``values`` among ``reference``, in [0, 1] (ties share the
    mean of their ranks, so equal values always get equal percentiles)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    if ref.size == 0:
        raise ValueError("the reference of a percentile needs at least one value")
    v = np.asarray(values, dtype=np.float64)
    below = np.searchsorted(ref, v, side="left")
    not_above = np.searchsorted(ref, v, side="right")
    return (below + not_above) / (2.0 * ref.size)


def loudness_side(loudness: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Which half the rule keeps: 0 (left), 1 (right) or -1 (an exact tie: both).

    Parameters
    ----------
    loudness : np.ndarray, shape (M,)
        Each row's sound level (:func:`loudness_db`).
    motion : np.ndarray, shape (M, 2)
        Each row's left and right motion (:func:`half_motion`), or any other statistic of the two
        halves that should grow with the loudness (e.g. :func:`total_box_area` of what each half
        shows): only its ranks are used.
    """
    loudness = np.asarray(loudness, dtype=np.float64)
    motion = np.asarray(motion, dtype=np.float64)
    if loudness.ndim != 1 or motion.shape != (len(loudness), 2):
        raise ValueError(f"need loudness (M,) and motion (M, 2), got {loudness.shape} and {motion.shape}")
    heard = mid_rank_percentiles(loudness, loudness)  # (M,)
    seen = mid_rank_percentiles(motion, motion)  # (M, 2)
    distance = np.abs(seen - heard[:, None])  # (M, 2)
    return np.where(distance[:, 0] < distance[:, 1], 0, np.where(distance[:, 1] < distance[:, 0], 1, -1))


def total_box_area(boxes) -> np.ndarray:
    """Summed area of each frame's boxes, ``(N,)`` float64 in squared box units (0 for no box).

    Parameters
    ----------
    boxes : sequence of N array-likes, each (K_i, 4)
        ``[x, y, w, h]`` boxes (Urbansas layout); ``K_i`` may be 0.
    """
    out = np.zeros(len(boxes))
    for i, frame in enumerate(boxes):
        b = np.asarray(frame, dtype=np.float64).reshape(-1, 4)
        out[i] = float((b[:, 2] * b[:, 3]).sum())
    return out


def kept_half_maps(flow: np.ndarray, side: np.ndarray) -> LocalizationMaps:
    """The flow magnitude of the half :func:`loudness_side` keeps, 0 on the other half.

    Parameters
    ----------
    flow : np.ndarray, shape (M, H, W)
        Concatenated flow magnitudes, px/step.
    side : np.ndarray of int, shape (M,)
        0 (left), 1 (right) or -1 (both).

    Returns
    -------
    LocalizationMaps, (M, 224, 224), ``postprocess="none"`` (the flow-only baseline's rule).
    """
    grid = flow_to_grid(flow)  # (M, 224, 224) px/step
    side = np.asarray(side)
    if side.shape != (len(grid),) or not np.isin(side, (-1, 0, 1)).all():
        raise ValueError(f"side must hold {len(grid)} values in (-1, 0, 1), got shape {side.shape}")
    half = grid.shape[2] // 2
    columns = np.arange(grid.shape[2])[None, :]  # (1, 224)
    keep = np.where(side[:, None] == 0, columns < half,
                    np.where(side[:, None] == 1, columns >= grid.shape[2] - half, True))  # (M, 224)
    return LocalizationMaps((grid * keep[:, None, :]).astype(np.float32), "none", "loudness_rule")


def loudness_rule_maps(cat) -> LocalizationMaps:
    """The rule's maps for all the rows of a concat set at once (the percentiles need every row).

    Parameters
    ----------
    cat : EvalArrays
        Concat-and-localize rows (:meth:`vssl_core.data.concat.ConcatSet.pairs`): their ``audio``
        (the heard sound of each row) and ``flow`` (the concatenated flow magnitudes) are used.

    Returns
    -------
    LocalizationMaps, (M, 224, 224): :func:`kept_half_maps` of :func:`loudness_side`.
    """
    if len(cat.flow) != len(cat.audio):
        raise ValueError(f"{len(cat.audio)} sounds for {len(cat.flow)} flow maps")
    return kept_half_maps(cat.flow, loudness_side(loudness_db(cat.audio), half_motion(cat.flow)))


def percentile_embedding(percentiles: np.ndarray) -> np.ndarray:
    """Percentiles as points on a half circle, ``(N, 2) = (cos(pi p), sin(pi p))``.

    The cosine of two such points is ``cos(pi (p_a - p_b))``, which falls as ``|p_a - p_b|`` grows:
    ranking by cosine is the rule's "closer percentile", so the rule can be scored by the same
    retrieval functions as the models' embeddings (:mod:`vssl_core.eval.retrieval`).
    """
    p = np.asarray(percentiles, dtype=np.float64)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"need percentiles in [0, 1] of shape (N,), got shape {p.shape}")
    return np.stack([np.cos(np.pi * p), np.sin(np.pi * p)], axis=1)
