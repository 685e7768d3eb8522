"""Training loop: loss decreases, resume == uninterrupted, deterministic bytes, cache, end to end."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vssl_core.eval import metrics
from vssl_core.models.checkpoints import load_checkpoint
from vssl_core.models.rcgrad_maps import localize
from vssl_core.models.rcgrad import ModelConfig, RCGrad
from vssl_core.training.contrastive import TrainArrays, TrainConfig, cached_train, train

SIZE = 32


def _planted(n=48, seed=0, with_flow=False):
    """Images with a bright square left or right; the audio is a tone whose pitch says which side."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, SIZE, SIZE, 3), dtype=np.uint8)
    sides = rng.integers(0, 2, n)
    t = np.arange(4000) / 8000
    audio = np.zeros((n, 1, 4000), dtype=np.float32)
    flow = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    for i, s in enumerate(sides):
        x0 = 2 if s == 0 else SIZE - 14
        images[i, 10:22, x0:x0 + 12] = 250
        flow[i, 10:22, x0:x0 + 12] = 2.0
        audio[i, 0] = 0.5 * np.sin(2 * np.pi * (400 if s == 0 else 2400) * t) + 0.01 * rng.standard_normal(4000)
    return TrainArrays(images, audio, flow if with_flow else None)


def _cfg(kind="rcgrad", epochs=2, **kw):
    return TrainConfig(model=ModelConfig(kind=kind, width=0.125, image_size=SIZE, audio_sr=8000),
                       epochs=epochs, batch_size=16, seed=3, **kw)


def test_loss_decreases_and_end_to_end_maps(tmp_path):
    arrays = _planted()
    model, history = train(_cfg(epochs=4), arrays, progress=False)
    losses = [h["train_loss"] for h in history]
    assert len(history) == 4 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert not model.training
    out = localize(model, arrays.images[:8], arrays.audio[:8])
    assert out.maps.shape == (8, 224, 224) and np.isfinite(out.maps).all()
    gts = np.stack([metrics.gt_map_urbansas(np.array([[80.0, 200.0, 200.0, 300.0]]))] * 8)
    res = metrics.evaluate(out.maps, gts, postprocess=out.postprocess, n_boot=0)
    # the same scores by hand: clean (min-max, values below sorted[25088] -> 0), >= 0.5, IoU
    ious = []
    for m, g in zip(out.maps.astype(np.float64), gts):
        p = (m - m.min()) / (m.max() - m.min())
        b = np.where(p < np.sort(p.ravel())[25088], 0, p) >= 0.5
        ious.append((b & (g > 0)).sum() / (b | (g > 0)).sum())
    xs = [0.05 * i for i in range(21)]
    ys = [np.mean(np.asarray(ious) >= x) for x in xs]
    np.testing.assert_allclose(res.cious, ious, rtol=1e-12)
    assert res.auc == pytest.approx(sum(0.05 * (ys[i] + ys[i + 1]) / 2 for i in range(20)), abs=1e-12)
    assert res.ciou == pytest.approx(np.mean(np.asarray(ious) >= 0.3), abs=1e-12)


@pytest.mark.parametrize("kind", ["flowgrad_ic", "flowgrad_en"])
def test_flow_models_train_from_rcgrad(kind):
    arrays = _planted(n=24, with_flow=True)
    torch.manual_seed(0)
    init = RCGrad(_cfg().model)
    model, history = train(_cfg(kind, epochs=1), arrays, progress=False, init_model=init)
    assert model.kind == kind and np.isfinite(history[0]["train_loss"])
    with pytest.raises(ValueError, match="flow"):
        train(_cfg(kind, epochs=1), _planted(n=8), progress=False)


def test_resume_equals_uninterrupted_run(tmp_path):
    arrays = _planted(n=32)
    cfg = _cfg(epochs=2)
    full, hist_full = train(cfg, arrays, tmp_path / "a", progress=False)
    train(replace(cfg, epochs=1), arrays, tmp_path / "b", progress=False)  # "interrupted" after 1 epoch
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed, hist_resumed = train(cfg, arrays, tmp_path / "b", progress=False)
    assert hist_full == hist_resumed
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    last_a = load_checkpoint(tmp_path / "a" / "last.pt")
    last_b = load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in last_a["model"].items():
        assert torch.equal(v, last_b["model"][k]), k


def test_same_seed_same_checkpoint_bytes_and_plain_contents(tmp_path):
    arrays = _planted(n=16)
    cfg = _cfg(epochs=1)
    train(cfg, arrays, tmp_path / "a", progress=False)
    train(cfg, arrays, tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "last.pt").read_bytes() == (tmp_path / "b" / "last.pt").read_bytes()
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=True)  # plain types + tensors only
    import vssl_core
    assert ck["version"] == vssl_core.__version__ and ck["seed"] == 3 and ck["epoch"] == 1
    assert TrainConfig.from_dict(ck["config"]) == cfg
    other = train(replace(cfg, seed=4), arrays, progress=False)[0]
    same = train(cfg, arrays, progress=False)[0]
    assert not torch.equal(other.image_encoder.conv1.weight, same.image_encoder.conv1.weight)


def test_resume_refuses_other_config(tmp_path):
    arrays = _planted(n=16)
    train(_cfg(epochs=1), arrays, tmp_path, progress=False)
    from vssl_core.errors import DataError
    with pytest.raises(DataError, match="different training config"):
        train(replace(_cfg(epochs=1), lr=5e-4), arrays, tmp_path, progress=False)


def test_validation_and_early_stopping():
    arrays = _planted(n=32)
    val = _planted(n=16, seed=1)
    arrays = TrainArrays(arrays.images, arrays.audio, None, val.images, val.audio)
    cfg = replace(_cfg(epochs=6), lr=1e-9, early_stopping_patience=1, plateau_patience=0)
    _, history = train(cfg, arrays, progress=False)
    assert all(h["val_loss"] is not None and h["monitored"] == h["val_loss"] for h in history)
    assert len(history) < 6  # a ~frozen model stops improving and stops early


def test_cached_train_stores_and_reuses(tmp_path):
    arrays = _planted(n=16)
    cfg = _cfg(epochs=1)
    m1 = cached_train(cfg, arrays, "data-v1", cache_root=tmp_path, progress=False)
    folders = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and folders[0].name.startswith("rcgrad-") and (folders[0] / "model.pt").exists()
    assert not any(p.name.startswith(".work") for p in tmp_path.iterdir())
    stamp = (folders[0] / "model.pt").stat().st_mtime_ns
    m2 = cached_train(replace(cfg, device="cpu", log_every=1), arrays, "data-v1", cache_root=tmp_path)
    assert (folders[0] / "model.pt").stat().st_mtime_ns == stamp  # loaded, not retrained
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    cached_train(cfg, arrays, "data-v2", cache_root=tmp_path, progress=False)
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


def test_arrays_are_validated():
    a = _planted(n=4)
    with pytest.raises(ValueError, match="uint8"):
        TrainArrays(a.images.astype(np.float32), a.audio)
    with pytest.raises(ValueError):
        TrainArrays(a.images, a.audio[:3])
    with pytest.raises(ValueError):
        TrainArrays(a.images, a.audio, np.zeros((4, 8, 8), np.float32))


def test_model_fingerprint_handles_scalars_and_changes_with_weights():
    import torch

    from vssl_core.models.rcgrad import ModelConfig, build_model
    from vssl_core.training.contrastive import model_fingerprint

    model = build_model(ModelConfig(kind="rcgrad", width=0.125, image_size=32))
    assert model.logit_scale.dim() == 0  # the scalar that once broke the byte view
    before = model_fingerprint(model)
    assert before == model_fingerprint(model)
    with torch.no_grad():
        model.logit_scale.add_(1.0)
    assert model_fingerprint(model) != before


def test_cached_model_finds_only_what_cached_train_stored(tmp_path):
    """cached_model returns None before training and the stored weights after, without arrays."""
    from vssl_core.training.contrastive import cached_model

    cfg = TrainConfig(model=ModelConfig(width=1 / 16, image_size=32, layer4_stride=2), epochs=1, batch_size=4)
    assert cached_model(cfg, "data-key", tmp_path) is None
    rng = np.random.default_rng(0)
    arrays = TrainArrays(rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8),
                         rng.uniform(-0.5, 0.5, (8, 1, 16000)).astype(np.float32),
                         rng.uniform(0, 2, (8, 32, 32)).astype(np.float32))
    trained = cached_train(cfg, arrays, "data-key", tmp_path, progress=False)
    found = cached_model(cfg, "data-key", tmp_path)
    assert found is not None and cached_model(cfg, "other-key", tmp_path) is None
    for (k, a), (_, b) in zip(trained.state_dict().items(), found.state_dict().items()):
        assert torch.equal(a, b), k
