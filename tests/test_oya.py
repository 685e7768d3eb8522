"""Oya et al. model: potential map, selection module, similarity loss, configs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vssl_core.models.oya import (
    OyaConfig, OyaNet, cosine, load_vgg11_features, potential_map, selection,
    similarity_loss,
)
from vssl_core.models.oya_maps import oya_maps

TINY = OyaConfig(width=1 / 16, image_blocks=2, audio_blocks=2, embed_dim=8, image_size=32,
                 audio_sr=16000, n_fft=62, hop=31)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one torch thread


def _batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, TINY.image_size, TINY.image_size, generator=g)
    wave = (torch.rand(n, 1, 1600, generator=g) * 2 - 1) * torch.linspace(0.1, 1, n).view(n, 1, 1)
    return images, wave


def _learnable_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four samples told apart by both modalities: a plain colour and a pure tone each."""
    colours = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    images = colours.view(4, 3, 1, 1).expand(4, 3, TINY.image_size, TINY.image_size).clone()
    t = torch.arange(1600) / 16000
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (500, 1500, 3000, 6000)])
    return images, wave.unsqueeze(1)


def test_potential_map_is_a_softmax_over_positions():
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(5.0)]]])
    p = potential_map(logits)
    assert torch.allclose(p, torch.tensor([[[1 / 8, 1 / 8], [1 / 8, 5 / 8]]]))
    p = potential_map(torch.randn(3, 5, 7) * 10)
    assert (p > 0).all()
    assert torch.allclose(p.sum(dim=(1, 2)), torch.ones(3), atol=1e-6)


def test_selection_matches_equations_2_and_3_by_hand():
    # K = 2, 1 x 3 map; s along channel 0
    v = torch.tensor([[[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]]])  # (1, 2, 1, 3)
    s = torch.tensor([[2.0, 0.0]])
    p = torch.tensor([[[0.5, 0.25, 0.25]]])
    alpha, att = selection(v, s, p)
    a = np.array([1.0, 0.0, 1 / np.sqrt(2)])
    assert np.allclose(att.numpy().ravel(), a, atol=1e-6)
    expected = a * [0.5, 0.25, 0.25] / (a * [0.5, 0.25, 0.25]).sum()
    assert np.allclose(alpha.numpy().ravel(), expected, atol=1e-6)


def test_selection_normalises_and_falls_back_to_potential():
    g = torch.Generator().manual_seed(1)
    v = torch.relu(torch.randn(5, 6, 4, 4, generator=g))
    s = torch.relu(torch.randn(5, 6, generator=g))
    p = potential_map(torch.randn(5, 4, 4, generator=g))
    alpha, att = selection(v, s, p)
    assert (alpha >= 0).all() and (att >= 0).all() and (att <= 1 + 1e-6).all()
    assert torch.allclose(alpha.sum(dim=(1, 2)), torch.ones(5), atol=1e-6)
    # sound orthogonal to every position: A == 0 everywhere, alpha falls back to P
    v0 = torch.zeros(1, 2, 3, 3)
    v0[:, 1] = 1.0
    alpha0, att0 = selection(v0, torch.tensor([[1.0, 0.0]]), p[:1, :3, :3] / p[:1, :3, :3].sum())
    assert (att0 == 0).all()
    assert torch.allclose(alpha0.sum(), torch.tensor(1.0))
    assert torch.isfinite(alpha0).all()


def test_similarity_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    s_hat = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    pos = torch.tensor([True, False, True, True])
    loss = similarity_loss(s, s_hat, pos)
    assert torch.allclose(loss, torch.tensor([0.0, 1.0, 1.0, 1.0]))  # zero vector: cosine 0
    assert torch.allclose(cosine(torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])),
                          torch.tensor(24 / 25))


def test_forward_maps_sum_to_one_and_potential_ignores_sound():
    torch.manual_seed(0)
    model = OyaNet(TINY).eval()
    images, wave = _batch()
    with torch.no_grad():
        out = model(images, wave)
        other = model(images, wave.flip(0))
    h = TINY.map_size
    assert TINY.map_size == 8 and out.localization.shape == (4, h, h)
    assert out.image_features.shape == (4, 8, h, h) and out.sound_features.shape == (4, 8)
    for m in (out.localization, out.potential):
        assert (m >= 0).all()
        assert torch.allclose(m.sum(dim=(1, 2)), torch.ones(4), atol=1e-5)
    assert (out.image_features >= 0).all() and (out.sound_features >= 0).all()
    assert torch.equal(out.potential, other.potential)
    assert not torch.allclose(out.localization, other.localization)


@pytest.mark.parametrize("spec_input", ["amp_phase", "log_power"])
def test_spectrogram_front_end(spec_input):
    cfg = OyaConfig(**{**TINY.to_dict(), "spec_input": spec_input})
    model = OyaNet(cfg)
    spec = model.spectrogram(torch.zeros(2, 2, 1600).uniform_(-1, 1))
    assert spec.shape == (2, 2 if spec_input == "amp_phase" else 1, cfg.n_freq, cfg.frames(1600))
    assert cfg.frames(1600) == 1 + 1600 // 31
    if spec_input == "amp_phase":
        assert spec[:, 1].abs().max() <= 1.0  # phase / pi


def test_loss_finite_and_decreasing():
    torch.manual_seed(0)
    model = OyaNet(TINY).train()
    images, wave = _learnable_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = model.similarity_loss(images, wave)
        assert torch.isfinite(out.loss)
        assert torch.allclose(out.loss, (out.positive + out.negative) / 2)
        assert 0 <= out.positive <= 1 and 0 <= out.negative <= 1
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < losses[0] - 0.03, losses


def test_similarity_loss_rejects_bad_shift():
    model = OyaNet(TINY)
    images, wave = _batch(n=2)
    with pytest.raises(ValueError):
        model.similarity_loss(images, wave, shift=2)


def test_config_paper_sizes_and_round_trip():
    cfg = OyaConfig.paper()
    assert (cfg.map_size, cfg.n_freq, cfg.n_freq_out, cfg.embed_dim) == (14, 512, 32, 512)
    assert OyaConfig.from_dict(cfg.to_dict()) == cfg
    assert OyaConfig.quick().map_size == 8
    with pytest.raises(ValueError):
        OyaConfig(spec_input="mel")
    with pytest.raises(ValueError):
        OyaConfig(image_blocks=5)
    with pytest.raises(ValueError):
        OyaConfig.from_dict({"widht": 1.0})


def test_image_trunk_loads_torchvision_vgg11_features():
    import torchvision

    torch.manual_seed(0)
    feats = torchvision.models.vgg11(weights=None).features
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    model = OyaNet(OyaConfig(audio_blocks=1, embed_dim=8))
    ignored = load_vgg11_features(model, sd)
    assert ignored == sorted(f"features.{i}.{p}" for i in (16, 18) for p in ("weight", "bias"))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.image_net.features(x), feats[:16](x))
    with pytest.raises(ValueError):
        load_vgg11_features(OyaNet(TINY), sd)


def test_oya_maps_on_grid():
    torch.manual_seed(0)
    model = OyaNet(TINY).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
    audio = rng.uniform(-1, 1, size=(3, 1, 1600)).astype(np.float32)
    loc, pot = oya_maps(model, images, audio, chunk_size=2)
    assert loc.shape == pot.shape == (3, 224, 224) and loc.dtype == np.float32
    assert (loc >= 0).all() and (pot > 0).all()
    with pytest.raises(ValueError):
        oya_maps(model.train(), images, audio)


def test_all_negatives_average_every_shift():
    """negatives="all": the same positives, and the negative term is the mean over all N - 1
    shifts (each shift is one derangement; together they are every mismatched pair once)."""
    torch.manual_seed(0)
    model = OyaNet(TINY).eval()
    images, wave = _batch(n=4)
    with torch.no_grad():
        full = model.similarity_loss(images, wave, negatives="all")
        shifts = [model.similarity_loss(images, wave, shift=k) for k in (1, 2, 3)]
    assert torch.allclose(full.positive, shifts[0].positive, atol=1e-6)
    assert torch.allclose(full.negative, torch.stack([s.negative for s in shifts]).mean(), atol=1e-6)
    cfg = OyaConfig(**{**TINY.to_dict(), "negatives": "all"})
    torch.manual_seed(0)
    with torch.no_grad():
        assert torch.allclose(OyaNet(cfg).eval().similarity_loss(images, wave).loss, full.loss, atol=1e-6)
    with pytest.raises(ValueError):
        OyaConfig(negatives="hard")
