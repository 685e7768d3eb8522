""""How to Listen" Table 3 on the papers' own benchmarks: every method on VGG-SS and
Flickr-SoundNet media the user supplies, with released weights, under each paper's protocol.

A row is one method (:data:`METHODS`) on one benchmark (:mod:`vssl_core.data.benchmarks`). Each
method carries the protocol its released evaluation uses (:class:`~vssl_core.data.benchmark_arrays.Protocol`:
frame geometry, audio window and rate, how the map reaches 224) and the post-processing its map
function names; every row is scored with the released metric (pixel threshold 0.5, cIoU cut-off
0.5 for both benchmarks, AUC over 0, 0.05, ..., 1) with 95% bootstrap intervals, on the same
samples as the other rows of its benchmark: the test ids whose annotation and media are all
readable. Every other test id is listed with the reason (:meth:`Benchmark.problem_rows`).

======================  ==========================================================  ===========
method                  protocol (released code)                                    postprocess
======================  ==========================================================  ===========
centred box             one centred box of 50% of the image; needs no media         none
RCGrad                  squash 224 bicubic; the whole audio at 16 kHz (How to       clean
                        Listen's eval); Grad-CAM bilinear to 224
FlowGrad-H              RCGrad x FlowGrad's flow (videos layout only)               none
LVS                     Resize(224)+CenterCrop bicubic; 10 s (VGG-SS) / 20 s        median
                        (Flickr) from the start, tiled, clipped, at the file rate;
                        cosine map bilinear to 224
Hear The Flow           squash 224 bicubic; 3 s centred on floor(duration)/2,       median
                        tiled, file rate; released flow jpgs; map bicubic to 224
Oya et al.              squash; first 10 s (no released code or weights: a model    clean
                        trained by the companion)
CLIPAudio/TextTran      not implemented (CLIP ViT-B/32, Wav2CLIP, Transformer-MM)   -
======================  ==========================================================  ===========
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from vssl_core.data.benchmark_arrays import Protocol, eval_arrays
from vssl_core.data.benchmarks import CLIP_SECONDS, Benchmark, Sample, open_benchmark
from vssl_core.errors import DataError, data_error
from vssl_core.eval import metrics
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import EvalResult
from vssl_core.studies.how_to_listen import HOW_TO_LISTEN_TABLE3

__all__ = ["MethodSpec", "METHODS", "ROW_ORDER", "PAPER", "WEIGHT_FILES", "SUPPLY", "SOURCES", "Runner", "load_runner",
           "BenchmarkEvaluation", "evaluate", "evaluation_table", "save_evaluation", "Supplied", "find_supplied",
           "table3", "what_to_supply"]

#: cut-off on per-sample cIoU of both benchmarks ("How to Listen" Table 3: cIoU@0.5).
AT = 0.5


@dataclass(frozen=True)
class MethodSpec:
    """One method of the benchmark table.

    Attributes
    ----------
    label : str
        Row name.
    weights : str or None
        Key of :data:`WEIGHT_FILES` whose file the method needs (None: no weights).
    flow : {None, "mag", "htf"}
        FlowGrad's 8-fps magnitude or Hear The Flow's released flow.
    protocols : dict benchmark -> Protocol
    in_table3 : bool
        A row of "How to Listen" Table 3 (the others are the companion's additions).
    implemented : bool
        False for the CLIP-based rows (listed as gaps).
    """

    label: str
    weights: str | None
    flow: str | None
    protocols: Mapping[str, Protocol]
    in_table3: bool = True
    implemented: bool = True


def _both(p: Protocol) -> dict[str, Protocol]:
    return {"vggss": p, "flickr": p}


_RCGRAD = Protocol(image="squash", audio_anchor="start", audio_seconds=None, audio_sr=16000)
_LVS = {k: Protocol(image="centre_crop", audio_anchor="start", audio_seconds=s, audio_fill="tile", clip=True)
        for k, s in CLIP_SECONDS.items()}
_HTF = Protocol(image="squash", audio_anchor="centre", audio_seconds=3.0, audio_fill="tile", map_resize="bicubic")
_OYA = Protocol(image="squash", audio_anchor="start", audio_seconds=10.0, audio_fill="tile")

#: Every method, by CLI key.
METHODS: dict[str, MethodSpec] = {
    "centred_box": MethodSpec("Baseline (centred box)", None, None, _both(Protocol())),
    "lvs": MethodSpec("LVS", "lvs", None, _LVS),
    "rcgrad": MethodSpec("RCGrad", "rcgrad", None, _both(_RCGRAD)),
    "clip_audio": MethodSpec("CLIPAudioTran", None, None, {}, implemented=False),
    "clip_text": MethodSpec("CLIPTextTran", None, None, {}, implemented=False),
    "flowgrad_h": MethodSpec("FlowGrad-H", "rcgrad", "mag", _both(_RCGRAD), in_table3=False),
    "htf": MethodSpec("Hear The Flow", "htf", "htf", _both(_HTF), in_table3=False),
    "oya": MethodSpec("Oya et al.", "oya", None, _both(_OYA), in_table3=False),
}
#: Row order of the tables (Table 3's rows, then the companion's additions).
ROW_ORDER = tuple(METHODS)

#: The papers' numbers beside each row: (method, benchmark) -> (source, cIoU@0.5, AUC).
PAPER: dict[tuple[str, str], tuple[str, float, float]] = {}
for _key, _row in (("centred_box", "Baseline (centred box)"), ("lvs", "LVS"), ("rcgrad", "RCGrad"),
                   ("clip_audio", "CLIPAudioTran"), ("clip_text", "CLIPTextTran")):
    for _bench, _col in (("vggss", "VS"), ("flickr", "FS")):
        if _col in HOW_TO_LISTEN_TABLE3[_row]:
            PAPER[(_key, _bench)] = ("How to Listen, Table 3", *HOW_TO_LISTEN_TABLE3[_row][_col])
# Hear The Flow, VGG-Sound 144k model (the released VGG-Sound weights): Table 2 (VGG-SS, 4,670
# samples) and Table 1 (Flickr-SoundNet, 178 samples; the Flickr-144k model gives 0.865 / 0.639).
PAPER[("htf", "vggss")] = ("Hear The Flow, Table 2", 0.394, 0.400)
PAPER[("htf", "flickr")] = ("Hear The Flow, Table 1", 0.848, 0.640)

#: Weight files looked for under ``$VSSL_SHARED_DATA/weights/`` and ``<data dir>/weights/``.
WEIGHT_FILES = {
    "rcgrad": ("rc_grad.pt",),
    "lvs": ("lvs_vggss.pth.tar", "lvs_vggss.tar", "lvs_vggss.pth"),
    "htf": ("htf_vggsound.pth", "htf_vggsound.ckpt"),
    "oya": ("oya.pt",),
}

#: What may be missing: key -> (short name, what to supply and where it comes from).
SUPPLY = {
    "vggss_annotations": ("vggss.json", "vggss.json (metadata/ of github.com/hche11/Localizing-Visual-Sounds-the-Hard-Way) "
                          "in $VSSL_SHARED_DATA/vggss/ or the notebook's vggss_json"),
    "vggss_media": ("VGG-SS media", "VGG-SS test media for the YouTube ids of vggss.json (VGG-Sound, Chen et al. 2020): "
                    "frames/<id>.jpg (the centre frame) + audio/<id>.wav, or videos/<id>.mp4 (the 10-s clips) + "
                    "audio/<id>.wav, in $VSSL_SHARED_DATA/vggss/ or data/benchmarks/vggss/ (docs/benchmarks.md)"),
    "flickr_annotations": ("Flickr XML boxes", "the Flickr-SoundNet test boxes, one Annotations/<id>.xml per image "
                           "(github.com/ardasnck/learning_to_localize_sound_source, 'Preparation'; not in any public "
                           "repository), in $VSSL_SHARED_DATA/flickr_soundnet/Annotations/, "
                           "data/benchmarks/flickr/Annotations/ or the notebook's flickr_xml_dir"),
    "flickr_media": ("Flickr media", "the Flickr-SoundNet test frames and audio of the same release: frames/<id>.jpg + "
                     "audio/<id>.wav (or its Data/ folder) in $VSSL_SHARED_DATA/flickr_soundnet/ or "
                     "data/benchmarks/flickr/"),
    "rcgrad": ("rc_grad.pt", "rc_grad.pt (github.com/hohsiangwu/rethinking-visual-sound-localization, release "
                             "v0.1.0-alpha) as weights/rc_grad.pt in $VSSL_SHARED_DATA/ or data/"),
    "lvs": ("LVS weights", "the VGG-Sound LVS model lvs_vggss (github.com/hche11/Localizing-Visual-Sounds-the-Hard-Way, "
                           "README; How to Listen uses it on both benchmarks) as weights/lvs_vggss.pth.tar"),
    "htf": ("HTF weights", "the VGG-Sound Hear The Flow model (github.com/denfed/heartheflow, 'Pretrained Models') as "
                           "weights/htf_vggsound.pth"),
    "oya": ("Oya weights", "no released weights exist: an OyaNet trained by the companion (e.g. "
                           "weights/quick/oya-2500.pt of `python -m vssl_core train`) as weights/oya.pt"),
    "mag": ("two frames (videos)", "FlowGrad's flow needs two frames 1/8 s apart: the VGG-SS videos layout "
                                   "(videos/<id>.mp4); Flickr-SoundNet's test set has single frames"),
    "htf_flow": ("HTF flow", "Hear The Flow's flow: the VGG-SS videos layout, or flow/flow_x/<id>.jpg + "
                             "flow/flow_y/<id>.jpg beside frames/ (Hear The Flow's preprocessing writes them)"),
    "clip": ("CLIP + Wav2CLIP", "CLIP ViT-B/32 and Wav2CLIP weights and the Transformer-MM explainability method: "
                                "not implemented in the companion"),
}
#: key -> what to supply (the long texts of :data:`SUPPLY`).
SOURCES = {k: v[1] for k, v in SUPPLY.items()}


# -- loading a method -------------------------------------------------------------------------------
@dataclass
class Runner:
    """A loaded method: ``maps(samples) -> LocalizationMaps`` under its protocol.

    Attributes
    ----------
    key : str
    protocol : Protocol
        With ``audio_sr`` resolved to the rate the model is fed.
    fn : callable EvalArrays -> LocalizationMaps, or None
        The bound map function (None: the centred box, which needs no input).
    report : str
        What the weight loader did (loaded / ignored / missing keys).
    """

    key: str
    protocol: Protocol
    fn: Callable | None = None
    report: str = ""

    @property
    def spec(self) -> MethodSpec:
        return METHODS[self.key]

    def maps(self, samples: Sequence[Sample]) -> tuple[LocalizationMaps, np.ndarray]:
        """Maps of ``samples`` (in order) and their ground truth, ``(N, 224, 224)`` each."""
        from vssl_core.models.baselines import centred_box

        gt = np.stack([s.gt for s in samples]) if samples else np.zeros((0, 224, 224), np.float32)
        if self.fn is None:
            return centred_box(len(samples)), gt
        out = np.zeros((len(samples), 224, 224), np.float32)
        post = None
        for pos, ev in eval_arrays(samples, self.protocol, int(self.protocol.audio_sr),
                                   flow_field=self.spec.flow == "htf"):
            m = self.fn(ev)
            out[pos], post = m.maps, m.postprocess
        return LocalizationMaps(out, post or "none", self.key), gt


def _companion_payload(path: Path, key: str) -> bool:
    from vssl_core.models.checkpoints import load_foreign_checkpoint

    try:
        return key in load_foreign_checkpoint(path)
    except DataError:
        return False


def _htf_bicubic(model) -> Callable:
    from vssl_core.eval.maps import to_grid
    from vssl_core.models import lvs_maps

    def fn(ev) -> LocalizationMaps:
        if int(ev.audio_sr) != int(model.config.audio_sr):
            raise ValueError(f"the audio is at {ev.audio_sr} Hz but the model expects {model.config.audio_sr} Hz")
        heat = lvs_maps.heatmaps(model, ev.images, ev.audio, ev.flow_field if model.config.uses_flow else None)
        return LocalizationMaps(to_grid(heat, "bicubic"), "median", "htf")
    return fn


def load_runner(key: str, benchmark: str, weights: str | Path | None = None, *, file_sr: int | None = None
                ) -> Runner:
    """Load method ``key`` for ``benchmark`` with its weights file.

    Parameters
    ----------
    key : str
        A key of :data:`METHODS` (not a CLIP row).
    benchmark : {"vggss", "flickr"}
    weights : path, optional
        RCGrad / FlowGrad-H: ``rc_grad.pt`` (or a model saved by vssl_core); LVS: a released LVS
        checkpoint (or a companion-trained LVS); HTF: a Hear The Flow ``.pth``/``.ckpt`` (or a
        companion-trained HTF); Oya: a companion-trained OyaNet.
    file_sr : int, optional
        The benchmark's audio rate (Hz): released LVS / HTF models are fed audio at this rate,
        as their test code computes the spectrogram at the file's rate (default 16000 / 22050).

    Raises
    ------
    DataError
        Unknown method, no weights for a method that needs them, an unreadable or foreign file.
    """
    if key not in METHODS:
        raise data_error(None, "method", f"unknown method {key!r}", f"choose one of {sorted(METHODS)}")
    spec = METHODS[key]
    if not spec.implemented:
        raise data_error(None, "method", f"{spec.label} is not implemented", SOURCES["clip"])
    protocol = spec.protocols[benchmark]
    if spec.weights is None:
        return Runner(key, protocol)
    if weights is None or str(weights) == "":
        raise data_error(None, f"weights for {key}", "no weights file given", f"supply {SOURCES[spec.weights]}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise data_error(path, f"weights for {key}", "file not found", f"supply {SOURCES[spec.weights]}")
    from vssl_core.models import checkpoints, lvs_maps, oya_maps, rcgrad_maps
    from vssl_core.training.store import load_trained

    if _companion_payload(path, "model_class"):  # written by `python -m vssl_core train`
        model, _ = load_trained(path)
        report = f"vssl_core {type(model).__name__} ({model.config.image_size} px)"
        wanted = {"lvs": "LVS", "htf": "HTF", "oya": "OyaNet"}.get(key, "RCGrad")
        if type(model).__name__ != wanted:
            raise data_error(path, "model_class", f"is {type(model).__name__}", f"give a trained {wanted}")
    elif key in ("rcgrad", "flowgrad_h") and _companion_payload(path, "config"):
        model, _ = checkpoints.load_model(path)
        report = f"vssl_core model ({model.config.kind}, {model.config.image_size} px)"
    elif key in ("rcgrad", "flowgrad_h"):
        model, rep = checkpoints.load_official_rcgrad(path)
        report = rep.summary()
    elif key == "lvs":
        model, rep = checkpoints.load_released_lvs(path, audio_sr=file_sr or 16000)
        report = rep.summary()
    elif key == "htf":
        model, rep = checkpoints.load_released_htf(path, audio_sr=file_sr or 22050)
        report = rep.summary()
    else:
        raise data_error(path, "model_class", "not a companion-trained OyaNet", SOURCES["oya"])
    if key in ("rcgrad", "flowgrad_h"):
        if model.kind != "rcgrad":
            raise data_error(path, "config.kind", f"is {model.kind!r}", "give an RCGrad model")
        fn = (lambda ev, m=model: rcgrad_maps.maps(m, ev)) if key == "rcgrad" else \
            (lambda ev, m=model: rcgrad_maps.flowgrad_h_maps(m, ev))
        return Runner(key, replace(protocol, audio_sr=model.config.audio_sr), fn, report)
    resolved = replace(protocol, audio_sr=protocol.audio_sr or model.config.audio_sr)
    if key == "lvs":
        return Runner(key, resolved, lambda ev, m=model: lvs_maps.maps(m, ev), report)
    if key == "htf":
        return Runner(key, resolved, _htf_bicubic(model), report)
    return Runner(key, resolved, lambda ev, m=model: oya_maps.localisation_maps(m, ev), report)


# -- evaluating -------------------------------------------------------------------------------------
@dataclass
class BenchmarkEvaluation:
    """Scores of several methods on one benchmark, on the same samples.

    Attributes
    ----------
    benchmark : Benchmark
    ids : list of str
        The samples scored, in test-list order.
    cious : dict method -> float64 (len(ids),)
        Per-sample cIoU (NaN for a 0/0 sample).
    results : dict method -> EvalResult
    runners : dict method -> Runner
    annotations_only : bool
        No method needed media: every annotated id was scored.
    notes : list of str
        Caveats for the table (e.g. only the first ``limit`` samples were scored).
    """

    benchmark: Benchmark
    ids: list[str]
    cious: dict[str, np.ndarray]
    results: dict[str, EvalResult]
    runners: dict[str, Runner]
    annotations_only: bool = False
    notes: list[str] = field(default_factory=list)

    def unscored(self) -> list[tuple[str, str]]:
        """``(id, reason)`` for every test id that was not scored, in test-list order."""
        scored = set(self.ids)
        return [(i, self.benchmark.problems.get(i, "not scored (limit)")) for i in self.benchmark.ids
                if i not in scored]

    def unscored_counts(self) -> dict[str, int]:
        """Test ids not scored per reason kind (the text before ':')."""
        out: dict[str, int] = {}
        for _, text in self.unscored():
            for part in text.split("; "):
                kind = part.split(":")[0].strip()
                out[kind] = out.get(kind, 0) + 1
        return dict(sorted(out.items()))


def _needs_media(runners: Mapping[str, Runner]) -> bool:
    return any(r.fn is not None for r in runners.values())


def evaluate(bench: Benchmark, runners: Mapping[str, Runner], *, at: float = AT, n_boot: int = 1000,
             seed: int = 0, chunk: int = 16, limit: int | None = None, progress: bool = False) -> BenchmarkEvaluation:
    """Score every runner on the same samples of ``bench``.

    The samples are the test ids with an annotation and readable media (or, when only the
    centred box runs, every annotated id). A sample whose media turn out unreadable is recorded
    in ``bench.problems`` and left out for every method alike.

    Parameters
    ----------
    at : float
        Cut-off on per-sample cIoU (pixel threshold 0.5, the released code).
    n_boot, seed : int
        Bootstrap resamples and seed of the 95% intervals.
    chunk : int
        Samples decoded at a time (memory bound).
    limit : int, optional
        Score only the first ``limit`` samples (a quick look; the table says so).
    """
    from tqdm.auto import tqdm

    if not runners:
        raise data_error(None, "methods", "no method to evaluate", "name at least one method")
    needs_media = _needs_media(runners)
    if needs_media and not bench.has_media:
        raise data_error(None, "media", f"{bench.label} has no media folder", f"supply {SOURCES[bench.name + '_media']}")
    for r in runners.values():
        if r.spec.flow == "mag" and not bench.has_flow_mag:
            raise data_error(bench.root, "flow", f"{r.spec.label} needs FlowGrad's flow", SOURCES["mag"])
        if r.spec.flow == "htf" and not bench.has_htf_flow:
            raise data_error(bench.root, "flow", f"{r.spec.label} needs Hear The Flow's flow", SOURCES["htf_flow"])
    candidates = bench.media_ids() if needs_media else bench.annotated_ids()
    if limit is not None:
        candidates = candidates[:max(int(limit), 0)]
    flow = any(r.spec.flow for r in runners.values())
    threshold = metrics.pixel_threshold(at)
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in runners}
    post: dict[str, str] = {}
    starts = range(0, len(candidates), chunk)
    for start in tqdm(starts, desc=bench.label, disable=not progress):
        samples: list[Sample] = []
        for i in candidates[start:start + chunk]:
            if not needs_media:
                samples.append(Sample(i, np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.float32), 1,
                                      bench.gt(i), bench.boxes(i), 0.0))
                continue
            try:
                samples.append(bench.load(i, flow=flow))
            except DataError as exc:
                bench.record(i, str(exc))
        if not samples:
            continue
        ids.extend(s.id for s in samples)
        for key, runner in runners.items():
            maps, gt = runner.maps(samples)
            parts[key].append(metrics.ciou(maps.maps, gt, postprocess=maps.postprocess, threshold=threshold))
            post[key] = maps.postprocess
    if not ids:
        raise data_error(bench.root, "media", f"no {bench.label} sample could be scored "
                         f"({len(bench.problems)} test ids have problems)", f"supply {SOURCES[bench.name + '_media']}")
    cious = {k: np.concatenate(v) for k, v in parts.items()}
    results = {k: metrics.score_cious(c, at=at, n_boot=n_boot, seed=seed, postprocess=post[k])
               for k, c in cious.items()}
    notes = []
    if limit is not None:
        notes.append(f"only the first {len(ids)} samples were scored (limit={limit})")
    return BenchmarkEvaluation(bench, ids, cious, results, dict(runners), not needs_media, notes)


def _protocol_text(key: str, bench_name: str, runner: Runner | None = None) -> str:
    spec = METHODS[key]
    if not spec.implemented:
        return ""
    if spec.weights is None:
        return "a fixed box (no input)"
    text = (runner.protocol if runner is not None else spec.protocols[bench_name]).describe()
    flow = {"mag": "; flow: FlowGrad's 1/8-s pair", "htf": "; flow: Hear The Flow's jpg flow"}.get(spec.flow or "", "")
    return text + flow


def evaluation_table(ev: BenchmarkEvaluation) -> pd.DataFrame:
    """One row per method: n, cut-off, cIoU and AUC with 95% CIs, the paper's numbers, the protocol."""
    rows = []
    bench = ev.benchmark
    unscored = len(bench.ids) - len(ev.ids)
    for key in [k for k in ROW_ORDER if k in ev.results]:
        r, runner = ev.results[key], ev.runners[key]
        source, p_ciou, p_auc = PAPER.get((key, bench.name), ("", np.nan, np.nan))
        rows.append({"dataset": bench.label, "method": METHODS[key].label, "n": r.n, "n_empty": r.n_empty,
                     "test ids not scored": unscored, "cut-off": r.cutoff,
                     "cIoU": r.ciou, "cIoU_lo": r.ciou_lo, "cIoU_hi": r.ciou_hi,
                     "AUC": r.auc, "AUC_lo": r.auc_lo, "AUC_hi": r.auc_hi,
                     "paper_cIoU": p_ciou, "paper_AUC": p_auc, "paper": source, "postprocess": r.postprocess,
                     "protocol": _protocol_text(key, bench.name, runner)})
    return pd.DataFrame(rows)


def save_evaluation(ev: BenchmarkEvaluation, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<benchmark>_table.csv/.md``, ``<benchmark>_per_sample.csv`` (id, one cIoU column
    per method) and ``<benchmark>_problems.csv`` (every test id not scored, with the reason) into
    ``out_dir``, atomically."""
    from vssl_core.repro.atomic import write_text
    from vssl_core.repro.outputs import save_table

    out = Path(out_dir)
    name = ev.benchmark.name
    written = save_table(evaluation_table(ev), f"{name}_table", out)
    keys = [k for k in ROW_ORDER if k in ev.cious]
    lines = ["id," + ",".join(keys)]
    for n, i in enumerate(ev.ids):
        lines.append(i + "," + ",".join("nan" if np.isnan(ev.cious[k][n]) else repr(float(ev.cious[k][n]))
                                        for k in keys))
    written.append(write_text(out / f"{name}_per_sample.csv", "\n".join(lines) + "\n"))
    probs = ["id,problem"] + [f"{i},\"{p.replace(chr(34), chr(39))}\"" for i, p in ev.unscored()]
    written.append(write_text(out / f"{name}_problems.csv", "\n".join(probs) + "\n"))
    return written


# -- Table 3 as far as the supplied data allow ------------------------------------------------------
@dataclass
class Supplied:
    """What was found: the benchmarks (or why not) and the weight files (or None).

    Attributes
    ----------
    benchmarks : dict name -> Benchmark or None
    missing : dict name -> list of str
        Keys of :data:`SOURCES` that are missing for that benchmark.
    weights : dict key -> Path or None
    """

    benchmarks: dict[str, Benchmark | None]
    missing: dict[str, list[str]]
    weights: dict[str, Path | None]

    def describe(self) -> str:
        """Human-readable lines: what was found, what to supply."""
        lines = []
        for name, bench in self.benchmarks.items():
            if bench is not None:
                s = bench.summary()
                lines.append(f"{s['benchmark']}: {s['test_ids']} test ids, {s['annotated']} annotated, "
                             f"{s['with_media']} with media ({s['layout']} layout{', ' + str(s['root']) if s['root'] else ''})"
                             + (f"; problems: {s['problems']}" if s['with_media'] else ""))
            for m in self.missing[name]:
                lines.append(f"  missing for {name}: {SOURCES[m]}")
        for key, path in self.weights.items():
            lines.append(f"weights {key}: {path if path else 'not found; supply ' + SOURCES[key]}")
        return "\n".join(lines)


def _candidates(sub: str) -> list[Path]:
    from vssl_core.repro.paths import data_dir, shared_data_dir

    roots = [shared_data_dir(), data_dir()]
    return [r / sub for r in roots if r is not None]


def _media_root(paths: Sequence[Path], name: str) -> Path | None:
    for p in paths:
        if (p / "frames").is_dir() or (p / "videos").is_dir() or (p / "video").is_dir() \
                or (name == "flickr" and (p / "Data").is_dir()):
            return p
    return None


def find_supplied(vggss_json: str | Path | None = None, flickr_xml_dir: str | Path | None = None,
                  weights: Mapping[str, str | Path | None] | None = None,
                  media: Mapping[str, str | Path | None] | None = None) -> Supplied:
    """Find the benchmarks' annotations and media and the weight files.

    Looked for: VGG-SS media in ``$VSSL_SHARED_DATA/vggss/`` then ``<data dir>/benchmarks/vggss/``;
    Flickr in ``$VSSL_SHARED_DATA/flickr_soundnet/`` then ``<data dir>/benchmarks/flickr/``
    (``Annotations/`` there unless ``flickr_xml_dir``); weights by the names of
    :data:`WEIGHT_FILES` in ``$VSSL_SHARED_DATA/weights/`` then ``<data dir>/weights/``.
    ``weights`` (method key -> file) and ``media`` ("vggss"/"flickr" -> folder) override the
    search per key ('' or None: search). ``vggss_json`` defaults as :func:`open_benchmark`.
    """
    found_w: dict[str, Path | None] = {}
    for key, names in WEIGHT_FILES.items():
        given = (weights or {}).get(key)
        if given:
            found_w[key] = Path(given).expanduser()
            continue
        found_w[key] = next((d / n for d in _candidates("weights") for n in names if (d / n).is_file()), None)
    benches: dict[str, Benchmark | None] = {}
    missing: dict[str, list[str]] = {}
    for name, paths in (("vggss", _candidates("vggss") + _candidates("benchmarks/vggss")),
                        ("flickr", _candidates("flickr_soundnet") + _candidates("benchmarks/flickr"))):
        given = (media or {}).get(name)
        root = Path(given).expanduser() if given else _media_root(paths, name)
        missing[name] = [] if root is not None else [f"{name}_media"]
        ann = vggss_json if name == "vggss" else flickr_xml_dir
        if name == "flickr" and not ann:
            ann = next((p / "Annotations" for p in ([root] if root else []) + paths
                        if (p / "Annotations").is_dir()), None)
        if name == "vggss" and not ann and root is not None:
            ann = next((f for f in (root / "vggss.json", root / "metadata" / "vggss.json") if f.is_file()), None)
        try:
            benches[name] = open_benchmark(name, None, annotations=ann or None)
        except DataError:
            benches[name] = None
            missing[name].insert(0, f"{name}_annotations")
            continue
        if root is not None:  # a media folder that was given but is wrong is an error, not a gap
            benches[name] = open_benchmark(name, root, annotations=benches[name].annotations)
    return Supplied(benches, missing, found_w)


def _gap(bench_name: str, key: str, supplied: Supplied) -> list[str]:
    """Keys of :data:`SUPPLY` missing for method ``key`` on ``bench_name`` (empty: computable)."""
    spec = METHODS[key]
    if not spec.implemented:
        return ["clip"]
    bench = supplied.benchmarks.get(bench_name)
    out = [] if bench is not None else [f"{bench_name}_annotations"]
    if spec.weights is None:
        return out
    has_media = bench.has_media if bench is not None else f"{bench_name}_media" not in supplied.missing[bench_name]
    if not has_media:
        out.append(f"{bench_name}_media")
    if supplied.weights.get(spec.weights) is None:
        out.append(spec.weights)
    if spec.flow == "mag" and (bench_name == "flickr" or (bench is not None and has_media and not bench.has_flow_mag)):
        out.append("mag")
    if spec.flow == "htf" and bench is not None and has_media and not bench.has_htf_flow:
        out.append("htf_flow")
    return out


def table3(supplied: Supplied, *, n_boot: int = 1000, seed: int = 0, limit: int | None = None,
           out_dir: str | os.PathLike | None = None, progress: bool = False) -> pd.DataFrame:
    """"How to Listen" Table 3 (Flickr-SoundNet, VGG-SS) as far as ``supplied`` allows.

    Every row of :data:`METHODS` on both benchmarks: computed rows carry n, cIoU@0.5 and AUC with
    95% CIs beside the paper's numbers; the others say what is missing and where it comes from
    (``missing``). The computed rows of one benchmark share their samples. With ``out_dir`` the
    per-sample scores and per-id problems are written there (:func:`save_evaluation`).
    """
    rows = []
    for bench_name in ("flickr", "vggss"):
        bench = supplied.benchmarks.get(bench_name)
        gaps = {k: _gap(bench_name, k, supplied) for k in ROW_ORDER}
        runners: dict[str, Runner] = {}
        if bench is not None:
            file_sr = bench.audio_rate() if bench.has_media else None
            for key in ROW_ORDER:
                if gaps[key]:
                    continue
                try:
                    runners[key] = load_runner(key, bench_name, supplied.weights.get(METHODS[key].weights or ""),
                                               file_sr=file_sr)
                except DataError as exc:
                    gaps[key] = [f"error: {exc}"]
        table, annotations_only = None, False
        if runners:
            try:
                ev = evaluate(bench, runners, n_boot=n_boot, seed=seed, limit=limit, progress=progress)
            except DataError as exc:
                gaps = {k: (gaps[k] or [f"error: {exc}"]) for k in ROW_ORDER}
            else:
                table, annotations_only = evaluation_table(ev).set_index("method"), ev.annotations_only
                if out_dir is not None:
                    save_evaluation(ev, out_dir)
        label = {"flickr": "Flickr-SoundNet", "vggss": "VGG-SS"}[bench_name]
        for key in ROW_ORDER:
            spec = METHODS[key]
            source, p_ciou, p_auc = PAPER.get((key, bench_name), ("", np.nan, np.nan))
            row = {"dataset": label, "method": spec.label, "in Table 3": spec.in_table3}
            if table is not None and spec.label in table.index:
                t = table.loc[spec.label]
                row.update({c: t[c] for c in ("n", "cIoU", "cIoU_lo", "cIoU_hi", "AUC", "AUC_lo", "AUC_hi")})
                row["status"] = "computed on every annotated id (no media)" if annotations_only else "computed"
                row["missing"] = ""
            else:
                row.update({"n": 0, "cIoU": np.nan, "cIoU_lo": np.nan, "cIoU_hi": np.nan, "AUC": np.nan,
                            "AUC_lo": np.nan, "AUC_hi": np.nan, "status": "not computed"})
                row["missing"] = ", ".join(g if g.startswith("error:") else SUPPLY[g][0] for g in gaps[key])
            row.update({"paper_cIoU": p_ciou, "paper_AUC": p_auc, "paper": source, "protocol": _protocol_text(key, bench_name)})
            rows.append(row)
    return pd.DataFrame(rows)


def what_to_supply(table: pd.DataFrame) -> pd.DataFrame:
    """One row per missing piece named in :func:`table3`'s ``missing`` column: what to supply,
    where it comes from, and the rows it would unlock."""
    rows: dict[str, list[str]] = {}
    short = {v[0]: k for k, v in SUPPLY.items()}
    for _, r in table.iterrows():
        for name in [m.strip() for m in str(r["missing"]).split(", ") if m.strip()]:
            rows.setdefault(name, []).append(f"{r['method']} ({r['dataset']})")
    return pd.DataFrame([{"missing": n, "rows": "; ".join(v),
                          "what to supply, from where": SOURCES[short[n]] if n in short else n}
                         for n, v in rows.items()])
