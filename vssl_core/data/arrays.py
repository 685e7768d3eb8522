"""Model-ready arrays of one data split: the held-out evaluation pairs and the training windows.

Every study splits a dataset the same way and reads the same cached sets, so they live here,
below the studies:

- :func:`split_clips`: the last ``eval_clips`` clips by name are held out for evaluation; the
  others give unlabelled training windows (their boxes and events are never read).
- :func:`load_evaluation`: the FlowGrad pairs of some clips as an :class:`EvalArrays` (cached by
  :func:`vssl_core.data.evalset.load_eval_set`): frames, flow, 1 s of audio from ``t - 0.5``
  (another window centred on ``t`` with ``audio_seconds``), ground-truth maps and boxes.
- :func:`load_training`: random training windows of some clips as a :class:`TrainingArrays`, with
  the fingerprint of their source (the key under which trained models are cached).

Units: images ``uint8 (N, S, S, 3)`` RGB; flow magnitude ``float32`` in px per 8-fps step at the
native frame resolution (``(N, 224, 224)`` for evaluation pairs, ``(N, S, S)`` for training
windows); flow field ``float32 (N, S, S, 2)`` = (dx, dy) in the same units; audio ``float32
(N, C, T)`` waveforms at ``audio_sr`` Hz; ground truth ``float32 (N, 224, 224)`` in {0, 1}; boxes
``(n_i, 4)`` ``[x, y, w, h]`` in 1280x720 annotation pixels. See :mod:`vssl_core.data.evalset`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from vssl_core.data.evalset import as_numpy, load_eval_set, load_train_set
from vssl_core.data.flow import FlowParams
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.repro import cache

__all__ = ["EvalArrays", "TrainingArrays", "EVAL_AUDIO_SECONDS", "split_clips", "load_evaluation",
           "training_windows", "load_training", "load_training_windows"]


@dataclass(frozen=True)
class EvalArrays:
    """Evaluation pairs as arrays, and the input of every map function
    (``maps(model, ev) -> LocalizationMaps``; see :mod:`vssl_core.eval.maps`).

    Attributes
    ----------
    clips : ndarray of str, shape (N,)
    times : ndarray float64, shape (N,)
        Pair times (s).
    images : ndarray uint8, shape (N, S, S, 3)
    flow : ndarray float32, shape (N, 224, 224)
        Flow magnitude, px per 8-fps step (native resolution).
    audio : ndarray float32, shape (N, C, T)
        Waveforms at ``audio_sr``.
    gt : ndarray float32, shape (N, 224, 224), or None
        Ground-truth maps (None for a batch that is only mapped, e.g. in the explorer).
    boxes : list of N arrays (n_i, 4)
        1280x720 annotation units.
    flow_field : ndarray float32, shape (N, S, S, 2), or None
        (dx, dy) px/step, when asked for (Hear The Flow's input).
    audio_sr : int
        Sample rate of ``audio`` (Hz).
    """

    clips: np.ndarray
    times: np.ndarray
    images: np.ndarray
    flow: np.ndarray
    audio: np.ndarray
    gt: np.ndarray | None
    boxes: list
    flow_field: np.ndarray | None = None
    audio_sr: int = 16000

    def __len__(self) -> int:
        return len(self.clips)

    def subset(self, index: Sequence[int] | slice) -> EvalArrays:
        """The samples ``index`` (a slice keeps views, a list copies)."""
        if isinstance(index, slice):
            i: slice | np.ndarray = index
            boxes = self.boxes[index]
        else:
            i = np.asarray(index, dtype=int)
            boxes = [self.boxes[k] for k in i]
        return replace(self, clips=self.clips[i], times=self.times[i], images=self.images[i],
                       flow=self.flow[i], audio=self.audio[i],
                       gt=None if self.gt is None else self.gt[i], boxes=boxes,
                       flow_field=None if self.flow_field is None else self.flow_field[i])

    def with_audio(self, audio: np.ndarray, audio_sr: int | None = None) -> EvalArrays:
        """The same frames heard with other sounds (``(N, C, T)``, e.g. swapped between samples)."""
        if len(audio) != len(self):
            raise ValueError(f"{len(audio)} audio clips for {len(self)} samples")
        return replace(self, audio=audio, audio_sr=self.audio_sr if audio_sr is None else int(audio_sr))


@dataclass(frozen=True)
class TrainingArrays:
    """Training windows as arrays (see the module docstring for units).

    Attributes
    ----------
    images : ndarray uint8, shape (N, S, S, 3)
    audio : ndarray float32, shape (N, C, T)
    flow : ndarray float32, shape (N, S, S), or None
    flow_field : ndarray float32, shape (N, S, S, 2), or None
    clips : ndarray of str, shape (N,), or None
        The clip of each window (to split off a validation set by clip).
    """

    images: np.ndarray
    audio: np.ndarray
    flow: np.ndarray | None = None
    flow_field: np.ndarray | None = None
    clips: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def split_clips(dataset: UrbansasDataset, eval_clips: int) -> tuple[list[str], list[str]]:
    """(training clips, evaluation clips): the last ``eval_clips`` clips by name are held out."""
    clips = sorted(dataset.clips)
    if not 0 < eval_clips < len(clips):
        raise ValueError(f"eval_clips must be in 1..{len(clips) - 1}, got {eval_clips}")
    return clips[:-eval_clips], clips[-eval_clips:]


#: FlowGrad's evaluation audio: 1 s centred on the pair time (from ``t - 0.5``).
EVAL_AUDIO_SECONDS = 1.0


def load_evaluation(dataset: UrbansasDataset, clips: Sequence[str] | None, *, image_size: int,
                    flow: FlowParams, audio_sr: int, flow_field: bool = False,
                    progress: bool = True, audio_seconds: float = EVAL_AUDIO_SECONDS) -> EvalArrays:
    """The FlowGrad pairs of ``clips`` (None: all clips) as arrays, cached on disk.

    ``flow_field=True`` adds the 2-channel field (Hear The Flow's input). ``audio_seconds``:
    the audio window, centred on the pair time (``[t - s/2, t + s/2)``; FlowGrad's 1 s by
    default, Hear The Flow's protocol 3 s)."""
    ds = load_eval_set(dataset, "flowgrad", image_size, flow, audio_sr, float(audio_seconds), "mono",
                       progress=progress, clips=clips, flow_field=flow_field)
    a = as_numpy(ds, dtypes={"gt": np.float32})
    boxes = [np.asarray(b, dtype=float).reshape(-1, 4) for b in a["boxes"]]
    return EvalArrays(a["clip"], a["time"], a["image"], a["flow"], a["audio"], a["gt"], boxes,
                      a.get("flow_field"), int(audio_sr))


def training_windows(dataset: UrbansasDataset, clips: Sequence[str], n: int, seconds: float, seed: int
                     ) -> list[tuple[str, float]]:
    """``n`` random windows ``(clip, start)`` of ``seconds`` from ``clips`` (seeded)."""
    return dataset.random_windows(n, seconds, seed=seed, clips=clips)


def _source_key(dataset: UrbansasDataset, windows: list, image_size: int, flow: FlowParams,
                audio_sr: int, seconds: float, flow_field: bool) -> str:
    key = {"root": str(dataset.root), "windows": windows,
           "annotations": cache.file_sha256(dataset.root / "annotations" / "video_annotations.csv"),
           "size": image_size, "flow": flow}
    if flow_field:
        key["field"] = True
    return cache.fingerprint({**key, "sr": audio_sr, "sec": seconds})


def load_training(dataset: UrbansasDataset, clips: Sequence[str], *, n_windows: int, seconds: float,
                  image_size: int, flow: FlowParams, audio_sr: int, seed: int,
                  flow_field: bool = False, progress: bool = True) -> tuple[TrainingArrays, str]:
    """Random training windows of ``clips`` as arrays, and the fingerprint of their source.

    The fingerprint (the model cache's data key) covers the dataset root, the windows, the
    annotation file and every parameter; it is computed without decoding anything
    (:func:`training_key`)."""
    windows = training_windows(dataset, clips, n_windows, seconds, seed)
    ds = load_train_set(dataset, windows, image_size, flow, audio_sr, seconds, "mono", progress=progress,
                        flow_field=flow_field)
    cols = ["image", "audio", "flow_field" if flow_field else "flow"]
    a = as_numpy(ds, cols)
    arrays = TrainingArrays(a["image"], a["audio"], flow=a.get("flow"), flow_field=a.get("flow_field"),
                            clips=np.asarray([c for c, _ in windows]))
    return arrays, _source_key(dataset, windows, image_size, flow, audio_sr, seconds, flow_field)


def training_key(dataset: UrbansasDataset, clips: Sequence[str], *, n_windows: int, seconds: float,
                 image_size: int, flow: FlowParams, audio_sr: int, seed: int,
                 flow_field: bool = False) -> str:
    """The fingerprint :func:`load_training` returns, without loading anything."""
    windows = training_windows(dataset, clips, n_windows, seconds, seed)
    return _source_key(dataset, windows, image_size, flow, audio_sr, seconds, flow_field)


def load_training_windows(dataset: UrbansasDataset, windows: Sequence[tuple[str, float]], *, seconds: float,
                          image_size: int, flow: FlowParams, audio_sr: int, flow_field: bool = False,
                          progress: bool = True) -> tuple[TrainingArrays, str]:
    """Like :func:`load_training`, for explicit ``windows`` ``[(clip, start_s), ...]`` (rows in
    their order): the training arrays (memory-mapped columns) and the fingerprint of their source.

    The cached set is built clip by clip and written in window order, so windows sorted by clip
    are written as each clip is decoded (bounded memory; see
    :func:`vssl_core.data.folders.folder_training_data`)."""
    windows = [(str(c), float(t)) for c, t in windows]
    ds = load_train_set(dataset, windows, image_size, flow, audio_sr, seconds, "mono", progress=progress,
                        flow_field=flow_field)
    a = as_numpy(ds, ["image", "audio", "flow_field" if flow_field else "flow"])
    arrays = TrainingArrays(a["image"], a["audio"], flow=a.get("flow"), flow_field=a.get("flow_field"),
                            clips=np.asarray([c for c, _ in windows]))
    return arrays, _source_key(dataset, windows, image_size, flow, audio_sr, seconds, flow_field)
