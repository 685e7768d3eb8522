"""BatchNorm recalibration: running statistics re-estimated on training batches after an epoch.

During training each BatchNorm keeps an exponential moving average (momentum 0.1) of the batch
statistics it saw; the last steps dominate it and the weights kept moving while it was gathered,
so in eval mode a freshly trained model normalises with statistics that no longer fit its own
features. :func:`recalibrate` resets them and re-estimates a plain average over a fixed set of
training batches with the final weights (``momentum=None`` averages cumulatively), which is what
evaluation then uses. Only BatchNorms in training mode after ``model.train()`` are touched: a
frozen encoder that its model keeps in eval mode (Hear The Flow's frozen vision) keeps its
statistics.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["batchnorms", "recalibrate"]


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate(model: nn.Module, batches: Iterable, forward: Callable[[nn.Module, object], object]) -> int:
    """Re-estimate the running statistics of ``model``'s trainable BatchNorms on ``batches``.

    Parameters
    ----------
    model : nn.Module
        Left in eval mode on return.
    batches : iterable
        Training batches, in the form ``forward`` takes.
    forward : callable (model, batch) -> anything
        One forward pass of a batch (its output is ignored).

    Returns
    -------
    int
        The number of BatchNorm layers recalibrated (0: nothing to do, nothing run).
    """
    model.train()
    layers = [m for m in batchnorms(model) if m.training]
    if not layers:
        return model.eval() and 0
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    try:
        for batch in batches:
            forward(model, batch)
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
        model.eval()
    return len(layers)
