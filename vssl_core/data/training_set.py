"""Where every model's training data come from: many short synthetic street scenes.

Self-supervised models memorise when they see a few long clips: 120 ten-second clips give ~25
nearly identical windows each, and a model learns to recognise the clip instead of matching
sounds to objects (held-out retrieval at chance). The companion therefore trains on a separate
set of many short scenes (:class:`TrainingScenes`: by default 3,000 clips of 2 s, each with
0-4 parked vehicles), a few windows per clip, and keeps the evaluation clips of the default set
(:func:`vssl_core.data.arrays.split_clips`) untouched. The last ``val_clips`` scenes are a
validation split: their windows give the validation loss and retrieval of every epoch, and
their labelled pairs a held-out localisation score; training never reads them.

Generation is cached and parallel like every synthetic set (:func:`vssl_core.data.sources.synthetic`).
"""
from __future__ import annotations

from dataclasses import dataclass

from vssl_core.data.arrays import EvalArrays, TrainingArrays, load_evaluation, load_training, split_clips
from vssl_core.data.flow import FlowParams
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.repro.config import PlainConfig
from vssl_core.repro.profiles import TrainingSetup

__all__ = ["TrainingScenes", "ScenesSetup", "TrainingData", "load_training_data"]


@dataclass(frozen=True)
class TrainingScenes(PlainConfig):
    """The short synthetic scenes every model trains on.

    Attributes
    ----------
    clips : int
        Number of scenes (training + validation).
    seconds : float
        Length of each scene (a multiple of 0.5 s).
    seed : int
        Generator seed (the default evaluation set uses seed 0: keep them apart).
    val_clips : int
        The last ``val_clips`` scenes (by name) are the validation split.
    max_parked : int
        Parked (silent) vehicles per scene: uniform in ``0..max_parked``.
    """

    clips: int = 3000
    seconds: float = 2.0
    seed: int = 2000
    val_clips: int = 100
    max_parked: int = 4

    def __post_init__(self) -> None:
        if self.clips < 2 or not 0 < self.val_clips < self.clips or self.max_parked < 0 or self.seconds <= 0:
            raise ValueError(f"invalid TrainingScenes {self}")

    def dataset(self, progress: bool = True) -> UrbansasDataset:
        """The scenes (generated once into ``data/synth/``, then reused)."""
        from vssl_core.data import sources

        config = sources.scene_config(duration=float(self.seconds), n_parked=(0, int(self.max_parked)))
        return sources.synthetic(self.clips, self.seed, config, progress=progress)

    def split(self, dataset: UrbansasDataset) -> tuple[list[str], list[str]]:
        """(training scenes, validation scenes)."""
        return split_clips(dataset, self.val_clips)


@dataclass(frozen=True)
class ScenesSetup(TrainingSetup):
    """A training study's Setup (:class:`~vssl_core.repro.profiles.TrainingSetup`) with the
    fields that choose its training scenes and evaluation clips.

    The RCGrad family's and Hear The Flow's setups derive from it (their defaults are the same
    scenes, so the two studies share one cached training set).

    Attributes
    ----------
    eval_clips : int
        Held-out clips of the default synthetic set (the last ones by name): the evaluation pairs.
    train_scenes, scene_seconds, scene_seed, val_scenes : int, float, int, int
        The training scenes (:attr:`scenes`, a :class:`TrainingScenes`).
    train_windows, val_windows : int
        Random windows drawn from the training and the validation scenes.
    """

    eval_clips: int = 40
    train_scenes: int = 3000
    scene_seconds: float = 2.0
    scene_seed: int = 2000
    val_scenes: int = 100
    train_windows: int = 3000
    val_windows: int = 512

    @property
    def scenes(self) -> TrainingScenes:
        """The training scenes of these fields."""
        return TrainingScenes(self.train_scenes, self.scene_seconds, self.scene_seed, self.val_scenes)


@dataclass(frozen=True)
class TrainingData:
    """Training and validation windows, and the fingerprint of their source."""

    train: TrainingArrays
    val: TrainingArrays
    key: str


def load_training_data(scenes: TrainingScenes, *, n_windows: int, n_val_windows: int, seconds: float,
                       image_size: int, flow: FlowParams, audio_sr: int, seed: int, flow_field: bool = False,
                       progress: bool = True) -> TrainingData:
    """``n_windows`` random windows of the training scenes and ``n_val_windows`` of the validation
    scenes (cached arrays; see :func:`vssl_core.data.arrays.load_training` for units)."""
    ds = scenes.dataset(progress)
    train_clips, val_clips = scenes.split(ds)
    common = dict(seconds=seconds, image_size=image_size, flow=flow, audio_sr=audio_sr, flow_field=flow_field,
                  progress=progress)
    train, key = load_training(ds, train_clips, n_windows=n_windows, seed=seed, **common)
    val, _ = load_training(ds, val_clips, n_windows=n_val_windows, seed=seed + 1, **common)
    return TrainingData(train, val, key)


def training_data_key(scenes: TrainingScenes, *, n_windows: int, seconds: float, image_size: int,
                      flow: FlowParams, audio_sr: int, seed: int, flow_field: bool = False,
                      progress: bool = True) -> str:
    """The key :func:`load_training_data` returns, computed without decoding any window."""
    from vssl_core.data.arrays import training_key

    ds = scenes.dataset(progress)
    train_clips, _ = scenes.split(ds)
    return training_key(ds, train_clips, n_windows=n_windows, seconds=seconds, image_size=image_size, flow=flow,
                        audio_sr=audio_sr, seed=seed, flow_field=flow_field)


def validation_pairs(scenes: TrainingScenes, *, image_size: int, flow: FlowParams, audio_sr: int,
                     flow_field: bool = False, progress: bool = True) -> EvalArrays:
    """The labelled FlowGrad pairs of the validation scenes: a held-out localisation check per
    epoch that never touches the evaluation clips."""
    ds = scenes.dataset(progress)
    _, val_clips = scenes.split(ds)
    return load_evaluation(ds, val_clips, image_size=image_size, flow=flow, audio_sr=audio_sr,
                           flow_field=flow_field, progress=progress)
