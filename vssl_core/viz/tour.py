"""Everything needed to look at one clip: frames, boxes, flow, spectrogram, events.

:func:`clip_view` gathers the data (decoding once); :func:`vssl_core.viz.plotting.clip_overview`
draws it. Used by the data tour and the explorer notebooks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import signal

from vssl_core.data.urbansas import URBANSAS_FRAME, UrbansasDataset, scale_boxes
from vssl_core.data.flow import FlowParams, clip_flows


@dataclass(frozen=True)
class ClipView:
    """One clip, ready to draw.

    Attributes
    ----------
    clip : str
    times : (T,) seconds
    frames : list of uint8 (H, W, 3) RGB at the native size
    gt_boxes : list of (N_t, 4) float, x1 y1 x2 y2 in pixels of the frame (all box rows at t)
    objects : list of DataFrame or None
        Synthetic only: every object at t with ``state`` and ``sounding`` and x1..y2 in pixels.
    flows : list of float32 (H, W), flow magnitude in px per 8-fps step
    spectrogram : float32 (F, S) log power in dB, mono, of the whole clip
    spec_extent : (t0, t1, f0, f1) seconds and Hz, for ``imshow(extent=...)``
    events : DataFrame with columns label, start, end (no-event rows removed)
    """

    clip: str
    times: np.ndarray
    frames: list
    gt_boxes: list
    objects: list | None
    flows: list
    spectrogram: np.ndarray
    spec_extent: tuple[float, float, float, float]
    events: pd.DataFrame


def _xyxy(boxes_xywh: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    px = scale_boxes(np.asarray(boxes_xywh, dtype=float).reshape(-1, 4), frame_size, URBANSAS_FRAME)
    return np.column_stack([px[:, 0], px[:, 1], px[:, 0] + px[:, 2], px[:, 1] + px[:, 3]])


def clip_view(dataset: UrbansasDataset, clip: str, times: Sequence[float],
              flow: FlowParams = FlowParams(), objects: pd.DataFrame | None = None,
              audio_sr: int = 16000) -> ClipView:
    """Gather frames, GT boxes, flow magnitude, a spectrogram and the events of ``clip``.

    Parameters
    ----------
    dataset : UrbansasDataset
    clip : str
    times : sequence of float
        Seconds at which to show frames and flow (annotation times are multiples of 0.5 s).
    flow : FlowParams
    objects : DataFrame, optional
        The synthetic ``objects.csv`` (see :func:`vssl_core.data.sources.load_objects`).
    audio_sr : int
        Sample rate for the spectrogram (Hz).
    """
    times = np.asarray(times, dtype=float)
    size = dataset.frame_size(clip)
    frames = dataset.frames(clip, list(times))
    flows = clip_flows(dataset.video_path(clip), dataset.video_info(clip), list(times), flow)
    gt = []
    for t in times:
        rows = dataset.boxes(clip, float(t))
        gt.append(_xyxy(rows[["x", "y", "w", "h"]].to_numpy(float), size))
    objs = None
    if objects is not None:
        mine = objects[objects["filename"] == clip]
        objs = []
        for t in times:
            at = mine[np.isclose(mine["time"].to_numpy(float), t)].dropna(subset=["x"]).copy()
            xyxy = _xyxy(at[["x", "y", "w", "h"]].to_numpy(float), size)
            at[["x1", "y1", "x2", "y2"]] = xyxy
            objs.append(at)
    duration = dataset.duration(clip)
    wave = dataset.audio(clip, 0.0, duration, sr=audio_sr, channels="mono")[0]
    f, t_spec, sxx = signal.spectrogram(wave, fs=audio_sr, nperseg=512, noverlap=384)
    spec = (10 * np.log10(sxx + 1e-10)).astype(np.float32)
    events = dataset.events(clip)
    events = events[events["start"] >= 0][["label", "start", "end"]].reset_index(drop=True)
    return ClipView(clip, times, frames, gt, objs, flows, spec,
                    (0.0, float(duration), float(f[0]), float(f[-1])), events)


def dataset_summary(dataset: UrbansasDataset, objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """Counts that describe an Urbansas-layout dataset, as a two-column table (item, value).

    Clips, night clips, sound events by label, evaluation pairs and boxes under both protocols,
    the rows each protocol dropped (by reason) and, for synthetic data, objects by state.
    """
    rows: list[tuple[str, object]] = [("clips", len(dataset.clips))]
    va = dataset.video_annotations
    if "night" in va.columns:
        rows.append(("night clips", int(va.groupby("filename")["night"].max().sum())))
    ev = dataset.audio_annotations
    ev = ev[ev["start"] >= 0]
    for label, n in ev["label"].value_counts().sort_index().items():
        rows.append((f"sound events: {label}", int(n)))
    for protocol in ("flowgrad", "how_to_listen"):
        s = dataset.pairs(protocol).summary()
        rows += [(f"{protocol}: pairs", s["pairs"]), (f"{protocol}: clips with pairs", s["clips"]),
                 (f"{protocol}: boxes", s["boxes"])]
        rows += [(f"{protocol}: dropped {k}", v) for k, v in s["dropped"].items() if v]
    if objects is not None:
        per_state = objects.drop_duplicates(["filename", "track_id"])["state"].value_counts()
        rows += [(f"objects: {k}", int(v)) for k, v in per_state.sort_index().items()]
    return pd.DataFrame(rows, columns=["item", "value"]).astype({"value": str})


def pick_clip(dataset: UrbansasDataset, objects: pd.DataFrame | None = None, index: int = -1) -> str:
    """``dataset.clips[index]`` when ``index >= 0``; otherwise the first clip that has FlowGrad
    pairs and (when ``objects`` is given) a parked vehicle in view."""
    if index >= 0:
        return dataset.clips[index]
    with_pairs = dataset.pairs("flowgrad").clips
    if objects is not None:
        parked = set(objects.loc[objects["state"] == "parked", "filename"])
        for clip in with_pairs:
            if clip in parked:
                return clip
    return with_pairs[0] if with_pairs else dataset.clips[0]
