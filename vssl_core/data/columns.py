"""Memory-mapped numpy copies of a saved dataset's fixed-shape columns.

Stacking an Arrow tensor column into one numpy array copies it into anonymous memory, which
the operating system cannot give back under pressure: the 224 x 224 float32 flow of 3,000
training windows alone is 600 MiB. :func:`mapped_column` instead writes each fixed-shape
column once, next to the dataset's Arrow files, as a ``.npy`` file (in slices of
``rows_per_write`` rows, so writing never holds the whole column), and returns it memory-mapped
copy-on-write (``mmap_mode="c"``): reading pages it in from the file (clean pages the kernel may
drop and re-read at will, which is what keeps a 2 GB Binder session alive), writing to it
changes only this process's copy, never the file.

The file is ``<arrow folder>/columns-npy/<column>-<dtype>-<source>.npy`` where ``<source>`` is a
hash of the Arrow files' names, sizes and modification times, so a rebuilt dataset never reads
a stale copy. It is written to a temporary file and renamed (atomic): a reader sees no file or a
complete one. Beside it, ``<file>.npy.sha256`` records its size and SHA-256; a copy is used only
when both match (hashed once per process and file version, :func:`vssl_core.repro.cache.verified_sha256`),
so a truncated or corrupted copy, even one of the right size, is rewritten from the Arrow files
instead of being read (one line on stderr says so). torch-free.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np

from vssl_core.repro.atomic import apply_umask, write_text
from vssl_core.repro.cache import verified_sha256
from vssl_core.repro.memory import release_unused

__all__ = ["mappable", "mapped_column"]

ROWS_PER_WRITE = 64


def mappable(ds: datasets.Dataset, column: str) -> bool:
    """True when ``column`` of ``ds`` can be memory-mapped: a fixed-shape array feature of a
    dataset read from Arrow files, with no row selection (``select``/``filter``/``shuffle``)."""
    feature = ds.features.get(column)
    return (isinstance(feature, (datasets.Array2D, datasets.Array3D, datasets.Array4D,
                                 datasets.Array5D))
            and bool(ds.cache_files) and ds._indices is None)


def _source_tag(ds: datasets.Dataset) -> str:
    h = hashlib.sha256()
    for f in ds.cache_files:
        st = os.stat(f["filename"])
        h.update(f"{Path(f['filename']).name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def column_path(ds: datasets.Dataset, column: str, dtype: np.dtype) -> Path:
    """Where :func:`mapped_column` keeps ``column`` of ``ds`` as ``dtype``."""
    folder = Path(ds.cache_files[0]["filename"]).parent / "columns-npy"
    return folder / f"{column}-{np.dtype(dtype).name}-{_source_tag(ds)}.npy"


def _write(ds: datasets.Dataset, column: str, dtype: np.dtype, path: Path,
           rows_per_write: int) -> None:
    feature = ds.features[column]
    shape = (ds.num_rows, *feature.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        arrow = ds.with_format("arrow", columns=[column])[:].column(column)
        row = 0
        for chunk in arrow.chunks:
            for start in range(0, len(chunk), rows_per_write):
                part = chunk.slice(start, rows_per_write).to_numpy(zero_copy_only=False)
                out[row:row + len(part)] = part     # (rows, *shape), cast to ``dtype``
                row += len(part)
        if row != shape[0]:
            raise RuntimeError(f"{column}: wrote {row} rows, expected {shape[0]}")
        out.flush()
        del out
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    record = {"size": path.stat().st_size, "sha256": verified_sha256(path)}
    write_text(_sidecar(path), json.dumps(record, sort_keys=True) + "\n")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _intact_problem(path: Path, dtype: np.dtype, shape: tuple) -> str | None:
    """Why the copy at ``path`` cannot be used (None: it matches its record, shape and dtype)."""
    try:
        record = json.loads(_sidecar(path).read_text())
        if path.stat().st_size != record["size"] or verified_sha256(path) != record["sha256"]:
            return "its size or SHA-256 differs from the record written with it"
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"it cannot be checked or read ({exc.__class__.__name__}: {exc})"
    if arr.shape != shape or arr.dtype != dtype:
        return f"it holds {arr.dtype} {arr.shape}, expected {dtype} {shape}"
    return None


def mapped_column(ds: datasets.Dataset, column: str, dtype: np.dtype | str | None = None,
                  rows_per_write: int = ROWS_PER_WRITE) -> np.ndarray:
    """``column`` of ``ds`` as a copy-on-write memory-mapped array ``(N, *shape)``.

    Parameters
    ----------
    ds : datasets.Dataset
        Read from Arrow files, no row selection (:func:`mappable`).
    column : str
        A fixed-shape array column (``Array2D`` .. ``Array5D``).
    dtype : numpy dtype, optional
        Stored dtype by default; another one casts once, when the file is written.
    rows_per_write : int
        Rows converted at a time while writing (bounds the memory the first call needs).

    Returns
    -------
    numpy.memmap
        Writable; writes stay in this process.

    Raises
    ------
    ValueError
        If the column cannot be mapped (see :func:`mappable`).
    """
    if not mappable(ds, column):
        raise ValueError(f"column {column!r} cannot be memory-mapped: it needs a fixed-shape array "
                         "feature of a dataset read from disk without select/filter/shuffle; "
                         "use vssl_core.data.evalset.as_numpy(..., mmap=False)")
    feature = ds.features[column]
    dtype = np.dtype(dtype if dtype is not None else feature.dtype)
    path = column_path(ds, column, dtype)
    expected = (ds.num_rows, *feature.shape)
    if ds.num_rows == 0:
        return np.zeros(expected, dtype)
    if path.exists():
        problem = _intact_problem(path, dtype, expected)
        if problem is None:
            return np.load(path, mmap_mode="c")
        print(f"column copy {path}: {problem}; rewriting it from the Arrow files", file=sys.stderr)
    try:
        _write(ds, column, dtype, path, rows_per_write)
    finally:
        release_unused()                          # the Arrow slices read while writing
    return np.load(path, mmap_mode="c")
