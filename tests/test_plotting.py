"""Figures a learner can read: named Table 4 rows, a legend for the paper's ticks, log axes
labelled at the data."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vssl_core.viz import plotting  # noqa: E402


def _table4() -> pd.DataFrame:
    rows = [("a", False, False, False), ("d", True, False, False), ("f", True, True, True),
            ("flow only (reference)", None, None, None)]
    df = pd.DataFrame(rows, columns=["model", "flow", "pretrained vision", "frozen vision"])
    df["AUC"], df["AUC_lo"], df["AUC_hi"] = [0.1, 0.2, 0.3, 0.4], [0.05, 0.15, 0.25, 0.35], [0.15, 0.25, 0.35, 0.45]
    df["paper_AUC"] = [0.27, 0.34, 0.40, np.nan]
    return df


def test_table4_rows_are_named_by_their_switches():
    labels = plotting.row_labels(_table4(), "model")
    assert labels == ["a: none", "d: flow", "f: flow + pretrained vision + frozen vision", "flow only (reference)"]
    plain = pd.DataFrame({"method": ["RCGrad"], "n": [3]})
    assert plotting.row_labels(plain, "method") == ["RCGrad"]


def test_results_bars_label_rows_and_explain_the_paper_ticks():
    fig, ax = plt.subplots()
    plotting.results_bars(_table4(), "AUC", "paper_AUC", ax=ax, label_column="model")
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert "f: flow + pretrained vision + frozen vision" in ticks
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["ours (95% CI)", "paper"]
    fig2, ax2 = plt.subplots()
    plotting.results_bars(_table4(), "AUC", None, ax=ax2, label_column="model")
    assert ax2.get_legend() is None  # nothing to explain without paper values
    plt.close("all")


def test_log_x_axis_is_labelled_at_the_data_only():
    windows = [0.125, 0.5, 1.0, 2.0, 5.0]
    table = pd.DataFrame({"window_s": windows * 2, "method": ["flow"] * 5 + ["FlowGrad-H"] * 5,
                          "cIoU": np.linspace(0.1, 0.3, 10)})
    fig, ax = plt.subplots()
    plotting.sweep_lines(table, "window_s", "cIoU", "method", ax=ax, logx=True)
    fig.canvas.draw()
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.125", "0.5", "1", "2", "5"]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    plt.close(fig)


def test_sweep_grid_has_a_row_per_group_and_a_column_per_metric():
    table = pd.DataFrame({"scenes": ["a"] * 4 + ["b"] * 4, "window_s": [0.125, 1.0] * 4,
                          "method": (["flow"] * 2 + ["H"] * 2) * 2, "cIoU": np.linspace(0, 1, 8),
                          "recall": np.linspace(1, 0, 8)})
    fig = plotting.sweep_grid(table, "scenes", "window_s", ("cIoU", "recall"), "method", logx=True)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a: cIoU", "a: recall", "b: cIoU", "b: recall"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 2, 2]
    plt.close(fig)


def test_side_accuracy_bars_draw_the_references_at_their_values():
    from vssl_core.viz.plots_do_we_need_sound import side_accuracy_bars

    fig, ax = plt.subplots()
    side_accuracy_bars(ax, ["A", "B"], [0.5, 0.6], references={"perfect": 0.565, "perfect + motion": 0.589})
    vertical = [line.get_xdata()[0] for line in ax.get_lines()]
    assert vertical == [0.5, 0.565, 0.589]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "sound-blind map", "perfect: 0.565", "perfect + motion: 0.589"]
    fig2, ax2 = plt.subplots()
    side_accuracy_bars(ax2, ["A"], [0.5])
    assert ax2.get_legend() is None and len(ax2.get_lines()) == 1
    plt.close("all")
