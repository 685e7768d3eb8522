"""Tests that pin the science: each expected value is derived by hand or by a plain
reimplementation here, never taken from the code under test.

- Table 1's method maps (``studies.flowgrad.method_stream``): FlowGrad-H = clean(RCGrad) x flow;
- the FlowGrad pair filter at its boundaries (``start < t < end`` strict, negative boxes dropped,
  visibility, offscreen and non-identifiable events) and the lenient protocol beside it;
- the train/evaluation split: no training window comes from an evaluation clip;
- the papers' hyper-parameter defaults of LVS / Hear The Flow (eps_p, eps_n, tau, temperature).
"""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_pairs
from vssl_core.data.arrays import split_clips, training_windows
from vssl_core.data.flow import FlowParams
from vssl_core.data.synth import SceneConfig, generate
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.data.urbansas_pairs import select_pairs
from vssl_core.models import htf, lvs
from vssl_core.models.rcgrad import ModelConfig, build_model
from vssl_core.models.rcgrad_maps import autograd_rcgrad_maps
from vssl_core.studies import flowgrad as fs

GRID = 224


# ------------------------------------------------------------------ plain reimplementations
def plain_bilinear(m: np.ndarray, size: int = GRID) -> np.ndarray:
    """Bilinear resize with half-pixel centres (cv2 INTER_LINEAR), written out per pixel axis."""
    h, w = m.shape

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(size) + 0.5) * n_in / size - 0.5
        src = np.clip(src, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    top = m[y0][:, x0] * (1 - fx) + m[y0][:, x1] * fx
    bottom = m[y1][:, x0] * (1 - fx) + m[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def plain_minmax(m: np.ndarray) -> np.ndarray:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else m


def plain_clean(m: np.ndarray) -> np.ndarray:
    """RCGrad's clean (docs/conventions.md): min-max, then values strictly below the value at
    index 224 * 224 / 2 = 25088 of the ascending sort set to 0."""
    p = plain_minmax(m)
    median = np.sort(p.ravel())[25088]
    return np.where(p < median, 0.0, p)


# ------------------------------------------------------------------ Table 1 method maps
@pytest.fixture(scope="module")
def table1_maps():
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=0.25, image_size=64, audio_sr=8000)).eval()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((3, 1, 8000))).astype(np.float32)
    flow = (2.0 * rng.random((3, GRID, GRID))).astype(np.float32)
    ev = make_pairs(images, audio, flow=flow, audio_sr=8000)
    maps = dict(fs.method_stream({"rcgrad": model}, ev))
    return model, ev, maps


def test_table1_rows_and_their_post_processing(table1_maps):
    _, _, maps = table1_maps
    assert list(maps) == ["Optical flow only", "RCGrad", "FlowGrad-H", "Centred box"]
    assert {k: m.postprocess for k, m in maps.items()} == {
        "Optical flow only": "none", "RCGrad": "clean", "FlowGrad-H": "none", "Centred box": "none"}


def test_table1_rcgrad_row_is_the_gradcam_map_on_the_grid(table1_maps):
    model, ev, maps = table1_maps
    raw = autograd_rcgrad_maps(model, ev.images, ev.audio)          # per-sample autograd
    want = np.stack([plain_minmax(plain_bilinear(m.astype(np.float64))) for m in raw])
    np.testing.assert_allclose(maps["RCGrad"].maps, want, atol=2e-4)


def test_table1_flowgrad_h_is_clean_rcgrad_times_flow(table1_maps):
    """Fails if ``clean`` is dropped from FlowGrad-H in the Table 1 path."""
    _, ev, maps = table1_maps
    rc = maps["RCGrad"].maps.astype(np.float64)
    want = np.stack([plain_clean(m) for m in rc]) * ev.flow
    got = maps["FlowGrad-H"].maps
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(got, rc * ev.flow, atol=1e-3)          # clean matters here
    assert ((got == 0).mean(axis=(1, 2)) > 0.45).all()           # ~half of each map cleaned away


def test_flowgrad_h_maps_of_an_evaluation_set_are_table1s(table1_maps):
    from vssl_core.models import rcgrad_maps

    model, ev, maps = table1_maps
    np.testing.assert_allclose(rcgrad_maps.flowgrad_h_maps(model, ev).maps, maps["FlowGrad-H"].maps,
                               atol=1e-6)
    with pytest.raises(ValueError):
        rcgrad_maps.flowgrad_h_maps(model, make_pairs(ev.images, ev.audio, flow=ev.flow, audio_sr=16000))


def test_flowgrad_h_refuses_what_is_not_a_clean_map():
    from vssl_core.models.rcgrad_maps import flowgrad_h

    flow = np.ones((2, GRID, GRID), np.float32)
    with pytest.raises(ValueError, match=r"must be \(N, 224, 224\), got \(2, 100, 100\)"):
        flowgrad_h(np.zeros((2, 100, 100)), flow)
    with pytest.raises(ValueError, match="clean maps in \\[0, 1\\]"):
        flowgrad_h(np.full((2, GRID, GRID), 1.5), flow)
    with pytest.raises(ValueError, match="2 maps but 3 flow fields"):
        flowgrad_h(np.zeros((2, GRID, GRID)), np.ones((3, GRID, GRID), np.float32))
    assert flowgrad_h(np.zeros((2, GRID, GRID), np.float64), flow).maps.dtype == np.float32
    with pytest.raises(ValueError, match=r"\(to_grid then clean\)"):
        flowgrad_h(np.full((2, GRID, GRID), -0.5), flow)


def test_flowgrad_h_multiplies_rcgrad_maps_only():
    from vssl_core.eval.maps import LocalizationMaps
    from vssl_core.models.rcgrad_maps import flowgrad_h_from_rcgrad

    lvs_maps = LocalizationMaps(np.zeros((1, GRID, GRID), np.float32), "median", "lvs")
    with pytest.raises(ValueError, match="FlowGrad-H multiplies RCGrad's map, got 'lvs' maps"):
        flowgrad_h_from_rcgrad(lvs_maps, np.ones((1, GRID, GRID), np.float32))


def test_table1_flow_only_and_centred_box_rows(table1_maps):
    _, ev, maps = table1_maps
    np.testing.assert_array_equal(maps["Optical flow only"].maps, ev.flow)   # 224 in, 224 out
    box = maps["Centred box"].maps
    # sqrt(0.5) of each side, corners int(224 * (1 -+ 0.7071) / 2) = 32 and 191
    want = np.zeros((GRID, GRID), np.float32)
    want[32:191, 32:191] = 1
    for m in box:
        np.testing.assert_array_equal(m, want)


# ------------------------------------------------------------------ pair filter boundaries
def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    box = dict(track_id=1, x=100.0, y=100.0, w=50.0, h=40.0, class_id=0, visibility=1.0, filename="c")
    video = pd.DataFrame([
        {**box, "time": 2.5},                                  # rows need not be in time order
        {**box, "time": 1.0},                                  # = event start: out (strict)
        {**box, "time": 1.5},                                  # inside
        {**box, "time": 1.5, "track_id": 2, "visibility": 0.0},          # occluded
        {**box, "time": 1.5, "track_id": 3, "x": -0.01, "w": 20.0},      # negative x
        {**box, "time": 1.5, "track_id": 4, "x": -30.0, "w": 20.0},      # entirely left of the frame
        {**box, "time": 1.5, "track_id": 5, "x": 1000.0, "w": 400.0},    # past the right edge
        {**box, "time": 1.5, "track_id": 6, "y": -10.0, "h": 30.0},      # above the top edge
        {**box, "time": 1.5, "track_id": 7, "y": 700.0, "h": 50.0},      # past the bottom edge
        {**box, "time": 1.5, "track_id": 8, "y": -30.0, "h": 20.0},      # entirely above the frame
        {**box, "time": 1.5, "track_id": 9, "y": -10.0, "h": 10.0},      # touches y = 0 from above
        {**box, "time": 1.5, "track_id": 10, "x": -0.5, "w": 1.2},       # 0.7 px wide once clipped
        {**box, "time": 1.5, "track_id": 11, "y": -0.5, "h": 1.2},       # 0.7 px high once clipped
        {**box, "time": 2.0},                                  # = event end: out (strict)
        {**box, "time": 5.0},                                  # only an offscreen event
        {**box, "time": 1.5, "filename": "d"},                 # clips without any event
        {**box, "time": 2.0, "filename": "e"},
        {**box, "time": 2.5, "filename": "e"},
    ])
    audio = pd.DataFrame([
        dict(filename="c", class_id=0, label="car", non_identifiable_vehicle_sound=0, start=1.0, end=2.0),
        dict(filename="c", class_id=0, label="car", non_identifiable_vehicle_sound=1, start=2.2, end=3.0),
        dict(filename="c", class_id=4, label="offscreen", non_identifiable_vehicle_sound=0, start=4.0, end=6.0),
    ])
    return video, audio


def test_flowgrad_pair_filter_boundaries():
    video, audio = _tables()
    ps = select_pairs(video, audio, ["c", "d", "e"], protocol="flowgrad")
    assert ps.protocol == "flowgrad"
    assert [(p.clip, p.time) for p in ps] == [("c", 1.5)]
    # only negative coordinates are dropped; boxes past the right or bottom edge stay unclipped
    np.testing.assert_array_equal(ps[0].boxes, [[100.0, 100.0, 50.0, 40.0], [1000.0, 100.0, 400.0, 40.0],
                                                [100.0, 700.0, 50.0, 50.0]])
    assert ps[0].track_ids.tolist() == [1, 5, 7]
    assert ps[0].labels.tolist() == [0, 0, 0] and ps[0].boxes.dtype == np.float64
    assert not ps[0].boxes.flags.writeable and not ps[0].labels.flags.writeable
    assert dict(ps.dropped) == {
        "events: none annotated (row of -1s)": 0, "events: offscreen": 1,
        "events: non-identifiable vehicle sound": 1, "boxes: visibility != 1": 1,
        "boxes: negative coordinate": 7, "boxes: time outside events": 4 + 3,
        "clips: no usable event": 2}
    with pytest.raises(ValueError, match="unknown protocol 'paper'"):
        select_pairs(video, audio, ["c"], protocol="paper")
    assert [(p.clip, p.time) for p in select_pairs(video, audio, ["c", "d"])] == [("c", 1.5)]  # default
    assert select_pairs(video, audio, [], protocol="flowgrad").summary()["pairs"] == 0


def test_how_to_listen_pair_filter_boundaries():
    video, audio = _tables()
    ps = select_pairs(video, audio, ["c"], protocol="how_to_listen")
    assert ps.protocol == "how_to_listen"
    assert [p.time for p in ps] == [1.0, 1.5, 2.0, 2.5]        # inclusive, non-identifiable kept
    at15 = ps[1]
    assert at15.track_ids.tolist() == [1, 3, 5, 6, 7, 10, 11]   # 4, 8, 9 have no area left
    np.testing.assert_allclose(at15.boxes[1:], [[0.0, 100.0, 19.99, 40.0],    # clipped at x = 0
                                                [1000.0, 100.0, 280.0, 40.0],  # at x = 1280
                                                [100.0, 0.0, 50.0, 20.0],      # at y = 0
                                                [100.0, 700.0, 50.0, 20.0],    # at y = 720
                                                [0.0, 100.0, 0.7, 40.0],
                                                [100.0, 0.0, 50.0, 0.7]])
    assert ps.dropped["boxes: empty after clipping"] == 3
    assert ps.dropped["boxes: time outside events"] == 1        # t = 5.0 (offscreen only)


def test_a_clip_with_the_row_of_minus_ones_gives_no_pair():
    video, _ = _tables()
    audio = pd.DataFrame([dict(filename="c", class_id=-1, label="-1", non_identifiable_vehicle_sound=1,
                               start=-1.0, end=-1.0)])
    ps = select_pairs(video, audio, ["c", "d", "e"], protocol="flowgrad")
    assert len(ps) == 0 and ps.dropped["clips: no usable event"] == 3
    assert ps.dropped["events: none annotated (row of -1s)"] == 1
    assert ps.dropped["boxes: time outside events"] == 10      # 18 rows - 1 occluded - 7 negative


# ------------------------------------------------------------------ train / evaluation split
@pytest.fixture(scope="module")
def four_clips(tmp_path_factory) -> UrbansasDataset:
    cfg = SceneConfig(width=160, height=90, fps=8, duration=2.0, sample_rate=16000, idling_prob=1.0,
                      n_moving=(1, 1), n_parked=(0, 0), n_pedestrians=(0, 0), n_trees=(0, 0),
                      offscreen_prob=0.0, shake_prob=0.0, night_fraction=0.0)
    root = generate(tmp_path_factory.mktemp("four") / "ds", 4, seed=2, config=cfg, n_jobs=1,
                    progress=False)
    return UrbansasDataset(root)


def test_no_training_window_comes_from_an_evaluation_clip(four_clips):
    train, held_out = split_clips(four_clips, 2)
    assert held_out == sorted(four_clips.clips)[-2:] and not set(train) & set(held_out)
    windows = training_windows(four_clips, train, n=200, seconds=1.0, seed=0)
    assert {c for c, _ in windows} == set(train)               # both training clips, nothing else
    assert all(0.0 <= s <= 1.0 for _, s in windows)            # 2-s clips, 1-s windows


def test_the_rcgrad_family_trains_on_training_scenes_only(four_clips, monkeypatch):
    """The study path: training windows come from the training scenes, validation windows from the
    last scenes by name, never both; and the scenes are not the default evaluation set (seed 0)."""
    from vssl_core.data import training_set
    from vssl_core.training.rcgrad_family import RCGradFamilySetup

    seen = []
    monkeypatch.setattr(training_set.TrainingScenes, "dataset", lambda self, progress=True: four_clips)
    monkeypatch.setattr(training_set, "load_training",
                        lambda ds, clips, **kw: seen.append(list(clips)) or (None, "key"))
    scenes = training_set.TrainingScenes(clips=4, seconds=2.0, seed=5, val_clips=1)
    training_set.load_training_data(scenes, n_windows=8, n_val_windows=2, seconds=1.0, image_size=32,
                                    flow=FlowParams(), audio_sr=16000, seed=0, progress=False)
    train, val = seen
    assert val == sorted(four_clips.clips)[-1:] and not set(train) & set(val)
    assert set(train) | set(val) == set(four_clips.clips)
    assert RCGradFamilySetup().scenes.seed != 0


# ------------------------------------------------------------------ hyper-parameter defaults
def test_lvs_and_htf_defaults_are_the_papers():
    """LVS released code / Hear The Flow Sec. 4.3: eps_p 0.65, eps_n 0.4, tau 0.03, temperature 0.07."""
    papers = {"eps_p": 0.65, "eps_n": 0.4, "tau": 0.03, "temperature": 0.07}
    for cfg in (lvs.LVSConfig(), htf.HTFConfig()):
        assert {k: getattr(cfg, k) for k in papers} == papers, type(cfg).__name__
    defaults = {k: p.default for k, p in inspect.signature(lvs.trimap_logits).parameters.items()
                if k in papers}
    assert defaults == papers
    assert lvs.loss_params(lvs.LVSConfig())["eps_p"] == 0.65


def test_hear_the_flow_study_keeps_the_paper_thresholds():
    from vssl_core.studies import hear_the_flow as hs

    setup = hs.HearTheFlowSetup()
    for flow in (False, True):
        cfg = hs.model_config(setup, flow=flow, pretrained=True, frozen=False)
        assert (cfg.eps_p, cfg.eps_n, cfg.tau, cfg.temperature) == (0.65, 0.4, 0.03, 0.07)
