"""Content-keyed cache folders: ``<cache_dir>/<name>-<fingerprint>/``.

A cache entry is a folder built once by a user function, atomically (a reader sees no folder or
the complete one, never half of one), and reused whenever the same key is asked for again. The
key is plain data (dicts, lists, numbers, strings, dataclasses, paths, numpy scalars/arrays);
its fingerprint is the first 16 hex digits of the SHA-256 of its canonical JSON (sorted keys,
no whitespace). Each folder holds ``meta.json`` with the key, so a cache can be inspected by hand.

Entries are verified, not trusted: ``meta.json`` also records the size and SHA-256 of every file
the build wrote (``files``). Before an entry is reused, every recorded file must still be there
with that size and hash (hashed once per process and file version); an entry that fails (a
truncated or corrupted file, a file removed, a ``meta.json`` that does not parse, an entry written
before hashes were recorded) is rebuilt, with one line on stderr naming the file. Files added to
an entry later (e.g. the memory-mapped column copies of :mod:`vssl_core.data.columns`, which
verify themselves) are not part of the record.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import sys
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


#: SHA-256 of files already hashed in this process, by (path, device, inode, size, mtime, ctime):
#: a file that is rewritten or touched (``ctime`` changes even when ``mtime`` is reset) is
#: hashed again.
_HASHED: dict[tuple, str] = {}


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def verified_sha256(path: str | Path) -> str:
    """:func:`file_sha256`, remembered for this process while the file's stat is unchanged."""
    path = Path(path)
    key = _stat_key(path)
    if key not in _HASHED:
        _HASHED[key] = file_sha256(path)
    return _HASHED[key]


def record_files(folder: str | Path, exclude: tuple[str, ...] = (META,)) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size": bytes, "sha256": hex}}`` of every file under ``folder``
    (sorted; ``exclude`` names top-level files left out)."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not p.is_symlink() and rel not in exclude:
            out[rel] = {"size": p.stat().st_size, "sha256": verified_sha256(p)}
    return out


def changed_files(folder: str | Path, record: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Recorded files (:func:`record_files`) that are missing or differ in size or SHA-256."""
    folder = Path(folder)
    bad = []
    for rel, want in sorted(record.items()):
        p = folder / rel
        try:
            if not p.is_file() or p.stat().st_size != want.get("size") \
                    or verified_sha256(p) != want.get("sha256"):
                bad.append(rel)
        except OSError:
            bad.append(rel)
    return bad


def _reuse_problem(path: Path) -> str | None:
    """Why the entry at ``path`` cannot be reused (None: every recorded file is intact)."""
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{META} is unreadable ({exc.__class__.__name__})"
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict):
        return f"{META} records no file hashes (written by an older version)"
    changed = changed_files(path, files)
    if changed:
        return f"{changed[0]} differs from what was written ({len(changed)} file(s) changed)"
    return None


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
        ``<root>/<name>-<fingerprint(key)>``, containing ``meta.json`` (name, fingerprint, key,
        and the size and SHA-256 of every file the build wrote). An existing entry is reused only
        when those files are intact; otherwise it is rebuilt (module docstring).
    """
    if not name or "/" in name:
        raise ValueError(f"cache name must be a non-empty folder name, got {name!r}")
    path = cache_path(name, key, root)
    if path.exists():
        problem = _reuse_problem(path)
        if problem is None:
            return path
        print(f"cache {path}: {problem}; rebuilding it", file=sys.stderr)
    meta = {"name": name, "fingerprint": fingerprint(key), "key": to_plain(key)}
    try:
        with atomic_dir(path) as tmp:
            build(tmp)
            meta["files"] = record_files(tmp)
            write_text(tmp / META, json.dumps(meta, sort_keys=True, indent=1) + "\n")
    finally:
        release_unused()  # the build's temporaries (frames, flow, Arrow buffers) back to the OS
    return path
