"""Evaluation: metrics, bootstrap intervals, scoring of maps, listening checks and their reference table, retrieval of held-out pairs, concat side accuracy, claims, sample types, box statistics."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
