"""Plotting helpers shared by the notebooks (matplotlib only, inline-friendly).

Every function draws into an ``Axes`` it is given (or a new figure it returns) and never
saves: saving goes through :func:`vssl_core.repro.outputs.save_figure`, which strips volatile
metadata. Images are ``uint8 (H, W, 3)`` RGB; heatmaps are float ``(h, w)`` of any size and
are stretched over the image extent.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

#: Fixed colours per dataset / method so every figure of the companion agrees.
PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def box_area_histogram(ax: Axes, areas_percent: Mapping[str, np.ndarray], bins: int = 20) -> Axes:
    """Fraction of boxes per area bin (box area as % of the image), one step line per dataset."""
    edges = np.linspace(0, 100, bins + 1)
    for i, (name, areas) in enumerate(areas_percent.items()):
        areas = np.asarray(areas, dtype=float)
        counts, _ = np.histogram(np.clip(areas, 0, 100), bins=edges)
        frac = counts / max(len(areas), 1)
        ax.step(edges[:-1], frac, where="post", color=colour(i), label=f"{name} (n={len(areas)})")
    ax.set_xlabel("box area (% of image)")
    ax.set_ylabel("fraction of boxes")
    ax.set_xlim(0, 100)
    ax.legend(frameon=False)
    return ax


def centre_heatmap(ax: Axes, hist: np.ndarray, title: str = "", grid: int = 224) -> Axes:
    """A 2-D histogram of box centres (rows = y, columns = x) over the ``grid`` x ``grid`` image."""
    ax.imshow(hist, cmap="magma", extent=(0, grid, grid, 0), interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([0, grid // 2, grid])
    ax.set_yticks([0, grid // 2, grid])
    return ax


def boxes_per_frame_bars(ax: Axes, counts: Mapping[str, np.ndarray], max_boxes: int = 10) -> Axes:
    """Fraction of frames with 1, 2, ..., ``max_boxes``+ boxes, grouped bars per dataset."""
    names = list(counts)
    width = 0.8 / max(len(names), 1)
    ks = np.arange(1, max_boxes + 1)
    for i, name in enumerate(names):
        c = np.clip(np.asarray(counts[name]), 0, max_boxes)
        frac = np.array([(c == k).mean() if len(c) else 0.0 for k in ks])
        ax.bar(ks + (i - (len(names) - 1) / 2) * width, frac, width=width, color=colour(i), label=name)
    ax.set_xticks(ks, [str(k) if k < max_boxes else f"{k}+" for k in ks])
    ax.set_xlabel("boxes per frame")
    ax.set_ylabel("fraction of frames")
    ax.legend(frameon=False)
    return ax


def draw_boxes(ax: Axes, boxes_xyxy: np.ndarray, color: str = "#00ff66", lw: float = 1.2) -> None:
    """Draw boxes given as (N, 4) x1, y1, x2, y2 in the pixel units of the shown image."""
    for x1, y1, x2, y2 in np.asarray(boxes_xyxy, dtype=float).reshape(-1, 4):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=lw))


def show_image(ax: Axes, image: np.ndarray, title: str = "", boxes_xyxy: np.ndarray | None = None,
               heatmap: np.ndarray | None = None, alpha: float = 0.5, cmap: str = "jet",
               vmin: float | None = None, vmax: float | None = None) -> Axes:
    """An image with optional boxes and an optional heatmap stretched over it."""
    h, w = image.shape[:2]
    ax.imshow(image, extent=(0, w, h, 0))
    if heatmap is not None:
        ax.imshow(heatmap, cmap=cmap, alpha=alpha, extent=(0, w, h, 0), vmin=vmin, vmax=vmax,
                  interpolation="bilinear")
    if boxes_xyxy is not None:
        draw_boxes(ax, boxes_xyxy)
    ax.set_title(title)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    return ax


def show_map(ax: Axes, heatmap: np.ndarray, title: str = "", cmap: str = "viridis",
             vmin: float | None = None, vmax: float | None = None) -> Axes:
    """A heatmap alone (flow magnitude, a localisation map, a GT map)."""
    ax.imshow(heatmap, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title)
    ax.axis("off")
    return ax


def grid(nrows: int, ncols: int, size: float = 2.0) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` square-ish panels; axes always 2-D."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * 0.75 * nrows + 0.3),
                             squeeze=False)
    return fig, axes


def metric_bars(ax: Axes, names: Sequence[str], values: Sequence[float],
                lo: Sequence[float] | None = None, hi: Sequence[float] | None = None,
                paper: Sequence[float | None] | None = None, label: str = "",
                paper_label: str = "paper") -> Axes:
    """Horizontal bars of one metric per method with CI whiskers and the paper's value as a tick.

    When at least one paper value is drawn, a legend names the bars (ours, with 95% CIs when
    ``lo`` and ``hi`` are given) and the black ticks (``paper_label``).
    """
    y = np.arange(len(names))[::-1]
    v = np.asarray(values, dtype=float)
    err = None
    if lo is not None and hi is not None:
        err = np.vstack([v - np.asarray(lo, dtype=float), np.asarray(hi, dtype=float) - v])
    ax.barh(y, v, xerr=err, color=[colour(i) for i in range(len(names))], capsize=2)
    drawn = False
    if paper is not None:
        for yi, p in zip(y, paper):
            if p is not None and np.isfinite(p):
                ax.plot([p, p], [yi - 0.4, yi + 0.4], color="black", lw=2)
                drawn = True
    ax.set_yticks(y, names)
    ax.set_xlabel(label)
    ax.set_xlim(0, 1)
    if drawn:
        ours = "ours (95% CI)" if err is not None else "ours"
        ax.legend(handles=[Patch(facecolor="#bbbbbb", label=ours),
                           Line2D([], [], color="black", lw=2, marker="|", ls="none", ms=10,
                                  label=paper_label)],
                  loc="lower right", frameon=False)
    return ax


def flag_columns(table: "pd.DataFrame", exclude: Sequence[str] = ()) -> list[str]:
    """Columns of ``table`` whose non-missing values are all booleans (e.g. Table 4's
    ``flow`` / ``pretrained vision`` / ``frozen vision`` switches)."""
    out = []
    for col in table.columns:
        if col in exclude:
            continue
        known = [v for v in table[col].tolist() if v is not None and not (isinstance(v, float) and np.isnan(v))]
        if known and all(isinstance(v, (bool, np.bool_)) for v in known):
            out.append(col)
    return out


def row_labels(table: "pd.DataFrame", label_column: str) -> list[str]:
    """One label per row: ``label_column``, followed by the names of the row's true
    :func:`flag_columns` (``"f: flow + pretrained vision + frozen vision"``; ``"a: none"`` when
    all are false; the label alone where the flags are missing, e.g. reference rows)."""
    flags = flag_columns(table, exclude=(label_column,))
    labels = []
    for _, row in table.iterrows():
        label = str(row[label_column])
        values = [row[c] for c in flags]
        if flags and all(isinstance(v, (bool, np.bool_)) for v in values):
            on = [c for c, v in zip(flags, values) if v]
            label = f"{label}: {' + '.join(on) if on else 'none'}"
        labels.append(label)
    return labels


#: Edge colours of the synthetic objects by state (GT boxes are drawn in green).
STATE_COLOURS = {"moving": "#00ff66", "idling": "#ffd000", "parked": "#ff3030",
                 "pedestrian": "#40c0ff", "tree": "#b070ff"}


def clip_overview(view, flow_vmax: float | None = None) -> plt.Figure:
    """Frames with boxes, flow magnitude under each, then the spectrogram and the event timeline.

    ``view`` is a :class:`vssl_core.viz.tour.ClipView`. Synthetic clips show every object coloured
    by state (:data:`STATE_COLOURS`, dashed when silent); real clips show the GT boxes.
    """
    n = len(view.times)
    fig = plt.figure(figsize=(2.4 * n, 5.4))
    gs = fig.add_gridspec(4, n, height_ratios=[1, 1, 0.9, 0.35], hspace=0.35, wspace=0.05)
    vmax = flow_vmax or max(float(np.percentile(f, 99.5)) for f in view.flows) or 1.0
    for i, t in enumerate(view.times):
        ax = fig.add_subplot(gs[0, i])
        show_image(ax, view.frames[i], title=f"t = {t:.1f} s")
        if view.objects is not None:
            for _, o in view.objects[i].iterrows():
                c = STATE_COLOURS.get(o["state"], "white")
                ax.add_patch(Rectangle((o["x1"], o["y1"]), o["x2"] - o["x1"], o["y2"] - o["y1"],
                                       fill=False, edgecolor=c, lw=1.0,
                                       ls="-" if o["sounding"] else "--"))
        else:
            draw_boxes(ax, view.gt_boxes[i])
        ax2 = fig.add_subplot(gs[1, i])
        show_map(ax2, view.flows[i], title="flow |v| (px/step)" if i == 0 else "", cmap="inferno",
                 vmin=0, vmax=vmax)
    axs = fig.add_subplot(gs[2, :])
    axs.imshow(view.spectrogram, origin="lower", aspect="auto", extent=view.spec_extent,
               cmap="magma", vmin=float(np.percentile(view.spectrogram, 5)))
    axs.set_ylabel("Hz")
    axs.set_title(f"{view.clip}: spectrogram (mono) and sound events")
    for t in view.times:
        axs.axvline(t, color="white", lw=0.8, ls=":")
    axe = fig.add_subplot(gs[3, :], sharex=axs)
    labels = sorted(view.events["label"].unique()) if len(view.events) else []
    for _, e in view.events.iterrows():
        y = labels.index(e["label"])
        axe.plot([e["start"], e["end"]], [y, y], lw=5, color=colour(y), solid_capstyle="butt")
    axe.set_yticks(range(len(labels)), labels)
    axe.set_ylim(-0.7, max(len(labels), 1) - 0.3)
    axe.set_xlabel("time (s)")
    axe.set_xlim(view.spec_extent[0], view.spec_extent[1])
    return fig


def dataset_bias_figure(stats: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> plt.Figure:
    """"How to Listen" Fig. 2 for several datasets.

    ``stats`` maps a dataset name to ``(areas_pct, centre_hist, boxes_per_frame)`` (see
    :func:`vssl_core.studies.how_to_listen.area_and_centres`). Top: box-area distributions; middle: the
    centre heatmap of each dataset; bottom: boxes per frame.
    """
    n = len(stats)
    fig = plt.figure(figsize=(max(2.3 * n, 6.0), 7.0))
    gs = fig.add_gridspec(3, n, height_ratios=[1, 1, 1], hspace=0.5)
    ax = fig.add_subplot(gs[0, :])
    box_area_histogram(ax, {k: v[0] for k, v in stats.items()})
    ax.set_title("box area")
    for i, (name, (_, hist, _)) in enumerate(stats.items()):
        centre_heatmap(fig.add_subplot(gs[1, i]), hist, title=name)
    ax = fig.add_subplot(gs[2, :])
    boxes_per_frame_bars(ax, {k: v[2] for k, v in stats.items()})
    return fig


def localisation_examples(images: np.ndarray, boxes: Sequence[np.ndarray], flow: np.ndarray,
                          maps: Mapping[str, np.ndarray], rows: Sequence[tuple[int, str]],
                          cious: Mapping[str, np.ndarray] | None = None,
                          annotation_frame: tuple[int, int] = (1280, 720)) -> plt.Figure:
    """FlowGrad Fig. 2: one row per example, columns image+GT, flow, then each method's map.

    Parameters
    ----------
    images : uint8 (N, S, S, 3)
        Model inputs (square, aspect not kept).
    boxes : N arrays (n_i, 4)
        GT boxes ``[x, y, w, h]`` in ``annotation_frame`` units.
    flow : float (N, 224, 224)
        Flow magnitude, px per step.
    maps : name -> float (N, 224, 224)
        Each method's map in the metric's space (shown min-max scaled per map).
    rows : (index, caption) pairs
    cious : name -> (N,) per-sample cIoU, printed in each panel's title.
    """
    names = list(maps)
    fig, axes = grid(len(rows), 2 + len(names), size=1.7)
    for r, (i, why) in enumerate(rows):
        img = images[i]
        s_y, s_x = img.shape[0] / annotation_frame[1], img.shape[1] / annotation_frame[0]
        b = np.asarray(boxes[i], dtype=float).reshape(-1, 4)
        xyxy = np.column_stack([b[:, 0] * s_x, b[:, 1] * s_y, (b[:, 0] + b[:, 2]) * s_x,
                                (b[:, 1] + b[:, 3]) * s_y])
        show_image(axes[r, 0], img, title=why if r == 0 else why, boxes_xyxy=xyxy)
        axes[r, 0].set_title(why, fontsize=7)
        show_map(axes[r, 1], flow[i], title="flow" if r == 0 else "", cmap="inferno")
        for c, name in enumerate(names):
            m = maps[name][i]
            span = float(m.max() - m.min())
            shown = (m - m.min()) / span if span > 0 else m
            title = name if r == 0 else ""
            if cious is not None:
                v = cious[name][i]
                title = f"{title}\ncIoU {v:.2f}" if title else f"cIoU {v:.2f}"
            show_image(axes[r, 2 + c], img, heatmap=shown, alpha=0.55, vmin=0, vmax=1,
                       boxes_xyxy=xyxy)
            axes[r, 2 + c].set_title(title, fontsize=7)
    return fig


def results_bars(table: "pd.DataFrame", metric: str, paper_column: str | None = None,
                 ax: Axes | None = None, label_column: str = "method",
                 paper_label: str = "paper") -> Axes:
    """Bars of ``metric`` per row with 95% CIs and the paper's value as a black tick.

    Rows are named by ``label_column`` and, where the table has boolean switch columns (Table 4's
    ablation rows), by the switches that are on (:func:`row_labels`); a legend names the paper's
    ticks when ``paper_column`` holds values.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 0.35 * len(table) + 0.8))
    paper = table[paper_column].tolist() if paper_column else None
    metric_bars(ax, row_labels(table, label_column), table[metric].tolist(),
                table[f"{metric}_lo"].tolist(), table[f"{metric}_hi"].tolist(), paper=paper,
                label=metric, paper_label=paper_label)
    return ax


def sweep_lines(table: "pd.DataFrame", x: str, y: str, hue: str, ax: Axes | None = None,
                style: str | None = None, logx: bool = False) -> Axes:
    """One line per value of ``hue`` (and of ``style``, dashed for its second value) of ``y``
    against ``x``, with the 95% band from the ``{y}_lo`` / ``{y}_hi`` columns when present."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.0))
    styles = list(dict.fromkeys(table[style])) if style else [None]
    for i, name in enumerate(dict.fromkeys(table[hue])):
        for j, st in enumerate(styles):
            part = table[(table[hue] == name) & ((table[style] == st) if style else True)].sort_values(x)
            if part.empty:
                continue
            label = f"{name}" if style is None else f"{name} ({style}={st})"
            ax.plot(part[x], part[y], marker="o", ms=3, color=colour(i), ls="-" if j == 0 else "--",
                    label=label)
            if f"{y}_lo" in part and f"{y}_hi" in part:
                ax.fill_between(part[x], part[f"{y}_lo"], part[f"{y}_hi"], color=colour(i), alpha=0.15,
                                lw=0)
    if logx:
        log_ticks(ax, table[x])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=7)
    return ax


def sweep_grid(table: "pd.DataFrame", row: str, x: str, metrics: Sequence[str], hue: str,
               logx: bool = False, size: tuple[float, float] = (4.0, 3.0)) -> plt.Figure:
    """:func:`sweep_lines` of each metric (columns) for each value of ``row`` (rows), sharing x."""
    parts = list(table.groupby(row, sort=False))
    fig, axes = plt.subplots(len(parts), len(metrics), figsize=(size[0] * len(metrics), size[1] * len(parts)),
                             sharex=True, squeeze=False)
    for ax_row, (name, part) in zip(axes, parts):
        for ax, metric in zip(ax_row, metrics):
            sweep_lines(part, x, metric, hue, ax=ax, logx=logx)
            ax.set_title(f"{name}: {metric}", fontsize=9)
    return fig


def log_ticks(ax: Axes, values: Sequence[float]) -> Axes:
    """A log-scale x axis labelled only at ``values`` (``0.125, 0.5, 1, 2, 5``), no minor labels.

    Matplotlib's default log labels (``2 x 10^-1``, ...) overlap when the data span one decade.
    """
    ticks = sorted({float(v) for v in values})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    return ax
