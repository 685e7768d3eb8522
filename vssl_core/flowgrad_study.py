"""The FlowGrad experiment: train RCGrad / FlowGrad-IC / FlowGrad-EN, localise, score (Table 1).

One typed :class:`FlowGradSetup` is passed whole through every step, and the notebook's
parameters map onto it one to one. Every expensive step is cached by a fingerprint of what
changes it: the evaluation and training sets (:mod:`vssl_core.data.evalset`) and the trained
models (:func:`vssl_core.train.cached_train`), so re-running the notebook or another notebook
that needs the same models costs seconds.

Protocol
--------
- Self-supervised training uses random windows of the **training clips** only (their boxes
  and events are never read); evaluation uses the FlowGrad pairs of the held-out clips.
- Every method is scored on the same samples: every pair has a flow map (the last frame of a
  clip uses the preceding frame pair), so no method skips any.
- Post-processing per method follows :data:`vssl_core.localize.POSTPROCESS` (REFERENCE 1, 4).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import cache, localize, metrics
from .baselines import OracleDetector, centred_box, flow_only_map, topline_maps
from .bootstrap import paired_bootstrap
from .data.evalset import as_numpy, load_eval_set, load_train_set
from .data.urbansas import UrbansasDataset
from .flow import FlowParams
from .localize import LocalizationMaps
from .metrics import EvalResult
from .paper_numbers import FLOWGRAD_TABLE1

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
class FlowGradSetup:
    """Everything that defines one FlowGrad run (data split, sizes, training, flow).

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
        RCGrad epochs; FlowGrad-IC / -EN fine-tuning epochs (both start from the trained RCGrad,
        as the paper starts from the released one).
    batch_size, lr, seed : int, float, int
    flow_window_s : float
        Flow aggregation window (0.125 s = one 8-fps pair, the paper).
    compensate_camera : bool
        Subtract global camera motion from the flow (beyond the paper).
    num_threads : int or None
        torch threads while training (None: torch's default).
    """

    eval_clips: int = 40
    train_windows: int = 3000
    image_size: int = 128
    width: float = 0.5
    layer4_stride: int = 1
    audio_sr: int = 16000
    train_audio_seconds: float = 1.0
    epochs: int = 8
    finetune_epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    flow_window_s: float = 0.125
    compensate_camera: bool = False
    num_threads: int | None = None

    @property
    def flow(self) -> FlowParams:
        return FlowParams(window_s=self.flow_window_s, compensate_camera=self.compensate_camera)


@dataclass(frozen=True)
class EvalArrays:
    """The evaluation pairs as arrays (see :mod:`vssl_core.data.evalset` for units)."""

    clips: np.ndarray      # (N,) str
    times: np.ndarray      # (N,) s
    images: np.ndarray     # (N, S, S, 3) uint8
    flow: np.ndarray       # (N, 224, 224) float32, px per 8-fps step (native resolution)
    audio: np.ndarray      # (N, 1, T) float32
    gt: np.ndarray         # (N, 224, 224) float32 in {0, 1}
    boxes: list            # N arrays (n_i, 4), 1280x720 units
    flow_field: np.ndarray | None = None  # (N, S, S, 2) float32 (dx, dy) px/step, when asked for

    def __len__(self) -> int:
        return len(self.clips)


def split_clips(dataset: UrbansasDataset, eval_clips: int) -> tuple[list[str], list[str]]:
    """(training clips, evaluation clips): the last ``eval_clips`` clips by name are held out."""
    clips = sorted(dataset.clips)
    if not 0 < eval_clips < len(clips):
        raise ValueError(f"eval_clips must be in 1..{len(clips) - 1}, got {eval_clips}")
    return clips[:-eval_clips], clips[-eval_clips:]


def load_evaluation(dataset: UrbansasDataset, clips: Sequence[str] | None, setup: FlowGradSetup,
                    image_size: int | None = None, progress: bool = True,
                    flow_field: bool = False) -> EvalArrays:
    """The FlowGrad pairs of ``clips`` (None: all clips) as arrays, cached on disk.

    ``setup`` may be any object with ``image_size``, ``flow`` and ``audio_sr`` (the other
    studies' setups too); ``flow_field=True`` adds the 2-channel field (Hear The Flow)."""
    ds = load_eval_set(dataset, "flowgrad", image_size or setup.image_size, setup.flow,
                       setup.audio_sr, 1.0, "mono", progress=progress, clips=clips,
                       flow_field=flow_field)
    a = as_numpy(ds, dtypes={"gt": np.float32})
    boxes = [np.asarray(b, dtype=float).reshape(-1, 4) for b in a["boxes"]]
    return EvalArrays(a["clip"], a["time"], a["image"], a["flow"], a["audio"],
                      a["gt"], boxes, a.get("flow_field"))


def _training_windows(dataset: UrbansasDataset, clips: Sequence[str], setup: FlowGradSetup
                      ) -> tuple[list, str]:
    """The random training windows of ``clips`` and the fingerprint of their source."""
    windows = dataset.random_windows(setup.train_windows, setup.train_audio_seconds,
                                     seed=setup.seed, clips=clips)
    key = cache.fingerprint({"root": str(dataset.root), "windows": windows,
                             "annotations": cache.file_sha256(
                                 dataset.root / "annotations" / "video_annotations.csv"),
                             "size": setup.image_size, "flow": setup.flow,
                             "sr": setup.audio_sr, "sec": setup.train_audio_seconds})
    return windows, key


def load_training(dataset: UrbansasDataset, clips: Sequence[str], setup: FlowGradSetup,
                  progress: bool = True):
    """Training arrays from random windows of ``clips`` and a fingerprint of their source."""
    from .train import TrainArrays

    windows, key = _training_windows(dataset, clips, setup)
    ds = load_train_set(dataset, windows, setup.image_size, setup.flow, setup.audio_sr,
                        setup.train_audio_seconds, "mono", progress=progress)
    a = as_numpy(ds, ["image", "audio", "flow"])
    return TrainArrays(a["image"], a["audio"], a["flow"]), key


def cached_rcgrad(setup: FlowGradSetup, dataset: UrbansasDataset, clips: Sequence[str],
                  progress: bool = True):
    """The RCGrad of :func:`train_rcgrad` on the windows of ``clips``; its training arrays are
    loaded only when it is not in the model cache yet (they take ~0.5 GB in the quick profile)."""
    from .train import cached_model

    _, key = _training_windows(dataset, clips, setup)
    model = cached_model(_train_config(setup, "rcgrad", setup.epochs), key)
    if model is not None:
        return model
    arrays, key = load_training(dataset, clips, setup, progress=progress)
    return train_rcgrad(setup, arrays, key, progress=progress)


def _train_config(setup: FlowGradSetup, kind: str, epochs: int):
    from .models.rcgrad import ModelConfig
    from .train import TrainConfig

    model = ModelConfig(kind=kind, width=setup.width, layer4_stride=setup.layer4_stride,
                        image_size=setup.image_size, audio_sr=setup.audio_sr)
    return TrainConfig(model=model, epochs=epochs, batch_size=setup.batch_size, lr=setup.lr,
                       seed=setup.seed, num_threads=setup.num_threads)


def train_rcgrad(setup: FlowGradSetup, arrays, data_key: str, progress: bool = True):
    """RCGrad from scratch (cached): the model :func:`train_family` starts from."""
    from .train import cached_train

    return cached_train(_train_config(setup, "rcgrad", setup.epochs), arrays, data_key, progress=progress)


def rcgrad_for_profile(profile: str, dataset: UrbansasDataset, progress: bool = True):
    """The RCGrad that notebook 02 trains under ``profile`` on ``dataset`` (the synthetic default),
    from the cache when notebook 02 has run, else trained now. Returns ``(model, setup)``."""
    setup = setup_for_profile(profile)
    train_clips, _ = split_clips(dataset, setup.eval_clips)
    return cached_rcgrad(setup, dataset, train_clips, progress=progress), setup


def train_family(setup: FlowGradSetup, arrays, data_key: str, progress: bool = True) -> dict:
    """RCGrad from scratch, then FlowGrad-IC and -EN fine-tuned from it (all cached).

    ``cached_train`` turns the RCGrad into IC (flow kernels = mean of the RGB kernels) or EN
    (flow encoder = the image encoder with a 1-channel conv1) before training."""
    from .train import cached_train

    def config(kind: str, epochs: int):
        return _train_config(setup, kind, epochs)

    rc = train_rcgrad(setup, arrays, data_key, progress=progress)
    ic = cached_train(config("flowgrad_ic", setup.finetune_epochs), arrays, data_key,
                      progress=progress, init_model=rc)
    en = cached_train(config("flowgrad_en", setup.finetune_epochs), arrays, data_key,
                      progress=progress, init_model=rc)
    return {"rcgrad": rc, "flowgrad_ic": ic, "flowgrad_en": en}


def cached_family(setup: FlowGradSetup, dataset: UrbansasDataset, clips: Sequence[str],
                  progress: bool = True) -> dict:
    """:func:`train_family` on the windows of ``clips``, loading the training arrays only when a
    model is not in the cache yet (and releasing them on return: ~0.5 GB in the quick profile)."""
    from .train import cached_model

    _, key = _training_windows(dataset, clips, setup)
    rc = cached_model(_train_config(setup, "rcgrad", setup.epochs), key)
    if rc is not None:
        ic = cached_model(_train_config(setup, "flowgrad_ic", setup.finetune_epochs), key, init_model=rc)
        en = cached_model(_train_config(setup, "flowgrad_en", setup.finetune_epochs), key, init_model=rc)
        if ic is not None and en is not None:
            return {"rcgrad": rc, "flowgrad_ic": ic, "flowgrad_en": en}
    arrays, key = load_training(dataset, clips, setup, progress=progress)
    return train_family(setup, arrays, key, progress=progress)


def method_stream(models: Mapping, ev: EvalArrays, detector=None,
                  clip_end: float | Sequence[float] = 9.5) -> Iterator[tuple[str, LocalizationMaps]]:
    """Maps of every Table 1 method on the same samples, in the metric's space, one method at
    a time as ``(name, maps)`` (at most two methods' maps alive when the consumer drops each).

    ``models`` may hold any of "rcgrad", "flowgrad_ic", "flowgrad_en"; the topline needs a
    detector (the oracle on synthetic data, Faster R-CNN with user weights on real data).
    """
    if detector is not None:
        yield "Vision-only+CF+TF (topline)", topline_maps(detector, list(ev.clips), list(ev.times), clip_end)
    yield "Optical flow only", flow_only_map(ev.flow)
    if "rcgrad" in models:
        rc = localize.localize(models["rcgrad"], ev.images, ev.audio)
        yield "RCGrad", rc
        fh = localize.flowgrad_h(localize.clean(rc.maps), ev.flow)
        del rc
        yield "FlowGrad-H", fh
        del fh
    if "flowgrad_ic" in models:
        yield "FlowGrad-IC", localize.localize(models["flowgrad_ic"], ev.images, ev.audio, ev.flow)
    if "flowgrad_en" in models:
        yield "FlowGrad-EN", localize.localize(models["flowgrad_en"], ev.images, ev.audio, ev.flow)
    yield "Centred box", centred_box(len(ev))


def method_maps(models: Mapping, ev: EvalArrays, detector=None,
                clip_end: float | Sequence[float] = 9.5) -> dict[str, LocalizationMaps]:
    """Every method's maps at once (:func:`method_stream` collected): ~0.2 MB per sample and
    method; prefer :func:`score_stream` for large sets."""
    return dict(method_stream(models, ev, detector, clip_end))


def subset(ev: EvalArrays, index: Sequence[int]) -> EvalArrays:
    """The samples ``index`` of ``ev`` (e.g. the rows of an example figure)."""
    i = np.asarray(index, dtype=int)
    return EvalArrays(ev.clips[i], ev.times[i], ev.images[i], ev.flow[i], ev.audio[i], ev.gt[i],
                      [ev.boxes[k] for k in i], None if ev.flow_field is None else ev.flow_field[i])


def score_stream(stream: Iterable[tuple[str, LocalizationMaps]], gt: np.ndarray, at: float = 0.3,
                 n_boot: int = 1000, seed: int = 0,
                 per_map: Callable[[LocalizationMaps], np.ndarray] | None = None,
                 keep: Sequence[str] = ()) -> tuple[dict[str, EvalResult], dict[str, np.ndarray],
                                                     dict[str, LocalizationMaps]]:
    """Score maps as they come and drop them: bounded memory for many methods on many samples.

    Returns the results per method (as :func:`score`), ``per_map(maps)`` per method when given
    (else an empty dict), and the maps of the methods named in ``keep``.
    """
    results: dict[str, EvalResult] = {}
    extra: dict[str, np.ndarray] = {}
    kept: dict[str, LocalizationMaps] = {}
    for name, maps in stream:
        results[name] = metrics.evaluate(maps.maps, gt, postprocess=maps.postprocess, at=at,
                                         n_boot=n_boot, seed=seed)
        if per_map is not None:
            extra[name] = per_map(maps)
        if name in keep:
            kept[name] = maps
        del maps
    return results, extra, kept


def score_chunked(make_stream: Callable[[slice], Iterable[tuple[str, LocalizationMaps]]],
                  gt: np.ndarray, at: float = 0.3, n_boot: int = 1000, seed: int = 0,
                  per_map: Callable[[LocalizationMaps, slice], np.ndarray] | None = None,
                  keep: Sequence[str] = (), keep_rows: Sequence[int] = (),
                  chunk: int = 128) -> tuple[dict[str, EvalResult], dict[str, np.ndarray],
                                             dict[str, LocalizationMaps]]:
    """:func:`score_stream` on ``chunk`` samples at a time: memory bounded by one chunk.

    ``make_stream(rows)`` yields ``(name, maps)`` for the samples ``rows`` (a slice of the
    ``len(gt)`` samples), the same names in the same order for every chunk. Per-sample cIoUs
    are gathered over the chunks and scored once (:func:`vssl_core.metrics.score_cious`), so
    the results equal scoring every map at once whenever each map depends on its own sample
    only (every method here: per-sample Grad-CAM, flow, post-processing).

    Parameters
    ----------
    per_map : callable (maps, rows) -> (len(rows),) array, optional
        A per-sample value besides the cIoU (e.g. side accuracy), gathered like it.
    keep, keep_rows
        Maps of the methods named in ``keep`` are kept for the samples ``keep_rows`` only
        (in that order), e.g. the rows of an example figure.
    chunk : int
        Samples per chunk (128: ~25 MB per method's 224 x 224 float32 maps).

    Returns
    -------
    results, per-map values, kept maps : as :func:`score_stream`.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n = len(gt)
    threshold = metrics.pixel_threshold(at)
    cious: dict[str, list[np.ndarray]] = {}
    extra: dict[str, list[np.ndarray]] = {}
    post: dict[str, str] = {}
    wanted = np.asarray(keep_rows, dtype=int)
    kept_parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in keep}
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        inside = wanted[(wanted >= rows.start) & (wanted < rows.stop)]
        for name, maps in make_stream(rows):
            cious.setdefault(name, []).append(
                metrics.ciou(maps.maps, gt[rows], postprocess=maps.postprocess, threshold=threshold))
            post[name] = maps.postprocess
            if per_map is not None:
                extra.setdefault(name, []).append(np.asarray(per_map(maps, rows)))
            if name in kept_parts and inside.size:
                kept_parts[name].append((inside, np.array(maps.maps[inside - rows.start])))
            del maps
    results = {name: metrics.score_cious(np.concatenate(v), at=at, n_boot=n_boot, seed=seed,
                                         postprocess=post[name]) for name, v in cious.items()}
    kept = {}
    for name, parts in kept_parts.items():
        if parts:
            idx = np.concatenate([i for i, _ in parts])
            maps = np.concatenate([m for _, m in parts])
            order = [int(np.flatnonzero(idx == r)[0]) for r in wanted]
            kept[name] = LocalizationMaps(maps[order], post[name], name)
    return results, {k: np.concatenate(v) for k, v in extra.items()}, kept


def score(maps: Mapping[str, LocalizationMaps], gt: np.ndarray, at: float = 0.3,
          n_boot: int = 1000, seed: int = 0) -> dict[str, EvalResult]:
    """Per-method cIoU (pixel threshold 0.5, cut-off ``at``) and AUC with bootstrap CIs."""
    return {name: metrics.evaluate(m.maps, gt, postprocess=m.postprocess, at=at, n_boot=n_boot,
                                   seed=seed) for name, m in maps.items()}


def cutoff_columns(r: EvalResult, cutoff: float) -> dict[str, float]:
    """``cIoU@cutoff`` with its bootstrap CI (same resamples, seed and level as ``r``), as the
    columns ``cIoU@<cutoff>``, ``_lo``, ``_hi``: a second cut-off beside the one ``r`` was scored at."""
    fr = metrics.bootstrap_ci(r.cious, metrics.CIoUAt(cutoff), n_boot=r.n_boot, seed=r.seed, level=r.level)
    return {f"cIoU@{cutoff:g}": fr.estimate, f"cIoU@{cutoff:g}_lo": fr.lo, f"cIoU@{cutoff:g}_hi": fr.hi}


def table1(results: Mapping[str, EvalResult], extra_cutoff: float | None = 0.5) -> pd.DataFrame:
    """Table 1: cIoU at the released code's cut-off (and at ``extra_cutoff``), AUC, 95% CIs and
    the paper's numbers beside ours."""
    rows = []
    for name, r in results.items():
        paper = FLOWGRAD_TABLE1.get(METHODS.get(name) or "", (np.nan, np.nan))
        row = {"method": name, "n": r.n, f"cIoU@{r.cutoff:g}": r.ciou,
               f"cIoU@{r.cutoff:g}_lo": r.ciou_lo, f"cIoU@{r.cutoff:g}_hi": r.ciou_hi}
        if extra_cutoff is not None:
            row.update(cutoff_columns(r, extra_cutoff))
        row.update({"AUC": r.auc, "AUC_lo": r.auc_lo, "AUC_hi": r.auc_hi,
                    "postprocess": r.postprocess, "paper_IoU": paper[0], "paper_AUC": paper[1]})
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(results: Mapping[str, EvalResult],
                 comparisons: Sequence[tuple[str, str]] = (("FlowGrad-H", "RCGrad"),
                                                           ("Optical flow only", "RCGrad")),
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired bootstrap of A - B on the same samples for cIoU@cut-off and AUC."""
    rows = []
    for a, b in comparisons:
        if a not in results or b not in results:
            continue
        ra, rb = results[a], results[b]
        for metric, stat in ((f"cIoU@{ra.cutoff:g}", metrics.CIoUAt(ra.cutoff)),
                             ("AUC", metrics.AUC())):
            pb = paired_bootstrap(ra.cious, rb.cious, stat, n_boot=n_boot, seed=seed)
            rows.append({"comparison": f"{a} - {b}", "metric": metric, "difference": pb.diff,
                         "lo": pb.lo, "hi": pb.hi, "p_value": pb.p_value,
                         "CI excludes 0": bool(pb.lo > 0 or pb.hi < 0)})
    return pd.DataFrame(rows)


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


def official_rcgrad_maps(path: str, dataset: UrbansasDataset, setup: FlowGradSetup,
                         progress: bool = True) -> dict[str, LocalizationMaps]:
    """RCGrad and FlowGrad-H from the released ``rc_grad.pt`` on all FlowGrad pairs of
    ``dataset`` at 224 px (the published input size). Sample order matches
    :func:`load_evaluation` with ``clips=None``."""
    from .checkpoints import load_official_rcgrad

    model, report = load_official_rcgrad(path)
    print(f"released RCGrad: {len(report.loaded)} tensors loaded, ignored {list(report.ignored)}, "
          f"missing {list(report.missing)}")
    ev = load_evaluation(dataset, None, setup, image_size=224, progress=progress)
    rc = localize.localize(model.eval(), ev.images, ev.audio)
    return {"RCGrad (released weights)": rc,
            "FlowGrad-H (released RCGrad)": localize.flowgrad_h(localize.clean(rc.maps), ev.flow)}


def real_detector(weights: str, dataset: UrbansasDataset):
    """The topline's detector on real data: torchvision Faster R-CNN with the user's COCO
    weights, or None when ``weights`` is '' (the topline row is then left out, and said so)."""
    if not weights:
        return None
    from .baselines import TorchvisionDetector

    return TorchvisionDetector(weights, frame_reader=dataset.frame)


def real_evaluation(models: Mapping, dataset: UrbansasDataset, setup: FlowGradSetup,
                    at: float = 0.3, n_boot: int = 1000, seed: int = 0, official_rcgrad: str = "",
                    detector_weights: str = "", progress: bool = True
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 and the paired comparisons on every FlowGrad pair of a real Urbansas folder.

    ``models`` (trained on synthetic data) are applied as they are; ``official_rcgrad`` adds the
    released RCGrad and its FlowGrad-H (224 px); ``detector_weights`` adds the topline.
    """
    ev = load_evaluation(dataset, None, setup, progress=progress)
    results, _, _ = score_stream(method_stream(models, ev, real_detector(detector_weights, dataset)),
                                 ev.gt, at=at, n_boot=n_boot, seed=seed)
    if official_rcgrad:
        results.update(score(official_rcgrad_maps(official_rcgrad, dataset, setup, progress=progress),
                             ev.gt, at=at, n_boot=n_boot, seed=seed))
    return table1(results), paired_table(results, n_boot=n_boot, seed=seed)


def setup_for_profile(profile: str) -> FlowGradSetup:
    """The :class:`FlowGradSetup` notebook 02 runs with under ``profile`` (its declared defaults,
    then the profile's ``[all]`` and ``[02_flowgrad]`` tables), so another notebook reuses the
    models that notebook 02 trained and cached."""
    from .profiles import notebook_parameters

    params = notebook_parameters("02_flowgrad", profile)
    names = {f.name for f in dataclasses.fields(FlowGradSetup)}
    return FlowGradSetup(**{k: v for k, v in params.items() if k in names})


def setup_from(**params) -> FlowGradSetup:
    """A :class:`FlowGradSetup` from notebook parameters (unknown names are an error)."""
    names = {f.name for f in dataclasses.fields(FlowGradSetup)}
    unknown = set(params) - names
    if unknown:
        raise ValueError(f"not FlowGradSetup fields: {sorted(unknown)}; known: {sorted(names)}")
    return FlowGradSetup(**params)


__all__ = ["FlowGradSetup", "EvalArrays", "METHODS", "split_clips", "load_evaluation",
           "load_training", "train_family", "method_maps", "method_stream", "subset", "score_stream", "score_chunked", "score", "cutoff_columns", "table1", "paired_table",
           "sample_states", "pick_examples", "setup_from", "setup_for_profile", "train_rcgrad", "cached_rcgrad", "cached_family", "rcgrad_for_profile", "official_rcgrad_maps", "real_detector", "real_evaluation"]
