"""Checking a paper's claims: "A beats B" with a bootstrap interval of the difference.

A :class:`Claim` says that method ``better`` scores higher than method ``worse`` (both keys of
a dict of :class:`~vssl_core.eval.metrics.EvalResult`). :func:`check_claims` measures
``statistic(better) - statistic(worse)`` with a 95% interval:

- a **paired** bootstrap when both were scored on the same samples (same ``n``; the caller
  guarantees the order), so per-sample difficulty cancels;
- an **independent** bootstrap of each side otherwise (e.g. two synthetic datasets that differ
  in the camera shake).

Verdicts (:func:`verdict`): ``"reproduced"`` when the interval lies above 0 **and** the difference
is at least :data:`MIN_EFFECT` (0.02: two points of cIoU or AUC); ``"opposite"`` when the interval
lies below 0 and the difference is at most ``-MIN_EFFECT``; ``"too small to matter"`` when the
interval excludes 0 but the difference is smaller than that; ``"not resolved"`` when the interval
contains 0 (more samples, seeds or epochs may settle it). The notebooks' prose uses the same rule.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vssl_core.eval import metrics
from vssl_core.eval.bootstrap import paired_bootstrap, resample_indices
from vssl_core.eval.metrics import EvalResult

__all__ = ["Claim", "MIN_EFFECT", "verdict", "check_claims"]

#: The smallest difference (cIoU or AUC) that counts as an effect worth reporting.
MIN_EFFECT = 0.02


@dataclass(frozen=True)
class Claim:
    """``better`` scores higher than ``worse``, as the paper states in ``paper``.

    Attributes
    ----------
    text : str
        The claim in words.
    better, worse : str
        Keys of the results.
    paper : str
        What the paper reports (numbers or a quote), shown beside our finding.
    """

    text: str
    better: str
    worse: str
    paper: str = ""


def verdict(lo: float, hi: float, diff: float | None = None, min_effect: float = MIN_EFFECT) -> str:
    """The verdict on a difference with interval ``[lo, hi]`` (see the module docstring).

    Without ``diff`` only the interval is judged (the midpoint stands for the difference)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not resolved"
    d = (lo + hi) / 2 if diff is None else float(diff)
    if lo > 0:
        return "reproduced" if d >= min_effect else "too small to matter"
    if hi < 0:
        return "opposite" if d <= -min_effect else "too small to matter"
    return "not resolved"


def _independent(a: np.ndarray, b: np.ndarray, stat, n_boot: int, seed: int, level: float
                 ) -> tuple[float, float, float]:
    da = np.asarray(stat(a[resample_indices(len(a), n_boot, seed)]))
    db = np.asarray(stat(b[resample_indices(len(b), n_boot, seed + 1)]))
    dist = da - db
    q = (1 - level) / 2 * 100
    return float(stat(a) - stat(b)), float(np.percentile(dist, q)), float(np.percentile(dist, 100 - q))


def check_claims(results: Mapping[str, EvalResult], claims: Sequence[Claim], metric: str = "cIoU",
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per claim: the difference ``better - worse`` of ``metric`` ("cIoU" at each
    result's cut-off, or "AUC"), its interval, how it was computed, and the verdict.

    Raises
    ------
    KeyError
        A claim names a result that is not in ``results``.
    """
    rows = []
    for c in claims:
        for key in (c.better, c.worse):
            if key not in results:
                raise KeyError(f"claim {c.text!r} names {key!r}, not among the results {sorted(results)}")
        a, b = results[c.better], results[c.worse]
        stat = metrics.CIoUAt(a.cutoff) if metric == "cIoU" else metrics.AUC()
        ca, cb = np.nan_to_num(a.cious), np.nan_to_num(b.cious)
        if len(ca) == len(cb):
            pb = paired_bootstrap(ca, cb, stat, n_boot=n_boot, seed=seed, level=level)
            diff, lo, hi, how = pb.diff, pb.lo, pb.hi, "paired"
        else:
            diff, lo, hi = _independent(ca, cb, stat, n_boot, seed, level)
            how = "independent"
        name = f"cIoU@{a.cutoff:g}" if metric == "cIoU" else "AUC"
        rows.append({"claim": c.text, "paper": c.paper, "metric": name, "difference": diff,
                     "lo": lo, "hi": hi, "bootstrap": how, "verdict": verdict(lo, hi, diff)})
    return pd.DataFrame(rows)
