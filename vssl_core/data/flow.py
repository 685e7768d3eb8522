"""Dense optical flow (Farneback) as used by FlowGrad and Hear The Flow.

Units and conventions
---------------------
- A flow field is ``float32 (H, W, 2)``: ``[..., 0]`` = dx, ``[..., 1]`` = dy, in **pixels per
  8-fps frame step** (``1 / FlowParams.fps`` seconds) at the frame size it was computed at: the
  video's native size by default, ``FlowParams.resize_to`` when given. A magnitude map is
  ``float32 (H, W)`` in the same unit. Resizing a map afterwards (e.g. to 224x224) does not
  rescale its values.
- Frames are converted to grayscale (ITU-R 601 luma, ``cv2.cvtColor``) before Farneback.
- The flow "at time t" is the mean over the consecutive 8-fps frame pairs
  ``(t + k/fps, t + (k+1)/fps)`` for ``k = 0 .. K-1``, ``K = max(1, round(window_s * fps))``;
  with the default ``window_s = 0.125`` this is the single pair ``(t, t + 0.125)`` of the paper.
  Each time maps to the nearest video frame (:func:`vssl_core.data.media.frame_index`).
- End of a clip: a window that would need a frame past the last one is moved back by whole
  8-fps steps until it fits (for one pair: ``(t - 1/fps, t)``), so every time gets a map; the
  original code silently skipped those samples instead.
- Camera motion (optional, :func:`compensate_camera_motion`): an affine motion model fitted by
  robust least squares is subtracted from the field.
- Native frame step (:data:`NATIVE_FPS`, :meth:`FlowParams.native`): ``fps = 0`` steps by one
  frame of the video itself (``1 / video_fps`` s, e.g. 1/24 s on the synthetic streets): Hear The
  Flow's "middle frame and subsequent frame" (Sec. 4.3). Values are then px per native frame.

Parallelism: :func:`flow_for_pairs` decodes each clip once, in worker processes, one task per clip;
results come back in the order of the pairs and do not depend on ``n_jobs``.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm.auto import tqdm

from vssl_core.data import media

if TYPE_CHECKING:  # pragma: no cover
    from vssl_core.data.urbansas import UrbansasDataset


#: ``FlowParams.fps`` value meaning "the video's own frame rate": one step is one native frame.
NATIVE_FPS = 0.0


@dataclass(frozen=True)
class FlowParams:
    """Farneback optical-flow settings (defaults = FlowGrad; docs/conventions.md, "Optical flow").

    Attributes
    ----------
    fps : float
        Sampling rate of the frames the flow is computed between (Hz); one step = ``1/fps`` s.
        :data:`NATIVE_FPS` (0): the video's own rate, one step = one native frame
        (:meth:`native`).
    pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
        ``cv2.calcOpticalFlowFarneback`` arguments.
    window_s : float
        Aggregation window in seconds: the mean over ``max(1, round(window_s * fps))`` pairs.
    compensate_camera : bool
        Subtract the fitted global (camera) motion from every field.
    resize_to : (width, height) or None
        Compute at this frame size (pixels) instead of the native size; the values are then in
        pixels of the resized frame per step.
    """

    fps: float = 8.0
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    flags: int = 0
    window_s: float = 0.125
    compensate_camera: bool = False
    resize_to: tuple[int, int] | None = None

    @classmethod
    def native(cls, **kwargs) -> FlowParams:
        """One pair of consecutive native frames per time (Hear The Flow's flow): ``fps =
        NATIVE_FPS`` and ``window_s = 0`` (other fields from ``kwargs``)."""
        return cls(fps=NATIVE_FPS, window_s=0.0, **kwargs)

    @property
    def is_native(self) -> bool:
        """True when a step is one frame of the video itself (``fps <= 0``)."""
        return self.fps <= 0

    @property
    def n_pairs(self) -> int:
        """Number of consecutive frame pairs averaged per time (native steps: see
        :meth:`steps`, which knows the video's rate)."""
        return max(1, int(round(self.window_s * self.fps)))

    def steps(self, video_fps: float) -> tuple[int, float]:
        """``(K, step_s)``: the number of frame pairs averaged per time and the step between
        them in seconds, for a video at ``video_fps``."""
        fps = float(video_fps) if self.is_native else float(self.fps)
        return max(1, int(round(self.window_s * fps))), 1.0 / fps


# ---------------------------------------------------------------------------- single fields
def _gray(img: np.ndarray, resize_to: tuple[int, int] | None) -> np.ndarray:
    g = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    if resize_to is not None and (g.shape[1], g.shape[0]) != tuple(resize_to):
        g = cv2.resize(g, tuple(int(v) for v in resize_to), interpolation=cv2.INTER_AREA)
    return g


def farneback(prev: np.ndarray, next: np.ndarray, params: FlowParams = FlowParams()) -> np.ndarray:
    """Farneback flow from ``prev`` to ``next``.

    Parameters
    ----------
    prev, next : ndarray
        ``uint8 (H, W, 3)`` RGB or ``(H, W)`` grayscale frames of equal size.
    params : FlowParams

    Returns
    -------
    ndarray, float32, (H', W', 2)
        (dx, dy) in pixels per step; ``(H', W') = (H, W)`` or ``params.resize_to`` reversed.
        Camera motion is subtracted when ``params.compensate_camera``.
    """
    a, b = _gray(prev, params.resize_to), _gray(next, params.resize_to)
    if a.shape != b.shape:
        raise ValueError(f"frames differ in size: {a.shape} vs {b.shape}")
    flow = cv2.calcOpticalFlowFarneback(
        a, b, None, params.pyr_scale, params.levels, params.winsize, params.iterations,
        params.poly_n, params.poly_sigma, params.flags)
    flow = flow.astype(np.float32, copy=False)
    if params.compensate_camera:
        flow = compensate_camera_motion(flow)
    return flow


def magnitude(flow: np.ndarray) -> np.ndarray:
    """Euclidean norm of a ``(H, W, 2)`` field: ``float32 (H, W)``, same unit (px per step)."""
    f = np.asarray(flow, dtype=np.float32)
    return np.sqrt(f[..., 0] ** 2 + f[..., 1] ** 2)


def compensate_camera_motion(flow: np.ndarray, step: int = 8, n_iter: int = 3) -> np.ndarray:
    """Subtract the global (camera) motion from a flow field.

    The camera motion is modelled as an affine field ``u(x, y) = A [x, y, 1]^T`` (6 parameters:
    translation for pans, scale for zooms, rotation/shear for small rolls) fitted by least
    squares on a regular grid of samples (every ``step`` pixels), re-fitted ``n_iter`` times on
    the samples whose residual is at most ``max(2.5 * MAD, 0.5 px)``: moving vehicles are a
    minority of a street scene, so they are rejected as outliers and keep their own motion. An
    affine model (rather than the median flow) also removes zoom and rotation, which the median
    cannot; for a pure translation both agree.

    Parameters
    ----------
    flow : ndarray, float32, (H, W, 2)

    Returns
    -------
    ndarray, float32, (H, W, 2)
        ``flow`` minus the fitted affine field.
    """
    f = np.asarray(flow, dtype=np.float32)
    h, w = f.shape[:2]
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    X = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=1).astype(np.float64)
    U = f[ys.ravel(), xs.ravel()].astype(np.float64)  # (n, 2)
    keep = np.ones(len(X), dtype=bool)
    coef = np.zeros((3, 2))
    for _ in range(n_iter + 1):
        if keep.sum() < 3:
            break
        coef, *_ = np.linalg.lstsq(X[keep], U[keep], rcond=None)
        r = np.linalg.norm(U - X @ coef, axis=1)
        mad = np.median(np.abs(r[keep] - np.median(r[keep])))
        new = r <= max(2.5 * 1.4826 * mad, 0.5) + np.median(r[keep])
        if np.array_equal(new, keep):
            break
        keep = new
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    model = np.stack([coef[0, 0] * gx + coef[1, 0] * gy + coef[2, 0],
                      coef[0, 1] * gx + coef[1, 1] * gy + coef[2, 1]], axis=-1)
    return (f - model).astype(np.float32)


# ---------------------------------------------------------------------------- time windows
def window_frame_pairs(t: float, video_fps: float, n_frames: int,
                       params: FlowParams = FlowParams()) -> list[tuple[int, int]]:
    """Video frame-index pairs averaged for the flow at time ``t`` (seconds).

    The 8-fps times are ``t + k / params.fps``, ``k = 0 .. K`` (K = ``params.n_pairs``), each
    mapped to its nearest video frame; a ``t`` past the end is first clamped to the time of the
    last frame, and when the window's last frame lies past the clip's last frame the window is
    moved back by whole 8-fps steps until it fits (see the module docstring). With
    :meth:`FlowParams.native` the step is one frame of the video (``1 / video_fps``).

    Raises
    ------
    ValueError
        When the clip is shorter than one window.
    """
    k, step = params.steps(video_fps)
    last = n_frames - 1
    start = min(t, last / video_fps)  # a time past the end means the last frame
    rate = float(video_fps) if params.is_native else params.fps
    for _ in range(int(math.ceil((t + k * step) * rate)) + 2):
        idx = [int(math.floor((start + j * step) * video_fps + 0.5 + 1e-9)) for j in range(k + 1)]
        if idx[-1] <= last:
            idx = [min(max(i, 0), last) for i in idx]
            if idx[0] == idx[-1]:
                break
            return list(zip(idx[:-1], idx[1:]))
        start -= step
    raise ValueError(f"a clip of {n_frames} frames at {video_fps} fps is shorter than one flow "
                     f"window ({k} steps of {step} s)")


def _pair_field(frames: Mapping[int, np.ndarray], pair: tuple[int, int], params: FlowParams,
                cache: dict | None) -> np.ndarray:
    """Farneback field of one frame pair, from ``cache`` (a dict the caller keeps per clip and
    per ``params``) when it holds it."""
    if cache is None:
        return farneback(frames[pair[0]], frames[pair[1]], params)
    if pair not in cache:
        cache[pair] = farneback(frames[pair[0]], frames[pair[1]], params)
    return cache[pair]


def _mean_over_pairs(frames: Mapping[int, np.ndarray], pairs: Sequence[tuple[int, int]],
                     params: FlowParams, field: bool, cache: dict | None = None) -> np.ndarray:
    acc = None
    local: dict = {} if cache is None else cache
    for pair in pairs:
        fl = _pair_field(frames, pair, params, local)
        x = fl if field else magnitude(fl)
        acc = x.astype(np.float32, copy=True) if acc is None else acc + x
    return acc / np.float32(len(pairs))


def flow_and_field_from_frames(frames: Mapping[int, np.ndarray], t: float, video_fps: float,
                               n_frames: int, params: FlowParams = FlowParams(),
                               cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Both the mean magnitude ``(H, W)`` and the mean field ``(H, W, 2)`` at ``t``, with one
    Farneback call per frame pair (the magnitude is the mean of the per-pair magnitudes, as
    :func:`flow_from_frames` computes it, not the magnitude of the mean field). ``cache`` as in
    :func:`flow_from_frames`."""
    pairs = window_frame_pairs(t, video_fps, n_frames, params)
    local: dict = {} if cache is None else cache
    fields = {p: _pair_field(frames, p, params, local) for p in dict.fromkeys(pairs)}
    mag = sum(magnitude(fields[p]).astype(np.float32) for p in pairs) / np.float32(len(pairs))
    fld = sum(fields[p].astype(np.float32) for p in pairs) / np.float32(len(pairs))
    return mag.astype(np.float32), fld.astype(np.float32)


def flow_from_frames(frames: Mapping[int, np.ndarray], t: float, video_fps: float, n_frames: int,
                     params: FlowParams = FlowParams(), field: bool = False,
                     cache: dict | None = None) -> np.ndarray:
    """Flow at ``t`` from already decoded frames (index -> grayscale or RGB frame).

    Returns the mean magnitude ``(H, W)`` or, with ``field=True``, the mean field ``(H, W, 2)``.
    ``cache``: a dict, kept by the caller for one clip and one ``params``, that shares the
    Farneback field of a frame pair between times whose windows overlap (a 5-s window at 2-Hz
    sample times reuses each pair ~10 times); the result is the same with or without it.
    """
    return _mean_over_pairs(frames, window_frame_pairs(t, video_fps, n_frames, params), params,
                            field, cache)


def _needed(times: Sequence[float], info: media.VideoInfo, params: FlowParams) -> set[int]:
    return {i for t in times for p in window_frame_pairs(t, info.fps, info.n_frames, params)
            for i in p}


def clip_flows(video_path: str | Path, info: media.VideoInfo, times: Sequence[float],
               params: FlowParams = FlowParams(), field: bool = False) -> list[np.ndarray]:
    """Flow maps of one clip at ``times``, decoding the video once (grayscale).

    Returns a list of ``(H, W)`` magnitudes (``(H, W, 2)`` fields with ``field=True``), one per
    time, in order.
    """
    frames = media.read_frames(video_path, _needed(times, info, params), info.n_frames, gray=True)
    cache: dict = {}
    return [flow_from_frames(frames, t, info.fps, info.n_frames, params, field, cache) for t in times]


def flow_magnitude_at(dataset: UrbansasDataset, clip: str, t: float,
                      params: FlowParams = FlowParams()) -> np.ndarray:
    """Mean flow magnitude ``float32 (H, W)`` (px per step) of ``clip`` at ``t`` seconds."""
    return clip_flows(dataset.video_path(clip), dataset.video_info(clip), [t], params)[0]


def flow_field_at(dataset: UrbansasDataset, clip: str, t: float,
                  params: FlowParams = FlowParams()) -> np.ndarray:
    """Mean 2-channel flow field ``float32 (H, W, 2)`` (dx, dy px per step) of ``clip`` at ``t``.

    The input of Hear The Flow's flow encoder.
    """
    return clip_flows(dataset.video_path(clip), dataset.video_info(clip), [t], params,
                      field=True)[0]


# ---------------------------------------------------------------------------- many clips
def _worker_init() -> None:
    cv2.setNumThreads(1)


def _clip_task(args: tuple) -> list[np.ndarray]:
    path, info, times, params, field = args
    return clip_flows(path, info, times, params, field)


def start_method() -> str:
    """Start method of the worker processes: ``$VSSL_MP_START`` or "fork" where available.

    "fork" starts workers in milliseconds and works from scripts without a ``__main__`` guard
    and from notebooks; the workers only run OpenCV/numpy code (never torch), which is safe after
    a fork. Set ``VSSL_MP_START=spawn`` on platforms without fork or if a fork misbehaves
    (spawned workers re-import their modules: about a second each).
    """
    default = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return os.environ.get("VSSL_MP_START", default)


def imap_clips(fn, tasks: Sequence[tuple], n_jobs: int = 2, progress: bool = True,
               desc: str = "clips") -> Iterator:
    """Apply a picklable ``fn`` to per-clip ``tasks`` in ``n_jobs`` processes; yield in order.

    ``n_jobs <= 1`` runs in this process. Workers (see :func:`start_method`) use one OpenCV
    thread each; a worker's exception is re-raised here. A ``tqdm.auto`` bar counts tasks.
    """
    n_jobs = max(1, min(int(n_jobs), len(tasks)))
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress)
    try:
        if n_jobs == 1:
            for task in tasks:
                res = fn(task)
                bar.update(1)
                yield res
            return
        ctx = mp.get_context(start_method())
        with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_worker_init) as ex:
            for res in ex.map(fn, tasks):
                bar.update(1)
                yield res
    finally:
        bar.close()


def map_clips(fn, tasks: Sequence[tuple], n_jobs: int = 2, progress: bool = True,
              desc: str = "clips") -> list:
    """:func:`imap_clips` collected into a list (in task order)."""
    return list(imap_clips(fn, tasks, n_jobs=n_jobs, progress=progress, desc=desc))


def flow_for_pairs(dataset: UrbansasDataset, pairs: Sequence, params: FlowParams = FlowParams(),
                   n_jobs: int = 2, progress: bool = True, field: bool = False):
    """Flow maps of many pairs, in parallel across clips.

    Parameters
    ----------
    dataset : UrbansasDataset
    pairs : sequence of Pair (or of ``(clip, time)`` tuples)
    params : FlowParams
    n_jobs : int
        Worker processes (one task per clip, each clip decoded once). 1 = serial.
    progress : bool
        Show a ``tqdm.auto`` bar over clips.
    field : bool
        Return 2-channel fields instead of magnitudes.

    Returns
    -------
    ndarray, float32, (N, H, W) (or (N, H, W, 2))
        In the order of ``pairs``; a list of arrays when the frame sizes differ between clips.
    """
    items = [(p.clip, p.time) if hasattr(p, "clip") else (p[0], float(p[1])) for p in pairs]
    by_clip: dict[str, list[int]] = {}
    for i, (clip, _) in enumerate(items):
        by_clip.setdefault(clip, []).append(i)
    clips = list(by_clip)
    tasks = [(dataset.video_path(c), dataset.video_info(c), [items[i][1] for i in by_clip[c]],
              params, field) for c in clips]
    results = map_clips(_clip_task, tasks, n_jobs=n_jobs, progress=progress, desc="flow")
    out: list[np.ndarray | None] = [None] * len(items)
    for c, maps in zip(clips, results):
        for i, m in zip(by_clip[c], maps):
            out[i] = m
    if out and len({m.shape for m in out}) == 1:
        return np.stack(out)
    return out if out else np.zeros((0, 0, 0), np.float32)


def default_n_jobs() -> int:
    """Worker count matching the CPUs available to this process (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
