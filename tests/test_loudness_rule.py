"""The no-training loudness + flow rule of concat-and-localize, and the pair-bootstrap interval of a
side accuracy."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vssl_core.data.concat import concat_and_localize
from vssl_core.eval.metrics import GRID
from vssl_core.eval.side_accuracy import kept_side_accuracy, side_accuracy, side_accuracy_interval
from vssl_core.models.loudness_rule import (
    LOUDNESS_RULE, frame_motion, half_motion, kept_half_maps, loudness_db, loudness_rule_maps, loudness_side,
    mid_rank_percentiles, total_box_area,
)
from vssl_core.studies import do_we_need_sound as dwns


def test_loudness_db_of_a_full_scale_sine_and_of_silence():
    t = np.arange(8000) / 8000
    sine = np.sin(2 * np.pi * 440 * t)
    db = loudness_db(np.stack([sine, 0.1 * sine, np.zeros_like(sine)]))
    assert db[0] == pytest.approx(-3.0103, abs=1e-3)
    assert db[0] - db[1] == pytest.approx(20.0, abs=1e-6)     # a tenth of the amplitude: -20 dB
    assert db[2] == pytest.approx(-120.0)                      # silence is finite
    stereo = np.stack([np.stack([sine, sine])])                # (1, 2, T): channels averaged
    assert loudness_db(stereo)[0] == pytest.approx(db[0])
    with pytest.raises(ValueError, match="audio must be"):
        loudness_db(np.zeros(10))


def test_mid_rank_percentiles_give_ties_one_value():
    p = mid_rank_percentiles(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0]))
    assert p.tolist() == [0.125, 0.5, 0.5, 0.875]
    with pytest.raises(ValueError, match="at least one"):
        mid_rank_percentiles(np.array([1.0]), np.array([]))


def test_half_motion_averages_each_half():
    flow = np.zeros((1, 4, 6))
    flow[0, :, :3] = 2.0
    flow[0, :, 3:] = 0.5
    assert half_motion(flow).tolist() == [[2.0, 0.5]]
    assert frame_motion(flow).tolist() == [1.25]          # the whole frame: the mean of its two halves
    with pytest.raises(ValueError, match="must be"):
        frame_motion(flow[0])


def test_a_loud_sound_keeps_the_busier_half_and_a_quiet_one_the_calmer_half():
    loudness = np.array([-10.0, -40.0, -10.0, -40.0])
    motion = np.array([[3.0, 0.1], [3.0, 0.1], [0.1, 3.0], [0.1, 3.0]])
    assert loudness_side(loudness, motion).tolist() == [0, 1, 1, 0]
    # an exact tie (both halves equally far from the loudness rank) keeps both
    assert loudness_side(np.array([-20.0, -20.0]), np.array([[1.0, 1.0], [1.0, 1.0]])).tolist() == [-1, -1]
    with pytest.raises(ValueError, match="need loudness"):
        loudness_side(loudness, motion[:3])


def test_kept_half_maps_zero_the_other_half_and_keep_flow_units():
    flow = np.full((3, GRID, GRID), 2.0, dtype=np.float32)
    maps = kept_half_maps(flow, np.array([0, 1, -1]))
    assert maps.postprocess == "none" and maps.maps.shape == (3, GRID, GRID)
    half = GRID // 2
    assert maps.maps[0, :, :half].min() == 2.0 and maps.maps[0, :, half:].max() == 0.0
    assert maps.maps[1, :, :half].max() == 0.0 and maps.maps[1, :, half:].min() == 2.0
    assert maps.maps[2].min() == 2.0
    with pytest.raises(ValueError, match="side must hold"):
        kept_half_maps(flow, np.array([0, 2, 1]))


def _street_set(n: int = 6, seed: int = 0):
    """``n`` frames whose loudness grows with the motion on screen: the cue the rule reads."""
    rng = np.random.default_rng(seed)
    level = np.linspace(0.05, 1.0, n)                                   # motion and loudness alike
    flows = np.stack([np.full((GRID, GRID), 4.0 * a, dtype=np.float32) for a in level])
    audio = np.stack([a * rng.standard_normal((1, 800)).astype(np.float32) for a in level])
    images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    boxes = [np.array([[400.0, 200.0, 300.0, 200.0]]) for _ in range(n)]
    return concat_and_localize(images, audio, boxes=boxes, flows=flows, seed=seed)


def test_the_rule_picks_the_heard_side_when_loudness_follows_motion():
    cs = _street_set()
    maps = loudness_rule_maps(cs.pairs(8000))
    acc = side_accuracy(maps, cs.side)
    assert acc.mean() >= 0.9
    # swapping each pair's two sounds swaps the side the rule keeps: it listens, the pixels do not matter
    swapped = cs.pairs(8000).with_audio(cs.audio.reshape(-1, 2, *cs.audio.shape[1:])[:, ::-1].reshape(cs.audio.shape))
    assert side_accuracy(loudness_rule_maps(swapped), cs.side).mean() <= 0.1


def test_loudness_rule_reference_scores_its_maps_with_the_shared_side_accuracy():
    cs = _street_set(8, seed=3)
    row = dwns.loudness_rule_reference(cs, n_boot=200, seed=0, chunk=3).iloc[0]
    expected = side_accuracy(loudness_rule_maps(cs.pairs(8000)), cs.side).mean()
    assert row["method"] == LOUDNESS_RULE and row["n_concat"] == len(cs)
    assert row["side_accuracy"] == pytest.approx(expected)
    assert row["side_accuracy_lo"] <= row["side_accuracy"] <= row["side_accuracy_hi"]


def test_side_accuracy_interval_resamples_pairs_not_rows():
    # every pair right once and wrong once: any resample of *pairs* has mean exactly 0.5
    assert side_accuracy_interval(np.tile([1.0, 0.0], 50), n_boot=300, seed=0) == (0.5, 0.5)
    lo, hi = side_accuracy_interval(np.r_[np.ones(60), np.zeros(40)], n_boot=500, seed=0)
    assert lo < 0.6 < hi
    with pytest.raises(ValueError, match="even M"):
        side_accuracy_interval(np.ones(3))
    with pytest.raises(ValueError, match="level"):
        side_accuracy_interval(np.ones(4), level=1.5)


def test_side_accuracy_references_put_the_rule_after_the_listeners():
    import pandas as pd

    cs = _street_set(6, seed=1)
    listeners = pd.DataFrame({"method": ["L"], "n": [6], "side_accuracy": [0.7], "side_accuracy_lo": [0.6],
                              "side_accuracy_hi": [0.8]})
    table = dwns.side_accuracy_references(listeners, cs, n_boot=100, seed=0)
    assert table.columns.tolist() == dwns.SIDE_COLUMNS and table["method"].tolist() == ["L", LOUDNESS_RULE]
    assert table.iloc[1]["side_accuracy"] == dwns.loudness_rule_reference(cs, n_boot=100, seed=0).iloc[0]["side_accuracy"]
    with pytest.raises(KeyError, match="give reference_table the concat set"):
        dwns.side_accuracy_references(listeners.drop(columns="side_accuracy_lo"), cs)


def test_total_box_area_sums_w_times_h_and_is_zero_without_boxes():
    area = total_box_area([np.array([[0.0, 0.0, 2.0, 3.0], [100.0, 50.0, 4.0, 5.0]]), np.zeros((0, 4)), [[7, 7, 1, 1]]])
    assert area.tolist() == [26.0, 0.0, 1.0]


def test_kept_side_accuracy_scores_a_kept_half_like_a_map_on_it():
    side = np.array(["left", "left", "right", "right"])
    assert kept_side_accuracy(np.array([0, 1, -1, 0]), side).tolist() == [1.0, 0.0, 0.5, 0.0]
    # the same as side_accuracy of a map whose mass is all on the kept half
    flow = np.ones((4, GRID, GRID), np.float32)
    kept = np.array([0, 1, -1, 1])
    assert kept_side_accuracy(kept, side).tolist() == side_accuracy(kept_half_maps(flow, kept), side).tolist()
    with pytest.raises(ValueError, match="kept"):
        kept_side_accuracy(np.array([0, 2, 1, 0]), side)
    with pytest.raises(ValueError, match="left"):
        kept_side_accuracy(np.array([0, 1]), np.array(["left", "up"]))


def test_loudness_match_table_follows_the_statistic_that_grows_with_the_loudness():
    cs = _street_set(8, seed=2)
    level = np.linspace(0.05, 1.0, 8)                        # what the loudness grows with
    stats = {"grows": level, "shrinks": -level, "constant": np.ones(8)}
    table = dwns.loudness_match_table(cs, stats, n_boot=100, seed=0).set_index("statistic")
    assert table.loc["grows", "side_accuracy"] >= 0.9 and table.loc["grows", "loudness_correlation"] > 0.9
    assert table.loc["shrinks", "side_accuracy"] < 0.5                 # against the loudness: below chance
    assert table.loc["constant", "side_accuracy"] == 0.5 and np.isnan(table.loc["constant", "loudness_correlation"])
    assert (table["side_accuracy_lo"] <= table["side_accuracy"]).all()
    with pytest.raises(ValueError, match="one value per input frame"):
        dwns.loudness_match_table(cs, {"short": level[:3]})
    # a per-row statistic (left, right) is read as given: the same numbers as the per-frame one
    halves = np.stack([level[cs.left], level[cs.right]], axis=1)
    per_row = dwns.loudness_match_table(cs, {"grows": halves}, n_boot=100, seed=0).iloc[0]
    assert per_row["side_accuracy"] == table.loc["grows", "side_accuracy"]
    assert per_row["loudness_correlation"] == pytest.approx(table.loc["grows", "loudness_correlation"])
    with pytest.raises(ValueError, match=r"\(left, right\) per row"):
        dwns.loudness_match_table(cs, {"wrong": halves[:, :1]})


class _Rows:
    """The index part of a ConcatSet (``left``, ``right``, ``source``, ``len``)."""

    def __init__(self, ns):
        self.left, self.right, self.source = ns.left, ns.right, ns.source

    def __len__(self):
        return len(self.left)


def test_loudness_match_statistics_go_from_the_flow_to_the_sounding_boxes():
    from types import SimpleNamespace

    from vssl_core.data.arrays import EvalArrays

    class Seen:  # a perfect listener's view: one 10x10 vehicle, plus a parked 20x20 one without motion
        def __init__(self, motion):
            self.motion = motion

        def seen(self, clip, time):
            boxes = [(0, 0, 10, 10)] + ([] if self.motion else [(50, 50, 20, 20)])
            return [SimpleNamespace(box=b) for b in boxes]

        def heard(self, clip, time):  # frame "a" sounds like a car, frame "b" like nothing
            return Counter({"car": 1}) if clip == "a" else Counter()

        def boxes(self, clip, time, heard):  # the car is the 10x10 vehicle
            return np.array([[0, 0, 10, 10]] * heard["car"], dtype=np.float64).reshape(-1, 4)

    flow = np.zeros((2, GRID, GRID), np.float32)
    flow[1] = 2.0
    ev = EvalArrays(np.array(["a", "b"]), np.array([0.0, 1.0]), np.zeros((2, 8, 8, 3), np.uint8), flow,
                    np.zeros((2, 1, 10), np.float32), None, [np.array([[0, 0, 3, 4]]), np.zeros((0, 4))])
    listeners = {"still": Seen(False), "moving": Seen(True)}
    # rows: a | b heard with a's sound, then heard with b's sound
    rows = _Rows(SimpleNamespace(left=np.array([0, 0]), right=np.array([1, 1]), source=np.array([0, 1])))
    stats = dwns.loudness_match_statistics(ev, listeners, cs=rows)
    assert tuple(stats) == dwns.LOUDNESS_MATCHES
    flow_mean, every, heard_classes, moving, sounding = stats.values()
    assert flow_mean.tolist() == [0.0, 2.0]
    assert every.tolist() == [500.0, 500.0] and moving.tolist() == [100.0, 100.0]
    # with a car heard both halves show its class; with silence neither does
    assert heard_classes.tolist() == [[100.0, 100.0], [0.0, 0.0]]
    assert sounding.tolist() == [12.0, 0.0]
    # without the concat rows, the per-row statistic is left out
    assert dwns.LOUDNESS_MATCHES[2] not in dwns.loudness_match_statistics(ev, listeners)
    # real data has no objects table: only the flow and the ground truth
    assert tuple(dwns.loudness_match_statistics(ev)) == (dwns.LOUDNESS_MATCHES[0], dwns.LOUDNESS_MATCHES[4])
    with pytest.raises(ValueError, match="without and with motion"):
        dwns.loudness_match_statistics(ev, {"still": Seen(False)})
