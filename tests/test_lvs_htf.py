"""LVS / Hear The Flow models, the tri-map loss and the vision priors (tiny sizes, CPU, fast)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from vssl_core.errors import DataError
from vssl_core.models.encoders import resnet18_encoder
from vssl_core.models.htf import HTF, FlowAttention, HTFConfig, build_htf, prepare_flow_field
from vssl_core.models.lvs import (LVS, LVSConfig, build_lvs, cosine_maps, prepare_lvs_audio, trimap_logits,
                                  trimap_loss)
from vssl_core.models.pretrain import (PRIOR_CLASSES, VehiclePretrainConfig, load_encoder_weights,
                                       load_imagenet_weights, pretrain_vehicle_classifier, save_encoder_state,
                                       vehicle_crops)

SIZE, WIDTH = 64, 0.25


# -- tri-map loss ----------------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_trimap(S, eps_p=0.65, eps_n=0.4, tau=0.03, temp=0.07, summed=False):
    """Independent float64 reference of the documented formulas."""
    n = S.shape[0]
    losses = []
    for i in range(n):
        s = S[i, i].ravel()
        mp, mn = _sigmoid((s - eps_p) / tau), 1.0 - _sigmoid((s - eps_n) / tau)
        P = (mp * s).sum() / mp.sum()
        H = (mn * s).sum() / mn.sum()
        easy = [S[i, j].mean() for j in range(n) if j != i]
        z = np.array([P, H + sum(easy)] if summed else [P, H, *easy]) / temp
        losses.append(-(z[0] - np.log(np.exp(z - z.max()).sum()) - z.max()))
    return float(np.mean(losses))


def _two_level_sims():
    """S[i, i] half at 0.9 (clearly positive), half at 0.1 (clearly negative); off-diagonal maps constant."""
    S = np.zeros((2, 2, 2, 2))
    S[0, 0] = [[0.9, 0.9], [0.1, 0.1]]
    S[1, 1] = [[0.9, 0.1], [0.1, 0.1]]
    S[0, 1] = 0.2
    S[1, 0] = -0.3
    return S


def test_trimap_loss_hand_checkable():
    S = _two_level_sims()
    logits = trimap_logits(torch.tensor(S)).numpy() * 0.07
    # By hand: masks are binary up to sigmoid(+-8.33) / sigmoid(+-10) (< 3e-4 off), so
    # P_i ~ 0.9, H_i ~ 0.1 and the easy negatives are the constant off-diagonal maps.
    assert np.allclose(logits[:, 0], 0.9, atol=1e-3)
    assert np.allclose(logits[:, 1], 0.1, atol=1e-3)
    assert np.allclose(logits[:, 2], [0.2, -0.3], atol=1e-12)
    # ... so the loss is close to the closed-form CE with those rounded values.
    z = np.array([[0.9, 0.1, 0.2], [0.9, 0.1, -0.3]]) / 0.07
    by_hand = np.mean([np.log(np.exp(r - r[0]).sum()) for r in z])
    assert abs(float(trimap_loss(torch.tensor(S))) - by_hand) < 0.02
    # ... and equal to the exact float64 formula to 1e-5.
    assert abs(float(trimap_loss(torch.tensor(S))) - _numpy_trimap(S)) < 1e-5


@pytest.mark.parametrize("negatives", ["separate", "summed"])
def test_trimap_loss_matches_numpy_on_random_maps(negatives):
    rng = np.random.default_rng(0)
    S = np.tanh(rng.normal(0.3, 0.5, size=(4, 4, 3, 5)))
    got = float(trimap_loss(torch.tensor(S, dtype=torch.float32), negatives=negatives))
    assert abs(got - _numpy_trimap(S, summed=negatives == "summed")) < 1e-5 * max(1.0, abs(got))
    shape = trimap_logits(torch.tensor(S), negatives=negatives).shape
    assert shape == ((4, 5) if negatives == "separate" else (4, 2))


def test_trimap_loss_finite_when_map_saturates():
    S = torch.ones(2, 2, 3, 3, requires_grad=True)  # every position "positive": 1 - m_n ~ 2e-9
    loss = trimap_loss(S)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(S.grad).all()


def test_cosine_maps_are_cosines():
    v = torch.randn(3, 8, 2, 2)
    a = torch.randn(3, 8)
    S = cosine_maps(v, a)
    assert S.shape == (3, 3, 2, 2)
    ref = torch.nn.functional.cosine_similarity(v[1, :, 0, 1], a[2], dim=0)
    assert torch.allclose(S[1, 2, 0, 1], ref, atol=1e-6)


# -- attention ---------------------------------------------------------------------------------------
def test_attention_shapes_softmax_and_mask():
    torch.manual_seed(0)
    att = FlowAttention(image_dim=16, flow_dim=6, attn_dim=4)
    img, flo = torch.randn(2, 16, 3, 4), torch.randn(2, 6, 3, 4)
    out, w = att(img, flo)
    assert out.shape == img.shape and w.shape == (2, 12, 12)
    assert torch.allclose(w.sum(-1), torch.ones(2, 12), atol=1e-6)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, :5] = True
    mask[1] = True  # all keys masked for sample 1
    out_m, w_m = att(img, flo, key_padding_mask=mask.view(2, 3, 4))
    assert torch.all(w_m[0, :, :5] == 0)
    assert torch.allclose(w_m[0].sum(-1), torch.ones(12), atol=1e-6)
    assert torch.all(w_m[1] == 0) and torch.equal(out_m[1], img[1])
    # Unmasked keys keep their relative weights (renormalised softmax).
    ratio = w_m[0, :, 5:] / w[0, :, 5:]
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)
    with pytest.raises(ValueError):
        att(img, torch.randn(2, 6, 2, 2))


# -- models -----------------------------------------------------------------------------------------
def _batch(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, SIZE, SIZE, generator=g)
    spec = torch.randn(n, 1, 257, 40, generator=g) * 0.3 - 1.0
    flow = torch.randn(n, 2, SIZE, SIZE, generator=g)
    return images, spec, flow


def test_lvs_forward_backward():
    torch.manual_seed(0)
    model = LVS(LVSConfig(width=WIDTH, image_size=SIZE))
    images, spec, _ = _batch()
    out = model(images, spec)
    assert out.heatmap.shape == (3, 4, 4)  # layer4 stride 1: 64 px / 16
    assert out.heatmap.abs().max() <= 1 + 1e-5
    assert torch.allclose(out.image_features.norm(dim=1), torch.ones(3, 4, 4), atol=1e-5)
    loss = model.loss(out)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.image_encoder.conv1.weight.grad.abs().sum() > 0
    assert model.audio_encoder.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("flow_encoder", ["resnet", "maxpool", "none"])
def test_htf_forward_backward(flow_encoder):
    torch.manual_seed(0)
    model = HTF(HTFConfig(flow_encoder=flow_encoder, freeze_vision=False, width=WIDTH, image_size=SIZE))
    images, spec, flow = _batch()
    out = model(images, spec, flow)
    assert out.heatmap.shape == (3, 2, 2)  # layer4 stride 2: 64 px / 32
    if flow_encoder == "none":
        assert out.attention is None
    else:
        assert out.attention.shape == (3, 4, 4)
        assert torch.allclose(out.attention.sum(-1), torch.ones(3, 4), atol=1e-5)
    model.loss(out).backward()
    if flow_encoder != "none":
        assert model.attention.key.weight.grad.abs().sum() > 0
    if flow_encoder == "resnet":
        assert model.flow_encoder.conv1.weight.grad.abs().sum() > 0


def test_maxpool_flow_shapes_and_values():
    model = HTF(HTFConfig(flow_encoder="maxpool", width=WIDTH, image_size=SIZE))
    flow = torch.zeros(1, 2, SIZE, SIZE)
    flow[0, 0, 40, 10] = 7.0  # one moving pixel: row 40 -> cell row 1, col 10 -> cell col 0
    feats = model.encode_flow(flow, (2, 2))
    assert feats.shape == (1, 2, 2, 2)
    assert feats[0, 0, 1, 0] == 7.0 and feats[0, 0].sum() == 7.0 and feats[0, 1].abs().sum() == 0
    absolute = HTF(HTFConfig(flow_encoder="maxpool", maxpool_abs=True, width=WIDTH, image_size=SIZE))
    assert absolute.encode_flow(-flow, (2, 2))[0, 0, 1, 0] == 7.0
    with pytest.raises(ValueError, match="needs the flow"):
        model(*_batch()[:2])


def test_frozen_vision_encoder_does_not_change():
    torch.manual_seed(0)
    model = HTF(HTFConfig(flow_encoder="resnet", freeze_vision=True, width=WIDTH, image_size=SIZE))
    before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    audio_before = model.audio_encoder.conv1.weight.detach().clone()
    flow_bn_before = model.flow_encoder.bn1.running_mean.clone()
    # Every parameter (frozen ones included) is handed to the optimizer on purpose.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-2)
    model.train()
    assert not model.image_encoder.training and model.audio_encoder.training
    for seed in range(2):
        out = model(*_batch(seed=seed))
        opt.zero_grad()
        model.loss(out).backward()
        opt.step()
    after = model.image_encoder.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert all(not p.requires_grad for p in model.image_encoder.parameters())
    assert not torch.equal(model.audio_encoder.conv1.weight, audio_before)
    assert not torch.equal(model.flow_encoder.bn1.running_mean, flow_bn_before)
    assert len(list(model.trainable_parameters())) < len(list(model.parameters()))


def test_prepare_inputs():
    waves = np.random.default_rng(0).uniform(-0.5, 0.5, size=(2, 1, 22050)).astype(np.float32)
    spec = prepare_lvs_audio(waves, 22050)
    assert spec.shape == (2, 1, 257, (22050 - 274) // 238)
    field = np.zeros((2, 32, 48, 2), np.float32)
    field[..., 0] = 3.0
    f = prepare_flow_field(field, SIZE)
    assert f.shape == (2, 2, SIZE, SIZE) and torch.allclose(f[:, 0], torch.full((2, SIZE, SIZE), 3.0))


# -- vision priors -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imagenet_state():
    import torchvision

    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_imagenet_loader_ok_and_errors(tmp_path, imagenet_state):
    good = tmp_path / "resnet18.pth"
    torch.save(imagenet_state, good)
    enc = resnet18_encoder(3, 1.0, layer4_stride=1)
    report = load_imagenet_weights(enc, good)
    assert set(report.ignored) == {"fc.weight", "fc.bias"}
    assert torch.equal(enc.layer3[1].bn2.running_var, imagenet_state["layer3.1.bn2.running_var"])

    with pytest.raises(DataError, match="nothere.pth"):
        load_imagenet_weights(enc, tmp_path / "nothere.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.pth"):
        load_imagenet_weights(enc, truncated)
    renamed = dict(imagenet_state)
    renamed["layer9.0.conv1.weight"] = renamed.pop("layer1.0.conv1.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(DataError, match="layer9.0.conv1.weight"):
        load_imagenet_weights(enc, tmp_path / "renamed.pth")
    reshaped = dict(imagenet_state)
    reshaped["layer2.0.conv1.weight"] = torch.zeros(3, 3)
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(DataError, match="layer2.0.conv1.weight"):
        load_imagenet_weights(enc, tmp_path / "reshaped.pth")
    with pytest.raises(ValueError, match="width"):
        load_imagenet_weights(resnet18_encoder(3, 0.5), good)
    # The generic loader names the file and the field for a width mismatch too.
    with pytest.raises(DataError, match="width"):
        load_encoder_weights(resnet18_encoder(3, 0.5), good)


def test_build_htf_loads_prior_into_both_encoders(tmp_path):
    torch.manual_seed(3)
    src = resnet18_encoder(3, WIDTH)
    path = save_encoder_state(tmp_path / "prior.pt", src.state_dict(), classes=list(PRIOR_CLASSES))
    model, reports = build_htf(HTFConfig(width=WIDTH, image_size=SIZE, pretrained_vision=str(path)))
    assert set(reports) == {"image_encoder", "flow_encoder"}
    assert torch.equal(model.image_encoder.layer4[0].conv1.weight, src.layer4[0].conv1.weight)
    w = src.conv1.weight.mean(dim=1, keepdim=True)
    assert torch.allclose(model.flow_encoder.conv1.weight, w.repeat(1, 2, 1, 1))
    assert not model.image_encoder.training and not model.image_encoder.conv1.weight.requires_grad
    lvs, report = build_lvs(LVSConfig(width=WIDTH, image_size=SIZE, pretrained_vision=str(path)))
    assert report.ignored == () and torch.equal(lvs.image_encoder.conv1.weight, src.conv1.weight)


def test_vehicle_crops_from_objects_table():
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[45:90, 80:160] = (255, 0, 0)  # a red "car": box (320, 180, 320, 180) in 1280x720 units
    objects = pd.DataFrame({
        "filename": ["c", "c", "c", "c", "other"], "time": [0.5, 0.5, 0.5, 0.5, 0.5],
        "label": ["car", "tree", "car", "car", "bus"],
        "x": [320.0, 0.0, np.nan, 0.0, 0.0], "y": [180.0, 0.0, np.nan, 0.0, 0.0],
        "w": [320.0, 100.0, np.nan, 100.0, 100.0], "h": [180.0, 200.0, np.nan, 100.0, 100.0],
        "visible_fraction": [1.0, 1.0, 1.0, 0.2, 1.0],
    })
    images, labels = vehicle_crops({("c", 0.5): frame}, objects, size=16, context=0.0)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    assert labels.tolist() == [PRIOR_CLASSES.index("car"), PRIOR_CLASSES.index("tree")]
    assert np.all(images[0] == (255, 0, 0)) and np.all(images[1] == 0)
    with pytest.raises(DataError, match="visible_fraction"):
        vehicle_crops({}, objects.drop(columns="visible_fraction"))


def test_vehicle_pretraining_reduces_loss():
    rng = np.random.default_rng(0)
    n = 16
    labels = np.arange(n) % 2
    images = rng.integers(0, 40, size=(n, 32, 32, 3)).astype(np.uint8)
    images[labels == 0, :, :, 0] += 200  # class 0 reddish, class 1 bluish: separable by colour
    images[labels == 1, :, :, 2] += 200
    cfg = VehiclePretrainConfig(width=WIDTH, image_size=32, n_classes=2, epochs=6, batch_size=8, lr=3e-3, seed=0)
    res = pretrain_vehicle_classifier(images, labels, cfg, progress=False)
    assert res.losses.shape == (6,)
    assert res.losses[-1] < 0.5 * res.losses[0]
    enc = resnet18_encoder(3, WIDTH)
    load_encoder_weights(enc, res.encoder_state)
    assert torch.equal(enc.conv1.weight, res.encoder_state["conv1.weight"])
    again = pretrain_vehicle_classifier(images, labels, cfg, progress=False)
    assert np.array_equal(again.losses, res.losses)
    with pytest.raises(ValueError, match="labels"):
        pretrain_vehicle_classifier(images, labels + 5, cfg, progress=False)
