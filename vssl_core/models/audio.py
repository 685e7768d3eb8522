"""Spectrogram front ends of the audio encoders.

Conventions
-----------
- Waveforms are float32 in [-1, 1]; torch input ``(N, C, T)`` or ``(N, T)`` samples, numpy
  input ``(T,)`` or ``(C, T)``. Multi-channel audio is averaged to mono first (the encoders
  are single-channel; a stereo model would need a channel swap under horizontal flips).
- The frame parameters are in samples and do NOT depend on the sample rate: at 16 kHz the RCGrad
  hop of 353 samples is 22.06 ms, at 22.05 kHz it is 16.0 ms. A 1-s clip at 16 kHz gives
  ``1 + 16000 // 353 = 46`` frames, 5 s give 227.
- Output layout ``(N, 1, F, T)``: frequency is the image height, time the width.

RCGrad (docs/conventions.md, "RCGrad"): power spectrogram, ``n_fft=512`` (257 bins), ``hop=353``, periodic Hann
window of 512, centred frames with reflect padding, ``log(x + 1e-7)``, then standardised by
the mean and (unbiased) standard deviation of the batch. :func:`log_spectrogram` offers
``per_sample=True`` to standardise each clip by its own statistics: this is what a batch of one
clip (the official inference) computes, and it makes a clip's map independent of the other clips
in the batch.

LVS / Hear The Flow (docs/conventions.md, "LVS and Hear The Flow"): :func:`lvs_spectrogram`, ``scipy.signal.spectrogram`` with its
defaults (Tukey(0.25) window, constant detrend, density scaling), ``nperseg=512``,
``noverlap=274``, ``log(x + 1e-7) / 12``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["N_FFT", "HOP", "LOG_EPS", "to_mono", "log_spectrogram", "LogSpectrogram", "lvs_spectrogram", "resample_audio"]

N_FFT = 512
HOP = 353
LOG_EPS = 1e-7


def to_mono(wave: torch.Tensor) -> torch.Tensor:
    """Average ``(N, C, T)`` to ``(N, T)``; ``(N, T)`` is returned unchanged."""
    if wave.ndim == 3:
        return wave.mean(dim=1)
    if wave.ndim == 2:
        return wave
    raise ValueError(f"expected a waveform batch (N, C, T) or (N, T), got shape {tuple(wave.shape)}")


def log_spectrogram(
    wave: torch.Tensor,
    *,
    n_fft: int = N_FFT,
    hop: int = HOP,
    per_sample: bool = False,
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standardised log power spectrogram of a waveform batch.

    Parameters
    ----------
    wave : Tensor, shape (N, C, T) or (N, T)
        Waveforms in [-1, 1] at any sample rate (samples, not seconds, set the frames).
    n_fft, hop : int
        Frame length and hop in samples.
    per_sample : bool
        False: standardise with the mean/std of the whole batch (training, as RCGrad).
        True: each clip with its own mean/std (equal to a batch of one clip).
    window : Tensor, shape (n_fft,), optional
        Defaults to the periodic Hann window.

    Returns
    -------
    Tensor, shape (N, 1, n_fft // 2 + 1, 1 + T // hop)
    """
    x = to_mono(wave)
    x = x if x.is_floating_point() else x.float()
    if window is None:
        window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, window=window, center=True,
                      pad_mode="reflect", return_complex=True)  # (N, F, frames)
    logp = torch.log(spec.abs().pow(2) + LOG_EPS).unsqueeze(1)  # (N, 1, F, frames)
    if per_sample:
        mean = logp.mean(dim=(1, 2, 3), keepdim=True)
        std = logp.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    else:
        mean, std = logp.mean(), logp.std()
    return (logp - mean) / std.clamp_min(1e-8)


class LogSpectrogram(nn.Module):
    """:func:`log_spectrogram` as a module (the window is a non-persistent buffer)."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wave: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """(N, C, T) or (N, T) waveforms -> (N, 1, F, frames) standardised log power."""
        return log_spectrogram(wave, n_fft=self.n_fft, hop=self.hop, per_sample=per_sample,
                               window=self.window)


def lvs_spectrogram(wave: np.ndarray, sr: int, *, nperseg: int = 512, noverlap: int = 274) -> np.ndarray:
    """LVS-style log spectrogram (as the released LVS code): ``log(scipy spectrogram + 1e-7) / 12``.

    Parameters
    ----------
    wave : ndarray, shape (T,) or (C, T)
        Waveform in [-1, 1]; several channels are averaged first.
    sr : int
        Sample rate in Hz (sets only scipy's density scaling).

    Returns
    -------
    ndarray float32, shape (nperseg // 2 + 1, frames)
        ``frames = (T - noverlap) // (nperseg - noverlap)``.
    """
    from scipy import signal

    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim == 2:
        wave = wave.mean(axis=0)
    if wave.ndim != 1:
        raise ValueError(f"expected a waveform (T,) or (C, T), got shape {wave.shape}")
    _, _, spec = signal.spectrogram(wave, sr, nperseg=nperseg, noverlap=noverlap)
    return (np.log(spec + LOG_EPS) / 12.0).astype(np.float32)


def resample_audio(audio: np.ndarray, from_sr: int, to_sr: int) -> np.ndarray:
    """Waveforms ``(..., T)`` at ``from_sr`` -> ``(..., round(T * to_sr / from_sr))`` float32
    at ``to_sr`` (polyphase, :func:`scipy.signal.resample_poly`); the same array when the rates
    agree."""
    if int(from_sr) == int(to_sr):
        return audio
    import math

    from scipy.signal import resample_poly

    g = math.gcd(int(from_sr), int(to_sr))
    return resample_poly(audio, int(to_sr) // g, int(from_sr) // g, axis=-1).astype(np.float32)
