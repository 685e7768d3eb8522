"""Concat-and-localize side accuracy (Oya et al., section 5): does the map pick the half whose sound it hears?

A row of a concat set (:mod:`vssl_core.data.concat`) shows two frames side by side and gives the
sound of one of them (``side``). The map's mass on each half is compared after the post-processing
the map names (:func:`vssl_core.eval.metrics.postprocess`): 1 when the heard side holds more, 0 when
less, 0.5 on a tie. A map that ignores the sound is right on exactly one of the two rows of each pair
(both sounds are given), so its mean is 0.5.

:func:`side_accuracy_interval` gives a bootstrap interval of the mean that resamples whole pairs:
rows ``2k`` and ``2k + 1`` share one concatenated image (both sounds are given), so they are not
independent.
"""
from __future__ import annotations

import numpy as np

from vssl_core.errors import data_error
from vssl_core.eval import metrics
from vssl_core.eval.bootstrap import bootstrap_ci
from vssl_core.eval.maps import LocalizationMaps

__all__ = ["side_accuracy", "kept_side_accuracy", "side_accuracy_interval"]


def side_accuracy(maps: LocalizationMaps, side: np.ndarray) -> np.ndarray:
    """Per concat row: 1 when the post-processed map has more mass on ``side``'s half, 0 when
    less, 0.5 on a tie (e.g. an all-zero map).

    Parameters
    ----------
    maps : LocalizationMaps, (M, 224, 224)
    side : np.ndarray of str, shape (M,)
        "left" or "right" (:attr:`vssl_core.data.concat.ConcatSet.side`).

    Returns
    -------
    np.ndarray, float64, shape (M,)
    """
    side = np.asarray(side).astype(str)
    if side.shape != (len(maps.maps),) or not np.isin(side, ("left", "right")).all():
        raise data_error(None, "side", f"need {len(maps.maps)} values 'left'/'right', got "
                         f"{side.shape}", "pass ConcatSet.side")
    half = maps.maps.shape[2] // 2
    left, right = np.zeros(len(side)), np.zeros(len(side))
    for start in range(0, len(side), 64):  # chunks: no (M, 224, 224) float64 copy
        m = metrics.postprocess(maps.maps[start:start + 64], maps.postprocess).astype(np.float64)
        left[start:start + 64] = m[:, :, :half].sum(axis=(1, 2))
        right[start:start + 64] = m[:, :, half:].sum(axis=(1, 2))
    good = np.where(side == "left", left - right, right - left)
    return np.where(good > 0, 1.0, np.where(good < 0, 0.0, 0.5))


def kept_side_accuracy(kept: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Per concat row, for a rule that keeps a half instead of drawing a map: 1 when it keeps
    ``side``'s half, 0 the other one, 0.5 when it keeps both (a tie), as :func:`side_accuracy`
    scores a map with all its mass on the kept half.

    Parameters
    ----------
    kept : np.ndarray of int, shape (M,)
        0 (left), 1 (right) or -1 (both), e.g.
        :func:`~vssl_core.models.loudness_rule.loudness_side`.
    side : np.ndarray of str, shape (M,)
        "left" or "right" (:attr:`vssl_core.data.concat.ConcatSet.side`).

    Returns
    -------
    np.ndarray, float64, shape (M,)
    """
    kept, side = np.asarray(kept), np.asarray(side).astype(str)
    if kept.shape != side.shape or kept.ndim != 1 or not np.isin(kept, (-1, 0, 1)).all():
        raise ValueError(f"need kept (M,) in (-1, 0, 1) and side (M,), got {kept.shape} and {side.shape}")
    if not np.isin(side, ("left", "right")).all():
        raise data_error(None, "side", "values other than 'left'/'right'", "pass ConcatSet.side")
    heard = np.where(side == "left", 0, 1)
    return np.where(kept == -1, 0.5, (kept == heard).astype(np.float64))


def side_accuracy_interval(per_row: np.ndarray, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean side accuracy, resampling concat *pairs*.

    Parameters
    ----------
    per_row : np.ndarray, shape (M,)
        :func:`side_accuracy` of the rows of a concat set, in its order: rows ``2k`` and
        ``2k + 1`` are one image heard with each of its two sounds (M even).
    n_boot : int
        Bootstrap resamples of the ``M / 2`` pairs (:func:`vssl_core.eval.bootstrap.bootstrap_ci`).
    seed : int
        Seed of ``np.random.default_rng``.
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    (lo, hi) : tuple of float
    """
    acc = np.asarray(per_row, dtype=np.float64)
    if acc.ndim != 1 or len(acc) == 0 or len(acc) % 2:
        raise ValueError(f"need the side accuracy of the 2 rows of every concat pair (even M > 0), got shape {acc.shape}")
    pairs = acc.reshape(-1, 2).mean(axis=1)  # (M / 2,): their mean is the rows' mean
    ci = bootstrap_ci(pairs, lambda x: x.mean(axis=-1), n_boot=n_boot, seed=seed, level=level)
    return ci.lo, ci.hi
