"""The RCGrad family (RCGrad, FlowGrad-IC, FlowGrad-EN) and the object prior it starts from.

Three studies use these models: FlowGrad (notebook 02) scores them; the motion sweeps (notebook
03) and "Do We Need Sound?" (notebook 04) compare against them. They live here, below the
studies, so that no study imports another. One typed :class:`RCGradFamilySetup` is passed
whole; its defaults are the quick profile's ``[02_flowgrad]`` values.

Recipe (what :func:`family_specs` trains, in this order):

1. ``rcgrad-prior``: the object prior (:class:`~vssl_core.models.pretrain.PriorNet`), RCGrad's
   image encoder trained to label the object class of every feature-grid cell on frames of the
   training scenes, our stand-in for the ImageNet weights RCGrad starts from.
2. ``rcgrad``: RCGrad from that prior (image encoder) and a random audio encoder, trained with
   the symmetric InfoNCE loss on random windows of the training scenes
   (:class:`~vssl_core.data.training_set.TrainingScenes`: many short clips, never the
   evaluation clips), validated every epoch on windows of the validation scenes (loss,
   audio-to-image retrieval) and on their labelled pairs (cIoU@0.3 and audio sensitivity);
   the best epoch by validation loss is kept, its BatchNorm statistics recalibrated.
3. ``flowgrad_ic`` and ``flowgrad_en``: fine-tuned from the trained RCGrad (the paper starts them
   from the released RCGrad) on the same windows.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from functools import cache

import numpy as np

from vssl_core.data.flow import FlowParams
from vssl_core.data.synth import GENERATOR_VERSION
from vssl_core.data.training_set import ScenesSetup, TrainingScenes, load_training_data, validation_pairs
from vssl_core.models.rcgrad import EN_LOSSES
from vssl_core.training.loop import TrainConfig
from vssl_core.training.store import Models, ModelSpec

__all__ = ["RCGradFamilySetup", "FAMILY", "family_specs", "prior_spec", "trained_family", "trained_rcgrad",
           "validation_metrics", "data_recipe", "borrowed_setup"]

#: The models of the family, in training order.
FAMILY = ("rcgrad", "flowgrad_ic", "flowgrad_en")


@dataclass(frozen=True)
class RCGradFamilySetup(ScenesSetup):
    """Data, sizes and training of the RCGrad family (notebook 02's parameters).

    Attributes
    ----------
    eval_clips, train_scenes, scene_seconds, scene_seed, val_scenes, train_windows, val_windows
        Evaluation clips and training scenes (:class:`~vssl_core.data.training_set.ScenesSetup`).
    image_size, width, layer4_stride : int, float, int
        Model input side (px), ResNet-18 width multiplier, layer4 stride (1 as RCGrad).
    audio_sr : int
        Model audio rate (Hz).
    train_audio_seconds : float
        Training window length (s). RCGrad trains on 5 s; the quick profile uses 1 s (the audio
        encoder dominates the cost). Evaluation always uses FlowGrad's 1 s from t - 0.5.
    epochs, finetune_epochs : int
        RCGrad epochs; FlowGrad-IC / -EN fine-tuning epochs (maxima: early stopping on validation).
    en_lr : float or None
        Adam's learning rate for FlowGrad-EN's fine-tuning (None: ``lr``). FlowGrad-EN adds a
        flow encoder from random weights to the trained RCGrad encoders; at ``lr`` = 1e-3 it
        lowers the validation loss fastest but its maps stop following the sources (quick
        profile, validation clips: cIoU@0.3 0.088, audio sensitivity 0.17), at 1e-4 they do
        (0.197, 0.33). Chosen on the validation clips, never on the evaluation clips.
    en_flow_lr_scale : float
        FlowGrad-EN's flow encoder trains at ``en_lr`` times this (1: one rate, as the paper
        gives no other). The flow encoder starts from averaged RGB kernels (the paper), far from
        a flow model, while the image and audio encoders are already trained.
    en_losses : tuple of str
        FlowGrad-EN's summed pairwise losses (:data:`~vssl_core.models.rcgrad.EN_LOSSES`; all
        three, the paper). A subset (beyond the paper) reaches FlowGrad-EN's model only.
    flow_window_s : float
        Flow aggregation window (0.125 s = one 8-fps pair, the paper).
    compensate_camera : bool
        Subtract global camera motion from the flow (beyond the paper).
    flow_input : {"paper", "unit"}
        How FlowGrad-IC / -EN read the flow magnitude: the paper's ``(|v| + 5) / 200`` or
        ``|v| / 2`` (about unit scale, like the normalised RGB channels).
    prior_epochs, batch_size, lr, seed, patience, num_threads
        Training (:class:`~vssl_core.repro.profiles.TrainingSetup`).
    """

    PROFILE_TABLE = "02_flowgrad"

    image_size: int = 128
    width: float = 0.5
    layer4_stride: int = 1
    audio_sr: int = 16000
    train_audio_seconds: float = 1.0
    epochs: int = 8
    finetune_epochs: int = 4
    en_lr: float | None = 1e-4
    en_flow_lr_scale: float = 1.0
    en_losses: tuple[str, ...] = EN_LOSSES
    flow_window_s: float = 0.125
    compensate_camera: bool = False
    flow_input: str = "unit"

    @property
    def flow(self) -> FlowParams:
        return FlowParams(window_s=self.flow_window_s, compensate_camera=self.compensate_camera)

    def train_config(self, epochs: int, lr: float | None = None) -> TrainConfig:
        return TrainConfig.from_setup(self, epochs, lr)

    def finetune_config(self, kind: str) -> TrainConfig:
        """FlowGrad-IC's or -EN's fine-tuning run (EN: ``en_lr``, its flow encoder times
        ``en_flow_lr_scale``)."""
        if kind != "flowgrad_en":
            return self.train_config(self.finetune_epochs)
        config = self.train_config(self.finetune_epochs, self.en_lr)
        if self.en_flow_lr_scale == 1.0:
            return config
        return dataclasses.replace(config, lr_multipliers=(("flow_encoder.", self.en_flow_lr_scale),))


def borrowed_setup(profile: str, overrides: Mapping[str, Any] | None = None,
                   say: Callable[[str], None] | None = None, **fixed: Any) -> RCGradFamilySetup:
    """The family's setup as another notebook borrows it (notebook 02's models, reused by 03-05).

    The values are ``profile``'s ``[02_flowgrad]`` ones, then ``overrides`` that name fields of
    the family, then ``fixed``. ``overrides`` are the borrowing notebook's own values that differ
    from the profile (``-p NAME=VALUE`` of ``regenerate``, or a value edited in its parameters
    cell: what :func:`vssl_core.repro.session.check_profile` returns), so that an override
    reaches every model a notebook uses, as ``python -m vssl_core train -p`` applies one to every
    study. Names that are not family fields (e.g. ``at``, ``protocol``) are ignored.

    Parameters
    ----------
    profile : str
    overrides : mapping, optional
    say : callable str -> None, optional
        Where to say which overrides reached the borrowed models (None: silent).
    **fixed
        Fields set whatever the profile and overrides say (e.g. ``eval_clips``).

    Returns
    -------
    RCGradFamilySetup
    """
    names = RCGradFamilySetup.field_names()
    used = {k: v for k, v in dict(overrides or {}).items() if k in names}
    setup = dataclasses.replace(RCGradFamilySetup.for_profile(profile, used), **fixed)
    if say is not None:
        given = ", ".join(f"{k} = {v!r}" for k, v in {**used, **fixed}.items())
        say(f"Notebook 02's RCGrad family (borrowed) under profile {profile!r}"
            + (f" with {given}" if given else ", as notebook 02 trains it") + ".")
    return setup


def data_recipe(setup: RCGradFamilySetup) -> dict:
    """The portable description of the family's training windows (part of every recipe)."""
    return {"scenes": setup.scenes.to_dict(), "generator": GENERATOR_VERSION, "windows": setup.train_windows,
            "val_windows": setup.val_windows, "seconds": setup.train_audio_seconds, "image_size": setup.image_size,
            "flow": dataclasses.asdict(setup.flow), "audio_sr": setup.audio_sr, "seed": setup.seed}


@cache
def _windows(setup: RCGradFamilySetup, progress: bool = True):
    return load_training_data(setup.scenes, n_windows=setup.train_windows, n_val_windows=setup.val_windows,
                              seconds=setup.train_audio_seconds, image_size=setup.image_size, flow=setup.flow,
                              audio_sr=setup.audio_sr, seed=setup.seed, progress=progress)


@cache
def _val_pairs(setup: RCGradFamilySetup):
    pairs = validation_pairs(setup.scenes, image_size=setup.image_size, flow=setup.flow, audio_sr=setup.audio_sr,
                             progress=False)
    step = max(1, len(pairs) // 256)  # at most ~256 pairs: a per-epoch check, not a table
    return pairs.subset(list(range(0, len(pairs), step)))


def validation_metrics(setup: RCGradFamilySetup, kind: str):
    """The per-epoch held-out check of a family member: cIoU@0.3 of its maps on labelled pairs of
    the validation scenes, and how much they change with swapped audio."""
    from vssl_core.eval.audio_sensitivity import audio_sensitivity
    from vssl_core.eval.metrics import ciou, ciou_at
    from vssl_core.models import rcgrad_maps

    def metrics(model) -> Mapping[str, float]:
        pairs = _val_pairs(setup)
        maps = rcgrad_maps.maps(model, pairs)
        out = {"val_ciou@0.3": float(ciou_at(ciou(maps.maps, pairs.gt, postprocess=maps.postprocess), 0.3))}
        out["val_audio_sensitivity"] = audio_sensitivity(lambda ev: rcgrad_maps.maps(model, ev), pairs.subset(
            list(range(min(len(pairs), 128)))))
        if kind == "rcgrad":
            fh = rcgrad_maps.flowgrad_h_from_rcgrad(maps, pairs.flow)
            out["val_flowgrad_h_ciou@0.3"] = float(ciou_at(ciou(fh.maps, pairs.gt, postprocess="none"), 0.3))
        return out
    return metrics


def prior_spec(setup: RCGradFamilySetup, progress: bool = True) -> ModelSpec:
    """The object prior of RCGrad's image encoder (see the module docstring)."""
    from vssl_core.models.pretrain import PriorConfig

    cfg = PriorConfig(arch="resnet18", width=setup.width, layer4_stride=setup.layer4_stride,
                      image_size=setup.image_size, normalization="clip")
    return object_prior_spec("rcgrad-prior", cfg, setup.scenes,
                             TrainConfig(epochs=max(setup.prior_epochs, 1), batch_size=setup.batch_size, lr=1e-3,
                                         seed=setup.seed, num_threads=setup.num_threads), 3.0, progress)


def object_prior_spec(name: str, cfg, scenes: TrainingScenes, train: TrainConfig, minutes: float,
                      progress: bool = True) -> ModelSpec:
    """The spec of an object prior (RCGrad's, Hear The Flow's and Oya's image encoders): a
    :class:`~vssl_core.models.pretrain.PriorNet` of ``cfg`` trained with ``train`` on the frames
    of ``scenes`` (:func:`prior_arrays`); the recipe is the prior config, the scenes, the
    generator version and the frame step."""
    from vssl_core.models.pretrain import PriorNet

    recipe = {"prior": cfg.to_dict(), "scenes": scenes.to_dict(), "generator": GENERATOR_VERSION,
              "frames": "every 0.5 s"}
    return ModelSpec(name, recipe, lambda: PriorNet(cfg), train, lambda: prior_arrays(scenes, cfg, progress),
                     minutes=minutes)


def prior_arrays(scenes: TrainingScenes, cfg, progress: bool = True):
    """Frames (every 0.5 s) of the training and validation scenes with their per-cell targets.

    Written once, a chunk of clips at a time, to ``.npy`` files in the cache
    (``<cache>/prior-frames-<key>/``: images ``(N, S, S, 3)`` uint8, targets ``(N, C, g, g)``
    float32) and returned memory-mapped, so that neither building nor training holds every frame
    in memory (the paper profile has ~114,000 frames of 224 px: 17 GB). The bytes are those of
    resizing each decoded frame with ``cv2.INTER_AREA``, as always."""
    from vssl_core.data import sources
    from vssl_core.models.pretrain import PriorArrays
    from vssl_core.repro import cache

    ds = scenes.dataset(progress)
    out = []
    for split, clips in zip(("train", "val"), scenes.split(ds)):
        key = {"kind": "prior-frames", "version": 1, "scenes": scenes.to_dict(), "generator": GENERATOR_VERSION,
               "root": str(ds.root), "split": split, "image_size": int(cfg.image_size), "grid": int(cfg.grid),
               "frames": "every 0.5 s"}
        path = cache.cached("prior-frames", key, lambda tmp, clips=clips: _write_prior_frames(
            ds, sources.load_objects(ds.root), clips, cfg, tmp))
        out.append(PriorArrays(np.load(path / "images.npy", mmap_mode="r"),
                               np.load(path / "targets.npy", mmap_mode="r")))
    return out[0], out[1]


def _write_prior_frames(ds, objects, clips, cfg, folder, chunk_clips: int = 64) -> None:
    import cv2

    from vssl_core.models.pretrain import PRIOR_CLASSES, object_targets

    times = {clip: list(np.arange(0.0, ds.duration(clip) - 1e-6, 0.5)) for clip in clips}
    n = sum(len(t) for t in times.values())
    s, g = cfg.image_size, cfg.grid
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, s, s, 3))
    targets = np.lib.format.open_memmap(folder / "targets.npy", mode="w+", dtype=np.float32,
                                        shape=(n, len(PRIOR_CLASSES), g, g))
    row = 0
    for c0 in range(0, len(clips), chunk_clips):
        part = clips[c0:c0 + chunk_clips]
        keys, frames = [], []
        for clip in part:
            for t, img in zip(times[clip], ds.frames(clip, times[clip])):
                keys.append((clip, float(t)))
                frames.append(cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA))
        if not keys:
            continue
        mine = objects[objects["filename"].isin(set(part))] if objects is not None else objects
        images[row:row + len(keys)] = np.stack(frames)
        targets[row:row + len(keys)] = object_targets(mine, keys, s, g)
        row += len(keys)
    if row != n:
        raise RuntimeError(f"prior frames: wrote {row} rows, expected {n}")
    images.flush()
    targets.flush()
    del images, targets


def family_specs(setup: RCGradFamilySetup, models: Models, progress: bool = True) -> dict[str, ModelSpec]:
    """The family's specs by name (``rcgrad-prior``, ``rcgrad``, ``flowgrad_ic``, ``flowgrad_en``);
    ``models`` resolves the models a spec starts from (the prior, the trained RCGrad)."""
    from vssl_core.models.rcgrad import FlowGradEN, FlowGradIC, ModelConfig, build_model

    data = (lambda: _family_data(setup, progress))
    specs: dict[str, ModelSpec] = {}
    prior = prior_spec(setup, progress) if setup.prior_epochs > 0 else None
    if prior is not None:
        specs[prior.name] = prior

    def rc_config(kind: str) -> ModelConfig:
        en = {"en_losses": setup.en_losses} if kind == "flowgrad_en" else {}
        return ModelConfig(kind=kind, width=setup.width, layer4_stride=setup.layer4_stride,
                           image_size=setup.image_size, audio_sr=setup.audio_sr, flow_input=setup.flow_input, **en)

    def rcgrad_factory():
        model = build_model(rc_config("rcgrad"))
        if prior is not None:
            model.image_encoder.load_state_dict(models.get(prior).encoder_state())
        return model

    base = {"data": data_recipe(setup), "prior": prior.key if prior is not None else None}
    specs["rcgrad"] = ModelSpec("rcgrad", {**base, "model": rc_config("rcgrad").to_dict()}, rcgrad_factory,
                                setup.train_config(setup.epochs), data, validation_metrics(setup, "rcgrad"),
                                minutes=15.0)
    rc_spec = specs["rcgrad"]
    for kind, cls in (("flowgrad_ic", FlowGradIC), ("flowgrad_en", FlowGradEN)):
        def factory(cls=cls, kind=kind):
            model = cls.from_rcgrad(models.get(rc_spec))
            model.config = rc_config(kind)
            return model
        specs[kind] = ModelSpec(kind, {**base, "model": rc_config(kind).to_dict(), "init": rc_spec.key}, factory,
                                setup.finetune_config(kind), data,
                                validation_metrics(setup, kind),
                                minutes=8.0 if kind == "flowgrad_ic" else 12.0)
    return specs


def _family_data(setup: RCGradFamilySetup, progress: bool):
    d = _windows(setup, progress)
    return d.train, d.val


def trained_family(setup: RCGradFamilySetup, models: Models | None = None, progress: bool = True) -> dict:
    """RCGrad, FlowGrad-IC and FlowGrad-EN, by kind (shipped, cached or trained: ``models``' policy)."""
    models = models if models is not None else Models(progress=progress)
    specs = family_specs(setup, models, progress)
    return {kind: models.get(specs[kind]) for kind in FAMILY}


def trained_rcgrad(setup: RCGradFamilySetup, models: Models | None = None, progress: bool = True):
    """The trained RCGrad alone."""
    models = models if models is not None else Models(progress=progress)
    return models.get(family_specs(setup, models, progress)["rcgrad"])
