"""The RCGrad family (RCGrad, FlowGrad-IC, FlowGrad-EN) trained on the synthetic default, cached.

Three studies use these models: FlowGrad (notebook 02) trains and scores them; the motion sweeps
(notebook 03) and "Do We Need Sound?" (notebook 04) compare against them. They live here, below
the studies, so that no study imports another. One typed :class:`RCGradFamilySetup` is passed
whole; its defaults are the quick profile's ``[02_flowgrad]`` values.

Protocol: self-supervised training uses random windows of the **training clips** only (their
boxes and events are never read; :func:`vssl_core.data.arrays.split_clips`); FlowGrad-IC and -EN
are fine-tuned from the trained RCGrad, as the paper starts them from the released one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vssl_core.data.arrays import load_training, split_clips, training_key
from vssl_core.data.flow import FlowParams
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.repro.profiles import StudySetup

__all__ = ["RCGradFamilySetup", "FAMILY", "train_config", "load_family_training", "family_data_key",
           "cached_rcgrad", "cached_family", "train_family"]

#: The models of the family, in training order.
FAMILY = ("rcgrad", "flowgrad_ic", "flowgrad_en")


@dataclass(frozen=True)
class RCGradFamilySetup(StudySetup):
    """Data split, sizes, training and flow of the RCGrad family (notebook 02's parameters).

    Attributes
    ----------
    eval_clips : int
        Number of held-out clips (the last ones in name order) for evaluation.
    train_windows : int
        Random training windows drawn from the other clips.
    image_size, width, layer4_stride : int, float, int
        Model input side (px), ResNet-18 width multiplier, layer4 stride (1 as RCGrad).
    audio_sr : int
        Model audio rate (Hz).
    train_audio_seconds : float
        Training window length (s). RCGrad trains on 5 s; the quick profile uses 1 s (the audio
        encoder dominates the cost). Evaluation always uses FlowGrad's 1 s from t - 0.5.
    epochs, finetune_epochs : int
        RCGrad epochs; FlowGrad-IC / -EN fine-tuning epochs.
    batch_size, lr, seed : int, float, int
    flow_window_s : float
        Flow aggregation window (0.125 s = one 8-fps pair, the paper).
    compensate_camera : bool
        Subtract global camera motion from the flow (beyond the paper).
    num_threads : int or None
        torch threads while training (None: torch's default).
    """

    PROFILE_TABLE = "02_flowgrad"

    eval_clips: int = 40
    train_windows: int = 3000
    image_size: int = 128
    width: float = 0.5
    layer4_stride: int = 1
    audio_sr: int = 16000
    train_audio_seconds: float = 1.0
    epochs: int = 8
    finetune_epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    flow_window_s: float = 0.125
    compensate_camera: bool = False
    num_threads: int | None = None

    @property
    def flow(self) -> FlowParams:
        return FlowParams(window_s=self.flow_window_s, compensate_camera=self.compensate_camera)


def train_config(setup: RCGradFamilySetup, kind: str):
    """The :class:`~vssl_core.training.contrastive.TrainConfig` of one family member."""
    from vssl_core.models.rcgrad import ModelConfig
    from vssl_core.training.contrastive import TrainConfig

    model = ModelConfig(kind=kind, width=setup.width, layer4_stride=setup.layer4_stride,
                        image_size=setup.image_size, audio_sr=setup.audio_sr)
    epochs = setup.epochs if kind == "rcgrad" else setup.finetune_epochs
    return TrainConfig(model=model, epochs=epochs, batch_size=setup.batch_size, lr=setup.lr,
                       seed=setup.seed, num_threads=setup.num_threads)


def _training_args(setup: RCGradFamilySetup) -> dict:
    return {"n_windows": setup.train_windows, "seconds": setup.train_audio_seconds,
            "image_size": setup.image_size, "flow": setup.flow, "audio_sr": setup.audio_sr,
            "seed": setup.seed}


def family_data_key(setup: RCGradFamilySetup, dataset: UrbansasDataset, clips: Sequence[str]) -> str:
    """The fingerprint of the family's training windows (the model cache's data key)."""
    return training_key(dataset, clips, **_training_args(setup))


def load_family_training(setup: RCGradFamilySetup, dataset: UrbansasDataset, clips: Sequence[str],
                         progress: bool = True):
    """The family's training windows of ``clips`` (:class:`TrainingArrays`) and their data key."""
    return load_training(dataset, clips, progress=progress, **_training_args(setup))


def _train_arrays(arrays):
    from vssl_core.training.contrastive import TrainArrays

    return TrainArrays(arrays.images, arrays.audio, arrays.flow)


def cached_rcgrad(setup: RCGradFamilySetup, dataset: UrbansasDataset, clips: Sequence[str] | None = None,
                  progress: bool = True):
    """The trained RCGrad (cached); the training arrays are loaded only on a cache miss.

    ``clips``: the training clips (default: :func:`split_clips` of ``dataset`` at
    ``setup.eval_clips``)."""
    from vssl_core.training.contrastive import cached_model, cached_train

    clips = split_clips(dataset, setup.eval_clips)[0] if clips is None else clips
    key = family_data_key(setup, dataset, clips)
    model = cached_model(train_config(setup, "rcgrad"), key)
    if model is not None:
        return model
    arrays, key = load_family_training(setup, dataset, clips, progress)
    return cached_train(train_config(setup, "rcgrad"), _train_arrays(arrays), key, progress=progress)


def train_family(setup: RCGradFamilySetup, arrays, data_key: str, progress: bool = True) -> dict:
    """RCGrad from scratch, then FlowGrad-IC and -EN fine-tuned from it (all cached).

    ``arrays`` : :class:`~vssl_core.data.arrays.TrainingArrays` with the flow magnitude."""
    from vssl_core.training.contrastive import cached_train

    ta = _train_arrays(arrays)
    rc = cached_train(train_config(setup, "rcgrad"), ta, data_key, progress=progress)
    out = {"rcgrad": rc}
    for kind in FAMILY[1:]:
        out[kind] = cached_train(train_config(setup, kind), ta, data_key, progress=progress, init_model=rc)
    return out


def cached_family(setup: RCGradFamilySetup, dataset: UrbansasDataset, clips: Sequence[str] | None = None,
                  progress: bool = True) -> dict:
    """:func:`train_family` on the windows of ``clips``, loading the training arrays only when a
    model is not in the cache yet (~0.5 GB in the quick profile, released on return)."""
    from vssl_core.training.contrastive import cached_model

    clips = split_clips(dataset, setup.eval_clips)[0] if clips is None else clips
    key = family_data_key(setup, dataset, clips)
    rc = cached_model(train_config(setup, "rcgrad"), key)
    if rc is not None:
        rest = {k: cached_model(train_config(setup, k), key, init_model=rc) for k in FAMILY[1:]}
        if all(m is not None for m in rest.values()):
            return {"rcgrad": rc, **rest}
    arrays, key = load_family_training(setup, dataset, clips, progress)
    return train_family(setup, arrays, key, progress=progress)
