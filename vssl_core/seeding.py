"""One place that seeds every random generator the project uses."""
from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and (if imported) torch; return a fresh NumPy Generator."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # torch is optional for the data-only parts
        pass
    else:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)
