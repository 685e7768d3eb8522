"""The FlowGrad experiment's glue: split, scoring tables, example picking, object states."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vssl_core.studies import flowgrad as fs
from vssl_core.eval import metrics
from vssl_core.data.arrays import EvalArrays, split_clips
from vssl_core.eval.maps import LocalizationMaps


class _Clips:
    clips = [f"c{i}" for i in range(5)]


def test_split_holds_out_the_last_clips():
    train, test = split_clips(_Clips(), 2)
    assert train == ["c0", "c1", "c2"] and test == ["c3", "c4"]
    with pytest.raises(ValueError):
        split_clips(_Clips(), 5)


def test_setup_from_rejects_unknown_names():
    assert fs.FlowGradSetup.from_params(epochs=2).epochs == 2
    with pytest.raises(ValueError, match="epoch"):
        fs.FlowGradSetup.from_params(epoch=2)


def _results(**cious):
    return {k: metrics.score_cious(np.asarray(v, float), at=0.3, n_boot=200, seed=0)
            for k, v in cious.items()}


def test_paired_table_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.3, 200)
    res = _results(**{"RCGrad": base, "FlowGrad-H": base + 0.4, "Optical flow only": base})
    t = fs.paired_table(res, n_boot=200)
    h = t[(t.comparison == "FlowGrad-H - RCGrad") & (t.metric == "cIoU@0.3")].iloc[0]
    assert h["difference"] > 0.5 and h["CI excludes 0"]
    f = t[(t.comparison == "Optical flow only - RCGrad") & (t.metric == "AUC")].iloc[0]
    assert f["difference"] == 0 and not f["CI excludes 0"]


def test_table1_lists_paper_numbers_and_both_cutoffs():
    res = _results(**{"RCGrad": [0.1, 0.4, 0.6], "Centred box": [0.0, 0.0, 0.35]})
    t = fs.table1(res).set_index("method")
    assert t.loc["RCGrad", "cIoU@0.3"] == pytest.approx(2 / 3)
    assert t.loc["RCGrad", "cIoU@0.5"] == pytest.approx(1 / 3)
    assert t.loc["RCGrad", "paper_IoU"] == 0.16 and np.isnan(t.loc["Centred box", "paper_IoU"])


def test_pick_examples_prefers_parked_gains_and_idling_failures():
    res = _results(**{"RCGrad": [0.1, 0.1, 0.5, 0.2], "FlowGrad-H": [0.2, 0.9, 0.5, 0.3],
                      "Optical flow only": [0.5, 0.5, 0.4, 0.0]})
    states = pd.DataFrame({"parked": [1, 1, 0, 0], "idling": [0, 0, 1, 1]})
    rows = fs.pick_examples(res, states, n_parked=1, n_idling=1, n_other=1)
    assert rows[0] == (1, "parked vehicle: motion helps")     # largest H - RCGrad gain
    assert rows[1] == (3, "idling vehicle: motion fails")     # lowest flow-only score
    assert rows[2][0] not in {1, 3}


def test_sample_states_counts_visible_objects():
    objects = pd.DataFrame({
        "filename": ["a", "a", "a", "b"], "time": [1.0, 1.0, 1.0, 1.0],
        "state": ["parked", "parked", "idling", "parked"],
        "visible_fraction": [1.0, 0.2, 0.9, 1.0]})
    ev = EvalArrays(np.array(["a", "b"]), np.array([1.0, 1.5]), *(None,) * 4, [])
    s = fs.sample_states(objects, ev)
    assert s["parked"].tolist() == [1, 0] and s["idling"].tolist() == [1, 0]


def test_method_maps_without_models_has_the_baselines():
    n = 3
    flow = np.zeros((n, 224, 224), np.float32)
    flow[:, :10, :10] = 2.0
    ev = EvalArrays(np.array(["a"] * n), np.zeros(n), np.zeros((n, 32, 32, 3), np.uint8), flow,
                       np.zeros((n, 1, 16000), np.float32), np.zeros((n, 224, 224), np.float32), [])
    maps = fs.method_maps({}, ev)
    assert list(maps) == ["Optical flow only", "Centred box"]
    assert all(isinstance(m, LocalizationMaps) and m.postprocess == "none" for m in maps.values())
    assert maps["Optical flow only"].maps[0, 0, 0] == 2.0
