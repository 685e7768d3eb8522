"""Configuration dataclasses that travel as plain dicts (checkpoints, recipes, fingerprints).

A frozen dataclass that also derives from :class:`PlainConfig` gets ``to_dict()`` (its fields,
recursively plain) and ``from_dict()`` (the inverse, which names unknown fields instead of
ignoring them, so a checkpoint from another version fails loudly).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["PlainConfig"]


class PlainConfig:
    """Mixin for frozen config dataclasses: ``to_dict`` / ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict of the fields (for checkpoints and fingerprints)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; unknown keys are an error (``ValueError``)."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
        return cls(**dict(d))
