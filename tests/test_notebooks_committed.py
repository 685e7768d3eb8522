"""Committed notebooks are clean and runnable by the regeneration runner.

- no outputs and no execution counts (outputs belong in figures/, not in git), kept so by the git
  filter of .ci/nbstrip.py that `make setup` installs;
- by hand, a notebook writes to build/interactive/<notebook>/, never to figures/;
- a cell tagged ``parameters`` declaring ``profile`` and ``output_dir``;
- every profile's tables name existing notebooks and declared parameters.
"""
from __future__ import annotations

import json
import sys
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_by_hand_a_notebook_writes_to_a_scratch_folder(path: Path):
    """Run by hand, a notebook writes build/interactive/<notebook>/ (git-ignored); only the
    runner, which passes output_dir itself, writes figures/."""
    import ast

    import papermill

    default = ast.literal_eval(papermill.inspect_notebook(str(path))["output_dir"]["default"])
    assert default == f"../build/interactive/{path.stem}"
    resolved = (path.parent / default).resolve()
    assert (repo_root() / "build") in resolved.parents
    assert "build/" in (repo_root() / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_cell_installs_visibly_with_dependencies(path: Path):
    nb = json.loads(path.read_text())
    src = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    assert "pip install -e" in src and "--no-deps" not in src, "the package's dependencies must be installed"
    assert "-q" not in src.split() and "--quiet" not in src, "install output must stay visible"
    assert "print(line" in src and "returncode" in src, "pip's output is printed and a failure raises"


# -- the git filter that keeps committed notebooks free of outputs ------------------------------
def _nbstrip():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nbstrip", repo_root() / ".ci" / "nbstrip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _executed(path: Path) -> dict:
    """``path`` as JupyterLab saves it after a run: outputs, counts, timing, kernel and widget state."""
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran\n"]}]
            cell["execution_count"] = i
            cell["metadata"]["execution"] = {"iopub.status.busy": "2026-11-30T10:00:00"}
    nb["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7", "file_extension": ".py"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nbstrip_leaves_committed_notebooks_as_they_are_and_strips_a_run(path: Path):
    nbstrip = _nbstrip()
    text = path.read_text()
    assert nbstrip.clean(text) == text, f"{path.name} is not in the filter's form: run .ci/nbstrip.py on it"
    assert nbstrip.clean(json.dumps(_executed(path), indent=2)) == text
    assert nbstrip.clean("{ half-written") == "{ half-written"


def test_the_git_filter_keeps_outputs_out_of_commits(tmp_path):
    """In a clone set up like `make setup` does, a notebook saved with outputs shows no diff and
    `git add` stages nothing, even from inside notebooks/."""
    import shutil
    import subprocess

    def git(*args, cwd=tmp_path):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                              check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / ".ci").mkdir()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(repo_root() / ".ci" / "nbstrip.py", tmp_path / ".ci" / "nbstrip.py")
    shutil.copy(repo_root() / ".gitattributes", tmp_path / ".gitattributes")
    nb = NOTEBOOKS[0]
    shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    git("add", "-A")
    git("commit", "-qm", "clean clone")
    subprocess.run([sys.executable, ".ci/nbstrip.py", "--install"], cwd=tmp_path, check=True,
                   capture_output=True)
    (tmp_path / "notebooks" / nb.name).write_text(json.dumps(_executed(nb), indent=1))
    git("diff", "--exit-code")
    git("add", "-A", cwd=tmp_path / "notebooks")
    assert git("diff", "--cached", "--name-only") == ""
    assert git("show", f"HEAD:notebooks/{nb.name}") == nb.read_text()
    # a real edit still goes through, without the outputs
    edited = _executed(nb)
    edited["cells"][0]["source"].append("\nEdited.")
    (tmp_path / "notebooks" / nb.name).write_text(json.dumps(edited))
    git("add", "-A")
    staged = json.loads(git("show", f":notebooks/{nb.name}"))
    assert staged["cells"][0]["source"][-1] == "\nEdited."
    assert all(not c.get("outputs") for c in staged["cells"])


def test_make_setup_installs_the_git_filter():
    makefile = (repo_root() / "Makefile").read_text()
    setup = next(line for line in makefile.splitlines() if line.startswith("setup:"))
    assert "git-filter" in setup
    assert ".ci/nbstrip.py --install" in makefile
    assert "notebooks/*.ipynb filter=nbstrip" in (repo_root() / ".gitattributes").read_text()
