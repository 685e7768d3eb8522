"""Stop-and-go vehicles (FlowGrad's case for longer flow windows): they move, then wait with the
engine on, or wait and pull away; the default scenes never draw them."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vssl_core.data import sources
from vssl_core.errors import DataError
from vssl_core.data.synth import generate
from vssl_core.data.synth_scene import SceneConfig, Thing, sample_scene
from vssl_core.studies.flowgrad_motion import state_boxes


def test_a_stop_and_go_thing_moves_only_inside_its_window():
    stops = Thing(1, "car", "idling", x0=-20.0, vx=4.0, z=10.0, length=4, height=1.5, width=1.8,
                  colour=(1, 2, 3), seed=0, move_until=5.0)
    t = np.array([0.0, 2.5, 5.0, 7.0])
    assert np.allclose(stops.x(t), [-20.0, -10.0, 0.0, 0.0])
    assert stops.moving_at(t).tolist() == [True, True, False, False]
    goes = Thing(1, "car", "idling", 0.0, 4.0, 10.0, 4, 1.5, 1.8, (1, 2, 3), 0, move_from=6.0)
    assert np.allclose(goes.x([0.0, 6.0, 7.0]), [24.0, 24.0, 28.0])
    still = Thing(1, "car", "idling", 3.0, 0.0, 10.0, 4, 1.5, 1.8, (1, 2, 3), 0)
    assert not still.moving_at(t).any() and np.allclose(still.x(t), 3.0)
    assert math.isinf(still.move_from) and math.isinf(still.move_until)


def test_default_scenes_have_no_stop_and_go_vehicle():
    cfg = SceneConfig(duration=4.0)
    for i in range(30):
        scene = sample_scene(cfg, np.random.default_rng(i), f"c{i}", i)
        assert all(not th.moving_at(np.linspace(0, 4, 9)).any() for th in scene.things if th.state == "idling")


def test_generated_stop_and_go_vehicles_wait_and_move_in_the_object_table(tmp_path):
    root = generate(tmp_path / "sg", 4, 7, sources.scene_config(idling_prob=0.0, stopgo_prob=1.0, duration=4.0),
                    n_jobs=1, progress=False)
    objects = pd.read_csv(root / "annotations" / "objects.csv")
    idling = objects[objects["state"] == "idling"]
    assert idling["filename"].nunique() == 4                      # one per clip
    per_clip = idling.groupby("filename")["speed_px_per_s"]
    assert (per_clip.min() == 0).all() and (per_clip.max() > 0).all()   # waits at some times, moves at others
    clips, times = idling["filename"].tolist(), idling["time"].tolist()
    still = state_boxes(objects, clips, times, "idling", stationary=True, min_visible=0.0)
    every = state_boxes(objects, clips, times, "idling", min_visible=0.0)
    assert sum(len(b) for b in still) < sum(len(b) for b in every)
    with pytest.raises(DataError, match="stopgo_prob"):
        SceneConfig(stopgo_prob=1.5)
