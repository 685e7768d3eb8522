"""Scoring many methods' maps on the same samples: results, table columns and paired gaps.

Every study scores the same way: each method's :class:`~vssl_core.eval.maps.LocalizationMaps`
with the post-processing it names, cIoU at a cut-off ``at`` (pixel threshold 0.5) and AUC, with
95% percentile-bootstrap intervals (:func:`vssl_core.eval.metrics.evaluate`). Methods come one at
a time as ``(name, maps)`` streams so that only one method's maps are alive at once
(:func:`score_stream`), or chunk by chunk of samples (:func:`score_chunked`) so memory stays flat
whatever the number of samples. Differences between two methods on the same samples are paired
bootstraps (:func:`paired_gaps`, :func:`paired_table`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from vssl_core.eval import metrics
from vssl_core.eval.bootstrap import PairedBootstrap, paired_bootstrap
from vssl_core.eval.claims import verdict
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import EvalResult

__all__ = ["score", "score_stream", "score_chunked", "result_columns", "cutoff_columns", "paired_gaps",
           "paired_table"]

Stream = Iterable[tuple[str, LocalizationMaps]]


def score(maps: Mapping[str, LocalizationMaps], gt: np.ndarray, at: float = 0.3,
          n_boot: int = 1000, seed: int = 0) -> dict[str, EvalResult]:
    """Per-method cIoU (pixel threshold 0.5, cut-off ``at``) and AUC with bootstrap CIs."""
    return score_stream(maps.items(), gt, at=at, n_boot=n_boot, seed=seed)[0]


def score_stream(stream: Stream, gt: np.ndarray, at: float = 0.3, n_boot: int = 1000, seed: int = 0,
                 per_map: Callable[[LocalizationMaps], np.ndarray] | None = None,
                 keep: Sequence[str] = ()) -> tuple[dict[str, EvalResult], dict[str, np.ndarray],
                                                     dict[str, LocalizationMaps]]:
    """Score maps as they come and drop them: bounded memory for many methods on many samples.

    Returns the results per method, ``per_map(maps)`` per method when given (else an empty
    dict), and the maps of the methods named in ``keep``.
    """
    results: dict[str, EvalResult] = {}
    extra: dict[str, np.ndarray] = {}
    kept: dict[str, LocalizationMaps] = {}
    for name, maps in stream:
        results[name] = metrics.evaluate(maps.maps, gt, postprocess=maps.postprocess, at=at,
                                         n_boot=n_boot, seed=seed)
        if per_map is not None:
            extra[name] = per_map(maps)
        if name in keep:
            kept[name] = maps
        del maps
    return results, extra, kept


def score_chunked(make_stream: Callable[[slice], Stream], gt: np.ndarray, at: float = 0.3,
                  n_boot: int = 1000, seed: int = 0,
                  per_map: Callable[[LocalizationMaps, slice], np.ndarray] | None = None,
                  keep: Sequence[str] = (), keep_rows: Sequence[int] = (),
                  chunk: int = 128) -> tuple[dict[str, EvalResult], dict[str, np.ndarray],
                                             dict[str, LocalizationMaps]]:
    """:func:`score_stream` on ``chunk`` samples at a time: memory bounded by one chunk.

    ``make_stream(rows)`` yields ``(name, maps)`` for the samples ``rows`` (a slice of the
    ``len(gt)`` samples), the same names in the same order for every chunk. Per-sample cIoUs
    are gathered over the chunks and scored once (:func:`vssl_core.eval.metrics.score_cious`),
    so the results equal scoring every map at once whenever each map depends on its own sample
    only (every method here: per-sample Grad-CAM, flow, post-processing).

    Parameters
    ----------
    per_map : callable (maps, rows) -> (len(rows),) array, optional
        A per-sample value besides the cIoU (e.g. side accuracy), gathered like it.
    keep, keep_rows
        Maps of the methods named in ``keep`` are kept for the samples ``keep_rows`` only
        (in that order), e.g. the rows of an example figure.
    chunk : int
        Samples per chunk (128: ~25 MB per method's 224 x 224 float32 maps).

    Returns
    -------
    results, per-map values, kept maps : as :func:`score_stream`.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n = len(gt)
    threshold = metrics.pixel_threshold(at)
    cious: dict[str, list[np.ndarray]] = {}
    extra: dict[str, list[np.ndarray]] = {}
    post: dict[str, str] = {}
    wanted = np.asarray(keep_rows, dtype=int)
    kept_parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in keep}
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        inside = wanted[(wanted >= rows.start) & (wanted < rows.stop)]
        for name, maps in make_stream(rows):
            cious.setdefault(name, []).append(
                metrics.ciou(maps.maps, gt[rows], postprocess=maps.postprocess, threshold=threshold))
            post[name] = maps.postprocess
            if per_map is not None:
                extra.setdefault(name, []).append(np.asarray(per_map(maps, rows)))
            if name in kept_parts and inside.size:
                kept_parts[name].append((inside, np.array(maps.maps[inside - rows.start])))
            del maps
    results = {name: metrics.score_cious(np.concatenate(v), at=at, n_boot=n_boot, seed=seed,
                                         postprocess=post[name]) for name, v in cious.items()}
    kept = {}
    for name, parts in kept_parts.items():
        if parts:
            idx = np.concatenate([i for i, _ in parts])
            maps = np.concatenate([m for _, m in parts])
            order = [int(np.flatnonzero(idx == r)[0]) for r in wanted]
            kept[name] = LocalizationMaps(maps[order], post[name], name)
    return results, {k: np.concatenate(v) for k, v in extra.items()}, kept


def cutoff_columns(r: EvalResult, cutoff: float, prefix: str = "") -> dict[str, float]:
    """``cIoU@cutoff`` with its bootstrap CI (same resamples, seed and level as ``r``), as the
    columns ``cIoU@<cutoff>``, ``_lo``, ``_hi``: a second cut-off beside the one ``r`` was scored at."""
    fr = metrics.bootstrap_ci(r.cious, metrics.CIoUAt(cutoff), n_boot=r.n_boot, seed=r.seed, level=r.level)
    c = f"{prefix}cIoU@{cutoff:g}"
    return {c: fr.estimate, f"{c}_lo": fr.lo, f"{c}_hi": fr.hi}


def result_columns(r: EvalResult, prefix: str = "", extra_cutoff: float | None = None) -> dict[str, float]:
    """The table columns of one result: cIoU at its cut-off with CI, optionally cIoU at
    ``extra_cutoff`` (when it differs), then AUC with CI; every name starts with ``prefix``."""
    c = f"{prefix}cIoU@{r.cutoff:g}"
    row = {c: r.ciou, f"{c}_lo": r.ciou_lo, f"{c}_hi": r.ciou_hi}
    if extra_cutoff is not None and extra_cutoff != r.cutoff:
        row.update(cutoff_columns(r, extra_cutoff, prefix))
    row.update({f"{prefix}AUC": r.auc, f"{prefix}AUC_lo": r.auc_lo, f"{prefix}AUC_hi": r.auc_hi})
    return row


def paired_gaps(a: EvalResult, b: EvalResult, n_boot: int = 1000, seed: int = 0
                ) -> dict[str, PairedBootstrap]:
    """Paired bootstrap of ``a - b`` (same samples, same order) for cIoU at ``a``'s cut-off and
    AUC: ``{"cIoU@<a>": ..., "AUC": ...}``."""
    if len(a.cious) != len(b.cious):
        raise ValueError(f"paired gaps need the same samples: {len(a.cious)} vs {len(b.cious)}")
    return {name: paired_bootstrap(a.cious, b.cious, stat, n_boot=n_boot, seed=seed)
            for name, stat in ((f"cIoU@{a.cutoff:g}", metrics.CIoUAt(a.cutoff)), ("AUC", metrics.AUC()))}


def paired_table(results: Mapping[str, EvalResult], comparisons: Sequence[tuple[str, str]],
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per comparison ``A - B`` and metric (cIoU at A's cut-off, AUC): the paired
    difference, its 95% interval, p-value and :func:`vssl_core.eval.claims.verdict` ("A beats B"
    reproduced only when the interval excludes 0 and the difference is at least 0.02);
    comparisons naming a missing method are skipped."""
    rows = []
    for a, b in comparisons:
        if a not in results or b not in results:
            continue
        for metric, pb in paired_gaps(results[a], results[b], n_boot, seed).items():
            rows.append({"comparison": f"{a} - {b}", "metric": metric, "difference": pb.diff,
                         "lo": pb.lo, "hi": pb.hi, "p_value": pb.p_value,
                         "CI excludes 0": bool(pb.lo > 0 or pb.hi < 0),
                         "verdict": verdict(pb.lo, pb.hi, pb.diff)})
    return pd.DataFrame(rows)
