"""Localisation and potential maps of Oya et al.'s model on the metric's grid.

:func:`localisation_maps` (eq. 3: the potential map times the audio-driven selection) and
:func:`potential_maps` (eq. 1: from the image alone) have the companion's one map signature
``(model, ev) -> LocalizationMaps`` (:mod:`vssl_core.eval.maps`); :func:`both_maps` gives both
from one forward pass. Both maps are softmax distributions on the model's ``h x w`` grid,
resized bilinearly to 224 and scored with the "clean" rule (min-max, median floor, threshold
0.5), the one RCGrad uses. The pairs' audio is resampled to the model's rate.
"""
from __future__ import annotations

import numpy as np
import torch

from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import resize_to_grid
from vssl_core.models.audio import resample_audio
from vssl_core.models.oya import OyaNet
from vssl_core.models.rcgrad import prepare_audio, prepare_images

__all__ = ["oya_maps", "both_maps", "localisation_maps", "potential_maps"]


@torch.no_grad()
def oya_maps(model: OyaNet, images: np.ndarray, audio: np.ndarray, *, chunk_size: int = 16
             ) -> tuple[np.ndarray, np.ndarray]:
    """Localisation and potential maps of plain arrays on the 224x224 grid.

    Parameters
    ----------
    model : OyaNet
        In eval mode (BatchNorm running statistics).
    images : np.ndarray, uint8, shape (N, H, W, 3)
        RGB frames (resized to ``config.image_size`` here).
    audio : np.ndarray, float32, shape (N, C, T) or (N, T)
        Waveforms at ``config.audio_sr``.
    chunk_size : int
        Samples per forward pass.

    Returns
    -------
    localization, potential : np.ndarray, float32, shape (N, 224, 224)
        ``alpha`` and ``P`` resized bilinearly (:func:`vssl_core.eval.metrics.resize_to_grid`); the
        values keep the maps' scale (about ``1 / h w``), so score them with a min-max
        post-processing (``"clean"`` or ``"median"``), not ``"none"``.
    """
    if model.training:
        raise ValueError("oya_maps needs model.eval() (BatchNorm running statistics)")
    if len(images) != len(audio):
        raise ValueError(f"{len(images)} images but {len(audio)} audio clips")
    device = next(model.parameters()).device
    locs, pots = [], []
    for start in range(0, len(images), chunk_size):
        x = prepare_images(images[start:start + chunk_size], model.config.image_size)
        a = prepare_audio(audio[start:start + chunk_size])
        out = model(x.to(device), a.to(device))
        locs.append(out.localization.float().cpu().numpy())
        pots.append(out.potential.float().cpu().numpy())
    return (resize_to_grid(np.concatenate(locs)).astype(np.float32),
            resize_to_grid(np.concatenate(pots)).astype(np.float32))


def both_maps(model: OyaNet, ev) -> tuple[LocalizationMaps, LocalizationMaps]:
    """``(localisation, potential)`` maps of the pairs ``ev`` (one forward pass)."""
    loc, pot = oya_maps(model, ev.images, resample_audio(ev.audio, ev.audio_sr, model.config.audio_sr))
    return LocalizationMaps(loc, "clean", "oya_loc"), LocalizationMaps(pot, "clean", "oya_pot")


def localisation_maps(model: OyaNet, ev) -> LocalizationMaps:
    """Eq. 3: the potential map times the audio-driven selection, of the pairs ``ev``."""
    return both_maps(model, ev)[0]


def potential_maps(model: OyaNet, ev) -> LocalizationMaps:
    """Eq. 1: the image-only potential map of the pairs ``ev`` (the sound is not used)."""
    return both_maps(model, ev)[1]
