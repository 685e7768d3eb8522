"""Shared fixtures.

``shared_data``: the real data folder (``../shared/data``) named by ``VSSL_SHARED_DATA``.
A fresh clone without the variable skips those tests with a reason; when the variable is set
(CI sets it) and the folder or a needed sub-folder is missing, the test fails instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

try:
    import torch
except ImportError:  # pragma: no cover - torch is a hard requirement of the project
    torch = None
else:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    value = os.environ.get("VSSL_SHARED_DATA")
    if not value:
        pytest.skip("VSSL_SHARED_DATA is not set: the real-data tests need ../shared/data")
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        pytest.fail(f"VSSL_SHARED_DATA={value} is set but {path} does not exist")
    for sub in ("urbansas-mini", "vggss"):
        if not (path / sub).is_dir():
            pytest.fail(f"VSSL_SHARED_DATA={value}: expected sub-folder {sub}/ is missing")
    return path


@pytest.fixture(scope="session")
def urbansas_mini(shared_data: Path) -> Path:
    return shared_data / "urbansas-mini"


def make_pairs(images, audio, flow=None, flow_field=None, gt=None, audio_sr: int = 16000):
    """An :class:`~vssl_core.data.arrays.EvalArrays` from test arrays (the map functions' input)."""
    import numpy as np

    from vssl_core.data.arrays import EvalArrays

    n = len(images)
    if flow is None:
        flow = np.zeros((n, 224, 224), np.float32)
    return EvalArrays(np.asarray([f"c{i}" for i in range(n)]), np.arange(n, dtype=float), images, flow, audio,
                      gt, [np.zeros((0, 4))] * n, flow_field, audio_sr)


def write_notebook(path: Path, params: str, body: str) -> None:
    """A two-cell notebook at ``path``: a cell tagged ``parameters`` and a body cell (python3 kernel)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def make_project(tmp_path: Path, params: str, body: str, quick_toml: str) -> dict[str, Path]:
    """A one-notebook project for the runner: ``notebooks/01_first.ipynb`` and its ``quick``
    profile; returns the ``notebooks``, ``figures`` and ``build`` folders."""
    nbs = tmp_path / "notebooks"
    (nbs / "profiles").mkdir(parents=True)
    write_notebook(nbs / "01_first.ipynb", params, body)
    (nbs / "profiles" / "quick.toml").write_text(quick_toml)
    return {"notebooks": nbs, "figures": tmp_path / "figures", "build": tmp_path / "build"}


@pytest.fixture()
def one_thread():
    """torch on one thread for the test (tiny networks are fastest so, and do not fight other
    jobs for cores); the previous count is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
