"""Did a model learn? Learning curves and "does the map change with the sound?" figures.

Plotting only (matplotlib, never saves): the notebooks pass the histories that training
stored with each model (:mod:`vssl_core.training.loop`) and maps made by the models' map
functions.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["learning_curves", "history_table", "swapped_audio_figure"]

#: Panels of :func:`learning_curves`: (title, [(history key, label, style)]).
_PANELS = (
    ("loss (nats)", (("train_loss", "train", "-"), ("val_loss", "validation", "--"))),
    ("audio-to-image retrieval", (("val_retrieval", "validation top-1", "-"), ("retrieval_chance", "chance", ":"))),
    ("held-out localisation", (("val_ciou@0.3", "cIoU@0.3", "-"), ("val_loc_ciou@0.3", "localisation cIoU@0.3", "-"),
                               ("val_pot_ciou@0.3", "potential cIoU@0.3", "--"),
                               ("val_flowgrad_h_ciou@0.3", "FlowGrad-H cIoU@0.3", "--"),
                               ("val_audio_sensitivity", "audio sensitivity", ":"))),
)


def history_table(histories: Mapping[str, Sequence[Mapping]]):
    """One row per (model, epoch) with every recorded value, and the best epoch marked."""
    import pandas as pd

    rows = []
    for name, history in histories.items():
        for h in history:
            rows.append({"model": name, **{k: v for k, v in h.items() if k != "seconds"}})
    return pd.DataFrame(rows)


def learning_curves(histories: Mapping[str, Sequence[Mapping]], title: str = "") -> plt.Figure:
    """One row of three panels per model: training and validation loss; validation retrieval
    against chance; the held-out localisation score (and audio sensitivity) on validation pairs.
    A dot marks the epoch that was kept (lowest validation loss)."""
    names = [n for n, h in histories.items() if h]
    fig, axes = plt.subplots(len(names), 3, figsize=(11, 2.3 * max(len(names), 1)), squeeze=False)
    for r, name in enumerate(names):
        history = histories[name]
        epochs = [h["epoch"] for h in history]
        best = [h["epoch"] for h in history if h.get("best")]
        kept = min(history, key=lambda h: h.get("monitored", np.inf))["epoch"] if best else None
        for c, (panel, series) in enumerate(_PANELS):
            ax = axes[r, c]
            drawn = False
            for key, label, style in series:
                values = [h.get(key) for h in history]
                if all(v is None for v in values):
                    continue
                y = np.array([np.nan if v is None else float(v) for v in values])
                ax.plot(epochs, y, style, marker="o" if style == "-" else None, ms=3, label=label)
                if kept is not None and key in ("val_loss", "val_retrieval", "val_ciou@0.3", "val_loc_ciou@0.3"):
                    ax.plot([kept], [y[epochs.index(kept)]], "o", color="k", ms=5, zorder=5)
                drawn = True
            if not drawn:
                ax.set_axis_off()
                continue
            ax.set_title(f"{name}: {panel}" if c == 0 else panel, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def swapped_audio_figure(images: np.ndarray, own: Mapping[str, np.ndarray], swapped: Mapping[str, np.ndarray],
                         captions: Sequence[str] = ()) -> plt.Figure:
    """Rows: samples. Columns: the frame, then per model its map with the frame's own sound and
    with another clip's sound (maps ``(N, 224, 224)`` on the metric grid, shown over the frame)."""
    n, models = len(images), list(own)
    fig, axes = plt.subplots(n, 1 + 2 * len(models), figsize=(1.9 * (1 + 2 * len(models)), 1.6 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        axes[i, 0].set_title(captions[i] if i < len(captions) else "frame", fontsize=7)
        for k, name in enumerate(models):
            for j, (maps, tag) in enumerate(((own[name], "own sound"), (swapped[name], "swapped sound"))):
                ax = axes[i, 1 + 2 * k + j]
                ax.imshow(images[i], extent=(0, 224, 224, 0))
                ax.imshow(maps[i], cmap="inferno", alpha=0.6, extent=(0, 224, 224, 0))
                if i == 0:
                    ax.set_title(f"{name}\n{tag}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
