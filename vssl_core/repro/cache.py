"""Content-keyed cache folders: ``<cache_dir>/<name>-<fingerprint>/``.

A cache entry is a folder built once by a user function, atomically (a reader sees no folder or
the complete one, never half of one), and reused whenever the same key is asked for again. The
key is plain data (dicts, lists, numbers, strings, dataclasses, paths, numpy scalars/arrays);
its fingerprint is the first 16 hex digits of the SHA-256 of its canonical JSON (sorted keys,
no whitespace). Each folder holds ``meta.json`` with the key, so a cache can be inspected by hand.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vssl_core.repro.atomic import atomic_dir, write_text
from vssl_core.repro.memory import release_unused
from vssl_core.repro.paths import cache_dir

META = "meta.json"
FINGERPRINT_LEN = 16


def to_plain(obj: Any) -> Any:
    """Convert ``obj`` to JSON-able plain data, deterministically.

    Dataclasses via their fields (with the class name under ``"__class__"``), paths as strings,
    numpy scalars as Python numbers, numpy arrays as ``{"dtype", "shape", "sha256"}``, tuples and
    sets as lists (sets sorted), enums by value; floats that are not finite as strings.

    Raises
    ------
    TypeError
        For objects with no canonical plain form (functions, open files, ...).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        d = {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        d["__class__"] = type(obj).__name__
        return d
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return {"dtype": str(a.dtype), "shape": list(a.shape),
                "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    if isinstance(obj, np.generic):
        return to_plain(obj.item())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_plain(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    raise TypeError(f"cannot fingerprint an object of type {type(obj).__name__}: pass plain data")


def canonical_json(obj: Any) -> str:
    """Canonical JSON of ``to_plain(obj)``: sorted keys, compact separators, ASCII."""
    return json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint(obj: Any) -> str:
    """Short (16 hex digits) SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()[:FINGERPRINT_LEN]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_path(name: str, key: Any, root: str | Path | None = None) -> Path:
    """The folder :func:`cached` uses for ``(name, key)`` (it may not exist)."""
    base = Path(root) if root is not None else cache_dir()
    return base / f"{name}-{fingerprint(key)}"


def cached(name: str, key: Any, build: Callable[[Path], None],
           root: str | Path | None = None) -> Path:
    """Return the cache folder of ``(name, key)``, building it with ``build(folder)`` if missing.

    Parameters
    ----------
    name : str
        A readable prefix (``"eval-urbansas"``).
    key : plain data
        Everything the content depends on (see :func:`to_plain`).
    build : callable(Path) -> None
        Writes the content into the (temporary) folder it is given. If it raises, no cache folder
        is left behind and the exception propagates.
    root : path, optional
        The cache root (default :func:`vssl_core.repro.paths.cache_dir`, i.e. ``data/cache``).

    Returns
    -------
    Path
        ``<root>/<name>-<fingerprint(key)>``, containing ``meta.json`` (name, fingerprint, key).
    """
    if not name or "/" in name:
        raise ValueError(f"cache name must be a non-empty folder name, got {name!r}")
    path = cache_path(name, key, root)
    if (path / META).is_file():
        return path
    meta = {"name": name, "fingerprint": fingerprint(key), "key": to_plain(key)}
    try:
        with atomic_dir(path) as tmp:
            build(tmp)
            write_text(tmp / META, json.dumps(meta, sort_keys=True, indent=1) + "\n")
    finally:
        release_unused()  # the build's temporaries (frames, flow, Arrow buffers) back to the OS
    return path
