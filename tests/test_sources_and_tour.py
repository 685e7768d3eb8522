"""Data sources for notebooks, the clip tour and the dataset summary."""
from __future__ import annotations

import numpy as np
import pytest

from vssl_core.viz import tour
from vssl_core.data import sources
from vssl_core.errors import DataError
from vssl_core.repro.paths import resolve_optional, shared_data_dir


def test_unset_paths_mean_skip(monkeypatch):
    monkeypatch.delenv("VSSL_SHARED_DATA", raising=False)
    assert sources.real_urbansas_root("") is None
    assert sources.vggss_json("") is None
    assert sources.real_urbansas("") is None
    assert resolve_optional("") is None


def test_wrong_paths_are_errors(monkeypatch, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_optional(tmp_path / "nope")
    monkeypatch.setenv("VSSL_SHARED_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="VSSL_SHARED_DATA"):
        shared_data_dir()


def test_relative_folders_in_the_environment_are_read_from_the_repository_root(monkeypatch, tmp_path):
    """A kernel runs in notebooks/, the README's commands in the root: both see the same folders."""
    from vssl_core.repro.paths import data_dir, repo_root
    from vssl_core.training.weights import weights_dir

    monkeypatch.setenv("VSSL_DATA_DIR", "build/somewhere/data")
    monkeypatch.setenv("VSSL_WEIGHTS_DIR", "build/somewhere/weights")
    for cwd in (repo_root(), repo_root() / "notebooks", tmp_path):
        monkeypatch.chdir(cwd)
        assert data_dir() == repo_root() / "build" / "somewhere" / "data"
        assert weights_dir("quick") == repo_root() / "build" / "somewhere" / "weights" / "quick"
    monkeypatch.setenv("VSSL_DATA_DIR", str(tmp_path / "abs"))
    assert data_dir() == (tmp_path / "abs").resolve()


def test_scene_config_overrides():
    cfg = sources.scene_config(n_parked=[0, 2], night_fraction=0.5)
    assert cfg.n_parked == (0, 2) and cfg.night_fraction == 0.5
    with pytest.raises(DataError, match="n_parkd"):
        sources.scene_config(n_parkd=(0, 1))


def test_dataset_summary_and_clip_view_on_real_clips(urbansas_mini, monkeypatch):
    monkeypatch.setenv("VSSL_SHARED_DATA", str(urbansas_mini.parent))
    ds = sources.real_urbansas()
    summary = dict(zip(*tour.dataset_summary(ds).to_numpy().T))
    assert summary["clips"] == "25"
    assert summary["flowgrad: pairs"] == "102" and summary["flowgrad: clips with pairs"] == "10"
    clip = tour.pick_clip(ds)
    assert clip in ds.pairs("flowgrad").clips
    view = tour.clip_view(ds, clip, [1.0, 2.0])
    assert len(view.frames) == 2 and view.frames[0].shape == (225, 400, 3)
    assert view.flows[0].shape == (225, 400) and np.isfinite(view.flows[0]).all()
    assert view.spectrogram.ndim == 2 and view.spec_extent[1] == pytest.approx(ds.duration(clip))
    assert (view.events["start"] >= 0).all()
    # boxes come back in pixels of the 400x225 frame: inside it up to clipping
    for b in view.gt_boxes:
        if len(b):
            assert b[:, 2].max() <= 400 * 1.2 and b[:, 0].min() >= -400 * 0.2
