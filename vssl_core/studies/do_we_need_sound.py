"""The "Do We Need Sound?" experiment (Oya et al.): potential vs localisation map, Tables 1, 4, 5.

One typed :class:`OyaSetup` is passed whole through every step; the notebook's parameters map
onto it one to one. The claim under test: a *potential* map computed from the image alone
(eq. 1) localises sound sources almost as well as the *localisation* map that also uses the
sound (eq. 3), except on samples where some sound-capable objects are silent (Type B), and on
the concat-and-localize protocol that makes every sample Type B.

Data (synthetic default)
------------------------
- Training and the Table 1 / 5 evaluation use the default synthetic set and the **same split,
  windows and cached arrays as the RCGrad family** (:mod:`vssl_core.training.rcgrad_family`): the
  last ``eval_clips`` clips are held out; training sees random windows of the others (annotations
  never read). Arrays are loaded at the RCGrad family's image size and audio rate
  (:func:`data_setup`) and converted for OyaNet here: frames are resized by the model
  (``config.image_size``), waveforms resampled to ``audio_sr`` with
  :func:`scipy.signal.resample_poly` (:func:`vssl_core.models.audio.resample_audio`).
- Training-set sizes: the model for size ``n`` trains on the **first** ``n`` windows (the windows
  are drawn at random, so each prefix is a random subset and the sets are nested, as the
  paper's 1k / 2.5k / 10k / 144k subsets are). Every size runs the same number of epochs.
- Type A / B (Table 4): a second synthetic set in which some clips have no parked car
  (``n_parked = (0, ab_max_parked)``), every clip held out (no model sees it in training);
  types come from the generator's object table (:mod:`vssl_core.eval.sample_types`).
- Concat-and-localize (Table 5): :func:`vssl_core.data.concat.concat_and_localize` on the held-out
  pairs, box route, ``concat_pairs`` pairs (0: one per sample), seeded by ``seed``.

Scoring
-------
Both Oya maps are softmax distributions on the model's ``h x w`` grid, resized bilinearly to
224 and scored with the "clean" post-processing (min-max, median floor, threshold 0.5), the one
RCGrad uses; the random floor is uniform noise on the same ``h x w`` grid, post-processed the
same way. cIoU@``at`` (0.3 for Urbansas) and AUC with 95% percentile bootstrap intervals;
"performance gaps" (localisation minus potential) are *paired* bootstraps on the same samples.
Beyond the paper, concat rows also get the **side accuracy**: the fraction of rows whose
post-processed map puts more mass on the half of the sounding sample than on the other half.
A map that ignores the sound (the potential map, flow only) shows the same image for both rows
of a pair and so scores exactly 0.5 up to ties; 1.0 means the sound always picks the side.
Every model keeps the epoch with the lowest validation loss (the paper trains a fixed number of
epochs and keeps the last).

Protocols (``OyaSetup.protocol``; :func:`evaluation_rules`)
----------------------------------------------------------
``"companion"`` (the quick profile): cIoU at the notebook's cut-off ``at`` (0.3, Urbansas).
``"paper"``: cIoU@0.5 (Tables 1, 4, 5; Sec. 4.1 binarises with an unstated tau). Both score the
maps with ``"clean"`` (the paper leaves the normalisation before its threshold unsaid) on
FlowGrad's 1 s of audio from ``t - 0.5`` (the paper's sound clips have no fixed length).
``"released"`` is ``"paper"``: no code was released, so nothing differs from the text.
"""
from __future__ import annotations

import dataclasses
import math
from functools import cache
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vssl_core.data.arrays import EvalArrays, load_evaluation
from vssl_core.data.training_set import load_training_data, validation_pairs
from vssl_core.data.concat import ConcatSet, concat_and_localize
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.errors import data_error
from vssl_core.eval import sample_types
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.audio_sensitivity import with_swapped_audio
from vssl_core.eval.metrics import EvalResult
from vssl_core.eval.scoring import paired_gaps, result_columns, score_chunked
from vssl_core.eval.scoring import score_stream as _score_stream
from vssl_core.eval.side_accuracy import kept_side_accuracy, side_accuracy, side_accuracy_interval
from vssl_core.models import oya_maps, rcgrad_maps
from vssl_core.models.audio import resample_audio
from vssl_core.models.baselines import flow_only_maps, random_maps
from vssl_core.models.loudness_rule import (
    LOUDNESS_RULE, frame_motion, half_motion, kept_half_maps, loudness_db, loudness_side, total_box_area,
)
from vssl_core.repro.profiles import TrainingSetup
from vssl_core.training.loop import TrainConfig
from vssl_core.training.rcgrad_family import RCGradFamilySetup, borrowed_setup, data_recipe
from vssl_core.training.store import Models, ModelSpec

if TYPE_CHECKING:
    from vssl_core.data.synth import SceneConfig
    from vssl_core.models.listeners import PerfectListener
    from vssl_core.models.oya import OyaConfig, OyaNet
    from vssl_core.models.rcgrad import RCGrad

__all__ = [
    "OYA_TABLE1", "OYA_TABLE1_DE_NOVO", "OYA_TABLE4", "OYA_TABLE5", "OYA_TABLE5_DE_NOVO",
    "OYA_RANDOM", "LOC", "POT", "SWAPPED", "RANDOM", "CHANCE_LOSS",
    "OyaSetup", "PROTOCOLS", "EvalRules", "evaluation_rules",
    "data_setup", "rcgrad_setup", "ab_scene_config", "load_pairs", "load_real", "load_ab",
    "prior_spec", "PRETRAINED_TRUNK", "model_specs", "trained_sizes", "trained_oya", "validation_metrics",
    "oya_method_maps", "concat_set", "concat_maps", "loudness_rule_reference", "SIDE_COLUMNS", "side_accuracy_references",
    "LOUDNESS_MATCHES", "loudness_match_statistics", "heard_class_areas", "loudness_match_table",
    "method_stream", "score_stream", "score_methods", "swapped_sound_results", "score_sizes",
    "side_accuracy", "pick_examples", "size_table", "gap_table", "type_table", "type_gap_table", "type_gap",
    "protocol_table",
]

#: The similarity loss of a constant model (every cosine equal): (1 - c + c) / 2.
CHANCE_LOSS = 0.5

LOC = "Localisation map"
POT = "Potential map"
#: Suffix of the localisation map scored with another pair's sound (:func:`swapped_sound_results`).
SWAPPED = " (another clip's sound)"
RANDOM = "Random map"

#: Oya et al. Table 1 (Flickr-SoundNet test set, cIoU@0.5 and AUC), ImageNet-pretrained VGG-11:
#: training samples -> (loc cIoU, loc AUC, potential cIoU, potential AUC).
OYA_TABLE1 = {1000: (0.487, 0.464, 0.459, 0.438), 2500: (0.503, 0.477, 0.481, 0.460),
              10000: (0.568, 0.507, 0.539, 0.486), 144000: (0.684, 0.570, 0.668, 0.562)}
#: Table 1, "de novo" columns (trained from scratch, as every model here): same layout.
OYA_TABLE1_DE_NOVO = {1000: (0.365, 0.341, 0.353, 0.334), 2500: (0.407, 0.373, 0.385, 0.368),
                      10000: (0.484, 0.453, 0.474, 0.446), 144000: (0.667, 0.563, 0.655, 0.555)}
#: Table 4 (144k samples, pretrained; no de novo columns): type -> (loc IoU, loc AUC, pot IoU,
#: pot AUC, random IoU, random AUC); the gap is loc - pot.
OYA_TABLE4 = {"A": (0.585, 0.496, 0.557, 0.483, 0.299, 0.284),
              "B": (0.445, 0.380, 0.319, 0.272, 0.171, 0.166)}
#: Table 5 (concat-and-localize), pretrained: samples -> (loc cIoU, loc AUC, pot cIoU, pot AUC).
OYA_TABLE5 = {1000: (0.248, 0.235, 0.234, 0.218), 2500: (0.273, 0.244, 0.235, 0.213),
              10000: (0.354, 0.295, 0.282, 0.251), 144000: (0.416, 0.356, 0.302, 0.264)}
#: Table 5, de novo columns.
OYA_TABLE5_DE_NOVO = {1000: (0.218, 0.204, 0.211, 0.202), 2500: (0.232, 0.215, 0.229, 0.208),
                      10000: (0.301, 0.266, 0.240, 0.221), 144000: (0.374, 0.316, 0.289, 0.254)}
#: The random rows (cIoU, AUC) of Table 1 and Table 5.
OYA_RANDOM = {"table1": (0.341, 0.323), "table5": (0.200, 0.185)}

#: The protocol values of ``OyaSetup.protocol`` ("released" = "paper": Oya et al. released no code).
PROTOCOLS = ("companion", "paper", "released")
#: The paper's cut-off (Tables 1, 4 and 5: "cIoU score with threshold 0.5").
PAPER_CUTOFF = 0.5


@dataclass(frozen=True)
class OyaSetup(TrainingSetup):
    """Everything that defines one Oya run (split, sizes, model, training, protocols).

    Attributes
    ----------
    eval_clips : int
        Held-out clips of the default synthetic set (the last ones by name).
    train_sizes : tuple of int
        Training-set sizes (windows) of Table 1 / 5, ascending; the largest is the default model.
    image_size, image_blocks, audio_blocks, width, embed_dim : int, int, int, float, int
        :class:`vssl_core.models.oya.OyaConfig` fields (input side in px, VGG blocks of the
        image and sound networks, channel multiplier, ``K``).
    audio_sr, n_fft, hop : int
        Model audio rate (Hz) and STFT sizes (samples).
    spec_input : {"amp_phase", "log_power"}
    negatives : {"shift", "all"}
        Negative pairs of the similarity loss (``OyaConfig.negatives``).
    ab_clips, ab_max_parked : int
        Size of the Type A/B synthetic set and its parked-vehicle range ``(0, ab_max_parked)``.
    concat_pairs : int
        Concat-and-localize pairs (0: one per evaluation sample; 2 rows per pair).
    protocol : {"companion", "paper", "released"}
        The evaluation rules (module docstring, :func:`evaluation_rules`; ``"released"`` is
        ``"paper"``); it changes no model.
    image_lr_scale : float
        With the object prior (``prior_epochs > 0``), the VGG trunk it initialises trains at
        ``lr * image_lr_scale``; the rest (the image network's new 1x1 layers, the sound network,
        the FC layers) at ``lr``. Supp. A: with ImageNet weights, 1e-5 for the image network and
        1e-4 for the rest, so 0.1 is the paper. De novo (no prior) everything trains at ``lr``.
    prior_epochs, epochs, batch_size, lr, seed, patience, num_threads
        Training (:class:`~vssl_core.repro.profiles.TrainingSetup`), the same maximum epochs for
        every size; the object prior is of the image trunk (our stand-in for ImageNet VGG-11).
    """

    PROFILE_TABLE = "04_do_we_need_sound"

    eval_clips: int = 40
    train_sizes: tuple[int, ...] = (500, 1000, 2500)
    image_size: int = 64
    image_blocks: int = 3
    audio_blocks: int = 4
    width: float = 0.25
    embed_dim: int = 64
    audio_sr: int = 8000
    n_fft: int = 510
    hop: int = 255
    spec_input: str = "amp_phase"
    negatives: str = "all"
    batch_size: int = 32
    lr: float = 1e-4
    image_lr_scale: float = 0.1
    ab_clips: int = 48
    ab_max_parked: int = 2
    concat_pairs: int = 0
    protocol: str = "companion"
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise data_error(None, "protocol", f"{self.protocol!r} is not a protocol of the 'Do We Need Sound?' study",
                             f"choose one of {PROTOCOLS}")
        sizes = tuple(int(n) for n in self.train_sizes)
        if not sizes or any(n < 2 for n in sizes) or list(sizes) != sorted(set(sizes)):
            raise ValueError(f"train_sizes must be ascending distinct sizes >= 2, got {self.train_sizes}")
        object.__setattr__(self, "train_sizes", sizes)
        if self.ab_clips < 1 or self.ab_max_parked < 1 or self.concat_pairs < 0:
            raise ValueError(f"invalid OyaSetup: ab_clips {self.ab_clips}, ab_max_parked "
                             f"{self.ab_max_parked}, concat_pairs {self.concat_pairs}")
        if not self.image_lr_scale > 0:
            raise data_error(None, "image_lr_scale", f"{self.image_lr_scale} is not a learning-rate factor",
                             "give a factor > 0 (0.1: the paper's 1e-5 for the pretrained image network)")
        self.model_config  # validates the model fields
        self.train_config  # validates the training fields

    @property
    def default_size(self) -> int:
        """The largest training-set size (the model of Tables 4, 5-beyond and the explorer)."""
        return self.train_sizes[-1]

    @property
    def model_config(self) -> OyaConfig:
        """The :class:`vssl_core.models.oya.OyaConfig` of this setup."""
        from vssl_core.models.oya import OyaConfig

        return OyaConfig(width=self.width, image_blocks=self.image_blocks,
                         audio_blocks=self.audio_blocks, embed_dim=self.embed_dim,
                         image_size=self.image_size, audio_sr=self.audio_sr, n_fft=self.n_fft,
                         hop=self.hop, spec_input=self.spec_input, negatives=self.negatives)

    @property
    def train_config(self) -> TrainConfig:
        """The :class:`vssl_core.training.loop.TrainConfig` of this setup."""
        return TrainConfig.from_setup(self)


@dataclass(frozen=True)
class EvalRules:
    """How one protocol scores the Oya study (printed above notebook 04's tables)."""

    protocol: str
    cutoff: float
    postprocess: str = "clean"
    audio: str = "1 s from t - 0.5 (FlowGrad's window; the paper's clips have no fixed length)"
    checkpoint: str = "the epoch with the lowest validation loss (validation scenes; the paper keeps the last epoch)"

    def __str__(self) -> str:
        return (f"Protocol {self.protocol!r} (the 'Do We Need Sound?' study, docs/conventions.md "
                f"'Deviations from the papers'):\n"
                f"  scoring: every map post-processed '{self.postprocess}', cIoU@{self.cutoff:g} and AUC\n"
                f"  evaluation audio: {self.audio}\n  checkpoint: {self.checkpoint}")


def evaluation_rules(setup: OyaSetup, at: float | None = None) -> EvalRules:
    """The rules of ``setup.protocol``, checked against the notebook's cut-off ``at`` (under
    ``"companion"`` ``at`` is the rule, default 0.3; under ``"paper"`` and ``"released"``, the
    same as there is no released code, it must be 0.5).

    Raises
    ------
    DataError
        ``at`` disagrees with the paper's cut-off under ``protocol="paper"``.
    """
    if setup.protocol == "companion":
        return EvalRules("companion", float(0.3 if at is None else at))
    if at is not None and at != PAPER_CUTOFF:
        raise data_error(None, "at", f"{at!r} disagrees with protocol {setup.protocol!r} (Oya et al. Tables 1, 4, 5: "
                         f"cIoU@{PAPER_CUTOFF:g})", f"set at = {PAPER_CUTOFF}, or protocol = 'companion'")
    if setup.protocol == "released":
        return EvalRules("released", PAPER_CUTOFF,
                         checkpoint="as 'paper' (Oya et al. released no code): the epoch with the lowest validation loss")
    return EvalRules("paper", PAPER_CUTOFF)


# ----------------------------------------------------------------------------------- data
def data_setup(setup: OyaSetup, base: RCGradFamilySetup | None = None) -> RCGradFamilySetup:
    """The :class:`RCGradFamilySetup` whose cached windows Oya trains on: ``base`` (default: the
    family's quick-profile defaults) with Oya's split and seed, and at least the largest training
    size of windows (smaller sizes take prefixes of the same windows). Frames at
    ``base.image_size``, audio at ``base.audio_sr`` (resampled for the model)."""
    base = base or RCGradFamilySetup()
    return dataclasses.replace(base, eval_clips=setup.eval_clips, seed=setup.seed,
                               train_windows=max(base.train_windows, setup.default_size))


def rcgrad_setup(profile: str, setup: OyaSetup, overrides: Mapping | None = None,
                 say: Callable[[str], None] | None = None) -> RCGradFamilySetup:
    """The RCGrad family's setup under ``profile`` (and ``overrides`` that name its fields: the
    notebook's own values that differ from the profile, e.g. ``-p`` overrides; see
    :func:`vssl_core.training.rcgrad_family.borrowed_setup`, which says what reached the
    borrowed models to ``say``), with Oya's ``eval_clips`` (no model may train on Oya's
    evaluation clips) and ``num_threads``."""
    return borrowed_setup(profile, overrides, say, eval_clips=setup.eval_clips, num_threads=setup.num_threads)


def ab_scene_config(setup: OyaSetup) -> SceneConfig:
    """The scene configuration of the Type A/B set: the default with ``n_parked = (0, max)``."""
    from vssl_core.data.sources import scene_config

    return scene_config(n_parked=(0, setup.ab_max_parked))


def load_pairs(dataset: UrbansasDataset, clips: Sequence[str] | None, data: RCGradFamilySetup,
               progress: bool = True) -> EvalArrays:
    """The FlowGrad pairs of ``clips`` (None: all) as the family's setup loads them."""
    return _load_pairs(dataset, clips, data, progress)


def _load_pairs(dataset: UrbansasDataset, clips: Sequence[str] | None, data: RCGradFamilySetup,
                progress: bool = True) -> EvalArrays:
    return load_evaluation(dataset, clips, image_size=data.image_size, flow=data.flow, audio_sr=data.audio_sr,
                           progress=progress)


def load_real(dataset: UrbansasDataset, data: RCGradFamilySetup, progress: bool = True) -> EvalArrays:
    """Every FlowGrad pair of a real Urbansas folder, as the family's setup loads them."""
    return _load_pairs(dataset, None, data, progress)


def load_ab(dataset: UrbansasDataset, objects: pd.DataFrame, data: RCGradFamilySetup,
            progress: bool = True) -> tuple[EvalArrays, np.ndarray]:
    """Every FlowGrad pair of the Type A/B set and its type ("A", "B" or "none")."""
    ev = _load_pairs(dataset, None, data, progress)
    types = sample_types.sample_types(objects, list(zip(ev.clips.tolist(), ev.times.tolist())))
    return ev, types


# ------------------------------------------------------------------------------- training
@cache
def _windows(setup: OyaSetup, data: RCGradFamilySetup, progress: bool = True):
    """The family's training and validation windows, audio resampled to Oya's rate."""
    d = load_training_data(data.scenes, n_windows=data.train_windows, n_val_windows=data.val_windows,
                           seconds=data.train_audio_seconds, image_size=data.image_size, flow=data.flow,
                           audio_sr=data.audio_sr, seed=data.seed, progress=progress)

    def resampled(a):
        return dataclasses.replace(a, audio=resample_audio(a.audio, data.audio_sr, setup.audio_sr), flow=None)
    return resampled(d.train), resampled(d.val)


def _prefix(arrays, n: int):
    if not 2 <= n <= len(arrays):
        raise ValueError(f"training size {n} needs 2..{len(arrays)} windows")
    return dataclasses.replace(arrays, images=arrays.images[:n], audio=arrays.audio[:n],
                               clips=None if arrays.clips is None else arrays.clips[:n])


@cache
def _val_pairs(data: RCGradFamilySetup) -> EvalArrays:
    pairs = validation_pairs(data.scenes, image_size=data.image_size, flow=data.flow, audio_sr=data.audio_sr,
                             progress=False)
    step = max(1, len(pairs) // 256)
    return pairs.subset(list(range(0, len(pairs), step)))


def validation_metrics(data: RCGradFamilySetup):
    """Per-epoch held-out check: cIoU@0.3 of the localisation and potential maps on labelled
    validation pairs, and how much the localisation map changes with swapped audio."""
    from vssl_core.eval.audio_sensitivity import audio_sensitivity
    from vssl_core.eval.metrics import ciou, ciou_at

    def metrics(model) -> dict[str, float]:
        pairs = _val_pairs(data)
        loc, pot = oya_maps.both_maps(model, pairs)
        score = {name: float(ciou_at(ciou(m.maps, pairs.gt, postprocess=m.postprocess), 0.3))
                 for name, m in (("val_loc_ciou@0.3", loc), ("val_pot_ciou@0.3", pot))}
        score["val_audio_sensitivity"] = audio_sensitivity(lambda ev: oya_maps.localisation_maps(model, ev),
                                                           pairs.subset(list(range(min(len(pairs), 128)))))
        return score
    return metrics


def prior_spec(setup: OyaSetup, data: RCGradFamilySetup, progress: bool = True) -> ModelSpec | None:
    """The object prior of Oya's VGG trunk (None when ``prior_epochs == 0``: "de novo")."""
    from vssl_core.models.pretrain import PriorConfig
    from vssl_core.training.rcgrad_family import object_prior_spec

    if setup.prior_epochs <= 0:
        return None
    cfg = PriorConfig(arch="vgg", width=setup.width, image_blocks=setup.image_blocks, image_size=setup.image_size,
                      normalization="imagenet")
    return object_prior_spec("oya-prior", cfg, data.scenes,
                             TrainConfig(epochs=setup.prior_epochs, batch_size=64, lr=1e-3, seed=setup.seed,
                                         num_threads=setup.num_threads), 1.0, progress)


#: Parameter-name prefix of the part of OyaNet that the object prior initialises (the VGG trunk).
PRETRAINED_TRUNK = "image_net.features."


def model_specs(setup: OyaSetup, data: RCGradFamilySetup, models: Models, progress: bool = True
                ) -> dict[str, ModelSpec]:
    """Specs of the prior (``"prior"``) and of one OyaNet per training size (keyed by size)."""
    from vssl_core.models.oya import OyaNet

    prior = prior_spec(setup, data, progress)
    specs: dict = {} if prior is None else {"prior": prior}
    cfg = setup.model_config
    base = {"model": cfg.to_dict(), "data": data_recipe(data), "prior": None if prior is None else prior.key}

    def factory():
        model = OyaNet(cfg)
        if prior is not None:
            model.image_net.features.load_state_dict(models.get(prior).encoder_state())
        return model

    config = setup.train_config
    if prior is not None and setup.image_lr_scale != 1.0:  # supp. A: the pretrained trunk at a tenth of lr
        config = dataclasses.replace(config, lr_multipliers=((PRETRAINED_TRUNK, setup.image_lr_scale),))
    for n in setup.train_sizes:
        def data_n(n=n):
            train, val = _windows(setup, data, progress)
            return _prefix(train, n), val
        specs[n] = ModelSpec(f"oya-{n}", {**base, "size": n}, factory, config, data_n,
                             validation_metrics(data), minutes=2.0 + n / 1000)
    return specs


def trained_sizes(setup: OyaSetup, data: RCGradFamilySetup, models: Models | None = None,
                  progress: bool = True) -> dict[int, OyaNet]:
    """``{size: OyaNet}`` for every ``setup.train_sizes`` (shipped, cached or trained)."""
    models = models if models is not None else Models(progress=progress)
    specs = model_specs(setup, data, models, progress)
    return {n: models.get(specs[n]) for n in setup.train_sizes}


def trained_oya(setup: OyaSetup | None = None, data: RCGradFamilySetup | None = None,
                models: Models | None = None, progress: bool = True) -> OyaNet:
    """The default-size OyaNet (the model of Tables 4 and 5 and of the explorer)."""
    setup = setup or OyaSetup()
    data = data_setup(setup, data)
    models = models if models is not None else Models(progress=progress)
    return models.get(model_specs(setup, data, models, progress)[setup.default_size])


# ------------------------------------------------------------------------------------ maps
def oya_method_maps(model: OyaNet, ev: EvalArrays, suffix: str = "") -> dict[str, LocalizationMaps]:
    """Localisation and potential maps (224 grid, "clean") of ``model`` on the pairs ``ev``
    (:func:`vssl_core.models.oya_maps.both_maps`); ``suffix`` is appended to the two names
    (e.g. ``" (n=750)"``)."""
    loc, pot = oya_maps.both_maps(model, ev)
    return {LOC + suffix: loc, POT + suffix: pot}


def concat_set(ev: EvalArrays, setup: OyaSetup) -> ConcatSet:
    """The concat-and-localize set of ``ev`` (box route, flows concatenated, frames keep their
    size)."""
    return concat_and_localize(ev.images, ev.audio, boxes=ev.boxes, flows=ev.flow,
                               seed=setup.seed, n_pairs=setup.concat_pairs or None)


def loudness_rule_reference(cs: ConcatSet, n_boot: int = 1000, seed: int = 0, chunk: int = 128) -> pd.DataFrame:
    """The side accuracy of the no-training loudness + flow rule (:mod:`vssl_core.models.loudness_rule`)
    on a concat set, as a row to put beside the perfect listeners'
    (:func:`vssl_core.eval.listener_reference.reference_table`).

    The rule's sides are chosen from all rows at once (its percentiles need the whole set); its maps
    are then scored ``chunk`` rows at a time.

    Returns
    -------
    DataFrame
        One row: ``method`` (:data:`~vssl_core.models.loudness_rule.LOUDNESS_RULE`), ``n_concat``,
        ``side_accuracy`` and its pair-bootstrap ``side_accuracy_lo`` / ``_hi``.
    """
    if cs.flows is None:
        raise ValueError("the concat set has no flows: pass flows= to concat_and_localize")
    kept = loudness_side(loudness_db(cs.audio), half_motion(cs.flows))  # (M,)
    heard = np.asarray(cs.side)
    acc = np.concatenate([side_accuracy(kept_half_maps(cs.flows[rows], kept[rows]), heard[rows])
                          for rows in (slice(start, start + chunk) for start in range(0, len(cs), chunk))])
    lo, hi = side_accuracy_interval(acc, n_boot, seed)
    return pd.DataFrame([{"method": LOUDNESS_RULE, "n_concat": len(cs), "side_accuracy": float(acc.mean()),
                          "side_accuracy_lo": lo, "side_accuracy_hi": hi}])


#: Columns of :func:`side_accuracy_references`.
SIDE_COLUMNS = ["method", "side_accuracy", "side_accuracy_lo", "side_accuracy_hi"]


def side_accuracy_references(listeners: pd.DataFrame, cs: ConcatSet, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The side accuracies to read the models' against: the rows of a listeners' table
    (:func:`vssl_core.eval.listener_reference.reference_table` given ``cs``), then the loudness +
    flow rule's (:func:`loudness_rule_reference`), in the columns :data:`SIDE_COLUMNS`."""
    missing = [c for c in SIDE_COLUMNS if c not in listeners.columns]
    if missing:
        raise KeyError(f"the listeners' table has no column(s) {missing}: give reference_table the concat set")
    rule = loudness_rule_reference(cs, n_boot=n_boot, seed=seed)
    return pd.concat([listeners[SIDE_COLUMNS], rule[SIDE_COLUMNS]], ignore_index=True)


#: The per-frame statistics of :func:`loudness_match_statistics`, in table order: what each lets a
#: "match the loudness" rule know.
LOUDNESS_MATCHES = (
    "mean flow magnitude (sees motion, no objects)",
    "area of every visible vehicle (what a still frame shows)",
    "area of the visible vehicles of the heard classes (a still frame + a perfect ear)",
    "area of the moving vehicles (oracle: knows what moves)",
    "area of the sounding vehicles (oracle: the ground truth)",
)


def loudness_match_statistics(ev: EvalArrays, listeners: Mapping[str, PerfectListener] | None = None,
                              cs: ConcatSet | None = None) -> dict[str, np.ndarray]:
    """The quantities a loudness could be matched to (:data:`LOUDNESS_MATCHES`), per frame or per
    concat row.

    The flow is the loudness + flow rule's cue; the areas (summed ``w * h`` of the boxes, 1280x720
    annotation pixels squared: the sound of several vehicles adds up, and a nearer vehicle is both
    larger and louder) go from what a still frame shows to what only the generator knows.

    Parameters
    ----------
    ev : EvalArrays
        The synthetic evaluation pairs (``flow``, ``boxes``, ``clips``, ``times``).
    listeners : mapping of str to PerfectListener, optional
        :func:`vssl_core.models.listeners.perfect_listeners` of the pairs' objects table: the one
        without motion gives every visible vehicle (parked ones included), the one with motion the
        moving ones. None (real data: no objects table): those rows are left out.
    cs : ConcatSet, optional
        The concat rows built from ``ev``. With ``listeners``, adds the row of the vehicles a still
        frame shows that are of a class the row's sound holds (:func:`heard_class_areas`): it
        depends on the sound, so it is given per row, ``(M, 2)``.

    Returns
    -------
    dict of str to np.ndarray float64, keyed by :data:`LOUDNESS_MATCHES` (in order): shape (N,)
    for a per-frame statistic, (M, 2) for the per-row one.
    """
    values = {LOUDNESS_MATCHES[0]: frame_motion(ev.flow)}  # px/step
    if listeners is not None:
        by_motion = {listener.motion: listener for listener in listeners.values()}
        if set(by_motion) != {False, True}:
            raise ValueError("need the perfect listeners without and with motion (perfect_listeners(...))")
        values[LOUDNESS_MATCHES[1]] = _seen_area(by_motion[False], ev)
        if cs is not None:
            values[LOUDNESS_MATCHES[2]] = heard_class_areas(cs, ev, by_motion[False])
        values[LOUDNESS_MATCHES[3]] = _seen_area(by_motion[True], ev)
    values[LOUDNESS_MATCHES[4]] = total_box_area(ev.boxes)
    return values


def _seen_area(listener: PerfectListener, ev: EvalArrays) -> np.ndarray:
    """(N,) summed box area of the vehicles ``listener`` sees on each frame of ``ev``."""
    return total_box_area([[d.box for d in listener.seen(c, float(t))] for c, t in zip(ev.clips, ev.times)])


def heard_class_areas(cs: ConcatSet, ev: EvalArrays, listener: PerfectListener) -> np.ndarray:
    """Per concat row, the summed box area of what ``listener`` paints on each half for the row's
    sound: the largest visible vehicles of each heard class (as many as are heard), 0 on a half
    that shows none of them.

    It is what a still frame and a perfect ear can know together: the classes of the sound (not
    which vehicle makes it) and the vehicles in view (not which of them move).

    Parameters
    ----------
    cs : ConcatSet
        Rows over the frames of ``ev`` (``left``, ``right``, ``source``).
    ev : EvalArrays
        The frames (``clips``, ``times``) the listener's objects table covers.
    listener : PerfectListener
        Usually the one without motion (``listeners[LISTENER]``).

    Returns
    -------
    np.ndarray, float64, shape (M, 2)
        Left and right half, 1280x720 annotation pixels squared.
    """
    out = np.zeros((len(cs), 2))
    for row, (left, right, source) in enumerate(zip(cs.left, cs.right, cs.source)):
        heard = listener.heard(ev.clips[source], float(ev.times[source]))
        for half, frame in enumerate((left, right)):
            out[row, half] = total_box_area([listener.boxes(ev.clips[frame], float(ev.times[frame]), heard)])[0]
    return out


def loudness_match_table(cs: ConcatSet, statistics: Mapping[str, np.ndarray], n_boot: int = 1000,
                         seed: int = 0) -> pd.DataFrame:
    """Side accuracy of "keep the half whose statistic ranks closest to the loudness", per statistic.

    Each rule is :func:`~vssl_core.models.loudness_rule.loudness_side` with the statistic of the
    two frames a row shows in place of the motion, scored by
    :func:`~vssl_core.eval.side_accuracy.kept_side_accuracy`. It tells where the loudness cue of
    concat-and-localize lives: a model that cannot see a statistic cannot use its row.

    Parameters
    ----------
    cs : ConcatSet
        Its ``left`` / ``right`` index the frames of ``statistics``; ``audio`` and ``side`` are used.
    statistics : mapping of str to np.ndarray, shape (N,) or (M, 2)
        One value per input frame, or the (left, right) values of each row
        (:func:`loudness_match_statistics`).

    Returns
    -------
    DataFrame
        Rows in the order of ``statistics``: ``statistic``, ``n_concat``, ``side_accuracy`` with its
        pair-bootstrap ``side_accuracy_lo`` / ``_hi``, and ``loudness_correlation`` (Pearson, over the
        rows, of the loudness in dB and the heard frame's statistic).
    """
    loudness = loudness_db(cs.audio)  # (M,)
    heard_half = np.where(np.asarray(cs.side).astype(str) == "left", 0, 1)  # (M,)
    rows = []
    for name, values in statistics.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape == (len(cs), 2):  # already per row: (left, right)
            halves = values
        elif values.ndim == 1 and len(values) > max(cs.left.max(), cs.right.max()):
            halves = np.stack([values[cs.left], values[cs.right]], axis=1)
        else:
            raise ValueError(f"statistic {name!r} needs one value per input frame of the concat set or "
                             f"(left, right) per row, shape ({len(cs)}, 2); got shape {values.shape}")
        kept = loudness_side(loudness, halves)
        acc = kept_side_accuracy(kept, cs.side)
        lo, hi = side_accuracy_interval(acc, n_boot, seed)
        heard = halves[np.arange(len(cs)), heard_half]
        corr = float(np.corrcoef(loudness, heard)[0, 1]) if heard.std() > 0 and loudness.std() > 0 else float("nan")
        rows.append({"statistic": name, "n_concat": len(cs), "side_accuracy": float(acc.mean()),
                     "side_accuracy_lo": lo, "side_accuracy_hi": hi, "loudness_correlation": corr})
    return pd.DataFrame(rows)


def method_stream(oya_models: Mapping[str, OyaNet], rcgrad: RCGrad | None, ev: EvalArrays, map_size: int,
                  seed: int = 0, random_rows: tuple[int, slice] | None = None
                  ) -> Iterator[tuple[str, LocalizationMaps]]:
    """Every method's maps on the pairs ``ev``, one method at a time (name, maps): each Oya model
    (name -> model; its two maps get the name as suffix), RCGrad / FlowGrad-H / flow only when
    ``rcgrad`` is not None, and the random floor. At most two methods' maps are alive at once
    when the consumer drops each after use. ``random_rows`` = ``(n, rows)`` when ``ev`` is the
    rows ``rows`` of a set of ``n``: the random floor then takes the same rows of the floor drawn
    for all ``n`` (:func:`score_methods`)."""
    for suffix, model in oya_models.items():
        yield from oya_method_maps(model, ev, suffix).items()
    if rcgrad is not None:
        rc = rcgrad_maps.maps(rcgrad, ev)
        yield "RCGrad", rc
        fh = rcgrad_maps.flowgrad_h_from_rcgrad(rc, ev.flow)
        del rc
        yield "FlowGrad-H", fh
        del fh
        yield "Optical flow only", flow_only_maps(ev)
    n, rows = random_rows if random_rows is not None else (len(ev), None)
    yield RANDOM, random_maps(n, map_size, seed, rows)


def score_methods(oya_models: Mapping[str, OyaNet], rcgrad: RCGrad | None, ev: EvalArrays,
                  map_size: int, at: float = 0.3, n_boot: int = 1000, seed: int = 0,
                  side: np.ndarray | None = None, keep: Sequence[str] = (),
                  keep_rows: Sequence[int] = (), chunk: int = 128
                  ) -> tuple[dict[str, EvalResult], dict[str, np.ndarray], dict[str, LocalizationMaps]]:
    """Every method of :func:`method_stream` scored ``chunk`` samples at a time
    (:func:`vssl_core.eval.scoring.score_chunked`): the same results as :func:`score_stream`
    on all maps at once, with memory bounded by one chunk of one method's maps (~25 MB)
    whatever the number of samples.

    Parameters
    ----------
    ev : EvalArrays
        The pairs (with ``gt``), e.g. a concat set's :meth:`~vssl_core.data.concat.ConcatSet.pairs`.
    side : np.ndarray of str, shape (N,), optional
        Concat sets: also the per-row :func:`side_accuracy` of every method.
    keep, keep_rows : maps of the methods ``keep`` at the samples ``keep_rows`` (for figures).

    Returns
    -------
    results, side accuracies (empty without ``side``), kept maps
    """
    n = len(ev)

    def stream(rows: slice) -> Iterator[tuple[str, LocalizationMaps]]:
        return method_stream(oya_models, rcgrad, ev.subset(rows), map_size, seed, random_rows=(n, rows))

    per_map = (lambda m, rows: side_accuracy(m, side[rows])) if side is not None else None
    return score_chunked(stream, ev.gt, at=at, n_boot=n_boot, seed=seed, per_map=per_map,
                         keep=keep, keep_rows=keep_rows, chunk=chunk)


def swapped_sound_results(model: OyaNet, ev: EvalArrays, at: float = 0.3, n_boot: int = 1000, seed: int = 0,
                          chunk: int = 128) -> dict[str, EvalResult]:
    """The control of a listening claim: ``model``'s localisation map of every pair of ``ev``
    heard with another pair's sound (the seeded swap of
    :func:`vssl_core.eval.audio_sensitivity.with_swapped_audio`), scored against the pair's own
    ground truth, under the name ``LOC + SWAPPED``. A gain of the localisation map over the
    potential map that survives the wrong sound comes from the image, not from listening.
    """
    swapped = with_swapped_audio(ev, seed)

    def stream(rows: slice) -> Iterator[tuple[str, LocalizationMaps]]:
        yield LOC + SWAPPED, oya_maps.both_maps(model, swapped.subset(rows))[0]

    return score_chunked(stream, ev.gt, at=at, n_boot=n_boot, seed=seed, chunk=chunk)[0]


def score_sizes(oya_models: Mapping[int, OyaNet], ev: EvalArrays, map_size: int,
                at: float = 0.3, n_boot: int = 1000, seed: int = 0, chunk: int = 128
                ) -> tuple[dict[int, dict[str, EvalResult]], EvalResult]:
    """Table 1: the localisation and potential maps of each training size's model on ``ev``
    (:func:`score_methods`, in chunks), and the random floor.

    Returns
    -------
    ``{size: {LOC: result, POT: result}}`` and the random floor's result.
    """
    results: dict[int, dict[str, EvalResult]] = {}
    floor = None
    for size, model in oya_models.items():
        res, _, _ = score_methods({"": model}, None, ev, map_size, at=at, n_boot=n_boot, seed=seed,
                                  chunk=chunk)
        floor = res.pop(RANDOM)
        results[size] = res
    if floor is None:
        raise ValueError("no models given")
    return results, floor


def score_stream(stream: Iterable[tuple[str, LocalizationMaps]], gt: np.ndarray, at: float = 0.3,
                 n_boot: int = 1000, seed: int = 0, side: np.ndarray | None = None,
                 keep: Sequence[str] = ()) -> tuple[dict[str, EvalResult], dict[str, np.ndarray],
                                                     dict[str, LocalizationMaps]]:
    """:func:`vssl_core.eval.scoring.score_stream` with, when ``side`` is given, the per-row
    :func:`side_accuracy` of every method as its per-map values."""
    per_map = (lambda m: side_accuracy(m, side)) if side is not None else None
    return _score_stream(stream, gt, at=at, n_boot=n_boot, seed=seed, per_map=per_map, keep=keep)


def concat_maps(oya_models: Mapping[str, OyaNet], rcgrad: RCGrad | None, cs: ConcatSet,
                audio_sr: int, map_size: int, seed: int = 0) -> dict[str, LocalizationMaps]:
    """Every method's maps on a concat set at once (:func:`method_stream` collected; prefer
    :func:`score_methods` for large sets)."""
    return dict(method_stream(oya_models, rcgrad, cs.pairs(audio_sr), map_size, seed))


def pick_examples(gain: np.ndarray, clips: Sequence[str], n_best: int = 2, n_worst: int = 1
                  ) -> list[tuple[int, str]]:
    """Example rows ``(index, caption)``: the ``n_best`` samples with the largest ``gain``
    (e.g. localisation minus potential cIoU) and the ``n_worst`` with the smallest, at most one
    per clip (neighbouring frames of a clip look alike). NaN gains count as 0."""
    g = np.nan_to_num(np.asarray(gain, dtype=np.float64))
    clips = np.asarray(clips).astype(str)
    if g.shape != clips.shape:
        raise data_error(None, "clips", f"{clips.shape} clips for {g.shape} gains",
                         "pass one clip name per sample")
    chosen: list[tuple[int, str]] = []
    used: set[str] = set()
    for order, count, caption in ((np.argsort(-g, kind="stable"), n_best, "sound helps"),
                                  (np.argsort(g, kind="stable"), n_worst, "sound hurts")):
        taken = 0
        for i in order:
            if taken == count:
                break
            if clips[i] in used:
                continue
            chosen.append((int(i), caption))
            used.add(clips[i])
            taken += 1
    return chosen


# ---------------------------------------------------------------------------------- tables
def _ci_row(r: EvalResult, prefix: str = "") -> dict[str, float]:
    return result_columns(r, prefix)


def _paper(table: Mapping[int, tuple], size: int, idx: tuple[int, int]) -> tuple[float, float]:
    row = table.get(size)
    return (row[idx[0]], row[idx[1]]) if row else (math.nan, math.nan)


def _rule_columns(r: EvalResult, protocol: str) -> dict:
    """The rule columns of a row scored under ``protocol`` (none under the companion's, whose
    tables keep their published layout; its rule is printed above them)."""
    return {} if protocol == "companion" else {"postprocess": r.postprocess, "protocol": protocol}


def size_table(results: Mapping[int, Mapping[str, EvalResult]], random: EvalResult | None = None,
               paper: Mapping[int, tuple] = OYA_TABLE1_DE_NOVO,
               paper_random: tuple[float, float] = OYA_RANDOM["table1"], protocol: str = "companion") -> pd.DataFrame:
    """Table 1 / 5 analogue: one row per (training size, map) with CIs, and the paper's value
    for the same size when it has one (its sizes are 1k, 2.5k, 10k, 144k; default: the de novo
    columns of Table 1, as our models are trained from scratch).

    ``results[size]`` holds :data:`LOC` and :data:`POT` results; ``random`` adds the floor row
    (``train_size`` 0) with ``paper_random`` beside it. Under another ``protocol`` than the
    companion's, each row also names its post-processing and the protocol."""
    rows = []
    for size, res in results.items():
        for name, idx in ((LOC, (0, 1)), (POT, (2, 3))):
            p = _paper(paper, size, idx)
            rows.append({"train_size": size, "map": name, "n": res[name].n, **_ci_row(res[name]),
                         "paper_cIoU@0.5": p[0], "paper_AUC": p[1], **_rule_columns(res[name], protocol)})
    if random is not None:
        rows.append({"train_size": 0, "map": RANDOM, "n": random.n, **_ci_row(random),
                     "paper_cIoU@0.5": paper_random[0], "paper_AUC": paper_random[1],
                     **_rule_columns(random, protocol)})
    return pd.DataFrame(rows)


def _paired_rows(a: EvalResult, b: EvalResult, n_boot: int, seed: int) -> dict[str, float]:
    row: dict[str, float] = {}
    for metric, pb in paired_gaps(a, b, n_boot, seed).items():
        row.update({f"{metric}_gap": pb.diff, f"{metric}_lo": pb.lo, f"{metric}_hi": pb.hi,
                    f"{metric}_p": pb.p_value})
    return row


def gap_table(results: Mapping[int, Mapping[str, EvalResult]], n_boot: int = 1000,
              seed: int = 0, paper: Mapping[int, tuple] = OYA_TABLE1_DE_NOVO) -> pd.DataFrame:
    """The performance gap (localisation minus potential map) per training size, paired
    bootstrap; the paper's gap for the same size when it has one."""
    rows = []
    for size, res in results.items():
        p = paper.get(size)
        rows.append({"train_size": size, "n": res[LOC].n,
                     **_paired_rows(res[LOC], res[POT], n_boot, seed),
                     "paper_cIoU_gap": p[0] - p[2] if p else math.nan,
                     "paper_AUC_gap": p[1] - p[3] if p else math.nan})
    return pd.DataFrame(rows)


def type_table(results: Mapping[str, EvalResult], types: np.ndarray, at: float = 0.3,
               n_boot: int = 1000, seed: int = 0, protocol: str = "companion") -> pd.DataFrame:
    """Table 4 analogue: per type, localisation and potential maps (CIs), their paired gap, the
    random floor (when ``results`` has :data:`RANDOM`) and the paper's numbers (and, under
    another ``protocol`` than the companion's, the rule columns of :func:`size_table`).

    Types without samples are left out (a "none" type is shown when present)."""
    per = sample_types.evaluate_by_type({k: r.cious for k, r in results.items()}, types, at=at,
                                        n_boot=n_boot, seed=seed)
    gaps = sample_types.method_gap_by_type(results[LOC].cious, results[POT].cious, types, at=at,
                                           n_boot=n_boot, seed=seed)
    c = f"cIoU@{at:g}"
    rows = []
    for _, g in gaps.iterrows():
        t = g["type"]
        row: dict[str, object] = {"type": t, "n": int(g["n"])}
        for name, tag in ((LOC, "loc_"), (POT, "pot_"), (RANDOM, "random_")):
            if name not in results:
                continue
            r = per[(per["method"] == name) & (per["type"] == t)].iloc[0]
            row.update({f"{tag}{c}": r[c], f"{tag}{c}_lo": r[f"{c}_lo"], f"{tag}{c}_hi": r[f"{c}_hi"],
                        f"{tag}AUC": r["AUC"], f"{tag}AUC_lo": r["AUC_lo"], f"{tag}AUC_hi": r["AUC_hi"]})
        row.update({f"gap_{c}": g[f"{c}_gap"], f"gap_{c}_lo": g[f"{c}_lo"],
                    f"gap_{c}_hi": g[f"{c}_hi"], "gap_AUC": g["AUC_gap"],
                    "gap_AUC_lo": g["AUC_lo"], "gap_AUC_hi": g["AUC_hi"]})
        p = OYA_TABLE4.get(t)
        row.update({"paper_loc_IoU": p[0] if p else math.nan, "paper_pot_IoU": p[2] if p else math.nan,
                    "paper_gap_IoU": p[0] - p[2] if p else math.nan, **_rule_columns(results[LOC], protocol)})
        rows.append(row)
    return pd.DataFrame(rows)


def type_gap_table(results: Mapping[str, EvalResult], types: np.ndarray,
                   comparisons: Sequence[tuple[str, str]], at: float = 0.3, n_boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Paired gaps ``a - b`` within each type for several method pairs (one row per pair and
    type); pairs naming a method not in ``results`` are skipped."""
    frames = []
    for a, b in comparisons:
        if a not in results or b not in results:
            continue
        g = sample_types.method_gap_by_type(results[a].cious, results[b].cious, types, at=at,
                                            n_boot=n_boot, seed=seed)
        g.insert(0, "comparison", f"{a} - {b}")
        frames.append(g)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def type_gap(table: pd.DataFrame, a: str, b: str, sample_type: str = "B") -> pd.Series:
    """The row ``a - b`` of sample type ``sample_type`` of a :func:`type_gap_table` table.

    Raises
    ------
    KeyError
        When the table has no such row (the comparison was not asked for, or named a method
        without results).
    """
    rows = table[(table["comparison"] == f"{a} - {b}") & (table["type"] == sample_type)]
    if rows.empty:
        raise KeyError(f"no {a!r} - {b!r} gap of type {sample_type!r} in the table (comparisons: "
                       f"{sorted(set(table['comparison']))})")
    return rows.iloc[0]


def protocol_table(original: Mapping[str, EvalResult], concat: Mapping[str, EvalResult],
                   side: Mapping[str, np.ndarray] | None = None, protocol: str = "companion",
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each method on the original pairs and on the concat-and-localize set, side by side, with
    the concat side accuracy when given and its pair-bootstrap 95% interval
    (:func:`~vssl_core.eval.side_accuracy.side_accuracy_interval` with ``n_boot`` and ``seed``);
    methods present in both; rule columns under another ``protocol`` than the companion's, as
    :func:`size_table`."""
    rows = []
    for name in original:
        if name not in concat:
            continue
        o, k = original[name], concat[name]
        row = {"method": name, "n_original": o.n, "n_concat": k.n}
        row.update(_ci_row(o, "orig_"))
        row.update(_ci_row(k, "concat_"))
        if side is not None and name in side:
            row["side_accuracy"] = float(np.mean(side[name]))
            row["side_accuracy_lo"], row["side_accuracy_hi"] = side_accuracy_interval(side[name], n_boot, seed)
        row.update(_rule_columns(o, protocol))
        rows.append(row)
    return pd.DataFrame(rows)
