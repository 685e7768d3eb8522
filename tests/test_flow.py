"""Optical flow: Farneback, camera compensation, time windows, clip ends, parallel maps."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from vssl_core.data import flow as F
from vssl_core.data.urbansas import AUDIO_COLUMNS, VIDEO_COLUMNS, UrbansasDataset


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


# ---------------------------------------------------------------------------- pure functions
def test_params_defaults_are_the_papers():
    p = F.FlowParams()
    assert (p.fps, p.pyr_scale, p.levels, p.winsize, p.iterations, p.poly_n, p.poly_sigma,
            p.flags) == (8.0, 0.5, 3, 15, 3, 5, 1.2, 0)
    assert p.window_s == 0.125 and p.n_pairs == 1 and p.resize_to is None
    assert not p.compensate_camera


def test_translation_and_camera_compensation():
    """A textured image shifted by (3, 2) px: magnitude ~ sqrt(13); compensated ~ 0."""
    big = _texture(200, 260)
    a, b = big[20:180, 20:240], big[18:178, 17:237]   # content moves by dx=+3, dy=+2
    inner = (slice(20, -20), slice(20, -20))
    flow = F.farneback(a, b)
    assert flow.shape == (160, 220, 2) and flow.dtype == np.float32
    mag = F.magnitude(flow)
    assert abs(np.median(mag[inner]) - np.sqrt(13)) < 0.3
    assert abs(np.median(flow[inner][..., 0]) - 3) < 0.3
    assert abs(np.median(flow[inner][..., 1]) - 2) < 0.3
    comp = F.magnitude(F.farneback(a, b, F.FlowParams(compensate_camera=True)))
    assert np.median(comp[inner]) < 0.3 and np.median(comp[inner]) < np.median(mag[inner]) / 10
    rgb = np.repeat(a[..., None], 3, axis=2)                  # RGB input, same result
    np.testing.assert_array_equal(F.farneback(rgb, np.repeat(b[..., None], 3, 2)), flow)


def test_compensation_keeps_the_moving_object():
    """Affine camera field + a moving patch: the patch keeps its own motion, the rest -> 0."""
    h, w = 90, 160
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cam = np.stack([0.01 * xx + 1.5, 0.02 * yy - 0.5], axis=-1)     # zoom-ish + pan
    flow = cam.copy()
    flow[30:50, 60:90] += np.array([4.0, 0.0], np.float32)          # a car moving right
    out = F.compensate_camera_motion(flow)
    np.testing.assert_allclose(out[30:50, 60:90], np.broadcast_to([4.0, 0.0], (20, 30, 2)),
                               atol=1e-3)
    mask = np.ones((h, w), bool)
    mask[30:50, 60:90] = False
    assert np.abs(out[mask]).max() < 1e-3


def test_window_frame_pairs_by_hand():
    assert F.window_frame_pairs(0.0, 24, 240) == [(0, 3)]
    assert F.window_frame_pairs(9.5, 24, 240) == [(228, 231)]
    assert F.window_frame_pairs(9.9, 24, 240) == [(235, 238)]        # round(9.9*24)=238 fits
    assert F.window_frame_pairs(9.95, 24, 240) == [(236, 239)]       # past the end: moved back
    assert F.window_frame_pairs(10.0, 24, 240) == [(236, 239)]       # clamped to frame 239
    assert F.window_frame_pairs(50.0, 24, 240) == [(236, 239)]
    p = F.FlowParams(window_s=0.5)
    assert F.window_frame_pairs(1.0, 24, 240, p) == [(24, 27), (27, 30), (30, 33), (33, 36)]
    assert F.window_frame_pairs(1.0, 30, 300) == [(30, 34)]         # round(1.125*30)=34
    with pytest.raises(ValueError):
        F.window_frame_pairs(0.0, 24, 2)


# ---------------------------------------------------------------------------- synthetic clip
FPS, N_FRAMES, W, H = 16, 32, 160, 96
OFFSETS = np.cumsum([0] + [1 + (k % 3) for k in range(N_FRAMES - 1)])  # variable speed


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> UrbansasDataset:
    """A one-clip Urbansas root: a texture panning right at a variable speed, 16 fps .avi."""
    root = tmp_path_factory.mktemp("synth")
    (root / "annotations").mkdir()
    (root / "audio").mkdir()
    (root / "video" / "odd").mkdir(parents=True)
    big = _texture(H, W + int(OFFSETS[-1]) + 8, seed=1)
    path = root / "video" / "odd" / "street_traffic-lyon-1-2.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert vw.isOpened()
    for off in OFFSETS:
        x0 = int(OFFSETS[-1] - off)                   # content moves right by `off` px
        vw.write(cv2.cvtColor(big[:, x0:x0 + W], cv2.COLOR_GRAY2BGR))
    vw.release()
    sf.write(root / "audio" / "lyon1_2.wav", np.zeros((44100 * 2, 2), np.float32), 44100)
    v = pd.DataFrame([[0, 0, 1, 10.0, 10.0, 100.0, 50.0, 0, 1.0, "car", "lyon1_2", "lyon",
                       "lyon1", 0.5, 0, "tau"]], columns=VIDEO_COLUMNS)
    v.to_csv(root / "annotations" / "video_annotations.csv", index=False)
    a = pd.DataFrame([[0, "lyon1_2", 0, "car", 0, 0.1, 1.9]], columns=AUDIO_COLUMNS)
    a.to_csv(root / "annotations" / "audio_annotations.csv", index=False)
    return UrbansasDataset(root)


def test_synthetic_clip_loads(synth):
    assert synth.clips == ["lyon1_2"]
    assert synth.fps("lyon1_2") == FPS and synth.frame_size("lyon1_2") == (W, H)
    assert len(synth.pairs()) == 1


def test_flow_at_matches_the_pan_speed(synth):
    t = 0.5                                   # frames 8 -> 10 (two 16-fps frames per 8-fps step)
    m = F.flow_magnitude_at(synth, "lyon1_2", t)
    assert m.shape == (H, W) and m.dtype == np.float32
    expected = OFFSETS[10] - OFFSETS[8]
    assert abs(np.median(m[16:-16, 16:-16]) - expected) < 0.5
    fld = F.flow_field_at(synth, "lyon1_2", t)
    assert fld.shape == (H, W, 2)
    assert abs(np.median(fld[16:-16, 16:-16, 0]) - expected) < 0.5
    np.testing.assert_allclose(F.magnitude(fld), m, rtol=1e-6)


def test_window_aggregation_is_the_mean_of_pairs(synth):
    clip, t = "lyon1_2", 0.25
    p2 = F.FlowParams(window_s=0.25)
    agg = F.flow_magnitude_at(synth, clip, t, p2)
    f = synth.frames(clip, [t, t + 0.125, t + 0.25])
    single = [F.magnitude(F.farneback(f[0], f[1])), F.magnitude(F.farneback(f[1], f[2]))]
    np.testing.assert_allclose(agg, (single[0] + single[1]) / 2, rtol=1e-5, atol=1e-5)
    assert not np.allclose(single[0], single[1], atol=0.3)   # the speed really varies


def test_last_frame_uses_the_preceding_pair(synth):
    clip = "lyon1_2"
    last_t = (N_FRAMES - 1) / FPS
    m = F.flow_magnitude_at(synth, clip, last_t)
    f = synth.frames(clip, [last_t - 0.125, last_t])
    np.testing.assert_allclose(m, F.magnitude(F.farneback(f[0], f[1])), rtol=1e-6)
    assert np.isfinite(m).all() and np.median(m) > 1


def test_resize_to_changes_the_grid(synth):
    m = F.flow_magnitude_at(synth, "lyon1_2", 0.5, F.FlowParams(resize_to=(80, 48)))
    assert m.shape == (48, 80)


# ---------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def mini(urbansas_mini: Path) -> UrbansasDataset:
    return UrbansasDataset(urbansas_mini)


def test_every_real_pair_gets_a_flow_map(mini):
    pairs = mini.pairs("flowgrad")
    maps = F.flow_for_pairs(mini, pairs, n_jobs=2, progress=False)
    assert isinstance(maps, np.ndarray) and maps.shape == (102, 225, 400)
    assert maps.dtype == np.float32 and np.isfinite(maps).all() and (maps >= 0).all()
    assert (maps.reshape(102, -1).max(axis=1) > 0).all()
    # serial == parallel, in pair order (checked on two clips to stay fast)
    sub = [p for p in pairs if p.clip in pairs.clips[:2]][::-1]
    serial = F.flow_for_pairs(mini, sub, n_jobs=1, progress=False)
    idx = [pairs.pairs.index(p) for p in sub]
    np.testing.assert_array_equal(serial, maps[idx])


def test_flow_and_field_in_one_pass_equal_the_separate_calls(synth):
    """Both outputs of one Farneback pass per pair equal the magnitude and field computed apart."""
    clip, p = "lyon1_2", F.FlowParams(window_s=0.25)
    info = synth.video_info(clip)
    idx = {i for pr in F.window_frame_pairs(0.25, info.fps, info.n_frames, p) for i in pr}
    frames = dict(zip(sorted(idx), synth.frames(clip, [i / info.fps for i in sorted(idx)], gray=True)))
    mag, fld = F.flow_and_field_from_frames(frames, 0.25, info.fps, info.n_frames, p)
    np.testing.assert_allclose(mag, F.flow_from_frames(frames, 0.25, info.fps, info.n_frames, p), rtol=1e-6)
    np.testing.assert_allclose(fld, F.flow_from_frames(frames, 0.25, info.fps, info.n_frames, p, field=True),
                               rtol=1e-6)
    assert fld.shape == (*mag.shape, 2) and fld.dtype == np.float32


def test_eval_set_flow_field_column(synth, tmp_path):
    """flow_field=True adds the mean field resized to the image size; the magnitude is unchanged."""
    from vssl_core.data.evalset import as_numpy, build_eval_set

    plain = as_numpy(build_eval_set(synth, image_size=32, n_jobs=1, progress=False, workdir=tmp_path / "a"))
    both = as_numpy(build_eval_set(synth, image_size=32, n_jobs=1, progress=False, workdir=tmp_path / "b",
                                   flow_field=True))
    assert "flow_field" not in plain and both["flow_field"].shape == (1, 32, 32, 2)
    np.testing.assert_allclose(both["flow"], plain["flow"], rtol=1e-6)
    t = float(both["time"][0])
    expected = cv2.resize(F.flow_field_at(synth, "lyon1_2", t), (32, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(both["flow_field"][0], expected, rtol=1e-5, atol=1e-5)
    assert np.median(both["flow_field"][0][..., 0]) > 0.5        # the texture pans right: dx > 0


def test_pair_cache_gives_the_same_flow_and_reuses_pairs(synth, monkeypatch):
    """A per-clip cache of pair fields changes no value and computes each pair once."""
    clip, p = "lyon1_2", F.FlowParams(window_s=0.5)
    info = synth.video_info(clip)
    times = [0.25, 0.5, 0.75]
    idx = sorted({i for t in times for pr in F.window_frame_pairs(t, info.fps, info.n_frames, p) for i in pr})
    frames = dict(zip(idx, synth.frames(clip, [i / info.fps for i in idx], gray=True)))
    plain = [F.flow_from_frames(frames, t, info.fps, info.n_frames, p) for t in times]
    calls = []
    real = F.farneback
    monkeypatch.setattr(F, "farneback", lambda a, b, params=F.FlowParams(): calls.append(1) or real(a, b, params))
    cache: dict = {}
    cached = [F.flow_from_frames(frames, t, info.fps, info.n_frames, p, cache=cache) for t in times]
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a, b)
    distinct = {pr for t in times for pr in F.window_frame_pairs(t, info.fps, info.n_frames, p)}
    assert len(calls) == len(distinct) < sum(len(F.window_frame_pairs(t, info.fps, info.n_frames, p)) for t in times)
