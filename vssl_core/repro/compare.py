"""Compare two regenerations of the figures: is every new number inside the committed 95% interval?

A table column ``X`` with companion columns ``X_lo`` and ``X_hi`` is an estimate with its
interval. For each such estimate in each CSV table present in both folders, :func:`compare_tables`
reports the committed value, its interval, the new value, the difference, and whether the new
value lies inside the committed interval (rows are matched by their position and by every
non-numeric column). ``make retrain`` uses it to show that retraining from scratch reproduces the
shipped weights' tables.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["estimate_columns", "compare_tables", "compare_folders", "summary"]


def estimate_columns(df: pd.DataFrame) -> list[str]:
    """Columns ``X`` that have ``X_lo`` and ``X_hi`` beside them."""
    return [c for c in df.columns if f"{c}_lo" in df.columns and f"{c}_hi" in df.columns]


def _keys(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]


def compare_tables(old: pd.DataFrame, new: pd.DataFrame, table: str = "") -> pd.DataFrame:
    """One row per (table row, estimate): old value and interval, new value, difference, inside."""
    rows = []
    keys = [k for k in _keys(old) if k in new.columns]
    for i in range(min(len(old), len(new))):
        o, n = old.iloc[i], new.iloc[i]
        label = " | ".join(str(o[k]) for k in keys)
        same_row = all(str(o[k]) == str(n[k]) for k in keys)
        for c in estimate_columns(old):
            if c not in new.columns:
                continue
            lo, hi, ov, nv = (float(x) for x in (o[f"{c}_lo"], o[f"{c}_hi"], o[c], n[c]))
            inside = bool(np.isfinite(lo) and np.isfinite(hi) and lo <= nv <= hi) if same_row else False
            rows.append({"table": table, "row": label, "estimate": c, "committed": ov, "lo": lo, "hi": hi,
                         "new": nv, "difference": nv - ov, "inside committed CI": inside,
                         "rows match": same_row})
    return pd.DataFrame(rows)


def compare_folders(old: str | Path, new: str | Path) -> pd.DataFrame:
    """:func:`compare_tables` for every CSV present under both folders (relative paths)."""
    old, new = Path(old), Path(new)
    frames = []
    for path in sorted(old.rglob("*.csv")):
        rel = path.relative_to(old)
        if (new / rel).is_file():
            frames.append(compare_tables(pd.read_csv(path), pd.read_csv(new / rel), str(rel)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary(comparison: pd.DataFrame) -> str:
    """One line: how many estimates lie inside their committed interval, how many are identical,
    and how many neither folder computed (both NaN: left out of the count)."""
    if comparison.empty:
        return "no table with intervals in both folders"
    missing = comparison["committed"].isna() & comparison["new"].isna()
    rows = comparison[~missing]
    if rows.empty:
        return f"{int(missing.sum())} estimates, none computed in either folder (no data)"
    inside = int(rows["inside committed CI"].sum())
    same = int((rows["difference"] == 0).sum())
    text = (f"{inside} of {len(rows)} estimates ({inside / len(rows):.0%}) lie inside the committed 95% interval "
            f"({same} identical); largest |difference| {rows['difference'].abs().max():.3f}")
    if missing.any():
        text += f"; {int(missing.sum())} not computed in either (no data, e.g. a benchmark without its media)"
    return text
