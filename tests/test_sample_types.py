"""Type A / B split from an object table and the per-type evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vssl_core.errors import DataError
from vssl_core.eval.sample_types import evaluate_by_type, method_gap_by_type, sample_types

COLUMNS = ["filename", "time", "frame_id", "track_id", "label", "state", "x", "y", "w", "h",
           "sounding", "visible_fraction", "depth", "speed_px_per_s"]


def _row(clip, t, track, label, state, sounding, vis):
    x = np.nan if state == "offscreen" else 100.0
    return (clip, t, int(t * 2), track, label, state, x, 50.0, 80.0, 40.0, sounding, vis, 0.3,
            0.0 if state in ("parked", "idling", "tree") else 120.0)


def _scene() -> pd.DataFrame:
    rows = [
        # clip "moving": only moving (sounding) vehicles visible, plus a tree and a pedestrian
        _row("moving", 0.0, 0, "car", "moving", 1, 0.9),
        _row("moving", 0.0, 1, "bus", "moving", 1, 0.6),
        _row("moving", 0.0, 2, "tree", "tree", 0, 1.0),
        _row("moving", 0.0, 3, "pedestrian", "pedestrian", 0, 1.0),
        # clip "parked": a visible parked car at 0.0, only 20% visible at 0.5
        _row("parked", 0.0, 0, "car", "moving", 1, 1.0),
        _row("parked", 0.0, 1, "car", "parked", 0, 0.8),
        _row("parked", 0.5, 0, "car", "moving", 1, 1.0),
        _row("parked", 0.5, 1, "car", "parked", 0, 0.2),
        # parked truck exactly at the 0.5 visibility threshold counts as visible
        _row("parked", 1.0, 0, "motorbike", "idling", 1, 0.7),
        _row("parked", 1.0, 1, "truck", "parked", 0, 0.5),
        # clip "empty": no vehicle in view (a heard offscreen car, a tree, a pedestrian)
        _row("empty", 0.0, 0, "car", "offscreen", 1, 0.0),
        _row("empty", 0.0, 1, "tree", "tree", 0, 1.0),
        _row("empty", 0.0, 2, "pedestrian", "pedestrian", 1, 1.0),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_type_split_on_a_hand_built_scene():
    keys = [("moving", 0.0), ("parked", 0.0), ("parked", 0.5), ("parked", 1.0), ("empty", 0.0),
            ("parked", 0.5000004)]
    types = sample_types(_scene(), keys)
    assert types.tolist() == ["A", "B", "A", "B", "none", "A"]
    # a stricter visibility threshold hides the half-visible truck
    assert sample_types(_scene(), [("parked", 1.0)], min_visible=0.6).tolist() == ["A"]


def test_min_inframe_ignores_a_parked_car_cut_by_the_frame_edge():
    scene = _scene()
    # the parked car of ("parked", 0.0) only pokes 8 of its 80 px into the frame
    hit = (scene.filename == "parked") & (scene.time == 0.0) & (scene.track_id == 1)
    scene.loc[hit, "x"] = -72.0
    assert sample_types(scene, [("parked", 0.0)]).tolist() == ["B"]
    assert sample_types(scene, [("parked", 0.0)], min_inframe=0.5).tolist() == ["A"]
    assert sample_types(scene, [("parked", 0.0)], min_inframe=0.1).tolist() == ["B"]
    with pytest.raises(DataError, match="min_inframe"):
        sample_types(scene.drop(columns=["w"]), [("parked", 0.0)], min_inframe=0.5)


def test_round_trip_through_csv(tmp_path):
    path = tmp_path / "objects.csv"
    _scene().to_csv(path, index=False)
    types = sample_types(pd.read_csv(path), [("parked", 0.0), ("empty", 0.0)])
    assert types.tolist() == ["B", "none"]


def test_unknown_keys_and_missing_columns():
    with pytest.raises(DataError, match="no row"):
        sample_types(_scene(), [("moving", 3.0)])
    with pytest.raises(DataError, match="no row"):
        sample_types(_scene(), [("nowhere", 0.0)])
    assert sample_types(_scene(), [("nowhere", 0.0)], missing="none").tolist() == ["none"]
    with pytest.raises(DataError) as err:
        sample_types(_scene().drop(columns=["sounding", "visible_fraction"]), [("moving", 0.0)])
    msg = str(err.value)
    assert "objects.csv" in msg and "sounding" in msg and "visible_fraction" in msg
    assert "Fix:" in msg


# per-sample cIoUs chosen away from the AUC abscissae 0.05 i (hand-computable)
A_VALUES = np.array([0.62, 0.62, 0.62, 0.12])
B_VALUES = np.array([0.62, 0.12, 0.12, 0.12])


def _crafted():
    types = np.array(["A"] * 4 + ["B"] * 4 + ["none"])
    loc = np.concatenate([A_VALUES, B_VALUES, [np.nan]])
    pot = np.concatenate([A_VALUES, A_VALUES, [0.0]])  # scores B like A: no gap
    return types, {"loc": loc, "pot": pot}


def test_evaluate_by_type_by_hand():
    types, cious = _crafted()
    df = evaluate_by_type(cious, types, at=0.3, n_boot=200, seed=0)
    assert list(df.columns) == ["method", "type", "n", "cIoU@0.3", "cIoU@0.3_lo", "cIoU@0.3_hi",
                                "AUC", "AUC_lo", "AUC_hi"]
    t = df.set_index(["method", "type"])
    assert t.loc[("loc", "A"), "n"] == 4 and t.loc[("loc", "none"), "n"] == 1
    assert t.loc[("loc", "A"), "cIoU@0.3"] == pytest.approx(0.75)
    assert t.loc[("loc", "B"), "cIoU@0.3"] == pytest.approx(0.25)
    # AUC: y = 1 on [0, 0.1], 0.75 (A) / 0.25 (B) on [0.15, 0.6], 0 from 0.65 (trapezoid)
    assert t.loc[("loc", "A"), "AUC"] == pytest.approx(0.5)
    assert t.loc[("loc", "B"), "AUC"] == pytest.approx(0.25)
    assert t.loc[("loc", "none"), "cIoU@0.3"] == 0.0  # NaN (0/0) counts as a miss
    gap = t.loc[("loc", "A-B")]
    assert gap["n"] == 8
    assert gap["cIoU@0.3"] == pytest.approx(0.5) and gap["AUC"] == pytest.approx(0.25)
    for stat in ("cIoU@0.3", "AUC"):
        assert (df[f"{stat}_lo"] <= df[stat] + 1e-12).all()
        assert (df[f"{stat}_hi"] >= df[stat] - 1e-12).all()
    # a method that scores both types alike has a zero gap whose interval holds 0
    pot_gap = t.loc[("pot", "A-B")]
    assert pot_gap["cIoU@0.3"] == 0.0 and pot_gap["cIoU@0.3_lo"] <= 0 <= pot_gap["cIoU@0.3_hi"]
    # same seed, same table; no bootstrap, NaN bounds
    again = evaluate_by_type(cious, types, at=0.3, n_boot=200, seed=0)
    pd.testing.assert_frame_equal(df, again)
    nob = evaluate_by_type(cious, types, n_boot=0)
    assert nob["AUC_lo"].isna().all() and not nob["AUC"].isna().any()


def test_evaluate_by_type_rejects_bad_inputs():
    types, cious = _crafted()
    with pytest.raises(DataError, match="unknown types"):
        evaluate_by_type(cious, np.where(types == "A", "C", types), n_boot=0)
    with pytest.raises(DataError, match="shape"):
        evaluate_by_type({"x": np.zeros(3)}, types, n_boot=0)


def test_method_gap_by_type_is_paired():
    types, cious = _crafted()
    df = method_gap_by_type(cious["loc"], cious["pot"], types, n_boot=200).set_index("type")
    assert df.loc["A", "cIoU@0.3_gap"] == 0.0 and df.loc["A", "cIoU@0.3_p"] == 1.0
    assert df.loc["B", "cIoU@0.3_gap"] == pytest.approx(-0.5)
    assert df.loc["B", "AUC_gap"] == pytest.approx(-0.25)
    # samples 0 and 3 score alike in both methods: some resamples see no gap at all
    assert df.loc["B", "AUC_lo"] < 0 <= df.loc["B", "AUC_hi"] + 1e-12 and df.loc["B", "AUC_hi"] <= 0
