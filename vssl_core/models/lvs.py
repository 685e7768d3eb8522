"""LVS ("Localizing Visual Sounds the Hard Way"): cosine maps and the tri-map contrastive loss.

Facts implemented (Hear The Flow Sec. 3.1-3.2; docs/conventions.md, "LVS and Hear The Flow")
-----------------------------------------------------------
- Image encoder: ResNet-18 with layer4 stride 1 (:func:`~vssl_core.models.encoders.resnet18_encoder`),
  224 px -> 14x14 map (a 64 px quick-profile image -> 4x4). Images enter as floats in [0, 1],
  ``(N, 3, H, W)``; the model applies the ImageNet mean/std itself.
- Audio encoder: a 1-channel ResNet-18 (layer4 stride 2) on the LVS spectrogram
  (:func:`vssl_core.models.audio.lvs_spectrogram`: scipy, nperseg 512, noverlap 274,
  ``log(x + 1e-7) / 12``), input ``(N, 1, 257, frames)`` built by :func:`prepare_lvs_audio`;
  its map is pooled to one vector by global max pooling, as the released LVS and Hear The Flow
  code does (``audio_pool="avg"``: global average, Hear The Flow Eq. 2).
- Image features (per position) and the audio vector are L2-normalised; the localisation map
  ``S_ii`` is their cosine similarity at every position, values in [-1, 1], shape ``(N, h, w)``.
  Evaluation: resize to 224, then the ``"median"`` post-processing of :mod:`vssl_core.eval.metrics`.

The tri-map loss (what exactly is implemented)
----------------------------------------------
``S_ij`` = cosine map between image ``i`` (every position) and audio ``j``, shape
``(N, N, h, w)``. From the matching map ``S_ii`` two soft masks (not detached; gradients flow
through them as through any other term)::

    m_p = sigmoid((S_ii - eps_p) / tau)          # confident positive region
    n_i = sigmoid((eps_n - S_ii) / tau)          # = 1 - sigmoid((S_ii - eps_n) / tau), confident negative region
    P_i = sum(m_p * S_ii) / sum(m_p)             # positive response
    H_i = sum(n_i * S_ii) / sum(n_i)             # hard negative: background of the same image
    m_ij = sigmoid((S_ij - eps_p) / tau)         # the same confident-region mask, on the cross map
    E_ij = sum(m_ij * S_ij) / sum(m_ij), j != i  # easy negatives: the other clips' audio

(``1 - m_n`` is computed as ``sigmoid((eps_n - S)/tau)``, which is the same number but does not
round to exactly 0 in float32 when ``S`` is close to 1.) Positions with ``eps_n < S < eps_p``
belong to neither region: they are the "ignored" uncertain zone of the tri-map.

Easy negatives (``easy_negatives``): ``"confident"`` (default) averages each cross-pair map over
its own confident region, as the released LVS and Hear The Flow code does; then a map that ignores
the audio (``S_ij = S_ii`` for every ``j``) gives ``E_ij = P_i`` and sits at the chance loss
``log N`` (or above), so the loss can only fall by making the map depend on the sound. ``"mean"`` is
Hear The Flow Eq. 6 read literally (the plain spatial mean of ``S_ij``): a map that ignores the
audio but is confident on a small region scores ``P_i`` far above every ``E_ij`` and reaches a
loss near 0 without listening (docs/conventions.md, "LVS and Hear The Flow").

``negatives="separate"`` (default; the multi-logit form of the released LVS code, as
specified for this project): ``logits_i = [P_i, H_i, E_ij for j != i] / temperature`` and the
loss is the mean over ``i`` of the cross-entropy with target 0 (the positive).

``negatives="summed"``: Hear The Flow Eq. 4 and 6 read literally: one negative response
``Neg_i = H_i + sum_{j != i} E_ij`` and a two-way softmax ``-log(exp(P_i) / (exp(P_i) +
exp(Neg_i)))``, with the same division by ``temperature`` (the released code: logits / 0.07).

Defaults eps_p = 0.65, eps_n = 0.4, tau = 0.03, temperature = 0.07 (the released code; Hear The Flow
Sec. 4.3). Note Eq. 5 of Hear The Flow prints ``sigma(S - eps)/tau``; the sigmoid of the scaled
difference is meant (tau "controls the sharpness").
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl_core.models.audio import lvs_spectrogram
from vssl_core.models.checkpoints import LoadReport
from vssl_core.models.encoders import ResNetEncoder, resnet18_encoder
from vssl_core.models.pretrain import load_encoder_weights, normalize_images
from vssl_core.repro.config import PlainConfig

__all__ = [
    "NEGATIVES", "EASY_NEGATIVES", "LVSConfig", "LocalizerOutput", "LVS", "build_lvs", "cosine_maps", "trimap_logits",
    "trimap_loss", "loss_params", "pool_audio", "prepare_lvs_audio",
]

NEGATIVES = ("separate", "summed")
EASY_NEGATIVES = ("confident", "mean")
_POOLS = ("avg", "max")


@dataclass(frozen=True)
class LVSConfig(PlainConfig):
    """Everything that defines an LVS model and its loss.

    Attributes
    ----------
    width : float
        Channel multiplier of both ResNet-18s (1.0 = the paper; 0.25-0.5 for CPU profiles).
    layer4_stride : {1, 2}
        Image encoder; 1 gives the 14x14 map at 224 px (as the released LVS).
    image_size : int
        Square side in pixels the images are resized to.
    audio_sr : int
        Sample rate (Hz) of the waveforms given to :func:`prepare_lvs_audio`.
    audio_seconds : float
        Clip length used when building the data (LVS: up to 10 s); not used by the network.
    eps_p, eps_n, tau, temperature : float
        Tri-map thresholds, sigmoid temperature and logit temperature.
    negatives : {"separate", "summed"}
        Form of the negatives in the loss (see the module docstring).
    easy_negatives : {"confident", "mean"}
        How a cross-pair map becomes an easy negative (see the module docstring).
    audio_pool : {"max", "avg"}
        Pooling of the audio map to one vector ("max": the released code).
    pretrained_vision : str or None
        Local file with an image-encoder state (torchvision ImageNet ``resnet18`` at width 1.0,
        or a :func:`~vssl_core.models.pretrain.save_encoder_state` file); loaded by
        :func:`build_lvs`. None: random initialisation.
    """

    width: float = 1.0
    layer4_stride: int = 1
    image_size: int = 224
    audio_sr: int = 22050
    audio_seconds: float = 10.0
    eps_p: float = 0.65
    eps_n: float = 0.4
    tau: float = 0.03
    temperature: float = 0.07
    negatives: str = "separate"
    easy_negatives: str = "confident"
    audio_pool: str = "max"
    pretrained_vision: str | None = None

    def __post_init__(self) -> None:
        _check_common(self)


def _check_common(cfg: Any) -> None:
    name = type(cfg).__name__
    if cfg.layer4_stride not in (1, 2):
        raise ValueError(f"{name}.layer4_stride must be 1 or 2, got {cfg.layer4_stride}")
    if cfg.width <= 0 or cfg.image_size < 32 or cfg.audio_sr <= 0:
        raise ValueError(f"invalid {name}: width {cfg.width}, image_size {cfg.image_size}, audio_sr {cfg.audio_sr}")
    if not (-1.0 <= cfg.eps_n <= cfg.eps_p <= 1.0) or cfg.tau <= 0 or cfg.temperature <= 0:
        raise ValueError(f"{name}: need -1 <= eps_n <= eps_p <= 1, tau > 0, temperature > 0; got "
                         f"eps_n {cfg.eps_n}, eps_p {cfg.eps_p}, tau {cfg.tau}, temperature {cfg.temperature}")
    if cfg.negatives not in NEGATIVES:
        raise ValueError(f"{name}.negatives must be one of {NEGATIVES}, got {cfg.negatives!r}")
    if cfg.easy_negatives not in EASY_NEGATIVES:
        raise ValueError(f"{name}.easy_negatives must be one of {EASY_NEGATIVES}, got {cfg.easy_negatives!r}")
    if cfg.audio_pool not in _POOLS:
        raise ValueError(f"{name}.audio_pool must be one of {_POOLS}, got {cfg.audio_pool!r}")


class LocalizerOutput(NamedTuple):
    """One forward pass of LVS or Hear The Flow.

    Attributes
    ----------
    heatmap : Tensor, shape (N, h, w)
        Cosine similarity ``S_ii`` of each image position with its own audio, in [-1, 1].
    image_features : Tensor, shape (N, D, h, w)
        L2-normalised (over D) image features (HTF: after the flow attention).
    audio_embedding : Tensor, shape (N, D)
        L2-normalised audio vectors.
    attention : Tensor, shape (N, h*w, h*w), or None
        HTF flow attention weights (rows = image queries, columns = flow keys); None for LVS
        and for HTF without flow.
    """

    heatmap: torch.Tensor
    image_features: torch.Tensor
    audio_embedding: torch.Tensor
    attention: torch.Tensor | None = None


# -- loss -----------------------------------------------------------------------------------------
def cosine_maps(image_features: torch.Tensor, audio_embedding: torch.Tensor) -> torch.Tensor:
    """All-pairs cosine maps ``S[i, j] = <f_v^i(position), f_a^j>``.

    Parameters
    ----------
    image_features : Tensor, shape (N, D, h, w)
    audio_embedding : Tensor, shape (M, D)
        Both are L2-normalised here (a no-op when they already are).

    Returns
    -------
    Tensor, shape (N, M, h, w), values in [-1, 1]
    """
    v = F.normalize(image_features, dim=1)
    a = F.normalize(audio_embedding, dim=1)
    return torch.einsum("ndhw,md->nmhw", v, a)


def trimap_logits(sim: torch.Tensor, *, eps_p: float = 0.65, eps_n: float = 0.4, tau: float = 0.03,
                  temperature: float = 0.07, negatives: str = "separate",
                  easy_negatives: str = "confident") -> torch.Tensor:
    """Logits of the tri-map loss; the positive is column 0.

    Parameters
    ----------
    sim : Tensor, shape (N, N, h, w)
        ``sim[i, j]`` = cosine map of image ``i`` with audio ``j`` (:func:`cosine_maps`).
    eps_p, eps_n, tau, temperature, negatives, easy_negatives
        See the module docstring.

    Returns
    -------
    Tensor
        ``negatives="separate"``: shape (N, N + 1) = ``[P_i, H_i, E_ij (j != i, ascending j)] /
        temperature``. ``"summed"``: shape (N, 2) = ``[P_i, H_i + sum_j E_ij] / temperature``.
    """
    if sim.ndim != 4 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be (N, N, h, w), got {tuple(sim.shape)}")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if easy_negatives not in EASY_NEGATIVES:
        raise ValueError(f"easy_negatives must be one of {EASY_NEGATIVES}, got {easy_negatives!r}")
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    s_ii = sim[eye].flatten(1)  # (N, h*w)
    tiny = torch.finfo(sim.dtype).tiny
    m_pos = torch.sigmoid((s_ii - eps_p) / tau)
    m_neg = torch.sigmoid((eps_n - s_ii) / tau)
    pos = (m_pos * s_ii).sum(1) / m_pos.sum(1).clamp_min(tiny)  # (N,)
    hard = (m_neg * s_ii).sum(1) / m_neg.sum(1).clamp_min(tiny)  # (N,)
    cross = sim[~eye].view(n, n - 1, -1)  # (N, N-1, h*w), row i: j != i ascending
    if easy_negatives == "confident":
        m_cross = torch.sigmoid((cross - eps_p) / tau)
        easy = (m_cross * cross).sum(2) / m_cross.sum(2).clamp_min(tiny)  # (N, N-1)
    else:
        easy = cross.mean(2)
    if negatives == "separate":
        logits = torch.cat([pos[:, None], hard[:, None], easy], dim=1)
    else:
        logits = torch.stack([pos, hard + easy.sum(1)], dim=1)
    return logits / temperature


def trimap_loss(sim: torch.Tensor, **params: Any) -> torch.Tensor:
    """Mean cross-entropy (nats) of :func:`trimap_logits` with target 0 (the positive)."""
    logits = trimap_logits(sim, **params)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def loss_params(config: Any) -> dict[str, Any]:
    """The tri-map keyword arguments of an :class:`LVSConfig` or ``HTFConfig``."""
    return {"eps_p": config.eps_p, "eps_n": config.eps_n, "tau": config.tau,
            "temperature": config.temperature, "negatives": config.negatives,
            "easy_negatives": config.easy_negatives}


def pool_audio(features: torch.Tensor, how: str = "max") -> torch.Tensor:
    """(N, D, f, t) audio map -> (N, D) by global average (``"avg"``) or max (``"max"``) pooling."""
    return features.amax(dim=(2, 3)) if how == "max" else features.mean(dim=(2, 3))


# -- model ----------------------------------------------------------------------------------------
class LVSEncoding:
    """``encode_image`` / ``encode_audio`` shared by LVS and Hear The Flow (both hold an
    ``image_encoder``, an ``audio_encoder`` and a config with ``audio_pool``)."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) in [0, 1] -> raw features (N, D, h, w)."""
        return self.image_encoder(normalize_images(images)).features

    def encode_audio(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (N, 1, F, T) -> raw pooled audio vectors (N, D)."""
        if spec.ndim != 4 or spec.shape[1] != 1:
            raise ValueError(f"spec must be (N, 1, F, T) LVS spectrograms, got {tuple(spec.shape)}")
        return pool_audio(self.audio_encoder(spec).features, self.config.audio_pool)


class LVS(LVSEncoding, nn.Module):
    """LVS: image and audio ResNet-18s whose cosine map is trained with the tri-map loss.

    ``forward(images (N, 3, H, W) in [0, 1], spec (N, 1, F, T)) -> LocalizerOutput``;
    ``loss(out)`` is the tri-map loss with the in-batch audio as easy negatives (N >= 2).
    """

    def __init__(self, config: LVSConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else LVSConfig()
        self.image_encoder: ResNetEncoder = resnet18_encoder(3, self.config.width, self.config.layer4_stride)
        self.audio_encoder: ResNetEncoder = resnet18_encoder(1, self.config.width, layer4_stride=2)


    def forward(self, images: torch.Tensor, spec: torch.Tensor) -> LocalizerOutput:
        v = F.normalize(self.encode_image(images), dim=1)
        a = F.normalize(self.encode_audio(spec), dim=1)
        return LocalizerOutput(torch.einsum("ndhw,nd->nhw", v, a), v, a)

    def loss(self, out: LocalizerOutput) -> torch.Tensor:
        """Tri-map loss of a forward pass (needs a batch of at least two pairs)."""
        if out.image_features.shape[0] < 2:
            raise ValueError("the tri-map loss needs at least 2 pairs per batch (in-batch easy negatives)")
        return trimap_loss(cosine_maps(out.image_features, out.audio_embedding), **loss_params(self.config))


def build_lvs(config: LVSConfig) -> tuple[LVS, LoadReport | None]:
    """An LVS model; the image encoder is loaded from ``config.pretrained_vision`` when set.

    Returns
    -------
    model : LVS
    report : LoadReport or None
        What was loaded (``ignored`` lists ImageNet's ``fc.*``); None without a file.
    """
    model = LVS(config)
    report = None
    if config.pretrained_vision is not None:
        report = load_encoder_weights(model.image_encoder, os.fspath(config.pretrained_vision))
    return model, report


def prepare_lvs_audio(waves: np.ndarray, sr: int) -> torch.Tensor:
    """Waveforms ``(N, C, T)`` or ``(N, T)`` float in [-1, 1] -> ``(N, 1, 257, frames)`` LVS spectrograms.

    ``frames = (T - 274) // 238``; channels are averaged first (see :func:`vssl_core.models.audio.lvs_spectrogram`).
    """
    waves = np.asarray(waves)
    if waves.ndim not in (2, 3):
        raise ValueError(f"waves must be (N, C, T) or (N, T), got shape {waves.shape}")
    specs = [lvs_spectrogram(w, sr) for w in waves]
    return torch.from_numpy(np.stack(specs)[:, None])
