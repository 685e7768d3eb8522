"""Localisation maps of LVS and Hear The Flow: the cosine map of image features and the audio.

:func:`maps` has the companion's one map signature ``(model, ev) -> LocalizationMaps``
(:mod:`vssl_core.eval.maps`): the model's cosine map on its feature grid, resized to 224
(bilinear for LVS, bicubic for Hear The Flow with flow, as their released evaluations) and
min-max scaled, tagged ``"median"`` (LVS / Hear The Flow's own rule: the pixels
above the map's median are predicted; see ``docs/conventions.md``). A study may score them with
another rule (:meth:`~vssl_core.eval.maps.LocalizationMaps.relabel`).
"""
from __future__ import annotations

import numpy as np
import torch

from vssl_core.eval.maps import LocalizationMaps, to_grid
from vssl_core.models.htf import HTF, prepare_flow_field
from vssl_core.models.lvs import LVS, prepare_lvs_audio
from vssl_core.models.rcgrad import prepare_images

__all__ = ["heatmaps", "grid_maps", "localizer_maps", "maps"]


@torch.no_grad()
def heatmaps(model: LVS | HTF, images: np.ndarray, audio: np.ndarray, flow_field: np.ndarray | None = None,
             chunk_size: int = 32) -> np.ndarray:
    """The model's cosine maps on its own feature grid, ``(N, h, w)`` float32 in [-1, 1].

    Parameters
    ----------
    model : LVS or HTF (eval mode)
    images : ndarray uint8, shape (N, S, S, 3)
    audio : ndarray float32, shape (N, C, T)
        Waveforms at ``model.config.audio_sr``.
    flow_field : ndarray float32, shape (N, S', S', 2), optional
        (dx, dy) px/step; required by an HTF model with flow.
    """
    if model.training:
        raise ValueError("LVS / HTF maps need the model in eval mode (model.eval())")
    uses_flow = isinstance(model, HTF) and model.config.uses_flow
    if uses_flow and flow_field is None:
        raise ValueError(f"HTF with flow_encoder={model.config.flow_encoder!r} needs flow_field (N, S, S, 2)")
    size, sr = model.config.image_size, model.config.audio_sr
    out = []
    for start in range(0, len(images), chunk_size):
        sl = slice(start, start + chunk_size)
        args = [prepare_images(images[sl], size), prepare_lvs_audio(audio[sl], sr)]
        if uses_flow:
            args.append(prepare_flow_field(flow_field[sl], size))
        out.append(model(*args).heatmap.numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)


def localizer_maps(model: LVS | HTF, images: np.ndarray, audio: np.ndarray,
                   flow_field: np.ndarray | None = None, *, chunk_size: int = 32) -> LocalizationMaps:
    """:func:`maps` on plain arrays: ``(N, 224, 224)`` maps (resized as each released evaluation
    does: bilinear for LVS, bicubic for Hear The Flow with flow; then min-max), "median"."""
    return grid_maps(model, heatmaps(model, images, audio, flow_field, chunk_size))


def grid_maps(model: LVS | HTF, heat: np.ndarray) -> LocalizationMaps:
    """The model's cosine maps ``(N, h, w)`` (:func:`heatmaps`) as the metric reads them:
    ``(N, 224, 224)``, resized bicubically for Hear The Flow with flow and bilinearly for LVS
    (as each released evaluation does), min-max scaled, rule "median"."""
    kind = "htf" if isinstance(model, HTF) and model.config.uses_flow else "lvs"
    return LocalizationMaps(to_grid(heat, "bicubic" if kind == "htf" else "bilinear"), "median", kind)


def maps(model: LVS | HTF, ev) -> LocalizationMaps:
    """LVS / Hear The Flow maps of the pairs ``ev`` (an ``EvalArrays``; HTF with flow needs
    ``ev.flow_field``)."""
    if int(ev.audio_sr) != int(model.config.audio_sr):
        raise ValueError(f"the audio is at {ev.audio_sr} Hz but the model expects {model.config.audio_sr} Hz")
    return localizer_maps(model, ev.images, ev.audio, ev.flow_field)
