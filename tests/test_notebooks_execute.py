"""Every notebook executes end to end through the regeneration runner (smoke profile).

The smoke profile uses the smallest sizes that run every cell; its numbers mean nothing. Data
(the synthetic clips, caches, models) goes to a temporary VSSL_DATA_DIR so the test neither
reuses nor disturbs the user's data/. With VSSL_SHARED_DATA set (CI), the real-data cells run.
"""
from __future__ import annotations

import json

import pytest

from vssl_core.repro.paths import repo_root
from vssl_core.repro.regenerate import regenerate


@pytest.mark.slow
def test_all_notebooks_run_in_smoke_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("VSSL_DATA_DIR", str(tmp_path / "data"))
    figures = tmp_path / "figures"
    summary = regenerate(profile="smoke", figures_dir=figures, build_dir=tmp_path / "build",
                         progress=False)
    names = {p.stem for p in (repo_root() / "notebooks").glob("*.ipynb")}
    assert {r.name for r in summary.runs} == names
    manifest = json.loads((figures / "MANIFEST.json").read_text())
    for run in summary.runs:
        assert run.outputs, f"{run.name} wrote no figure or table"
        assert all(o in manifest["files"] for o in run.outputs)
