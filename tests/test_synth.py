"""Synthetic street scenes: layout, determinism, ground-truth semantics, sound, CLI, loader."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from vssl_core.data import synth
from vssl_core.data.synth import (
    SceneConfig, clip_annotations, clip_scene, ensure_synthetic, fingerprint, generate,
)
from vssl_core.data.synth_audio import synthesize_audio
from vssl_core.data.synth_render import FrameRenderer
from vssl_core.data.synth_scene import box_at
from vssl_core.errors import DataError

# small and short: 160x90 at 8 fps, 2-s clips, 16 kHz audio
SMALL = dict(width=160, height=90, fps=8, duration=2.0, sample_rate=16000)
CFG = SceneConfig(idling_prob=1.0, n_moving=(1, 2), n_parked=(1, 2), n_pedestrians=(1, 1),
                  n_trees=(1, 1), offscreen_prob=0.5, shake_prob=0.5, night_fraction=0.5, **SMALL)
# the official headers (data/README.md of the shared data), row index column unnamed
VIDEO_HEADER = ",frame_id,track_id,x,y,w,h,class_id,visibility,label,filename,city,location_id,time,night,subset"
AUDIO_HEADER = ",filename,class_id,label,non_identifiable_vehicle_sound,start,end"
N_CLIPS = 3


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("synth")
    a = generate(base / "a", N_CLIPS, seed=7, config=CFG, n_jobs=1, progress=False)
    b = generate(base / "b", N_CLIPS, seed=7, config=CFG, n_jobs=2, progress=False)
    return a, b


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def _csvs(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ann = root / "annotations"
    return (pd.read_csv(ann / "video_annotations.csv", index_col=0),
            pd.read_csv(ann / "audio_annotations.csv", index_col=0), pd.read_csv(ann / "objects.csv"))


def test_same_seed_same_bytes_and_frames_whatever_n_jobs(datasets):
    a, b = datasets
    for name in ("video_annotations.csv", "audio_annotations.csv", "objects.csv"):
        assert (a / "annotations" / name).read_bytes() == (b / "annotations" / name).read_bytes()
    assert (a / "meta.json").read_bytes() == (b / "meta.json").read_bytes()
    wavs = sorted((a / "audio").glob("*.wav"))
    assert len(wavs) == N_CLIPS
    for w in wavs:
        assert w.read_bytes() == (b / "audio" / w.name).read_bytes()
    for v in sorted((a / "video").rglob("*.mp4")):
        fa, fb = _frames(v), _frames(b / v.relative_to(a))
        assert len(fa) == CFG.n_frames and len(fa) == len(fb)
        assert all(np.array_equal(x, y) for x, y in zip(fa, fb))


def test_different_seed_differs(tmp_path):
    a = clip_annotations(clip_scene(1, 0, CFG), CFG)
    b = clip_annotations(clip_scene(2, 0, CFG), CFG)
    assert a.objects != b.objects


def test_layout_headers_and_media(datasets):
    root = datasets[0]
    ann = root / "annotations"
    video = (ann / "video_annotations.csv").read_bytes().decode()
    audio = (ann / "audio_annotations.csv").read_bytes().decode()
    assert video.split("\r\n")[0] == VIDEO_HEADER
    assert audio.split("\r\n")[0] == AUDIO_HEADER
    assert "\n" not in video.replace("\r\n", "")          # CRLF like the real files
    v, a, o = _csvs(root)
    assert list(o.columns) == list(synth.OBJECT_COLUMNS)
    assert set(v.city) == {"synthetic"} and set(v.subset) == {"synthetic"}
    assert set(v.location_id) <= {f"synth{i}" for i in range(N_CLIPS)}
    assert np.allclose(v.time * 2, v.frame_id) and set(v.visibility) <= {0.0, 1.0}
    assert ((v.time >= 0) & (v.time < CFG.duration)).all()
    for i in range(N_CLIPS):
        clip = synth.clip_name(7, i)
        info = sf.info(root / "audio" / f"{clip}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (16000, 2, "PCM_16")
        assert info.frames == int(CFG.duration * CFG.sample_rate)
        cap = cv2.VideoCapture(str(root / "video" / "video_8fps" / f"{clip}.mp4"))
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (160, 90)
        cap.release()


def test_label_and_class_ids_consistent(datasets):
    v, a, _ = _csvs(datasets[0])
    ids = {"car": 0, "bus": 1, "motorbike": 2, "truck": 3, "offscreen": 4}
    assert all(ids[lab] == c for lab, c in zip(v.label, v.class_id))
    assert all(ids[lab] == c for lab, c in zip(a.label, a.class_id))
    assert ((a.start >= 0) & (a.end <= CFG.duration) & (a.start < a.end)).all()
    assert (a.non_identifiable_vehicle_sound == 0).all()


def test_boxes_match_objects_and_lie_in_events(datasets):
    v, a, o = _csvs(datasets[0])
    assert len(v) > 0
    merged = v.merge(o, on=["filename", "time", "track_id"], suffixes=("", "_o"))
    assert len(merged) == len(v)
    for c in "xywh":
        assert np.allclose(merged[c], merged[f"{c}_o"])
    assert set(merged.state) <= {"moving", "idling"}
    assert (merged.visibility == (merged.visible_fraction >= 0.5)).all()
    for _, row in v.iterrows():          # each box lies inside an event of its clip
        ev = a[(a.filename == row.filename) & (a.label == row.label)]
        assert ((ev.start <= row.time) & (row.time <= ev.end)).any()


def test_parked_vehicles_are_silent_and_unannotated(datasets):
    v, a, o = _csvs(datasets[0])
    parked = o[o.state == "parked"]
    assert parked.filename.nunique() == N_CLIPS                 # n_parked >= 1 per clip
    assert (parked.sounding == 0).all() and (parked.speed_px_per_s == 0).all()
    keys = set(zip(v.filename, v.track_id))
    assert not any((f, t) in keys for f, t in zip(parked.filename, parked.track_id))
    # one event per sounding vehicle, none for parked ones
    vehicles = o[o.label.isin(["car", "bus", "truck", "motorbike"])].drop_duplicates(["filename", "track_id"])
    expected = vehicles.groupby("filename").sounding.sum()
    assert (a.groupby("filename").size().reindex(expected.index) == expected).all()


def test_idling_vehicle_sounds_without_moving(datasets):
    v, a, o = _csvs(datasets[0])
    idling = o[o.state == "idling"]
    assert idling.filename.nunique() == N_CLIPS                 # idling_prob = 1
    assert (idling.speed_px_per_s == 0).all() and (idling.sounding == 1).all()
    for clip, grp in idling.groupby("filename"):
        assert grp[["x", "y", "w", "h"]].nunique().max() <= (2 if CFG.shake_prob else 1) * len(grp)
        ev = a[(a.filename == clip) & (a.start == 0.0) & (a.end == CFG.duration)]
        assert len(ev) >= 1


def test_object_states(datasets):
    _, a, o = _csvs(datasets[0])
    states = {"moving", "parked", "idling", "pedestrian", "tree", "offscreen"}
    assert set(o.state) <= states
    assert {"moving", "parked", "idling", "pedestrian", "tree"} <= set(o.state)
    label_of = {"pedestrian": {"pedestrian"}, "tree": {"tree"}}
    for state, labels in label_of.items():
        assert set(o[o.state == state].label) == labels
    assert (o[o.state == "tree"].sounding == 0).all()
    off = o[o.state == "offscreen"]
    assert off.x.isna().all() and (off.visible_fraction == 0).all()
    n_off = off.drop_duplicates(["filename", "track_id"]).shape[0]
    assert (a.label == "offscreen").sum() == n_off
    assert ((o.depth >= 0) & (o.depth <= 1)).all()
    moving = o[(o.state == "moving") & o.x.notna()]
    assert (moving.speed_px_per_s > 0).all()


def test_clip_without_events_gets_the_minus_one_row():
    cfg = SceneConfig(n_moving=(0, 0), idling_prob=0.0, offscreen_prob=0.0, **SMALL)
    ann = clip_annotations(clip_scene(0, 0, cfg), cfg)
    assert ann.video == []
    assert ann.audio == [(synth.clip_name(0, 0), -1, "-1", 1, -1.0, -1.0)]
    text = synth._csv(ann.audio, synth.AUDIO_COLUMNS, True)
    assert text.split("\r\n")[1] == "0,synth0000_00000,-1,-1,1,-1.0,-1.0"   # as the real file


def _single(kind: str) -> SceneConfig:
    return SceneConfig(n_moving=(0, 0), n_parked=(1, 1) if kind == "parked" else (0, 0),
                       idling_prob=1.0 if kind == "idling" else 0.0, n_pedestrians=(0, 0),
                       n_trees=(0, 0), offscreen_prob=0.0, shake_prob=0.0, night_fraction=0.0,
                       footsteps=False, **SMALL)


def test_box_units_match_rendered_pixels():
    """The box of a lone idling vehicle, scaled to pixels, bounds the pixels it changes."""
    cfg = _single("idling")
    for seed in range(3):
        scene = clip_scene(seed, 0, cfg)
        r = FrameRenderer(scene, cfg)
        diff = np.abs(r.frame(0).astype(int) - np.clip(r.background + 0.5, 0, 255).astype(int)).max(-1)
        ys, xs = np.nonzero(diff > 12)
        box = box_at(scene.camera, scene.things[0], [0.0])[0] * cfg.width / 1280
        x0, y0 = max(box[0], 0), max(box[1], 0)
        x1, y1 = min(box[0] + box[2], cfg.width), min(box[1] + box[3], cfg.height)
        tol = 2.0
        assert xs.min() >= x0 - tol and xs.max() <= x1 + tol
        assert ys.min() >= y0 - tol and ys.max() <= y1 + tol
        assert (xs.max() - xs.min()) > 0.8 * (x1 - x0) - tol


def test_stereo_pan_follows_position():
    cfg = _single("idling")
    sides = set()
    for seed in range(12):
        scene = clip_scene(seed, 0, cfg)
        cx = box_at(scene.camera, scene.things[0], [0.0])[0]
        cx = cx[0] + cx[2] / 2
        audio = synthesize_audio(scene, cfg)
        left, right = np.sqrt((audio.astype(np.float64) ** 2).mean(1))
        if abs(cx - 640) < 60:
            continue
        sides.add(cx < 640)
        assert (left > right) == (cx < 640), (seed, cx, left, right)
    assert sides == {True, False}


def test_parked_vehicle_is_silent():
    cfg = _single("parked")
    audio = synthesize_audio(clip_scene(0, 0, cfg), cfg)
    rms = float(np.sqrt((audio.astype(np.float64) ** 2).mean()))
    background = 10 ** (cfg.noise_level_db / 20)
    assert rms < 1.6 * background                 # noise (+ maybe a hum) only
    idle = synthesize_audio(clip_scene(0, 0, _single("idling")), _single("idling"))
    assert np.sqrt((idle.astype(np.float64) ** 2).mean()) > 2.5 * background


def test_config_validation():
    with pytest.raises(DataError, match="fps"):
        SceneConfig(fps=25)
    with pytest.raises(DataError, match="n_parked"):
        SceneConfig(n_parked=(3, 1))
    with pytest.raises(DataError, match="night_fraction"):
        SceneConfig(night_fraction=1.5)


def test_generate_refuses_foreign_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="meta.json"):
        generate(tmp_path, 1, 0, _single("idling"), n_jobs=1, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_ensure_synthetic_reuses(tmp_path):
    cfg = SceneConfig(**{**SMALL, "duration": 1.0})
    p1 = ensure_synthetic(1, 3, cfg, root=tmp_path, n_jobs=1, progress=False)
    assert p1 == tmp_path / fingerprint(cfg, 1, 3)
    stamp = (p1 / "meta.json").stat().st_mtime_ns
    p2 = ensure_synthetic(1, 3, cfg, root=tmp_path, n_jobs=1, progress=False)
    assert p2 == p1 and (p1 / "meta.json").stat().st_mtime_ns == stamp
    assert fingerprint(cfg, 2, 3) != fingerprint(cfg, 1, 3) != fingerprint(cfg, 1, 4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp leftovers


def test_cli(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "vssl_core", "synth", "--out", str(out), "--clips", "1",
           "--seed", "2", "--jobs", "1", "--duration", "1", "--fps", "4", "--size", "64", "36",
           "--night-fraction", "1", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("synth: 1 clips,") and "events" in res.stdout
    assert (out / "audio" / "synth0002_00000.wav").is_file()
    assert (out / "video" / "video_4fps" / "synth0002_00000.mp4").is_file()
    bad = subprocess.run([*cmd[:5], str(tmp_path / "x"), "--clips", "1", "--bogus"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--bogus" in bad.stderr


def test_loads_through_urbansas_loader(datasets):
    from vssl_core.data import urbansas

    ds = urbansas.UrbansasDataset(datasets[0])
    assert sorted(ds.clips) == [synth.clip_name(7, i) for i in range(N_CLIPS)]
    pairs = ds.pairs(protocol="flowgrad")
    assert len(pairs) > 0
    v, _, _ = _csvs(datasets[0])
    for p in pairs:
        assert (p.boxes >= 0).all()
        rows = v[(v.filename == p.clip) & (v.time == p.time) & (v.visibility == 1)]
        assert set(p.track_ids) <= set(rows.track_id)
    frame = ds.frame(pairs[0].clip, pairs[0].time)
    assert frame.shape == (90, 160, 3) and frame.dtype == np.uint8


# Box statistics of the default config against Urbansas-mini (visibility == 1 boxes of the real
# video_annotations.csv: median area 1.04% of the 1280x720 frame, median 129 x 76 px, 10th-90th
# percentile area 0.16%-8.7%; 13.9% of the boxes have visibility 0). The ranges are wide enough
# for the sampling spread of 16 clips (seeds 0-3 give medians 0.66%-1.22%, visibility-0 shares
# 6%-17%) and narrow enough to catch the v1 geometry (median area 3.9%, visibility 0: 39%).
MEDIAN_AREA_RANGE = (0.5, 2.0)     # % of the frame
MAX_VISIBILITY0_SHARE = 0.2


def test_default_box_sizes_and_visibility_resemble_urbansas():
    cfg = SceneConfig()
    rows = [r for i in range(16) for r in clip_annotations(clip_scene(0, i, cfg), cfg).video]
    v = pd.DataFrame(rows, columns=list(synth.VIDEO_COLUMNS))
    vis = v[v.visibility == 1]
    area = vis.w * vis.h / (1280 * 720) * 100
    assert MEDIAN_AREA_RANGE[0] <= area.median() <= MEDIAN_AREA_RANGE[1], area.median()
    assert area.quantile(0.9) > 10 * area.quantile(0.1)          # near large and far small ones
    assert (v.visibility == 0).mean() < MAX_VISIBILITY0_SHARE
    assert (v.visibility == 0).any()                             # occlusion does happen


def test_silhouette_occlusion_hand_case():
    """A nearer occluder's parts, not its full box, hide what lies behind."""
    from vssl_core.data.synth_scene import visible_fractions
    boxes = np.array([[100.0, 100, 96, 100], [100, 100, 96, 100], [2000, 0, 10, 10]])   # 4-px cells
    depth = np.array([1.0, 2.0, 3.0])
    left_half = np.array([[100.0, 100, 48, 100]])
    parts = [left_half, np.zeros((0, 4)), np.zeros((0, 4))]
    vf = visible_fractions(boxes, depth, parts)
    assert vf[0] == 1.0 and vf[1] == pytest.approx(0.5) and vf[2] == 0.0   # [2] is off-frame
    # a box entering the frame (half outside) and unoccluded counts as visible
    edge = visible_fractions(np.array([[-50.0, 10, 100, 50]]), np.array([1.0]), [np.zeros((0, 4))])
    assert edge[0] == 1.0
