"""Plotting, the data tour and the interactive explorer (matplotlib and widgets live here only)."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
