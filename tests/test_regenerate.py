"""The regeneration runner: staging, promotion, manifest, failures and parameter checks.

These run real papermill kernels on tiny notebooks written into tmp_path.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import make_project, write_notebook

from vssl_core.errors import DataError
from vssl_core.repro.regenerate import NotebookFailed, regenerate

PARAMS = "profile = 'quick'\noutput_dir = 'out'\nvalue = 1\n"
BODY = """
import matplotlib.pyplot as plt
import pandas as pd
from vssl_core.repro import outputs
fig, ax = plt.subplots()
ax.plot([0, 1], [0, value])
outputs.save_figure(fig, 'line', output_dir)
outputs.save_table(pd.DataFrame({'x': [0.5], 'v': [float(value)]}), 'table', output_dir)
"""


def _notebook(path: Path, params: str = PARAMS, body: str = BODY) -> None:
    write_notebook(path, params, body)


@pytest.fixture()
def project(tmp_path: Path) -> dict[str, Path]:
    return make_project(tmp_path, PARAMS, BODY, "[01_first]\nvalue = 2\n")


def _run(project: dict[str, Path], **kw):
    return regenerate(notebooks_dir=project["notebooks"], figures_dir=project["figures"],
                      build_dir=project["build"], progress=False, **kw)


def test_outputs_manifest_and_determinism(project):
    summary = _run(project)
    figs = project["figures"]
    files = sorted(p.name for p in (figs / "01_first").iterdir())
    assert files == ["line.pdf", "line.png", "table.csv", "table.md"]
    manifest = json.loads((figs / "MANIFEST.json").read_text())
    entry = manifest["files"]["01_first/line.png"]
    assert entry["sha256"] == hashlib.sha256((figs / "01_first/line.png").read_bytes()).hexdigest()
    assert entry["profile"] == "quick" and entry["notebook"] == "01_first"
    assert manifest["notebooks"]["01_first"]["parameters"]["value"] == 2
    assert "torch" in manifest["packages"]
    assert (project["build"] / "quick" / "01_first.ipynb").is_file()
    assert "01_first" in summary.table()
    assert not list(figs.glob(".staging*"))
    first = {p.name: p.read_bytes() for p in (figs / "01_first").iterdir()}
    _run(project)
    second = {p.name: p.read_bytes() for p in (figs / "01_first").iterdir()}
    assert first == second, "two runs of the same profile must write byte-identical files"


def test_failure_keeps_previous_figures(project):
    _run(project)
    before = (project["figures"] / "01_first" / "line.png").read_bytes()
    manifest_before = (project["figures"] / "MANIFEST.json").read_bytes()
    _notebook(project["notebooks"] / "02_broken.ipynb", body="raise ValueError('forced failure')")
    (project["notebooks"] / "profiles" / "quick.toml").write_text("[01_first]\nvalue = 3\n")
    with pytest.raises(NotebookFailed) as info:
        _run(project)
    message = str(info.value)
    assert "02_broken" in message and "cell 2 of 02_broken.ipynb" in message and "forced failure" in message
    assert (project["figures"] / "01_first" / "line.png").read_bytes() == before
    assert (project["figures"] / "MANIFEST.json").read_bytes() == manifest_before
    assert not (project["figures"] / "02_broken").exists()
    assert not list(project["figures"].glob(".staging*"))


def test_unknown_parameter_is_an_error(project):
    (project["notebooks"] / "profiles" / "quick.toml").write_text("[01_first]\nvalu = 2\n")
    with pytest.raises(DataError, match=r"valu.*did you mean \['value'\]"):
        _run(project)
    assert not project["figures"].exists() or not (project["figures"] / "01_first").exists()


def test_unknown_override_and_profile(project):
    with pytest.raises(DataError, match="unknown parameter"):
        _run(project, overrides={"nope": 1})
    with pytest.raises(DataError, match="no profile named 'fast'"):
        _run(project, profile="fast")


def test_only_selects_and_merges_manifest(project):
    _notebook(project["notebooks"] / "02_second.ipynb")
    _run(project)
    _run(project, only=["02"], overrides={"value": 5})
    manifest = json.loads((project["figures"] / "MANIFEST.json").read_text())
    assert manifest["notebooks"]["02_second"]["parameters"]["value"] == 5
    assert manifest["notebooks"]["01_first"]["parameters"]["value"] == 2
    assert {"01_first/line.png", "02_second/line.png"} <= set(manifest["files"])
    with pytest.raises(DataError, match="matches 0 notebooks"):
        _run(project, only=["03"])
