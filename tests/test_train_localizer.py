"""Localiser training loop (LVS, HTF, Oya): losses, frozen vision, resume, cache, flip (tiny, CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vssl_core.training.localizer as tl
from vssl_core.errors import DataError
from vssl_core.models.htf import HTF, HTFConfig
from vssl_core.models.lvs import LVS, LVSConfig
from vssl_core.models.oya import OyaConfig, OyaNet
from vssl_core.training.localizer import (LocalizerArrays, LocalizerTrainConfig, cached_train_localizer,
                                       flip_horizontal, inputs, train_localizer)

SIZE, N, SR = 64, 8, 11025
T = 274 + 238 * 16  # 16 LVS spectrogram frames
LVS_CFG = LVSConfig(width=0.25, image_size=SIZE, audio_sr=SR)
HTF_CFG = HTFConfig(flow_encoder="maxpool", freeze_vision=True, width=0.25, image_size=SIZE, audio_sr=SR)
OYA_CFG = OyaConfig(width=1 / 16, image_blocks=2, audio_blocks=2, embed_dim=8, image_size=32,
                    audio_sr=SR, n_fft=62, hop=31)
CFG = LocalizerTrainConfig(epochs=1, batch_size=4, lr=1e-3, seed=0, device="cpu", num_threads=1)


def _arrays(flow: bool = False) -> LocalizerArrays:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, SIZE, SIZE, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, size=(N, 1, T)).astype(np.float32)
    field = rng.normal(0, 2, size=(N, SIZE, SIZE, 2)).astype(np.float32) if flow else None
    return LocalizerArrays(images, audio, field)


def _model(cls, cfg, seed=0):
    torch.manual_seed(seed)
    return cls(cfg)


# -- augmentation and adapters ---------------------------------------------------------------------
def test_flip_mirrors_image_and_negates_dx():
    images = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 3)
    flow = torch.zeros(2, 2, 2, 3)
    flow[:, 0, 0, 0] = 5.0  # dx = +5 (moving right) at the top-left pixel
    flow[:, 1, 0, 0] = -2.0  # dy = -2 (moving up) there
    img, flo = flip_horizontal(images, flow, torch.tensor([True, False]))
    # Sample 0 mirrored: column order reversed; the motion sits at the top-right, pointing left.
    assert torch.equal(img[0], images[0][..., [2, 1, 0]])
    assert flo[0, 0, 0, 2] == -5.0 and flo[0, 1, 0, 2] == -2.0
    assert flo[0].abs().sum() == 7.0
    # Sample 1 untouched; the inputs are not modified.
    assert torch.equal(img[1], images[1]) and torch.equal(flo[1], flow[1])
    assert flow[0, 0, 0, 0] == 5.0
    # Mirroring twice is the identity.
    img2, flo2 = flip_horizontal(img, flo, torch.tensor([True, False]))
    assert torch.equal(img2, images) and torch.equal(flo2, flow)
    assert flip_horizontal(images, None, torch.tensor([True, True]))[1] is None
    with pytest.raises(ValueError, match="dx, dy"):
        flip_horizontal(images, torch.zeros(2, 1, 2, 3), torch.tensor([True, False]))


def test_inputs_dispatch_on_model_family():
    img = torch.rand(2, 3, SIZE, SIZE)
    aud = torch.rand(2, 1, T) - 0.5
    flo = torch.zeros(2, 2, SIZE, SIZE)
    lvs_args = inputs(_model(LVS, LVS_CFG), img, aud, None)
    assert len(lvs_args) == 2 and lvs_args[1].shape == (2, 1, 257, 16)
    htf_args = inputs(_model(HTF, HTF_CFG), img, aud, flo)
    assert len(htf_args) == 3 and htf_args[2] is flo
    with pytest.raises(ValueError, match="flow field"):
        inputs(_model(HTF, HTF_CFG), img, aud, None)
    no_flow = HTF(HTFConfig(flow_encoder="none", width=0.25, image_size=SIZE, audio_sr=SR))
    assert inputs(no_flow, img, aud, flo)[2] is None
    oya_args = inputs(_model(OyaNet, OYA_CFG), img, aud, flo)
    assert len(oya_args) == 2 and torch.equal(oya_args[1], aud)
    with pytest.raises(TypeError):
        inputs(torch.nn.Linear(2, 2), img, aud, None)


def test_arrays_validation():
    a = _arrays(flow=True)
    with pytest.raises(ValueError, match="uint8"):
        LocalizerArrays(a.images.astype(np.float32), a.audio)
    with pytest.raises(ValueError, match="audio clips"):
        LocalizerArrays(a.images, a.audio[:3])
    with pytest.raises(ValueError, match="flow_field"):
        LocalizerArrays(a.images, a.audio, a.flow_field[..., :1])
    with pytest.raises(ValueError, match="flow_field"):
        train_localizer(_model(HTF, HTF_CFG), CFG, _arrays(flow=False), progress=False)
    with pytest.raises(ValueError):
        LocalizerTrainConfig(batch_size=1)


# -- training -------------------------------------------------------------------------------------
def test_lvs_trains():
    model = _model(LVS, LVS_CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, history = train_localizer(model, CFG, _arrays(), progress=False)
    assert [h["epoch"] for h in history] == [1]
    assert np.isfinite(history[0]["train_loss"]) and history[0]["steps"] == 2
    assert not trained.training
    assert not torch.equal(before["audio_encoder.conv1.weight"], trained.audio_encoder.conv1.weight)
    assert not torch.equal(before["image_encoder.conv1.weight"], trained.image_encoder.conv1.weight)


def test_hflip_changes_training():
    arrays = _arrays(flow=True)
    flipped, _ = train_localizer(_model(HTF, HTF_CFG), CFG, arrays, progress=False)
    plain, _ = train_localizer(_model(HTF, HTF_CFG), LocalizerTrainConfig(**{**CFG.to_dict(), "hflip": False}),
                               arrays, progress=False)
    assert not torch.equal(flipped.attention.key.weight, plain.attention.key.weight)


def test_htf_trains_with_frozen_vision():
    model = _model(HTF, HTF_CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, history = train_localizer(model, CFG, _arrays(flow=True), progress=False)
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    after = trained.state_dict()
    frozen = [k for k in before if k.startswith("image_encoder.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # BN statistics included
    assert not torch.equal(before["attention.key.weight"], after["attention.key.weight"])
    assert not torch.equal(before["audio_encoder.conv1.weight"], after["audio_encoder.conv1.weight"])


@pytest.mark.parametrize("cls, model_cfg, flow", [(OyaNet, OYA_CFG, False), (LVS, LVS_CFG, False),
                                                  (HTF, HTF_CFG, True)])
def test_resume_equals_uninterrupted(tmp_path, cls, model_cfg, flow):
    cfg2 = LocalizerTrainConfig(**{**CFG.to_dict(), "epochs": 2})
    arrays = _arrays(flow)
    full, hist_full = train_localizer(_model(cls, model_cfg), cfg2, arrays, tmp_path / "a", progress=False)
    assert [h["epoch"] for h in hist_full] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) for h in hist_full)
    if cls is OyaNet:  # the similarity loss is a mean of cosines (non-negative features): in [0, 1]
        assert all(0.0 <= h["train_loss"] <= 1.0 for h in hist_full)
    # Interrupted after one epoch, resumed from last.pt with a fresh (differently seeded) model.
    _, hist_one = train_localizer(_model(cls, model_cfg), CFG, arrays, tmp_path / "b", progress=False)
    assert hist_one == hist_full[:1]
    resumed, hist_resumed = train_localizer(_model(cls, model_cfg, seed=123), cfg2, arrays, tmp_path / "b",
                                            progress=False)
    assert hist_resumed == hist_full
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # The checkpoint loads with weights_only=True and holds plain types.
    ck = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["model_class"] == cls.__name__ and ck["model_config"] == model_cfg.to_dict()
    assert ck["config"]["epochs"] == 2


def test_resume_refuses_other_config(tmp_path):
    cfg2 = LocalizerTrainConfig(**{**CFG.to_dict(), "epochs": 2})
    arrays = _arrays()
    train_localizer(_model(OyaNet, OYA_CFG), CFG, arrays, tmp_path / "b", progress=False)
    # Another training config or model refuses to resume from that folder.
    with pytest.raises(DataError, match="training config"):
        train_localizer(_model(OyaNet, OYA_CFG), LocalizerTrainConfig(**{**cfg2.to_dict(), "lr": 0.5}), arrays,
                        tmp_path / "b", progress=False)
    other = OyaConfig(**{**OYA_CFG.to_dict(), "embed_dim": 4})
    with pytest.raises(DataError, match="another model"):
        train_localizer(_model(OyaNet, other), cfg2, arrays, tmp_path / "b", progress=False)


def test_cache_reuses_stored_model(tmp_path, monkeypatch):
    calls = {"train": 0, "factory": 0}
    real_train = tl.train_localizer

    def counting_train(*args, **kwargs):
        calls["train"] += 1
        return real_train(*args, **kwargs)

    def factory():
        calls["factory"] += 1
        return OyaNet(OYA_CFG)

    monkeypatch.setattr(tl, "train_localizer", counting_train)
    arrays = _arrays()
    first = cached_train_localizer(factory, OYA_CFG.to_dict(), CFG, arrays, "data-v1", tmp_path, progress=False)
    files = list(tmp_path.glob("oyanet-*/model.pt"))
    assert len(files) == 1 and calls["train"] == 1
    assert not any(p.name.startswith(".work-") for p in tmp_path.iterdir())  # checkpoints cleaned up
    mtime = files[0].stat().st_mtime_ns
    second = cached_train_localizer(factory, OYA_CFG.to_dict(), CFG, arrays, "data-v1", tmp_path, progress=False)
    assert calls == {"train": 1, "factory": 2}  # the second call only builds a model to load into
    assert files[0].stat().st_mtime_ns == mtime
    assert not second.training
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), k
    # The stored weights are the trained ones, not the factory's initial weights.
    torch.manual_seed(CFG.seed)
    init = OyaNet(OYA_CFG)
    assert not torch.equal(init.sound_net.fc[0].weight, second.sound_net.fc[0].weight)
    assert torch.load(files[0], weights_only=True)["model_class"] == "OyaNet"
    # A mismatched config dict is refused before anything is trained.
    with pytest.raises(ValueError, match="model_config_dict"):
        cached_train_localizer(factory, {**OYA_CFG.to_dict(), "embed_dim": 4}, CFG, arrays, "data-v1", tmp_path)
    assert calls["train"] == 1
