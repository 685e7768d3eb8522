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
from vssl_core.eval.metrics import CIoUAt, ciou, paired_bootstrap, pixel_threshold

__all__ = ["swap_partners", "with_swapped_audio", "map_correlations", "uniform_share",
           "audio_sensitivity", "audio_check", "compare_maps", "check_summary", "sound_gain", "SOUND_GAIN", "sensitivity_table"]


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


#: Column of :func:`sound_gain` (with ``_lo`` / ``_hi`` for its interval).
SOUND_GAIN = "own - swapped sound cIoU"


def sound_gain(own_cious: np.ndarray, other_cious: np.ndarray, at: float = 0.3, n_boot: int = 1000,
               seed: int = 0) -> dict[str, float]:
    """cIoU@``at`` of the maps with each frame's own sound minus with the swapped sound, paired.

    Parameters
    ----------
    own_cious, other_cious : np.ndarray, shape (N,)
        Per-sample cIoU (:func:`vssl_core.eval.metrics.ciou`) of the same frames scored against the
        same ground truth, heard with their own and with their :func:`swap_partners` sounds.
    at : float
        Cut-off of the cIoU.
    n_boot, seed : the paired bootstrap (:func:`vssl_core.eval.metrics.paired_bootstrap`).

    Returns
    -------
    dict
        ``{SOUND_GAIN: difference, SOUND_GAIN + "_lo": lower bound, SOUND_GAIN + "_hi": upper}``.
        Above 0 with an interval that excludes it: the own sound finds the source better.
    """
    r = paired_bootstrap(np.asarray(own_cious), np.asarray(other_cious), CIoUAt(at), n_boot=n_boot, seed=seed)
    return {SOUND_GAIN: r.diff, f"{SOUND_GAIN}_lo": r.lo, f"{SOUND_GAIN}_hi": r.hi}


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
    return audio_check(map_fn, ev, seed, chunk)["audio sensitivity"]


def audio_check(map_fn: Callable[[object], LocalizationMaps], ev, seed: int = 0, chunk: int = 128,
                at: float | None = None, n_boot: int = 1000) -> dict[str, float]:
    """:func:`audio_sensitivity` and, when ``at`` is given, :func:`sound_gain` against ``ev.gt``
    (each map scored with the post-processing it names), from the same two passes.

    Returns
    -------
    dict
        ``{"audio sensitivity": ...}``, plus the :data:`SOUND_GAIN` columns when ``at`` is given.
    """
    swapped = with_swapped_audio(ev, seed)
    parts = []
    for start in range(0, len(ev), chunk):
        rows = slice(start, start + chunk)
        parts.append(compare_maps(map_fn(ev.subset(rows)), map_fn(swapped.subset(rows)),
                                  None if at is None else ev.gt[rows], at))
    return check_summary(parts, at, n_boot, seed)


def compare_maps(own: LocalizationMaps, other: LocalizationMaps, gt: np.ndarray | None = None,
                 at: float | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One chunk of the check: the per-sample correlation of the maps with the own and the
    swapped sound, and, given ``gt`` and ``at``, each map's per-sample cIoU (with the
    post-processing it names). Returns ``(corr, own_cious, other_cious)``, the last two None
    without ``gt``."""
    corr = map_correlations(own.maps, other.maps)
    if gt is None or at is None:
        return corr, None, None
    threshold = pixel_threshold(at)
    return (corr, ciou(own.maps, gt, postprocess=own.postprocess, threshold=threshold),
            ciou(other.maps, gt, postprocess=other.postprocess, threshold=threshold))


def check_summary(parts, at: float | None = None, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """The chunks of :func:`compare_maps` combined: ``{"audio sensitivity": ...}`` and, when
    they hold cIoUs and ``at`` is given, the :func:`sound_gain` columns."""
    out = {"audio sensitivity": float(1.0 - np.concatenate([p[0] for p in parts]).mean())}
    if at is not None and all(p[1] is not None for p in parts):
        out.update(sound_gain(np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
                              at=at, n_boot=n_boot, seed=seed))
    return out


def sensitivity_table(map_functions, ev, seed: int = 0, at: float | None = None, n_boot: int = 1000):
    """One row per method (name -> map function): its :func:`audio_check` on ``ev`` (the audio
    sensitivity, and the own-minus-swapped sound cIoU when ``at`` is given)."""
    import pandas as pd

    return pd.DataFrame([{"method": name, "n": len(ev), **audio_check(fn, ev, seed, at=at, n_boot=n_boot)}
                         for name, fn in map_functions.items()])
