"""One source of defaults: quick.toml, the notebooks' parameters cells and the study Setups agree.

The quick profile lists every parameter each notebook declares; the notebook's parameters cell
holds exactly those values (a notebook run by hand gives the tables `regenerate` gives); each
study Setup dataclass defaults to them. The package itself never reads notebook JSON for
defaults: ``Setup.for_profile`` reads the profile file.
"""
from __future__ import annotations

import ast
import dataclasses
import tomllib

import papermill
import pytest

from vssl_core.repro.paths import repo_root
from vssl_core.repro.profiles import RUNNER_PARAMETERS, StudySetup, profile_values
from vssl_core.studies import do_we_need_sound, flowgrad, flowgrad_motion, hear_the_flow, how_to_listen
from vssl_core.training.rcgrad_family import RCGradFamilySetup

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("*.ipynb"))
SETUPS = [how_to_listen.HowToListenSetup, flowgrad.FlowGradSetup, RCGradFamilySetup,
          hear_the_flow.HearTheFlowSetup, flowgrad_motion.MotionSetup, do_we_need_sound.OyaSetup]


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_the_quick_profile(notebook):
    declared = {k: ast.literal_eval(v["default"]) for k, v in papermill.inspect_notebook(str(notebook)).items()}
    quick = profile_values("quick", notebook.stem)
    for name, value in declared.items():
        if name in RUNNER_PARAMETERS:
            continue
        assert name in quick, f"{notebook.name}: {name} is not in quick.toml (the profile must list it)"
        assert _plain(value) == _plain(quick[name]), f"{notebook.name}: {name} = {value!r}, quick.toml says {quick[name]!r}"
    assert declared["profile"] == "quick"


@pytest.mark.parametrize("cls", SETUPS, ids=lambda c: c.__name__)
def test_setup_defaults_are_the_quick_profile(cls):
    assert issubclass(cls, StudySetup) and cls.PROFILE_TABLE
    quick = profile_values("quick", cls.PROFILE_TABLE)
    default = cls()
    shared = [f.name for f in dataclasses.fields(cls) if f.name in quick]
    assert shared, f"{cls.__name__} shares no field with [{cls.PROFILE_TABLE}]"
    for name in shared:
        assert _plain(getattr(default, name)) == _plain(quick[name]), f"{cls.__name__}.{name}"
    assert cls.for_profile("quick") == default


def test_for_profile_applies_the_profile_then_overrides():
    paper = tomllib.loads((repo_root() / "notebooks/profiles/paper.toml").read_text())["02_flowgrad"]
    s = flowgrad.FlowGradSetup.for_profile("paper", {"epochs": 1, "not_a_field": 3})
    assert s.image_size == paper["image_size"] and s.width == paper["width"] and s.epochs == 1
    with pytest.raises(ValueError, match="not FlowGradSetup fields"):
        flowgrad.FlowGradSetup.from_params(not_a_field=3)


def test_the_package_reads_no_notebook_json():
    """Only the runner (regenerate, and the profile functions it calls to check names) opens notebooks."""
    import inspect

    from vssl_core.repro import profiles

    runner = {"regenerate.py", "profiles.py"}
    offenders = [p.relative_to(repo_root()) for p in (repo_root() / "vssl_core").rglob("*.py")
                 if p.name not in runner and ("inspect_notebook" in p.read_text() or ".ipynb" in p.read_text())]
    assert offenders == [], f"modules that read notebooks for their defaults: {offenders}"
    for obj in (profiles.StudySetup, profiles.profile_values):
        source = inspect.getsource(obj)
        assert "inspect_notebook" not in source and "ipynb" not in source and "declared_parameters" not in source
