"""Binder's environment (binder/) installs what the notebooks import, at the pinned versions."""
from __future__ import annotations

from vssl_core.repro.paths import repo_root

#: Needed by the test suite only, not by a Binder session.
TEST_ONLY = {"pytest", "playwright"}


def _requirements(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(("-", "--")):
            continue
        name = line.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower()
        out[name] = line
    return out


def test_binder_requirements_match_the_project():
    root = repo_root()
    project = _requirements(root / "requirements.txt")
    binder = _requirements(root / "binder" / "requirements.txt")
    missing = set(project) - set(binder) - TEST_ONLY
    assert not missing, f"binder/requirements.txt lacks {sorted(missing)}"
    differ = {k: (project[k], binder[k]) for k in set(project) & set(binder) if project[k] != binder[k]}
    assert not differ, f"versions differ between requirements.txt and binder/: {differ}"
    assert (root / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert "pip install" in (root / "binder" / "postBuild").read_text()
