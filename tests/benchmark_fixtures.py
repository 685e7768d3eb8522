"""Tiny VGG-SS / Flickr-SoundNet benchmarks in the released layouts, and released-format weights.

The ground truth is chosen so that the centred box (rows/columns 32..190 of the 224 grid) scores
exactly 1 on the first sample (a box equal to it) and 0 on the second (a disjoint box).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch
import torchvision
from PIL import Image
from torch import nn

#: Normalised corners of the centred box: int(224 * v) gives 32 and 191.
LO, HI = (1 - 0.5 ** 0.5) / 2, (1 + 0.5 ** 0.5) / 2
VGGSS_IDS = ["aaa_000010", "bbb_000020", "ccc_000030", "ddd_000040", "eee_000050"]
FLICKR_IDS = ["1001", "1002", "1003", "1004", "1005"]


def _jpg(path: Path, rng: np.random.Generator, size=(120, 160)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path, quality=95)


def _wav(path: Path, rng: np.random.Generator, seconds: float = 2.0, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr)


def vggss_annotations() -> list[dict]:
    return [{"file": "aaa_000010", "class": "dog", "bbox": [[LO, LO, HI, HI]]},
            {"file": "bbb_000020", "class": "cat", "bbox": [[0.0, 0.0, 0.1, 0.1]]},
            {"file": "ccc_000030", "class": "cow", "bbox": [[0.2, 0.2, 0.6, 0.6]]},
            {"file": "ddd_000040", "class": "car", "bbox": [[0.2, 0.2, 0.6, 0.6]]}]


def make_vggss_frames(root: Path) -> Path:
    """frames/ + audio/: aaa, bbb complete; ccc without its wav; ddd with a corrupt jpg; eee has
    media but no annotation (it is in ids.txt only)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "vggss.json").write_text(json.dumps(vggss_annotations()))
    (root / "ids.txt").write_text("\n".join(VGGSS_IDS) + "\n")
    for i in ("aaa_000010", "bbb_000020", "ccc_000030", "eee_000050"):
        _jpg(root / "frames" / f"{i}.jpg", rng)
    (root / "frames" / "ddd_000040.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    for i in ("aaa_000010", "bbb_000020", "ddd_000040", "eee_000050"):
        _wav(root / "audio" / f"{i}.wav", rng)
    return root


def make_vggss_videos(root: Path, n_frames: int = 24, fps: float = 8.0) -> Path:
    """videos/ + audio/ for aaa and bbb: frame k has brightness 8 k and a bright square moving
    3 px right per frame."""
    rng = np.random.default_rng(1)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "vggss.json").write_text(json.dumps(vggss_annotations()[:2]))
    for i in ("aaa_000010", "bbb_000020"):
        vw = cv2.VideoWriter(str(root / "videos" / f"{i}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 64))
        assert vw.isOpened()
        for k in range(n_frames):
            f = np.full((64, 96, 3), 8 * k, np.uint8)
            f[20:40, 5 + 3 * k:25 + 3 * k] = 250
            vw.write(f)
        vw.release()
        _wav(root / "audio" / f"{i}.wav", rng, seconds=3.0, sr=22050)
    return root


def _xml(boxes: list[list[int]]) -> str:
    objs = "".join(f"<object><bbox><annotator>{k}</annotator><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bbox></object>" for k, b in enumerate(boxes))
    return f"<annotation><filename>x.png</filename>{objs}</annotation>"


def make_flickr(root: Path, original_layout: bool = False) -> Path:
    """Annotations/ + frames/ + audio/ (or the original Data/<folder>/): 1001 two annotators on the
    centred box ([37, 37, 219, 219] in 256 units -> 32..191), 1002 one annotator far from it,
    1003 without XML, 1004 with a broken XML, 1005 without its wav; flickr_test.csv lists all."""
    rng = np.random.default_rng(2)
    ann = root / "Annotations"
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "1001.xml").write_text(_xml([[37, 37, 219, 219], [37, 37, 219, 219]]))
    (ann / "1002.xml").write_text(_xml([[0, 0, 20, 20]]))
    (ann / "1004.xml").write_text("<annotation><object><bbox>")
    (ann / "1005.xml").write_text(_xml([[10, 10, 100, 100]]))
    (root / "flickr_test.csv").write_text("".join(f"{i},0\n" for i in FLICKR_IDS))
    for i in FLICKR_IDS:
        folder = root / "Data" / "a" if original_layout else root / "frames"
        _jpg(folder / f"{i}.jpg", rng, size=(256, 256))
        if i != "1005":
            _wav((root / "Data" / "a" if original_layout else root / "audio") / f"{i}.wav", rng, seconds=1.0)
    return root


# -- released-format weights -------------------------------------------------------------------------
def randomise_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm distinct statistics, so a mapping that mixes layers up is caught."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean = 0.1 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)
    return module


def torchvision_trunk(in_channels: int, layer4_stride: int, seed: int) -> torchvision.models.ResNet:
    """A torchvision ResNet-18 (eval mode) with ``in_channels`` inputs and layer4 stride 1 or 2:
    the reference the released LVS / Hear The Flow nets are built from."""
    torch.manual_seed(seed)
    r = torchvision.models.resnet18(weights=None)
    if in_channels != 3:
        r.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if layer4_stride == 1:
        r.layer4[0].conv1.stride = (1, 1)
        r.layer4[0].downsample[0].stride = (1, 1)
    return randomise_bn(r, seed).eval()


def trunk_features(r: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
    return r.layer4(r.layer3(r.layer2(r.layer1(x))))


def lvs_release_state(img: torchvision.models.ResNet, aud: torchvision.models.ResNet, prefix: str = "module."
                      ) -> dict[str, torch.Tensor]:
    """The released LVS ``model_state_dict``: both nets carry conv1 (3 ch), conv1_a (1 ch),
    conv1_flow (6 ch) and fc; ``aud``'s 1-channel conv1 becomes ``audnet.conv1_a``."""
    state = {}
    for k, v in img.state_dict().items():
        state[f"{prefix}imgnet.{k}"] = v.clone()
    state[f"{prefix}imgnet.conv1_a.weight"] = torch.randn(64, 1, 7, 7)
    state[f"{prefix}imgnet.conv1_flow.weight"] = torch.randn(64, 6, 7, 7)
    for k, v in aud.state_dict().items():
        state[f"{prefix}audnet.{'conv1_a.weight' if k == 'conv1.weight' else k}"] = v.clone()
    state[f"{prefix}audnet.conv1.weight"] = torch.randn(64, 3, 7, 7)
    state[f"{prefix}audnet.conv1_flow.weight"] = torch.randn(64, 6, 7, 7)
    return state


class SelfAttnReference(nn.Module):
    """Hear The Flow's cross-attention written from its equations (query/key 1x1 convs to C/8,
    value 1x1 conv to C, softmax over the flow positions, residual added by the caller)."""

    def __init__(self, dim: int, key_dim: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(dim, dim // 8, 1)
        self.key_conv = nn.Conv2d(key_dim, dim // 8, 1)
        self.value_conv = nn.Conv2d(dim, dim, 1)
        self.dim = dim

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query_conv(x).view(n, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(v).view(n, -1, h * w)
        att = torch.softmax(torch.bmm(q, k) / (self.dim // 8) ** 0.5, dim=-1)
        val = self.value_conv(x).view(n, -1, h * w)
        return torch.bmm(val, att.permute(0, 2, 1)).view(n, c, h, w)


def htf_release_modules(seed: int = 0, flowtype: str = "cnn") -> dict[str, nn.Module]:
    """imgnet, audnet (1 ch), flownet (2 ch) torchvision trunks with fc = identity, and flowatt."""
    mods = {"imgnet": torchvision_trunk(3, 2, seed), "audnet": torchvision_trunk(1, 2, seed + 1)}
    if flowtype == "cnn":
        mods["flownet"] = torchvision_trunk(2, 2, seed + 2)
    torch.manual_seed(seed + 3)
    mods["flowatt"] = SelfAttnReference(512, 512 if flowtype == "cnn" else 2).eval()
    for k in ("imgnet", "audnet", "flownet"):
        if k in mods:
            mods[k].fc = nn.Identity()
    return mods


def htf_release_state(mods: dict[str, nn.Module], prefix: str = "model.") -> dict[str, torch.Tensor]:
    return {f"{prefix}{name}.{k}": v.clone() for name, m in mods.items() for k, v in m.state_dict().items()}


def save_htf_ckpt(path: Path, mods: dict[str, nn.Module]) -> Path:
    """A PyTorch Lightning checkpoint (hyper-parameters hold an argparse.Namespace)."""
    torch.save({"epoch": 3, "global_step": 10, "pytorch-lightning_version": "1.8.0",
                "state_dict": htf_release_state(mods),
                "hyper_parameters": {"args": argparse.Namespace(flowtype="cnn", tau=0.03, epsilon=0.65)}}, path)
    return path


def official_rcgrad_state(seed: int = 0) -> dict[str, torch.Tensor]:
    from vssl_core.models.rcgrad import ModelConfig, RCGrad

    torch.manual_seed(seed)
    model = RCGrad(ModelConfig(width=1.0))
    state = {f"image_encoder.{k}": v.clone() for k, v in model.image_encoder.state_dict().items()}
    state.update({f"audio_encoder.{k}": v.clone() for k, v in model.audio_encoder.backbone.state_dict().items()})
    return state
