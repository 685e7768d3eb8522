"""Reproducibility machinery: paths, caches, atomic writes, memory, profiles, output files, regeneration."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
