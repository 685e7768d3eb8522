"""Deterministic figure and table files (vssl_core.repro.outputs)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vssl_core.repro import outputs


def _figure() -> plt.Figure:
    fig, ax = plt.subplots()
    ax.imshow(np.arange(64, dtype=float).reshape(8, 8))
    ax.plot([0, 7], [7, 0], label="line")
    ax.legend()
    ax.set_title("deterministic")
    return fig


def test_figures_are_byte_identical_and_carry_no_versions(tmp_path):
    a = outputs.save_figure(_figure(), "f", tmp_path / "a", close=True)
    b = outputs.save_figure(_figure(), "f", tmp_path / "b", close=True)
    assert [p.name for p in a] == ["f.png", "f.pdf"]
    for pa, pb in zip(a, b):
        data = pa.read_bytes()
        assert data == pb.read_bytes(), f"{pa.name} differs between two saves"
        assert matplotlib.__version__.encode() not in data
        assert b"CreationDate" not in data and b"Software" not in data


def test_tables_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"method": ["a", "b"], "cIoU": [0.123456, float("nan")], "n": [3, 4]})
    csv, md = outputs.save_table(df, "t", tmp_path, digits=3)
    assert csv.read_text() == "method,cIoU,n\na,0.123,3\nb,,4\n"
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| method") and set(lines[1]) <= {"|", "-"}
    assert "| a " in lines[2] and "0.123" in lines[2] and "nan" in lines[3]


def test_json_is_sorted_and_handles_numpy(tmp_path):
    path = outputs.save_json({"b": np.float32(0.5), "a": np.arange(2)}, "r", tmp_path)
    assert path.read_text() == '{\n  "a": [\n    0,\n    1\n  ],\n  "b": 0.5\n}\n'


def test_importing_the_package_keeps_the_backend(tmp_path):
    """Importing outputs and the plotting modules selects no backend: a Jupyter kernel's inline
    backend (here: the one MPLBACKEND names) stays in place."""
    import subprocess
    import sys

    from vssl_core.repro.paths import repo_root

    code = ("import matplotlib.pyplot as plt\n"
            "from vssl_core.repro import outputs\n"
            "from vssl_core.viz import plotting, explorer_view\n"
            "print(plt.get_backend())\n")
    env = {"MPLBACKEND": "svg", "PYTHONPATH": str(repo_root()), "PATH": "/usr/bin:/bin",
           "MPLCONFIGDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "svg"


def test_a_kernel_shows_the_saved_figure_and_writes_the_same_bytes(tmp_path, monkeypatch):
    """In a Jupyter kernel (inline backend) a figure saved with close=True is still displayed,
    and the files are the bytes a script without a display (agg) writes."""
    import nbformat
    from nbclient import NotebookClient

    from vssl_core.repro.paths import repo_root

    code = ("import numpy as np\n"
            "import matplotlib.pyplot as plt\n"
            "from vssl_core.repro import outputs\n"
            "fig, ax = plt.subplots()\n"
            "ax.imshow(np.arange(64, dtype=float).reshape(8, 8))\n"
            "ax.plot([0, 7], [7, 0], label='line')\n"
            "ax.legend()\n"
            "ax.set_title('deterministic')\n"
            f"outputs.save_figure(fig, 'f', {str(tmp_path / 'kernel')!r}, close=True)\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    monkeypatch.setenv("PYTHONPATH", str(repo_root()))  # the kernel inherits the environment
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = nb.cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outs), f"no inline image: {outs}"
    assert not any(o.get("output_type") == "error" for o in outs)
    outputs.save_figure(_figure(), "f", tmp_path / "script", close=True)
    for ext in ("png", "pdf"):
        assert (tmp_path / "kernel" / f"f.{ext}").read_bytes() == (tmp_path / "script" / f"f.{ext}").read_bytes()


def test_writing_into_committed_figures_warns_but_staging_does_not(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "figures_dir", lambda: tmp_path / "figures")
    monkeypatch.setattr(outputs, "_WARNED", set())
    df = pd.DataFrame({"a": [1]})
    with pytest.warns(UserWarning, match="MANIFEST.json"):
        outputs.save_table(df, "t", tmp_path / "figures" / "01_dataset_bias")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs.save_table(df, "t", tmp_path / "figures" / ".staging-12" / "01_dataset_bias")
        outputs.save_table(df, "t", tmp_path / "build" / "interactive" / "01_dataset_bias")
    assert outputs.writes_committed_figures(tmp_path / "figures" / "x")
    assert not outputs.writes_committed_figures(tmp_path / "figures-old" / "x")


def test_written_files_show_as_one_line(tmp_path):
    from IPython.lib.pretty import pretty

    written = outputs.save_table(pd.DataFrame({"a": [1]}), "t", tmp_path)
    assert isinstance(written, list) and [p.name for p in written] == ["t.csv", "t.md"]
    assert pretty(written) == f"wrote t.csv, t.md in {tmp_path}"
