"""The three places that list dependencies agree: requirements.txt (pins, `make setup`),
pyproject.toml (what `pip install -e .` installs, e.g. in Colab) and binder/ (CPU builds)."""
from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement

from vssl_core.repro.paths import repo_root

#: Needed by the test suite only, not by a Binder session.
TEST_ONLY = {"pytest", "playwright"}
#: Pinned to their CPU builds in binder/requirements.txt.
CPU_BUILDS = {"torch", "torchvision"}
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _requirements(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(("-", "--")):
            continue
        name = line.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower()
        out[name] = line
    return out


def _bounds(spec: str) -> tuple[str | None, str | None]:
    """(lower bound, upper bound) of a requirement line: ``==v`` is the lower bound v."""
    req = Requirement(spec)
    lower = upper = None
    for s in req.specifier:
        if s.operator in ("==", ">="):
            lower = s.version.split("+")[0]
        elif s.operator == "<":
            upper = s.version
    return lower, upper


def _pyproject() -> dict:
    return tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]


def test_binder_requirements_match_the_project():
    root = repo_root()
    project = _requirements(root / "requirements.txt")
    binder = _requirements(root / "binder" / "requirements.txt")
    missing = set(project) - set(binder) - TEST_ONLY
    assert not missing, f"binder/requirements.txt lacks {sorted(missing)}"
    differ = {k: (project[k], binder[k]) for k in set(project) & set(binder) - CPU_BUILDS
              if project[k] != binder[k]}
    assert not differ, f"versions differ between requirements.txt and binder/: {differ}"
    assert (root / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert "pip install" in (root / "binder" / "postBuild").read_text()


def test_binder_pins_the_cpu_builds_of_the_project_versions():
    root = repo_root()
    project = _requirements(root / "requirements.txt")
    text = (root / "binder" / "requirements.txt").read_text()
    binder = _requirements(root / "binder" / "requirements.txt")
    assert f"--extra-index-url {CPU_INDEX}" in text
    for name in CPU_BUILDS:
        assert re.fullmatch(rf"{name}==[0-9.]+", project[name]), f"requirements.txt must pin {name} exactly"
        assert binder[name] == f"{project[name]}+cpu", f"binder/ must pin {project[name]}+cpu, has {binder[name]}"


def test_pyproject_declares_the_runtime_dependencies_with_the_same_bounds():
    project = _requirements(repo_root() / "requirements.txt")
    meta = _pyproject()
    declared = {Requirement(d).name.lower(): d for d in meta["dependencies"]}
    for extra in meta.get("optional-dependencies", {}).values():
        declared.update({Requirement(d).name.lower(): d for d in extra})
    missing = set(project) - set(declared)
    assert not missing, f"pyproject.toml does not declare {sorted(missing)}"
    differ = {k: (project[k], declared[k]) for k in project if _bounds(project[k]) != _bounds(declared[k])}
    assert not differ, f"bounds differ between requirements.txt and pyproject.toml: {differ}"
    runtime = {Requirement(d).name.lower() for d in meta["dependencies"]}
    needed = {"torch", "numpy", "datasets", "matplotlib", "ipywidgets", "papermill", "opencv-python-headless"}
    assert needed <= runtime, f"runtime dependencies lack {sorted(needed - runtime)}"
    assert not TEST_ONLY & runtime, "test-only packages belong in an extra, not in dependencies"


def test_requirements_comments_name_files_that_exist():
    for path in (repo_root() / "requirements.txt", repo_root() / "binder" / "requirements.txt"):
        for name in re.findall(r"[\w./-]+\.(?:md|txt|toml|py)\b", path.read_text()):
            assert (repo_root() / name).exists() or (path.parent / name).exists(), \
                f"{path.name} mentions {name}, which is not in the project"
