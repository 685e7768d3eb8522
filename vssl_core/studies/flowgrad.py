"""FlowGrad (Singh et al.): RCGrad, FlowGrad-H/-IC/-EN and the baselines on urban scenes (Table 1, Fig. 2).

One typed :class:`FlowGradSetup` is passed whole through every step, and the notebook's
parameters map onto it one to one. The models are the RCGrad family of
:mod:`vssl_core.training.rcgrad_family` (trained and cached there); the evaluation pairs come
from :mod:`vssl_core.data.arrays`.

Protocol
--------
- Self-supervised training uses random windows of the **training clips** only (their boxes
  and events are never read); evaluation uses the FlowGrad pairs of the held-out clips.
- Every method is scored on the same samples: every pair has a flow map (the last frame of a
  clip uses the preceding frame pair), so no method skips any.
- Each method's maps carry their own post-processing (:mod:`vssl_core.eval.maps`):
  FlowGrad-H = clean(RCGrad) x flow magnitude, thresholded at 0.5 without renormalisation.
  See ``docs/conventions.md``.
- Every trained model keeps the epoch with the lowest validation loss (windows of the
  validation scenes, never the evaluation clips).

Protocols (``FlowGradSetup.protocol``; :func:`evaluation_rules`)
---------------------------------------------------------------
``"companion"`` (the quick profile): as above, cIoU at the notebook's cut-off ``at`` (0.3, with
0.5 beside), 1 s of audio from ``t - 0.5`` resampled to the model's rate, float flow.
``"paper"`` (Sec. 3 "Metrics", following How to Listen): every map min-max normalised before
the 0.5 binarisation (so FlowGrad-H and flow only too: "normalized optical flow"), cIoU@0.3 on
Urbansas (How to Listen Sec. 3.3; "tau = 0.5" in Table 1 is the binarisation threshold).
``"released"`` (the code that computed Table 1): no renormalisation of the flow maps, cIoU@0.3,
the 1-s clips read at librosa's default 22.05 kHz and fed to the 16-kHz models unresampled, and
the flow magnitude as its 8-bit JPEG (rounded, clipped to 0..255). Training is the same under
every protocol (the published models were trained before any of this applies).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vssl_core.data.arrays import EvalArrays, load_evaluation
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.errors import data_error
from vssl_core.eval import retrieval
from vssl_core.eval.maps import LocalizationMaps, minmax
from vssl_core.eval.metrics import EvalResult
from vssl_core.eval.scoring import paired_table as _paired_table
from vssl_core.eval.scoring import result_columns, score, score_stream
from vssl_core.models import rcgrad_maps
from vssl_core.models.rcgrad import EN_LOSSES, LOGIT_SCALE_MAX
from vssl_core.models.baselines import centred_box_maps, flow_only_maps, topline_maps
from vssl_core.models.loudness_rule import (
    LOUDNESS_RULE, frame_motion, loudness_db, mid_rank_percentiles, percentile_embedding,
)
from vssl_core.training.rcgrad_family import RCGradFamilySetup, family_specs, trained_family
from vssl_core.training.store import Models, ModelSpec

__all__ = ["FlowGradSetup", "PROTOCOLS", "EvalRules", "evaluation_rules", "protocol_maps", "released_flow",
           "FLOWGRAD_TABLE1", "METHODS", "load_pairs", "model_specs", "trained_models", "method_stream", "method_maps",
           "table1", "en_branch_table", "paired_table", "sample_states", "pick_examples", "official_rcgrad_maps",
           "real_detector", "real_evaluation"]

#: FlowGrad Table 1: (IoU at the header's tau = 0.5, AUC). The released evaluation uses an
#: IoU cut-off of 0.3 although the header says 0.5 (docs/conventions.md, "Metrics: cIoU, cut-offs and AUC").
FLOWGRAD_TABLE1 = {
    "Vision-only+CF+TF (topline)": (0.68, 0.51),
    "Optical flow only (baseline)": (0.33, 0.23),
    "RCGrad": (0.16, 0.13),
    "FlowGrad-H": (0.50, 0.30),
    "FlowGrad-IC": (0.26, 0.18),
    "FlowGrad-EN": (0.37, 0.23),
}

#: Table 1 row names, in the paper's order, with the key of FLOWGRAD_TABLE1.
METHODS = {
    "Vision-only+CF+TF (topline)": "Vision-only+CF+TF (topline)",
    "Optical flow only": "Optical flow only (baseline)",
    "RCGrad": "RCGrad",
    "FlowGrad-H": "FlowGrad-H",
    "FlowGrad-IC": "FlowGrad-IC",
    "FlowGrad-EN": "FlowGrad-EN",
    "Centred box": None,
}


#: The protocol values of ``FlowGradSetup.protocol``.
PROTOCOLS = ("companion", "paper", "released")
#: The cut-off of the paper (following How to Listen on Urbansas) and of the released evaluation.
PAPER_CUTOFF = 0.3
#: The rate at which the released evaluation reads the 1-s clips (``librosa.load``'s default).
RELEASED_AUDIO_SR = 22050
#: The maps the paper's text min-max normalises but the released code does not.
_RENORMALISED = ("FlowGrad-H", "Optical flow only", "FlowGrad-H (released RCGrad)")


@dataclass(frozen=True)
class FlowGradSetup(RCGradFamilySetup):
    """Notebook 02's parameters: the RCGrad family's split, sizes, training and flow
    (:class:`~vssl_core.training.rcgrad_family.RCGradFamilySetup`, whose fields it has), and
    the evaluation ``protocol``: ``"companion"``, ``"paper"`` or ``"released"`` (module
    docstring; it changes no model)."""

    protocol: str = "companion"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise data_error(None, "protocol", f"{self.protocol!r} is not a protocol of FlowGrad's study",
                             f"choose one of {PROTOCOLS}")


@dataclass(frozen=True)
class EvalRules:
    """How one protocol scores Table 1 (printed above notebook 02's tables).

    Attributes
    ----------
    protocol : str
    cutoff : float
    renormalise_flow : bool
        Min-max FlowGrad-H and flow only before the 0.5 threshold (the paper's text).
    audio, flow, checkpoint : str
        The evaluation audio, the flow magnitude, which epoch of each model is kept.
    """

    protocol: str
    cutoff: float
    renormalise_flow: bool
    audio: str
    flow: str
    checkpoint: str = "the epoch with the lowest validation loss (validation scenes)"

    @property
    def postprocess(self) -> str:
        maps = "min-max, then >= 0.5" if self.renormalise_flow else "thresholded at 0.5 as they are"
        return f"RCGrad / IC / EN 'clean'; FlowGrad-H and flow only {maps}"

    def __str__(self) -> str:
        return (f"Protocol {self.protocol!r} (FlowGrad's study, docs/conventions.md 'Deviations from the papers'):\n"
                f"  scoring: {self.postprocess}; cIoU@{self.cutoff:g} and AUC\n"
                f"  evaluation audio: {self.audio}\n  flow: {self.flow}\n  checkpoint: {self.checkpoint}")


def evaluation_rules(setup: RCGradFamilySetup, at: float | None = None) -> EvalRules:
    """The rules of ``setup.protocol`` (a plain family setup: the companion's), checked against
    the notebook's cut-off ``at``.

    Raises
    ------
    DataError
        ``at`` differs from the paper's and released evaluation's 0.3 under those protocols.
    """
    protocol = getattr(setup, "protocol", "companion")
    if protocol == "companion":
        return EvalRules("companion", float(PAPER_CUTOFF if at is None else at), False,
                         f"1 s from t - 0.5 at the model's {setup.audio_sr} Hz", "float px per 8-fps step")
    if at is not None and at != PAPER_CUTOFF:
        raise data_error(None, "at", f"{at!r} disagrees with protocol {protocol!r} (cIoU@{PAPER_CUTOFF:g} on "
                         "Urbansas, How to Listen Sec. 3.3, which FlowGrad follows)",
                         f"set at = {PAPER_CUTOFF}, or protocol = 'companion' to choose your own cut-off")
    if protocol == "paper":
        return EvalRules("paper", PAPER_CUTOFF, True, f"1 s from t - 0.5 at the model's {setup.audio_sr} Hz",
                         "float px per 8-fps step")
    return EvalRules("released", PAPER_CUTOFF, False,
                     f"1 s from t - 0.5 read at {RELEASED_AUDIO_SR} Hz and fed unresampled to the "
                     f"{setup.audio_sr}-Hz models", "px per 8-fps step as the released 8-bit JPEG (rounded, 0..255)")


def released_flow(flow: np.ndarray) -> np.ndarray:
    """Flow magnitudes as the released evaluation reads them back from its 8-bit JPEGs
    (``cv2.imwrite`` of a float image: rounded, clipped to 0..255), float32. The JPEG
    compression is not simulated, and the companion quantises after the resize to 224."""
    return np.clip(np.rint(np.asarray(flow, dtype=np.float32)), 0, 255).astype(np.float32)


def load_pairs(dataset: UrbansasDataset, clips: Sequence[str] | None, setup: RCGradFamilySetup,
               image_size: int | None = None, progress: bool = True) -> EvalArrays:
    """The FlowGrad pairs of ``clips`` (None: all) at the setup's image size, flow and audio rate.

    Under ``protocol="released"`` the audio is read at 22.05 kHz and labelled with the
    model's rate (so it reaches the model unresampled, 1.38 s at 16 kHz), and the flow is
    quantised as the released JPEGs (:func:`released_flow`)."""
    released = getattr(setup, "protocol", "companion") == "released"
    ev = load_evaluation(dataset, clips, image_size=image_size or setup.image_size, flow=setup.flow,
                         audio_sr=RELEASED_AUDIO_SR if released else setup.audio_sr, progress=progress)
    if released:
        ev = dataclasses.replace(ev.with_audio(ev.audio, setup.audio_sr), flow=released_flow(ev.flow))
    return ev


def protocol_maps(stream: Iterable[tuple[str, LocalizationMaps]], protocol: str = "companion"
                  ) -> Iterator[tuple[str, LocalizationMaps]]:
    """``stream`` as ``protocol`` scores it: under ``"paper"`` FlowGrad-H and flow only are min-max
    normalised (still thresholded at 0.5, rule ``"none"``); otherwise unchanged."""
    for name, m in stream:
        if protocol == "paper" and name in _RENORMALISED:
            m = LocalizationMaps(minmax(m.maps.astype(np.float32, copy=False)), "none", m.method)
        yield name, m


def model_specs(setup: RCGradFamilySetup, models: Models, progress: bool = True) -> dict[str, ModelSpec]:
    """What notebook 02 trains: the object prior, RCGrad, FlowGrad-IC and FlowGrad-EN
    (:func:`vssl_core.training.rcgrad_family.family_specs`)."""
    return family_specs(setup, models, progress)


def trained_models(setup: RCGradFamilySetup, models: Models | None = None, progress: bool = True) -> dict:
    """RCGrad, FlowGrad-IC and FlowGrad-EN by kind: shipped, cached or trained, as ``models``
    decides (:func:`vssl_core.training.weights.models_for`)."""
    return trained_family(setup, models, progress)


def method_stream(models: Mapping, ev: EvalArrays, detector=None,
                  clip_end: float | Sequence[float] = 9.5, protocol: str = "companion"
                  ) -> Iterator[tuple[str, LocalizationMaps]]:
    """Maps of every Table 1 method on the same samples, in the metric's space, one method at
    a time as ``(name, maps)`` (at most two methods' maps alive when the consumer drops each).

    ``models`` may hold any of "rcgrad", "flowgrad_ic", "flowgrad_en"; the topline needs a
    detector (the oracle on synthetic data, Faster R-CNN with user weights on real data).
    ``protocol`` as :func:`protocol_maps`.
    """
    yield from protocol_maps(_method_stream(models, ev, detector, clip_end), protocol)


def _method_stream(models: Mapping, ev: EvalArrays, detector, clip_end) -> Iterator[tuple[str, LocalizationMaps]]:
    if detector is not None:
        yield "Vision-only+CF+TF (topline)", topline_maps(detector, list(ev.clips), list(ev.times), clip_end)
    yield "Optical flow only", flow_only_maps(ev)
    if "rcgrad" in models:
        rc = rcgrad_maps.maps(models["rcgrad"], ev)
        yield "RCGrad", rc
        fh = rcgrad_maps.flowgrad_h_from_rcgrad(rc, ev.flow)
        del rc
        yield "FlowGrad-H", fh
        del fh
    if "flowgrad_ic" in models:
        yield "FlowGrad-IC", rcgrad_maps.maps(models["flowgrad_ic"], ev)
    if "flowgrad_en" in models:
        yield "FlowGrad-EN", rcgrad_maps.maps(models["flowgrad_en"], ev)
    yield "Centred box", centred_box_maps(ev)


def method_maps(models: Mapping, ev: EvalArrays, detector=None,
                clip_end: float | Sequence[float] = 9.5, protocol: str = "companion") -> dict[str, LocalizationMaps]:
    """Every method's maps at once (:func:`method_stream` collected): ~0.2 MB per sample and
    method; prefer :func:`vssl_core.eval.scoring.score_stream` for large sets."""
    return dict(method_stream(models, ev, detector, clip_end, protocol))


def table1(results: Mapping[str, EvalResult], extra_cutoff: float | None = 0.5,
           protocol: str = "companion") -> pd.DataFrame:
    """Table 1: cIoU at the released code's cut-off (and at ``extra_cutoff``), AUC, 95% CIs and
    the paper's numbers beside ours. ``postprocess`` names each row's rule (``"min-max+none"``
    for the maps the paper's protocol renormalises); under another ``protocol`` than the
    companion's a ``protocol`` column is added."""
    rows = []
    for name, r in results.items():
        paper = FLOWGRAD_TABLE1.get(METHODS.get(name) or "", (np.nan, np.nan))
        rule = "min-max+none" if protocol == "paper" and name in _RENORMALISED else r.postprocess
        rows.append({"method": name, "n": r.n, **result_columns(r, extra_cutoff=extra_cutoff),
                     "postprocess": rule, "paper_IoU": paper[0], "paper_AUC": paper[1],
                     **({} if protocol == "companion" else {"protocol": protocol})})
    return pd.DataFrame(rows)


def en_branch_table(model, ev: EvalArrays, at: float = 0.3, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Which branch of FlowGrad-EN localises: its image-encoder and flow-encoder Grad-CAM maps
    scored apart and as their product (the model's map), on the pairs ``ev``, with 95% CIs.
    A flow branch near the centred box means the product is about the image map alone."""
    results, _, _ = score_stream(rcgrad_maps.en_branch_maps(model, ev), ev.gt, at=at, n_boot=n_boot, seed=seed)
    return pd.DataFrame([{"map": name, "n": r.n, **result_columns(r)} for name, r in results.items()])


#: The pairs of encoders the contrastive losses compare, in the paper's words, as (name, first,
#: second) keys of :func:`~vssl_core.models.rcgrad_maps.pair_embeddings`.
LOSS_PAIRS = (("audio-image", "audio", "image"), ("image-flow", "image", "flow"), ("audio-flow", "audio", "flow"))


def pair_retrieval_table(models: Mapping[str, object], ev: EvalArrays, batch_size: int = 64,
                         seed: int = 0, loudness_rule: bool = False) -> pd.DataFrame:
    """What each pair of encoders learned to match, on held-out pairs (:mod:`vssl_core.eval.retrieval`).

    One row per model (name -> RCGrad / FlowGrad-IC / FlowGrad-EN, in eval mode) and per pair of
    its encoders (FlowGrad-EN: audio-image, image-flow and audio-flow, also those that a subset
    ``en_losses`` leaves out of its loss; a pair "A-B"): top-1
    retrieval both ways (A->B: each A ranks the batch's B) within shuffled batches of
    ``batch_size``, its chance rate and the share that chance stays under 97.5% of the time
    (above it, the encoders pick their partner out), and the symmetric InfoNCE
    with the model's own logit scale, next to its chance value ``ln(batch_size)``.

    ``loudness_rule=True`` adds the audio-flow row of the no-training loudness + flow rule
    (:mod:`vssl_core.models.loudness_rule`): each sound's RMS level and each frame's mean flow
    magnitude as percentiles of the pairs, matched by closeness (no InfoNCE: it has no logit scale).
    """
    ranked = (len(ev.images) // batch_size) * batch_size

    def row(model: str, pair: str, a: np.ndarray, b: np.ndarray, infonce: float) -> dict:
        forward, backward = retrieval.top1(a, b, batch_size, seed)
        return {"model": model, "pair": pair, "ranked": ranked, "top-1 (A->B)": forward, "top-1 (B->A)": backward,
                "top-1 chance": 1.0 / batch_size, "chance 97.5%": retrieval.chance_upper(ranked, batch_size),
                "InfoNCE": infonce, "InfoNCE chance": math.log(batch_size)}

    rows = []
    for name, model in models.items():
        emb = rcgrad_maps.pair_embeddings(model, ev)
        scale = min(float(model.logit_scale.detach().exp()), LOGIT_SCALE_MAX)
        for pair, first, second in LOSS_PAIRS:
            if first in emb and second in emb:
                rows.append(row(name, pair, emb[first], emb[second],
                                retrieval.infonce(emb[first], emb[second], scale, batch_size, seed)))
    if loudness_rule:
        loud = loudness_db(ev.audio)  # (N,) dB
        motion = frame_motion(ev.flow)  # (N,) px/step
        rows.append(row(LOUDNESS_RULE, "audio-flow", percentile_embedding(mid_rank_percentiles(loud, loud)),
                        percentile_embedding(mid_rank_percentiles(motion, motion)), float("nan")))
    return pd.DataFrame(rows)


#: The paired comparisons of notebook 02: the paper's central claims, then whether RCGrad adds
#: anything to the flow (FlowGrad-H over flow only) and the learned fusions over RCGrad.
COMPARISONS = (("FlowGrad-H", "RCGrad"), ("Optical flow only", "RCGrad"), ("FlowGrad-H", "Optical flow only"),
               ("FlowGrad-EN", "RCGrad"), ("FlowGrad-IC", "RCGrad"))

def chance_loss(batch_size: int, kind: str = "rcgrad", en_losses: Sequence[str] = EN_LOSSES) -> float:
    """The loss of a model that ranks every pair of a batch alike: ``ln(batch)`` for the symmetric
    InfoNCE of RCGrad and FlowGrad-IC, that times the number of FlowGrad-EN's summed pairwise
    losses (``en_losses``: three, the paper's) for FlowGrad-EN."""
    return math.log(batch_size) * (len(en_losses) if kind == "flowgrad_en" else 1)


def paired_table(results: Mapping[str, EvalResult], comparisons: Sequence[tuple[str, str]] = COMPARISONS,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired bootstrap of A - B on the same samples for cIoU@cut-off and AUC
    (:func:`vssl_core.eval.scoring.paired_table` with notebook 02's comparisons)."""
    return _paired_table(results, comparisons, n_boot=n_boot, seed=seed)


def sample_states(objects: pd.DataFrame | None, ev: EvalArrays) -> pd.DataFrame:
    """Per evaluation sample: visible parked vehicles and sounding idling vehicles (synthetic)."""
    n = len(ev)
    out = pd.DataFrame({"clip": ev.clips, "time": ev.times, "parked": np.zeros(n, int),
                        "idling": np.zeros(n, int)})
    if objects is None:
        return out
    vis = objects[(objects["visible_fraction"] >= 0.5)]
    counts = vis.groupby(["filename", "time", "state"]).size()
    for i, (c, t) in enumerate(zip(ev.clips, ev.times)):
        for state in ("parked", "idling"):
            out.loc[i, state] = int(counts.get((c, round(float(t), 1), state), 0))
    return out


def pick_examples(results: Mapping[str, EvalResult], states: pd.DataFrame,
                  n_parked: int = 2, n_idling: int = 1, n_other: int = 1) -> list[tuple[int, str]]:
    """Fig. 2 rows: (index, why) for parked-vehicle cases where FlowGrad-H beats RCGrad most,
    idling-vehicle cases where flow fails (flow-only cIoU lowest), and the best FlowGrad-H case."""
    rc, fh, fo = (np.nan_to_num(results[k].cious) for k in ("RCGrad", "FlowGrad-H",
                                                             "Optical flow only"))
    chosen: list[tuple[int, str]] = []
    parked = np.flatnonzero(states["parked"].to_numpy() > 0)
    for i in parked[np.argsort(-(fh - rc)[parked], kind="stable")][:n_parked]:
        chosen.append((int(i), "parked vehicle: motion helps"))
    idling = np.flatnonzero(states["idling"].to_numpy() > 0)
    for i in idling[np.argsort(fo[idling], kind="stable")][:n_idling]:
        chosen.append((int(i), "idling vehicle: motion fails"))
    rest = [i for i in np.argsort(-fh, kind="stable") if i not in {c[0] for c in chosen}]
    chosen += [(int(i), "best FlowGrad-H") for i in rest[:n_other]]
    return chosen


def official_rcgrad_maps(path: str, dataset: UrbansasDataset, setup: RCGradFamilySetup,
                         progress: bool = True) -> dict[str, LocalizationMaps]:
    """RCGrad and FlowGrad-H from the released ``rc_grad.pt`` on all FlowGrad pairs of
    ``dataset`` at 224 px (the published input size). Sample order matches
    :func:`load_evaluation` with ``clips=None``."""
    from vssl_core.models.checkpoints import load_official_rcgrad

    model, report = load_official_rcgrad(path)
    print(f"released RCGrad: {len(report.loaded)} tensors loaded, ignored {list(report.ignored)}, "
          f"missing {list(report.missing)}")
    ev = load_pairs(dataset, None, setup, image_size=224, progress=progress)
    rc = rcgrad_maps.maps(model.eval(), ev)
    return {"RCGrad (released weights)": rc,
            "FlowGrad-H (released RCGrad)": rcgrad_maps.flowgrad_h_from_rcgrad(rc, ev.flow)}


def real_detector(weights: str, dataset: UrbansasDataset):
    """The topline's detector on real data: torchvision Faster R-CNN with the user's COCO
    weights, or None when ``weights`` is '' (the topline row is then left out, and said so)."""
    if not weights:
        return None
    from vssl_core.models.baselines import TorchvisionDetector

    return TorchvisionDetector(weights, frame_reader=dataset.frame)


def real_evaluation(models: Mapping, dataset: UrbansasDataset, setup: RCGradFamilySetup,
                    at: float = 0.3, n_boot: int = 1000, seed: int = 0, official_rcgrad: str = "",
                    detector_weights: str = "", progress: bool = True
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 and the paired comparisons on every FlowGrad pair of a real Urbansas folder.

    ``models`` (trained on synthetic data) are applied as they are; ``official_rcgrad`` adds the
    released RCGrad and its FlowGrad-H (224 px); ``detector_weights`` adds the topline.
    """
    protocol = getattr(setup, "protocol", "companion")
    ev = load_pairs(dataset, None, setup, progress=progress)
    results, _, _ = score_stream(method_stream(models, ev, real_detector(detector_weights, dataset), protocol=protocol),
                                 ev.gt, at=at, n_boot=n_boot, seed=seed)
    if official_rcgrad:
        official = official_rcgrad_maps(official_rcgrad, dataset, setup, progress=progress)
        results.update(score(dict(protocol_maps(official.items(), protocol)), ev.gt, at=at, n_boot=n_boot, seed=seed))
    return table1(results, protocol=protocol), paired_table(results, n_boot=n_boot, seed=seed)
