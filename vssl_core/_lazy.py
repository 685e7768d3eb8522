"""Lazy sub-module attributes for the package's ``__init__`` files (``import vssl_core`` stays light)."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Any


def lazy_modules(package: str, path: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` (its ``__path__``) that import
    ``package.<name>`` on first access, for every module or sub-package found there."""
    names = frozenset(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))

    def __getattr__(name: str) -> Any:
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
