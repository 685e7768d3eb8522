"""Seeded, vectorised bootstrap for dataset-level statistics of per-sample scores.

Conventions
-----------
- A *statistic* is a callable ``f(values) -> stat`` that reduces the **last** axis and keeps
  any leading axes: ``f(x)`` for ``x`` of shape ``(B, N)`` returns shape ``(B,)``. The
  dataset-level metrics of :mod:`vssl_core.eval.metrics` (``ciou_at`` via ``functools.partial``,
  ``auc``) follow this rule, so one call scores a whole block of resamples.
- Resampling draws one ``(n_boot, N)`` index matrix from ``np.random.default_rng(seed)``; the
  same seed gives the same matrix and therefore the same bytes. The statistic is then
  evaluated on blocks of rows (``block`` resamples at a time) to bound memory; the blocking
  does not change the result.
- Confidence intervals are percentile intervals (``np.percentile``, linear interpolation) at
  ``(1 - level) / 2`` and ``(1 + level) / 2``.
- Fast path: a statistic that also has a method ``resampled(values, rows)`` (``rows`` of shape
  ``(B, N)``: the sample indices of ``B`` resamples) scores them its own way; it must return
  exactly what ``statistic(values[rows])`` returns. ``metrics.CIoUAt`` and ``metrics.AUC`` map
  each value once to a one-byte threshold level and count the gathered levels, instead of
  gathering and comparing float64 copies (``benchmarks/bench_metrics.py`` prints the ratio).
- NaN values (e.g. an empty ground truth *and* an empty prediction, see
  :mod:`vssl_core.eval.metrics`) are resampled like any other value; the statistic decides what
  they mean.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vssl_core.errors import data_error

Statistic = Callable[[np.ndarray], np.ndarray]

#: Resamples scored per call of the statistic (bounds memory to ``block * N`` values).
DEFAULT_BLOCK = 256


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its percentile bootstrap interval.

    Attributes
    ----------
    estimate : float
        The statistic on the original sample.
    lo, hi : float
        Percentile interval bounds (NaN when ``n_boot == 0``).
    n_boot : int
        Number of resamples.
    level : float
        Coverage of the interval, e.g. 0.95.
    seed : int
        Seed of the index matrix.
    """

    estimate: float
    lo: float
    hi: float
    n_boot: int
    level: float
    seed: int


@dataclass(frozen=True)
class PairedBootstrap:
    """Difference ``statistic(a) - statistic(b)`` of two methods scored on the same samples.

    Attributes
    ----------
    diff : float
        ``statistic(a) - statistic(b)`` on the original samples.
    lo, hi : float
        Percentile interval of the resampled differences (same indices for ``a`` and ``b``).
    p_value : float
        Two-sided bootstrap p-value for "no difference":
        ``min(1, 2 * min((1 + #{d* <= 0}) / (n_boot + 1), (1 + #{d* >= 0}) / (n_boot + 1)))``,
        where ``d*`` are the resampled differences. Its resolution is ``2 / (n_boot + 1)``;
        identical methods give 1.
    n_boot : int
    level : float
    seed : int
    """

    diff: float
    lo: float
    hi: float
    p_value: float
    n_boot: int
    level: float
    seed: int


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The bootstrap index matrix.

    Parameters
    ----------
    n : int
        Number of samples (>= 1).
    n_boot : int
        Number of resamples (>= 0).
    seed : int
        Seed of ``np.random.default_rng``.

    Returns
    -------
    np.ndarray, int64, shape (n_boot, n)
        Row ``b`` holds the sample indices of resample ``b`` (drawn with replacement).
    """
    if n < 1:
        raise data_error(None, "values", "cannot bootstrap an empty sample",
                         "pass at least one per-sample score")
    if n_boot < 0:
        raise data_error(None, "n_boot", f"must be >= 0, got {n_boot}", "pass e.g. n_boot=1000")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n), dtype=np.int64)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise data_error(None, "level", f"must lie in (0, 1), got {level}", "pass e.g. level=0.95")


def _as_values(values: np.ndarray, field: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise data_error(None, field, f"expected a 1-D array of per-sample scores, got shape "
                         f"{arr.shape}", "pass one score per sample, shape (N,)")
    return arr


def bootstrap_distribution(values: np.ndarray, statistic: Statistic, n_boot: int = 1000,
                           seed: int = 0, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """The statistic on each of ``n_boot`` resamples.

    Parameters
    ----------
    values : np.ndarray, shape (N,)
        Per-sample scores.
    statistic : callable
        Reduces the last axis, keeps leading axes (see the module docstring).
    n_boot, seed : int
        Number of resamples and seed of the index matrix.
    block : int
        Resamples scored per call of ``statistic`` (memory bound; no effect on the values).

    Returns
    -------
    np.ndarray, float64, shape (n_boot,)
    """
    values = _as_values(values, "values")
    idx = resample_indices(values.size, n_boot, seed)
    return _distribution(values, idx, statistic, block)


def _distribution(values: np.ndarray, idx: np.ndarray, statistic: Statistic,
                  block: int) -> np.ndarray:
    out = np.empty(idx.shape[0], dtype=np.float64)
    resampled = getattr(statistic, "resampled", None)
    for start in range(0, idx.shape[0], max(1, block)):
        rows = idx[start:start + block]
        stat = resampled(values, rows) if resampled is not None else statistic(values[rows])
        out[start:start + rows.shape[0]] = np.asarray(stat, dtype=np.float64)
    return out


def _percentiles(dist: np.ndarray, level: float) -> tuple[float, float]:
    if dist.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(dist, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    return float(lo), float(hi)


def bootstrap_ci(values: np.ndarray, statistic: Statistic, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, block: int = DEFAULT_BLOCK) -> BootstrapCI:
    """Percentile bootstrap confidence interval of ``statistic(values)``.

    Parameters
    ----------
    values : np.ndarray, shape (N,)
        Per-sample scores (e.g. per-sample cIoU).
    statistic : callable
        E.g. ``functools.partial(metrics.ciou_at, at=0.3)`` or ``metrics.auc``.
    n_boot : int
        Number of resamples; 0 gives NaN bounds.
    seed : int
        Seed of the index matrix (same seed, same interval).
    level : float
        Coverage, in (0, 1).

    Returns
    -------
    BootstrapCI
    """
    _check_level(level)
    values = _as_values(values, "values")
    estimate = float(np.asarray(statistic(values)))
    dist = _distribution(values, resample_indices(values.size, n_boot, seed), statistic, block)
    lo, hi = _percentiles(dist, level)
    return BootstrapCI(estimate=estimate, lo=lo, hi=hi, n_boot=n_boot, level=level, seed=seed)


def paired_bootstrap(values_a: np.ndarray, values_b: np.ndarray, statistic: Statistic,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                     block: int = DEFAULT_BLOCK) -> PairedBootstrap:
    """Paired bootstrap of ``statistic(a) - statistic(b)`` for two methods on the same samples.

    Both methods are resampled with the *same* index matrix, so per-sample difficulty cancels.

    Parameters
    ----------
    values_a, values_b : np.ndarray, shape (N,)
        Per-sample scores of methods A and B, sample ``i`` the same in both.
    statistic : callable
        Reduces the last axis (see the module docstring).
    n_boot, seed, level, block
        As in :func:`bootstrap_ci`.

    Returns
    -------
    PairedBootstrap
        ``diff`` (A minus B), its percentile interval and a two-sided p-value.
    """
    _check_level(level)
    a = _as_values(values_a, "values_a")
    b = _as_values(values_b, "values_b")
    if a.shape != b.shape:
        raise data_error(None, "values_b", f"shape {b.shape} differs from values_a {a.shape}",
                         "score both methods on the same samples in the same order")
    diff = float(np.asarray(statistic(a)) - np.asarray(statistic(b)))
    idx = resample_indices(a.size, n_boot, seed)
    dist = _distribution(a, idx, statistic, block) - _distribution(b, idx, statistic, block)
    lo, hi = _percentiles(dist, level)
    if n_boot == 0:
        p = float("nan")
    else:
        below = (1 + np.count_nonzero(dist <= 0)) / (n_boot + 1)
        above = (1 + np.count_nonzero(dist >= 0)) / (n_boot + 1)
        p = float(min(1.0, 2.0 * min(below, above)))
    return PairedBootstrap(diff=diff, lo=lo, hi=hi, p_value=p, n_boot=n_boot, level=level,
                           seed=seed)
