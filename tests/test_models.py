"""Encoders, spectrogram front end, RCGrad / FlowGrad-IC / FlowGrad-EN and their loss."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from vssl_core.models.audio import log_spectrogram, lvs_spectrogram
from vssl_core.models.encoders import channel_widths, resnet18_encoder
from vssl_core.models.rcgrad import (CLIP_MEAN, CLIP_STD, FlowGradEN, FlowGradIC, ModelConfig, RCGrad,
                                     build_model, clip_loss, expand_to_flow_channel, flow_encoder_state,
                                     prepare_audio, prepare_flow, prepare_images)

SMALL = dict(width=0.25, image_size=64, audio_sr=8000)


def _batch(n=3, size=64, seconds=0.5, sr=8000, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((n, 1, int(sr * seconds)))).astype(np.float32)
    flow = (3 * rng.random((n, size, size))).astype(np.float32)
    return images, audio, flow


def test_encoder_matches_torchvision_resnet18_at_width_1():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None).eval()
    enc = resnet18_encoder(3, width=1.0, layer4_stride=2).eval()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    enc.load_state_dict(state)  # strict: same module names and shapes
    tv.fc = torch.nn.Identity()
    x = torch.randn(1, 3, 96, 96)
    torch.testing.assert_close(enc(x).embedding, tv(x))


@pytest.mark.parametrize("width,stride,size,hw", [(0.5, 1, 128, 8), (0.5, 2, 128, 4), (0.25, 1, 64, 4)])
def test_encoder_shapes(width, stride, size, hw):
    enc = resnet18_encoder(3, width=width, layer4_stride=stride)
    out = enc(torch.zeros(2, 3, size, size))
    d = channel_widths(width)[-1]
    assert out.features.shape == (2, d, hw, hw)
    assert out.embedding.shape == (2, d)
    torch.testing.assert_close(out.embedding, out.features.mean(dim=(2, 3)))


def test_channel_widths_scale():
    assert channel_widths(1.0) == (64, 64, 128, 256, 512)
    assert channel_widths(0.5) == (32, 32, 64, 128, 256)


def test_log_spectrogram_shape_and_batch_standardisation():
    wave = torch.randn(2, 1, 16000)
    spec = log_spectrogram(wave)
    assert spec.shape == (2, 1, 257, 1 + 16000 // 353)
    assert abs(float(spec.mean())) < 1e-5 and abs(float(spec.std()) - 1) < 1e-5
    per = log_spectrogram(wave, per_sample=True)
    torch.testing.assert_close(per[1:], log_spectrogram(wave[1:]))  # per clip == batch of one


def test_log_spectrogram_matches_numpy_reference():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(4000)
    # numpy reference: reflect-pad n_fft/2, periodic Hann frames every 353 samples, |rfft|^2
    n_fft, hop = 512, 353
    pad = np.pad(x, n_fft // 2, mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [pad[i * hop:i * hop + n_fft] * win for i in range(1 + len(x) // hop)]
    logp = np.log(np.abs(np.fft.rfft(frames, axis=1)).T ** 2 + 1e-7)
    ref = (logp - logp.mean()) / logp.std(ddof=1)
    got = log_spectrogram(torch.tensor(x, dtype=torch.float64)[None]).numpy()[0, 0]
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_lvs_spectrogram_shape():
    spec = lvs_spectrogram(np.zeros((2, 16000), dtype=np.float32), 16000)
    assert spec.shape == (257, (16000 - 274) // (512 - 274))
    np.testing.assert_allclose(spec, np.log(1e-7) / 12, rtol=1e-6)  # silence -> log(eps) / 12


def test_clip_loss_hand_checked_2x2():
    # a = b = identity; scale = 1 -> logits [[1, 0], [0, 1]]; each row CE = log(1 + e^-1) ... per row
    a = torch.eye(2)
    loss = clip_loss(a, a.clone(), torch.tensor(0.0))
    expected = -math.log(math.e / (math.e + 1))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # orthogonal mismatch: b swaps the pairs -> positives have logit 0, negatives 1
    swapped = clip_loss(a, a.flip(0), torch.tensor(0.0))
    assert float(swapped) == pytest.approx(-math.log(1 / (math.e + 1)), rel=1e-6)
    # scale clamped at 100: logit_scale 10 behaves as log(100)
    big = clip_loss(a, a.flip(0), torch.tensor(10.0))
    assert float(big) == pytest.approx(float(clip_loss(a, a.flip(0), torch.tensor(math.log(100.0)))))


def test_clip_loss_is_symmetric_and_scale_invariant_inputs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    s = torch.tensor(math.log(1 / 0.07))
    assert float(clip_loss(a, b, s)) == pytest.approx(float(clip_loss(b, a, s)), rel=1e-6)
    assert float(clip_loss(3 * a, b, s)) == pytest.approx(float(clip_loss(a, b, s)), rel=1e-5)


@pytest.mark.parametrize("kind", ["rcgrad", "flowgrad_ic", "flowgrad_en"])
def test_forward_shapes_all_kinds(kind):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, **SMALL)).eval()
    images, audio, flow = _batch()
    out = model(prepare_images(images, 64), prepare_audio(audio), prepare_flow(flow, 64))
    d = channel_widths(0.25)[-1]
    assert out.image.features.shape == (3, d, 4, 4)
    assert out.image.embedding.shape == out.audio.embedding.shape == (3, d)
    assert (out.flow is not None) == (kind == "flowgrad_en")
    if out.flow is not None:
        assert out.flow.features.shape == (3, d, 4, 4)
    assert torch.isfinite(model.loss(out))
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_flow_models_require_flow():
    model = FlowGradIC(ModelConfig(kind="flowgrad_ic", **SMALL))
    images, audio, _ = _batch()
    with pytest.raises(ValueError, match="flow"):
        model(prepare_images(images, 64), prepare_audio(audio), None)


def test_rcgrad_applies_clip_normalisation():
    model = RCGrad(ModelConfig(**SMALL))
    x = torch.rand(1, 3, 8, 8)
    expected = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(model.image_input(x), expected)


def test_ic_flow_channel_is_rgb_mean_and_flow_scaling():
    torch.manual_seed(0)
    rc = RCGrad(ModelConfig(**SMALL))
    ic = FlowGradIC.from_rcgrad(rc)
    w_rgb = rc.image_encoder.conv1.weight
    w_ic = ic.image_encoder.conv1.weight
    assert w_ic.shape[1] == 4
    torch.testing.assert_close(w_ic[:, :3], w_rgb)
    torch.testing.assert_close(w_ic[:, 3], w_rgb.mean(dim=1))
    torch.testing.assert_close(ic.image_encoder.layer3[0].conv1.weight, rc.image_encoder.layer3[0].conv1.weight)
    assert set(expand_to_flow_channel(rc)) == set(rc.image_encoder.state_dict())
    flow = torch.full((1, 1, 8, 8), 15.0)
    assert torch.allclose(ic.image_input(torch.rand(1, 3, 8, 8), flow)[:, 3], torch.tensor(0.1))  # (15+5)/200


def test_en_flow_encoder_init_and_loss_is_sum_of_pairs():
    torch.manual_seed(0)
    rc = RCGrad(ModelConfig(**SMALL))
    en = FlowGradEN.from_rcgrad(rc)
    torch.testing.assert_close(en.flow_encoder.conv1.weight, rc.image_encoder.conv1.weight.mean(1, keepdim=True))
    torch.testing.assert_close(en.flow_encoder.layer4[1].conv2.weight, rc.image_encoder.layer4[1].conv2.weight)
    assert flow_encoder_state(rc)["conv1.weight"].shape[1] == 1
    en.eval()
    images, audio, flow = _batch()
    out = en(prepare_images(images, 64), prepare_audio(audio), prepare_flow(flow, 64))
    i, a, f = (F.normalize(o.embedding, dim=-1) for o in (out.image, out.audio, out.flow))
    s = en.logit_scale.exp()

    def pair(x, y):
        logits = s * x @ y.t()
        t = torch.arange(len(x))
        return (F.cross_entropy(logits, t) + F.cross_entropy(logits.t(), t)) / 2

    torch.testing.assert_close(en.loss(out), pair(i, a) + pair(i, f) + pair(a, f))
    # a subset of the pairs (beyond the paper): only those terms, whatever order they are named in
    sub = FlowGradEN(ModelConfig(**{**en.config.to_dict(), "en_losses": ["audio-flow", "audio-image"]}))
    assert sub.config.en_losses == ("audio-image", "audio-flow")
    torch.testing.assert_close(sub.loss(out), pair(i, a) + pair(a, f))
    only_flow = FlowGradEN(ModelConfig(**{**en.config.to_dict(), "en_losses": ("image-flow",)}))
    torch.testing.assert_close(only_flow.loss(out), pair(i, f))


def test_en_losses_stay_out_of_the_config_dict_at_the_paper_default():
    paper = ModelConfig(kind="flowgrad_en", **SMALL)
    assert "en_losses" not in paper.to_dict()          # checkpoints and cache keys as before the option
    sub = ModelConfig(kind="flowgrad_en", en_losses=("audio-image", "audio-flow"), **SMALL)
    assert sub.to_dict()["en_losses"] == ["audio-image", "audio-flow"]
    assert ModelConfig.from_dict(sub.to_dict()) == sub and ModelConfig.from_dict(paper.to_dict()) == paper
    for bad in ((), ("audio-image", "flow"), "sound"):
        with pytest.raises(ValueError, match="en_losses must be a non-empty subset"):
            ModelConfig(kind="flowgrad_en", en_losses=bad)
    with pytest.raises(ValueError, match="FlowGrad-EN only"):
        ModelConfig(kind="rcgrad", en_losses=("audio-image",))


def test_chance_loss_counts_the_summed_pairs():
    from vssl_core.studies.flowgrad import chance_loss

    assert chance_loss(64, "rcgrad") == pytest.approx(math.log(64))
    assert chance_loss(64, "flowgrad_en") == pytest.approx(3 * math.log(64))
    assert chance_loss(64, "flowgrad_en", ("audio-image", "audio-flow")) == pytest.approx(2 * math.log(64))
    assert chance_loss(64, "flowgrad_ic", ("audio-image",)) == pytest.approx(math.log(64))


def test_model_config_round_trip_and_validation():
    cfg = ModelConfig(kind="flowgrad_en", width=0.5, image_size=128)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ModelConfig(kind="lvs")
    with pytest.raises(ValueError):
        ModelConfig(layer4_stride=3)
    with pytest.raises(ValueError, match="kind"):
        FlowGradIC(ModelConfig(kind="rcgrad"))


def test_faithful_audio_bn_uses_clip_statistics_without_touching_running_stats():
    torch.manual_seed(0)
    model = RCGrad(ModelConfig(**SMALL)).eval()
    _, audio, _ = _batch(n=2)
    x = prepare_audio(audio)
    before = {k: v.clone() for k, v in model.audio_encoder.state_dict().items()}
    with torch.no_grad():
        eval_emb = model.encode_audio(x[:1]).embedding
        quirk = model.encode_audio(x[:1], batch_stat_bn=True).embedding
    assert not torch.allclose(eval_emb, quirk)
    assert not model.audio_encoder.training  # mode restored
    for k, v in model.audio_encoder.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_prepare_inputs_validate_and_resize():
    images, audio, flow = _batch(n=2, size=32)
    assert prepare_images(images, 64).shape == (2, 3, 64, 64)
    assert float(prepare_images(images, 32).max()) <= 1.0
    assert prepare_flow(flow, 16).shape == (2, 1, 16, 16)
    assert prepare_audio(audio[:, 0]).shape == (2, 1, audio.shape[-1])
    with pytest.raises(ValueError):
        prepare_images(images.astype(np.float32), 32)
