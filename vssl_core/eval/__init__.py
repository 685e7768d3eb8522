"""Evaluation: metrics, bootstrap intervals, scoring of maps, claims, sample types, box statistics."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
