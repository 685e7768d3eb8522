"""Released LVS and Hear The Flow checkpoints: layouts, equivalence with the released nets, errors.

The reference nets are torchvision ResNet-18s modified as the released code modifies them
(1- / 2-channel stems, layer4 stride 1 for LVS, max-pooled audio, an identity fc) and Hear The
Flow's attention written from its equations; the loaded companion models must compute the same
numbers from the same state dict.
"""
from __future__ import annotations

import fractions

import torch
import torch.nn.functional as F
import pytest

from benchmark_fixtures import (htf_release_modules, htf_release_state, lvs_release_state, official_rcgrad_state,
                                save_htf_ckpt, torchvision_trunk, trunk_features)
from vssl_core.errors import DataError
from vssl_core.models.checkpoints import load_released_htf, load_released_lvs
from vssl_core.training.store import load_trained
from vssl_core.models.pretrain import IMAGENET_MEAN, IMAGENET_STD

LVS_IGNORED = {"imgnet.conv1_a.weight", "imgnet.conv1_flow.weight", "imgnet.fc.weight", "imgnet.fc.bias",
               "audnet.conv1.weight", "audnet.conv1_flow.weight", "audnet.fc.weight", "audnet.fc.bias"}


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def lvs_nets():
    return torchvision_trunk(3, 1, seed=10), torchvision_trunk(1, 1, seed=11)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 224, 224, generator=g), torch.randn(2, 1, 257, 96, generator=g), \
        torch.randn(2, 2, 224, 224, generator=g)


def test_released_lvs_layout_computes_the_released_maps(tmp_path, lvs_nets, inputs):
    img, aud = lvs_nets
    path = tmp_path / "lvs_vggss.pth.tar"
    torch.save({"epoch": 80, "model_state_dict": lvs_release_state(img, aud)}, path)
    model, report = load_released_lvs(path, audio_sr=16000)
    assert not model.training and model.config.audio_pool == "max" and model.config.audio_sr == 16000
    assert set(report.ignored) == LVS_IGNORED and report.missing == ()
    images, spec, _ = inputs
    with torch.no_grad():
        v = F.normalize(trunk_features(img, _imagenet(images)), dim=1)          # (2, 512, 14, 14)
        a = F.normalize(trunk_features(aud, spec).amax(dim=(2, 3)), dim=1)      # max pool, stride-1 layer4
        expected = torch.einsum("ncij,nc->nij", v, a)
        got = model(images, spec).heatmap
    assert got.shape == (2, 14, 14)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_released_lvs_without_prefix_or_wrapper(lvs_nets):
    img, aud = lvs_nets
    bare = lvs_release_state(img, aud, prefix="")
    m1, _ = load_released_lvs(bare)
    m2, _ = load_released_lvs({"model_state_dict": lvs_release_state(img, aud)})
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(m1.audio_encoder.conv1.weight, aud.conv1.weight)


def test_released_htf_lightning_ckpt_computes_the_released_maps(tmp_path, inputs):
    mods = htf_release_modules(seed=20)
    path = save_htf_ckpt(tmp_path / "best.ckpt", mods)
    model, report = load_released_htf(path, audio_sr=22050)
    assert model.config.flow_encoder == "resnet" and model.config.attn_dim == 64 and model.config.audio_pool == "max"
    assert report.missing == () and report.ignored == ()
    images, spec, flow = inputs
    with torch.no_grad():
        img = trunk_features(mods["imgnet"], _imagenet(images))
        att = mods["flowatt"](img, trunk_features(mods["flownet"], flow))
        v = F.normalize(img + att, dim=1)
        a = F.normalize(trunk_features(mods["audnet"], spec).amax(dim=(2, 3)), dim=1)
        expected = torch.einsum("ncij,nc->nij", v, a)
        got = model(images, spec, flow).heatmap
    assert got.shape == (2, 7, 7)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_released_htf_pth_and_maxpool_variant(inputs):
    mods = htf_release_modules(seed=30, flowtype="maxpool")
    model, _ = load_released_htf({"model": htf_release_state(mods, prefix="")})
    assert model.config.flow_encoder == "maxpool"
    images, spec, flow = inputs
    with torch.no_grad():
        img = trunk_features(mods["imgnet"], _imagenet(images))
        att = mods["flowatt"](img, F.adaptive_max_pool2d(flow, (7, 7)))
        v = F.normalize(img + att, dim=1)
        a = F.normalize(trunk_features(mods["audnet"], spec).amax(dim=(2, 3)), dim=1)
        expected = torch.einsum("ncij,nc->nij", v, a)
        got = model(images, spec, flow).heatmap
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_foreign_truncated_and_unknown_keys_are_clear_errors(tmp_path, lvs_nets):
    img, aud = lvs_nets
    rc = tmp_path / "rc_grad.pt"
    torch.save(official_rcgrad_state(), rc)
    with pytest.raises(DataError, match=r"rc_grad\.pt.*RCGrad checkpoint"):
        load_released_lvs(rc)
    with pytest.raises(DataError, match=r"rc_grad\.pt.*RCGrad checkpoint"):
        load_released_htf(rc)
    lvs = tmp_path / "lvs.pth"
    torch.save({"model_state_dict": lvs_release_state(img, aud)}, lvs)
    with pytest.raises(DataError, match=r"lvs\.pth.*LVS checkpoint"):
        load_released_htf(lvs)
    htf = save_htf_ckpt(tmp_path / "htf.ckpt", htf_release_modules(seed=1))
    with pytest.raises(DataError, match=r"htf\.ckpt.*Hear The Flow checkpoint"):
        load_released_lvs(htf)
    data = lvs.read_bytes()
    lvs.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"lvs\.pth.*cannot be read"):
        load_released_lvs(lvs)
    extra = lvs_release_state(img, aud)
    extra["module.projection.weight"] = torch.zeros(4)
    with pytest.raises(DataError, match="projection.weight"):
        load_released_lvs(extra)
    wrong = lvs_release_state(img, aud)
    wrong["module.imgnet.layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    with pytest.raises(DataError, match=r"imgnet\.layer1\.0\.conv1\.weight.*shape"):
        load_released_lvs(wrong)
    short = {k: v for k, v in lvs_release_state(img, aud).items() if "layer3" not in k}
    with pytest.raises(DataError, match="missing"):
        load_released_lvs(short)
    odd = tmp_path / "odd.ckpt"       # a pickled class beyond argparse.Namespace is not unpickled
    torch.save({"state_dict": {"model.imgnet.conv1.weight": torch.zeros(1)}, "extra": fractions.Fraction(1, 3)}, odd)
    with pytest.raises(DataError, match=r"odd\.ckpt.*fractions\.Fraction.*weights_only=False"):
        load_released_htf(odd)


def test_trained_localizer_round_trip(tmp_path):
    from vssl_core.models.checkpoints import save_checkpoint
    from vssl_core.models.lvs import LVS, LVSConfig

    torch.manual_seed(0)
    model = LVS(LVSConfig(width=0.25, image_size=64, pretrained_vision="/nonexistent/prior.pt"))
    payload = {"config": {}, "model_class": "LVS", "model_config": model.config.to_dict(), "epoch": 1,
               "model": model.state_dict()}
    save_checkpoint(tmp_path / "last.pt", payload)
    loaded, meta = load_trained(tmp_path / "last.pt")  # the prior file is not read: the weights are in it
    assert isinstance(loaded, LVS) and meta["epoch"] == 1
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    save_checkpoint(tmp_path / "bad.pt", {**payload, "model_class": "Transformer"})
    with pytest.raises(DataError, match="unknown model class 'Transformer'"):
        load_trained(tmp_path / "bad.pt")
