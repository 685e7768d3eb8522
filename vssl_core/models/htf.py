"""Hear The Flow: LVS whose image features are cross-attended by optical-flow features.

Facts implemented (Hear The Flow Sec. 3.3, 4.3, 4.6, App. B; docs/conventions.md, "LVS and Hear The Flow")
-------------------------------------------------------------------------
- Image encoder: ResNet-18, layer4 stride 2 (224 px -> 7x7x512), ImageNet-pretrained and
  frozen in the paper's model (Table 4.f). Here the prior comes from ``pretrained_vision`` (a
  local torchvision ImageNet file or the vehicle prior of :mod:`vssl_core.models.pretrain`).
  ``freeze_vision=True`` sets ``requires_grad=False`` on every image-encoder parameter AND keeps
  its BatchNorm layers in eval mode whatever ``model.train()`` says, so training changes no
  tensor of the image encoder (running statistics and ``num_batches_tracked`` included).
- Flow input: the 2-channel Farneback field ``(N, 2, H, W)`` = (dx, dy) in pixels per frame
  step (:mod:`vssl_core.data.flow`, channel-first), resized to the image size by
  :func:`prepare_flow_field`; Hear The Flow normalises it with mean 0 and std 1, i.e. leaves
  it unchanged. A horizontal flip must negate dx.
- Flow encoders (``HTFConfig.flow_encoder``):

  ``"resnet"``  a 2-channel ResNet-18 with the image encoder's width and layer4 stride, so its
                map lies on the image grid. With ``pretrained_vision`` and ``pretrained_flow``
                it starts from the same file, ``conv1`` = mean of the RGB kernels repeated over
                the two channels (:func:`~vssl_core.models.pretrain.adapt_in_channels`).
  ``"maxpool"`` the Table 5 ablation: adaptive max pooling of the flow field to the image
                feature grid ``(h, w)``; the key projection then reads these 2 channels. Max
                pooling of the *signed* field keeps, per cell, the largest rightward / downward
                displacement (leftward motion shows as a small value); ``maxpool_abs=True`` pools
                ``|dx|, |dy|`` instead, our option, not in the paper.
  ``"none"``    no flow and no attention: LVS on the 7x7 grid (Table 4.a-c).
- Cross-attention (:class:`FlowAttention`): ``Q = conv1x1(image) -> 64``,
  ``K = conv1x1(flow features) -> 64``, ``V = conv1x1(image) -> D`` (the image feature width),
  weights ``softmax_keys(Q K^T / sqrt(64))`` over the ``h*w`` flow positions for each of the
  ``h*w`` image positions, output ``weights @ V`` added to the image features, then
  L2-normalised per position. (The paper's text describes a per-position d x d attention; the
  spatial form here is the released code's, where V has the feature width.)
- Audio, localisation map and loss: as :mod:`vssl_core.models.lvs` (cosine map of the enhanced
  features with the pooled audio vector; LVS tri-map loss). 3 s of 22.05 kHz audio.

The released code's behaviour where it differs (``protocol="released"`` of
:mod:`vssl_core.studies.hear_the_flow`; each field is left out of :meth:`HTFConfig.to_dict` at
its default, so the companion's recipes do not change)
----------------------------------------------------------------------------------------------
- ``flow_input="jpeg"``: the released preprocessing writes dx and dy as two 8-bit JPEGs
  (``cv2.imwrite`` of a float image: rounded, clipped to 0..255) and reads them back / 255, so
  the network sees ``min(max(round(d), 0), 255) / 255`` (:func:`jpeg_flow_field`): leftward and
  upward motion are 0, values are whole pixels. The data carry that encoding
  (:class:`JpegFlowField`); the model reads ``|field|``, which undoes the training loop's
  ``dx -> -dx`` on a horizontal flip (the released flip mirrors the stored image and keeps its
  values). The JPEG compression itself is not simulated.
- ``frozen_batchnorm="train"``: a frozen image encoder only has ``requires_grad=False``; its
  BatchNorm layers follow ``model.train()`` (batch statistics in training, running statistics
  updated), as the released ``unfreeze_vision(False)``.
- ``flow_conv1="random"``: a pretrained ResNet flow encoder gets a freshly initialised 2-channel
  ``conv1`` (``nn.Conv2d``'s default initialisation), as the released code replaces it.
- ``attn_gate=True`` (beyond the paper and the released code): the attention output is scaled by
  a learnable scalar that starts at 0 before it is added to the image features. Without it, when
  every image position attends to the same moving regions, every position receives the same
  vector, about as large as the image features (companion quick profile: 0.7-1.5 times their
  norm), and the sound can only lift or lower the whole map.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl_core.models.checkpoints import LoadReport
from vssl_core.models.encoders import ResNetEncoder, resnet18_encoder
from vssl_core.models.lvs import LocalizerOutput, LVSConfig, LVSEncoding, cosine_maps, loss_params, trimap_loss
from vssl_core.models.pretrain import load_encoder_weights

__all__ = ["FLOW_ENCODERS", "FLOW_INPUTS", "HTFConfig", "FlowAttention", "MaxPoolFlow", "HTF", "build_htf",
           "prepare_flow_field", "jpeg_flow_field", "JpegFlowField"]


FLOW_ENCODERS = ("resnet", "maxpool", "none")
#: ``HTFConfig.flow_input``: the companion's signed float field, or the released JPEG encoding.
FLOW_INPUTS = ("signed", "jpeg")
#: Fields left out of ``to_dict`` at these (default) values, so that the recipes and keys of models
#: trained before they existed stay as they were: the released-code switches and ``attn_gate``.
_OMITTED_AT_DEFAULT = {"flow_input": "signed", "frozen_batchnorm": "eval", "flow_conv1": "rgb_mean", "attn_gate": False}


@dataclass(frozen=True)
class HTFConfig(LVSConfig):
    """Everything that defines a Hear The Flow model and its loss.

    Attributes
    ----------
    width, image_size, audio_sr, eps_p, eps_n, tau, temperature, negatives, easy_negatives, audio_pool
        As :class:`~vssl_core.models.lvs.LVSConfig` (all ResNet-18s share ``width``; flow fields
        have ``image_size`` too).
    pretrained_vision : str or None
        As LVS: local image-encoder weights (ImageNet torchvision ``resnet18`` needs width 1.0;
        an object-prior file any width), loaded by :func:`build_htf`.
    layer4_stride : {1, 2}
        Image and flow encoders; 2 (the default here) gives the paper's 7x7 grid at 224 px.
    audio_seconds : float
        Clip length used to build the data (3 s); not used by the network.
    flow_encoder : {"resnet", "maxpool", "none"}
        See the module docstring.
    freeze_vision : bool
        Freeze the image encoder (parameters and BatchNorm statistics).
    pretrained_flow : bool
        Also start the ResNet flow encoder from ``pretrained_vision`` (paper: ImageNet).
    attn_dim : int
        Query/key channels (64; the softmax scale is ``1 / sqrt(attn_dim)`` = 1/8).
    maxpool_abs : bool
        ``"maxpool"`` only: pool ``|dx|, |dy|`` instead of the signed field.
    flow_input : {"signed", "jpeg"}
        ``"signed"``: the float field (dx, dy) px per step. ``"jpeg"``: the field holds the
        released encoding (:func:`jpeg_flow_field`); the model reads its absolute value (see
        the module docstring).
    frozen_batchnorm : {"eval", "train"}
        With ``freeze_vision``: ``"eval"`` keeps the image encoder's BatchNorm statistics fixed;
        ``"train"`` lets them follow ``model.train()`` (the released code).
    flow_conv1 : {"rgb_mean", "random"}
        A pretrained ResNet flow encoder's ``conv1``: the mean of the RGB kernels, or freshly
        initialised (the released code).
    attn_gate : bool
        Beyond the paper: scale what the flow attention adds by a learnable scalar that starts
        at 0 (:class:`FlowAttention`), so the model starts as its no-flow row and lets the flow
        in as far as the loss gains from it. False: the paper's plain residual.
    """

    layer4_stride: int = 2
    audio_seconds: float = 3.0
    flow_encoder: str = "resnet"
    freeze_vision: bool = True
    pretrained_flow: bool = True
    attn_dim: int = 64
    maxpool_abs: bool = False
    flow_input: str = "signed"
    frozen_batchnorm: str = "eval"
    flow_conv1: str = "rgb_mean"
    attn_gate: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flow_encoder not in FLOW_ENCODERS:
            raise ValueError(f"HTFConfig.flow_encoder must be one of {FLOW_ENCODERS}, got {self.flow_encoder!r}")
        if self.attn_dim < 1:
            raise ValueError(f"HTFConfig.attn_dim must be >= 1, got {self.attn_dim}")
        for name, choices in (("flow_input", FLOW_INPUTS), ("frozen_batchnorm", ("eval", "train")),
                              ("flow_conv1", ("rgb_mean", "random"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"HTFConfig.{name} must be one of {choices}, got {getattr(self, name)!r}")

    @property
    def uses_flow(self) -> bool:
        return self.flow_encoder != "none"

    @property
    def freezes_batchnorm(self) -> bool:
        """True when a frozen image encoder also keeps its BatchNorm statistics."""
        return self.freeze_vision and self.frozen_batchnorm == "eval"

    def to_dict(self) -> dict[str, Any]:
        """Every field, except the released-code switches and ``attn_gate`` at their defaults (so
        that the recipes and keys of models without them stay as they were)."""
        return {k: v for k, v in asdict(self).items() if _OMITTED_AT_DEFAULT.get(k, object()) != v}


class FlowAttention(nn.Module):
    """Spatial cross-attention: image queries, flow keys, image values; residual output.

    Parameters
    ----------
    image_dim : int
        Channels ``D`` of the image features (also the value width).
    flow_dim : int
        Channels of the flow features (512 * width for the ResNet, 2 for max pooling).
    attn_dim : int
        Query/key channels.
    gate : bool
        Multiply the attention output by a learnable scalar ``gate`` initialised to 0 (as the
        self-attention of SAGAN, Zhang et al. 2019) before adding it: ``image + gate * (weights
        @ V)``. False (the paper): ``image + weights @ V``.
    """

    def __init__(self, image_dim: int, flow_dim: int, attn_dim: int = 64, gate: bool = False) -> None:
        super().__init__()
        self.query = nn.Conv2d(image_dim, attn_dim, kernel_size=1)
        self.key = nn.Conv2d(flow_dim, attn_dim, kernel_size=1)
        self.value = nn.Conv2d(image_dim, image_dim, kernel_size=1)
        self.scale = attn_dim ** -0.5
        self.gate = nn.Parameter(torch.zeros(1)) if gate else None

    def forward(self, image: torch.Tensor, flow: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from every image position to every flow position.

        Parameters
        ----------
        image : Tensor, shape (N, D, h, w)
        flow : Tensor, shape (N, Cf, h, w)
            On the same grid as ``image``.
        key_padding_mask : bool Tensor, shape (N, h*w) or (N, h, w), optional
            True marks flow positions that must get zero weight (e.g. padding or invalid flow).
            A query whose keys are all masked gets all-zero weights (its output is ``image``).

        Returns
        -------
        features : Tensor, shape (N, D, h, w)
            ``image + weights @ V``, or ``image + gate * (weights @ V)`` (not normalised).
        weights : Tensor, shape (N, h*w, h*w)
            Rows (image positions) sum to 1 (0 for fully masked rows); row-major positions.
        """
        n, d, h, w = image.shape
        if flow.shape[0] != n or flow.shape[-2:] != (h, w):
            raise ValueError(f"flow features {tuple(flow.shape)} are not on the image grid {(n, h, w)}")
        q = self.query(image).flatten(2).transpose(1, 2)  # (N, hw, a)
        k = self.key(flow).flatten(2)  # (N, a, hw)
        v = self.value(image).flatten(2).transpose(1, 2)  # (N, hw, D)
        scores = (q @ k) * self.scale  # (N, hw, hw)
        if key_padding_mask is not None:
            mask = key_padding_mask.to(torch.bool).reshape(n, 1, h * w)
            empty = mask.all(dim=2, keepdim=True)  # (N, 1, 1): every key masked
            scores = scores.masked_fill(mask, float("-inf")).masked_fill(empty, 0.0)
            weights = torch.softmax(scores, dim=-1).masked_fill(empty, 0.0)
        else:
            weights = torch.softmax(scores, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(n, d, h, w)
        if self.gate is not None:
            out = self.gate * out
        return image + out, weights


class MaxPoolFlow(nn.Module):
    """The "MaxPool" flow encoder: adaptive max pooling of the field to the feature grid."""

    def __init__(self, absolute: bool = False) -> None:
        super().__init__()
        self.absolute = absolute

    def forward(self, flow: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """flow (N, 2, H, W) -> (N, 2, *grid)."""
        return F.adaptive_max_pool2d(flow.abs() if self.absolute else flow, grid)


class HTF(LVSEncoding, nn.Module):
    """Hear The Flow model (random weights; :func:`build_htf` loads the vision prior).

    ``forward(images (N, 3, H, W) in [0, 1], spec (N, 1, F, T), flow (N, 2, H, W) or None,
    key_padding_mask=None) -> LocalizerOutput``; ``loss(out)`` = LVS tri-map loss.
    """

    def __init__(self, config: HTFConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config if config is not None else HTFConfig()
        self.image_encoder: ResNetEncoder = resnet18_encoder(3, cfg.width, cfg.layer4_stride)
        self.audio_encoder: ResNetEncoder = resnet18_encoder(1, cfg.width, layer4_stride=2)
        dim = self.image_encoder.out_channels
        self.flow_encoder: nn.Module | None
        if cfg.flow_encoder == "resnet":
            self.flow_encoder = resnet18_encoder(2, cfg.width, cfg.layer4_stride)
            self.attention = FlowAttention(dim, self.flow_encoder.out_channels, cfg.attn_dim, cfg.attn_gate)
        elif cfg.flow_encoder == "maxpool":
            self.flow_encoder = MaxPoolFlow(cfg.maxpool_abs)
            self.attention = FlowAttention(dim, 2, cfg.attn_dim, cfg.attn_gate)
        else:
            self.flow_encoder, self.attention = None, None
        if cfg.freeze_vision:
            self.image_encoder.requires_grad_(False)
            if cfg.freezes_batchnorm:
                self.image_encoder.eval()

    def train(self, mode: bool = True) -> HTF:
        """As ``nn.Module.train``, but a frozen image encoder stays in eval mode (unless
        ``frozen_batchnorm="train"``, the released behaviour)."""
        super().train(mode)
        if self.config.freezes_batchnorm:
            self.image_encoder.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters that require gradients (everything but a frozen image encoder)."""
        return (p for p in self.parameters() if p.requires_grad)


    def encode_flow(self, flow: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """flow (N, 2, H, W) px/frame -> flow features on ``grid``: (N, D, h, w) or (N, 2, h, w)."""
        if self.flow_encoder is None:
            raise TypeError("this HTF model has no flow encoder (flow_encoder='none')")
        if flow.ndim != 4 or flow.shape[1] != 2:
            raise ValueError(f"flow must be the (N, 2, H, W) field (dx, dy), got {tuple(flow.shape)}")
        if self.config.flow_input == "jpeg":
            flow = flow.abs()  # JPEG values are >= 0; a flipped training batch came with dx -> -dx
        if isinstance(self.flow_encoder, MaxPoolFlow):
            return self.flow_encoder(flow, grid)
        return self.flow_encoder(flow).features

    def attend(self, images: torch.Tensor, flow: torch.Tensor | None,
               key_padding_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The image features before and after the flow attention (both ``(N, D, h, w)``, not
        normalised; the same tensor without flow attention) and the attention weights (None
        without). Images ``(N, 3, H, W)`` in [0, 1], flow ``(N, 2, H, W)``."""
        feats = self.encode_image(images)
        if self.attention is None:
            return feats, feats, None
        if flow is None:
            raise ValueError(f"HTF with flow_encoder={self.config.flow_encoder!r} needs the flow field "
                             "(N, 2, H, W); got None")
        attended, weights = self.attention(feats, self.encode_flow(flow, tuple(feats.shape[-2:])), key_padding_mask)
        return feats, attended, weights

    def forward(self, images: torch.Tensor, spec: torch.Tensor, flow: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> LocalizerOutput:
        _, feats, weights = self.attend(images, flow, key_padding_mask)
        v = F.normalize(feats, dim=1)
        a = F.normalize(self.encode_audio(spec), dim=1)
        return LocalizerOutput(torch.einsum("ndhw,nd->nhw", v, a), v, a, weights)

    def loss(self, out: LocalizerOutput) -> torch.Tensor:
        """Tri-map loss of a forward pass (needs a batch of at least two pairs)."""
        if out.image_features.shape[0] < 2:
            raise ValueError("the tri-map loss needs at least 2 pairs per batch (in-batch easy negatives)")
        return trimap_loss(cosine_maps(out.image_features, out.audio_embedding), **loss_params(self.config))


def build_htf(config: HTFConfig, vision_state: Mapping[str, torch.Tensor] | None = None, *,
              image: bool = True) -> tuple[HTF, dict[str, LoadReport]]:
    """An HTF model with a vision prior loaded: ``vision_state`` (an image-encoder state, e.g. the
    object prior's) when given, else the file ``config.pretrained_vision`` when set.

    Parameters
    ----------
    config : HTFConfig
    vision_state : mapping, optional
    image : bool
        Load the prior into the image encoder (False: only into the flow encoder, when
        ``pretrained_flow``; the released code's separate ``pretrain_flow`` flag).

    Returns
    -------
    model : HTF
    reports : dict
        ``{"image_encoder": LoadReport}`` and, with a ResNet flow encoder and
        ``pretrained_flow``, ``"flow_encoder"``; empty without a file. With
        ``config.flow_conv1 == "random"`` the flow encoder's ``conv1`` is initialised afresh
        after loading.
    """
    model = HTF(config)
    reports: dict[str, LoadReport] = {}
    source = vision_state if vision_state is not None else (
        os.fspath(config.pretrained_vision) if config.pretrained_vision is not None else None)
    if source is not None:
        if image:
            reports["image_encoder"] = load_encoder_weights(model.image_encoder, source)
        if config.flow_encoder == "resnet" and config.pretrained_flow:
            reports["flow_encoder"] = load_encoder_weights(model.flow_encoder, source)
            if config.flow_conv1 == "random":
                model.flow_encoder.conv1.reset_parameters()
        model.train(model.training)  # keep a frozen encoder in eval mode
    return model, reports


def prepare_flow_field(flow: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Flow fields ``(N, H, W, 2)`` (dx, dy) px/frame -> ``(N, 2, size, size)`` (bilinear; values unchanged)."""
    x = torch.as_tensor(flow).float()
    if x.ndim != 4 or x.shape[-1] != 2:
        raise ValueError(f"flow must be (N, H, W, 2) fields (dx, dy), got shape {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous()


def jpeg_flow_field(field: np.ndarray) -> np.ndarray:
    """Flow fields ``(..., 2)`` (dx, dy px) as Hear The Flow's released code feeds them: each
    component written to an 8-bit JPEG (``cv2.imwrite`` rounds and clips a float image to
    0..255) and read back / 255, i.e. ``min(max(round(d), 0), 255) / 255`` as float32. Negative
    (leftward, upward) motion becomes 0. The JPEG compression itself is not simulated."""
    return (np.clip(np.rint(np.asarray(field, dtype=np.float32)), 0, 255) / np.float32(255)).astype(np.float32)


class JpegFlowField:
    """A read-only view of flow fields ``(N, S, S, 2)`` that returns :func:`jpeg_flow_field` of
    the rows it is indexed with: the released encoding without a second copy of the fields in
    memory (the source may be a memory-mapped cache column).

    Supports ``len``, ``shape``, ``dtype``, ``ndim``, indexing (``view[rows]`` returns a new
    float32 array) and ``np.asarray(view)`` (the whole encoded array).
    """

    def __init__(self, source: np.ndarray) -> None:
        if isinstance(source, JpegFlowField):
            source = source.source
        if source.ndim != 4 or source.shape[-1] != 2:
            raise ValueError(f"flow fields must be (N, H, W, 2), got shape {tuple(source.shape)}")
        self.source = source

    shape = property(lambda self: tuple(self.source.shape))
    ndim = property(lambda self: 4)
    dtype = property(lambda self: np.dtype(np.float32))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index) -> np.ndarray:
        return jpeg_flow_field(self.source[index])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = jpeg_flow_field(self.source)
        return out if dtype is None else out.astype(dtype)
