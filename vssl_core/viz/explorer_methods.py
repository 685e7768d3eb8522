"""The explorer's methods and data: which models, from which study, on which pairs.

:func:`method_registry` builds a fresh dict ``name -> LazyMethod`` (no module-level state):
nothing is loaded or trained until a method is first asked for a map. The models are those of
the studies under the same profile (each study's ``Setup.for_profile``): RCGrad and the FlowGrad
family (:mod:`vssl_core.training.rcgrad_family`, notebook 02), LVS and HTF from Hear The Flow's
Table 4 (:data:`HTF_ROWS`, notebook 03), Oya et al.'s localisation and potential maps from the
default-size model of notebook 04; each read from the model cache when that notebook ran, trained
(with tqdm progress) and cached otherwise. A method that cannot run here raises
:class:`~vssl_core.viz.explorer.MethodUnavailable` saying why.

Adding a method: a map function ``EvalArrays -> LocalizationMaps`` (the batch's maps on the 224
grid with their post-processing) wrapped in a ``LazyMethod`` whose ``build`` loads the model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vssl_core.data.arrays import EvalArrays
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.models.baselines import centred_box_maps, flow_only_maps
from vssl_core.repro.profiles import profile_values
from vssl_core.viz.explorer import Lazy, LazyMethod, MapFunction, MethodUnavailable

__all__ = ["ModelSource", "HTF_ROWS", "flowgrad_source", "evaluation_data", "method_registry"]


# -- where the trained models come from ---------------------------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """Where the explorer's models come from: the studies under one profile.

    Attributes
    ----------
    setup : RCGradFamilySetup
        The RCGrad family's setup (notebook 02; also the evaluation pairs).
    synth_clips, synth_seed : int
        The synthetic dataset (its training clips give the training windows).
    progress : bool
        tqdm bars while loading data or training.
    profile : str
        The profile the studies' setups are read from ('' : none; the study models then say
        they are unavailable).
    overrides : mapping
        Parameters applied over every study's profile values (e.g. ``synth_clips``).
    """

    setup: Any  # RCGradFamilySetup (imported lazily: torch-free import of this module)
    synth_clips: int
    synth_seed: int
    progress: bool = True
    profile: str = ""
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    models: Any = None  # vssl_core.training.store.Models: shipped weights, cache, training


def flowgrad_source(profile: str, overrides: Mapping[str, Any] | None = None,
                    notebooks_dir: str | Path | None = None, progress: bool = True) -> ModelSource:
    """The models' source under ``profile``: the RCGrad family's setup and the synthetic dataset.

    With the same profile (and ``overrides`` equal to its values, e.g. ``synth_clips``) the
    models are those notebook 02 trained (same cache keys).
    """
    from vssl_core.training.rcgrad_family import RCGradFamilySetup

    from vssl_core.training.weights import models_for

    overrides = dict(overrides or {})
    setup = RCGradFamilySetup.for_profile(profile, overrides, notebooks_dir)
    values = {**profile_values(profile, RCGradFamilySetup.PROFILE_TABLE, notebooks_dir), **overrides}
    return ModelSource(setup, int(values["synth_clips"]), int(values["synth_seed"]), progress, profile,
                       overrides, models_for(profile, bool(overrides.get("retrain", False)), progress))


def _require_profile(source: ModelSource, method: str) -> None:
    if not source.profile:
        raise MethodUnavailable(f"{method} is not available yet: its model comes from a study under a "
                                "profile, and this explorer was given none (use flowgrad_source(profile)).")


def _synthetic(source: ModelSource):
    from vssl_core.data import sources

    return sources.synthetic(source.synth_clips, source.synth_seed, progress=source.progress)


def evaluation_data(source: ModelSource, urbansas_root: str = "") -> tuple[EvalArrays, Any]:
    """The evaluation pairs to explore and the dataset they come from.

    ``urbansas_root == ""``: the held-out clips of the synthetic default (the same pairs as
    notebook 02's Table 1). A path: every FlowGrad pair of that real Urbansas folder (the
    models, trained on synthetic clips, are applied as they are). Cached like notebook 02's.

    Returns
    -------
    (EvalArrays, UrbansasDataset)
    """
    from vssl_core.data import sources
    from vssl_core.data.arrays import split_clips
    from vssl_core.studies import flowgrad

    if urbansas_root:
        real = sources.real_urbansas(urbansas_root)
        return flowgrad.load_pairs(real, None, source.setup, progress=source.progress), real
    synth = _synthetic(source)
    _, test_clips = split_clips(synth, source.setup.eval_clips)
    return flowgrad.load_pairs(synth, test_clips, source.setup, progress=source.progress), synth


def _rcgrad_family_method(model: Callable[[], Any], flowgrad_h: bool = False) -> Callable[[], MapFunction]:
    """Builder of an RCGrad / FlowGrad map function; ``model()`` loads (or trains) the model."""
    def build() -> MapFunction:
        from vssl_core.models import rcgrad_maps

        m = model()
        if flowgrad_h:
            return lambda ev: rcgrad_maps.flowgrad_h_maps(m, ev)
        return lambda ev: rcgrad_maps.maps(m, ev)
    return build


# -- LVS and Hear The Flow: notebook 03's models ------------------------------------------------
#: Explorer name -> Table 4 row of :mod:`vssl_core.studies.hear_the_flow`: LVS = no flow, pretrained
#: vision (LVS starts from ImageNet); HTF = flow, pretrained and frozen vision (the paper's model).
HTF_ROWS = {"LVS": "b", "HTF": "f"}


def _time_key(clip: str, t: float) -> tuple[str, int]:
    return str(clip), int(round(float(t) * 1000))


def _ablation_context(source: ModelSource) -> dict[str, Any]:
    """Hear The Flow's setup and the flow fields of its evaluation pairs (cached)."""
    from vssl_core.data.arrays import split_clips
    from vssl_core.studies import hear_the_flow

    _require_profile(source, "LVS / HTF")
    setup = hear_the_flow.HearTheFlowSetup.for_profile(source.profile, source.overrides)
    if setup.audio_sr != source.setup.audio_sr:
        raise ValueError(f"Hear The Flow uses audio at {setup.audio_sr} Hz but the explorer's pairs are at "
                         f"{source.setup.audio_sr} Hz: use equal audio_sr")
    synth = _synthetic(source)
    _, test_clips = split_clips(synth, setup.eval_clips)
    ev = hear_the_flow.load_pairs(synth, test_clips, setup, progress=source.progress)
    flow_fields = {_time_key(c, t): ev.flow_field[i] for i, (c, t) in enumerate(zip(ev.clips, ev.times))}
    return {"setup": setup, "flow_fields": flow_fields}


def _htf_method(method: str, context: Lazy, progress: bool) -> Callable[[], MapFunction]:
    """Builder of the LVS / HTF map function (Table 4 row :data:`HTF_ROWS` of notebook 03)."""
    def build() -> MapFunction:
        from vssl_core.models import lvs_maps
        from vssl_core.studies import hear_the_flow

        ctx = context.get()
        row = HTF_ROWS[method]
        flow = hear_the_flow.TABLE4_ROWS[row][0]
        model = hear_the_flow.trained_models(ctx["setup"], ctx["models"], rows=(row,), progress=progress)[row]

        def maps(ev: EvalArrays) -> LocalizationMaps:
            if flow:
                keys = [_time_key(c, t) for c, t in zip(ev.clips, ev.times)]
                missing = [k for k in keys if k not in ctx["flow_fields"]]
                if missing:
                    raise MethodUnavailable(f"{method} needs the flow field, cached only for the "
                                            f"synthetic evaluation pairs; none for {missing[0]}")
                ev = dataclasses.replace(ev, flow_field=np.stack([ctx["flow_fields"][k] for k in keys]))
            return lvs_maps.maps(model, ev)
        return maps
    return build


# -- Oya et al.: notebook 04's model --------------------------------------------------------------
def _oya_model(source: ModelSource):
    """Notebook 04's default-size OyaNet (cached when that notebook ran)."""
    from vssl_core.studies import do_we_need_sound

    _require_profile(source, "Oya et al.'s maps")
    setup = do_we_need_sound.OyaSetup.for_profile(source.profile, source.overrides)
    return do_we_need_sound.trained_oya(setup, do_we_need_sound.rcgrad_setup(source.profile, setup, source.overrides),
                                        source.models, progress=source.progress)


def _oya_method(potential: bool, model: Lazy) -> Callable[[], MapFunction]:
    """Builder of Oya's localisation (eq. 3) or potential (eq. 1) map function ("clean")."""
    def build() -> MapFunction:
        from vssl_core.models import oya_maps

        m = model.get()
        return (lambda ev: oya_maps.potential_maps(m, ev)) if potential else (
            lambda ev: oya_maps.localisation_maps(m, ev))
    return build


def method_registry(source: ModelSource) -> dict[str, LazyMethod]:
    """Every method of the explorer by display name; nothing is loaded until first used.

    RCGrad and FlowGrad-H share notebook 02's RCGrad; FlowGrad-IC / -EN load the whole family
    (fine-tuned from it). LVS and HTF share notebook 03's data and vision prior; both Oya maps
    share notebook 04's model.
    """
    from vssl_core.training import rcgrad_family

    rcgrad = Lazy(lambda: rcgrad_family.trained_rcgrad(source.setup, source.models, source.progress))
    family = Lazy(lambda: rcgrad_family.trained_family(source.setup, source.models, source.progress))
    ablations = Lazy(lambda: {**_ablation_context(source), "models": source.models})
    flowgrad = {
        "RCGrad": (rcgrad.get, False, "Grad-CAM of <image, audio> embeddings"),
        "FlowGrad-H": (rcgrad.get, True, "clean RCGrad map x raw flow magnitude"),
        "FlowGrad-IC": (lambda: family.get()["flowgrad_ic"], False,
                        "RCGrad with the flow magnitude as a 4th image channel"),
        "FlowGrad-EN": (lambda: family.get()["flowgrad_en"], False, "image CAM x flow-encoder CAM"),
    }
    out = {
        "Centred box": LazyMethod(
            "Centred box", lambda: centred_box_maps, uses_audio=False,
            needs_model=False, note="a box covering 50% of the image, whatever is seen or heard"),
        "Optical flow only": LazyMethod(
            "Optical flow only", lambda: flow_only_maps, uses_audio=False,
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
    oya = Lazy(lambda: _oya_model(source))
    out["Oya (localisation)"] = LazyMethod(
        "Oya (localisation)", _oya_method(False, oya), uses_audio=True, needs_model=True,
        note="potential x audio selection (eq. 3, notebook 04's model)")
    out["Oya (potential)"] = LazyMethod(
        "Oya (potential)", _oya_method(True, oya), uses_audio=False, needs_model=True,
        note="the image-only potential map (eq. 1): the sound is not used")
    return out
