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

(b) A documented SUBSTITUTE for the object-centric prior: supervised classification of object
    crops cut from the synthetic street frames (:func:`vehicle_crops`), classes
    :data:`PRIOR_CLASSES` = car, bus, motorbike, truck, pedestrian, tree (the first four with
    the Urbansas class ids 0-3). :func:`pretrain_vehicle_classifier` trains the image encoder +
    a linear head on the pooled layer4 embedding with cross-entropy and returns the encoder's
    state dict (head dropped). The choice of *crops* (rather than whole frames with a
    multi-label target) makes the task a plain single-label classification of one object per
    example, which is what ImageNet pre-training is, and forces the encoder to respond to the
    object's appearance rather than to the scene layout. It is a weaker prior than ImageNet:
    few classes, synthetic textures, and it is trained on the same world as the test data.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vssl_core.repro.atomic import write_bytes
from vssl_core.models.checkpoints import LoadReport, load_checkpoint, load_imagenet_resnet18
from vssl_core.errors import data_error
from vssl_core.models.encoders import ResNetEncoder, resnet18_encoder

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PRIOR_CLASSES", "normalize_images", "images_to_tensor",
    "load_imagenet_weights", "load_encoder_weights", "adapt_in_channels", "save_encoder_state",
    "vehicle_crops", "VehiclePretrainConfig", "PretrainResult", "pretrain_vehicle_classifier",
]

PathLike = str | os.PathLike

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Classes of the substitute prior; index = label. car/bus/motorbike/truck = Urbansas ids 0-3.
PRIOR_CLASSES = ("car", "bus", "motorbike", "truck", "pedestrian", "tree")
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


def _read_encoder_state(source: PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(source, Mapping):
        state, name = dict(source), "<state dict>"
    else:
        state, name = load_checkpoint(source), str(source)
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = dict(state["state_dict"])
    return state, name


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
    state, name = _read_encoder_state(source)
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


# -- (b) the substitute prior: object crops of the synthetic frames ----------------------------------
def _ms(t: float) -> int:
    return int(round(float(t) * 1000))


def vehicle_crops(frames: Mapping[tuple[str, float], np.ndarray], objects, *, size: int = 64,
                  classes: tuple[str, ...] = PRIOR_CLASSES, min_visible: float = 0.5,
                  min_side_px: int = 6, context: float = 0.1,
                  source: PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labelled object crops from frames and the synthetic ``objects.csv`` table.

    Parameters
    ----------
    frames : mapping (clip name, time in s) -> uint8 RGB (H, W, 3)
        The decoded frames; the box scale is ``(W / 1280, H / 720)``. Table rows whose
        (filename, time) has no frame here are skipped (the table covers every clip and time;
        pass only the frames you decoded). Times match to the millisecond.
    objects : pandas.DataFrame
        Columns ``filename, time, label, x, y, w, h, visible_fraction`` (1280x720 units).
    size : int
        Side of the square output crops (pixels); crops are resized with ``cv2.INTER_AREA``
        without keeping the aspect ratio (the whole object stays in view; its shape is a cue).
    classes : tuple of str
        Labels kept; the label id is the position in this tuple.
    min_visible : float
        Keep objects with ``visible_fraction >= min_visible`` (offscreen rows have no box and
        are always dropped).
    min_side_px : int
        Drop crops whose clipped box is narrower or lower than this, in frame pixels.
    context : float
        Margin added on every side, as a fraction of the box size.
    source : path, optional
        Named in error messages (the objects file).

    Returns
    -------
    images : ndarray uint8, shape (K, size, size, 3)
    labels : ndarray int64, shape (K,)
        In table order.
    """
    required = ("filename", "time", "label", "x", "y", "w", "h", "visible_fraction")
    missing = [c for c in required if c not in objects.columns]
    if missing:
        raise data_error(source, missing[0], "column missing from the objects table",
                         f"give annotations/objects.csv of the synthetic generator ({', '.join(required)})")
    by_key = {(str(clip), _ms(t)): img for (clip, t), img in frames.items()}
    label_id = {name: i for i, name in enumerate(classes)}
    crops: list[np.ndarray] = []
    labels: list[int] = []
    for row in objects.itertuples(index=False):
        if row.label not in label_id or not row.visible_fraction >= min_visible:
            continue
        box = np.array([row.x, row.y, row.w, row.h], dtype=np.float64)
        if not np.all(np.isfinite(box)):
            continue
        img = by_key.get((str(row.filename), _ms(row.time)))
        if img is None:
            continue
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise data_error(None, f"frames[{row.filename!r}, {row.time}]",
                             f"is {img.dtype} {img.shape}, not uint8 (H, W, 3)", "pass decoded RGB frames")
        fh, fw = img.shape[:2]
        sx, sy = fw / _FRAME[0], fh / _FRAME[1]
        x, y, w, h = box
        x, y, w, h = x - context * w, y - context * h, w * (1 + 2 * context), h * (1 + 2 * context)
        x1, y1 = max(0, int(math.floor(x * sx))), max(0, int(math.floor(y * sy)))
        x2, y2 = min(fw, int(math.ceil((x + w) * sx))), min(fh, int(math.ceil((y + h) * sy)))
        if x2 - x1 < min_side_px or y2 - y1 < min_side_px:
            continue
        crops.append(cv2.resize(img[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA))
        labels.append(label_id[row.label])
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64)
    return np.stack(crops), np.asarray(labels, dtype=np.int64)


@dataclass(frozen=True)
class VehiclePretrainConfig:
    """Supervised pre-training of the image encoder on object crops.

    Attributes
    ----------
    width : float
        Channel multiplier of the ResNet-18 (must match the LVS/HTF model that will use it).
    layer4_stride : {1, 2}
        Does not change the weights; only the training resolution of layer4.
    image_size : int
        Crops are resized to this side (pixels).
    n_classes : int
        Output size of the linear head (labels must be in ``[0, n_classes)``).
    epochs, batch_size : int
    lr, weight_decay : float
        Adam parameters.
    hflip : bool
        Random horizontal flips (p = 0.5).
    seed : int
        Seeds the initialisation (``torch.manual_seed``) and, per epoch, the sample order and flips.
    """

    width: float = 1.0
    layer4_stride: int = 2
    image_size: int = 112
    n_classes: int = len(PRIOR_CLASSES)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hflip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.n_classes < 2 or self.image_size < 16:
            raise ValueError(f"invalid VehiclePretrainConfig {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PretrainResult(NamedTuple):
    """What :func:`pretrain_vehicle_classifier` returns.

    Attributes
    ----------
    encoder_state : dict
        ``ResNetEncoder`` state dict (CPU tensors, no head), loadable with
        :func:`load_encoder_weights` into an encoder of the same width.
    losses : ndarray float64, shape (epochs,)
        Mean training cross-entropy (nats) of each epoch.
    train_accuracy : float
        Accuracy on the training examples after the last epoch (eval mode, no flips).
    """

    encoder_state: dict[str, torch.Tensor]
    losses: np.ndarray
    train_accuracy: float


def pretrain_vehicle_classifier(images: np.ndarray, labels: np.ndarray,
                                config: VehiclePretrainConfig = VehiclePretrainConfig(), *,
                                progress: bool = True) -> PretrainResult:
    """Train a ResNet-18 image encoder + linear head to classify object crops.

    Parameters
    ----------
    images : ndarray uint8, shape (N, S, S, 3)
        RGB examples (e.g. from :func:`vehicle_crops`), resized to ``config.image_size``.
    labels : ndarray int, shape (N,)
        Class ids in ``[0, config.n_classes)``.
    config : VehiclePretrainConfig
    progress : bool
        Show a ``tqdm`` bar over epochs with the running loss.

    Returns
    -------
    PretrainResult
        Encoder state dict, per-epoch mean loss, final training accuracy. Same inputs and
        seed give the same weights (same machine / thread count / torch version).
    """
    labels_t = torch.as_tensor(np.asarray(labels)).long()
    if labels_t.ndim != 1 or len(labels_t) != len(images) or len(labels_t) == 0:
        raise ValueError(f"labels must be (N,) with N = len(images) > 0, got {tuple(labels_t.shape)} "
                         f"for {len(images)} images")
    if labels_t.min() < 0 or labels_t.max() >= config.n_classes:
        raise ValueError(f"labels must lie in [0, {config.n_classes}), got [{int(labels_t.min())}, "
                         f"{int(labels_t.max())}]")
    x_all = images_to_tensor(images, config.image_size)  # (N, 3, S, S) in [0, 1]
    torch.manual_seed(config.seed)
    encoder = resnet18_encoder(3, config.width, config.layer4_stride)
    head = nn.Linear(encoder.out_channels, config.n_classes)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    n = len(labels_t)
    losses = []
    bar = tqdm(range(config.epochs), desc="vehicle prior", disable=not progress)
    for epoch in bar:
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        encoder.train()
        head.train()
        total, count = 0.0, 0
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            if len(idx) < 2 and n >= 2:  # BatchNorm needs two samples in training mode
                continue
            x = x_all[idx]
            if config.hflip:
                x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
            logits = head(encoder(normalize_images(x)).embedding)
            loss = F.cross_entropy(logits, labels_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        losses.append(total / max(count, 1))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    encoder.eval()
    head.eval()
    with torch.no_grad():
        correct = 0
        for start in range(0, n, config.batch_size):
            logits = head(encoder(normalize_images(x_all[start:start + config.batch_size])).embedding)
            correct += int((logits.argmax(1) == labels_t[start:start + config.batch_size]).sum())
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    return PretrainResult(state, np.asarray(losses, dtype=np.float64), correct / n)
