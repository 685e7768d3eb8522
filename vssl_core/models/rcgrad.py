"""RCGrad and the FlowGrad models (FlowGrad-IC, FlowGrad-EN): contrastive audio-visual encoders.

Facts implemented (docs/conventions.md, "RCGrad" and "FlowGrad models")
-------------------------------------
- RCGrad: ResNet-18 image encoder with layer4 stride 1 (224 px -> 14x14x512) and a ResNet-18
  audio encoder with a 1-channel first conv on the standardised log power spectrogram
  (:mod:`vssl_core.models.audio`); global average pooling, no projection heads. Loss: CLIP-style
  symmetric InfoNCE on L2-normalised embeddings with a learnable logit scale initialised to
  ``log(1 / 0.07)`` (the scale ``exp(logit_scale)`` is clamped at 100, as in CLIP).
- Images enter the model as floats in [0, 1], shape ``(N, 3, H, W)``; the model applies the CLIP
  mean/std itself, so callers never normalise twice.
- FlowGrad-IC: a 4-channel image encoder (CLIP-normalised RGB + the flow channel
  ``(magnitude + 5) / 200``); the flow kernels of ``conv1`` start as the mean of the RGB
  kernels (:func:`expand_to_flow_channel`).
- FlowGrad-EN: a third ResNet-18 on the 1-channel flow ``(magnitude + 5) / 200`` (the same
  scaling as IC; the paper does not state one for EN), initialised from an image encoder with
  ``conv1`` = the mean of its RGB kernels (:func:`flow_encoder_state`). Loss = the sum of the
  audio-image, image-flow and audio-flow losses, which share ONE logit scale (the papers do not
  say whether there is one scale per pair).
- Flow magnitude is in pixels per frame (8-fps Farneback), shape ``(N, 1, H, W)`` at the image
  size; :func:`prepare_flow` resizes a ``(N, S, S)`` array.
- ``faithful_audio_bn``: the official inference never puts the audio encoder in eval mode, so its
  BatchNorm layers use the statistics of the single clip. :meth:`RCGrad.encode_audio` with
  ``batch_stat_bn=True`` reproduces this per clip without touching the running statistics;
  :mod:`vssl_core.models.rcgrad_maps` turns it on from the config.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl_core.models.audio import LogSpectrogram
from vssl_core.models.encoders import EncoderOutput, resnet18_encoder
from vssl_core.repro.config import PlainConfig

__all__ = [
    "KINDS", "CLIP_MEAN", "CLIP_STD", "FLOW_OFFSET", "FLOW_SCALE", "FLOW_UNIT", "FLOW_INPUTS", "ModelConfig", "ModelOutput",
    "AudioEncoder", "RCGrad", "FlowGradIC", "FlowGradEN", "build_model", "clip_loss",
    "EN_LOSSES", "expand_to_flow_channel", "flow_encoder_state", "prepare_images", "prepare_flow",
    "prepare_audio",
]

KINDS = ("rcgrad", "flowgrad_ic", "flowgrad_en")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FLOW_OFFSET = 5.0
FLOW_SCALE = 200.0
#: flow_input="unit": |v| / FLOW_UNIT (px per step).
FLOW_UNIT = 2.0
FLOW_INPUTS = ("paper", "unit")
#: FlowGrad-EN's pairwise contrastive losses; the paper sums all three.
EN_LOSSES = ("audio-image", "image-flow", "audio-flow")
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = 100.0


@dataclass(frozen=True)
class ModelConfig(PlainConfig):
    """Everything that defines a model's architecture and its inference behaviour.

    Attributes
    ----------
    kind : {"rcgrad", "flowgrad_ic", "flowgrad_en"}
    width : float
        Channel multiplier of every ResNet-18 (1.0 = the papers; 0.5 = quick CPU profile).
    layer4_stride : {1, 2}
        1 for RCGrad (14x14 maps at 224 px, 8x8 at 128 px).
    image_size : int
        Square side in pixels the images (and flow) are resized to.
    audio_sr : int
        Sample rate in Hz of the waveforms the model is fed (the spectrogram frames are in
        samples, so a model is tied to one rate).
    faithful_audio_bn : bool
        Reproduce the official inference quirk (audio BatchNorm on the clip's own statistics).
    flow_input : {"paper", "unit"}
        How FlowGrad-IC / -EN feed the flow magnitude ``|v|`` (px per 8-fps step): the paper's
        ``(|v| + 5) / 200`` (about 0.025-0.05 for typical street motion: nearly a constant
        next to the normalised RGB channels) or ``|v| / 2`` (about unit scale).
    en_losses : tuple of str
        FlowGrad-EN only: which of its pairwise losses (:data:`EN_LOSSES`) are summed. The
        default, all three, is the paper's; a subset is beyond the paper, e.g.
        ``("audio-image", "audio-flow")`` leaves out the image-flow term. Kept in the canonical
        order, and left out of :meth:`to_dict` at the default, so the paper's checkpoints and
        cache keys do not change.
    """

    kind: str = "rcgrad"
    width: float = 1.0
    layer4_stride: int = 1
    image_size: int = 224
    audio_sr: int = 16000
    faithful_audio_bn: bool = False
    flow_input: str = "paper"
    en_losses: tuple[str, ...] = EN_LOSSES

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ModelConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.layer4_stride not in (1, 2):
            raise ValueError(f"ModelConfig.layer4_stride must be 1 or 2, got {self.layer4_stride}")
        if self.image_size < 32 or self.width <= 0 or self.audio_sr <= 0:
            raise ValueError(f"invalid ModelConfig {self}")
        if self.flow_input not in FLOW_INPUTS:
            raise ValueError(f"ModelConfig.flow_input must be one of {FLOW_INPUTS}, got {self.flow_input!r}")
        losses = (self.en_losses,) if isinstance(self.en_losses, str) else tuple(self.en_losses)
        unknown = [name for name in losses if name not in EN_LOSSES]
        if unknown or not losses:
            raise ValueError(f"ModelConfig.en_losses must be a non-empty subset of {EN_LOSSES}, got {self.en_losses!r}")
        object.__setattr__(self, "en_losses", tuple(name for name in EN_LOSSES if name in losses))
        if self.en_losses != EN_LOSSES and self.kind != "flowgrad_en":
            raise ValueError(f"ModelConfig.en_losses applies to FlowGrad-EN only; kind is {self.kind!r}")

    def to_dict(self) -> dict:
        """Plain-type dict of the fields; ``en_losses`` only when it is not the paper's three."""
        d = super().to_dict()
        if d["en_losses"] == EN_LOSSES:
            del d["en_losses"]
        else:
            d["en_losses"] = list(d["en_losses"])
        return d

    @property
    def uses_flow(self) -> bool:
        """True for the FlowGrad models, which need a flow magnitude per sample."""
        return self.kind != "rcgrad"


class ModelOutput(NamedTuple):
    """Encoder outputs of one forward pass (``flow`` is None except for FlowGrad-EN)."""

    image: EncoderOutput
    audio: EncoderOutput
    flow: EncoderOutput | None = None


def clip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) between two embedding batches; positives on the diagonal.

    Parameters
    ----------
    a, b : Tensor, shape (N, D)
        Raw embeddings (L2-normalised here).
    logit_scale : Tensor, scalar
        Log of the inverse temperature; the scale ``exp(logit_scale)`` is clamped at 100.

    Returns
    -------
    Tensor, scalar
        ``(CE(logits, diag) + CE(logits.T, diag)) / 2`` with
        ``logits = exp(logit_scale) * a_hat @ b_hat.T`` (natural log units).
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = logit_scale.exp().clamp(max=LOGIT_SCALE_MAX) * a @ b.t()  # (N, N)
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@contextlib.contextmanager
def _batch_stat_bn(module: nn.Module) -> Iterator[None]:
    """Make every BatchNorm of ``module`` normalise with batch statistics, without updating
    its running statistics; restores the previous state on exit."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.training, m.track_running_stats))
            m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, training, track in saved:
            m.training, m.track_running_stats = training, track


class AudioEncoder(nn.Module):
    """Log power spectrogram front end + 1-channel ResNet-18 trunk.

    ``forward(wave (N, C, T) or (N, T)) -> EncoderOutput`` with features ``(N, D, 257/32, T/353/32)``.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.spectrogram = LogSpectrogram()
        self.backbone = resnet18_encoder(1, width=width, layer4_stride=2)

    def forward(self, wave: torch.Tensor, per_sample_norm: bool = False) -> EncoderOutput:
        spec = self.spectrogram(wave, per_sample=per_sample_norm)  # (N, 1, 257, frames)
        return self.backbone(spec)


class RCGrad(nn.Module):
    """RCGrad: image and audio ResNet-18 encoders trained with a symmetric contrastive loss.

    Parameters
    ----------
    config : ModelConfig
        ``config.kind`` must match the class (``"rcgrad"`` here).
    """

    kind = "rcgrad"
    image_in_channels = 3

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        config = config if config is not None else ModelConfig(kind=self.kind)
        if config.kind != self.kind:
            raise ValueError(f"{type(self).__name__} needs ModelConfig(kind={self.kind!r}), got {config.kind!r}")
        self.config = config
        self.image_encoder = resnet18_encoder(self.image_in_channels, config.width, config.layer4_stride)
        self.audio_encoder = AudioEncoder(config.width)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        self.register_buffer("image_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    # -- inputs -----------------------------------------------------------------------------
    def image_input(self, images: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
        """The image encoder's input: CLIP-normalised RGB ``(N, 3, H, W)`` from [0, 1] floats."""
        return (images - self.image_mean) / self.image_std

    # -- encoders ---------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, flow: torch.Tensor | None = None) -> EncoderOutput:
        """images (N, 3, H, W) in [0, 1] (+ flow (N, 1, H, W) px/frame for IC) -> EncoderOutput."""
        return self.image_encoder(self.image_input(images, flow))

    def encode_audio(self, audio: torch.Tensor, *, per_sample_norm: bool = False,
                     batch_stat_bn: bool = False) -> EncoderOutput:
        """audio (N, C, T) waveforms -> EncoderOutput.

        ``per_sample_norm`` standardises each spectrogram on its own; ``batch_stat_bn`` runs the
        audio BatchNorms on batch statistics (pass one clip per call for the official quirk).
        """
        if batch_stat_bn:
            with _batch_stat_bn(self.audio_encoder):
                return self.audio_encoder(audio, per_sample_norm)
        return self.audio_encoder(audio, per_sample_norm)

    def encode_flow(self, flow: torch.Tensor) -> EncoderOutput:
        raise TypeError(f"{type(self).__name__} has no flow encoder")

    def forward(self, images: torch.Tensor, audio: torch.Tensor,
                flow: torch.Tensor | None = None) -> ModelOutput:
        """images (N, 3, H, W) in [0, 1], audio (N, C, T), flow (N, 1, H, W) or None."""
        return ModelOutput(self.encode_image(images, flow), self.encode_audio(audio))

    def loss(self, out: ModelOutput) -> torch.Tensor:
        """Audio-image symmetric InfoNCE of a forward pass."""
        return clip_loss(out.image.embedding, out.audio.embedding, self.logit_scale)


def _check_flow(flow: torch.Tensor | None, kind: str, flow_input: str = "paper") -> torch.Tensor:
    if flow is None:
        raise ValueError(f"{kind} needs the flow magnitude (N, 1, H, W) in px/frame; got None")
    if flow.ndim != 4 or flow.shape[1] != 1:
        raise ValueError(f"{kind}: flow must have shape (N, 1, H, W), got {tuple(flow.shape)}")
    if flow_input == "unit":
        return flow / FLOW_UNIT
    return (flow + FLOW_OFFSET) / FLOW_SCALE


class FlowGradIC(RCGrad):
    """FlowGrad-IC: RCGrad whose image encoder also reads the flow as a 4th input channel."""

    kind = "flowgrad_ic"
    image_in_channels = 4

    def image_input(self, images: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 4, H, W): CLIP-normalised RGB and ``(flow + 5) / 200``."""
        rgb = (images - self.image_mean) / self.image_std
        return torch.cat([rgb, _check_flow(flow, self.kind, self.config.flow_input)], dim=1)

    @classmethod
    def from_rcgrad(cls, rcgrad: RCGrad) -> FlowGradIC:
        """Initialise from a (trained) RCGrad: same weights, flow kernels = mean of RGB kernels."""
        model = cls(ModelConfig(**{**rcgrad.config.to_dict(), "kind": cls.kind}))
        model.image_encoder.load_state_dict(expand_to_flow_channel(rcgrad))
        model.audio_encoder.load_state_dict(rcgrad.audio_encoder.state_dict())
        with torch.no_grad():
            model.logit_scale.copy_(rcgrad.logit_scale)
        return model


class FlowGradEN(RCGrad):
    """FlowGrad-EN: RCGrad plus a third ResNet-18 on the 1-channel flow magnitude."""

    kind = "flowgrad_en"

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        self.flow_encoder = resnet18_encoder(1, self.config.width, self.config.layer4_stride)

    def encode_flow(self, flow: torch.Tensor) -> EncoderOutput:
        """flow (N, 1, H, W) px/frame -> EncoderOutput of the flow encoder."""
        return self.flow_encoder(_check_flow(flow, self.kind, self.config.flow_input))

    def forward(self, images: torch.Tensor, audio: torch.Tensor,
                flow: torch.Tensor | None = None) -> ModelOutput:
        return ModelOutput(self.encode_image(images), self.encode_audio(audio), self.encode_flow(flow))

    def loss(self, out: ModelOutput) -> torch.Tensor:
        """Sum of the symmetric InfoNCE losses of ``config.en_losses`` (the paper: audio-image,
        image-flow and audio-flow)."""
        img, aud, flo = out.image.embedding, out.audio.embedding, out.flow.embedding
        pairs = {"audio-image": (img, aud), "image-flow": (img, flo), "audio-flow": (aud, flo)}
        losses = [clip_loss(*pairs[name], self.logit_scale) for name in self.config.en_losses]
        return sum(losses[1:], losses[0])

    @classmethod
    def from_rcgrad(cls, rcgrad: RCGrad) -> FlowGradEN:
        """Initialise from a (trained) RCGrad; the flow encoder copies the image encoder with
        ``conv1`` = the mean of its RGB kernels."""
        model = cls(ModelConfig(**{**rcgrad.config.to_dict(), "kind": cls.kind}))
        model.image_encoder.load_state_dict(rcgrad.image_encoder.state_dict())
        model.audio_encoder.load_state_dict(rcgrad.audio_encoder.state_dict())
        model.flow_encoder.load_state_dict(flow_encoder_state(rcgrad))
        with torch.no_grad():
            model.logit_scale.copy_(rcgrad.logit_scale)
        return model


_CLASSES = {"rcgrad": RCGrad, "flowgrad_ic": FlowGradIC, "flowgrad_en": FlowGradEN}


def build_model(config: ModelConfig) -> RCGrad:
    """A randomly initialised model of ``config.kind``."""
    return _CLASSES[config.kind](config)


def _rgb_encoder_state(src: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(src, RCGrad):
        src = src.image_encoder
    state = dict(src.state_dict()) if isinstance(src, nn.Module) else dict(src)
    if "conv1.weight" not in state:
        raise KeyError("expected an image encoder state dict with key 'conv1.weight' "
                       "(pass RCGrad, its image_encoder, or image_encoder.state_dict())")
    w = state["conv1.weight"]
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"conv1.weight must have 3 (RGB) input channels, got shape {tuple(w.shape)}")
    return {k: v.detach().clone() for k, v in state.items()}


def expand_to_flow_channel(src: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Image encoder state with a 4th (flow) input channel whose kernels are the RGB mean.

    Parameters
    ----------
    src : RCGrad, ResNetEncoder or state dict
        The RGB image encoder (an RCGrad model's ``image_encoder`` is used).

    Returns
    -------
    dict
        A copy of the encoder state with ``conv1.weight`` of shape (C, 4, k, k):
        ``[..., :3] = RGB``, ``[:, 3] = RGB.mean(dim=1)``.
    """
    state = _rgb_encoder_state(src)
    w = state["conv1.weight"]  # (C, 3, k, k)
    state["conv1.weight"] = torch.cat([w, w.mean(dim=1, keepdim=True)], dim=1)  # (C, 4, k, k)
    return state


def flow_encoder_state(src: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A 1-channel encoder state copied from an RGB image encoder, ``conv1`` = RGB mean (C, 1, k, k)."""
    state = _rgb_encoder_state(src)
    state["conv1.weight"] = state["conv1.weight"].mean(dim=1, keepdim=True)
    return state


# -- numpy arrays -> model tensors -------------------------------------------------------------
def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def prepare_images(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 RGB ``(N, H, W, 3)`` -> float ``(N, 3, size, size)`` in [0, 1] (bilinear, antialiased)."""
    x = _tensor(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8 RGB, got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 255.0
    return _resize(x, size).clamp(0.0, 1.0)


def _tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor view of ``x``; read-only arrays (memory-mapped caches) are copied first."""
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        x = np.array(x)
    return torch.as_tensor(x)


def prepare_flow(flow: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Flow magnitude ``(N, H, W)`` px/frame -> ``(N, 1, size, size)`` (values not rescaled)."""
    x = _tensor(flow).float()
    if x.ndim != 3:
        raise ValueError(f"flow must be a magnitude map (N, H, W), got shape {tuple(x.shape)}")
    return _resize(x.unsqueeze(1), size)


def prepare_audio(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Waveforms ``(N, C, T)`` or ``(N, T)`` -> float tensor ``(N, C, T)``."""
    x = _tensor(audio).float()
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"audio must be (N, C, T) waveforms, got shape {tuple(x.shape)}")
    return x
