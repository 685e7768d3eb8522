"""The explorer's methods and data: which models, from which notebook, on which pairs.

:func:`method_registry` builds a fresh dict ``name -> LazyMethod`` (no module-level state):
nothing is loaded or trained until a method is first asked for a map. The models are those of
the study notebooks under the same profile (:func:`notebook_parameters`): RCGrad and the
FlowGrad family from notebook 02 (:func:`flowgrad_source`), LVS and HTF from notebook 03's
Table 4 (:data:`HTF_ROWS`), Oya et al.'s localisation and potential maps from notebook 04's
default-size model, each read from the model cache when that notebook ran, trained (with tqdm
progress) and cached otherwise.
A method that cannot run here raises :class:`~vssl_core.explorer.MethodUnavailable` saying why.

Adding a method: a function ``MapInputs -> LocalizationMaps`` (the batch's maps on the 224 grid
with their post-processing) wrapped in a ``LazyMethod`` whose ``build`` loads the model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .baselines import centred_box, flow_only_map
from .explorer import Lazy, LazyMethod, MapFunction, MapInputs, MethodUnavailable
from .localize import LocalizationMaps
from .profiles import notebook_parameters

__all__ = ["ModelSource", "HTF_ROWS", "ABLATIONS_NOTEBOOK", "OYA_NOTEBOOK", "notebook_parameters",
           "flowgrad_source", "evaluation_data", "method_registry"]


# -- where the trained models come from ---------------------------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """Where the explorer's models come from: the studies' notebooks under one profile.

    Attributes
    ----------
    setup : FlowGradSetup
        Notebook 02's setup (RCGrad and the FlowGrad family; also the evaluation pairs).
    synth_clips, synth_seed : int
        The synthetic dataset of notebook 02 (its training clips give the training windows).
    progress : bool
        tqdm bars while loading data or training.
    profile : str
        The profile the other studies' setups are read from ('' : none, their methods say so).
    overrides : mapping
        Parameters applied over every study notebook's profile table (e.g. ``synth_clips``).
    """

    setup: Any  # FlowGradSetup (imported lazily: torch-free import of this module)
    synth_clips: int
    synth_seed: int
    progress: bool = True
    profile: str = ""
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def flowgrad_source(profile: str, overrides: Mapping[str, Any] | None = None,
                    notebooks_dir: str | Path | None = None, progress: bool = True) -> ModelSource:
    """The models' source under ``profile``: notebook 02's setup and synthetic dataset.

    :func:`notebook_parameters` of ``02_flowgrad``, keeping the :class:`FlowGradSetup` fields.
    With the same profile (and ``overrides`` equal to its values, e.g. ``synth_clips``) the
    models are those notebook 02 trained (same cache keys).
    """
    from . import flowgrad_study as fs

    params = notebook_parameters("02_flowgrad", profile, overrides, notebooks_dir)
    fields = {f.name for f in dataclasses.fields(fs.FlowGradSetup)}
    setup = fs.setup_from(**{k: v for k, v in params.items() if k in fields})
    return ModelSource(setup, int(params["synth_clips"]), int(params["synth_seed"]), progress,
                       profile, dict(overrides or {}))


def evaluation_data(source: ModelSource, urbansas_root: str = "") -> tuple[Any, Any]:
    """The evaluation pairs to explore and the dataset they come from.

    ``urbansas_root == ""``: the held-out clips of the synthetic default (the same pairs as
    notebook 02's Table 1). A path: every FlowGrad pair of that real Urbansas folder (the
    models, trained on synthetic clips, are applied as they are). Cached like notebook 02's.

    Returns
    -------
    (EvalArrays, UrbansasDataset)
    """
    from . import flowgrad_study as fs
    from .data import sources

    if urbansas_root:
        real = sources.real_urbansas(urbansas_root)
        return fs.load_evaluation(real, None, source.setup, progress=source.progress), real
    synth = sources.synthetic(source.synth_clips, source.synth_seed, progress=source.progress)
    _, test_clips = fs.split_clips(synth, source.setup.eval_clips)
    return fs.load_evaluation(synth, test_clips, source.setup, progress=source.progress), synth


def _flowgrad_training(source: ModelSource) -> tuple[Any, str]:
    """Notebook 02's training arrays and their cache key."""
    from . import flowgrad_study as fs
    from .data import sources

    synth = sources.synthetic(source.synth_clips, source.synth_seed, progress=source.progress)
    train_clips, _ = fs.split_clips(synth, source.setup.eval_clips)
    return fs.load_training(synth, train_clips, source.setup, progress=source.progress)


def _rcgrad_family_method(model: Callable[[], Any], flowgrad_h: bool = False
                          ) -> Callable[[], MapFunction]:
    """Builder of an RCGrad / FlowGrad map function; ``model()`` loads (or trains) the model."""
    def build() -> MapFunction:
        from . import localize

        m = model()
        if flowgrad_h:
            return lambda b: localize.localize_flowgrad_h(m, b.images, b.audio, b.flow)
        flow_needed = m.kind != "rcgrad"
        return lambda b: localize.localize(m, b.images, b.audio, b.flow if flow_needed else None)
    return build


# -- LVS and Hear The Flow: notebook 03's models ------------------------------------------------
#: Explorer name -> Table 4 row of :mod:`vssl_core.htf_study`: LVS = no flow, pretrained vision
#: (LVS starts from ImageNet); HTF = flow, pretrained and frozen vision (the paper's model).
HTF_ROWS = {"LVS": "b", "HTF": "f"}
ABLATIONS_NOTEBOOK = "03_ablations"


def _study_module(name: str, method: str):
    """Import ``vssl_core.<name>`` or say clearly that ``method`` is not available yet."""
    import importlib

    try:
        return importlib.import_module(f"vssl_core.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"vssl_core.{name}":
            raise
        raise MethodUnavailable(f"{method} is not available yet: vssl_core/{name}.py does not exist "
                                "in this version of the companion. Choose another method.") from exc


def _time_key(clip: str, t: float) -> tuple[str, int]:
    return str(clip), int(round(float(t) * 1000))


def _ablation_context(source: ModelSource) -> dict[str, Any]:
    """Notebook 03's setup, training arrays, vision prior and evaluation flow fields (cached)."""
    from . import flowgrad_study as fs
    from .data import sources
    from .paths import repo_root

    hs = _study_module("htf_study", "LVS / HTF")
    if not source.profile or not (repo_root() / "notebooks" / f"{ABLATIONS_NOTEBOOK}.ipynb").is_file():
        raise MethodUnavailable(f"LVS / HTF are not available yet: they are the models of notebook "
                                f"{ABLATIONS_NOTEBOOK}, which is not in notebooks/ (or no profile given).")
    params = notebook_parameters(ABLATIONS_NOTEBOOK, source.profile, source.overrides)
    fields = {f.name for f in dataclasses.fields(hs.AblationSetup)}
    setup = hs.setup_from(**{k: v for k, v in params.items() if k in fields})
    if setup.audio_sr != source.setup.audio_sr:
        raise ValueError(f"notebook {ABLATIONS_NOTEBOOK} uses audio at {setup.audio_sr} Hz but the "
                         f"explorer's pairs are at {source.setup.audio_sr} Hz: use equal audio_sr")
    synth = sources.synthetic(int(params["synth_clips"]), int(params["synth_seed"]),
                              progress=source.progress)
    train_clips, test_clips = fs.split_clips(synth, setup.eval_clips)
    arrays, key = hs.load_training(synth, train_clips, setup, progress=source.progress)
    prior = hs.vehicle_prior(synth, sources.load_objects(synth.root), train_clips, setup,
                             progress=source.progress)
    ev = hs.load_evaluation_with_field(synth, test_clips, setup, progress=source.progress)
    flow_fields = {_time_key(c, t): ev.flow_field[i] for i, (c, t) in enumerate(zip(ev.clips, ev.times))}
    return {"module": hs, "setup": setup, "arrays": arrays, "key": key, "prior": prior,
            "flow_fields": flow_fields}


def _htf_method(method: str, context: Lazy, progress: bool) -> Callable[[], MapFunction]:
    """Builder of the LVS / HTF map function (Table 4 row :data:`HTF_ROWS` of notebook 03)."""
    def build() -> MapFunction:
        ctx = context.get()
        hs, setup = ctx["module"], ctx["setup"]
        flow, pretrained, frozen = hs.TABLE4_ROWS[HTF_ROWS[method]]
        config = hs.model_config(setup, flow=flow, pretrained=pretrained, frozen=frozen,
                                 prior=ctx["prior"])
        model = hs.train_model(config, setup, ctx["arrays"], ctx["key"], progress=progress)

        def maps(b: MapInputs) -> LocalizationMaps:
            field = None
            if flow:
                keys = [_time_key(c, t) for c, t in zip(b.clips, b.times)]
                missing = [k for k in keys if k not in ctx["flow_fields"]]
                if missing:
                    raise MethodUnavailable(f"{method} needs the flow field, cached only for the "
                                            f"synthetic evaluation pairs; none for {missing[0]}")
                field = np.stack([ctx["flow_fields"][k] for k in keys])
            return hs.localizer_maps(model, b.images, b.audio, field)
        return maps
    return build


# -- Oya et al.: notebook 04's model --------------------------------------------------------------
OYA_NOTEBOOK = "04_do_we_need_sound"


def _oya_context(source: ModelSource) -> dict[str, Any]:
    """Notebook 04's default-size OyaNet (cached when that notebook ran) and its module."""
    from .paths import repo_root

    oy = _study_module("oya_study", "Oya et al.'s maps")
    if not source.profile or not (repo_root() / "notebooks" / f"{OYA_NOTEBOOK}.ipynb").is_file():
        raise MethodUnavailable(f"Oya et al.'s maps are not available yet: they are the model of "
                                f"notebook {OYA_NOTEBOOK}, which is not in notebooks/ "
                                "(or no profile given).")
    params = notebook_parameters(OYA_NOTEBOOK, source.profile, source.overrides)
    fields = {f.name for f in dataclasses.fields(oy.OyaSetup)}
    setup = oy.setup_from(**{k: v for k, v in params.items() if k in fields})
    model = oy.trained_oya(setup, synth_clips=int(params["synth_clips"]),
                           synth_seed=int(params["synth_seed"]),
                           data=oy.rcgrad_setup(source.profile, setup), progress=source.progress)
    return {"module": oy, "model": model}


def _oya_method(potential: bool, context: Lazy, audio_sr: int) -> Callable[[], MapFunction]:
    """Builder of Oya's localisation (eq. 3) or potential (eq. 1) map function.

    ``audio_sr``: rate of the explorer's waveforms (resampled to the model's by
    ``oya_study.oya_method_maps``). Both maps use the "clean" post-processing.
    """
    def build() -> MapFunction:
        ctx = context.get()
        oy, model = ctx["module"], ctx["model"]
        key = oy.POT if potential else oy.LOC
        return lambda b: oy.oya_method_maps(model, b.images, b.audio, audio_sr)[key]
    return build


def method_registry(source: ModelSource) -> dict[str, LazyMethod]:
    """Every method of the explorer by display name; nothing is loaded until first used.

    RCGrad and FlowGrad-H share notebook 02's RCGrad; FlowGrad-IC / -EN load the whole family
    (fine-tuned from it). LVS and HTF share notebook 03's data and vision prior; both Oya maps
    share notebook 04's model.
    """
    from . import flowgrad_study as fs

    data = Lazy(lambda: _flowgrad_training(source))
    rcgrad = Lazy(lambda: fs.train_rcgrad(source.setup, *data.get(), progress=source.progress))
    family = Lazy(lambda: fs.train_family(source.setup, *data.get(), progress=source.progress))
    ablations = Lazy(lambda: _ablation_context(source))
    flowgrad = {
        "RCGrad": (rcgrad.get, False, "Grad-CAM of <image, audio> embeddings"),
        "FlowGrad-H": (rcgrad.get, True, "clean RCGrad map x raw flow magnitude"),
        "FlowGrad-IC": (lambda: family.get()["flowgrad_ic"], False,
                        "RCGrad with the flow magnitude as a 4th image channel"),
        "FlowGrad-EN": (lambda: family.get()["flowgrad_en"], False, "image CAM x flow-encoder CAM"),
    }
    out = {
        "Centred box": LazyMethod(
            "Centred box", lambda: lambda b: centred_box(len(b.images)), uses_audio=False,
            needs_model=False, note="a box covering 50% of the image, whatever is seen or heard"),
        "Optical flow only": LazyMethod(
            "Optical flow only", lambda: lambda b: flow_only_map(b.flow), uses_audio=False,
            needs_model=False, note="raw flow magnitude; 0.5 px/step keeps what moves"),
    }
    for name, (model, h, note) in flowgrad.items():
        out[name] = LazyMethod(name, _rcgrad_family_method(model, h), uses_audio=True,
                               needs_model=True, note=note)
    out["LVS"] = LazyMethod("LVS", _htf_method("LVS", ablations, source.progress), uses_audio=True,
                            needs_model=True, note="cosine map of image features and the audio "
                            "embedding (Table 4 row b of notebook 03)")
    out["HTF"] = LazyMethod("HTF", _htf_method("HTF", ablations, source.progress), uses_audio=True,
                            needs_model=True, note="LVS with optical-flow attention (Table 4 row f)")
    oya = Lazy(lambda: _oya_context(source))
    sr = source.setup.audio_sr if source.setup is not None else 16000
    out["Oya (localisation)"] = LazyMethod(
        "Oya (localisation)", _oya_method(False, oya, sr), uses_audio=True, needs_model=True,
        note="potential x audio selection (eq. 3, notebook 04's model)")
    out["Oya (potential)"] = LazyMethod(
        "Oya (potential)", _oya_method(True, oya, sr), uses_audio=False, needs_model=True,
        note="the image-only potential map (eq. 1): the sound is not used")
    return out
