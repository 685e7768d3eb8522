"""Prose generated from the numbers: what the notebooks say is what their tables show.

Every sentence a notebook prints about a result comes from here, computed from the same tables
it displays, with the same rule as the verdict tables (:func:`vssl_core.eval.claims.verdict`):

- :func:`claims_markdown`: one bullet per claim of a :func:`~vssl_core.eval.claims.check_claims`
  or :func:`~vssl_core.eval.scoring.paired_table` table, with its verdict, difference and interval;
- :func:`learning_markdown`: per trained model, whether it learned on held-out data (validation
  loss below the chance loss, retrieval above chance), with its numbers, so a model that did not
  learn is called that;
- :func:`target_markdown`: a stated target (e.g. "RCGrad cIoU@0.3 >= 0.10") against the measured
  value, met or not;
- :func:`paired_target_markdown`: a target "A above B" read from a paired bootstrap, met only by the
  claims' rule (interval above 0, difference at least 0.02);
- :func:`sound_gain_markdown`: per model, whether its own sound finds the source better than another
  clip's sound (the paired own-minus-swapped cIoU of
  :func:`vssl_core.eval.audio_sensitivity.sound_gain`), by the same rule;
- :func:`reference_markdown`: what a reference (e.g. the perfect listeners of
  :mod:`vssl_core.eval.listener_reference`) reaches on the same measure, beside a target;
- :func:`retrieval_markdown`: per model and pair of encoders, whether they pick out each other's
  sample on held-out pairs beyond chance (:mod:`vssl_core.eval.retrieval`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

__all__ = ["claims_markdown", "gaps_markdown", "learned", "learning_markdown", "paired_target_markdown",
           "reference_markdown", "retrieval_markdown", "sound_gain_markdown", "target_markdown"]


def _fmt(x: float) -> str:
    return "nan" if x is None or not math.isfinite(float(x)) else f"{float(x):+.3f}"


def claims_markdown(table: pd.DataFrame, metric: str | None = None) -> str:
    """Markdown bullets, one per row: ``claim``/``comparison``, **verdict**, difference [lo, hi].

    ``metric`` keeps only the rows of that metric (e.g. ``"AUC"``); default: all rows."""
    rows = table if metric is None or "metric" not in table else table[table["metric"] == metric]
    out = []
    for _, r in rows.iterrows():
        what = r.get("claim", r.get("comparison", ""))
        paper = f"; paper: {r['paper']}" if isinstance(r.get("paper"), str) and r.get("paper") else ""
        out.append(f"- {what}: **{r['verdict']}** ({r.get('metric', '')} difference {_fmt(r['difference'])}, "
                   f"95% CI [{_fmt(r['lo'])}, {_fmt(r['hi'])}]{paper})")
    return "\n".join(out)


def learned(history: Sequence[Mapping], chance_loss: float) -> tuple[bool, dict]:
    """Did training learn something that holds on held-out data?

    Yes when the kept epoch's validation loss is below ``chance_loss`` and, where retrieval was
    measured, its validation retrieval is at least twice the chance rate. Returns the answer and
    the kept epoch's numbers."""
    if not history:
        return False, {}
    best = min(history, key=lambda h: h.get("monitored", math.inf))
    ok = "val_loss" in best and best["val_loss"] < chance_loss
    if "val_retrieval" in best and best.get("retrieval_chance"):
        ok = ok and best["val_retrieval"] >= 2 * best["retrieval_chance"]
    return bool(ok), dict(best)


def learning_markdown(histories: Mapping[str, Sequence[Mapping]], chance_losses: Mapping[str, float]) -> str:
    """One bullet per model: learned or did not learn, with the kept epoch's validation numbers."""
    out = []
    for name, history in histories.items():
        ok, best = learned(history, chance_losses[name])
        if not best:
            out.append(f"- **{name}**: no training history (weights from elsewhere).")
            continue
        parts = [f"validation loss {best['val_loss']:.3f} (chance {chance_losses[name]:.3f})"]
        if "val_retrieval" in best:
            parts.append(f"retrieval {best['val_retrieval']:.3f} (chance {best['retrieval_chance']:.3f})")
        for key, label in (("val_ciou@0.3", "validation cIoU@0.3"), ("val_loc_ciou@0.3", "validation cIoU@0.3"),
                           ("val_audio_sensitivity", "audio sensitivity")):
            if key in best:
                parts.append(f"{label} {best[key]:.3f}")
        verdict = "learned" if ok else "did not learn"
        out.append(f"- **{name}** {verdict} (epoch {best['epoch']} of {len(history)}): " + ", ".join(parts) + ".")
    return "\n".join(out)


_TARGET_TESTS = {">=": lambda m, t: m >= t, ">": lambda m, t: m > t, "<=": lambda m, t: m <= t, "<": lambda m, t: m < t}


def target_markdown(targets: Sequence[tuple]) -> str:
    """Bullets for ``(what, measured, target)`` or ``(what, measured, target, test)``: met when
    ``measured <test> target``, where ``test`` is one of ``">="`` (the default), ``">"``, ``"<="``,
    ``"<"``; the bullet prints the test, e.g. "0.346 (target < 0.45)"."""
    out = []
    for what, measured, target, *rest in targets:
        test = rest[0] if rest else ">="
        if test not in _TARGET_TESTS:
            raise ValueError(f"target test for {what!r} must be one of {sorted(_TARGET_TESTS)}, got {test!r}")
        met = "met" if _TARGET_TESTS[test](measured, target) else "not met"
        out.append(f"- {what}: {measured:.3f} (target {test} {target:g}): **{met}**")
    return "\n".join(out)


def paired_target_markdown(table: pd.DataFrame, metric: str, prefix: str = "") -> str:
    """Bullets "A above B", one per comparison ``A - B`` of a
    :func:`vssl_core.eval.scoring.paired_table` table (rows of ``metric`` only): **met** only when
    the verdict is "reproduced" (the paired 95% interval excludes 0 and the difference is at least
    0.02), else **not met**, with the difference and its interval. ``prefix`` goes before A
    (e.g. ``"row "``).

    Raises
    ------
    KeyError
        When the table has no row of ``metric``.
    """
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise KeyError(f"the paired table has no {metric!r} rows (metrics: {sorted(set(table['metric']))})")
    out = []
    for _, r in rows.iterrows():
        a, b = r["comparison"].split(" - ", 1)
        met = "met" if r["verdict"] == "reproduced" else "not met"
        out.append(f"- {prefix}{a} above {b}: **{met}** ({metric} difference {_fmt(r['difference'])}, "
                   f"95% CI [{_fmt(r['lo'])}, {_fmt(r['hi'])}]; met needs an interval above 0 and at least +0.020)")
    return "\n".join(out)


_SOUND_GAIN_WORDS = {"reproduced": "finds the source better with its own sound",
                     "too small to matter": "a difference below the 0.02 that matters",
                     "not resolved": "no measurable difference",
                     "opposite": "finds the source better with another clip's sound"}


def sound_gain_markdown(table: pd.DataFrame, label: str, prefix: str = "") -> str:
    """Bullets for a table with the :func:`vssl_core.eval.audio_sensitivity.sound_gain` columns,
    one per row labelled by column ``label``; the words follow :func:`vssl_core.eval.claims.verdict`
    ("finds the source better with its own sound" when the interval excludes 0 and the difference is
    at least 0.02)."""
    from vssl_core.eval.audio_sensitivity import SOUND_GAIN
    from vssl_core.eval.claims import verdict

    out = []
    for name, gain, lo, hi in zip(table[label].tolist(), table[SOUND_GAIN], table[f"{SOUND_GAIN}_lo"],
                                  table[f"{SOUND_GAIN}_hi"]):
        out.append(f"- {prefix}{name}: **{_SOUND_GAIN_WORDS[verdict(lo, hi, gain)]}** (own minus swapped sound "
                   f"{_fmt(gain)}, 95% CI [{_fmt(lo)}, {_fmt(hi)}])")
    return "\n".join(out)


def reference_markdown(table: pd.DataFrame, column: str, what: str) -> str:
    """One bullet: ``column`` of every row of ``table`` (named by its ``method`` column), e.g.
    "- for comparison, the side accuracy of Perfect listener (oracle): 0.565, ...".

    Raises
    ------
    KeyError
        When ``table`` has no ``method`` or no ``column`` column.
    """
    for name in ("method", column):
        if name not in table.columns:
            raise KeyError(f"the reference table has no column {name!r} (columns: {list(table.columns)})")
    values = "; ".join(f"{m}: {float(v):.3f}" for m, v in zip(table["method"], table[column]))
    return f"- for comparison, {what} of {values}"


_RETRIEVAL_COLUMNS = ("model", "pair", "top-1 (A->B)", "top-1 (B->A)", "top-1 chance", "chance 97.5%")


def retrieval_markdown(table: pd.DataFrame) -> str:
    """One bullet per row of a :func:`vssl_core.studies.flowgrad.pair_retrieval_table` table: the
    pair is "**beyond chance**" when its top-1 in both directions exceeds the 97.5% chance bound,
    "**one way only**" when one direction does, and "**at chance**" otherwise.

    Raises
    ------
    KeyError
        When a column of the table is missing.
    """
    missing = [c for c in _RETRIEVAL_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"the retrieval table has no column(s) {missing} (columns: {list(table.columns)})")
    out = []
    for row in table.itertuples(index=False):
        r = dict(zip(table.columns, row))
        above = (r["top-1 (A->B)"] > r["chance 97.5%"]) + (r["top-1 (B->A)"] > r["chance 97.5%"])
        words = ("at chance", "one way only", "beyond chance")[int(above)]
        out.append(f"- {r['model']}, {r['pair']}: **{words}** (top-1 {r['top-1 (A->B)']:.3f} / "
                   f"{r['top-1 (B->A)']:.3f}; chance {r['top-1 chance']:.3f}, "
                   f"97.5% of random rankings stay at or below {r['chance 97.5%']:.3f})")
    return "\n".join(out)


def gaps_markdown(table: pd.DataFrame, metric: str, label: str, prefix: str = "") -> str:
    """Bullets for a table of paired gaps with columns ``<metric>_gap``, ``_lo``, ``_hi`` (e.g. the
    localisation-minus-potential gaps of notebook 04), one per row labelled by column ``label``,
    with the verdict of :func:`vssl_core.eval.claims.verdict` ("gap above zero" reproduced)."""
    from vssl_core.eval.claims import verdict

    out = []
    for name, gap, lo, hi in zip(table[label].tolist(), table[f"{metric}_gap"], table[f"{metric}_lo"],
                                 table[f"{metric}_hi"]):
        out.append(f"- {prefix}{name}: **{verdict(lo, hi, gap)}** ({metric} gap {_fmt(gap)}, "
                   f"95% CI [{_fmt(lo)}, {_fmt(hi)}])")
    return "\n".join(out)
