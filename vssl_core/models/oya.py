"""The model of Oya et al., "Do We Need Sound for Sound Source Localization?" (section 3, supp. A).

No public code exists for this paper: everything below follows the paper's text,
equations (1)-(6) and supplementary Tables 1-2. Where the paper is silent the choice made here
is listed under "Readings".

Architecture
------------
- **Potential localisation network** (sec. 3.2, supp. Table 1). VGG-11's first six convolutions
  (3x3, stride 1, padding 1, ReLU, no BatchNorm) with four 2x2 max-pools, channels
  ``64 | 128 | 256, 256 | 512, 512``, so an ``H x W`` image gives an ``H/16 x W/16`` map
  (224 -> 14x14). Then two 1x1 convolutions each followed by ReLU give the non-negative image
  features ``v`` ``(N, K, h, w)``; a 1x1 convolution to one channel and a softmax over all
  positions give the potential map (eq. 1)::

      P[i, j] = exp(z[i, j]) / sum_ij exp(z[i, j]),   z = W . v[:, i, j] + b,   sum_ij P = 1.

  The trunk is an ``nn.Sequential`` named ``features`` whose indices are those of
  ``torchvision.models.vgg11().features[:16]``, so an ImageNet VGG-11 state dict loads into it
  with :func:`load_vgg11_features` (nothing is ever downloaded here).
- **Sound network** (sec. 3.3, supp. Table 2). Ten 3x3 convolutions with BatchNorm and ReLU,
  channels ``32, 32 | 64, 64 | 128, 128 | 128, 128 | 128, 128``, a 2x2 max-pool after each of
  the first four pairs; global average pooling over the time axis; two fully connected layers,
  each followed by ReLU, give the non-negative sound feature ``s`` ``(N, K)``.
- **Selection module** (sec. 3.4). Cosine attention between ``s`` and every ``v[:, i, j]``
  (eq. 2), in [0, 1] since both are non-negative; the localisation map is the L1-normalised
  product with the potential map (eq. 3)::

      A[i, j] = <v[:, i, j], s> / (|v[:, i, j]| |s|),   alpha = A * P / sum_ij (A * P).

- **Similarity loss** (sec. 3.5, eqs. 4-6). The attended image feature
  ``s_hat = ReLU(FC(ReLU(FC(sum_ij v[:, i, j] alpha[i, j]))))`` is compared with the sound
  feature by ``c = cos(s, s_hat)`` (in [0, 1]); a positive pair (image and sound of the same
  sample) costs ``1 - c``, a negative pair costs ``c``.

Readings (choices where the paper is silent)
--------------------------------------------
- ``K`` (the feature width of ``v``, ``s``, ``s_hat``) and the hidden widths of the two 1x1
  convolutions and of both FC pairs are not given: all are ``K = 512`` (VGG's last width).
- "GAP along the time axis" leaves a frequency axis: it is flattened with the channels
  (``128 * F / 16`` values, ``F = n_fft // 2 + 1``) into the first FC layer, so a model is
  tied to its ``n_fft`` (not to the clip length).
- Sound input "amplitudes and phases of a spectrogram" (STFT window 1022, hop 511, sec. 3.1):
  ``spec_input="amp_phase"`` (default) feeds two channels, ``log(|X| + 1e-7)`` (the log is
  ours: raw amplitudes span many decades) and ``angle(X) / pi``, periodic Hann window, centred
  frames. ``spec_input="log_power"`` feeds the one-channel standardised log power spectrogram
  of :func:`vssl_core.models.audio.log_spectrogram` (``per_sample=True``) instead. Multi-channel audio
  is averaged to mono. The STFT sizes are in samples; the paper's audio is 22.05 kHz.
- "Mean subtraction" (sec. 3.1): images enter as floats in [0, 1] and are normalised with the
  ImageNet mean *and* std that torchvision's VGG-11 weights expect.
- The two FC layers of eq. 4 are their own layers (not the sound network's FCs: their inputs
  differ in size).
- Negative pairs: the paper does not say how they are drawn. :meth:`OyaNet.similarity_loss`
  pairs image ``i`` with the sound of sample ``(i + shift) mod N`` (``shift`` in ``1..N-1``,
  default 1: a derangement of the batch), one negative per positive; the loss is the mean over
  all ``2N`` pairs, i.e. ``(mean positive + mean negative) / 2``. The localisation map of a
  negative pair is computed with the negative sound (eq. 3 depends on ``s``).
  ``OyaConfig.negatives="all"`` (beyond the paper) makes every other sound of the batch a
  negative of each image instead (``N - 1`` negatives; the negative term is their mean): the
  same encoder passes give ``N - 1`` times more negative pairs, a denser training signal for
  small CPU runs.
- Numerical guards: a zero-norm vector gets cosine 0 (norms clamped at 1e-8); if
  ``sum_ij A * P == 0`` (every position orthogonal to ``s``, so ``A`` is constant 0) the
  localisation map falls back to ``P``, the limit of eq. 3 for a constant ``A``. Both maps
  therefore always sum to 1.

Training hyper-parameters (supp. A, not used by this module): Adam, batch 8; de novo lr 1e-4 for
50 epochs; with ImageNet weights lr 1e-5 for the image network and 1e-4 for the rest, 25 epochs.

Sizes: :meth:`OyaConfig.paper` is the paper's network; ``width``, ``image_blocks``,
``audio_blocks`` and ``embed_dim`` shrink it for a CPU profile (:meth:`OyaConfig.quick`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from vssl_core.models.audio import LOG_EPS, log_spectrogram, to_mono
from vssl_core.repro.config import PlainConfig

__all__ = [
    "SPEC_INPUTS", "NEGATIVES", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_BLOCKS", "AUDIO_BLOCKS", "OyaConfig",
    "OyaOutput", "SimilarityLoss", "PotentialNet", "SoundNet", "OyaNet", "cosine",
    "potential_map", "selection", "similarity_loss", "load_vgg11_features",
]

SPEC_INPUTS = ("amp_phase", "log_power")
#: Negative pairs of :meth:`OyaNet.similarity_loss`.
NEGATIVES = ("shift", "all")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Supp. Table 1: output channels of the convolutions of each VGG-11 block (each block ends in
#: a 2x2 max-pool).
IMAGE_BLOCKS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512))
#: Supp. Table 2: the four pooled pairs (conv1-8) and the final unpooled pair (conv9-10).
AUDIO_BLOCKS: tuple[tuple[int, int], ...] = ((32, 32), (64, 64), (128, 128), (128, 128))
AUDIO_FINAL: tuple[int, int] = (128, 128)
_NORM_EPS = 1e-8


@dataclass(frozen=True)
class OyaConfig(PlainConfig):
    """Architecture and front end of :class:`OyaNet`.

    Attributes
    ----------
    width : float
        Channel multiplier of both VGG networks (1.0 = the paper).
    image_blocks : int
        VGG-11 blocks of the image network, 1..4 (4 = the paper; map stride ``2**image_blocks``).
    audio_blocks : int
        Pooled conv pairs of the sound network, 1..4 (4 = the paper), always followed by the
        final unpooled pair.
    embed_dim : int
        ``K``, the width of ``v``, ``s`` and ``s_hat`` and of every hidden FC / 1x1 layer.
    image_size : int
        Square side in pixels the images are resized to (224 in the paper: random 224 crops of
        256 images).
    audio_sr : int
        Sample rate (Hz) of the waveforms the model is fed; the STFT sizes are in samples.
    n_fft, hop : int
        STFT window length and hop, samples (1022 and 511 in the paper: 512 frequency bins).
    spec_input : {"amp_phase", "log_power"}
        Sound network input (module docstring, Readings).
    negatives : {"shift", "all"}
        Negative pairs of the similarity loss (:meth:`OyaNet.similarity_loss`; a training
        choice kept here so that the generic training loop needs no model-specific argument).
    """

    width: float = 1.0
    image_blocks: int = 4
    audio_blocks: int = 4
    embed_dim: int = 512
    image_size: int = 224
    audio_sr: int = 22050
    n_fft: int = 1022
    hop: int = 511
    spec_input: str = "amp_phase"
    negatives: str = "shift"

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValueError(f"OyaConfig.negatives must be one of {NEGATIVES}, "
                             f"got {self.negatives!r}")
        if self.spec_input not in SPEC_INPUTS:
            raise ValueError(f"OyaConfig.spec_input must be one of {SPEC_INPUTS}, "
                             f"got {self.spec_input!r}")
        if not 1 <= self.image_blocks <= len(IMAGE_BLOCKS):
            raise ValueError(f"OyaConfig.image_blocks must be in 1..{len(IMAGE_BLOCKS)}, "
                             f"got {self.image_blocks}")
        if not 1 <= self.audio_blocks <= len(AUDIO_BLOCKS):
            raise ValueError(f"OyaConfig.audio_blocks must be in 1..{len(AUDIO_BLOCKS)}, "
                             f"got {self.audio_blocks}")
        if not (self.width > 0 and self.embed_dim >= 1 and self.audio_sr > 0
                and self.n_fft >= 2 and self.hop >= 1):
            raise ValueError(f"invalid OyaConfig {self}")
        if self.image_size < 2 ** self.image_blocks:
            raise ValueError(f"OyaConfig.image_size {self.image_size} is smaller than the map "
                             f"stride {2 ** self.image_blocks}")
        if self.n_freq_out < 1:
            raise ValueError(f"OyaConfig.n_fft {self.n_fft} gives no frequency bin after "
                             f"{self.audio_blocks} poolings")

    @classmethod
    def paper(cls) -> OyaConfig:
        """The paper's network (supp. Tables 1-2), 224 px images, 22.05 kHz audio."""
        return cls()

    @classmethod
    def quick(cls) -> OyaConfig:
        """The CPU profile of notebook 04: an eighth of the channels, K = 64, 64 px images through
        three VGG blocks (8x8 maps of 8-px cells), 8 kHz audio with a 510 / 255 STFT (64 / 32 ms,
        close to the paper's 46 / 23 ms), all in-batch negatives."""
        return cls(width=0.125, image_blocks=3, embed_dim=64, image_size=64, audio_sr=8000,
                   n_fft=510, hop=255, negatives="all")

    @property
    def stride(self) -> int:
        """Image pixels per map cell (16 in the paper)."""
        return 2 ** self.image_blocks

    @property
    def map_size(self) -> int:
        """Side of the potential / localisation maps for ``image_size`` inputs."""
        return self.image_size // self.stride

    @property
    def n_freq(self) -> int:
        """Frequency bins of the STFT (``n_fft // 2 + 1``)."""
        return self.n_fft // 2 + 1

    @property
    def n_freq_out(self) -> int:
        """Frequency bins left after the sound network's poolings (floor division by 2 each)."""
        f = self.n_freq
        for _ in range(self.audio_blocks):
            f //= 2
        return f

    def frames(self, n_samples: int) -> int:
        """STFT frames of a clip of ``n_samples`` samples (centred frames)."""
        return 1 + n_samples // self.hop


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


# --------------------------------------------------------------------------- functional parts
def cosine(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Cosine similarity along ``dim`` with each norm clamped at 1e-8 (zero vectors give 0)."""
    na = a.norm(dim=dim).clamp_min(_NORM_EPS)
    nb = b.norm(dim=dim).clamp_min(_NORM_EPS)
    return (a * b).sum(dim=dim) / (na * nb)


def potential_map(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 1: softmax over all positions.

    Parameters
    ----------
    logits : Tensor, shape (N, h, w)
        Output of the last 1x1 convolution (``W . v + b``).

    Returns
    -------
    Tensor, shape (N, h, w)
        Positive, sums to 1 over ``(h, w)`` for every sample.
    """
    n, h, w = logits.shape
    return torch.softmax(logits.reshape(n, h * w), dim=1).reshape(n, h, w)


def selection(v: torch.Tensor, s: torch.Tensor, p: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The selection module (eqs. 2-3).

    Parameters
    ----------
    v : Tensor, shape (N, K, h, w)
        Non-negative image features.
    s : Tensor, shape (N, K)
        Non-negative sound features (row ``n`` is paired with image ``n``).
    p : Tensor, shape (N, h, w)
        Potential map (sums to 1).

    Returns
    -------
    alpha : Tensor, shape (N, h, w)
        Localisation map ``A * P / sum(A * P)``: non-negative, sums to 1 per sample (falls back
        to ``P`` where ``sum(A * P) == 0``).
    attention : Tensor, shape (N, h, w)
        Cosine attention ``A`` in [0, 1].
    """
    attention = cosine(v, s[:, :, None, None], dim=1)
    num = attention * p
    den = num.sum(dim=(1, 2), keepdim=True)
    alpha = torch.where(den > 0, num / den.clamp_min(torch.finfo(num.dtype).tiny), p)
    return alpha, attention


def similarity_loss(s: torch.Tensor, s_hat: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Eqs. 5-6 per pair: ``1 - cos(s, s_hat)`` for positives, ``cos(s, s_hat)`` for negatives.

    Parameters
    ----------
    s, s_hat : Tensor, shape (M, K)
        Sound features and attended image features of ``M`` pairs.
    positive : Tensor of bool, shape (M,)
        True where the image and the sound come from the same sample.

    Returns
    -------
    Tensor, shape (M,)
        Per-pair losses, in [0, 1] for non-negative features.
    """
    c = cosine(s, s_hat, dim=1)
    return torch.where(positive, 1.0 - c, c)


# ------------------------------------------------------------------------------------ networks
class PotentialNet(nn.Module):
    """Potential localisation network (sec. 3.2): VGG-11 trunk, 2 x (1x1 conv, ReLU), 1x1 -> 1.

    ``forward(x)`` takes ImageNet-normalised images ``(N, 3, H, W)`` and returns
    ``(v, logits)``: features ``(N, K, H/s, W/s)`` (non-negative) and potential logits
    ``(N, H/s, W/s)`` with ``s = 2**image_blocks``.
    """

    def __init__(self, config: OyaConfig) -> None:
        super().__init__()
        self.features, c_in = vgg_trunk(config.width, config.image_blocks)
        k = config.embed_dim
        self.head = nn.Sequential(nn.Conv2d(c_in, k, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(k, k, 1), nn.ReLU(inplace=True))
        self.potential = nn.Conv2d(k, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.head(self.features(x))
        return v, self.potential(v)[:, 0]


def vgg_trunk(width: float, image_blocks: int) -> tuple[nn.Sequential, int]:
    """VGG-11's first ``image_blocks`` blocks (3x3 convs + ReLU, a 2x2 max-pool after each
    block), torchvision's layer indices; returns the trunk and its output channels."""
    layers: list[nn.Module] = []
    c_in = 3
    for block in IMAGE_BLOCKS[:image_blocks]:
        for c in block:
            c_out = _ch(c, width)
            layers += [nn.Conv2d(c_in, c_out, 3, 1, 1), nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers), c_in


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class SoundNet(nn.Module):
    """Sound network (sec. 3.3): VGG-like convs with BatchNorm, mean over time, 2 x (FC, ReLU).

    ``forward(spec)`` takes spectrograms ``(N, C_in, F, T)`` (frequency = height) and returns
    the sound features ``(N, K)`` (non-negative). ``T`` may be any length >= ``2**audio_blocks``.
    """

    def __init__(self, config: OyaConfig) -> None:
        super().__init__()
        c_in = 2 if config.spec_input == "amp_phase" else 1
        layers: list[nn.Module] = []
        for block in AUDIO_BLOCKS[:config.audio_blocks]:
            for c in block:
                layers += _conv_bn_relu(c_in, _ch(c, config.width))
                c_in = _ch(c, config.width)
            layers.append(nn.MaxPool2d(2, 2))
        for c in AUDIO_FINAL:
            layers += _conv_bn_relu(c_in, _ch(c, config.width))
            c_in = _ch(c, config.width)
        self.features = nn.Sequential(*layers)
        self.min_frames = 2 ** config.audio_blocks
        k = config.embed_dim
        self.fc = nn.Sequential(nn.Linear(c_in * config.n_freq_out, k), nn.ReLU(inplace=True),
                                nn.Linear(k, k), nn.ReLU(inplace=True))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if spec.shape[-1] < self.min_frames:
            raise ValueError(f"the sound network needs >= {self.min_frames} STFT frames, got "
                             f"{spec.shape[-1]}: feed longer clips or use fewer audio_blocks")
        x = self.features(spec).mean(dim=3)  # GAP over time -> (N, C, F')
        return self.fc(x.flatten(1))


class OyaOutput(NamedTuple):
    """One forward pass of :class:`OyaNet`.

    Attributes
    ----------
    localization : Tensor, shape (N, h, w)
        ``alpha`` (eq. 3), non-negative, sums to 1 per sample.
    potential : Tensor, shape (N, h, w)
        ``P`` (eq. 1), positive, sums to 1 per sample; independent of the sound.
    attention : Tensor, shape (N, h, w)
        ``A`` (eq. 2), in [0, 1].
    image_features : Tensor, shape (N, K, h, w)
        ``v``.
    sound_features : Tensor, shape (N, K)
        ``s``.
    """

    localization: torch.Tensor
    potential: torch.Tensor
    attention: torch.Tensor
    image_features: torch.Tensor
    sound_features: torch.Tensor


class SimilarityLoss(NamedTuple):
    """Similarity loss of a batch: ``loss = (positive + negative) / 2`` (all scalars)."""

    loss: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


class OyaNet(nn.Module):
    """Potential localisation network + sound network + selection module (Oya et al.).

    Parameters
    ----------
    config : OyaConfig

    Notes
    -----
    Inputs: images float ``(N, 3, H, W)`` in [0, 1] (:func:`vssl_core.models.rcgrad.prepare_images`
    makes them from uint8 frames; the ImageNet normalisation is applied here) and waveforms
    ``(N, C, T)`` or ``(N, T)`` in [-1, 1] at ``config.audio_sr``.
    """

    def __init__(self, config: OyaConfig = OyaConfig()) -> None:
        super().__init__()
        self.config = config
        self.image_net = PotentialNet(config)
        self.sound_net = SoundNet(config)
        k = config.embed_dim
        self.visual_fc = nn.Sequential(nn.Linear(k, k), nn.ReLU(inplace=True),
                                       nn.Linear(k, k), nn.ReLU(inplace=True))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    # ----- encoders
    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(N, C, T)`` or ``(N, T)`` -> sound network input ``(N, C_in, F, frames)``."""
        cfg = self.config
        if cfg.spec_input == "log_power":
            return log_spectrogram(wave, n_fft=cfg.n_fft, hop=cfg.hop, per_sample=True,
                                   window=self.window)
        x = to_mono(wave).float()
        spec = torch.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True)  # (N, F, T)
        return torch.stack([torch.log(spec.abs() + LOG_EPS), spec.angle() / math.pi], dim=1)

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(N, 3, H, W)`` in [0, 1] -> ``(v (N, K, h, w), P (N, h, w))``."""
        v, logits = self.image_net((images - self.mean) / self.std)
        return v, potential_map(logits)

    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms -> sound features ``s`` ``(N, K)``."""
        return self.sound_net(self.spectrogram(wave))

    def attend(self, v: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Eq. 4: ``s_hat = ReLU(FC(ReLU(FC(sum_ij v alpha))))``, shape (N, K)."""
        return self.visual_fc(torch.einsum("nkhw,nhw->nk", v, alpha))

    # ----- passes
    def forward(self, images: torch.Tensor, wave: torch.Tensor) -> OyaOutput:
        """Localisation and potential maps of matched images and sounds (see :class:`OyaOutput`)."""
        v, p = self.encode_image(images)
        s = self.encode_audio(wave)
        alpha, attention = selection(v, s, p)
        return OyaOutput(alpha, p, attention, v, s)

    def similarity_loss(self, images: torch.Tensor, wave: torch.Tensor,
                        shift: int = 1, negatives: str | None = None) -> SimilarityLoss:
        """Similarity loss of a batch: each image with its own sound and with other sounds.

        Parameters
        ----------
        images : Tensor, shape (N, 3, H, W)
        wave : Tensor, shape (N, C, T) or (N, T)
            Sound ``n`` belongs to image ``n``; ``N >= 2``.
        shift : int
            ``negatives="shift"``: image ``n``'s negative is sound ``(n + shift) mod N``; must
            be in ``1..N-1``.
        negatives : {"shift", "all"}, optional
            Default ``config.negatives``. ``"shift"``: one negative per image (module docstring, Readings). ``"all"``: every
            other sound of the batch is a negative of image ``n`` (``N - 1`` negatives, each with
            its own localisation map); the negative term is their mean. Same encoders, same
            cost for them; the selection module and eq. 4 run ``N**2`` times.

        Returns
        -------
        SimilarityLoss
            Means of eq. 5 over the positives and eq. 6 over the negatives, and their average.
        """
        negatives = self.config.negatives if negatives is None else negatives
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
        n = images.shape[0]
        if n < 2 or (negatives == "shift" and not 1 <= shift < n):
            raise ValueError(f"need a batch of >= 2 and shift in 1..N-1, got N={n}, shift={shift}")
        v, p = self.encode_image(images)
        s = self.encode_audio(wave)
        if negatives == "shift":
            s_neg = torch.roll(s, shifts=-shift, dims=0)  # row n = s[(n + shift) % N]
            s_all = torch.cat([s, s_neg])
            v_all, p_all = torch.cat([v, v]), torch.cat([p, p])
            positive = torch.arange(2 * n, device=s.device) < n
        else:
            # row i * N + j: image i with sound j
            s_all = s.repeat(n, 1)
            v_all, p_all = v.repeat_interleave(n, dim=0), p.repeat_interleave(n, dim=0)
            idx = torch.arange(n, device=s.device)
            positive = (idx[:, None] == idx[None, :]).reshape(-1)
        alpha, _ = selection(v_all, s_all, p_all)
        s_hat = self.attend(v_all, alpha)
        per_pair = similarity_loss(s_all, s_hat, positive)
        pos, neg = per_pair[positive].mean(), per_pair[~positive].mean()
        return SimilarityLoss((pos + neg) / 2, pos, neg)

    def pair_scores(self, images: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
        """``cos(s_j, s_hat_ij)`` for every image ``i`` and sound ``j`` of a batch, shape (N, N):
        how well image ``i``, attended with sound ``j``'s localisation map, matches that sound."""
        v, p = self.encode_image(images)
        s = self.encode_audio(wave)
        n = v.shape[0]
        s_all = s.repeat(n, 1)  # row i * N + j: image i with sound j
        v_all, p_all = v.repeat_interleave(n, dim=0), p.repeat_interleave(n, dim=0)
        alpha, _ = selection(v_all, s_all, p_all)
        return cosine(s_all, self.attend(v_all, alpha), dim=1).view(n, n)


def load_vgg11_features(model: OyaNet, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy a torchvision VGG-11 state dict's ``features.*`` weights into the image trunk.

    Only the layers the trunk has (``features.0`` .. ``features.13`` at ``image_blocks=4``) are
    copied; the shapes must match (``width=1.0``).

    Parameters
    ----------
    model : OyaNet
    state_dict : mapping
        E.g. ``torchvision.models.vgg11(weights=...).state_dict()`` loaded from a local file.

    Returns
    -------
    list of str
        Keys of ``state_dict`` that were ignored (deeper VGG layers, the classifier).
    """
    target = model.image_net.features.state_dict()
    own = {f"features.{k}": k for k in target}
    missing = [k for k in own if k not in state_dict]
    if missing:
        raise ValueError(f"the VGG-11 state dict lacks {missing}; pass torchvision's vgg11 weights")
    new = {}
    for key, local in own.items():
        if tuple(state_dict[key].shape) != tuple(target[local].shape):
            raise ValueError(f"{key}: shape {tuple(state_dict[key].shape)} does not match the "
                             f"trunk's {tuple(target[local].shape)} (VGG weights need width=1.0)")
        new[local] = state_dict[key]
    model.image_net.features.load_state_dict(new)
    return sorted(k for k in state_dict if k not in own)
