"""The Hear The Flow ablations (Tables 4 and 5) on the synthetic streets.

One typed :class:`HearTheFlowSetup` is passed whole through every step; the notebook's
parameters map onto it one to one. Expensive steps are cached by a fingerprint of what changes
them: the training and evaluation sets (:mod:`vssl_core.data.evalset`, with the 2-channel flow
field), the object prior (:func:`prior_spec`) and every trained model (:mod:`vssl_core.training.store`).

Protocol
--------
- Table 4 rows (Hear The Flow, Sec. 4.6): ``a`` no flow, random vision; ``b`` no flow,
  pretrained vision; ``c`` no flow, pretrained and frozen; ``d`` flow, random vision;
  ``e`` flow, pretrained; ``f`` flow, pretrained and frozen (the paper's model). Rows a-c are
  LVS on Hear The Flow's grid (:class:`~vssl_core.models.htf.HTF` with ``flow_encoder="none"``:
  same encoders, same loss, no attention).
- Table 5: the flow encoder of row f (ResNet-18) against adaptive max pooling of the field.
- "Pretrained vision" is the vehicle prior of :mod:`vssl_core.models.pretrain` (supervised
  classification of object crops cut from the *training* clips' frames) unless
  ``imagenet_weights`` names a local torchvision ResNet-18 file. The flow encoder starts from
  the same weights when the vision does (as the paper starts both from ImageNet).
- Training uses random windows of the training clips (annotations unread); evaluation uses the
  FlowGrad pairs of the held-out clips. Maps: the cosine map resized to 224 and min-max scaled,
  scored by default with ``median`` post-processing and cIoU@0.5 (docs/conventions.md, "LVS and Hear The Flow"); :func:`score`
  can swap the post-processing (see there why the notebook does).
- Every model keeps the epoch with the lowest loss on a **validation split** (windows of the
  validation scenes, never the evaluation clips). The released code keeps the epoch with the
  best cIoU on its *test* set (``ModelCheckpoint(monitor="val/cIoU")`` over the test loader);
  that selection is documented here, not reproduced.

Protocols (``HearTheFlowSetup.protocol``; :func:`evaluation_rules`)
-------------------------------------------------------------------
``"companion"`` (the quick profile): ``"clean"`` post-processing at the notebook's cut-off
(0.3), FlowGrad's 1 s of evaluation audio from ``t - 0.5``, signed float flow over one 8-fps
step (``flow_window_s``). ``"paper"`` (Sec. 4.2-4.3): ``"median"`` binarisation, cIoU@0.5, 3 s
of evaluation audio centred on the frame (``audio_seconds``), the flow between the frame and
the next *native* frame. ``"released"``: the paper's rules plus the released code where it
differs from the text: the flow fed as its 8-bit JPEG encoding (:func:`vssl_core.models.htf.jpeg_flow_field`),
BatchNorm of a frozen vision encoder in train mode, a random ``conv1`` in a pretrained flow
encoder, and a pretrained flow encoder on every flow row (``--pretrain_flow 1``, the default,
also in row d). Model recipes change only where a protocol changes the model or its data, so
the companion's shipped weights stay valid.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
import torch

from vssl_core.data.arrays import EVAL_AUDIO_SECONDS, EvalArrays, load_evaluation
from vssl_core.data.flow import FlowParams
from vssl_core.data.synth import GENERATOR_VERSION
from vssl_core.data.training_set import ScenesSetup, load_training_data, validation_pairs
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.eval.audio_sensitivity import check_summary, compare_maps, uniform_share, with_swapped_audio
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import EvalResult
from vssl_core.eval.scoring import result_columns
from vssl_core.eval.scoring import score_stream as _score_stream
from vssl_core.models import lvs_maps
from vssl_core.models.baselines import centred_box_maps, flow_only_maps
from vssl_core.errors import data_error
from vssl_core.models.htf import HTF, HTFConfig, JpegFlowField, build_htf, prepare_flow_field
from vssl_core.models.lvs import LVS
from vssl_core.models.rcgrad import prepare_images
from vssl_core.training.loop import TrainConfig
from vssl_core.training.store import Models, ModelSpec

__all__ = ["HearTheFlowSetup", "PROTOCOLS", "EvalRules", "evaluation_rules", "TABLE4_ROWS", "MODEL_NAMES",
           "HTF_TABLE4", "HTF_TABLE5", "load_pairs", "prior_spec",
           "model_config", "model_specs", "UNFROZEN_STARTS", "FROZEN_ROW_OF", "started_from", "trained_models", "chance_loss", "validation_metrics", "audio_response", "audio_sensitivity", "flow_attention_stats", "audio_change_table", "score",
           "score_stream", "with_postprocess", "table4_stream", "table4", "table5"]

#: Hear The Flow Table 4 (VGG-Sound 10k training, VGG-SS test): row -> (cIoU@0.5, AUC).
#: Rows: a no flow; b + pretrained vision; c + frozen; d flow; e flow + pretrained; f + frozen.
HTF_TABLE4 = {
    "a": (0.129, 0.275), "b": (0.315, 0.364), "c": (0.306, 0.362),
    "d": (0.271, 0.343), "e": (0.382, 0.394), "f": (0.393, 0.398),
}

#: Hear The Flow Table 5, VGG-Sound 10k rows: flow network -> (cIoU@0.5, AUC).
HTF_TABLE5 = {"MaxPool": (0.379, 0.393), "ResNet18": (0.393, 0.398)}

#: Hear The Flow reports cIoU@0.5; the tables add it beside the notebook's cut-off.
PAPER_CUTOFF = 0.5
#: Hear The Flow's post-processing of LVS / HTF maps (min-max, then 1 above the median).
PAPER_POSTPROCESS = "median"
#: The companion's default rule and cut-off for street scenes (notebook 03's parameters).
COMPANION_POSTPROCESS, COMPANION_CUTOFF = "clean", 0.3
#: The protocol values of ``HearTheFlowSetup.protocol``.
PROTOCOLS = ("companion", "paper", "released")
#: ``flow_window_s`` of every protocol but the companion's, which do not read it.
_DEFAULT_WINDOW = 0.125

#: Starts of the pretrained rows whose vision is trained (:attr:`HearTheFlowSetup.unfrozen_start`).
UNFROZEN_STARTS = ("frozen_row", "prior")
#: ``unfrozen_start="frozen_row"``: the row each such row starts from (same cell, vision frozen).
FROZEN_ROW_OF = {"b": "c", "e": "f"}

#: Table 4 rows: (flow, pretrained vision, frozen vision).
TABLE4_ROWS: dict[str, tuple[bool, bool, bool]] = {
    "a": (False, False, False), "b": (False, True, False), "c": (False, True, True),
    "d": (True, False, False), "e": (True, True, False), "f": (True, True, True),
}


@dataclass(frozen=True)
class HearTheFlowSetup(ScenesSetup):
    """Everything that defines one run of the Hear The Flow ablations.

    Attributes
    ----------
    eval_clips, train_scenes, scene_seconds, scene_seed, val_scenes, train_windows, val_windows
        Evaluation clips and training scenes (:class:`~vssl_core.data.training_set.ScenesSetup`;
        the same scenes as the RCGrad family's by default).
    image_size, width, layer4_stride : int, float, int
        Input side (px), ResNet-18 width multiplier, layer4 stride. The paper: 224 px, 1.0,
        stride 2 (7x7 grid); the quick profile: 112 px, 0.25, stride 1 (7x7 grid).
    audio_sr, audio_seconds : int, float
        Audio rate (Hz) and training window (s); Hear The Flow uses 3 s at 22.05 kHz (released
        code; its text says 16 kHz). Evaluation: FlowGrad's 1 s from t - 0.5 at ``audio_sr``
        (companion protocol) or ``audio_seconds`` centred on the frame (paper, released).
    flow_window_s : float
        Flow aggregation window (s) of the companion protocol.
    attn_gate : bool
        Beyond the paper: the flow rows scale what the flow attention adds by a learnable scalar
        that starts at 0 (:class:`~vssl_core.models.htf.HTFConfig`). Chosen on the validation
        scenes (docs/conventions.md, "LVS and Hear The Flow"); False gives the paper's model, as
        the "released" protocol always does.
    unfrozen_start : {"frozen_row", "prior"}
        Where the rows with a pretrained vision encoder that is trained (b, e) start.
        ``"prior"`` is the paper: from the vision prior, every part trained at ``lr`` from the
        first step. ``"frozen_row"`` (beyond the paper) trains them in two stages: they start from
        their frozen row's trained weights (b from c, e from f: audio, flow and attention already
        fitted to the prior) and then train everything at ``lr * unfrozen_lr_scale``. Linear
        probing then fine-tuning: a randomly initialised head's first gradients otherwise reshape
        the pretrained encoder before anything useful reaches it. Chosen on the validation scenes
        (docs/conventions.md, "LVS and Hear The Flow"). The ``"released"`` protocol always uses
        ``"prior"``.
    unfrozen_lr_scale : float
        The second stage's learning rate, as a multiple of ``lr`` (``"frozen_row"`` only).
    imagenet_weights : str
        Local torchvision ResNet-18 state dict: used as the vision prior instead of the object
        prior (needs ``width=1.0``); '' for the object prior.
    protocol : {"companion", "paper", "released"}
        The evaluation rules and, for ``"paper"`` / ``"released"``, the flow and model details
        of Hear The Flow's text / released code (module docstring, :func:`evaluation_rules`).
        Under ``"paper"`` and ``"released"`` the flow is one native frame pair, so
        ``flow_window_s`` must keep its default.
    prior_epochs, epochs, batch_size, lr, seed, patience, num_threads
        Training (:class:`~vssl_core.repro.profiles.TrainingSetup`; the object prior is the
        "pretrained vision" of Table 4; the paper: lr 1e-3, batch 128, 100 epochs).
    """

    PROFILE_TABLE = "03_ablations"

    image_size: int = 112
    width: float = 0.25
    layer4_stride: int = 1
    audio_sr: int = 16000
    audio_seconds: float = 1.0
    flow_window_s: float = 0.125
    attn_gate: bool = True
    unfrozen_start: str = "frozen_row"
    unfrozen_lr_scale: float = 0.1
    imagenet_weights: str = ""
    protocol: str = "companion"

    def __post_init__(self) -> None:
        if self.unfrozen_start not in UNFROZEN_STARTS:
            raise data_error(None, "unfrozen_start", f"{self.unfrozen_start!r} is not a start of the trained "
                             "pretrained rows", f"choose one of {UNFROZEN_STARTS}")
        if not self.unfrozen_lr_scale > 0:
            raise data_error(None, "unfrozen_lr_scale", f"{self.unfrozen_lr_scale} is not a learning-rate factor",
                             "give a factor > 0 (0.1: the second stage at a tenth of lr)")
        if self.protocol not in PROTOCOLS:
            raise data_error(None, "protocol", f"{self.protocol!r} is not a protocol of Hear The Flow's study",
                             f"choose one of {PROTOCOLS}")
        if self.protocol != "companion" and self.flow_window_s != _DEFAULT_WINDOW:
            raise data_error(None, "flow_window_s", f"{self.flow_window_s} s, but protocol {self.protocol!r} uses "
                             "Hear The Flow's flow between a frame and the next native frame",
                             f"leave flow_window_s = {_DEFAULT_WINDOW}, or set protocol = 'companion' to choose the window")

    @property
    def flow(self) -> FlowParams:
        """The flow the models read: ``flow_window_s`` of 8-fps steps (companion), or one pair of
        consecutive native frames (Hear The Flow Sec. 4.3; the paper and released protocols)."""
        if self.protocol == "companion":
            return FlowParams(window_s=self.flow_window_s)
        return FlowParams.native()

    @property
    def eval_audio_seconds(self) -> float:
        """Evaluation audio, centred on the frame: FlowGrad's 1 s (companion) or the training
        window ``audio_seconds`` (Hear The Flow: 3 s centred on the frame, Sec. 4.3)."""
        return EVAL_AUDIO_SECONDS if self.protocol == "companion" else float(self.audio_seconds)

    @property
    def released(self) -> bool:
        return self.protocol == "released"

    @property
    def two_stage(self) -> bool:
        """True when rows b and e start from rows c and f (``unfrozen_start``; never "released")."""
        return self.unfrozen_start == "frozen_row" and not self.released

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_setup(self)


# -- protocol --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalRules:
    """How one protocol scores Hear The Flow's models (printed above notebook 03's tables).

    Attributes
    ----------
    protocol : str
    postprocess : str
        The rule applied to the LVS / HTF maps (the flow and centred-box references keep theirs).
    cutoff : float
        cIoU cut-off of the tables (their ``cIoU@<cutoff>`` columns).
    audio_seconds : float
        Evaluation audio, centred on the frame.
    flow, model, checkpoint : str
        What the models read, how the released switches are set, which epoch is kept.
    """

    protocol: str
    postprocess: str
    cutoff: float
    audio_seconds: float
    flow: str
    model: str
    checkpoint: str

    def __str__(self) -> str:
        return (f"Protocol {self.protocol!r} (Hear The Flow's study, docs/conventions.md 'Deviations from the papers'):\n"
                f"  scoring: LVS / HTF maps post-processed '{self.postprocess}', cIoU@{self.cutoff:g} and AUC\n"
                f"  evaluation audio: {self.audio_seconds:g} s centred on the frame\n"
                f"  flow: {self.flow}\n  model: {self.model}\n  checkpoint: {self.checkpoint}")


def evaluation_rules(setup: HearTheFlowSetup, at: float | None = None, lvs_postprocess: str | None = None) -> EvalRules:
    """The rules of ``setup.protocol``, checked against the notebook's ``at`` and ``lvs_postprocess``.

    Under ``"companion"`` the notebook's values are the rules (None: 0.3 and ``"clean"``). Under
    ``"paper"`` and ``"released"`` the rules are Hear The Flow's (``"median"``, cIoU@0.5,
    Sec. 4.2); a notebook value that disagrees is refused, naming the parameter.

    Raises
    ------
    DataError
        ``at`` or ``lvs_postprocess`` disagree with the protocol.
    """
    checkpoint = ("the epoch with the lowest validation loss (validation scenes; the released code "
                  "picks the best test-set cIoU: documented, not reproduced)")
    beyond = ("; flow attention output scaled by a learnable gate that starts at 0 (attn_gate, beyond the paper)"
              if setup.attn_gate and not setup.released else "")
    if setup.two_stage:
        beyond += (f"; rows b, e start from rows c, f and train everything at lr x {setup.unfrozen_lr_scale:g} "
                   "(unfrozen_start, beyond the paper)")
    if setup.protocol == "companion":
        return EvalRules("companion", lvs_postprocess or COMPANION_POSTPROCESS,
                         float(COMPANION_CUTOFF if at is None else at), setup.eval_audio_seconds,
                         f"signed float (dx, dy) over {setup.flow_window_s:g} s of 8-fps steps",
                         "frozen vision keeps its BatchNorm statistics; flow encoder conv1 = RGB mean, "
                         "pretrained with the vision" + beyond, checkpoint)
    for name, value, want in (("at", at, PAPER_CUTOFF), ("lvs_postprocess", lvs_postprocess, PAPER_POSTPROCESS)):
        if value is not None and value != want:
            raise data_error(None, name, f"{value!r} disagrees with protocol {setup.protocol!r} "
                             f"(Hear The Flow: '{PAPER_POSTPROCESS}' maps, cIoU@{PAPER_CUTOFF:g}, Sec. 4.2)",
                             f"set {name} = {want!r}, or protocol = 'companion' to choose your own rule")
    flow = "signed float (dx, dy) between the frame and the next native frame (Sec. 4.3)"
    model = ("as the text: frozen vision keeps its BatchNorm statistics; flow encoder conv1 = RGB mean, "
             "pretrained with the vision" + beyond)
    if setup.released:
        flow = ("the next native frame, as the released 8-bit JPEGs: min(max(round(d), 0), 255) / 255 "
                "(leftward and upward motion lost)")
        model = ("as released: frozen vision = requires_grad=False only (BatchNorm in train mode); pretrained "
                 "flow encoder on every flow row (pretrain_flow=1) with a random conv1")
    return EvalRules(setup.protocol, PAPER_POSTPROCESS, PAPER_CUTOFF, setup.eval_audio_seconds, flow, model,
                     checkpoint)


# -- data ------------------------------------------------------------------------------------------
def _encoded(arrays, setup: HearTheFlowSetup):
    """``arrays`` (EvalArrays or TrainingArrays) with the flow field as the protocol feeds it."""
    if not setup.released or arrays.flow_field is None:
        return arrays
    return dataclasses.replace(arrays, flow_field=JpegFlowField(arrays.flow_field))


def load_pairs(dataset: UrbansasDataset, clips: Sequence[str] | None, setup: HearTheFlowSetup,
               progress: bool = True) -> EvalArrays:
    """The FlowGrad pairs of ``clips`` with the flow field (``EvalArrays.flow_field``), the audio
    window and flow of ``setup.protocol`` (:attr:`HearTheFlowSetup.eval_audio_seconds`,
    :attr:`HearTheFlowSetup.flow`; the released JPEG encoding under ``"released"``)."""
    return _encoded(load_evaluation(dataset, clips, image_size=setup.image_size, flow=setup.flow,
                                    audio_sr=setup.audio_sr, flow_field=True, progress=progress,
                                    audio_seconds=setup.eval_audio_seconds), setup)


@cache
def _windows(setup: HearTheFlowSetup, progress: bool = True):
    d = load_training_data(setup.scenes, n_windows=setup.train_windows, n_val_windows=setup.val_windows,
                           seconds=setup.audio_seconds, image_size=setup.image_size, flow=setup.flow,
                           audio_sr=setup.audio_sr, seed=setup.seed, flow_field=True, progress=progress)
    return _encoded(d.train, setup), _encoded(d.val, setup)


@cache
def _val_pairs(setup: HearTheFlowSetup) -> EvalArrays:
    pairs = validation_pairs(setup.scenes, image_size=setup.image_size, flow=setup.flow, audio_sr=setup.audio_sr,
                             flow_field=True, progress=False)
    step = max(1, len(pairs) // 256)
    return _encoded(pairs, setup).subset(list(range(0, len(pairs), step)))


def _data_recipe(setup: HearTheFlowSetup) -> dict:
    return {"scenes": setup.scenes.to_dict(), "generator": GENERATOR_VERSION, "windows": setup.train_windows,
            "val_windows": setup.val_windows, "seconds": setup.audio_seconds, "image_size": setup.image_size,
            "flow": dataclasses.asdict(setup.flow), "audio_sr": setup.audio_sr, "seed": setup.seed, "field": True}


def validation_metrics(setup: HearTheFlowSetup, lvs_postprocess: str = "clean"):
    """Per-epoch held-out check: cIoU@0.3 of the maps on labelled validation pairs (scored with
    ``lvs_postprocess``) and how much they change with swapped audio."""
    from vssl_core.eval.metrics import ciou, ciou_at

    def metrics(model) -> dict[str, float]:
        pairs = _val_pairs(setup)
        m = lvs_maps.maps(model, pairs).relabel(lvs_postprocess)
        return {"val_ciou@0.3": float(ciou_at(ciou(m.maps, pairs.gt, postprocess=m.postprocess), 0.3)),
                "val_audio_sensitivity": audio_sensitivity(model, pairs.subset(list(range(min(len(pairs), 128)))))}
    return metrics


# -- models ----------------------------------------------------------------------------------------
def prior_spec(setup: HearTheFlowSetup, progress: bool = True) -> ModelSpec | None:
    """The object prior of Hear The Flow's encoders (None with ``imagenet_weights``)."""
    from vssl_core.models.pretrain import PriorConfig
    from vssl_core.training.rcgrad_family import object_prior_spec

    if setup.imagenet_weights:
        return None
    cfg = PriorConfig(arch="resnet18", width=setup.width, layer4_stride=setup.layer4_stride,
                      image_size=setup.image_size, normalization="imagenet")
    return object_prior_spec("htf-prior", cfg, setup.scenes,
                             TrainConfig(epochs=max(setup.prior_epochs, 1), batch_size=setup.batch_size, lr=1e-3,
                                         seed=setup.seed, num_threads=setup.num_threads), 2.0, progress)


def model_config(setup: HearTheFlowSetup, *, flow: bool, pretrained: bool, frozen: bool,
                 flow_encoder: str = "resnet") -> HTFConfig:
    """The :class:`HTFConfig` of one ablation cell (``flow_encoder`` applies when ``flow``); the
    vision prior itself is loaded by the model's spec (:func:`model_specs`). Under
    ``protocol="released"`` the released switches are set where they apply: the JPEG flow input
    on flow rows, train-mode BatchNorm on frozen rows, and a pretrained flow encoder (every
    ResNet flow row, as ``--pretrain_flow 1``) with a random ``conv1``."""
    if frozen and not pretrained:
        raise ValueError("freezing a randomly initialised vision encoder is not an ablation of the paper")
    encoder = flow_encoder if flow else "none"
    released: dict = {}
    pretrained_flow = pretrained
    if setup.released:
        if flow:
            released["flow_input"] = "jpeg"
        if frozen:
            released["frozen_batchnorm"] = "train"
        if encoder == "resnet":
            pretrained_flow = True
            released["flow_conv1"] = "random"
    gate = setup.attn_gate and flow and not setup.released
    return HTFConfig(flow_encoder=encoder, freeze_vision=frozen, attn_gate=gate,
                     pretrained_vision=None, pretrained_flow=pretrained_flow,
                     width=setup.width, layer4_stride=setup.layer4_stride, image_size=setup.image_size,
                     audio_sr=setup.audio_sr, audio_seconds=setup.audio_seconds, **released)


def chance_loss(batch_size: int) -> float:
    """The tri-map loss when every logit of a row is equal (positive, hard negative and the
    ``batch - 1`` easy negatives): ``ln(batch + 1)``, the level of a model that tells no pair apart."""
    import math

    return math.log(batch_size + 1)


#: Spec names of the models of Tables 4 and 5.
MODEL_NAMES = {**{row: f"htf-{row}" for row in TABLE4_ROWS}, "MaxPool": "htf-maxpool"}


def model_specs(setup: HearTheFlowSetup, models: Models, progress: bool = True,
                lvs_postprocess: str = "clean") -> dict[str, ModelSpec]:
    """Specs of the object prior, the Table 4 rows (by letter) and the Table 5 MaxPool model."""
    from vssl_core.repro.cache import file_sha256

    prior = prior_spec(setup, progress)
    specs: dict[str, ModelSpec] = {} if prior is None else {"prior": prior}
    vision_recipe = ({"imagenet_sha256": file_sha256(setup.imagenet_weights)} if setup.imagenet_weights
                     else {"object_prior": prior.key})
    cells = {row: (flow, pre, frozen, "resnet") for row, (flow, pre, frozen) in TABLE4_ROWS.items()}
    cells["MaxPool"] = (True, True, True, "maxpool")
    for row, (flow, pretrained, frozen, encoder) in cells.items():
        cfg = model_config(setup, flow=flow, pretrained=pretrained, frozen=frozen, flow_encoder=encoder)
        # released row d: a random vision encoder beside a pretrained flow encoder
        flow_prior = not pretrained and cfg.flow_encoder == "resnet" and cfg.pretrained_flow

        def factory(cfg=cfg, pretrained=pretrained, flow_prior=flow_prior):
            if not pretrained and not flow_prior:
                return build_htf(cfg)[0]
            if setup.imagenet_weights:
                return build_htf(dataclasses.replace(cfg, pretrained_vision=setup.imagenet_weights), image=pretrained)[0]
            return build_htf(cfg, models.get(prior).encoder_state(), image=pretrained)[0]
        recipe = {"model": cfg.to_dict(), "data": _data_recipe(setup), "vision": vision_recipe if pretrained else None}
        if flow_prior:
            recipe["flow_prior"] = vision_recipe
        specs[row] = ModelSpec(MODEL_NAMES[row], recipe, factory, setup.train_config(), lambda: _windows(setup, progress),
                               validation_metrics(setup, lvs_postprocess), minutes=6.0)
    if setup.two_stage:
        for row, frozen_row in FROZEN_ROW_OF.items():
            specs[row] = started_from(specs[row], specs[frozen_row], models, setup.unfrozen_lr_scale)
    return specs


def started_from(spec: ModelSpec, start: ModelSpec, models: Models, lr_scale: float) -> ModelSpec:
    """``spec`` trained as a second stage: its model starts from ``start``'s trained weights (same
    parameter names and shapes, e.g. the frozen row of the same cell) and trains at ``lr * lr_scale``.

    The recipe names ``start``'s key, so retraining the first stage changes the second's key too.
    """
    def factory() -> torch.nn.Module:
        model = spec.factory()
        model.load_state_dict(models.get(start).state_dict())  # strict: the two cells must match
        return model

    recipe = {**spec.recipe, "start": {"from": start.key, "lr_scale": float(lr_scale)}}
    config = dataclasses.replace(spec.config, lr=spec.config.lr * lr_scale)
    return dataclasses.replace(spec, recipe=recipe, factory=factory, config=config)


def trained_models(setup: HearTheFlowSetup, models: Models | None = None, rows: Sequence[str] = (*TABLE4_ROWS, "MaxPool"),
                   progress: bool = True) -> dict[str, LVS | HTF]:
    """The models of ``rows`` (Table 4 letters and "MaxPool"), shipped, cached or trained."""
    models = models if models is not None else Models(progress=progress)
    specs = model_specs(setup, models, progress)
    return {row: models.get(specs[row]) for row in rows}


# -- maps and scores -------------------------------------------------------------------------------
def audio_response(model: LVS | HTF, ev: EvalArrays, seed: int = 0, chunk: int = 128, *,
                   scoring: tuple[float, str, int] | None = None) -> dict[str, float]:
    """How the model's map responds when each frame is heard with another clip's sound (the swap
    of :func:`vssl_core.eval.audio_sensitivity.audio_sensitivity`), from one pass with each sound.

    Returns ``n``; ``audio sensitivity`` of the maps the metrics see (224 px, min-max scaled:
    :func:`audio_sensitivity`); and, on the raw cosine maps of the feature grid, ``raw change
    (RMS)`` (cosine units) and ``uniform share``, the mean share of that change that lifts or
    lowers the whole map alike (:func:`~vssl_core.eval.audio_sensitivity.uniform_share`; NaN if
    the sound changes nothing). A high uniform share with a low sensitivity: the sound says "this
    is the right frame" but not where (the tri-map loss rewards that, the scaled maps hide it).

    ``scoring=(at, lvs_postprocess, n_boot)`` also scores both maps against ``ev.gt`` and adds the
    paired cIoU@``at`` difference own minus swapped sound with its interval
    (:func:`~vssl_core.eval.audio_sensitivity.sound_gain`): does the sound move the map *toward*
    the source?
    """
    swapped = with_swapped_audio(ev, seed)
    own = lvs_maps.heatmaps(model, ev.images, ev.audio, ev.flow_field)
    other = lvs_maps.heatmaps(model, swapped.images, swapped.audio, swapped.flow_field)
    at, postprocess, n_boot = scoring if scoring is not None else (None, "median", 0)
    parts = [compare_maps(lvs_maps.grid_maps(model, own[rows]).relabel(postprocess),
                          lvs_maps.grid_maps(model, other[rows]).relabel(postprocess),
                          None if scoring is None else ev.gt[rows], at)
             for rows in (slice(start, start + chunk) for start in range(0, len(ev), chunk))]
    share = uniform_share(own, other)
    summary = check_summary(parts, at, n_boot, seed)
    return {"n": len(ev), "audio sensitivity": summary.pop("audio sensitivity"),
            "raw change (RMS)": float(np.sqrt(((other.astype(np.float64) - own) ** 2).mean())),
            "uniform share": float(np.nanmean(share)) if np.isfinite(share).any() else float("nan"), **summary}


def audio_sensitivity(model: LVS | HTF, ev: EvalArrays, seed: int = 0) -> float:
    """How much the model's map depends on the sound (``audio sensitivity`` of :func:`audio_response`)."""
    return audio_response(model, ev, seed)["audio sensitivity"]


def flow_attention_stats(model: LVS | HTF, ev: EvalArrays, chunk: int = 64) -> dict[str, float]:
    """What the flow attention adds to the image features, over the pairs ``ev``.

    Returns ``attention / image``, the mean over frames and grid positions of ``|added| /
    |image features|`` (0: the flow changes nothing), and ``attention uniformity``, per frame
    ``|spatial mean of the added vectors| / mean |added vector|`` averaged over frames (1: every
    position receives the same vector, a constant added to the whole map's features; near 0: each
    position its own). Both NaN for a model without flow attention (LVS rows a-c).
    """
    if not (isinstance(model, HTF) and model.config.uses_flow):
        return {"attention / image": float("nan"), "attention uniformity": float("nan")}
    ratio, uniformity = [], []
    size = model.config.image_size
    with torch.no_grad():
        for start in range(0, len(ev), chunk):
            rows = slice(start, start + chunk)
            feats, attended, _ = model.attend(prepare_images(ev.images[rows], size),
                                              prepare_flow_field(ev.flow_field[rows], size))
            added = attended - feats
            norm = added.norm(dim=1)  # (n, h, w)
            ratio.append((norm / feats.norm(dim=1).clamp_min(1e-8)).mean(dim=(1, 2)))
            uniformity.append(added.mean(dim=(2, 3)).norm(dim=1) / norm.mean(dim=(1, 2)).clamp_min(1e-8))
    return {"attention / image": float(torch.cat(ratio).mean()),
            "attention uniformity": float(torch.cat(uniformity).mean())}


def audio_change_table(responses: Mapping[str, Mapping[str, float]],
                       attention: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """One row per model of its :func:`audio_response`, then its :func:`flow_attention_stats`
    when ``attention`` is given (by the same model names)."""
    attention = attention or {}
    return pd.DataFrame([{"model": name, **response, **attention.get(name, {})}
                         for name, response in responses.items()])


def score(maps: Mapping[str, LocalizationMaps], gt: np.ndarray, at: float = 0.5,
          n_boot: int = 1000, seed: int = 0, lvs_postprocess: str = "median") -> dict[str, EvalResult]:
    """cIoU@``at`` and AUC with bootstrap CIs, each with the post-processing its maps name.

    ``lvs_postprocess`` replaces the ``"median"`` of the LVS / Hear The Flow maps (docs/conventions.md, "Map post-processing")
    by another rule of :func:`vssl_core.eval.metrics.postprocess`. Median binarisation marks half of
    every image as sounding; on street scenes, where the sounding vehicles cover a few percent
    of the frame, that caps any map's cIoU far below the 0.5 cut-off, so the notebook's default
    is ``"clean"`` (RCGrad's rule: min-max, values below the median set to 0, threshold 0.5)
    with FlowGrad's 0.3 cut-off, and says so.
    """
    return score_stream(maps.items(), gt, at=at, n_boot=n_boot, seed=seed, lvs_postprocess=lvs_postprocess)


def with_postprocess(stream: Iterable[tuple[str, LocalizationMaps]], lvs_postprocess: str
                     ) -> Iterator[tuple[str, LocalizationMaps]]:
    """The same maps (no copy), the LVS / HTF ones relabelled with ``lvs_postprocess``."""
    if lvs_postprocess not in ("clean", "median", "none"):
        raise ValueError(f"lvs_postprocess must be 'clean', 'median' or 'none', got {lvs_postprocess!r}")
    for name, m in stream:
        yield name, (m.relabel(lvs_postprocess) if m.method in ("lvs", "htf") else m)


def table4_stream(models: Mapping[str, LVS | HTF], ev: EvalArrays) -> Iterator[tuple[str, LocalizationMaps]]:
    """Each model's maps on ``ev`` (one at a time), then the flow-only and centred-box references."""
    for row, model in models.items():
        yield row, lvs_maps.maps(model, ev)
    yield "flow only (reference)", flow_only_maps(ev)
    yield "centred box (reference)", centred_box_maps(ev)


def score_stream(stream: Iterable[tuple[str, LocalizationMaps]], gt: np.ndarray, at: float = 0.5,
                 n_boot: int = 1000, seed: int = 0, lvs_postprocess: str = "median") -> dict[str, EvalResult]:
    """:func:`score` one method at a time (each map dropped after scoring: bounded memory)."""
    return _score_stream(with_postprocess(stream, lvs_postprocess), gt, at=at, n_boot=n_boot, seed=seed)[0]


def _row(r: EvalResult) -> dict:
    """cIoU at the scored cut-off and at the paper's 0.5 (when different), AUC; 95% CIs."""
    return {"n": r.n, **result_columns(r, extra_cutoff=PAPER_CUTOFF)}


def _rule_columns(r: EvalResult, protocol: str) -> dict:
    """The rule columns of a table row scored under ``protocol`` (none under the companion's,
    whose tables keep their published layout; its rule is printed above them)."""
    return {} if protocol == "companion" else {"postprocess": r.postprocess, "protocol": protocol}


def table4(results: Mapping[str, EvalResult], prior_name: str = "vehicle prior",
           sensitivity: Mapping[str, float] | None = None, protocol: str = "companion") -> pd.DataFrame:
    """Table 4: one row per ablation letter present in ``results`` (plus any extra rows such
    as references), with :func:`audio_sensitivity` where given and the paper's numbers; under
    another ``protocol`` than the companion's, each row also names its post-processing and
    the protocol."""
    rows = []
    for key, r in results.items():
        flow, pre, frozen = TABLE4_ROWS.get(key, (None, None, None))
        paper = HTF_TABLE4.get(key, (np.nan, np.nan))
        rows.append({"model": key, "flow": flow, f"pretrained vision ({prior_name})": pre,
                     "frozen vision": frozen, **_row(r),
                     "audio sensitivity": (sensitivity or {}).get(key, np.nan),
                     "paper_cIoU@0.5": paper[0], "paper_AUC": paper[1], **_rule_columns(r, protocol)})
    return pd.DataFrame(rows)


def table5(results: Mapping[str, EvalResult], protocol: str = "companion") -> pd.DataFrame:
    """Table 5: the flow encoders ("MaxPool", "ResNet18") with the paper's VGGS-10k numbers
    (rule columns as :func:`table4`)."""
    rows = []
    for key, r in results.items():
        paper = HTF_TABLE5.get(key, (np.nan, np.nan))
        rows.append({"flow network": key, **_row(r), "paper_cIoU@0.5": paper[0], "paper_AUC": paper[1],
                     **_rule_columns(r, protocol)})
    return pd.DataFrame(rows)
