"""Cross-modal retrieval of paired embeddings: does each sample's embedding pick its own partner?

A contrastive model (RCGrad, FlowGrad-IC/-EN) is trained to make the embeddings of one sample's
image, sound (and, for FlowGrad-EN, flow) closer to each other than to those of the other samples
of its batch. These functions measure that on held-out pairs, the way a training batch sees it.

Conventions
-----------
- Row ``i`` of ``a`` and row ``i`` of ``b`` are a positive pair; every other row of the same batch
  is a negative.
- The ``N`` samples are shuffled by a permutation seeded with ``seed`` and cut into consecutive
  batches of ``batch_size``; the last ``N mod batch_size`` samples are left out, so every batch has
  the same chance rate. Shuffling keeps frames of one clip (near duplicates) from filling a batch.
- Similarity is the cosine of the raw embeddings (both L2-normalised here), as in the loss.
- **Top-1** (a share in [0, 1]): within its batch, each query ranks the ``batch_size`` candidates
  of the other modality; a hit is its own partner ranked first (ties go to the lower index).
  Chance is ``1 / batch_size``. A top-1 above :func:`chance_upper` (the 97.5% quantile of the
  number of hits that ranking at random gives, ``Binomial(n_ranked, 1 / batch_size)``, as a
  share) is beyond chance; below it, the model does not pick its partner out.
- **InfoNCE** (natural log units): the symmetric loss of the training,
  ``(CE(s * cos, diag) + CE(s * cos^T, diag)) / 2`` averaged over the batches, with ``s`` the
  model's logit scale (``exp(logit_scale)``). Scores that rank every pair alike give
  ``ln(batch_size)``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["validate", "batches", "top1", "chance_upper", "infonce"]


def validate(a: np.ndarray, b: np.ndarray, batch_size: int) -> None:
    """Raise ValueError unless ``a`` and ``b`` are finite ``(N, D_a)``, ``(N, D_b)`` arrays with
    ``N >= batch_size >= 2``."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (one positive, one negative), got {batch_size}")
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array of embeddings (N, D), got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} holds non-finite values")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must hold the same samples (row i of each is a pair), got {a.shape[0]} "
                         f"and {b.shape[0]} rows")
    if a.shape[0] < batch_size:
        raise ValueError(f"{a.shape[0]} samples cannot fill one batch of {batch_size}; use a smaller batch_size")


def batches(n: int, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of the ``n // batch_size`` shuffled batches (see the module conventions)."""
    order = np.random.default_rng(seed).permutation(n)
    return [order[s:s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def top1(a: np.ndarray, b: np.ndarray, batch_size: int = 64, seed: int = 0) -> tuple[float, float]:
    """Top-1 retrieval within shuffled batches, both ways.

    Parameters
    ----------
    a, b : ndarray, shape (N, D_a), (N, D_b) with D_a == D_b
        Paired embeddings (row ``i`` of each is one sample).
    batch_size : int
        Candidates per query (chance is ``1 / batch_size``).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    (float, float)
        Share of ``a`` rows whose partner in ``b`` ranks first, and the same for ``b`` rows.
    """
    validate(a, b, batch_size)
    ua, ub = _unit(a), _unit(b)
    hits_ab = hits_ba = ranked = 0
    for idx in batches(len(a), batch_size, seed):
        sim = ua[idx] @ ub[idx].T  # (B, B): row = a query, column = b candidate
        target = np.arange(len(idx))
        hits_ab += int((sim.argmax(axis=1) == target).sum())
        hits_ba += int((sim.argmax(axis=0) == target).sum())
        ranked += len(idx)
    return hits_ab / ranked, hits_ba / ranked


def chance_upper(n_ranked: int, batch_size: int, level: float = 0.95) -> float:
    """The top-1 share that random ranking stays at or below with probability ``1 - (1 - level) / 2``.

    ``n_ranked`` queries each hit their partner with probability ``1 / batch_size``; the result
    is the ``(1 + level) / 2`` quantile of that binomial count, divided by ``n_ranked``.
    """
    from scipy.stats import binom

    if n_ranked < 1 or batch_size < 2 or not 0 < level < 1:
        raise ValueError(f"need n_ranked >= 1, batch_size >= 2 and 0 < level < 1; got {n_ranked}, "
                         f"{batch_size}, {level}")
    return float(binom.ppf((1 + level) / 2, n_ranked, 1.0 / batch_size)) / n_ranked


def _cross_entropy_diag(logits: np.ndarray) -> float:
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return float(np.mean(lse - np.diag(logits)))


def infonce(a: np.ndarray, b: np.ndarray, scale: float, batch_size: int = 64, seed: int = 0) -> float:
    """Mean symmetric InfoNCE of the shuffled batches (natural log; ``ln(batch_size)`` at chance).

    ``scale`` is the multiplier of the cosines (``exp(logit_scale)`` of the model, > 0).
    """
    validate(a, b, batch_size)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number (exp of the logit scale), got {scale}")
    ua, ub = _unit(a), _unit(b)
    losses = []
    for idx in batches(len(a), batch_size, seed):
        logits = scale * (ua[idx] @ ub[idx].T)
        losses.append(0.5 * (_cross_entropy_diag(logits) + _cross_entropy_diag(logits.T)))
    return float(np.mean(losses))
