"""Model-ready evaluation and training sets built from an Urbansas-layout folder, cached on disk.

An **evaluation set** has one row per evaluation pair (:meth:`UrbansasDataset.pairs`):

=========  ================================  ====================================================
column     type / shape                      content
=========  ================================  ====================================================
clip       string                            canonical clip name
time       float64                           pair time t (s)
image      uint8 (S, S, 3)                   RGB frame nearest to t, resized to S x S
                                             (``cv2.INTER_AREA``, aspect ratio not kept)
flow       float32 (224, 224)                Farneback magnitude at t (:mod:`vssl_core.data.flow`),
                                             computed at the native frame size (or
                                             ``FlowParams.resize_to``) and resized with
                                             ``cv2.INTER_LINEAR``; values are NOT rescaled: px per
                                             8-fps step at the native resolution
audio      float32 (C, round(sec * sr))      audio window centred on t: ``[t - sec/2, t + sec/2)``
                                             (1 s from ``t - 0.5`` by default, the FlowGrad window),
                                             zero-padded outside the clip
gt         uint8 (224, 224)                  ground truth, :func:`vssl_core.eval.metrics.gt_map_urbansas`
                                             (boxes scaled with int truncation, union, binary)
n_boxes    int32                             number of boxes
boxes      list of float64 (4 * n_boxes)     boxes flattened row-major, 1280x720 annotation units
labels     list of int64 (n_boxes)           class ids
flow_field float32 (S, S, 2)                 only with ``flow_field=True``: the mean Farneback
                                             field (dx, dy) over the same window, resized to S
                                             (values unchanged); Hear The Flow's input
=========  ================================  ====================================================

A **training set** (self-supervised windows, :meth:`UrbansasDataset.random_windows`) has the
columns clip, start (s), time (= start + sec/2, the window centre), image (S, S, 3), audio
(C, round(sec * sr)) from ``start``, flow (S, S) (magnitude at the centre frame, same units as
above) and, with ``flow_field=True``, flow_field (S, S, 2).

Both are Hugging Face :class:`datasets.Dataset` objects, saved with ``save_to_disk`` under
``data/cache/<name>-<fingerprint>/dataset`` (written atomically, :func:`vssl_core.repro.cache.cached`)
and keyed by the dataset root path, the SHA-256 of both annotation files, the size and mtime of
every media file used, the skipped clips, the protocol/windows and every parameter. Each clip is
decoded once (frames for the images and the flow in one pass), in parallel across clips.
A cached set keeps its fixed-shape columns (image, flow, audio, gt, flow_field) **once**, as
``.npy`` files beside the Arrow table, which holds nulls for them (``columns-npy/``,
:mod:`vssl_core.data.columns`): the disk holds one copy, and reads are memory-mapped. Use
:func:`as_numpy` to get stacked arrays. torch-free.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import datasets
import numpy as np

from vssl_core.repro import cache
from vssl_core.repro.paths import cache_dir
from vssl_core.data.flow import FlowParams, flow_and_field_from_frames, flow_from_frames, imap_clips, window_frame_pairs
from vssl_core.eval.metrics import GRID, gt_map_urbansas
from vssl_core.data import columns as columns_npy
from vssl_core.data import media
from vssl_core.data.urbansas import URBANSAS_FRAME, UrbansasDataset

#: Bump when the content or layout of the cached sets changes.
FORMAT_VERSION = 1
_WRITER_BATCH = 64


@dataclass(frozen=True)
class _RowConfig:
    image_size: int
    flow_size: int
    flow: FlowParams
    audio_sr: int
    audio_seconds: float
    channels: str
    flow_field: bool = False


def _clip_rows(task: tuple) -> dict[str, np.ndarray]:
    """Worker: images, flow maps and audio windows of one clip (one decode pass)."""
    vpath, vinfo, apath, ainfo, times, starts, cfg = task
    img_idx = [media.frame_index(t, vinfo.fps, vinfo.n_frames) for t in times]
    flow_idx = {i for t in times
                for p in window_frame_pairs(t, vinfo.fps, vinfo.n_frames, cfg.flow) for i in p}
    frames = media.read_frames(vpath, set(img_idx) | flow_idx, vinfo.n_frames)
    s, fs = cfg.image_size, cfg.flow_size
    images = np.stack([cv2.resize(frames[i], (s, s), interpolation=cv2.INTER_AREA)
                       for i in img_idx])
    out: dict[str, np.ndarray] = {"image": images}
    pair_cache: dict = {}  # Farneback fields shared by the overlapping windows of this clip
    if cfg.flow_field:
        both = [flow_and_field_from_frames(frames, t, vinfo.fps, vinfo.n_frames, cfg.flow, pair_cache)
                for t in times]
        mags = [m for m, _ in both]
        out["flow_field"] = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_LINEAR)
                                      for _, f in both]).astype(np.float32)
    else:
        mags = [flow_from_frames(frames, t, vinfo.fps, vinfo.n_frames, cfg.flow, cache=pair_cache)
                for t in times]
    out["flow"] = np.stack([cv2.resize(m, (fs, fs), interpolation=cv2.INTER_LINEAR)
                            for m in mags]).astype(np.float32)
    out["audio"] = np.stack([media.read_audio(apath, a, cfg.audio_seconds, cfg.audio_sr, cfg.channels,
                                              info=ainfo) for a in starts])
    return out


def _tasks(dataset: UrbansasDataset, items: Sequence[tuple[str, float, float]],
           cfg: _RowConfig) -> tuple[list[str], list[list[int]], list[tuple]]:
    by_clip: dict[str, list[int]] = {}
    for i, (clip, _, _) in enumerate(items):
        by_clip.setdefault(clip, []).append(i)
    clips = list(by_clip)
    tasks = [(dataset.video_path(c), dataset.video_info(c), dataset.audio_path(c),
              dataset.audio_info(c), [items[i][1] for i in by_clip[c]],
              [items[i][2] for i in by_clip[c]], cfg) for c in clips]
    return clips, [by_clip[c] for c in clips], tasks


def _n_channels(channels: str) -> int:
    if channels not in ("mono", "stereo"):
        raise ValueError(f"channels must be 'mono' or 'stereo', got {channels!r}")
    return 1 if channels == "mono" else 2


def _diverted(rows: Iterator[dict[str, Any]], features: datasets.Features, n_rows: int,
              folder: Path) -> Iterator[dict[str, Any]]:
    """``rows`` with every fixed-shape column written to ``folder/<column>.npy`` (row ``i`` at
    index ``i``) and set to None in the row itself: the Arrow table then keeps a null there and
    the ``.npy`` file is the only copy (:func:`vssl_core.data.columns.adopt`)."""
    names = columns_npy.fixed_shape_columns(features)
    folder.mkdir(parents=True, exist_ok=True)
    out = {c: np.lib.format.open_memmap(folder / f"{c}.npy", mode="w+", dtype=np.dtype(features[c].dtype),
                                        shape=(n_rows, *features[c].shape)) for c in names}
    i = 0
    for row in rows:
        if i >= n_rows:
            raise RuntimeError(f"more than the {n_rows} expected rows")
        row = dict(row)
        for c in names:
            out[c][i] = row[c]
            row[c] = None
        yield row
        i += 1
    if i != n_rows:
        raise RuntimeError(f"{i} rows built, {n_rows} expected")
    for arr in out.values():
        arr.flush()
    out.clear()


def _to_dataset(gen, features: datasets.Features, tmp: Path, progress: bool,
                columns_dir: Path | None = None, n_rows: int = 0) -> datasets.Dataset:
    if columns_dir is not None:
        rows = gen
        gen = (lambda: _diverted(rows(), features, n_rows, Path(columns_dir)))
    was_disabled = datasets.utils.are_progress_bars_disabled()
    progress = False  # our per-clip bar is the progress; datasets' "Generating train split: n/0" is not
    if not progress:
        datasets.utils.disable_progress_bars()
    try:
        return datasets.Dataset.from_generator(
            gen, features=features, cache_dir=str(tmp), fingerprint="vssl-build",
            writer_batch_size=_WRITER_BATCH)
    finally:
        if not progress and not was_disabled:
            datasets.utils.enable_progress_bars()


def _select(dataset: UrbansasDataset, protocol: str, clips: Sequence[str] | None) -> list:
    """The pairs of ``protocol``, restricted to ``clips`` when given (pair order kept)."""
    pairs = list(dataset.pairs(protocol))
    if clips is None:
        return pairs
    keep = set(clips)
    return [p for p in pairs if p.clip in keep]


def _eval_rows(dataset: UrbansasDataset, protocol: str, cfg: _RowConfig, n_jobs: int,
               progress: bool, clips: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    pairs = _select(dataset, protocol, clips)
    half = cfg.audio_seconds / 2.0
    items = [(p.clip, p.time, p.time - half) for p in pairs]
    clips, index, tasks = _tasks(dataset, items, cfg)
    for idx, res in zip(index, imap_clips(_clip_rows, tasks, n_jobs=n_jobs, progress=progress,
                                          desc="eval set")):
        for k, i in enumerate(idx):
            p = pairs[i]
            yield {
                "clip": p.clip, "time": float(p.time), "image": res["image"][k],
                "flow": res["flow"][k], "audio": res["audio"][k],
                "gt": gt_map_urbansas(p.boxes, URBANSAS_FRAME).astype(np.uint8),
                "n_boxes": len(p.boxes), "boxes": p.boxes.ravel().tolist(),
                "labels": p.labels.tolist(),
                **({"flow_field": res["flow_field"][k]} if cfg.flow_field else {}),
            }


def _field_feature(image_size: int, flow_field: bool) -> dict[str, Any]:
    return {"flow_field": datasets.Array3D((image_size, image_size, 2), "float32")} if flow_field else {}


def eval_features(image_size: int, n_channels: int, n_samples: int,
                  flow_field: bool = False) -> datasets.Features:
    """Features of an evaluation set (see the module docstring)."""
    return datasets.Features({**_field_feature(image_size, flow_field),
        "clip": datasets.Value("string"),
        "time": datasets.Value("float64"),
        "image": datasets.Array3D((image_size, image_size, 3), "uint8"),
        "flow": datasets.Array2D((GRID, GRID), "float32"),
        "audio": datasets.Array2D((n_channels, n_samples), "float32"),
        "gt": datasets.Array2D((GRID, GRID), "uint8"),
        "n_boxes": datasets.Value("int32"),
        "boxes": datasets.List(datasets.Value("float64")),
        "labels": datasets.List(datasets.Value("int64")),
    })


def build_eval_set(dataset: UrbansasDataset, protocol: str = "flowgrad", image_size: int = 224,
                   flow: FlowParams = FlowParams(), audio_sr: int = 16000,
                   audio_seconds: float = 1.0, channels: str = "mono", n_jobs: int = 2,
                   progress: bool = True, workdir: str | Path | None = None,
                   clips: Sequence[str] | None = None, flow_field: bool = False, *,
                   columns_dir: str | Path | None = None) -> datasets.Dataset:
    """Build (without caching) the evaluation set of ``protocol``; see the module docstring.

    Parameters
    ----------
    dataset : UrbansasDataset
    protocol : {"flowgrad", "how_to_listen"}
    image_size : int
        Side S of the square images, pixels.
    flow : FlowParams
    audio_sr : int
        Audio sample rate, Hz.
    audio_seconds : float
        Audio window length, centred on the pair time.
    channels : {"mono", "stereo"}
    n_jobs : int
        Worker processes (across clips).
    progress : bool
        Show a progress bar.
    workdir : path, optional
        Folder for the Arrow files the returned Dataset memory-maps (default
        ``data/cache/_build``). :func:`load_eval_set` passes a temporary folder inside the cache
        entry and removes it after ``save_to_disk``.
    clips : sequence of str, optional
        Keep only the pairs of these clips (e.g. a held-out evaluation split).
    flow_field : bool
        Also store ``flow_field`` ``(S, S, 2)`` float32: the mean Farneback field (dx, dy) over
        the same window, resized to the image size, values unchanged (Hear The Flow's input).
    columns_dir : path, optional
        Write the fixed-shape columns (image, flow, audio, gt, flow_field) to
        ``<columns_dir>/<column>.npy`` instead of the Arrow table, which then holds nulls there
        (:func:`load_eval_set` does, so that its cache keeps one copy of them).

    Returns
    -------
    datasets.Dataset
        One row per pair, in pair order.
    """
    cfg = _RowConfig(int(image_size), GRID, flow, int(audio_sr), float(audio_seconds), channels,
                     bool(flow_field))
    n_samples = int(round(audio_seconds * audio_sr))
    feats = eval_features(cfg.image_size, _n_channels(channels), n_samples, cfg.flow_field)
    work = Path(workdir) if workdir is not None else cache_dir() / "_build"
    work.mkdir(parents=True, exist_ok=True)
    n_rows = len(_select(dataset, protocol, clips)) if columns_dir is not None else 0
    return _to_dataset(lambda: _eval_rows(dataset, protocol, cfg, n_jobs, progress, clips), feats,
                       work, progress, None if columns_dir is None else Path(columns_dir), n_rows)


def _dataset_key(dataset: UrbansasDataset, clips: Sequence[str]) -> dict[str, Any]:
    ann = dataset.root / "annotations"
    stats = {}
    for c in sorted(set(clips)):
        for p in (dataset.video_path(c), dataset.audio_path(c)):
            st = p.stat()
            stats[str(p.relative_to(dataset.root))] = [st.st_size, st.st_mtime_ns]
    return {
        "root": str(dataset.root),
        "annotations": {n: cache.file_sha256(ann / n)
                        for n in ("video_annotations.csv", "audio_annotations.csv")},
        "media": stats,
        "skipped": {k: sorted(v) for k, v in sorted(dataset.skipped.items())},
    }


def _save(ds_builder, tmp: Path, progress: bool) -> None:
    """Build a set into ``tmp/dataset``: the small columns in Arrow, the fixed-shape ones only as
    ``.npy`` files beside it (one copy on disk; :func:`vssl_core.data.columns.adopt`)."""
    npy = tmp / "_npy"
    ds = ds_builder(tmp / "_arrow", npy)
    was_disabled = datasets.utils.are_progress_bars_disabled()
    progress = False  # our per-clip bar is the progress; datasets' "Saving the dataset" is not
    if not progress:
        datasets.utils.disable_progress_bars()
    try:
        ds.save_to_disk(str(tmp / "dataset"))
    finally:
        if not progress and not was_disabled:
            datasets.utils.enable_progress_bars()
    names = columns_npy.fixed_shape_columns(ds.features)
    del ds
    shutil.rmtree(tmp / "_arrow")
    saved = datasets.load_from_disk(str(tmp / "dataset"))
    columns_npy.adopt(saved, {c: npy / f"{c}.npy" for c in names})
    del saved
    shutil.rmtree(npy, ignore_errors=True)  # emptied by adopt; absent when no column has a fixed shape


def load_eval_set(dataset: UrbansasDataset, protocol: str = "flowgrad", image_size: int = 224,
                  flow: FlowParams = FlowParams(), audio_sr: int = 16000,
                  audio_seconds: float = 1.0, channels: str = "mono", n_jobs: int = 2,
                  progress: bool = True, cache_root: str | Path | None = None,
                  clips: Sequence[str] | None = None, flow_field: bool = False) -> datasets.Dataset:
    """The evaluation set, from the cache or built once and cached (atomically).

    Same parameters as :func:`build_eval_set`, plus ``cache_root`` (default ``data/cache``).
    ``n_jobs`` and ``progress`` do not change the content and are not part of the key. The
    entry keeps the fixed-shape columns once, as ``.npy`` files beside the Arrow table (which
    holds nulls for them); :func:`as_numpy` reads them from there. Entries written before that
    (full Arrow table) are read as they are.
    """
    pairs = _select(dataset, protocol, clips)
    key = {"kind": "urbansas-eval", "version": FORMAT_VERSION, "grid": GRID,
           "dataset": _dataset_key(dataset, sorted({p.clip for p in pairs})), "protocol": protocol,
           "clips": None if clips is None else sorted(set(clips)),
           "image_size": int(image_size), "flow": flow, "audio_sr": int(audio_sr),
           "audio_seconds": float(audio_seconds), "channels": channels,
           **({"flow_field": True} if flow_field else {})}

    def build(tmp: Path) -> None:
        _save(lambda work, npy: build_eval_set(dataset, protocol, image_size, flow, audio_sr,
                                               audio_seconds, channels, n_jobs, progress, work, clips,
                                               flow_field, columns_dir=npy),
              tmp, progress)

    path = cache.cached("eval-urbansas", key, build, root=cache_root)
    return datasets.load_from_disk(str(path / "dataset"))


# ---------------------------------------------------------------------------- training windows
def train_features(image_size: int, n_channels: int, n_samples: int,
                   flow_field: bool = False) -> datasets.Features:
    """Features of a training set (see the module docstring)."""
    return datasets.Features({**_field_feature(image_size, flow_field),
        "clip": datasets.Value("string"),
        "start": datasets.Value("float64"),
        "time": datasets.Value("float64"),
        "image": datasets.Array3D((image_size, image_size, 3), "uint8"),
        "audio": datasets.Array2D((n_channels, n_samples), "float32"),
        "flow": datasets.Array2D((image_size, image_size), "float32"),
    })


def _train_rows(dataset: UrbansasDataset, windows: Sequence[tuple[str, float]], cfg: _RowConfig,
                n_jobs: int, progress: bool) -> Iterator[dict[str, Any]]:
    half = cfg.audio_seconds / 2.0
    items = [(c, float(s) + half, float(s)) for c, s in windows]
    clips, index, tasks = _tasks(dataset, items, cfg)
    rows: list[dict[str, Any] | None] = [None] * len(items)
    # rows are produced per clip; emit them in the order of `windows` as soon as possible
    nxt = 0
    for idx, res in zip(index, imap_clips(_clip_rows, tasks, n_jobs=n_jobs, progress=progress,
                                          desc="train set")):
        for k, i in enumerate(idx):
            c, t, s = items[i]
            rows[i] = {"clip": c, "start": s, "time": t, "image": res["image"][k],
                       "audio": res["audio"][k], "flow": res["flow"][k],
                       **({"flow_field": res["flow_field"][k]} if cfg.flow_field else {})}
        while nxt < len(rows) and rows[nxt] is not None:
            yield rows[nxt]
            rows[nxt] = None
            nxt += 1
    assert nxt == len(rows)


def build_train_set(dataset: UrbansasDataset, windows: Sequence[tuple[str, float]],
                    image_size: int = 224, flow: FlowParams = FlowParams(),
                    audio_sr: int = 16000, audio_seconds: float = 5.0, channels: str = "mono",
                    n_jobs: int = 2, progress: bool = True,
                    workdir: str | Path | None = None, flow_field: bool = False, *,
                    columns_dir: str | Path | None = None) -> datasets.Dataset:
    """Build (without caching) a training set from ``windows`` = ``[(clip, start_s), ...]``.

    The image and the flow are taken at the window centre ``start + audio_seconds / 2``; the
    audio is ``[start, start + audio_seconds)``. Rows follow the order of ``windows``. The flow
    is resized to ``image_size`` (values unchanged, px per 8-fps step at native resolution).
    ``workdir``, ``flow_field`` and ``columns_dir`` as in :func:`build_eval_set`.
    """
    cfg = _RowConfig(int(image_size), int(image_size), flow, int(audio_sr), float(audio_seconds),
                     channels, bool(flow_field))
    feats = train_features(cfg.image_size, _n_channels(channels),
                           int(round(audio_seconds * audio_sr)), cfg.flow_field)
    work = Path(workdir) if workdir is not None else cache_dir() / "_build"
    work.mkdir(parents=True, exist_ok=True)
    windows = [(str(c), float(s)) for c, s in windows]
    return _to_dataset(lambda: _train_rows(dataset, windows, cfg, n_jobs, progress), feats, work,
                       progress, None if columns_dir is None else Path(columns_dir), len(windows))


def load_train_set(dataset: UrbansasDataset, windows: Sequence[tuple[str, float]],
                   image_size: int = 224, flow: FlowParams = FlowParams(),
                   audio_sr: int = 16000, audio_seconds: float = 5.0, channels: str = "mono",
                   n_jobs: int = 2, progress: bool = True,
                   cache_root: str | Path | None = None, flow_field: bool = False) -> datasets.Dataset:
    """The training set of ``windows``, from the cache or built once (see :func:`build_train_set`;
    the entry keeps its fixed-shape columns once, as :func:`load_eval_set` does)."""
    windows = [(str(c), float(s)) for c, s in windows]
    key = {"kind": "urbansas-train", "version": FORMAT_VERSION,
           "dataset": _dataset_key(dataset, [c for c, _ in windows]), "windows": windows,
           "image_size": int(image_size), "flow": flow, "audio_sr": int(audio_sr),
           "audio_seconds": float(audio_seconds), "channels": channels,
           **({"flow_field": True} if flow_field else {})}

    def build(tmp: Path) -> None:
        _save(lambda work, npy: build_train_set(dataset, windows, image_size, flow, audio_sr,
                                                audio_seconds, channels, n_jobs, progress, work,
                                                flow_field, columns_dir=npy), tmp, progress)

    path = cache.cached("train-urbansas", key, build, root=cache_root)
    return datasets.load_from_disk(str(path / "dataset"))


def as_numpy(ds: datasets.Dataset, columns: Sequence[str] | None = None, mmap: bool = True,
             dtypes: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Stacked numpy arrays of ``columns`` (default: all), with the stored dtypes.

    Reads the Arrow table directly (``ds.with_format("numpy")`` would turn uint8 images into
    int64). Returns a dict column -> array with the row axis first (e.g. ``image``
    ``(N, S, S, 3)`` uint8, ``flow`` ``(N, 224, 224)`` float32); list columns (``boxes``,
    ``labels``) come back as object arrays of per-row 1-D arrays, strings as ``<U`` arrays.

    With ``mmap=True`` (default) the fixed-shape columns of a dataset read from disk come back
    memory-mapped from a ``.npy`` copy written once beside it (:mod:`vssl_core.data.columns`):
    file-backed pages the kernel can reclaim, instead of anonymous memory. They are writable
    copy-on-write arrays (the file never changes). ``dtypes`` casts columns (e.g.
    ``{"gt": np.float32}``), once when the copy is written. The cached sets of
    :func:`load_eval_set` and :func:`load_train_set` keep those columns *only* in their ``.npy``
    files (:func:`vssl_core.data.columns.adopt`); they are read from there by both routes, with
    the same values, dtypes and shapes.
    """
    cols = list(columns) if columns is not None else list(ds.column_names)
    dtypes = dict(dtypes or {})
    out: dict[str, np.ndarray] = {}
    rest = []
    stored = columns_npy.stored_columns(ds)
    for c in cols:
        if c in stored:    # a cached set keeps this column only in its .npy file
            out[c] = columns_npy.stored_column(ds, c, dtypes.get(c), mmap=mmap)
        elif mmap and columns_npy.mappable(ds, c):
            out[c] = columns_npy.mapped_column(ds, c, dtypes.get(c))
        else:
            rest.append(c)
    table = ds.with_format("arrow", columns=rest)[:] if rest else None
    for c in rest:
        col = table.column(c).combine_chunks()
        if isinstance(col.type, datasets.features.features._ArrayXDExtensionType):
            v = col.to_numpy(zero_copy_only=False)
        else:
            v = col.to_numpy(zero_copy_only=False)
            v = v.astype(str) if v.dtype == object and len(v) and isinstance(v[0], str) else v
        out[c] = v.astype(dtypes[c], copy=False) if c in dtypes else v
    return {c: out[c] for c in cols}
