"""Shipped weights: the train command writes them with provenance, notebooks load them only when
they match, and anything altered is refused with the fix; an interrupted training resumes."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from vssl_core.errors import DataError
from vssl_core.training.loop import train
from vssl_core.training.store import Models, ModelSpec, _cache_folder, obtain
from vssl_core.training.weights import MANIFEST, export, load_shipped, read_manifest

from test_train import CFG, RC, RCGrad, _planted


def _spec(recipe="planted-v1", epochs=1):
    return ModelSpec("tiny", {"model": RC.to_dict(), "data": recipe}, lambda: RCGrad(RC), replace(CFG, epochs=epochs),
                     lambda: (_planted(16), _planted(8, seed=1)), minutes=0.1)


def test_export_then_load_shipped_in_float16(tmp_path):
    models = Models(cache_root=tmp_path / "cache", progress=False, say=None)
    spec = _spec()
    trained = models.get(spec)
    export(tmp_path / "w", [spec], models)
    entry = read_manifest(tmp_path / "w")["models"]["tiny"]
    assert entry["key"] == spec.key and len(entry["sha256"]) == 64 and entry["history"]
    assert entry["recipe"] == dict(spec.recipe) and entry["hardware"] and entry["commit"]
    stored = torch.load(tmp_path / "w" / "tiny.pt", weights_only=True)
    assert stored["model"]["image_encoder.conv1.weight"].dtype == torch.float16
    model, meta = load_shipped(tmp_path / "w", spec)
    assert meta["key"] == spec.key and model.image_encoder.conv1.weight.dtype == torch.float32
    ref = trained.image_encoder.conv1.weight.detach()
    assert torch.allclose(model.image_encoder.conv1.weight, ref, atol=1e-3 * float(ref.abs().max()))
    # a notebook gets it from the shipped weights without training anything
    got, meta = obtain(spec, weights_dir=tmp_path / "w", cache_root=tmp_path / "empty", allow_train=False)
    assert meta["source"] == "shipped"


def test_export_keeps_an_unchanged_shipped_model_as_it_is(tmp_path):
    models = Models(cache_root=tmp_path / "cache", progress=False, say=None)
    spec = _spec()
    export(tmp_path / "w", [spec], models)
    before = (tmp_path / "w" / "tiny.pt").read_bytes()
    entry = read_manifest(tmp_path / "w")["models"]["tiny"]
    entry_before = dict(entry, commit="an-older-commit")
    manifest = read_manifest(tmp_path / "w")
    manifest["models"]["tiny"] = entry_before
    (tmp_path / "w" / MANIFEST).write_text(json.dumps(manifest))
    reloaded = Models(tmp_path / "w", cache_root=tmp_path / "empty", allow_train=False, progress=False, say=None)
    export(tmp_path / "w", [spec], reloaded)  # loaded from this folder: nothing to write
    assert (tmp_path / "w" / "tiny.pt").read_bytes() == before
    assert read_manifest(tmp_path / "w")["models"]["tiny"]["commit"] == "an-older-commit"
    export(tmp_path / "w2", [spec], reloaded, commit="the-training-commit")  # another folder: written there
    entry = read_manifest(tmp_path / "w2")["models"]["tiny"]
    assert entry["key"] == spec.key and entry["commit"] == "the-training-commit"  # as given, not re-read


def test_shipped_weights_of_another_setup_are_not_used(tmp_path):
    models = Models(cache_root=tmp_path / "cache", progress=False, say=None)
    export(tmp_path / "w", [_spec()], models)
    assert load_shipped(tmp_path / "w", _spec(recipe="planted-v2")) is None
    assert load_shipped(tmp_path / "w", _spec(epochs=2)) is None


@pytest.mark.parametrize("damage", ["flip-a-byte", "truncate", "delete", "manifest"])
def test_altered_weights_are_refused_with_the_fix(tmp_path, damage):
    models = Models(cache_root=tmp_path / "cache", progress=False, say=None)
    spec = _spec()
    export(tmp_path / "w", [spec], models)
    path = tmp_path / "w" / "tiny.pt"
    data = path.read_bytes()
    if damage == "flip-a-byte":
        path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "delete":
        path.unlink()
    else:
        (tmp_path / "w" / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match="git checkout -- weights/"):
        load_shipped(tmp_path / "w", spec)


def test_an_interrupted_training_resumes_where_it_stopped(tmp_path):
    spec = _spec(epochs=2)
    work = _cache_folder(spec, tmp_path).parent / f".work-{_cache_folder(spec, tmp_path).name}"
    torch.manual_seed(spec.config.seed)
    _, first = train(spec.factory(), replace(spec.config, epochs=1), *spec.data(), work, progress=False)
    model, meta = obtain(spec, cache_root=tmp_path, progress=False, say=None)
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert meta["history"][0]["train_loss"] == first[0]["train_loss"]    # epoch 1 was not redone
    torch.manual_seed(spec.config.seed)
    full, _ = train(spec.factory(), spec.config, *spec.data(), progress=False)
    for k, v in full.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert not work.exists()  # checkpoints removed once the model is stored


@pytest.mark.slow
def test_train_command_lists_trains_and_exports_on_the_smoke_profile(tmp_path):
    env = {"VSSL_DATA_DIR": str(tmp_path / "data"), "VSSL_WEIGHTS_DIR": str(tmp_path / "weights"),
           "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "vssl_core", "train", "--profile", "smoke"]
    listed = subprocess.run(cmd + ["--list"], capture_output=True, text=True, env=env, timeout=600)
    assert listed.returncode == 0 and "rcgrad " in listed.stdout and "to train" in listed.stdout
    run = subprocess.run(cmd + ["--only", "oya-prior"], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = json.loads((tmp_path / "weights" / "smoke" / MANIFEST).read_text())
    assert list(manifest["models"]) == ["oya-prior"]
    again = subprocess.run(cmd + ["--list", "--only", "oya-prior"], capture_output=True, text=True, env=env)
    assert "shipped" in again.stdout
    bad = subprocess.run(cmd + ["--only", "nothing-like-this"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "no model matches" in bad.stderr and "Traceback" not in bad.stderr
