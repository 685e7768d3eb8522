"""The Hear The Flow ablations (Tables 4 and 5) on the synthetic streets.

One typed :class:`AblationSetup` is passed whole through every step; the notebook's
parameters map onto it one to one. Expensive steps are cached by a fingerprint of what changes
them: the training and evaluation sets (:mod:`vssl_core.data.evalset`, with the 2-channel flow
field), the vehicle prior (:func:`vehicle_prior`) and every trained model
(:func:`vssl_core.training.localizer.cached_train_localizer`).

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
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vssl_core.data.arrays import EvalArrays, load_evaluation
from vssl_core.data.arrays import load_training as _load_training
from vssl_core.data.flow import FlowParams
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.eval.audio_sensitivity import audio_sensitivity as _audio_sensitivity
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import EvalResult
from vssl_core.eval.scoring import result_columns
from vssl_core.eval.scoring import score_stream as _score_stream
from vssl_core.models import lvs_maps
from vssl_core.models.baselines import centred_box_maps, flow_only_maps
from vssl_core.models.htf import HTF, HTFConfig, build_htf
from vssl_core.models.lvs import LVS
from vssl_core.repro import cache
from vssl_core.repro.profiles import StudySetup
from vssl_core.training.localizer import LocalizerArrays, LocalizerTrainConfig, cached_train_localizer

__all__ = ["HearTheFlowSetup", "TABLE4_ROWS", "HTF_TABLE4", "HTF_TABLE5", "load_training", "load_pairs",
           "vehicle_prior", "model_config", "train_model", "train_table4", "audio_sensitivity", "score",
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

#: Table 4 rows: (flow, pretrained vision, frozen vision).
TABLE4_ROWS: dict[str, tuple[bool, bool, bool]] = {
    "a": (False, False, False), "b": (False, True, False), "c": (False, True, True),
    "d": (True, False, False), "e": (True, True, False), "f": (True, True, True),
}


@dataclass(frozen=True)
class HearTheFlowSetup(StudySetup):
    """Everything that defines one run of the Hear The Flow ablations.

    Attributes
    ----------
    eval_clips : int
        Held-out clips (the last ones by name).
    train_windows : int
        Random training windows drawn from the other clips.
    image_size, width, layer4_stride : int, float, int
        Input side (px), ResNet-18 width multiplier, layer4 stride. The paper: 224 px, 1.0,
        stride 2 (7x7 grid); the quick profile: 128 px, 0.5, stride 1 (8x8 grid).
    audio_sr, audio_seconds : int, float
        Audio rate (Hz) and training window (s); Hear The Flow uses 3 s at 22.05 kHz.
        Evaluation uses FlowGrad's 1 s from t - 0.5 at ``audio_sr``.
    epochs, batch_size, lr, seed : int, int, float, int
        Adam, constant learning rate (the paper: 1e-3, batch 128, 100 epochs).
    flow_window_s : float
        Flow aggregation window (s).
    prior_times_per_clip, prior_epochs, prior_crop_size : int
        Vehicle prior: frames per training clip (evenly spaced), epochs, crop side (px).
    imagenet_weights : str
        Local torchvision ResNet-18 state dict: used as the vision prior instead of the vehicle
        prior (needs ``width=1.0``); '' for the vehicle prior.
    num_threads : int or None
        torch threads while training (None: torch's default).
    """

    PROFILE_TABLE = "03_ablations"

    eval_clips: int = 40
    train_windows: int = 2000
    image_size: int = 112
    width: float = 0.25
    layer4_stride: int = 1
    audio_sr: int = 16000
    audio_seconds: float = 1.0
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-4
    seed: int = 0
    flow_window_s: float = 0.125
    prior_times_per_clip: int = 5
    prior_epochs: int = 4
    prior_crop_size: int = 64
    imagenet_weights: str = ""
    num_threads: int | None = None

    @property
    def flow(self) -> FlowParams:
        return FlowParams(window_s=self.flow_window_s)

    def train_config(self) -> LocalizerTrainConfig:
        return LocalizerTrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                    seed=self.seed, num_threads=self.num_threads)


# -- data ------------------------------------------------------------------------------------------
def load_training(dataset: UrbansasDataset, clips: Sequence[str], setup: HearTheFlowSetup,
                  progress: bool = True) -> tuple[LocalizerArrays, str]:
    """Training pairs (image, audio, flow field) from random windows of ``clips``, and a
    fingerprint of their source (the model cache's data key)."""
    arrays, key = _load_training(dataset, clips, n_windows=setup.train_windows, seconds=setup.audio_seconds,
                                 image_size=setup.image_size, flow=setup.flow, audio_sr=setup.audio_sr,
                                 seed=setup.seed, flow_field=True, progress=progress)
    return LocalizerArrays(arrays.images, arrays.audio, arrays.flow_field), key


def load_pairs(dataset: UrbansasDataset, clips: Sequence[str] | None, setup: HearTheFlowSetup,
               progress: bool = True) -> EvalArrays:
    """The FlowGrad pairs of ``clips`` with the flow field (``EvalArrays.flow_field``)."""
    return load_evaluation(dataset, clips, image_size=setup.image_size, flow=setup.flow,
                           audio_sr=setup.audio_sr, flow_field=True, progress=progress)


def vehicle_prior(dataset: UrbansasDataset, objects: pd.DataFrame, clips: Sequence[str],
                  setup: HearTheFlowSetup, progress: bool = True) -> Path:
    """The vision prior file: ``setup.imagenet_weights`` when given, else the vehicle prior.

    The vehicle prior is a ResNet-18 (``setup.width``) trained to classify object crops (car,
    bus, motorbike, truck, pedestrian, tree) cut from ``setup.prior_times_per_clip`` evenly
    spaced frames of each of ``clips`` (training clips only), cached by a fingerprint of the
    clips, the object table and the settings. Prints the crop count and training accuracy.
    """
    from vssl_core.models import pretrain

    if setup.imagenet_weights:
        return Path(setup.imagenet_weights)
    duration = min(dataset.duration(c) for c in clips)
    times = [round(float(t) * 2) / 2 for t in np.linspace(0, duration - 0.5, setup.prior_times_per_clip)]
    cfg = pretrain.VehiclePretrainConfig(width=setup.width, layer4_stride=setup.layer4_stride,
                                         image_size=setup.prior_crop_size, epochs=setup.prior_epochs,
                                         seed=setup.seed)
    key = {"kind": "vehicle-prior", "version": 1, "root": str(dataset.root), "clips": sorted(clips),
           "times": times, "objects": cache.fingerprint(objects.to_csv(index=False)), "config": cfg.to_dict()}

    def build(tmp: Path) -> None:
        frames = {}
        for clip in clips:
            for t, img in zip(times, dataset.frames(clip, times)):
                frames[(clip, t)] = img
        crops, labels = pretrain.vehicle_crops(frames, objects, size=setup.prior_crop_size)
        with torch.random.fork_rng():
            result = pretrain.pretrain_vehicle_classifier(crops, labels, cfg, progress=progress)
        print(f"vehicle prior: {len(labels)} crops from {len(frames)} frames, "
              f"training accuracy {result.train_accuracy:.3f}")
        pretrain.save_encoder_state(tmp / "encoder.pt", result.encoder_state, config=cfg.to_dict(),
                                    crops=int(len(labels)), train_accuracy=float(result.train_accuracy))

    return cache.cached("vehicle-prior", key, build) / "encoder.pt"


# -- models ----------------------------------------------------------------------------------------
def model_config(setup: HearTheFlowSetup, *, flow: bool, pretrained: bool, frozen: bool,
                 prior: Path | str | None = None, flow_encoder: str = "resnet") -> HTFConfig:
    """The :class:`HTFConfig` of one ablation cell (``flow_encoder`` applies when ``flow``)."""
    if (pretrained or frozen) and prior is None:
        raise ValueError("a pretrained or frozen vision encoder needs the prior file (vehicle_prior)")
    if frozen and not pretrained:
        raise ValueError("freezing a randomly initialised vision encoder is not an ablation of the paper")
    return HTFConfig(flow_encoder=flow_encoder if flow else "none", freeze_vision=frozen,
                     pretrained_vision=str(prior) if pretrained else None, pretrained_flow=pretrained,
                     width=setup.width, layer4_stride=setup.layer4_stride, image_size=setup.image_size,
                     audio_sr=setup.audio_sr, audio_seconds=setup.audio_seconds)


def train_model(config: HTFConfig, setup: HearTheFlowSetup, arrays: LocalizerArrays, data_key: str,
                progress: bool = True) -> HTF:
    """Train (or load from the cache) one Hear The Flow / LVS-grid model."""
    return cached_train_localizer(lambda: build_htf(config)[0], config.to_dict(), setup.train_config(),
                                  arrays, data_key, progress=progress)


def train_table4(setup: HearTheFlowSetup, arrays: LocalizerArrays, data_key: str, prior: Path,
                 rows: Sequence[str] = tuple(TABLE4_ROWS), progress: bool = True) -> dict[str, HTF]:
    """The models of Table 4's ``rows`` (cached), keyed by row letter."""
    models = {}
    for row in rows:
        flow, pretrained, frozen = TABLE4_ROWS[row]
        cfg = model_config(setup, flow=flow, pretrained=pretrained, frozen=frozen, prior=prior)
        models[row] = train_model(cfg, setup, arrays, data_key, progress)
    return models


# -- maps and scores -------------------------------------------------------------------------------
def audio_sensitivity(model: LVS | HTF, ev: EvalArrays, seed: int = 0) -> float:
    """How much the model's map depends on the sound
    (:func:`vssl_core.eval.audio_sensitivity.audio_sensitivity` of :func:`vssl_core.models.lvs_maps.maps`)."""
    return _audio_sensitivity(lambda x: lvs_maps.maps(model, x), ev, seed=seed)


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


def table4(results: Mapping[str, EvalResult], prior_name: str = "vehicle prior",
           sensitivity: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Table 4: one row per ablation letter present in ``results`` (plus any extra rows such
    as references), with :func:`audio_sensitivity` where given and the paper's numbers."""
    rows = []
    for key, r in results.items():
        flow, pre, frozen = TABLE4_ROWS.get(key, (None, None, None))
        paper = HTF_TABLE4.get(key, (np.nan, np.nan))
        rows.append({"model": key, "flow": flow, f"pretrained vision ({prior_name})": pre,
                     "frozen vision": frozen, **_row(r),
                     "audio sensitivity": (sensitivity or {}).get(key, np.nan),
                     "paper_cIoU@0.5": paper[0], "paper_AUC": paper[1]})
    return pd.DataFrame(rows)


def table5(results: Mapping[str, EvalResult]) -> pd.DataFrame:
    """Table 5: the flow encoders ("MaxPool", "ResNet18") with the paper's VGGS-10k numbers."""
    rows = []
    for key, r in results.items():
        paper = HTF_TABLE5.get(key, (np.nan, np.nan))
        rows.append({"flow network": key, **_row(r), "paper_cIoU@0.5": paper[0], "paper_AUC": paper[1]})
    return pd.DataFrame(rows)
