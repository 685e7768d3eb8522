"""Committed notebooks are clean and runnable by the regeneration runner.

- no outputs and no execution counts (outputs belong in figures/, not in git);
- a cell tagged ``parameters`` declaring ``profile`` and ``output_dir``;
- every profile's tables name existing notebooks and declared parameters.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vssl_core.repro.paths import repo_root
from vssl_core.repro.profiles import available_profiles, load_profile, profile_path, resolve_parameters

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_no_outputs(path: Path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has outputs: clear them"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("profile", available_profiles(repo_root() / "notebooks"))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_profiles_match_declared_parameters(path: Path, profile: str):
    nbdir = repo_root() / "notebooks"
    data = load_profile(nbdir, profile)
    params = resolve_parameters(path, data, profile, profile_path(nbdir, profile))
    assert params["profile"] == profile


def test_profile_tables_name_notebooks():
    nbdir = repo_root() / "notebooks"
    stems = {p.stem for p in NOTEBOOKS} | {"all"}
    for profile in available_profiles(nbdir):
        unknown = set(load_profile(nbdir, profile)) - stems
        assert not unknown, f"profiles/{profile}.toml names no notebook: {unknown}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_line_is_understood_by_papermill(path: Path):
    """papermill silently drops a parameter line it cannot parse (e.g. a comment holding quotes
    or a semicolon); such a parameter could then not be set by a profile."""
    import papermill

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    assigned = {ln.split("=", 1)[0].strip() for ln in lines
                if "=" in ln and not ln.lstrip().startswith("#") and ln[:1].isalpha()}
    assert assigned == set(papermill.inspect_notebook(str(path)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_badge_and_install_cell(path: Path):
    """A Colab badge opening this very notebook at the top, then a first code cell that installs
    the project only when it runs in Colab (and does nothing anywhere else)."""
    nb = json.loads(path.read_text())
    top = "".join(nb["cells"][0]["source"])
    assert "colab.research.google.com/github/" in top and f"notebooks/{path.name}" in top, \
        f"{path.name}: the first cell needs an 'Open in Colab' badge for notebooks/{path.name}"
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    src = "".join(code["source"])
    assert 'if "google.colab" in sys.modules:' in src and "pip install" in src, \
        f"{path.name}: the first code cell must install the project inside Colab only"
    guarded = src.split('if "google.colab" in sys.modules:', 1)[1]
    assert all(line.startswith((" ", "\t")) or not line.strip() for line in guarded.splitlines()[1:]), \
        f"{path.name}: everything after the Colab check must be inside it"


def test_readme_has_the_badges():
    readme = (repo_root() / "README.md").read_text()
    assert "mybinder.org/badge_logo.svg" in readme and "colab-badge.svg" in readme
