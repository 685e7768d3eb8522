"""Committed notebooks are clean and runnable by the regeneration runner.

- no outputs and no execution counts (outputs belong in figures/, not in git);
- a cell tagged ``parameters`` declaring ``profile`` and ``output_dir``;
- every profile's tables name existing notebooks and declared parameters.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vssl_core.paths import repo_root
from vssl_core.profiles import available_profiles, load_profile, profile_path, resolve_parameters

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
