"""Prose from numbers (findings) and the retrain comparison (committed intervals vs new values)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from vssl_core.eval import findings
from vssl_core.repro.compare import compare_folders, compare_tables, estimate_columns, summary


def test_claims_markdown_states_the_table_verdicts():
    table = pd.DataFrame({"comparison": ["A - B", "C - D"], "metric": ["cIoU@0.3", "cIoU@0.3"],
                          "difference": [0.05, 0.004], "lo": [0.02, -0.01], "hi": [0.08, 0.02],
                          "verdict": ["reproduced", "not resolved"]})
    text = findings.claims_markdown(table)
    assert "A - B: **reproduced** (cIoU@0.3 difference +0.050, 95% CI [+0.020, +0.080])" in text
    assert "C - D: **not resolved**" in text
    assert findings.claims_markdown(table, "AUC") == ""


def test_learning_verdict_needs_held_out_loss_below_chance_and_retrieval_above():
    good = [{"epoch": 1, "val_loss": 4.0, "monitored": 4.0, "val_retrieval": 0.02, "retrieval_chance": 1 / 64},
            {"epoch": 2, "val_loss": 3.7, "monitored": 3.7, "val_retrieval": 0.07, "retrieval_chance": 1 / 64}]
    assert findings.learned(good, np.log(64)) == (True, good[1])
    weak_retrieval = [dict(good[1], val_retrieval=0.02)]
    assert findings.learned(weak_retrieval, np.log(64))[0] is False
    above_chance = [dict(good[1], val_loss=4.3, monitored=4.3)]
    assert findings.learned(above_chance, np.log(64))[0] is False
    text = findings.learning_markdown({"m": good, "n": above_chance}, {"m": np.log(64), "n": np.log(64)})
    assert "**m** learned (epoch 2 of 2)" in text and "**n** did not learn" in text
    assert findings.target_markdown([("x", 0.2, 0.1), ("y", 0.05, 0.1)]).count("**not met**") == 1
    below = findings.target_markdown([("loss", 0.346, 0.45, "<"), ("gap", 0.0, 0.0, ">"), ("at", 0.1, 0.1)])
    assert below.split("\n") == ["- loss: 0.346 (target < 0.45): **met**", "- gap: 0.000 (target > 0): **not met**",
                                 "- at: 0.100 (target >= 0.1): **met**"]


def test_gaps_markdown_uses_the_effect_size_rule():
    gaps = pd.DataFrame({"train_size": [500, 2500], "cIoU@0.3_gap": [0.01, 0.05], "cIoU@0.3_lo": [0.001, 0.03],
                         "cIoU@0.3_hi": [0.02, 0.07]})
    text = findings.gaps_markdown(gaps, "cIoU@0.3", "train_size")
    assert "500: **too small to matter**" in text and "2500: **reproduced**" in text


def test_sound_gain_markdown_words_follow_the_verdict_rule():
    from vssl_core.eval.audio_sensitivity import SOUND_GAIN

    table = pd.DataFrame({"model": ["a", "b", "c", "d"], SOUND_GAIN: [0.05, 0.01, 0.0, -0.04],
                          f"{SOUND_GAIN}_lo": [0.03, 0.004, -0.01, -0.06], f"{SOUND_GAIN}_hi": [0.07, 0.02, 0.01, -0.02]})
    lines = findings.sound_gain_markdown(table, "model", "row ").split("\n")
    assert lines[0].startswith("- row a: **finds the source better with its own sound** (own minus swapped sound +0.050")
    assert "below the 0.02" in lines[1] and "no measurable difference" in lines[2]
    assert "better with another clip's sound" in lines[3]


def test_target_markdown_rejects_an_unknown_test():
    import pytest

    with pytest.raises(ValueError, match="target test"):
        findings.target_markdown([("x", 1.0, 0.5, "=>")])


def test_paired_target_markdown_is_met_only_by_the_claims_rule():
    import pytest

    from vssl_core.eval.claims import verdict

    rows = [("d", 0.028, 0.015, 0.043), ("e", 0.006, 0.001, 0.012), ("f", 0.030, -0.004, 0.060)]
    table = pd.DataFrame([{"comparison": f"{r} - centred box", "metric": m, "difference": d, "lo": lo, "hi": hi,
                           "verdict": verdict(lo, hi, d)} for r, d, lo, hi in rows for m in ("cIoU@0.3", "AUC")])
    lines = findings.paired_target_markdown(table, "cIoU@0.3", "row ").split("\n")
    assert len(lines) == 3
    assert lines[0].startswith("- row d above centred box: **met**") and "[+0.015, +0.043]" in lines[0]
    assert "**not met**" in lines[1]          # interval above 0, but +0.006 is too small to matter
    assert "**not met**" in lines[2]          # +0.030, but the interval holds 0
    with pytest.raises(KeyError, match="cIoU@0.5"):
        findings.paired_target_markdown(table, "cIoU@0.5")


def test_compare_tables_marks_values_inside_the_committed_interval(tmp_path):
    old = pd.DataFrame({"method": ["a", "b"], "cIoU@0.3": [0.2, 0.5], "cIoU@0.3_lo": [0.1, 0.45],
                        "cIoU@0.3_hi": [0.3, 0.55], "n": [10, 10]})
    new = pd.DataFrame({"method": ["a", "b"], "cIoU@0.3": [0.25, 0.6], "cIoU@0.3_lo": [0.0, 0.0],
                        "cIoU@0.3_hi": [1.0, 1.0], "n": [10, 10]})
    assert estimate_columns(old) == ["cIoU@0.3"]
    c = compare_tables(old, new, "t.csv")
    assert c["inside committed CI"].tolist() == [True, False]
    assert c["difference"].round(3).tolist() == [0.05, 0.1]
    swapped = compare_tables(old, new.iloc[::-1].reset_index(drop=True))
    assert not swapped["rows match"].any() and not swapped["inside committed CI"].any()
    (tmp_path / "o" / "nb").mkdir(parents=True)
    (tmp_path / "n" / "nb").mkdir(parents=True)
    old.to_csv(tmp_path / "o" / "nb" / "t.csv", index=False)
    new.to_csv(tmp_path / "n" / "nb" / "t.csv", index=False)
    both = compare_folders(tmp_path / "o", tmp_path / "n")
    assert set(both["table"]) == {"nb/t.csv"} and summary(both).startswith("1 of 2 estimates (50%)")


def test_summary_leaves_out_estimates_neither_folder_computed():
    """A benchmark row without its media is NaN in both folders: not a miss, counted apart."""
    old = pd.DataFrame({"method": ["a", "b", "c"], "cIoU": [0.2, np.nan, 0.4], "cIoU_lo": [0.1, np.nan, 0.3],
                        "cIoU_hi": [0.3, np.nan, 0.5]})
    new = old.assign(cIoU=[0.2, np.nan, 0.45])
    text = summary(compare_tables(old, new, "t.csv"))
    assert text.startswith("2 of 2 estimates (100%)") and "(1 identical)" in text
    assert "1 not computed in either" in text
