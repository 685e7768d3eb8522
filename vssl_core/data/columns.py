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
instead of being read (one line on stderr says so).

**Stored columns: one copy on disk.** A dataset can also be *built* with its fixed-shape columns
in ``.npy`` files only (:func:`adopt`; the cached sets of :mod:`vssl_core.data.evalset` are): its
Arrow table then holds null values for those columns (a few bytes per row) and
``columns-npy/stored.json`` lists them. :func:`mapped_column` and
:func:`vssl_core.data.evalset.as_numpy` read such a column from its ``.npy`` file, with the same
values, dtype and shape as a copy made from Arrow, so a cached set keeps its pixels, flow and
audio once instead of twice (Arrow plus a ``.npy`` copy). torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import datasets
import numpy as np

from vssl_core.errors import data_error
from vssl_core.repro.atomic import replacing, write_text
from vssl_core.repro.cache import verified_sha256
from vssl_core.repro.memory import release_unused

__all__ = ["mappable", "mapped_column", "column_path", "fixed_shape_columns", "stored_columns", "adopt",
           "stored_column"]

ROWS_PER_WRITE = 64
#: The file, beside the ``.npy`` files, that lists the columns kept only there (see the module docstring).
STORED = "stored.json"
_ARRAYS = (datasets.Array2D, datasets.Array3D, datasets.Array4D, datasets.Array5D)


def fixed_shape_columns(features: datasets.Features) -> list[str]:
    """The columns of ``features`` that are fixed-shape arrays (``Array2D`` .. ``Array5D``)."""
    return [c for c, f in features.items() if isinstance(f, _ARRAYS)]


def mappable(ds: datasets.Dataset, column: str) -> bool:
    """True when ``column`` of ``ds`` can be memory-mapped: a fixed-shape array feature of a
    dataset read from Arrow files, with no row selection (``select``/``filter``/``shuffle``,
    including a contiguous ``select`` that only slices the table)."""
    feature = ds.features.get(column)
    return (isinstance(feature, _ARRAYS) and bool(ds.cache_files) and ds._indices is None
            and ds.num_rows == _rows_on_disk(ds))


_ROWS: dict[tuple, int] = {}


def _rows_on_disk(ds: datasets.Dataset) -> int:
    """Rows of the Arrow files behind ``ds`` (more than ``ds.num_rows`` when ``ds`` is a slice)."""
    import pyarrow as pa

    total = 0
    for f in ds.cache_files:
        st = os.stat(f["filename"])
        key = (f["filename"], st.st_size, st.st_mtime_ns)
        if key not in _ROWS:
            with pa.memory_map(f["filename"]) as source:
                _ROWS[key] = sum(batch.num_rows for batch in pa.ipc.open_stream(source))
        total += _ROWS[key]
    return total


def _source_tag(ds: datasets.Dataset) -> str:
    h = hashlib.sha256()
    for f in ds.cache_files:
        st = os.stat(f["filename"])
        h.update(f"{Path(f['filename']).name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def _folder(ds: datasets.Dataset) -> Path:
    return Path(ds.cache_files[0]["filename"]).parent / "columns-npy"


def column_path(ds: datasets.Dataset, column: str, dtype: np.dtype) -> Path:
    """Where :func:`mapped_column` keeps ``column`` of ``ds`` as ``dtype``."""
    return _folder(ds) / f"{column}-{np.dtype(dtype).name}-{_source_tag(ds)}.npy"


def stored_columns(ds: datasets.Dataset) -> dict[str, np.dtype]:
    """``{column: dtype}`` of the columns of ``ds`` kept only in ``.npy`` files (:func:`adopt`);
    empty for a dataset whose Arrow table holds every value (in memory, or built by hand)."""
    if not ds.cache_files:
        return {}
    marker = _folder(ds) / STORED
    if not marker.is_file():
        return {}
    try:
        listed = json.loads(marker.read_text())["columns"]
        return {str(c): np.dtype(d) for c, d in listed.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise data_error(marker, "columns", f"is not a column list ({exc})",
                         f"delete {marker.parent.parent} (a cache folder) to rebuild it") from exc


def adopt(ds: datasets.Dataset, files: Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """Make ``.npy`` files the only copy of columns of ``ds`` (a dataset just saved to disk whose
    Arrow table holds nulls for them).

    Each file (``(ds.num_rows, *shape)`` of the feature's dtype, row ``i`` = row ``i`` of ``ds``)
    is moved to :func:`column_path` and the columns are listed in ``columns-npy/stored.json``.

    Returns
    -------
    dict
        ``{column: final path}``.

    Raises
    ------
    DataError
        A file whose shape or dtype does not match its feature.
    """
    moved: dict[str, Path] = {}
    listed: dict[str, str] = {}
    if not files:
        return moved
    for column, src in files.items():
        feature = ds.features[column]
        dtype = np.dtype(feature.dtype)
        arr = np.load(src, mmap_mode="r")
        expected = (ds.num_rows, *feature.shape)
        if arr.shape != expected or arr.dtype != dtype:
            raise data_error(src, column, f"holds {arr.shape} {arr.dtype}, the dataset needs {expected} {dtype}",
                             "rebuild the set")
        del arr
        path = column_path(ds, column, dtype)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, path)
        moved[column] = path
        listed[column] = dtype.name
    write_text(_folder(ds) / STORED, json.dumps({"columns": listed, "rows": ds.num_rows}, sort_keys=True) + "\n")
    return moved


def _write(ds: datasets.Dataset, column: str, dtype: np.dtype, path: Path,
           rows_per_write: int, source: np.ndarray | None = None) -> None:
    """Write ``column`` as ``dtype`` to ``path`` from the Arrow table, or from ``source`` (the
    column's stored ``.npy`` array) when given."""
    feature = ds.features[column]
    shape = (ds.num_rows, *feature.shape)
    with replacing(path) as tmp:  # a reader sees no file or a complete one
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        row = 0
        if source is not None:
            for start in range(0, shape[0], rows_per_write):
                part = source[start:start + rows_per_write]
                out[row:row + len(part)] = part     # cast to ``dtype``
                row += len(part)
        else:
            arrow = ds.with_format("arrow", columns=[column])[:].column(column)
            for chunk in arrow.chunks:
                for start in range(0, len(chunk), rows_per_write):
                    part = chunk.slice(start, rows_per_write).to_numpy(zero_copy_only=False)
                    out[row:row + len(part)] = part     # (rows, *shape), cast to ``dtype``
                    row += len(part)
        if row != shape[0]:
            raise RuntimeError(f"{column}: wrote {row} rows, expected {shape[0]}")
        out.flush()
        del out
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


def _stored_source(ds: datasets.Dataset, column: str, dtype: np.dtype) -> np.ndarray:
    """The stored ``.npy`` array of ``column`` (read-only memory map)."""
    path = column_path(ds, column, dtype)
    expected = (_rows_on_disk(ds), *ds.features[column].shape)
    if not path.is_file():
        raise data_error(path, column, "is missing: this cached set keeps the column only in that file",
                         f"delete {_folder(ds).parent.parent} (a cache folder) to rebuild it")
    arr = np.load(path, mmap_mode="r")
    if arr.shape != expected or arr.dtype != dtype:
        raise data_error(path, column, f"holds {arr.shape} {arr.dtype}, expected {expected} {dtype}",
                         f"delete {_folder(ds).parent.parent} (a cache folder) to rebuild it")
    return arr


def stored_column(ds: datasets.Dataset, column: str, dtype: np.dtype | str | None = None,
                  mmap: bool = True) -> np.ndarray:
    """A column listed by :func:`stored_columns`, as :func:`vssl_core.data.evalset.as_numpy`
    returns it: memory-mapped copy-on-write (``mmap=True``, no row selection), else an
    in-memory array of the selected rows; ``dtype`` casts (a memory-mapped cast is written
    once beside the stored file, as :func:`mapped_column` does)."""
    stored = stored_columns(ds)[column]
    want = np.dtype(dtype if dtype is not None else stored)
    if ds._indices is None and ds.num_rows != _rows_on_disk(ds):
        raise data_error(_folder(ds), column, f"{ds.num_rows} of {_rows_on_disk(ds)} rows were sliced "
                         "from a set that keeps this column in a .npy file",
                         "read the whole set with as_numpy and slice its arrays")
    if mmap and ds._indices is None:
        return mapped_column(ds, column, want)
    source = _stored_source(ds, column, stored)
    if ds._indices is not None:
        rows = np.asarray(ds._indices.column(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return np.asarray(source[rows]).astype(want, copy=False)
    return np.array(source, dtype=want)


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
    stored = stored_columns(ds).get(column)
    if stored is not None and stored == dtype:
        _stored_source(ds, column, stored)        # present and complete, or an error that says so
        return np.load(path, mmap_mode="c")
    if path.exists():
        problem = _intact_problem(path, dtype, expected)
        if problem is None:
            return np.load(path, mmap_mode="c")
        print(f"column copy {path}: {problem}; rewriting it from the Arrow files", file=sys.stderr)
    try:
        source = _stored_source(ds, column, stored) if stored is not None else None
        _write(ds, column, dtype, path, rows_per_write, source)
    finally:
        release_unused()                          # the Arrow slices read while writing
    return np.load(path, mmap_mode="c")
