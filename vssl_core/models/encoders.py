"""ResNet-18 encoders that return the last spatial feature map and its pooled embedding.

Conventions
-----------
- Inputs are float tensors ``(N, C, H, W)``; outputs are the layer4 map ``(N, D, h, w)`` and
  its global average ``(N, D)`` with ``D = 512 * width``.
- Module names follow ``torchvision.models.resnet18`` (``conv1``, ``bn1``, ``layer1`` ..
  ``layer4``, blocks ``layerK.i.conv1/bn1/conv2/bn2/downsample``) so that a torchvision or an
  official RCGrad state dict loads at ``width=1.0`` without renaming inside the encoder. There
  is no ``fc`` head: the pooled layer4 output *is* the embedding (RCGrad has no projection).
- ``width`` scales every channel count (``width=0.5``: 32, 32, 64, 128, 256), a CPU option
  for the quick profile. torchvision's ``ResNet`` hard-codes 64..512 channels, so the network is
  assembled here from torchvision's own ``BasicBlock``.
- ``layer4_stride=1`` (RCGrad, docs/conventions.md "RCGrad") keeps layer4 at the layer3 resolution: a 224 input
  gives a 14x14 map (a 128 input 8x8); ``layer4_stride=2`` is the torchvision default (7x7).
- Weights are always randomly initialised (``weights=None``); nothing is ever downloaded.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

__all__ = ["EncoderOutput", "ResNetEncoder", "resnet18_encoder", "channel_widths"]

_BASE_WIDTHS = (64, 64, 128, 256, 512)  # stem, layer1, layer2, layer3, layer4


class EncoderOutput(NamedTuple):
    """What an encoder returns.

    Attributes
    ----------
    features : Tensor, shape (N, D, h, w)
        Output of the last block of layer4 (the Grad-CAM target layer).
    embedding : Tensor, shape (N, D)
        ``features`` averaged over ``h, w`` (not L2-normalised).
    """

    features: torch.Tensor
    embedding: torch.Tensor


def channel_widths(width: float) -> tuple[int, int, int, int, int]:
    """Channel counts (stem, layer1..layer4) of a ResNet-18 scaled by ``width``.

    >>> channel_widths(1.0)
    (64, 64, 128, 256, 512)
    >>> channel_widths(0.5)
    (32, 32, 64, 128, 256)
    """
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(max(1, int(round(c * width))) for c in _BASE_WIDTHS)  # type: ignore[return-value]


class ResNetEncoder(nn.Module):
    """ResNet-18 trunk (no classifier) with configurable input channels, width and layer4 stride.

    Parameters
    ----------
    in_channels : int
        Input channels (3 RGB, 4 RGB+flow, 1 spectrogram or flow magnitude).
    width : float
        Channel multiplier; 1.0 is torchvision's resnet18.
    layer4_stride : {1, 2}
        Stride of the first block of layer4.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0, layer4_stride: int = 2) -> None:
        super().__init__()
        if layer4_stride not in (1, 2):
            raise ValueError(f"layer4_stride must be 1 or 2, got {layer4_stride}")
        stem, c1, c2, c3, c4 = channel_widths(width)
        self.in_channels = in_channels
        self.out_channels = c4
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = stem
        self.layer1 = self._make_layer(c1, stride=1)
        self.layer2 = self._make_layer(c2, stride=2)
        self.layer3 = self._make_layer(c3, stride=2)
        self.layer4 = self._make_layer(c4, stride=layer4_stride)
        del self._inplanes
        # The same initialisation as torchvision's ResNet (Kaiming fan-out, BN weight 1 bias 0).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(conv1x1(self._inplanes, planes, stride), nn.BatchNorm2d(planes))
        blocks = [BasicBlock(self._inplanes, planes, stride, downsample), BasicBlock(planes, planes)]
        self._inplanes = planes
        return nn.Sequential(*blocks)

    @property
    def target_layer(self) -> nn.Module:
        """The Grad-CAM target: the last block of layer4 (global average pooling follows it)."""
        return self.layer4[-1]

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """Encode ``x`` of shape (N, in_channels, H, W)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, stem, H/4, W/4)
        x = self.layer1(x)  # (N, c1, H/4, W/4)
        x = self.layer2(x)  # (N, c2, H/8, W/8)
        x = self.layer3(x)  # (N, c3, H/16, W/16)
        features = self.layer4(x)  # (N, c4, H/16 or H/32, ...)
        embedding = features.mean(dim=(2, 3))  # (N, c4)
        return EncoderOutput(features, embedding)


def resnet18_encoder(in_channels: int = 3, width: float = 1.0, layer4_stride: int = 2) -> ResNetEncoder:
    """A randomly initialised ResNet-18 encoder; see :class:`ResNetEncoder`.

    Examples
    --------
    >>> enc = resnet18_encoder(3, width=0.5, layer4_stride=1)
    >>> out = enc(torch.zeros(2, 3, 128, 128))
    >>> tuple(out.features.shape), tuple(out.embedding.shape)
    ((2, 256, 8, 8), (2, 256))
    """
    return ResNetEncoder(in_channels=in_channels, width=width, layer4_stride=layer4_stride)
