"""Drawing of one explorer :class:`~vssl_core.viz.explorer.View` (matplotlib only, never saves).

Layout: top row, the frame with its GT boxes (green), the post-processed map over the frame
(colour scale 0 to twice the threshold, so the threshold is the middle colour), the binary mask
scored against the GT (true positives green, false positives red, missed GT blue) and the flow
magnitude; bottom row, the spectrogram of the sound used (1 s around ``t``). Every 224x224 map is
stretched over the frame (the metric grid covers the whole frame, aspect ratio not kept).
Saving goes through :func:`vssl_core.repro.outputs.save_figure`.
"""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np

from vssl_core.viz.explorer import Sample, View, compute_view, score_text
from vssl_core.viz.plotting import draw_boxes, show_image

__all__ = ["MASK_COLOURS", "mask_rgb", "draw", "render", "png_bytes"]

#: RGB colours of the mask panel.
MASK_COLOURS = {"tp": (0.10, 0.85, 0.25), "fp": (0.95, 0.15, 0.15), "fn": (0.20, 0.45, 1.00)}


def mask_rgb(mask: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(224, 224, 4)`` RGBA float image of a mask against the GT.

    True positives (mask and ``gt > 0``) in green, false positives (mask where ``gt == 0``) in
    red, missed GT (``gt > 0`` outside the mask) in blue, the rest transparent.
    """
    m, g = np.asarray(mask, dtype=bool), np.asarray(gt) > 0
    out = np.zeros(m.shape + (4,), dtype=np.float32)
    for key, sel in (("tp", m & g), ("fp", m & ~g), ("fn", ~m & g)):
        out[sel, :3] = MASK_COLOURS[key]
        out[sel, 3] = 0.75
    return out


def draw(view: View, figsize: tuple[float, float] = (11.0, 3.9)) -> plt.Figure:
    """The explorer figure of ``view`` (see the module docstring)."""
    s = view.sample
    fig = plt.figure(figsize=figsize)
    gs = fig.add_gridspec(2, 4, height_ratios=[1.0, 0.55], hspace=0.35, wspace=0.05)
    boxes = s.boxes_xyxy()
    h, w = s.frame.shape[:2]

    show_image(fig.add_subplot(gs[0, 0]), s.frame, title="frame, GT boxes", boxes_xyxy=boxes)
    shown = view.processed
    vmax = 2 * view.threshold if view.threshold > 0 else max(float(shown.max()), 1e-6)
    ax = show_image(fig.add_subplot(gs[0, 1]), s.frame, heatmap=shown, alpha=0.55, vmin=0.0,
                    vmax=vmax, boxes_xyxy=boxes)
    ax.set_title(f"map after '{view.postprocess}'\nmid-colour = threshold", fontsize=8)
    ax = fig.add_subplot(gs[0, 2])
    ax.imshow(s.frame, extent=(0, w, h, 0), alpha=0.45)
    ax.imshow(mask_rgb(view.mask, s.gt), extent=(0, w, h, 0))
    draw_boxes(ax, boxes)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    ax.set_title(f"mask = map >= {view.threshold:.2f}\nTP green, FP red, missed GT blue", fontsize=8)
    ax = fig.add_subplot(gs[0, 3])
    ax.imshow(s.flow, extent=(0, w, h, 0), cmap="inferno", vmin=0.0,
              vmax=max(float(np.percentile(s.flow, 99.5)), 1e-6))
    ax.set_title("flow |v| (px/step)")
    ax.axis("off")

    axs = fig.add_subplot(gs[1, :])
    spec = view.spectrogram
    axs.imshow(spec, origin="lower", aspect="auto", extent=view.spec_extent, cmap="magma",
               vmin=float(np.percentile(spec, 5)), interpolation="nearest")
    axs.axvline(s.time, color="white", lw=0.8, ls=":")
    axs.set_ylabel("Hz")
    axs.set_xlabel("time (s) around the frame")
    axs.set_title("sound: " + ("the frame's own" if not s.swapped else
                               f"SWAPPED, the sound of sample {s.audio_index} ({s.audio_label})"))
    fig.suptitle(f"sample {s.index}: {s.clip} @ {s.time:.1f} s | {view.method}\n{score_text(view)}",
                 fontsize=9)
    return fig


def render(sample: Sample, heatmap: np.ndarray, postprocess: str, threshold: float = 0.5,
           method: str = "map") -> tuple[plt.Figure, float]:
    """Figure and cIoU of a ``(224, 224)`` ``heatmap`` on ``sample``.

    Parameters
    ----------
    sample : Sample
    heatmap : ndarray, shape (224, 224)
        A method's map in the metric's space.
    postprocess : {"clean", "median", "none"}
    threshold : float
    method : str
        Name in the titles.

    Returns
    -------
    (Figure, float)
        The figure of :func:`draw` and the sample's cIoU (:func:`vssl_core.eval.metrics.ciou`).
    """
    view = compute_view(sample, heatmap, method, postprocess, threshold)
    return draw(view), view.ciou


def png_bytes(fig: plt.Figure, dpi: int = 100, close: bool = True) -> bytes:
    """PNG bytes of ``fig`` without volatile metadata (for an ``ipywidgets.Image``).

    ``close`` closes the figure afterwards (a widget callback draws many figures).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight",
                pad_inches=0.05)
    if close:
        plt.close(fig)
    return buf.getvalue()
