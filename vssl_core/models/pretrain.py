"""Vision priors for LVS / Hear The Flow without downloading anything.

Hear The Flow (Table 4) shows that an *object-centric* prior in the image encoder (ImageNet
pre-training, optionally frozen) matters. This project has no internet and no bundled weights,
so this module offers two routes:

(a) ImageNet weights from a LOCAL file. :func:`load_imagenet_weights` copies a torchvision
    ``resnet18`` state dict (e.g. ``torchvision.models.resnet18(weights=...).state_dict()``
    saved by the user with ``torch.save``) into a width-1.0, 3-channel
    :class:`~vssl_core.models.encoders.ResNetEncoder`. It reuses
    :func:`vssl_core.models.checkpoints.load_imagenet_resnet18`: a missing, truncated or non-torch file,
    an unknown key, a missing key or a wrong shape raises :class:`~vssl_core.errors.DataError`
    naming the file and the key; the classifier ``fc.*`` is ignored and listed in the returned
    :class:`~vssl_core.models.checkpoints.LoadReport`. ``layer4``'s stride does not change any weight
    shape, so the same file serves LVS (stride 1, 14x14) and HTF (stride 2, 7x7).

(b) A documented SUBSTITUTE for ImageNet, trained on our own synthetic streets: the **object
    prior** (:class:`PriorNet`). Its image encoder (the same ResNet-18 a model uses, or Oya et
    al.'s VGG trunk) and a 1x1 convolution learn to label every cell of the encoder's feature
    grid with the object class covering it (:data:`PRIOR_CLASSES`: background, car, bus,
    motorbike, truck, pedestrian, tree), on whole frames of the *training* scenes at the size the
    model is used at (:func:`object_targets` paints the generator's boxes far to near and averages
    them over each cell). A dense task at the model's own scale is what Grad-CAM and the cosine
    maps read: a layer4 feature per cell that says "there is a vehicle here". Like ImageNet
    pre-training, it knows objects, not sounds: moving, parked and idling vehicles share a label.
    It is weaker than ImageNet in variety (seven classes, synthetic textures) and stronger in
    domain (the same streets as the test data); the notebooks say so.

Any encoder state (ImageNet file or the vehicle prior saved with :func:`save_encoder_state`)
loads into a model's encoder of matching width with :func:`load_encoder_weights`.

Conventions
-----------
- Images are ``uint8 (N, S, S, 3)`` RGB; inside the models they become floats in [0, 1],
  normalised with :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` (the statistics Hear The Flow
  uses, appendix B; also applied here so a prior and the model see the same input scale).
- Object boxes are ``x, y, w, h`` (top-left corner and size) in 1280x720 annotation units
  (:data:`vssl_core.data.urbansas.URBANSAS_FRAME`), scaled to the frame actually given.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl_core.repro.atomic import write_bytes
from vssl_core.models.checkpoints import LoadReport, load_imagenet_resnet18, read_state_dict
from vssl_core.errors import data_error
from vssl_core.models.encoders import ResNetEncoder, resnet18_encoder
from vssl_core.repro.config import PlainConfig

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PRIOR_CLASSES", "normalize_images", "images_to_tensor",
    "load_imagenet_weights", "load_encoder_weights", "adapt_in_channels", "save_encoder_state",
    "PriorConfig", "PriorNet", "PriorArrays", "object_targets",
]

PathLike = str | os.PathLike

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Classes of the object prior; index = label (0 = no object).
PRIOR_CLASSES = ("background", "car", "bus", "motorbike", "truck", "pedestrian", "tree")
_FRAME = (1280, 720)  # (width, height) of the annotation units, = urbansas.URBANSAS_FRAME


# -- image tensors --------------------------------------------------------------------------------
def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) floats in [0, 1] -> ImageNet-standardised floats."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def images_to_tensor(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 RGB ``(N, H, W, 3)`` -> float ``(N, 3, size, size)`` in [0, 1] (bilinear, antialiased)."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8 RGB, got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0)


# -- (a) weights from files -------------------------------------------------------------------------
def load_imagenet_weights(encoder: ResNetEncoder, path: PathLike | Mapping[str, Any]) -> LoadReport:
    """Copy torchvision ImageNet ``resnet18`` weights from a local file into ``encoder``.

    Parameters
    ----------
    encoder : ResNetEncoder
        Must be 3-channel, width 1.0 (512 output channels); any layer4 stride.
    path : path or state dict
        A ``torch.save``-d torchvision ``resnet18`` state dict. Never downloaded.

    Returns
    -------
    LoadReport
        ``ignored`` lists the ``fc.*`` classifier keys.

    Raises
    ------
    ValueError
        ``encoder`` is not a width-1.0 RGB encoder (ImageNet weights exist only for that).
    DataError
        Missing / truncated / unreadable file, wrong or missing keys, wrong shapes.
    """
    if encoder.in_channels != 3 or encoder.out_channels != 512:
        raise ValueError("ImageNet ResNet-18 weights need a 3-channel width-1.0 encoder, got "
                         f"in_channels={encoder.in_channels}, out_channels={encoder.out_channels}; "
                         "set width=1.0 or use the vehicle prior (pretrain_vehicle_classifier)")
    stride = encoder.layer4[0].conv1.stride[0]
    loaded, report = load_imagenet_resnet18(path, layer4_stride=stride)
    encoder.load_state_dict(loaded.state_dict())
    return report


def load_encoder_weights(encoder: ResNetEncoder, source: PathLike | Mapping[str, Any]) -> LoadReport:
    """Load an encoder state (ImageNet torchvision file, or one of :func:`save_encoder_state`).

    ``fc.*`` keys are ignored and reported; every other key must exist in ``encoder`` with the
    same shape, and every encoder tensor except BatchNorm ``num_batches_tracked`` must be given.
    A 3-channel state loads into an encoder with another ``in_channels`` after
    :func:`adapt_in_channels` (done here automatically).

    Raises
    ------
    DataError
        Unreadable file, unknown / missing keys, wrong shapes (message names file and key).
    """
    state, name = read_state_dict(source)
    ignored = sorted(k for k in state if k.startswith("fc."))
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    w = state.get("conv1.weight")
    if isinstance(w, torch.Tensor) and w.ndim == 4 and w.shape[1] == 3 and encoder.in_channels != 3:
        state = adapt_in_channels(state, encoder.in_channels)
    target = encoder.state_dict()
    for key, tensor in state.items():
        if key not in target:
            raise data_error(name, key, "is not a key of a ResNet-18 encoder",
                             "give a torchvision resnet18 state dict or a file of save_encoder_state")
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(target[key].shape):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise data_error(name, key, f"has shape {shape}, the encoder expects {tuple(target[key].shape)}",
                             "use a model config whose width matches the file (ImageNet weights: width 1.0)")
    missing = [k for k in target if k not in state]
    required = [k for k in missing if not k.endswith("num_batches_tracked")]
    if required:
        raise data_error(name, required[0], f"is missing ({len(required)} encoder tensors missing)",
                         "give a complete ResNet-18 state dict")
    encoder.load_state_dict(state, strict=False)
    return LoadReport(tuple(sorted(state)), tuple(ignored), tuple(missing))


def adapt_in_channels(state: Mapping[str, torch.Tensor], in_channels: int) -> dict[str, torch.Tensor]:
    """Copy of an RGB encoder state whose ``conv1`` reads ``in_channels`` inputs.

    Each new input channel gets the mean of the three RGB kernels, the usual way to start a flow
    (``in_channels=2``: dx, dy) or spectrogram (1) network from ImageNet weights. Hear The Flow
    pre-trains its flow encoder on ImageNet without saying how the 2-channel input is handled;
    this is our documented choice.
    """
    out = {k: v.detach().clone() for k, v in state.items()}
    w = out["conv1.weight"]  # (C, 3, k, k)
    out["conv1.weight"] = w.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    return out


def save_encoder_state(path: PathLike, state: Mapping[str, torch.Tensor], **meta: Any) -> Path:
    """Atomically save an encoder state as ``{"state_dict": state, **meta}`` (plain types only)."""
    buf = io.BytesIO()
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in state.items()}, **meta}, buf)
    return write_bytes(path, buf.getvalue())


# -- (b) the substitute prior: dense object classes on whole synthetic frames --------------------
@dataclass(frozen=True)
class PriorConfig(PlainConfig):
    """The object prior's network: an image encoder and a 1x1 per-cell classifier.

    Attributes
    ----------
    arch : {"resnet18", "vgg"}
        ``"resnet18"``: :func:`~vssl_core.models.encoders.resnet18_encoder` (RCGrad, LVS, HTF);
        ``"vgg"``: the VGG-11 trunk of Oya et al.'s potential network.
    width : float
        Channel multiplier (must match the model that loads the encoder).
    layer4_stride : {1, 2}
        ResNet only; sets the feature grid (stride 16 or 32).
    image_blocks : int
        VGG only: number of VGG-11 blocks (grid stride ``2 ** image_blocks``).
    image_size : int
        Input side (pixels): the size the model uses.
    normalization : {"imagenet", "clip"}
        The input statistics of the model that loads the encoder (RCGrad: CLIP's).
    background_weight : float
        Weight of the background class in the loss (objects cover ~15% of the cells).
    """

    arch: str = "resnet18"
    width: float = 0.5
    layer4_stride: int = 1
    image_blocks: int = 4
    image_size: int = 128
    normalization: str = "imagenet"
    background_weight: float = 0.3

    def __post_init__(self) -> None:
        if self.arch not in ("resnet18", "vgg") or self.normalization not in ("imagenet", "clip"):
            raise ValueError(f"invalid PriorConfig {self}")
        if self.width <= 0 or self.image_size < 16 or self.layer4_stride not in (1, 2) or self.image_blocks < 1:
            raise ValueError(f"invalid PriorConfig {self}")

    @property
    def stride(self) -> int:
        """Pixels per feature-grid cell."""
        return (32 // (2 if self.layer4_stride == 1 else 1)) if self.arch == "resnet18" else 2 ** self.image_blocks

    @property
    def grid(self) -> int:
        return self.image_size // self.stride


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PriorNet(nn.Module):
    """Image encoder + 1x1 convolution to :data:`PRIOR_CLASSES` logits on the feature grid.

    ``forward(images (N, 3, S, S) in [0, 1]) -> logits (N, C, S / stride, S / stride)``;
    ``loss(logits, targets)`` is the cross-entropy against soft per-cell targets
    (:func:`object_targets`), the background class down-weighted.
    """

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else PriorConfig()
        if self.config.arch == "resnet18":
            self.encoder: nn.Module = resnet18_encoder(3, self.config.width, self.config.layer4_stride)
            channels = self.encoder.out_channels
        else:
            from vssl_core.models.oya import vgg_trunk

            self.encoder, channels = vgg_trunk(self.config.width, self.config.image_blocks)
        self.head = nn.Conv2d(channels, len(PRIOR_CLASSES), 1)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.config.normalization == "imagenet" else (CLIP_MEAN, CLIP_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        weights = torch.ones(len(PRIOR_CLASSES))
        weights[0] = self.config.background_weight
        self.register_buffer("class_weights", weights, persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        out = self.encoder(x)
        return out.features if hasattr(out, "features") else out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Weighted soft cross-entropy, mean over samples and cells (nats)."""
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
        w = self.class_weights.view(1, -1, 1, 1)
        return -(w * targets * F.log_softmax(logits, dim=1)).sum(1).mean()

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights (head dropped), for :func:`load_encoder_weights` or the VGG trunk."""
        return {k: v.detach().cpu().clone() for k, v in self.encoder.state_dict().items()}


def object_targets(objects, keys: list[tuple[str, float]], image_size: int, grid: int,
                   min_visible: float = 0.3, source: PathLike | None = None) -> np.ndarray:
    """Soft per-cell class targets of frames from the synthetic generator's object table.

    Each frame's boxes are painted on an ``image_size`` square from far to near (``depth``), so
    a nearer object covers a farther one; each cell's target is the fraction of its pixels
    under each class (background where no box).

    Parameters
    ----------
    objects : pandas.DataFrame
        ``annotations/objects.csv``: ``filename, time, label, x, y, w, h, visible_fraction,
        depth`` (boxes in 1280x720 units).
    keys : list of (clip, time)
        The frames, in order.
    image_size, grid : int
        Square side of the frames (pixels) and of the feature grid (cells).
    min_visible : float
        Objects less visible than this are background.

    Returns
    -------
    ndarray float32, shape (len(keys), len(PRIOR_CLASSES), grid, grid); sums to 1 over classes.
    """
    required = ("filename", "time", "label", "x", "y", "w", "h", "visible_fraction", "depth")
    missing = [c for c in required if c not in objects.columns]
    if missing:
        raise data_error(source, missing[0], "column missing from the objects table",
                         f"give annotations/objects.csv of the synthetic generator ({', '.join(required)})")
    if image_size % grid:
        raise ValueError(f"image_size {image_size} is not a multiple of the grid {grid}")
    label_id = {name: i for i, name in enumerate(PRIOR_CLASSES)}
    seen = objects[(objects["visible_fraction"] >= min_visible) & objects["label"].isin(PRIOR_CLASSES[1:])]
    groups = {(str(c), _ms(t)): g for (c, t), g in seen.groupby([seen["filename"], seen["time"]])}
    cell = image_size // grid
    eye = np.eye(len(PRIOR_CLASSES), dtype=np.float32)
    out = np.zeros((len(keys), len(PRIOR_CLASSES), grid, grid), np.float32)
    sx, sy = image_size / _FRAME[0], image_size / _FRAME[1]
    for n, (clip, t) in enumerate(keys):
        lab = np.zeros((image_size, image_size), np.int64)
        g = groups.get((str(clip), _ms(t)))
        if g is not None:
            for row in g.sort_values("depth", ascending=False).itertuples(index=False):
                x1, y1 = max(int(math.floor(row.x * sx)), 0), max(int(math.floor(row.y * sy)), 0)
                x2, y2 = int(math.ceil((row.x + row.w) * sx)), int(math.ceil((row.y + row.h) * sy))
                lab[y1:max(y2, y1), x1:max(x2, x1)] = label_id[row.label]
        onehot = eye[lab]  # (S, S, C)
        out[n] = onehot.reshape(grid, cell, grid, cell, -1).mean(axis=(1, 3)).transpose(2, 0, 1)
    return out


@dataclass(frozen=True)
class PriorArrays:
    """Frames and their per-cell targets: the object prior's training (or validation) data.

    Attributes
    ----------
    images : ndarray uint8, shape (N, S, S, 3)
    targets : ndarray float32, shape (N, C, g, g)
    """

    images: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def _ms(t: float) -> int:
    return int(round(float(t) * 1000))
