"""Training windows from real folders: a VGGSound-style folder of videos and a real Urbansas folder
with unlabelled clips, cached and read lazily, through the one training loop."""
from __future__ import annotations

import shutil
import stat
import sys
from dataclasses import replace

import numpy as np
import pytest

from test_train import CFG, _model

from vssl_core.data.flow import FlowParams
from vssl_core.data.folders import detect_layout, folder_training_data, open_folder, vggsound_layout
from vssl_core.data.streaming import NpyRows
from vssl_core.errors import DataError
from vssl_core.models.rcgrad import ModelConfig, RCGrad
from vssl_core.training.loop import train

SMALL = dict(seconds=0.5, image_size=32, flow=FlowParams(), audio_sr=8000, progress=False)


@pytest.fixture
def scratch_data(tmp_path, monkeypatch):
    monkeypatch.setenv("VSSL_DATA_DIR", str(tmp_path / "data"))  # caches go to the test's folder
    return tmp_path


def _clips(root, n):
    return sorted(p.stem for p in (root / "audio").glob("*.wav"))[:n]


def _video(root, clip):
    return next(p for p in (root / "video").rglob(f"{clip}.*"))


def test_vggsound_folder_streams_windows_that_train(urbansas_mini, scratch_data):
    folder = scratch_data / "vggsound"
    (folder / "part1").mkdir(parents=True)
    for k, clip in enumerate(_clips(urbansas_mini, 3)):
        (folder / "part1" / f"yt{k:02d}_000030.mp4").symlink_to(_video(urbansas_mini, clip))
        (folder / "part1" / f"yt{k:02d}_000030.wav").symlink_to(urbansas_mini / "audio" / f"{clip}.wav")
    assert detect_layout(folder) == "vggsound"
    ds = open_folder(folder)
    assert ds.clips == [] and ds.unlabelled_clips() == ["yt00_000030", "yt01_000030", "yt02_000030"]
    data = folder_training_data(ds, n_windows=6, n_val_windows=2, val_clips=1, seed=3, **SMALL)
    assert isinstance(data.train.images, NpyRows) and isinstance(data.val.audio, NpyRows)
    assert data.train.images.shape == (6, 32, 32, 3) and data.train.audio.shape == (6, 1, 4000)
    assert data.train.flow.shape == (6, 32, 32) and set(data.val.clips) == {"yt02_000030"}
    assert "yt02_000030" not in set(data.train.clips)
    assert list(data.train.clips) == sorted(data.train.clips)  # built clip by clip
    again = folder_training_data(open_folder(folder), n_windows=6, n_val_windows=2, val_clips=1, seed=3, **SMALL)
    assert again.key == data.key and np.array_equal(again.train.images[:], data.train.images[:])  # cached
    cfg = ModelConfig(kind="rcgrad", width=0.125, image_size=32, audio_sr=8000)
    _, history = train(_model(RCGrad, cfg), replace(CFG, epochs=1, batch_size=3), data.train, data.val,
                       progress=False)
    assert np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])


def test_audio_inside_the_video_is_extracted_once_with_ffmpeg(urbansas_mini, scratch_data, monkeypatch):
    clip = _clips(urbansas_mini, 1)[0]
    folder = scratch_data / "inside"
    folder.mkdir()
    (folder / "abc.mp4").symlink_to(_video(urbansas_mini, clip))
    cp = shutil.which("cp")
    monkeypatch.setenv("PATH", str(scratch_data / "nothing-here"))
    monkeypatch.delenv("VSSL_FFMPEG", raising=False)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(DataError, match="ffmpeg"):
        vggsound_layout(folder, scratch_data / "layout")
    # a stand-in ffmpeg that writes a known wav (the real one decodes the video's audio track)
    fake = scratch_data / "fake-ffmpeg"
    calls = scratch_data / "calls"
    fake.write_text(f"#!/bin/sh\necho x >> {calls}\nfor last; do :; done\n"
                    f"{cp} {urbansas_mini / 'audio' / (clip + '.wav')} \"$last\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("VSSL_FFMPEG", str(fake))
    ds = vggsound_layout(folder, scratch_data / "layout")
    assert ds.unlabelled_clips() == ["abc"] and (scratch_data / "layout" / "audio" / "abc.wav").is_file()
    vggsound_layout(folder, scratch_data / "layout")
    assert calls.read_text().count("x") == 1  # extracted once


def test_urbansas_unlabelled_clips_are_training_clips(urbansas_mini, scratch_data):
    root = scratch_data / "urbansas"
    shutil.copytree(urbansas_mini / "annotations", root / "annotations")
    (root / "video").mkdir()
    (root / "audio").mkdir()
    for wav in (urbansas_mini / "audio").glob("*.wav"):
        (root / "audio" / wav.name).symlink_to(wav)
        v = _video(urbansas_mini, wav.stem)
        (root / "video" / v.name).symlink_to(v)
    donors = _clips(urbansas_mini, 2)
    for k, donor in enumerate(donors):  # clips with media and no annotation row: the unlabelled part
        (root / "audio" / f"unlabelled{k}_1.wav").symlink_to(urbansas_mini / "audio" / f"{donor}.wav")
        (root / "video" / f"unlabelled{k}_1.mp4").symlink_to(_video(urbansas_mini, donor))
    ds = open_folder(root)
    assert detect_layout(root) == "urbansas" and "unlabelled0_1" not in ds.clips
    evaluated = set(ds.pairs("flowgrad").clips)
    data = folder_training_data(ds, n_windows=4, n_val_windows=2, val_clips=1, **SMALL)
    used = set(data.train.clips) | set(data.val.clips)
    assert not used & evaluated  # evaluation clips stay out of training
    pool = sorted(ds.unlabelled_clips(exclude=evaluated))
    assert {"unlabelled0_1", "unlabelled1_1"} <= set(pool) and used <= set(pool)
    assert set(data.val.clips) == {pool[-1]}  # the last clip of the pool by name
    with pytest.raises(DataError, match="val_clips"):
        folder_training_data(ds, n_windows=4, n_val_windows=2, val_clips=len(pool), **SMALL)
