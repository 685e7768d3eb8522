"""Training at scale: the single-process loop is unchanged bit for bit, 2 processes (torchrun, gloo)
train the same objective as 1 process with the same global batch, an interrupted distributed run
resumes, and windows stream from disk.

Stated tolerance of the 2-process equivalence (``TOL_*`` below): the two runs differ only by float
rounding (gathers and all-reduces sum in another order, BatchNorm and the spectrogram
standardisation compute the global statistics in two passes), which Adam then amplifies a little
every step. First-step gradients agree to ``TOL_GRAD`` (relative L2 norm over all parameters;
measured <= 2e-4 on the development CPU), per-epoch training and validation losses of a 2-epoch
run to ``TOL_LOSS`` (relative; measured <= 5e-7).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train import CFG, OYA_CFG, RC, T, _model, _planted

from vssl_core.data.arrays import TrainingArrays
from vssl_core.data.streaming import NpyRows, as_streaming, open_windows, save_windows
from vssl_core.models.oya import OyaNet
from vssl_core.models.rcgrad import RCGrad
from vssl_core.training import distributed
from vssl_core.training.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "dist_tiny_run.py"
TOL_GRAD = 1e-3
TOL_LOSS = 1e-4


def _strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# -- one process: exactly the loop of before ------------------------------------------------------
#: Outputs of the training loop as it was before distributed training (commit cd3dfb0), recorded
#: on the development CPU from a frozen copy of that loop (removed; ``git show
#: 4c06834:tests/reference_loop.py``): per-epoch histories, per-tensor checksums of the final
#: weights (sum, L2 norm, first and last element) and ``TrainConfig`` keys.
LOOP_BEFORE = json.loads((ROOT / "tests" / "fixtures" / "loop_before_distributed.json").read_text())
#: Relative tolerance against the recorded floats: float32 training on another CPU may round
#: differently; on the development CPU the match is exact.
TOL_RECORDED = 1e-5


def _checksums(model) -> dict[str, list[float]]:
    out = {}
    for k, t in model.state_dict().items():
        x = t.detach().double().flatten()
        out[k] = [float(x.sum()), float(x.norm()), float(x[0]), float(x[-1])]
    return out


@pytest.mark.parametrize("name, cls, cfg, samples", [("rcgrad", RCGrad, RC, 4000), ("oya", OyaNet, OYA_CFG, T)])
def test_single_process_loop_matches_the_recorded_loop_before_distributed(name, cls, cfg, samples):
    """Same history and weights as the loop before distributed training (recorded outputs): the
    quick profile's models and tables do not move."""
    arrays, val = _planted(40, samples=samples), _planted(16, seed=1, samples=samples)
    model, history = train(_model(cls, cfg), replace(CFG, epochs=2), arrays, val, progress=False)
    recorded = LOOP_BEFORE[name]
    assert len(history) == len(recorded["history"])
    for row, old in zip(_strip(history), recorded["history"]):
        assert row == pytest.approx(old, rel=TOL_RECORDED)
    weights = _checksums(model)
    assert sorted(weights) == sorted(recorded["weights"])
    for k, sums in weights.items():
        assert sums == pytest.approx(recorded["weights"][k], rel=TOL_RECORDED, abs=1e-7), k


def test_weights_keys_unchanged_and_bf16_keyed_only_when_on():
    keys = LOOP_BEFORE["weights_key"]
    assert TrainConfig().weights_key() == keys["default"]
    assert TrainConfig(batch_size=32, seed=3).weights_key() == keys["batch_size=32,seed=3"]
    assert TrainConfig(bf16=True).weights_key()["bf16"] is True
    assert TrainConfig.from_dict(keys["to_dict"]) == TrainConfig()  # old checkpoints load


def test_bf16_autocast_trains_on_the_cpu():
    model, history = train(_model(RCGrad, RC), replace(CFG, epochs=1, bf16=True), _planted(16), progress=False)
    assert np.isfinite(history[0]["train_loss"])
    assert next(model.parameters()).dtype == torch.float32  # autocast only: weights stay float32


def test_shard_splits_a_global_batch_in_rank_order():
    idx = np.array([1, 4, 5, 9, 12, 13, 20, 21, 30])
    parts = [distributed.shard(idx, r, 2) for r in range(2)]
    assert parts[0][1] == parts[1][1] == [5, 4]
    assert np.array_equal(np.concatenate([p for p, _ in parts]), idx)
    assert [len(distributed.shard(idx, r, 4)[0]) for r in range(4)] == [3, 2, 2, 2]


# -- two processes ---------------------------------------------------------------------------------
def _launch(spec: dict, tmp: Path, name: str, nproc: int = 2) -> subprocess.CompletedProcess:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", str(SCRIPT), str(path)],
                          env=env, capture_output=True, text=True, timeout=900)


def _rel(a, b) -> float:
    return abs(a - b) / max(abs(a), 1e-12)


def test_two_processes_match_one_process_and_an_interrupted_run_resumes(tmp_path):
    """Two torchrun launches (~20 s on the 2-core development CPU, 40 s when it is shared): 2 gloo
    processes vs 1 process on the tiny profile, and a run killed in its second epoch resumed."""
    import dist_tiny_run as tiny

    grads = [{"name": f"grad-{f}", "family": f, "grad": True} for f in ("rcgrad", "oya", "lvs", "prior")]
    full = {"name": "full", "family": "rcgrad", "epochs": 2, "out_dir": str(tmp_path / "full")}
    crash = {"name": "crash", "family": "rcgrad", "epochs": 2, "out_dir": str(tmp_path / "crash"), "interrupt_at": 2}
    first = _launch({"out": str(tmp_path / "a.json"), "runs": [*grads, full, crash]}, tmp_path, "a")
    assert first.returncode != 0, "the interrupted run should have failed the launch"
    a = json.loads((tmp_path / "a.json").read_text())
    assert "crash" not in a and "full" in a, first.stderr[-3000:]
    assert torch.load(tmp_path / "crash" / "last.pt", weights_only=True)["epoch"] == 1  # epoch 2 never saved
    resumed = _launch({"out": str(tmp_path / "b.json"), "runs": [{**crash, "interrupt_at": None}]}, tmp_path, "b")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    b = json.loads((tmp_path / "b.json").read_text())

    # one process, the same global batches
    torch.set_num_threads(1)
    for g in grads:
        one, two = tiny.first_step_grads(g["family"]), a[g["name"]]
        assert two["loss"] == pytest.approx(one["loss"], rel=TOL_LOSS), g["family"]
        keys = sorted(one["grads"])
        assert keys == sorted(two["grads"]), g["family"]
        x = np.concatenate([np.asarray(one["grads"][k]) for k in keys])
        y = np.concatenate([np.asarray(two["grads"][k]) for k in keys])
        assert np.linalg.norm(x - y) / np.linalg.norm(x) < TOL_GRAD, g["family"]
    model, arrays, val = tiny.family("rcgrad")
    _, hist_one = train(model, replace(tiny.TINY, epochs=2), arrays, val, progress=False)
    two = a["full"]
    assert two["world_size"] == 2 and two["bn_classes"] == ["BatchNorm2d"]  # the original layers are back
    assert len(two["history"]) == len(hist_one) == 2
    for h1, h2 in zip(hist_one, two["history"]):
        assert h2["steps"] == h1["steps"] == 5  # the global batches of one process
        for k in ("train_loss", "val_loss"):
            assert _rel(h1[k], h2[k]) < TOL_LOSS, (h1["epoch"], k, h1[k], h2[k])

    # the interrupted run, resumed from its epoch-1 checkpoint, ends as the uninterrupted one
    assert b["crash"]["history"] == two["history"]
    assert b["crash"]["weights"] == two["weights"]


# -- streaming ------------------------------------------------------------------------------------
def test_npy_rows_read_the_bytes_of_the_memory_map(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 3, 5)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    rows = NpyRows(tmp_path / "a.npy")
    assert rows.shape == a.shape and rows.dtype == a.dtype and len(rows) == 40
    for idx in ([3, 4, 5], [9, 2, 2, 39, 0], [], list(range(40)), [-1]):
        assert np.array_equal(rows[np.asarray(idx, int)], a[np.asarray(idx, int)]), idx
    assert np.array_equal(rows[7], a[7]) and np.array_equal(rows[5:11], a[5:11])
    m = np.load(tmp_path / "a.npy", mmap_mode="c")
    stream = as_streaming(TrainingArrays(m, m[10:30], None, None, np.arange(40)))
    assert isinstance(stream.images, NpyRows) and isinstance(stream.audio, NpyRows)
    assert np.array_equal(stream.audio[[0, 19, 4]], a[10:30][[0, 19, 4]])
    assert isinstance(stream.clips, np.ndarray)  # in-memory arrays stay as they are
    with pytest.raises(IndexError):
        rows[[40]]
    (tmp_path / "short.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-7])
    with pytest.raises(Exception, match="truncated"):
        NpyRows(tmp_path / "short.npy")


def test_training_on_streamed_windows_equals_training_in_memory(tmp_path):
    arrays = _planted(24)
    save_windows(tmp_path / "w", {"images": arrays.images, "audio": arrays.audio, "flow": arrays.flow})
    stream = open_windows(tmp_path / "w")
    assert isinstance(stream.images, NpyRows) and len(open_windows(tmp_path / "w", limit=10)) == 10
    config = replace(CFG, epochs=1)
    a, ha = train(_model(RCGrad, RC), config, arrays, progress=False)
    b, hb = train(_model(RCGrad, RC), config, stream, progress=False)
    assert _strip(ha) == _strip(hb)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_prior_frames_stream_from_disk_with_the_bytes_of_before(tmp_path, monkeypatch):
    """The object prior's frames are written to the cache a chunk at a time and memory-mapped; the
    bytes are those of the in-memory construction they replace (so the prior's weights do not move)."""
    import cv2

    from vssl_core.data.sources import load_objects
    from vssl_core.data.training_set import TrainingScenes
    from vssl_core.models.pretrain import PriorConfig, object_targets
    from vssl_core.training.rcgrad_family import prior_arrays

    monkeypatch.setenv("VSSL_DATA_DIR", str(tmp_path))
    scenes = TrainingScenes(clips=4, seconds=1.0, seed=77, val_clips=1)
    cfg = PriorConfig(arch="resnet18", width=0.125, layer4_stride=1, image_size=32, normalization="clip")
    got = prior_arrays(scenes, cfg, progress=False)
    ds = scenes.dataset(False)
    objects = load_objects(ds.root)
    for arrays, clips in zip(got, scenes.split(ds)):
        assert isinstance(arrays.images, np.memmap) and isinstance(arrays.targets, np.memmap)
        keys, frames = [], []
        for clip in clips:
            times = list(np.arange(0.0, ds.duration(clip) - 1e-6, 0.5))
            for t, img in zip(times, ds.frames(clip, times)):
                keys.append((clip, float(t)))
                frames.append(cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA))
        assert np.array_equal(np.asarray(arrays.images), np.stack(frames))
        assert np.array_equal(np.asarray(arrays.targets), object_targets(objects, keys, 32, cfg.grid))
    again = prior_arrays(scenes, cfg, progress=False)  # cached: the same files
    assert again[0].images.filename == got[0].images.filename
