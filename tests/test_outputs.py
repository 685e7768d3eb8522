"""Deterministic figure and table files (vssl_core.repro.outputs)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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
