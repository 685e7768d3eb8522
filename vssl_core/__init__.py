"""vssl_core: the package behind the vssl-companion notebooks.

One import line serves every notebook::

    import vssl_core as vc

Sub-modules hold one concept each: ``metrics`` (cIoU, AUC, bootstrap), ``flow`` (optical
flow), ``data`` (Urbansas, VGG-SS, Flickr-SoundNet, synthetic scenes), ``models``,
``plotting`` and ``outputs`` (deterministic figure and table files). They are imported
lazily so that ``import vssl_core`` stays fast and light (no torch until a model is used).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "atomic", "audio", "bias", "cache", "data", "errors", "flow", "localize", "metrics",
    "models", "outputs", "paths", "plotting", "profiles", "train", "baselines", "checkpoints",
    "evaluation", "regenerate", "seeding", "bootstrap", "tour", "dataset_bias", "paper_numbers",
    "concat", "sample_types", "flowgrad_study", "train_localizer", "htf_study", "motion_sweeps",
    "claims", "memory", "oya_study", "plotting_oya", "explorer", "explorer_methods", "explorer_view",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'vssl_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
