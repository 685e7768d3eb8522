"""Beyond FlowGrad: the length of the flow window, and camera shake (notebook 03).

FlowGrad (Sec. 4) proposes, without testing it, a longer temporal context (up to 5 s instead of
0.125 s) for vehicles that sound but stand still, and reports that shaky cameras break the
flow cue. Both are tested here on synthetic streets built for the purpose:

- :func:`context_sweep`: FlowGrad-H and flow only with flow windows from 0.125 s to 5 s on two
  kinds of scenes: every clip holds a vehicle idling for the whole clip (``idling_prob=1``: a
  control no window can see), or a *stop-and-go* vehicle that drives in and stops, or waits and
  pulls away (``stopgo_prob=1``: the case FlowGrad's proposal is for). Besides
  cIoU and AUC it reports, per sample, the fraction of the idling vehicles' box pixels that
  the binarised map covers ("idling recall"), and the same for moving vehicles.
- :func:`shake_sweep`: flow only and FlowGrad-H against the shake amplitude, with and without
  the global camera-motion compensation of :func:`vssl_core.data.flow.compensate_camera_motion`.
  The scenes of every amplitude are the same draws (same seed; only the shake's scale
  differs), so the curves compare like with like.

Conventions: windows in seconds; shake amplitude = standard deviation of the image offset per
axis in 1280x720 annotation pixels (a 320x180 synthetic frame moves by a quarter of that);
the flow window starts at the pair time (FlowGrad's convention, :mod:`vssl_core.data.flow`).
Post-processing per method as :data:`vssl_core.models.rcgrad_maps.POSTPROCESS`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vssl_core.data import sources
from vssl_core.data.arrays import EvalArrays, load_evaluation
from vssl_core.data.synth import SceneConfig
from vssl_core.data.urbansas import URBANSAS_FRAME, UrbansasDataset
from vssl_core.eval import metrics
from vssl_core.eval.maps import LocalizationMaps, clean
from vssl_core.eval.metrics import EvalResult, gt_map_urbansas
from vssl_core.eval.scoring import result_columns
from vssl_core.models import rcgrad_maps
from vssl_core.models.baselines import flow_only_maps
from vssl_core.repro.profiles import StudySetup
from vssl_core.training.rcgrad_family import RCGradFamilySetup

__all__ = ["MotionSetup", "state_boxes", "box_recall", "rcgrad_clean_maps", "context_sweep", "shake_sweep",
           "context_key", "shake_key"]


@dataclass(frozen=True)
class MotionSetup(StudySetup):
    """The sweeps of notebook 03 beyond the paper (the RCGrad family's setup gives the models).

    Attributes
    ----------
    context_windows : tuple of float
        Flow windows (s) of the temporal-context sweep.
    idle_clips : int
        Clips of the idling-heavy scenes.
    shake_amplitudes : tuple of float
        Camera shake, std of the offset (1280x720 px).
    shake_clips : int
        Clips per shake amplitude.
    """

    PROFILE_TABLE = "03_ablations"

    context_windows: tuple[float, ...] = (0.125, 0.5, 1.0, 2.0, 5.0)
    idle_clips: int = 24
    shake_amplitudes: tuple[float, ...] = (1.0, 8.0, 16.0, 32.0)
    shake_clips: int = 16


def state_boxes(objects: pd.DataFrame, clips: Sequence[str], times: Sequence[float], state: str,
                min_visible: float = 0.1, stationary: bool = False) -> list[np.ndarray]:
    """Per sample, the boxes ``(n, 4)`` (1280x720 units) of the objects in ``state``
    ("idling", "moving", "parked", ...) with at least ``min_visible`` of their silhouette in
    view at that (clip, time), from the synthetic generator's object table; ``stationary``
    keeps only those standing still at that time (``speed_px_per_s == 0``: an idling vehicle,
    or a stop-and-go one while it waits)."""
    rows = objects[(objects["state"] == state) & (objects["visible_fraction"] >= min_visible)]
    if stationary:
        rows = rows[rows["speed_px_per_s"] == 0]
    groups = {k: g[["x", "y", "w", "h"]].to_numpy(float)
              for k, g in rows.groupby([rows["filename"], rows["time"].round(1)])}
    return [groups.get((str(c), round(float(t), 1)), np.zeros((0, 4))) for c, t in zip(clips, times)]


def box_recall(maps: LocalizationMaps, boxes: Sequence[np.ndarray], threshold: float = 0.5) -> np.ndarray:
    """Per sample, the fraction of the pixels of ``boxes`` (the union, on the 224 grid) that the
    binarised map covers; NaN for a sample without such boxes.

    The map is post-processed as ``maps.postprocess`` says and binarised at ``threshold``
    (the metric's rule), so the recall counts exactly the pixels the cIoU counts as predicted.
    """
    binary = metrics.postprocess(maps.maps, maps.postprocess) >= threshold
    out = np.full(len(boxes), np.nan)
    for i, b in enumerate(boxes):
        if len(b):
            g = gt_map_urbansas(np.asarray(b, float), URBANSAS_FRAME) > 0
            if g.any():
                out[i] = float((binary[i] & g).sum() / g.sum())
    return out


def rcgrad_clean_maps(rcgrad, ev: EvalArrays) -> np.ndarray:
    """RCGrad's clean maps ``(N, 224, 224)`` in [0, 1] (FlowGrad-H's first factor)."""
    return clean(rcgrad_maps.maps(rcgrad, ev).maps)


def _score_rows(maps: dict[str, LocalizationMaps], gt: np.ndarray, at: float, n_boot: int,
                seed: int, tag: str, results: dict[str, EvalResult], **labels) -> list[dict]:
    rows = []
    for method, m in maps.items():
        r = metrics.evaluate(m.maps, gt, postprocess=m.postprocess, at=at, n_boot=n_boot, seed=seed)
        results[f"{method} {tag}"] = r
        rows.append({**labels, "method": method, "n": r.n, **result_columns(r)})
    return rows


def _pairs(dataset: UrbansasDataset, clips: Sequence[str] | None, setup: RCGradFamilySetup) -> EvalArrays:
    return load_evaluation(dataset, clips, image_size=setup.image_size, flow=setup.flow, audio_sr=setup.audio_sr,
                           progress=False)


def context_key(method: str, window_s: float) -> str:
    """The results key of ``method`` at a flow window, e.g. ``"FlowGrad-H @ 5 s"``."""
    return f"{method} @ {window_s:g} s"


def shake_key(method: str, amplitude: float, compensate: bool) -> str:
    """The results key of ``method`` at a shake amplitude, e.g. ``"Optical flow only @ shake 32 (compensated)"``."""
    return f"{method} @ shake {amplitude:g}" + (" (compensated)" if compensate else "")


def context_sweep(dataset: UrbansasDataset, objects: pd.DataFrame, setup: RCGradFamilySetup, rcgrad,
                  windows: Sequence[float], clips: Sequence[str] | None = None, at: float = 0.3,
                  n_boot: int = 1000, seed: int = 0, progress: bool = True
                  ) -> tuple[pd.DataFrame, dict[str, EvalResult]]:
    """Flow only and FlowGrad-H for each flow window (s) on the pairs of ``clips``.

    Returns
    -------
    table : DataFrame
        One row per (window_s, method): cIoU@``at`` and AUC (95% bootstrap CIs), the mean recall
        (:func:`box_recall`) of the idling vehicles standing still at the sample time (never-moving
        ones, or stop-and-go ones while they wait) and of the moving vehicles, over the samples
        that have such vehicles.
    results : dict
        :func:`context_key` -> EvalResult (the same samples for every window: paired).

    The RCGrad factor is computed once (images and audio do not depend on the window).
    """
    rows, results = [], {}
    rc_clean = None
    for w in tqdm(list(windows), desc="flow windows", disable=not progress):
        ev = _pairs(dataset, clips, replace(setup, flow_window_s=float(w)))
        if rc_clean is None:
            rc_clean = rcgrad_clean_maps(rcgrad, ev)
            idling = state_boxes(objects, ev.clips, ev.times, "idling", stationary=True)
            moving = state_boxes(objects, ev.clips, ev.times, "moving")
        maps = {"Optical flow only": flow_only_maps(ev), "FlowGrad-H": rcgrad_maps.flowgrad_h(rc_clean, ev.flow)}
        scored = _score_rows(maps, ev.gt, at, n_boot, seed, f"@ {float(w):g} s", results, window_s=float(w))
        for row, m in zip(scored, maps.values()):
            row["idling recall"] = float(np.nanmean(box_recall(m, idling))) if any(len(b) for b in idling) else np.nan
            row["moving recall"] = float(np.nanmean(box_recall(m, moving))) if any(len(b) for b in moving) else np.nan
            row["samples with idling"] = int(sum(len(b) > 0 for b in idling))
        rows += scored
    return pd.DataFrame(rows), results


def context_sweeps(scene_sets: Mapping[str, SceneConfig], n_clips: int, synth_seed: int,
                   setup: RCGradFamilySetup, rcgrad, windows: Sequence[float], at: float = 0.3,
                   n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, dict[str, EvalResult]]:
    """:func:`context_sweep` on one synthetic set of ``n_clips`` clips per scene kind (e.g.
    stop-and-go traffic and never-moving idlers), generated with seeds ``synth_seed + 1 + 10 k``.

    Returns
    -------
    table : DataFrame
        The sweeps' rows with a ``scenes`` column (the kind's name).
    results : dict
        ``"{context_key(method, window)} ({scenes})"`` -> EvalResult.
    """
    tables, results = [], {}
    for k, (scenes, config) in enumerate(scene_sets.items()):
        ds = sources.synthetic(n_clips, synth_seed + 1 + 10 * k, config)
        table, res = context_sweep(ds, sources.load_objects(ds.root), setup, rcgrad, windows, at=at,
                                   n_boot=n_boot, seed=seed)
        tables.append(table.assign(scenes=scenes))
        results.update({f"{key} ({scenes})": r for key, r in res.items()})
    return pd.concat(tables, ignore_index=True), results


def shake_sweep(amplitudes: Sequence[float], n_clips: int, synth_seed: int, setup: RCGradFamilySetup, rcgrad,
                at: float = 0.3, n_boot: int = 1000, seed: int = 0, progress: bool = True,
                **scene_overrides) -> tuple[pd.DataFrame, dict[str, EvalResult]]:
    """Flow only and FlowGrad-H against the camera-shake amplitude, with and without camera-motion
    compensation.

    For each amplitude, ``n_clips`` synthetic clips are generated (cached) with every camera
    shaking (``shake_prob=1``) at that amplitude, all other draws identical across amplitudes;
    all their FlowGrad pairs are evaluated. Returns the table (one row per amplitude,
    compensate, method) and :func:`shake_key` -> EvalResult (with and without compensation
    share their samples: paired; different amplitudes may differ in their pairs).
    """
    rows, results = [], {}
    for amp in tqdm(list(amplitudes), desc="shake amplitudes", disable=not progress):
        cfg = sources.scene_config(shake_prob=1.0, shake_amplitude=float(amp), **scene_overrides)
        ds = sources.synthetic(n_clips, synth_seed, cfg, progress=False)
        rc_clean = None
        for comp in (False, True):
            ev = _pairs(ds, None, replace(setup, compensate_camera=comp))
            if rc_clean is None:
                rc_clean = rcgrad_clean_maps(rcgrad, ev)
            maps = {"Optical flow only": flow_only_maps(ev),
                    "FlowGrad-H": rcgrad_maps.flowgrad_h(rc_clean, ev.flow)}
            tag = shake_key("", float(amp), comp).strip()
            rows += _score_rows(maps, ev.gt, at, n_boot, seed, tag, results, shake_amplitude=float(amp),
                                compensate_camera=comp)
    return pd.DataFrame(rows), results
