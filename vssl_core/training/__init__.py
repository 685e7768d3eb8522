"""Training loops and objectives, checkpoints, the cached trained models."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
