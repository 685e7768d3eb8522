"""The perfect listeners (models.listeners) and their reference table (eval.listener_reference).

Expected boxes and masses are worked out by hand from a three-clip objects table."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from conftest import make_pairs
from vssl_core.data.concat import concat_and_localize, concat_boxes
from vssl_core.errors import DataError
from vssl_core.eval import findings
from vssl_core.eval import metrics
from vssl_core.eval.audio_sensitivity import SOUND_GAIN, map_correlations, swap_partners
from vssl_core.eval.metrics import gt_map_urbansas
from vssl_core.models.baselines import Detection
from vssl_core.eval.listener_reference import reference_results, reference_table
from vssl_core.models.listeners import PerfectListener, perfect_listeners, pick_heard
from vssl_core.eval.side_accuracy import side_accuracy, side_accuracy_interval


def _row(clip, t, label, x=None, w=200.0, h=120.0, y=300.0, vis=1.0, sounding=1, state="moving"):
    on = x is not None
    return dict(filename=clip, time=t, label=label, state=state, sounding=sounding,
                x=x if on else np.nan, y=y if on else np.nan, w=w if on else np.nan, h=h if on else np.nan,
                visible_fraction=vis if on else 0.0)


@pytest.fixture()
def objects():
    """c1: a moving car (small, left) and a parked car (big, right; silent); also an off-screen bus heard.
    c2: a moving bus (left) and a parked car.  c3: a moving motorbike, a silent tree."""
    rows = []
    for t in (0.0, 0.5, 1.0):
        rows += [_row("c1", t, "car", x=100.0 + 200 * t, w=100.0, h=60.0),
                 _row("c1", t, "car", x=800.0, w=300.0, h=200.0, sounding=0, state="parked"),
                 _row("c1", t, "bus", state="offscreen"),
                 _row("c2", t, "bus", x=50.0 + 300 * t, w=400.0, h=250.0),
                 _row("c2", t, "car", x=900.0, w=150.0, h=90.0, sounding=0, state="parked"),
                 _row("c3", t, "motorbike", x=600.0 + 100 * t, w=60.0, h=60.0),
                 _row("c3", t, "tree", x=100.0, w=100.0, h=300.0, sounding=0, state="static")]
    return pd.DataFrame(rows)


def _box(table, clip, t, label, sounding):
    r = table[(table.filename == clip) & (table.time == t) & (table.label == label) & (table.sounding == sounding)]
    return r[["x", "y", "w", "h"]].dropna().to_numpy(float)


def test_pick_heard_takes_the_largest_of_each_heard_class():
    small, big = Detection((0, 0, 10, 10), "car"), Detection((50, 0, 30, 30), "car")
    bus = Detection((200, 0, 40, 40), "bus")
    np.testing.assert_array_equal(pick_heard([small, big, bus], Counter(car=1)), [big.box])
    np.testing.assert_array_equal(pick_heard([small, big, bus], Counter(car=5, bus=1)),
                                  [bus.box, big.box, small.box])   # classes sorted, then by area
    assert pick_heard([small], Counter(truck=2)).shape == (0, 4)


def test_heard_counts_sounding_vehicles_on_and_off_screen(objects):
    listener = PerfectListener(objects)
    assert listener.heard("c1", 0.5) == Counter(car=1, bus=1)     # the parked car is silent
    assert listener.heard("c3", 0.0) == Counter(motorbike=1)       # the tree is not a vehicle
    assert listener.heard("c1", 0.5 + 1e-9) == listener.heard("c1", 0.5)
    with pytest.raises(DataError, match="no object rows for clip 'c9'"):
        listener.heard("c9", 0.0)
    with pytest.raises(DataError, match="no object rows for clip 'c9'"):   # a frame of another dataset
        PerfectListener(objects, motion=True).maps(["c9"], [0.0], ["c1"], [0.0])
    with pytest.raises(DataError, match="sounding"):
        PerfectListener(objects.drop(columns="sounding"), source="objects.csv")


def test_own_sound_paints_the_heard_class_and_motion_drops_the_parked(objects):
    plain, moving = PerfectListener(objects), PerfectListener(objects, motion=True)
    # c1 hears one car: without motion, the larger (parked, silent) car is the likelier source
    np.testing.assert_array_equal(plain.boxes("c1", 0.0, plain.heard("c1", 0.0)), _box(objects, "c1", 0.0, "car", 0))
    # knowing what moves, the listener finds the sounding car (the GT)
    np.testing.assert_array_equal(moving.boxes("c1", 0.0, moving.heard("c1", 0.0)), _box(objects, "c1", 0.0, "car", 1))
    # at the clip's last frame the temporal filter looks 0.5 s back and still drops the parked car
    np.testing.assert_array_equal(moving.boxes("c1", 1.0, moving.heard("c1", 1.0)), _box(objects, "c1", 1.0, "car", 1))
    out = moving.maps(["c1", "c2"], [0.0, 0.0])
    assert out.postprocess == "none" and out.maps.shape == (2, 224, 224)
    np.testing.assert_array_equal(out.maps[1], gt_map_urbansas(_box(objects, "c2", 0.0, "bus", 1)))


def test_another_sound_moves_the_map_or_empties_it(objects):
    moving = PerfectListener(objects, motion=True)
    clips, times = ["c1", "c2", "c3"], [0.5, 0.5, 0.5]
    # c2's frame heard with c1's sound (a car and a bus): its bus; c3's frame with c2's sound (a bus): nothing
    other = moving.maps(clips, times, [clips[i] for i in (1, 0, 1)], [times[i] for i in (1, 0, 1)]).maps
    np.testing.assert_array_equal(other[1], gt_map_urbansas(_box(objects, "c2", 0.5, "bus", 1)))
    assert other[2].max() == 0
    with pytest.raises(ValueError, match="one entry per frame"):
        moving.maps(clips, times, clips[:2], times[:2])


def test_concat_maps_paint_both_halves_for_the_source_sound(objects):
    moving = PerfectListener(objects, motion=True)
    clips, times = ["c1", "c2", "c3"], [0.0, 0.0, 0.0]
    # row 0: c1 | c3 with c1's sound -> c1's moving car on the left, nothing of c3 (no car, no bus)
    # row 1: c2 | c1 with c1's sound (a car and a bus) -> c2's bus on the left, c1's car on the right
    out = moving.concat_maps(clips, times, left=[0, 1], right=[2, 0], source=[0, 0]).maps
    car = concat_boxes(_box(objects, "c1", 0.0, "car", 1), "left")
    np.testing.assert_array_equal(out[0], gt_map_urbansas(car))
    expected = gt_map_urbansas(np.concatenate([concat_boxes(_box(objects, "c2", 0.0, "bus", 1), "left"),
                                               concat_boxes(_box(objects, "c1", 0.0, "car", 1), "right")]))
    np.testing.assert_array_equal(out[1], expected)
    # the bus (left) covers more than the car (right): the side accuracy of a row whose source is right is 0
    assert side_accuracy(moving.concat_maps(clips, times, [1], [0], [0]), np.array(["right"]))[0] == 0.0
    with pytest.raises(ValueError, match="one entry per row"):
        moving.concat_maps(clips, times, [0], [1, 2], [0])


def test_reference_table_scores_listeners_like_the_models(objects):
    clips, times = ["c1", "c2", "c3", "c1", "c2", "c3"], [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    heard_gt = [np.concatenate([_box(objects, c, t, lab, 1) for lab in ("car", "bus", "motorbike")
                                if len(_box(objects, c, t, lab, 1))]) for c, t in zip(clips, times)]
    n = len(clips)
    ev = make_pairs(np.zeros((n, 16, 16, 3), np.uint8), np.zeros((n, 1, 160), np.float32),
                    gt=np.stack([gt_map_urbansas(b) for b in heard_gt]))
    ev = ev.__class__(np.asarray(clips), np.asarray(times), ev.images, ev.flow, ev.audio, ev.gt,
                      heard_gt, None, ev.audio_sr)
    listeners = perfect_listeners(objects)
    cs = concat_and_localize(ev.images, ev.audio, boxes=ev.boxes, flows=ev.flow, seed=0)
    table = reference_table(listeners, ev, cs, at=0.3, n_boot=50, seed=0)
    assert table.equals(reference_table(listeners, ev, cs, at=0.3, n_boot=50, seed=0, chunk=4))  # chunks change nothing
    assert table["method"].tolist() == ["Perfect listener (oracle)", "Perfect listener + motion (oracle)"]
    moving = table.iloc[1]
    assert moving["cIoU@0.3"] == 1.0            # knowing what moves and what is heard finds every GT box here
    assert table.iloc[0]["cIoU@0.3"] < 1.0      # c1's big parked car takes the car sound without motion
    # sensitivity: the same swap as the models', recomputed by hand
    lm = listeners["Perfect listener + motion (oracle)"]
    partners = swap_partners(n, 0)
    own = lm.maps(clips, times).maps
    other = lm.maps(clips, times, [clips[j] for j in partners], [times[j] for j in partners]).maps
    assert moving["audio sensitivity"] == pytest.approx(1.0 - map_correlations(own, other).mean())
    own_c = metrics.ciou(own, ev.gt, postprocess="none")
    other_c = metrics.ciou(other, ev.gt, postprocess="none")
    assert moving[SOUND_GAIN] == pytest.approx(np.mean(own_c >= 0.3) - np.mean(other_c >= 0.3))
    assert moving[f"{SOUND_GAIN}_lo"] <= moving[SOUND_GAIN] <= moving[f"{SOUND_GAIN}_hi"]
    assert moving["silent under swapped sound"] == pytest.approx(np.mean(other.reshape(n, -1).max(1) == 0))
    expected_side = side_accuracy(lm.concat_maps(clips, times, cs.left, cs.right, cs.source), cs.side).mean()
    assert moving["side_accuracy"] == pytest.approx(expected_side)
    per_row = side_accuracy(lm.concat_maps(clips, times, cs.left, cs.right, cs.source), cs.side)
    assert (moving["side_accuracy_lo"], moving["side_accuracy_hi"]) == side_accuracy_interval(per_row, 50, 0)
    assert "side_accuracy" not in reference_table(listeners, ev, n_boot=50).columns
    line = findings.reference_markdown(table, "side_accuracy", "the side accuracy")
    assert "Perfect listener + motion (oracle): " + f"{moving['side_accuracy']:.3f}" in line
    with pytest.raises(KeyError, match="no column 'nope'"):
        findings.reference_markdown(table, "nope", "x")


def test_seen_maps_paint_every_vehicle_and_reference_results_score_both(objects):
    plain, moving = PerfectListener(objects), PerfectListener(objects, motion=True)
    both_cars = np.concatenate([_box(objects, "c1", 0.0, "car", 1), _box(objects, "c1", 0.0, "car", 0)])
    np.testing.assert_array_equal(plain.seen_maps(["c1"], [0.0]).maps[0], gt_map_urbansas(both_cars))
    np.testing.assert_array_equal(moving.seen_maps(["c1"], [0.0]).maps[0],
                                  gt_map_urbansas(_box(objects, "c1", 0.0, "car", 1)))   # the parked car is still
    clips, times = ["c1", "c2", "c3"], [0.0, 0.5, 1.0]
    gt = np.stack([gt_map_urbansas(np.concatenate([_box(objects, c, t, lab, 1) for lab in ("car", "bus", "motorbike")]))
                   for c, t in zip(clips, times)])
    ev = make_pairs(np.zeros((3, 16, 16, 3), np.uint8), np.zeros((3, 1, 160), np.float32), gt=gt)
    ev = ev.__class__(np.asarray(clips), np.asarray(times), ev.images, ev.flow, ev.audio, gt, [np.zeros((0, 4))] * 3,
                      None, ev.audio_sr)
    res = reference_results(perfect_listeners(objects), ev, at=0.3, n_boot=20, seed=0, chunk=2)
    assert sorted(res) == sorted(["Perfect listener (oracle)", "Every vehicle (oracle)",
                                  "Perfect listener + motion (oracle)", "Every moving vehicle (oracle)"])
    expected = metrics.ciou(plain.seen_maps(clips, times).maps, gt, postprocess="none")
    np.testing.assert_allclose(res["Every vehicle (oracle)"].cious, expected)
    assert res["Perfect listener + motion (oracle)"].ciou == 1.0
    with pytest.raises(ValueError, match="2 clips but 1 times"):
        plain.seen_maps(["c1", "c2"], [0.0])
