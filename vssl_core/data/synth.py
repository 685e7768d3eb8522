"""Procedural urban street scenes written in the official Urbansas layout.

The project's embedded default data: :func:`generate` writes a folder that
:class:`vssl_core.data.urbansas.UrbansasDataset` reads like the real release::

    meta.json, README.md                 generator version, seed, config (asdict), counts
    annotations/video_annotations.csv   official columns; boxes at 2 fps in 1280x720 units
    annotations/audio_annotations.csv   official columns; one event per sounding vehicle
    annotations/objects.csv             extra: every object at every 2-fps time (see below)
    audio/<clip>.wav                    48 kHz stereo 16-bit PCM
    video/video_<fps>fps/<clip>.mp4     mp4v, ``width x height`` (320x180 by default)

Clip names are ``synth<seed:04d>_<index:05d>``; ``city = "synthetic"``,
``location_id = "synth<index>"`` (every clip is its own street), ``subset = "synthetic"``.

What is ground truth
--------------------
``video_annotations.csv`` holds boxes of the SOUNDING visible vehicles only (moving and idling),
at the 2-fps times when they are (partly) in the frame and not fully hidden: the evaluation of
the papers scores a heatmap against the sources of the sound, so a parked car must count as a
false positive, not as a target. Parked vehicles, pedestrians, trees and offscreen vehicles get
no box there; ``objects.csv`` records everything, for analyses such as "Do We Need Sound?"'s
Type A (every sound-capable object sounds) versus Type B (only some do) samples.

- Boxes ``x, y, w, h``: top-left corner and size of the projected near side face of the
  vehicle, in pixels of the 1280x720 annotation frame, camera shake included, rounded to 0.01;
  boxes partly outside the frame keep their geometry (negative ``x`` or ``y`` is possible; the
  loader clips them, the real release stores them clipped). ``visibility`` = 1.0 when
  ``visible_fraction >= 0.5``, else 0.0, where ``visible_fraction`` = share of the in-frame part
  of the box not covered by the silhouettes of nearer vehicles or pedestrians (a few rectangles
  per class, :data:`.synth_scene.SILHOUETTE_PARTS`). Like the real annotations, the flag marks
  occlusion only: a vehicle entering the frame is visible. With the default config about 10%
  of the boxes have visibility 0 (14% in Urbansas-mini), and the visible boxes have a median
  size of about 120 x 70 (0.9% of the image; Urbansas-mini: 129 x 76, 1.0%).
- ``audio_annotations.csv``: one event per sounding vehicle, ``start``/``end`` (s, 0.01 s
  grid, clipped to ``[0, duration]``) = the interval it sounds in the wav (it is silent outside);
  offscreen vehicles are labelled ``offscreen`` (class 4); ``non_identifiable_vehicle_sound`` is
  0. A clip without any event gets the single row ``-1, -1, 1, -1.0, -1.0`` like the real file.
- ``objects.csv`` columns: :data:`OBJECT_COLUMNS`. ``state`` in moving / parked / idling /
  pedestrian / tree / offscreen; ``sounding`` 1 for vehicles heard in the clip and for
  pedestrians when footsteps are on; ``depth`` = horizontal distance to the camera / 50 m,
  clipped to [0, 1]; ``speed_px_per_s`` = speed of the box centre in annotation pixels per
  second without the camera shake (exactly 0 for parked and idling vehicles and trees).
  Offscreen vehicles have empty ``x, y, w, h, speed_px_per_s`` (no image position).

Ownership and integrity: ``meta.json`` is the generator's marker. It names the generator, the
fingerprint of ``(config, n_clips, seed, GENERATOR_VERSION)`` and the size and SHA-256 of every
file written (``files``). :func:`generate` replaces an existing folder only when it is empty or
holds a marker whose fingerprint matches its own recorded config and nothing but the files the
generator writes; any other file (yours) makes it refuse, naming the file. :func:`ensure_synthetic`
reuses a dataset only when every recorded file is still there with the recorded size and hash;
otherwise it says which file changed and generates the dataset again. Generation runs in a
temporary sibling folder that an interruption (Ctrl-C, SIGTERM, an error) removes, together with
the worker processes.

Determinism: every clip draws from ``np.random.SeedSequence(seed, spawn_key=(index,))``, the
CSVs are concatenated in clip order, so the CSV and wav bytes and the decoded frames depend on
``(seed, config, GENERATOR_VERSION)`` only, whatever ``n_jobs``.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from vssl_core.repro.atomic import atomic_dir
from vssl_core.repro.cache import changed_files, record_files
from vssl_core.errors import data_error
from vssl_core.repro.paths import data_dir
from vssl_core.data.synth_audio import synthesize_audio
from vssl_core.data.synth_render import render_frames
from vssl_core.data.synth_scene import (
    ANNOTATION_FPS, CLASS_IDS, DEPTH_FAR, OFFSCREEN_CLASS_ID, Scene, SceneConfig, annotation_times,
    audible_interval, box_at, face_z, sample_scene, silhouette_boxes, visible_fractions,
)

__all__ = [
    "SceneConfig", "GENERATOR_VERSION", "VIDEO_COLUMNS", "AUDIO_COLUMNS", "OBJECT_COLUMNS",
    "generate", "ensure_synthetic", "fingerprint", "clip_name", "clip_scene", "clip_annotations",
]

#: Bump when the output of the generator changes: it is part of the cache fingerprint.
GENERATOR_VERSION = "2"
VIDEO_COLUMNS = ("frame_id", "track_id", "x", "y", "w", "h", "class_id", "visibility", "label",
                 "filename", "city", "location_id", "time", "night", "subset")
AUDIO_COLUMNS = ("filename", "class_id", "label", "non_identifiable_vehicle_sound", "start", "end")
OBJECT_COLUMNS = ("filename", "time", "frame_id", "track_id", "label", "state", "x", "y", "w", "h",
                  "sounding", "visible_fraction", "depth", "speed_px_per_s")
CITY = "synthetic"
SUBSET = "synthetic"
_LINE_END = "\r\n"   # the official CSVs use CRLF


def clip_name(seed: int, index: int) -> str:
    """Short-form clip name ``synth<seed:04d>_<index:05d>``."""
    return f"synth{seed:04d}_{index:05d}"


def clip_scene(seed: int, index: int, config: SceneConfig) -> Scene:
    """The scene of clip ``index`` of a dataset generated with ``seed`` (deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))
    return sample_scene(config, rng, clip_name(seed, index), index)


@dataclass(frozen=True)
class ClipAnnotations:
    """Rows of the three CSVs for one clip (lists of tuples in column order, no row index)."""

    video: list[tuple]
    audio: list[tuple]
    objects: list[tuple]


def _r(v: float, nd: int) -> float:
    return float(np.round(v, nd)) + 0.0   # + 0.0 turns -0.0 into 0.0


def clip_annotations(scene: Scene, config: SceneConfig) -> ClipAnnotations:
    """Annotation rows of ``scene`` (see the module docstring for their meaning)."""
    cam = scene.camera
    times = annotation_times(config.duration)
    fidx = np.round(times * config.fps).astype(int)
    shake = scene.shake[fidx] if len(scene.shake) else np.zeros((len(times), 2))
    things = scene.things
    nt = len(things)
    boxes = np.full((nt, len(times), 4), np.nan)
    parts: list[np.ndarray] = []          # (T, P, 4) opaque silhouette parts per object
    speed = np.full((nt, len(times)), np.nan)
    depth_cam = np.full((nt, len(times)), np.inf)
    dt = 0.01
    shift = np.concatenate([shake, np.zeros_like(shake)], axis=1)
    for k, th in enumerate(things):
        if th.state == "offscreen":
            parts.append(np.zeros((len(times), 0, 4)))
            continue
        boxes[k] = box_at(cam, th, times) + shift
        occluder = th.is_vehicle or th.label == "pedestrian"
        parts.append(silhouette_boxes(cam, th, times) + shift[:, None] if occluder
                     else np.zeros((len(times), 0, 4)))
        if th.vx == 0:
            speed[k] = 0.0
        else:
            ca = box_at(cam, th, times - dt)
            cb = box_at(cam, th, times + dt)
            centre = lambda bx: bx[:, :2] + bx[:, 2:] / 2  # noqa: E731
            speed[k] = np.linalg.norm(centre(cb) - centre(ca), axis=-1) / (2 * dt)
        depth_cam[k] = face_z(th)
    vis = np.zeros((nt, len(times)))
    for j in range(len(times)):
        vis[:, j] = visible_fractions(boxes[:, j], depth_cam[:, j], [p[j] for p in parts])
    spans = {th.track_id: audible_interval(cam, th, config.duration) for th in things}

    video, objects = [], []
    for j, t in enumerate(times):
        for k, th in enumerate(things):
            span = spans[th.track_id]
            x, y, w, h = boxes[k, j]
            if (th.state in ("moving", "idling") and span is not None and vis[k, j] > 0
                    and span[0] <= t <= span[1]):
                video.append((j, th.track_id, _r(x, 2), _r(y, 2), _r(w, 2), _r(h, 2),
                              CLASS_IDS[th.label], 1.0 if vis[k, j] >= 0.5 else 0.0, th.label,
                              scene.clip, CITY, f"synth{scene.index}", _r(t, 1), int(scene.night),
                              SUBSET))
            if th.is_vehicle:
                sounding = int(span is not None)
            else:
                sounding = int(th.label == "pedestrian" and config.footsteps)
            dist = float(np.hypot(th.x(t), th.z))
            objects.append((scene.clip, _r(t, 1), j, th.track_id, th.label, th.state,
                            _r(x, 2), _r(y, 2), _r(w, 2), _r(h, 2), sounding, _r(vis[k, j], 4),
                            _r(min(dist / DEPTH_FAR, 1.0), 4), _r(speed[k, j], 2)))
    audio = []
    for th in things:
        span = spans[th.track_id]
        if span is None:
            continue
        off = th.state == "offscreen"
        audio.append((span[0], th.track_id, (
            scene.clip, OFFSCREEN_CLASS_ID if off else CLASS_IDS[th.label],
            "offscreen" if off else th.label, 0, _r(span[0], 3), _r(span[1], 3))))
    audio = [row for *_, row in sorted(audio)]
    if not audio:
        audio = [(scene.clip, -1, "-1", 1, -1.0, -1.0)]
    return ClipAnnotations(video=video, audio=audio, objects=objects)


def _make_clip(task: tuple[str, int, int, SceneConfig]) -> ClipAnnotations:
    """Render, sonify and annotate one clip into the dataset folder ``root`` (worker)."""
    root, seed, index, config = task
    scene = clip_scene(seed, index, config)
    root = Path(root)
    vpath = root / "video" / f"video_{config.fps}fps" / f"{scene.clip}.mp4"
    writer = cv2.VideoWriter(str(vpath), cv2.VideoWriter_fourcc(*"mp4v"), float(config.fps),
                             (config.width, config.height))
    if not writer.isOpened():
        raise data_error(vpath, "fourcc", "OpenCV cannot open an 'mp4v' video writer",
                         "install an OpenCV build with FFmpeg (opencv-python-headless)")
    try:
        for frame in render_frames(scene, config):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    audio = synthesize_audio(scene, config)
    sf.write(str(root / "audio" / f"{scene.clip}.wav"), audio.T, config.sample_rate,
             subtype="PCM_16", format="WAV")
    return clip_annotations(scene, config)


def _worker_init() -> None:
    """Pool worker start-up: one OpenCV thread per worker (the pool parallelises over clips);
    Ctrl-C is left to the parent (which terminates the pool), SIGTERM kills the worker."""
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_pool(tasks: list, n_jobs: int, bar: dict) -> list[ClipAnnotations]:
    """``_make_clip`` over ``tasks`` in ``n_jobs`` worker processes, in task order. Any exception
    in the parent (an error, Ctrl-C, SIGTERM turned into an exception) terminates the workers."""
    # fork start (Linux default): workers inherit the imported modules; each clip is ~1 s of
    # single-threaded work, so the pool scales with the free cores
    pool = multiprocessing.get_context().Pool(processes=min(int(n_jobs), len(tasks)),
                                              initializer=_worker_init)
    try:
        results = list(tqdm(pool.imap(_make_clip, tasks), **bar))
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return results


def _csv(rows: list[tuple], columns: tuple[str, ...], index: bool) -> str:
    df = pd.DataFrame(rows, columns=list(columns))
    return df.to_csv(index=index, lineterminator=_LINE_END)


def fingerprint(config: SceneConfig, n_clips: int, seed: int) -> str:
    """16 hex digits identifying ``(config, n_clips, seed, GENERATOR_VERSION)``."""
    key = json.dumps({"config": asdict(config), "n_clips": n_clips, "seed": seed,
                      "generator_version": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _fingerprint_of(meta: dict) -> str | None:
    """The fingerprint a ``meta.json`` should hold, from its own config, clip count, seed and
    generator version (None when those are missing)."""
    try:
        key = json.dumps({"config": meta["config"], "n_clips": meta["n_clips"], "seed": meta["seed"],
                          "generator_version": meta["generator_version"]}, sort_keys=True)
    except (KeyError, TypeError):
        return None
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _read_marker(folder: Path) -> dict | None:
    """``folder/meta.json`` when it is this generator's marker with a consistent fingerprint."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("generator") != "vssl_core.data.synth":
        return None
    return meta if meta.get("fingerprint") == _fingerprint_of(meta) else None


def _expected_files(meta: dict) -> set[str]:
    """Relative paths the generator writes for ``meta`` (the recorded list, or the layout of
    datasets written before the list was recorded)."""
    if isinstance(meta.get("files"), dict):
        return set(meta["files"]) | {"meta.json"}
    try:
        seed, fps = int(meta["seed"]), int(meta["config"]["fps"])
        names = [clip_name(seed, i) for i in range(int(meta["n_clips"]))]
    except (KeyError, TypeError, ValueError):
        return {"meta.json"}                      # unknown layout: every other file is foreign
    return ({"meta.json", "README.md", "annotations/video_annotations.csv",
             "annotations/audio_annotations.csv", "annotations/objects.csv"}
            | {f"audio/{c}.wav" for c in names} | {f"video/video_{fps}fps/{c}.mp4" for c in names})


def _check_replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is missing, empty or a dataset of this generator
    holding only the files it wrote."""
    if not out.exists():
        return
    if not out.is_dir():
        raise data_error(out, None, "exists and is a file", "choose a new or empty folder")
    present = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    if not present and not any(out.iterdir()):
        return
    meta = _read_marker(out)
    if meta is None:
        raise data_error(out, "meta.json", "the folder is not empty and holds no marker of this "
                         "generator (a meta.json it wrote, with a matching fingerprint)",
                         "choose a new or empty folder; nothing was deleted")
    foreign = [f for f in present if f not in _expected_files(meta)]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise data_error(out, foreign[0], f"the synthetic dataset also holds files the generator "
                         f"did not write ({', '.join(foreign[:3])}{more})",
                         "move them elsewhere or choose another folder; nothing was deleted")


def _check_config(config: SceneConfig) -> None:
    """Every number of ``config`` finite (SceneConfig's own checks let NaN through some fields)."""
    for name, value in asdict(config).items():
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not np.isfinite(v) for v in values):
            raise data_error(None, name, f"{value!r} is not finite", "give a finite number")


def _check_args(n_clips: int, seed: int, n_jobs: int) -> None:
    if not isinstance(n_clips, (int, np.integer)) or n_clips < 1:
        raise data_error(None, "n_clips", f"{n_clips!r} is not a positive integer", "ask for >= 1 clip")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise data_error(None, "seed", f"{seed!r} is not an integer >= 0", "use e.g. seed=0")
    if not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise data_error(None, "n_jobs", f"{n_jobs!r} is not a positive integer", "use 1 or more")


def generate(out_dir: str | os.PathLike, n_clips: int, seed: int, config: SceneConfig = SceneConfig(),
             n_jobs: int = 2, progress: bool = True) -> Path:
    """Generate ``n_clips`` synthetic clips into ``out_dir`` (Urbansas layout), atomically.

    Parameters
    ----------
    out_dir : path
        Dataset root to create. An existing folder is replaced only if it is empty or a dataset
        this generator wrote (its ``meta.json`` marker with a consistent fingerprint, and no file
        it did not write); anything else is a :class:`DataError` and is left untouched. The new
        folder appears in one rename when complete.
    n_clips : int
        Number of clips (>= 1).
    seed : int
        Dataset seed (>= 0); clip ``i`` uses ``SeedSequence(seed, spawn_key=(i,))``.
    config : SceneConfig
        Scene content, sizes, rates.
    n_jobs : int
        Worker processes (1: in this process). The output bytes do not depend on it.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Path of the dataset root.
    """
    _check_args(n_clips, seed, n_jobs)
    _check_config(config)
    out = Path(out_dir).expanduser()
    _check_replaceable(out)
    with atomic_dir(out) as tmp:
        for sub in ("annotations", "audio", f"video/video_{config.fps}fps"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        tasks = [(str(tmp), int(seed), i, config) for i in range(int(n_clips))]
        bar = dict(total=len(tasks), disable=not progress, desc="synth clips", unit="clip")
        if n_jobs == 1:
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)          # same code path as the workers; restored below
            try:
                results = [_make_clip(t) for t in tqdm(tasks, **bar)]
            finally:
                cv2.setNumThreads(threads)
        else:
            results = _run_pool(tasks, n_jobs, bar)
        video = [r for c in results for r in c.video]
        audio = [r for c in results for r in c.audio]
        objects = [r for c in results for r in c.objects]
        ann = tmp / "annotations"
        (ann / "video_annotations.csv").write_text(_csv(video, VIDEO_COLUMNS, True), newline="")
        (ann / "audio_annotations.csv").write_text(_csv(audio, AUDIO_COLUMNS, True), newline="")
        (ann / "objects.csv").write_text(_csv(objects, OBJECT_COLUMNS, False), newline="")
        n_events = sum(1 for r in audio if r[1] != -1)
        meta = {
            "generator": "vssl_core.data.synth", "generator_version": GENERATOR_VERSION,
            "seed": int(seed), "n_clips": int(n_clips), "config": asdict(config),
            "fingerprint": fingerprint(config, int(n_clips), int(seed)),
            "annotation_fps": ANNOTATION_FPS, "counts": {"boxes": len(video), "events": n_events,
                                                         "objects_rows": len(objects)},
        }
        (tmp / "README.md").write_text(_readme(meta))
        meta["files"] = record_files(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _readme(meta: dict) -> str:
    return (
        "# Synthetic Urbansas-layout street scenes\n\n"
        f"Generated by `vssl_core.data.synth` version {meta['generator_version']} with seed "
        f"{meta['seed']}: {meta['n_clips']} clips, {meta['counts']['boxes']} boxes, "
        f"{meta['counts']['events']} sound events. The configuration is in `meta.json`.\n\n"
        "Ground truth boxes (`annotations/video_annotations.csv`) are the sounding visible vehicles "
        "(moving and idling); parked vehicles are silent and unannotated. "
        "`annotations/objects.csv` lists every object with its state. Regenerate with\n"
        f"`python -m vssl_core synth --out DIR --clips {meta['n_clips']} --seed {meta['seed']}` "
        "(plus the same config options).\n"
    )


def ensure_synthetic(n_clips: int, seed: int, config: SceneConfig = SceneConfig(),
                     root: str | os.PathLike | None = None, *, n_jobs: int = 2,
                     progress: bool = True) -> Path:
    """A synthetic dataset for ``(config, n_clips, seed)``, generated once and then reused.

    It lives in ``<root>/<fingerprint>/`` with ``root`` = ``data_dir() / "synth"`` by default
    (:func:`fingerprint` covers the config, the clip count, the seed and
    :data:`GENERATOR_VERSION`). A folder is reused when its ``meta.json`` names the same
    fingerprint and every file it lists is still there with the recorded size and SHA-256;
    otherwise the dataset is generated again (and a line on stderr says which file changed).
    Generation is atomic, so an interrupted run leaves nothing half-written.
    """
    _check_args(n_clips, seed, n_jobs)
    base = Path(root).expanduser() if root is not None else data_dir() / "synth"
    fp = fingerprint(config, int(n_clips), int(seed))
    path = base / fp
    problem = _reuse_problem(path, fp)
    if problem is None:
        return path
    if path.exists():
        print(f"synthetic dataset {path}: {problem}; generating it again", file=sys.stderr)
    return generate(path, n_clips, seed, config, n_jobs=n_jobs, progress=progress)


def _reuse_problem(path: Path, fp: str) -> str | None:
    """Why the dataset at ``path`` cannot be reused for fingerprint ``fp`` (None: it can)."""
    if not (path / "meta.json").is_file():
        return "no meta.json"
    meta = _read_marker(path)
    if meta is None or meta.get("fingerprint") != fp:
        return "meta.json is unreadable or names another dataset"
    if not isinstance(meta.get("files"), dict):
        return "written by an older version that recorded no file hashes"
    changed = changed_files(path, meta["files"])
    if changed:
        return f"{changed[0]} differs from what the generator wrote ({len(changed)} file(s) changed)"
    return None
