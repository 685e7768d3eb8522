"""Cache folders (fingerprints, reuse, atomic failure) and the cached evaluation/training sets."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vssl_core.repro import cache
from vssl_core.data.flow import FlowParams


@dataclass(frozen=True)
class _P:
    a: int = 1
    b: tuple = (1.0, 2.0)


def test_fingerprint_is_canonical():
    fp = cache.fingerprint({"x": 1, "y": [1, 2]})
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == cache.fingerprint({"y": (1, 2), "x": np.int64(1)})   # order, tuple, numpy
    assert cache.fingerprint(Path("/a/b")) == cache.fingerprint("/a/b")
    assert cache.fingerprint(_P()) == cache.fingerprint(_P(a=1, b=(1.0, 2.0)))
    assert cache.fingerprint(_P()) != cache.fingerprint(_P(a=2))
    assert cache.fingerprint(np.zeros(3)) != cache.fingerprint(np.ones(3))
    assert cache.fingerprint({1, 2}) == cache.fingerprint({2, 1})
    assert cache.fingerprint(FlowParams()) != cache.fingerprint(FlowParams(winsize=21))
    assert cache.fingerprint(float("nan")) == cache.fingerprint(float("nan"))
    with pytest.raises(TypeError):
        cache.fingerprint(lambda: 0)


def test_cached_builds_once_and_writes_meta(tmp_path):
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "x.txt").write_text("hello")

    key = {"params": FlowParams(), "n": 3}
    p1 = cache.cached("thing", key, build, root=tmp_path)
    p2 = cache.cached("thing", key, build, root=tmp_path)
    assert p1 == p2 == tmp_path / f"thing-{cache.fingerprint(key)}"
    assert len(calls) == 1 and (p1 / "x.txt").read_text() == "hello"
    meta = json.loads((p1 / "meta.json").read_text())
    assert meta["key"]["n"] == 3 and meta["key"]["params"]["winsize"] == 15
    p3 = cache.cached("thing", {**key, "n": 4}, build, root=tmp_path)
    assert p3 != p1 and len(calls) == 2


def test_failing_build_leaves_no_folder(tmp_path):
    def build(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"123")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.cached("bad", {"k": 1}, build, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- evaluation sets
@pytest.fixture(scope="module")
def mini(urbansas_mini: Path):
    from vssl_core.data.urbansas import UrbansasDataset
    return UrbansasDataset(urbansas_mini)


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_eval_set_content_and_reuse(mini, eval_root, monkeypatch):
    from vssl_core.data import evalset
    from vssl_core.eval.metrics import gt_map_urbansas

    ds = evalset.load_eval_set(mini, cache_root=eval_root, progress=False)
    assert ds.num_rows == 102
    a = evalset.as_numpy(ds)
    assert a["image"].shape == (102, 224, 224, 3) and a["image"].dtype == np.uint8
    assert a["flow"].shape == (102, 224, 224) and a["flow"].dtype == np.float32
    assert a["audio"].shape == (102, 1, 16000) and a["audio"].dtype == np.float32
    assert a["gt"].shape == (102, 224, 224) and a["gt"].dtype == np.uint8
    assert np.isfinite(a["flow"]).all() and (a["flow"] >= 0).all()
    pairs = mini.pairs()
    assert list(a["clip"]) == [p.clip for p in pairs]
    np.testing.assert_array_equal(a["time"], [p.time for p in pairs])
    for k in (0, 57, 101):
        p = pairs[k]
        assert a["n_boxes"][k] == len(p.boxes)
        np.testing.assert_array_equal(a["boxes"][k].reshape(-1, 4), p.boxes)
        np.testing.assert_array_equal(a["gt"][k], gt_map_urbansas(p.boxes, (1280, 720)))
        np.testing.assert_array_equal(a["audio"][k], mini.audio(p.clip, p.time - 0.5, 1.0))
    # the image is the resized frame at t
    import cv2
    f = mini.frame(pairs[0].clip, pairs[0].time)
    np.testing.assert_array_equal(a["image"][0],
                                  cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA))
    # second call: read from the cache, nothing is built
    monkeypatch.setattr(evalset, "build_eval_set",
                        lambda *a, **k: pytest.fail("the cached set was rebuilt"))
    again = evalset.load_eval_set(mini, cache_root=eval_root, progress=False)
    np.testing.assert_array_equal(evalset.as_numpy(again, ["flow"])["flow"], a["flow"])
    assert len(list(eval_root.glob("eval-urbansas-*"))) == 1


def test_train_set(mini, eval_root):
    from vssl_core.data import evalset

    wins = mini.random_windows(4, duration=5.0, seed=0, clips=mini.unlabelled_clips()[:3])
    ds = evalset.load_train_set(mini, wins, image_size=64, audio_seconds=5.0,
                                cache_root=eval_root, progress=False, n_jobs=1)
    a = evalset.as_numpy(ds)
    assert a["image"].shape == (4, 64, 64, 3) and a["image"].dtype == np.uint8
    assert a["audio"].shape == (4, 1, 80000) and a["flow"].shape == (4, 64, 64)
    assert list(a["clip"]) == [c for c, _ in wins]
    np.testing.assert_allclose(a["time"], [s + 2.5 for _, s in wins])
    np.testing.assert_array_equal(a["audio"][1], mini.audio(wins[1][0], wins[1][1], 5.0))
    other = evalset.load_train_set(mini, wins, image_size=32, audio_seconds=5.0,
                                   cache_root=eval_root, progress=False, n_jobs=1)
    assert other.num_rows == 4 and len(list(eval_root.glob("train-urbansas-*"))) == 2
