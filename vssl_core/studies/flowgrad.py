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
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vssl_core.data.arrays import EvalArrays, load_evaluation
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import EvalResult
from vssl_core.eval.scoring import paired_table as _paired_table
from vssl_core.eval.scoring import result_columns, score, score_stream
from vssl_core.models import rcgrad_maps
from vssl_core.models.baselines import centred_box_maps, flow_only_maps, topline_maps
from vssl_core.training.rcgrad_family import RCGradFamilySetup, family_specs, trained_family
from vssl_core.training.store import Models, ModelSpec

__all__ = ["FlowGradSetup", "FLOWGRAD_TABLE1", "METHODS", "load_pairs", "model_specs", "trained_models", "method_stream", "method_maps",
           "table1", "paired_table", "sample_states", "pick_examples", "official_rcgrad_maps",
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


@dataclass(frozen=True)
class FlowGradSetup(RCGradFamilySetup):
    """Notebook 02's parameters: the RCGrad family's split, sizes, training and flow
    (:class:`~vssl_core.training.rcgrad_family.RCGradFamilySetup`, whose fields it has)."""


def load_pairs(dataset: UrbansasDataset, clips: Sequence[str] | None, setup: RCGradFamilySetup,
               image_size: int | None = None, progress: bool = True) -> EvalArrays:
    """The FlowGrad pairs of ``clips`` (None: all) at the setup's image size, flow and audio rate."""
    return load_evaluation(dataset, clips, image_size=image_size or setup.image_size, flow=setup.flow,
                           audio_sr=setup.audio_sr, progress=progress)


def model_specs(setup: RCGradFamilySetup, models: Models, progress: bool = True) -> dict[str, ModelSpec]:
    """What notebook 02 trains: the object prior, RCGrad, FlowGrad-IC and FlowGrad-EN
    (:func:`vssl_core.training.rcgrad_family.family_specs`)."""
    return family_specs(setup, models, progress)


def trained_models(setup: RCGradFamilySetup, models: Models | None = None, progress: bool = True) -> dict:
    """RCGrad, FlowGrad-IC and FlowGrad-EN by kind: shipped, cached or trained, as ``models``
    decides (:func:`vssl_core.training.weights.models_for`)."""
    return trained_family(setup, models, progress)


def method_stream(models: Mapping, ev: EvalArrays, detector=None,
                  clip_end: float | Sequence[float] = 9.5) -> Iterator[tuple[str, LocalizationMaps]]:
    """Maps of every Table 1 method on the same samples, in the metric's space, one method at
    a time as ``(name, maps)`` (at most two methods' maps alive when the consumer drops each).

    ``models`` may hold any of "rcgrad", "flowgrad_ic", "flowgrad_en"; the topline needs a
    detector (the oracle on synthetic data, Faster R-CNN with user weights on real data).
    """
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
                clip_end: float | Sequence[float] = 9.5) -> dict[str, LocalizationMaps]:
    """Every method's maps at once (:func:`method_stream` collected): ~0.2 MB per sample and
    method; prefer :func:`vssl_core.eval.scoring.score_stream` for large sets."""
    return dict(method_stream(models, ev, detector, clip_end))


def table1(results: Mapping[str, EvalResult], extra_cutoff: float | None = 0.5) -> pd.DataFrame:
    """Table 1: cIoU at the released code's cut-off (and at ``extra_cutoff``), AUC, 95% CIs and
    the paper's numbers beside ours."""
    rows = []
    for name, r in results.items():
        paper = FLOWGRAD_TABLE1.get(METHODS.get(name) or "", (np.nan, np.nan))
        rows.append({"method": name, "n": r.n, **result_columns(r, extra_cutoff=extra_cutoff),
                     "postprocess": r.postprocess, "paper_IoU": paper[0], "paper_AUC": paper[1]})
    return pd.DataFrame(rows)


#: The paired comparisons of notebook 02: the paper's central claims, then whether RCGrad adds
#: anything to the flow (FlowGrad-H over flow only) and the learned fusions over RCGrad.
COMPARISONS = (("FlowGrad-H", "RCGrad"), ("Optical flow only", "RCGrad"), ("FlowGrad-H", "Optical flow only"),
               ("FlowGrad-EN", "RCGrad"), ("FlowGrad-IC", "RCGrad"))

def chance_loss(batch_size: int, kind: str = "rcgrad") -> float:
    """The loss of a model that ranks every pair of a batch alike: ``ln(batch)`` for the symmetric
    InfoNCE of RCGrad and FlowGrad-IC, three times that for FlowGrad-EN's three pairwise losses."""
    import math

    return math.log(batch_size) * (3 if kind == "flowgrad_en" else 1)


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
    ev = load_pairs(dataset, None, setup, progress=progress)
    results, _, _ = score_stream(method_stream(models, ev, real_detector(detector_weights, dataset)),
                                 ev.gt, at=at, n_boot=n_boot, seed=seed)
    if official_rcgrad:
        results.update(score(official_rcgrad_maps(official_rcgrad, dataset, setup, progress=progress),
                             ev.gt, at=at, n_boot=n_boot, seed=seed))
    return table1(results), paired_table(results, n_boot=n_boot, seed=seed)
