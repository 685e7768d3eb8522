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
from vssl_core.models.pretrain import (PRIOR_CLASSES, PriorArrays, PriorConfig, PriorNet, load_encoder_weights,
                                       load_imagenet_weights, object_targets, save_encoder_state)
from vssl_core.training.loop import TrainConfig, train

SIZE, WIDTH = 64, 0.25


# -- tri-map loss ----------------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _confident_mean(s, eps_p, tau):
    m = _sigmoid((s - eps_p) / tau)
    return (m * s).sum() / m.sum()


def _numpy_trimap(S, eps_p=0.65, eps_n=0.4, tau=0.03, temp=0.07, summed=False, easy_rule="confident"):
    """Independent float64 reference of the documented formulas."""
    n = S.shape[0]
    losses = []
    for i in range(n):
        s = S[i, i].ravel()
        mn = 1.0 - _sigmoid((s - eps_n) / tau)
        P = _confident_mean(s, eps_p, tau)
        H = (mn * s).sum() / mn.sum()
        easy = [_confident_mean(S[i, j].ravel(), eps_p, tau) if easy_rule == "confident" else S[i, j].mean()
                for j in range(n) if j != i]
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
    logits = trimap_logits(torch.tensor(S), easy_negatives="mean").numpy() * 0.07
    # By hand: masks are binary up to sigmoid(+-8.33) / sigmoid(+-10) (< 3e-4 off), so
    # P_i ~ 0.9, H_i ~ 0.1 and the easy negatives are the constant off-diagonal maps.
    assert np.allclose(logits[:, 0], 0.9, atol=1e-3)
    assert np.allclose(logits[:, 1], 0.1, atol=1e-3)
    assert np.allclose(logits[:, 2], [0.2, -0.3], atol=1e-12)
    # ... so the loss is close to the closed-form CE with those rounded values.
    z = np.array([[0.9, 0.1, 0.2], [0.9, 0.1, -0.3]]) / 0.07
    by_hand = np.mean([np.log(np.exp(r - r[0]).sum()) for r in z])
    assert abs(float(trimap_loss(torch.tensor(S), easy_negatives="mean")) - by_hand) < 0.02
    # ... and equal to the exact float64 formula to 1e-5.
    assert abs(float(trimap_loss(torch.tensor(S), easy_negatives="mean")) - _numpy_trimap(S, easy_rule="mean")) < 1e-5
    # The released rule averages a constant cross map over its own (tiny) confident region: the
    # constant itself, so the same logits here; it differs where a cross map has structure.
    assert np.allclose(trimap_logits(torch.tensor(S)).numpy() * 0.07, logits, atol=1e-9)
    assert abs(float(trimap_loss(torch.tensor(S))) - _numpy_trimap(S)) < 1e-5


@pytest.mark.parametrize("easy", ["confident", "mean"])
@pytest.mark.parametrize("negatives", ["separate", "summed"])
def test_trimap_loss_matches_numpy_on_random_maps(negatives, easy):
    rng = np.random.default_rng(0)
    S = np.tanh(rng.normal(0.3, 0.5, size=(4, 4, 3, 5)))
    got = float(trimap_loss(torch.tensor(S, dtype=torch.float32), negatives=negatives, easy_negatives=easy))
    assert abs(got - _numpy_trimap(S, summed=negatives == "summed", easy_rule=easy)) < 1e-5 * max(1.0, abs(got))
    shape = trimap_logits(torch.tensor(S), negatives=negatives).shape
    assert shape == ((4, 5) if negatives == "separate" else (4, 2))


def test_a_map_that_ignores_the_audio_cannot_reach_a_low_loss():
    """S_ij = S_ii for every j (the map ignores the sound) with a small confident blob: under the
    released rule every easy negative equals the positive, so the loss stays at chance log(N)
    or above; the plain-mean rule lets the same map reach a loss near 0 (the shortcut)."""
    n, h, w = 8, 7, 7
    base = np.full((h, w), -0.5)
    base[2:4, 3:5] = 0.95                                    # confident on a small region
    S = np.broadcast_to(base, (n, n, h, w)).copy()            # the same map whatever the audio
    released = float(trimap_loss(torch.tensor(S)))
    literal = float(trimap_loss(torch.tensor(S), easy_negatives="mean"))
    assert released >= np.log(n) - 1e-3          # N equal logits (the hard negative is far below)
    assert literal < 0.01
    # a map that listens: confident only with its own audio
    S2 = np.full((n, n, h, w), -0.5)
    for i in range(n):
        S2[i, i] = base
    assert float(trimap_loss(torch.tensor(S2))) < 0.01


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


def test_attention_gate_starts_closed_and_scales_the_residual():
    torch.manual_seed(0)
    plain = FlowAttention(image_dim=16, flow_dim=6, attn_dim=4)
    gated = FlowAttention(image_dim=16, flow_dim=6, attn_dim=4, gate=True)
    gated.load_state_dict({**plain.state_dict(), "gate": torch.zeros(1)})
    img, flo = torch.randn(2, 16, 3, 4), torch.randn(2, 6, 3, 4)
    out, w = gated(img, flo)
    assert torch.equal(out, img)  # a fresh gate lets nothing through: the model starts as its no-flow row
    out.sum().backward()
    assert gated.gate.grad is not None and gated.gate.grad.abs() > 0  # the loss can open it
    ref, w_ref = plain(img, flo)
    with torch.no_grad():
        gated.gate.fill_(0.5)
    half, _ = gated(img, flo)
    assert torch.allclose(half, img + 0.5 * (ref - img), atol=1e-6) and torch.equal(w, w_ref)
    assert "attn_gate" not in HTFConfig().to_dict() and HTFConfig(attn_gate=True).to_dict()["attn_gate"] is True
    assert HTFConfig.from_dict(HTFConfig(attn_gate=True).to_dict()).attn_gate


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


def test_object_targets_paint_far_to_near_and_average_over_cells():
    """A 1280x720 frame seen at 8 px on a 2x2 grid (4 px cells): a near car over a far bus."""
    objects = pd.DataFrame({
        "filename": ["c", "c", "c", "c"], "time": [0.5, 0.5, 0.5, 0.5],
        "label": ["bus", "car", "tree", "car"],
        "x": [0.0, 0.0, 640.0, 640.0], "y": [0.0, 0.0, 360.0, 0.0],
        "w": [640.0, 320.0, 640.0, 640.0], "h": [360.0, 360.0, 360.0, 360.0],
        "visible_fraction": [1.0, 1.0, 1.0, 0.1], "depth": [0.9, 0.2, 0.5, 0.1],
    })
    t = object_targets(objects, [("c", 0.5), ("c", 1.0)], image_size=8, grid=2)
    assert t.shape == (2, len(PRIOR_CLASSES), 2, 2) and np.allclose(t.sum(1), 1.0)
    car, bus, tree, bg = (PRIOR_CLASSES.index(k) for k in ("car", "bus", "tree", "background"))
    # top-left cell: the near car covers the left half (x < 2 px), the far bus the rest
    assert t[0, car, 0, 0] == pytest.approx(0.5) and t[0, bus, 0, 0] == pytest.approx(0.5)
    assert t[0, tree, 1, 1] == pytest.approx(1.0)           # bottom-right: the tree
    assert t[0, bg, 0, 1] == pytest.approx(1.0)             # top-right car is 10% visible: background
    assert t[1, bg].min() == pytest.approx(1.0)             # a frame without objects
    with pytest.raises(DataError, match="depth"):
        object_targets(objects.drop(columns="depth"), [("c", 0.5)], 8, 2)


def test_object_prior_learns_and_its_encoder_loads_into_a_model():
    """Objects (bright squares) on a dark background: the per-cell loss falls and the trained
    encoder's weights load into an LVS image encoder."""
    rng = np.random.default_rng(0)
    n, size = 32, 32
    images = rng.integers(0, 30, (n, size, size, 3), dtype=np.uint8)
    targets = np.zeros((n, len(PRIOR_CLASSES), 2, 2), np.float32)
    targets[:, 0] = 1.0
    for i in range(n):
        r, c = divmod(i % 4, 2)
        images[i, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = 220
        targets[i, :, r, c] = 0.0
        targets[i, 1, r, c] = 1.0
    cfg = PriorConfig(width=WIDTH, layer4_stride=2, image_size=size)
    assert cfg.grid == 1  # stride 32: one cell at 32 px
    cfg = PriorConfig(width=WIDTH, layer4_stride=1, image_size=size)
    assert cfg.grid == 2
    torch.manual_seed(0)
    net = PriorNet(cfg)
    _, history = train(net, TrainConfig(epochs=5, batch_size=8, lr=3e-3, bn_batches=2, device="cpu"),
                       PriorArrays(images, targets), PriorArrays(images[:8], targets[:8]), progress=False)
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert "val_retrieval" not in history[0]  # no pairs to rank
    lvs = LVS(LVSConfig(width=WIDTH, image_size=size))
    load_encoder_weights(lvs.image_encoder, net.encoder_state())
    assert torch.equal(lvs.image_encoder.conv1.weight, net.encoder.conv1.weight)


def test_batchnorm_recalibration_averages_the_given_batches():
    from vssl_core.training.batchnorm import recalibrate

    model = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2))
    model[1].eval()
    model[1].train = lambda mode=True: model[1]  # a "frozen" layer its model keeps in eval mode
    frozen_mean = model[1].running_mean.clone()
    model[0].running_mean.fill_(5.0)
    batches = [torch.tensor([[0.0, 2.0], [2.0, 4.0]]), torch.tensor([[4.0, 6.0], [6.0, 8.0]])]
    n = recalibrate(model, batches, lambda m, b: m(b))
    assert n == 1 and not model.training
    assert torch.allclose(model[0].running_mean, torch.tensor([3.0, 5.0]))  # mean of the batch means
    assert model[0].momentum == 0.1 and torch.equal(model[1].running_mean, frozen_mean)
