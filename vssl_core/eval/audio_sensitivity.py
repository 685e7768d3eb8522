"""Does the map change with the sound? The same frames mapped with their own and with swapped audio.

A model that uses the sound gives a different map when the frame is heard with another clip's
audio; a vision-only shortcut (Oya et al.'s "potential" map) gives the same one. The check is
model-agnostic: it takes any map function ``EvalArrays -> LocalizationMaps``.

``audio_sensitivity = 1 - mean_i corr(map_i(own audio), map_i(other audio))``, with the Pearson
correlation of the two ``224 x 224`` maps of sample ``i`` (a constant map counts as correlation
1) and the other audio a seeded cyclic shift of the samples (nobody keeps their own). 0: the map
ignores the audio; 1: uncorrelated; up to 2 for anti-correlated maps.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vssl_core.eval.maps import LocalizationMaps

__all__ = ["swap_partners", "with_swapped_audio", "map_correlations", "uniform_share", "audio_sensitivity", "sensitivity_table"]


def swap_partners(n: int, seed: int = 0) -> np.ndarray:
    """A seeded cyclic shift ``(n,)``: sample ``i`` borrows the audio of ``partners[i] != i``."""
    if n < 2:
        raise ValueError("swapping audio needs at least 2 samples (one to borrow audio from)")
    rng = np.random.default_rng(seed)
    return (np.arange(n) + rng.integers(1, n)) % n


def with_swapped_audio(ev, seed: int = 0):
    """``ev`` (an ``EvalArrays``) with every sample heard with its :func:`swap_partners` partner's
    audio (images, flow and ground truth unchanged): the "another clip's sound" of every check."""
    return ev.with_audio(ev.audio[swap_partners(len(ev), seed)])


def map_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample Pearson correlation of two map stacks ``(N, h, w)``; 1 where either is constant."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), 1.0)


def uniform_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per sample, the share of the change between two map stacks ``(N, h, w)`` that is a uniform
    shift: ``mean(d)**2 / mean(d**2)`` with ``d = b - a``, in [0, 1].

    1: the whole map moved up or down alike (min-max scaling, and so every metric here, removes
    such a change: :func:`audio_sensitivity` reads it as 0); 0: only its shape changed. NaN
    where the two maps are equal.
    """
    d = (b.astype(np.float64) - a.astype(np.float64)).reshape(len(a), -1)
    power = (d * d).mean(1)
    return np.where(power > 0, d.mean(1) ** 2 / np.where(power > 0, power, 1), np.nan)


def audio_sensitivity(map_fn: Callable[[object], LocalizationMaps], ev, seed: int = 0,
                      chunk: int = 128) -> float:
    """``1 - mean correlation`` of the maps of ``ev`` with their own and with swapped audio.

    Parameters
    ----------
    map_fn : callable EvalArrays -> LocalizationMaps
        A model's map function with the model bound (e.g. ``lambda ev: rcgrad_maps.maps(m, ev)``).
    ev : EvalArrays
        At least 2 samples.
    seed : int
        Seed of the swap (:func:`swap_partners`).
    chunk : int
        Samples mapped at a time (memory bound).
    """
    swapped = with_swapped_audio(ev, seed)
    corr = []
    for start in range(0, len(ev), chunk):
        rows = slice(start, start + chunk)
        corr.append(map_correlations(map_fn(ev.subset(rows)).maps, map_fn(swapped.subset(rows)).maps))
    return float(1.0 - np.concatenate(corr).mean())


def sensitivity_table(map_functions, ev, seed: int = 0):
    """One row per method (name -> map function): its :func:`audio_sensitivity` on ``ev``."""
    import pandas as pd

    return pd.DataFrame([{"method": name, "n": len(ev), "audio sensitivity": audio_sensitivity(fn, ev, seed)}
                         for name, fn in map_functions.items()])
