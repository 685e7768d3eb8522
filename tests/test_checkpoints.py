"""Checkpoint loaders: official RCGrad layout, ImageNet ResNet-18, truncated and foreign files."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision

from vssl_core.models.checkpoints import (load_checkpoint, load_imagenet_resnet18, load_model, load_official_rcgrad,
                                   save_checkpoint, save_model)
from vssl_core.errors import DataError
from vssl_core.models.rcgrad import ModelConfig, RCGrad


@pytest.fixture(scope="module")
def official_state():
    """A state dict in the official layout, built from a fresh width-1.0 model."""
    torch.manual_seed(0)
    model = RCGrad(ModelConfig(width=1.0))
    state = {}
    for k, v in model.image_encoder.state_dict().items():
        state[f"image_encoder.{k}"] = v.clone()
    for k, v in model.audio_encoder.backbone.state_dict().items():
        state[f"audio_encoder.{k}"] = v.clone()
    state["image_encoder.conv1_a.weight"] = torch.randn(64, 1, 7, 7)
    state["image_encoder.conv1_flow.weight"] = torch.randn(64, 6, 7, 7)
    state["image_encoder.fc.weight"] = torch.randn(1000, 512)
    state["image_encoder.fc.bias"] = torch.randn(1000)
    state["audio_encoder.spectrogram.window"] = torch.hann_window(512)
    state["logit_scale"] = torch.tensor(2.5)
    return state


def test_official_layout_round_trip(tmp_path, official_state):
    path = tmp_path / "rc_grad.pt"
    torch.save(official_state, path)
    model, report = load_official_rcgrad(path)
    assert not model.training and model.config.faithful_audio_bn and model.config.layer4_stride == 1
    for k, v in model.image_encoder.state_dict().items():
        assert torch.equal(v, official_state[f"image_encoder.{k}"]), k
    for k, v in model.audio_encoder.backbone.state_dict().items():
        assert torch.equal(v, official_state[f"audio_encoder.{k}"]), k
    assert model.logit_scale.item() == pytest.approx(2.5)
    assert set(report.ignored) == {"image_encoder.conv1_a.weight", "image_encoder.conv1_flow.weight",
                                   "image_encoder.fc.weight", "image_encoder.fc.bias",
                                   "audio_encoder.spectrogram.window"}
    assert report.missing == ()
    assert len(report.loaded) == len(official_state) - 5
    assert "ignored 5" in report.summary()


def test_official_without_logit_scale_reports_it_missing(official_state):
    state = {k: v for k, v in official_state.items() if k != "logit_scale"}
    model, report = load_official_rcgrad(state)
    assert report.missing == ("logit_scale",)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_truncated_file_is_a_data_error(tmp_path, official_state):
    path = tmp_path / "rc_grad.pt"
    torch.save(official_state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="rc_grad.pt"):
        load_official_rcgrad(path)


def test_foreign_checkpoint_is_a_data_error(tmp_path, official_state):
    foreign = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), foreign)
    with pytest.raises(DataError, match=r"resnet\.pt.*conv1\.weight.*image_encoder"):
        load_official_rcgrad(foreign)
    bad_shape = dict(official_state)
    bad_shape["image_encoder.layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    with pytest.raises(DataError, match="image_encoder.layer1.0.conv1.weight"):
        load_official_rcgrad(bad_shape)
    extra = dict(official_state)
    extra["projection.weight"] = torch.zeros(3)
    with pytest.raises(DataError, match="projection.weight"):
        load_official_rcgrad(extra)
    incomplete = {k: v for k, v in official_state.items() if "layer4.1.bn2.weight" not in k}
    with pytest.raises(DataError, match="layer4.1.bn2.weight"):
        load_official_rcgrad(incomplete)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_imagenet_resnet18_loader(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    enc, report = load_imagenet_resnet18(path)
    assert set(report.ignored) == {"fc.weight", "fc.bias"}
    assert torch.equal(enc.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)
    assert enc(torch.zeros(1, 3, 224, 224)).features.shape == (1, 512, 14, 14)  # layer4 stride 1


def test_save_model_round_trip_and_checkpoint_is_weights_only(tmp_path):
    torch.manual_seed(0)
    model = RCGrad(ModelConfig(kind="rcgrad", width=0.125, image_size=64))
    save_model(tmp_path / "m.pt", model, note="x")
    loaded, meta = load_model(tmp_path / "m.pt")
    assert meta["note"] == "x" and loaded.config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    save_checkpoint(tmp_path / "c.pt", {"a": 1, "t": torch.ones(2)})
    assert torch.load(tmp_path / "c.pt", weights_only=True)["a"] == 1


@pytest.mark.slow
def test_released_rcgrad_path_of_the_flowgrad_notebook(tmp_path, official_state, urbansas_mini):
    """The notebook's `official_rcgrad` parameter: a file in the official layout is loaded and
    gives RCGrad and FlowGrad-H maps for every real FlowGrad pair, at 224 px."""
    import numpy as np

    from vssl_core.studies import flowgrad as fs
    from vssl_core.data.urbansas import UrbansasDataset

    path = tmp_path / "rc_grad.pt"
    torch.save(official_state, path)
    ds = UrbansasDataset(urbansas_mini)
    maps = fs.official_rcgrad_maps(str(path), ds, fs.FlowGradSetup(), progress=False)
    rc, fh = maps["RCGrad (released weights)"], maps["FlowGrad-H (released RCGrad)"]
    assert rc.maps.shape == (102, 224, 224) and rc.postprocess == "clean"
    assert fh.postprocess == "none" and np.isfinite(fh.maps).all()
