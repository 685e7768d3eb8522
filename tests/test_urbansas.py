"""Urbansas loader: pairs of both protocols, media access, error handling (real + synthetic data)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from vssl_core.data.urbansas import (
    AUDIO_COLUMNS, CLASS_IDS, URBANSAS_FRAME, VIDEO_COLUMNS, UrbansasDataset,
    canonical_clip_name, scale_boxes,
)
from vssl_core.errors import DataError


# ---------------------------------------------------------------------------- pure functions
@pytest.mark.parametrize("name, expected", [
    ("street_traffic-milan-1202-44201", "milan1202_44201"),
    ("street_traffic-milan-1202-44201.mp4", "milan1202_44201"),
    ("video/x/street_traffic-lisbon-1067-40096.wav", "lisbon1067_40096"),
    ("milan1202_44201", "milan1202_44201"),
    ("acevedo0103_00_0", "acevedo0103_00_0"),
    ("acevedo0103_00_0.MP4", "acevedo0103_00_0"),
    ("street_traffic-milan-1202", "street_traffic-milan-1202"),  # not the TAU form: unchanged
])
def test_canonical_clip_name(name, expected):
    assert canonical_clip_name(name) == expected


def test_constants():
    assert URBANSAS_FRAME == (1280, 720)
    assert CLASS_IDS == {"car": 0, "bus": 1, "motorbike": 2, "truck": 3, "offscreen": 4}
    assert VIDEO_COLUMNS[0] == "" and "visibility" in VIDEO_COLUMNS and len(VIDEO_COLUMNS) == 16
    assert AUDIO_COLUMNS[-2:] == ("start", "end")


def test_scale_boxes_by_hand():
    b = scale_boxes(np.array([[640.0, 360.0, 128.0, 72.0]]), (320, 180))
    np.testing.assert_allclose(b, [[160.0, 90.0, 32.0, 18.0]])
    assert scale_boxes(np.zeros((0, 4)), (400, 225)).shape == (0, 4)


# ---------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def mini(urbansas_mini: Path) -> UrbansasDataset:
    return UrbansasDataset(urbansas_mini)


def test_flowgrad_pairs_count(mini):
    ps = mini.pairs("flowgrad")
    assert len(ps) == 102
    assert len(ps.clips) == 10
    s = ps.summary()
    assert (s["pairs"], s["clips"]) == (102, 10)
    assert s["boxes"] == sum(len(p.boxes) for p in ps)
    assert mini.pairs("flowgrad") is ps  # computed once


def test_flowgrad_pairs_respect_the_filters(mini):
    a = mini.audio_annotations
    for p in mini.pairs("flowgrad"):
        assert (p.boxes >= 0).all()
        ev = a[(a.filename == p.clip) & (a.label != "offscreen")
               & (a.non_identifiable_vehicle_sound == 0)]
        assert ((ev.start < p.time) & (p.time < ev.end)).any()
        rows = mini.boxes(p.clip, p.time)
        assert len(p.boxes) == int(((rows.visibility == 1)
                                    & (rows[["x", "y", "w", "h"]] >= 0).all(axis=1)).sum())
        assert len(p.boxes) == len(p.labels) == len(p.track_ids) > 0
        assert set(p.labels.tolist()) <= {0, 1, 2, 3}


def test_dropped_counts_account_for_every_box(mini):
    ps = mini.pairs("flowgrad")
    d = ps.dropped
    kept = sum(len(p.boxes) for p in ps)
    box_drops = sum(v for k, v in d.items() if k.startswith("boxes:"))
    assert kept + box_drops == len(mini.video_annotations)
    assert d["events: offscreen"] == 1
    assert d["boxes: visibility != 1"] == int((mini.video_annotations.visibility != 1).sum())


def test_known_box_scaled_to_the_preview_frames(mini):
    # CSV row: barcelona161_4901, time 0.5, x 513.28, y 282.31, w 246.78, h 136.44 (1280x720)
    p = next(p for p in mini.pairs() if p.clip == "barcelona161_4901" and p.time == 0.5)
    np.testing.assert_allclose(p.boxes, [[513.28, 282.31, 246.78, 136.44]])
    assert mini.frame_size("barcelona161_4901") == (400, 225)
    px = scale_boxes(p.boxes, mini.frame_size(p.clip))
    np.testing.assert_allclose(px, [[513.28 * 400 / 1280, 282.31 * 225 / 720,
                                     246.78 * 400 / 1280, 136.44 * 225 / 720]])
    np.testing.assert_allclose(px, [[160.4, 88.221875, 77.11875, 42.6375]])


def test_how_to_listen_is_lenient(mini):
    fg, htl = mini.pairs("flowgrad"), mini.pairs("how_to_listen")
    assert {(p.clip, p.time) for p in fg} <= {(p.clip, p.time) for p in htl}
    assert len(htl) > len(fg)
    for p in htl:
        b = p.boxes
        assert (b[:, :2] >= 0).all() and (b[:, 0] + b[:, 2] <= 1280 + 1e-9).all()
        assert (b[:, 1] + b[:, 3] <= 720 + 1e-9).all() and (b[:, 2:] > 0).all()
    with pytest.raises(DataError, match="protocol"):
        mini.pairs("nope")


def test_frames_and_clamping(mini):
    clip = "barcelona161_4901"
    assert mini.fps(clip) == 24.0
    f0 = mini.frame(clip, 0.5)
    assert f0.shape == (225, 400, 3) and f0.dtype == np.uint8
    many = mini.frames(clip, [0.5, 100.0, 9.99, 0.52])
    np.testing.assert_array_equal(many[0], f0)
    np.testing.assert_array_equal(many[3], f0)         # round(0.52 * 24) = 12 = round(0.5 * 24)
    np.testing.assert_array_equal(many[1], many[2])    # both clamp to the last frame (239)
    assert mini.frame_index(clip, 100.0) == 239
    assert not np.array_equal(many[0], many[1])


def test_audio_windows(mini):
    clip = "helsinki164_5009"
    a = mini.audio(clip, 2.0, 1.0)
    assert a.shape == (1, 16000) and a.dtype == np.float32 and np.abs(a).max() > 0
    s = mini.audio(clip, 2.0, 0.5, sr=8000, channels="stereo")
    assert s.shape == (2, 4000)
    before = mini.audio(clip, -2.0, 1.0)               # entirely before the clip: zeros
    assert before.shape == (1, 16000) and not before.any()
    edge = mini.audio(clip, -0.5, 1.0)
    assert not edge[:, :7900].any() and edge[:, 8100:].any()


def test_random_windows(mini):
    w1 = mini.random_windows(20, duration=5.0, seed=3)
    assert w1 == mini.random_windows(20, duration=5.0, seed=3)
    assert w1 != mini.random_windows(20, duration=5.0, seed=4)
    assert all(0 <= s <= mini.duration(c) - 5.0 for c, s in w1)
    held_out = mini.pairs().clips
    pool = mini.unlabelled_clips(exclude=held_out)
    assert len(pool) == 15 and not set(pool) & set(held_out)
    assert {c for c, _ in mini.random_windows(30, seed=0, clips=pool)} <= set(pool)


# ---------------------------------------------------------------------------- broken copies
def _layout_copy(src: Path, dst: Path) -> Path:
    """A root of symlinks to ``src`` (annotations copied, so they can be edited)."""
    shutil.copytree(src / "annotations", dst / "annotations")
    (dst / "audio").mkdir(parents=True)
    for f in (src / "audio").iterdir():
        (dst / "audio" / f.name).symlink_to(f)
    (dst / "video" / "video_24fps").mkdir(parents=True)
    for f in (src / "video" / "video_24fps").iterdir():
        (dst / "video" / "video_24fps" / f.name).symlink_to(f)
    return dst


BROKEN = "barcelona161_4901"  # one of the 10 FlowGrad clips


@pytest.fixture(scope="module")
def broken_root(urbansas_mini, tmp_path_factory) -> Path:
    root = _layout_copy(urbansas_mini, tmp_path_factory.mktemp("broken"))
    link = root / "video" / "video_24fps" / f"{BROKEN}.mp4"
    head = link.resolve().read_bytes()[:1500]
    link.unlink()
    link.write_bytes(head + bytes(range(256)) * 8)     # truncated + garbage
    return root


def test_corrupt_video_raises_naming_the_clip(broken_root):
    with pytest.raises(DataError) as exc:
        UrbansasDataset(broken_root)
    msg = str(exc.value)
    assert BROKEN in msg and "Fix:" in msg


def test_corrupt_video_skipped_and_counted(broken_root):
    ds = UrbansasDataset(broken_root, on_error="skip")
    assert ds.skipped == {"undecodable video": [BROKEN]}
    assert BROKEN not in ds.clips and len(ds.clips) == 24
    ps = ds.pairs()
    assert BROKEN not in ps.clips and len(ps.clips) == 9 and len(ps) < 102
    assert ps.dropped["clips: skipped (media)"] == 1
    with pytest.raises(DataError, match="skipped"):
        ds.frame(BROKEN, 0.0)


def test_missing_video_and_tau_long_names(urbansas_mini, tmp_path):
    root = _layout_copy(urbansas_mini, tmp_path / "r")
    vdir = root / "video" / "video_24fps"
    (vdir / "lisbon1067_40096.mp4").unlink()
    other = root / "video" / "elsewhere" / "deeper"
    other.mkdir(parents=True)
    (vdir / "milan1011_40336.mp4").rename(other / "street_traffic-milan-1011-40336.mp4")
    with pytest.raises(DataError, match="lisbon1067_40096"):
        UrbansasDataset(root)
    ds = UrbansasDataset(root, on_error="skip")
    assert ds.skipped == {"missing video": ["lisbon1067_40096"]}
    assert ds.video_path("milan1011_40336").name == "street_traffic-milan-1011-40336.mp4"
    assert ds.frame("milan1011_40336", 1.0).shape == (225, 400, 3)


def test_csv_missing_column(urbansas_mini, tmp_path):
    root = _layout_copy(urbansas_mini, tmp_path / "r")
    csv = root / "annotations" / "video_annotations.csv"
    pd.read_csv(csv).drop(columns=["visibility"]).to_csv(csv, index=False)
    with pytest.raises(DataError) as exc:
        UrbansasDataset(root)
    msg = str(exc.value)
    assert "video_annotations.csv" in msg and "visibility" in msg and "official columns" in msg


def test_csv_missing_file(urbansas_mini, tmp_path):
    root = _layout_copy(urbansas_mini, tmp_path / "r")
    (root / "annotations" / "audio_annotations.csv").unlink()
    with pytest.raises(DataError, match="audio_annotations.csv.*not found.*layout"):
        UrbansasDataset(root)


def test_bad_root(tmp_path):
    with pytest.raises(DataError, match="not found"):
        UrbansasDataset(tmp_path / "nope")


# ---------------------------------------------------------------------------- resampling (synthetic)
def test_audio_resampling_of_a_sine(tmp_path):
    """A 48 kHz stereo 440 Hz sine read back at 16 kHz matches the analytic sine."""
    from vssl_core.data import media
    sr, f = 48000, 440.0
    t = np.arange(2 * sr) / sr
    left = 0.5 * np.sin(2 * np.pi * f * t)
    path = tmp_path / "sine.wav"
    sf.write(path, np.stack([left, 0.5 * left], axis=1), sr, subtype="FLOAT")
    out = media.read_audio(path, 0.5, 1.0, sr=16000, channels="stereo")
    assert out.shape == (2, 16000)
    ref = 0.5 * np.sin(2 * np.pi * f * (0.5 + np.arange(16000) / 16000))
    np.testing.assert_allclose(out[0], ref, atol=2e-3)
    np.testing.assert_allclose(out[1], 0.5 * ref, atol=2e-3)
    mono = media.read_audio(path, 1.5, 1.0, sr=22050)  # 0.5 s inside, 0.5 s padded
    assert mono.shape == (1, 22050)
    np.testing.assert_allclose(mono[0, :11000], 0.75 * 0.5 * np.sin(
        2 * np.pi * f * (1.5 + np.arange(11000) / 22050)), atol=3e-3)
    assert not mono[0, 11100:].any()
