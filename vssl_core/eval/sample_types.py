"""Type A / Type B samples (Oya et al., section 4.3) from the synthetic generator's object table.

Definitions
-----------
Oya et al. call a sample **Type A** when every object capable of producing sound is actually
producing sound, and **Type B** when only some of them are. On the synthetic Urbansas-layout data
(``annotations/objects.csv``, :mod:`vssl_core.data.synth`) the sound-capable objects are the
vehicles, and a sample ``(clip, time)`` is classified from the rows of that clip at that time:

- a *visible vehicle* is a row with ``label`` in :data:`VEHICLE_LABELS` (car, bus, truck,
  motorbike) and ``visible_fraction >= min_visible`` (0.5: the threshold of the ``visibility``
  flag of the video annotations). In the generator ``visible_fraction`` is the unoccluded share
  of the *in-frame part* of the box (0 when no part is in the frame), so, like the annotators'
  flag, it ignores how much of the vehicle is cut by the frame edge: a vehicle with a sliver in
  the frame counts. ``min_inframe > 0`` additionally asks that share of the box ``x, y, w, h``
  to lie inside the ``frame_size`` frame (default 0: the annotators' notion, as the ground-truth
  boxes of the sounding vehicles are kept the same way);
- ``"A"``: at least one visible vehicle and all of them have ``sounding == 1``;
- ``"B"``: at least one visible vehicle has ``sounding == 0`` (in the generator: a parked
  vehicle);
- ``"none"``: no visible vehicle (only pedestrians, trees, offscreen or mostly hidden vehicles).
  Such samples have no box either, so they rarely appear in an evaluation set; they are reported,
  never silently merged into A.

``sounding`` is a per-clip flag in the generator; a sounding vehicle's event covers every time it
is in the frame (:func:`vssl_core.data.synth_scene.audible_interval`), so the flag also holds at
every visible time. Pedestrians (footsteps) and offscreen vehicles are ignored: the type is about
visible sound-capable *vehicles*.

Per-type evaluation
-------------------
:func:`evaluate_by_type` scores per-sample cIoUs of several methods separately on the A and B
samples (cIoU@``at`` and AUC with percentile bootstrap intervals, :mod:`vssl_core.eval.metrics`) and the
gap ``stat(A) - stat(B)`` with an *unpaired* bootstrap: the A and B samples are resampled
independently, each within its own type (different samples, so no pairing exists).
:func:`method_gap_by_type` gives the paper's Table 4 "performance gap" instead: two methods
(localisation map minus potential map) on the same samples of one type, a *paired* bootstrap.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from vssl_core.eval.bootstrap import bootstrap_ci, bootstrap_distribution, paired_bootstrap
from vssl_core.errors import data_error
from vssl_core.eval.metrics import auc, ciou_at

__all__ = ["VEHICLE_LABELS", "TYPES", "REQUIRED_COLUMNS", "sample_types", "evaluate_by_type",
           "method_gap_by_type"]

VEHICLE_LABELS = ("car", "bus", "truck", "motorbike")
TYPES = ("A", "B", "none")
REQUIRED_COLUMNS = ("filename", "time", "label", "sounding", "visible_fraction")
_OBJECTS = "annotations/objects.csv"


def sample_types(objects: pd.DataFrame, keys: Sequence[tuple[str, float]], *,
                 min_visible: float = 0.5, min_inframe: float = 0.0,
                 frame_size: tuple[float, float] = (1280, 720), time_tol: float = 1e-3,
                 missing: str = "error", file: str = _OBJECTS) -> np.ndarray:
    """Type ``"A"``, ``"B"`` or ``"none"`` of each sample ``(clip, time)`` (module docstring).

    Parameters
    ----------
    objects : pandas.DataFrame
        The generator's object table; needs :data:`REQUIRED_COLUMNS` (``filename`` = clip name,
        ``time`` in seconds on the 2-fps grid).
    keys : sequence of (str, float)
        Samples ``(clip, time)``, e.g. ``zip(ds["clip"], ds["time"])`` of an evaluation set.
    min_visible : float
        A vehicle is in view when ``visible_fraction >= min_visible``.
    min_inframe : float
        And (when > 0) when at least this share of its box ``x, y, w, h`` lies inside the frame;
        needs the columns ``x, y, w, h`` (empty for offscreen vehicles: not in view).
    frame_size : (float, float)
        ``(W, H)`` of the boxes' frame (the 1280x720 annotation frame).
    time_tol : float
        Rows match a key when ``|time - t| <= time_tol`` seconds.
    missing : {"error", "none"}
        What to do with a key that matches no row at all (a clip/time the table does not know):
        raise a :class:`~vssl_core.errors.DataError` (default) or call it ``"none"``.
    file : str
        Name of the table for error messages.

    Returns
    -------
    np.ndarray of str, shape (len(keys),)
        ``"A"``, ``"B"`` or ``"none"`` per key, in key order.
    """
    if missing not in ("error", "none"):
        raise data_error(None, "missing", f"unknown value {missing!r}", "choose 'error' or 'none'")
    absent = [c for c in REQUIRED_COLUMNS if c not in objects.columns]
    if absent:
        raise data_error(file, ",".join(absent), f"the object table lacks columns {absent} "
                         f"(has {list(objects.columns)})",
                         "pass the generator's annotations/objects.csv "
                         "(python -m vssl_core synth writes it)")
    times = pd.to_numeric(objects["time"], errors="coerce").to_numpy(np.float64)
    vis = pd.to_numeric(objects["visible_fraction"], errors="coerce").fillna(0.0).to_numpy()
    sounding = pd.to_numeric(objects["sounding"], errors="coerce")
    if np.isnan(times).any() or sounding.isna().any():
        raise data_error(file, "time/sounding", "non-numeric or empty values",
                         "time must be seconds and sounding 0 or 1 in every row")
    sounding = sounding.to_numpy()
    vehicle = objects["label"].astype(str).isin(VEHICLE_LABELS).to_numpy() & (vis >= min_visible)
    if min_inframe > 0:
        vehicle &= _inframe(objects, frame_size, file) >= min_inframe
    by_clip: dict[str, np.ndarray] = {
        str(c): idx for c, idx in objects.groupby(objects["filename"].astype(str)).indices.items()}
    out = np.empty(len(keys), dtype="<U4")
    unknown: list[tuple[str, float]] = []
    for n, (clip, t) in enumerate(keys):
        rows = by_clip.get(str(clip), np.empty(0, dtype=np.int64))
        rows = rows[np.abs(times[rows] - float(t)) <= time_tol]
        if rows.size == 0:
            unknown.append((str(clip), float(t)))
            out[n] = "none"
            continue
        rows = rows[vehicle[rows]]
        out[n] = "none" if rows.size == 0 else ("A" if (sounding[rows] == 1).all() else "B")
    if unknown and missing == "error":
        raise data_error(file, "filename/time", f"{len(unknown)} samples have no row, e.g. "
                         f"{unknown[:3]}", "use the object table of the same synthetic dataset "
                         "as the evaluation set, or pass missing='none'")
    return out


def _inframe(objects: pd.DataFrame, frame_size: tuple[float, float], file: str) -> np.ndarray:
    """Share of each row's box ``x, y, w, h`` inside the frame (0 for empty boxes)."""
    absent = [c for c in ("x", "y", "w", "h") if c not in objects.columns]
    if absent:
        raise data_error(file, ",".join(absent), f"min_inframe > 0 needs the box columns {absent}",
                         "pass the generator's objects.csv or leave min_inframe=0")
    x, y, w, h = (pd.to_numeric(objects[c], errors="coerce").to_numpy(np.float64)
                  for c in ("x", "y", "w", "h"))
    width, height = (float(v) for v in frame_size)
    iw = np.clip(np.minimum(x + w, width) - np.maximum(x, 0.0), 0.0, None)
    ih = np.clip(np.minimum(y + h, height) - np.maximum(y, 0.0), 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = iw * ih / (w * h)
    return np.nan_to_num(frac, nan=0.0, posinf=0.0)


def _stats(at: float) -> dict[str, Callable[[np.ndarray], np.ndarray | float]]:
    return {f"cIoU@{at:g}": functools.partial(ciou_at, at=at), "AUC": auc}


def _check_types(types: Sequence[str] | np.ndarray) -> np.ndarray:
    arr = np.asarray(types).astype(str)
    bad = sorted(set(arr.tolist()) - set(TYPES))
    if bad:
        raise data_error(None, "types", f"unknown types {bad}", f"use {list(TYPES)}")
    return arr


def _check_values(values: np.ndarray, types: np.ndarray, field: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.shape != types.shape:
        raise data_error(None, field, f"shape {v.shape} != types {types.shape}",
                         "pass one cIoU per sample in the order of types")
    return v


def evaluate_by_type(cious: Mapping[str, np.ndarray], types: Sequence[str] | np.ndarray, *,
                     at: float = 0.3, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """Per-type scores of several methods and the A - B gap, one row per (method, type).

    Parameters
    ----------
    cious : mapping str -> np.ndarray, shape (N,)
        Per-sample cIoU of each method (NaN = empty sample, counted as a miss as in
        :mod:`vssl_core.eval.metrics`), all in the order of ``types``.
    types : sequence of str, shape (N,)
        ``"A"``, ``"B"`` or ``"none"`` (:func:`sample_types`); ``"none"`` samples are scored as a
        type of their own when present.
    at : float
        Cut-off on per-sample cIoU (0.3 for Urbansas).
    n_boot, seed, level
        Bootstrap resamples (0: NaN bounds), seed and coverage. Every type is resampled with
        ``seed``; in the gap, A uses ``seed`` and B ``seed + 1`` (independent resamples).

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``type`` (``"A"``, ``"B"``, ``"none"``, or ``"A-B"`` for the gap
        ``stat(A) - stat(B)``), ``n`` (samples; ``n_A + n_B`` for the gap), ``cIoU@<at>``,
        ``cIoU@<at>_lo``, ``cIoU@<at>_hi``, ``AUC``, ``AUC_lo``, ``AUC_hi`` (percentile
        bootstrap bounds). Types without samples are left out; the gap row needs both A and B.
    """
    types = _check_types(types)
    stats = _stats(at)
    rows = []
    for method, values in cious.items():
        v = _check_values(values, types, f"cious[{method!r}]")
        for t in TYPES:
            sel = v[types == t]
            if sel.size == 0:
                continue
            row: dict[str, object] = {"method": method, "type": t, "n": int(sel.size)}
            for name, stat in stats.items():
                ci = bootstrap_ci(sel, stat, n_boot=n_boot, seed=seed, level=level)
                row.update({name: ci.estimate, f"{name}_lo": ci.lo, f"{name}_hi": ci.hi})
            rows.append(row)
        a, b = v[types == "A"], v[types == "B"]
        if a.size and b.size:
            row = {"method": method, "type": "A-B", "n": int(a.size + b.size)}
            for name, stat in stats.items():
                lo = hi = float("nan")
                if n_boot:
                    dist = (bootstrap_distribution(a, stat, n_boot=n_boot, seed=seed)
                            - bootstrap_distribution(b, stat, n_boot=n_boot, seed=seed + 1))
                    lo, hi = (float(q) for q in
                              np.percentile(dist, [50.0 * (1 - level), 50.0 * (1 + level)]))
                row.update({name: float(stat(a)) - float(stat(b)), f"{name}_lo": lo,
                            f"{name}_hi": hi})
            rows.append(row)
    cols = ["method", "type", "n"] + [f"{k}{s}" for k in stats for s in ("", "_lo", "_hi")]
    return pd.DataFrame(rows, columns=cols)


def method_gap_by_type(cious_a: np.ndarray, cious_b: np.ndarray,
                       types: Sequence[str] | np.ndarray, *, at: float = 0.3,
                       n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """The paper's Table 4 "performance gap": ``stat(method a) - stat(method b)`` within each type.

    Both methods score the same samples, so the gap is a *paired* bootstrap
    (:func:`vssl_core.eval.bootstrap.paired_bootstrap`), e.g. a = localisation map, b = potential map.

    Parameters
    ----------
    cious_a, cious_b : np.ndarray, shape (N,)
        Per-sample cIoU of the two methods, in the order of ``types``.
    types : sequence of str, shape (N,)
    at, n_boot, seed, level
        As in :func:`evaluate_by_type`.

    Returns
    -------
    pandas.DataFrame
        Columns ``type``, ``n``, then per statistic ``<stat>_gap``, ``<stat>_lo``, ``<stat>_hi``
        and ``<stat>_p`` (two-sided bootstrap p-value); one row per type present.
    """
    types = _check_types(types)
    a = _check_values(cious_a, types, "cious_a")
    b = _check_values(cious_b, types, "cious_b")
    stats = _stats(at)
    rows = []
    for t in TYPES:
        sel = types == t
        if not sel.any():
            continue
        row: dict[str, object] = {"type": t, "n": int(sel.sum())}
        for name, stat in stats.items():
            pb = paired_bootstrap(a[sel], b[sel], stat, n_boot=n_boot, seed=seed, level=level)
            row.update({f"{name}_gap": pb.diff, f"{name}_lo": pb.lo, f"{name}_hi": pb.hi,
                        f"{name}_p": pb.p_value})
        rows.append(row)
    return pd.DataFrame(rows)
