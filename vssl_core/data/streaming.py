"""Training windows read lazily from disk, a batch of rows at a time.

The cached training sets (:func:`vssl_core.data.arrays.load_training`) already come back as
memory-mapped ``.npy`` column copies (:mod:`vssl_core.data.columns`): indexing one batch reads
only its rows. But every page a memory map touches stays mapped into the process, so over an
epoch the resident set (RSS) grows to the size of the whole set (file-backed pages the kernel can
drop under pressure, yet counted by every RSS-based limit, e.g. a Slurm job's or a container's).
:class:`NpyRows` reads the same rows with ``os.pread`` instead: the page cache keeps what the
kernel wants to keep, the process holds only the batch it asked for, and the peak RSS of
training stays flat in the number of windows (``benchmarks/bench_training.py`` measures both).

- :class:`NpyRows`: an array-like over the rows of a ``.npy`` file (``shape``, ``dtype``,
  ``len``, ``rows[idx]`` -> a new ndarray with the same bytes as ``np.load(path)[idx]``).
- :func:`as_streaming`: the same :class:`~vssl_core.data.arrays.TrainingArrays` (or any
  dataclass of arrays) with every file-backed memory map swapped for an :class:`NpyRows`; other
  arrays are left as they are. The training loop applies it to its data.
- :func:`save_windows` / :func:`open_windows`: a folder of ``.npy`` columns (``images``,
  ``audio``, ``flow``, ``flow_field``, ``clips``) written a chunk at a time and opened lazily,
  e.g. windows made elsewhere or the benchmark's synthetic windows.

torch-free.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vssl_core.errors import data_error

__all__ = ["NpyRows", "as_streaming", "save_windows", "open_windows", "WINDOW_COLUMNS"]

#: Columns of a window folder, in the units of :class:`~vssl_core.data.arrays.TrainingArrays`.
WINDOW_COLUMNS = ("images", "audio", "flow", "flow_field", "clips")


class NpyRows:
    """Rows of a C-ordered array stored in a file, read with ``os.pread`` on demand.

    Parameters
    ----------
    path : path
        A ``.npy`` file, or any file when ``offset``, ``shape`` and ``dtype`` are given.
    offset : int, optional
        Byte offset of row 0 (default: after the ``.npy`` header).
    shape : tuple of int, optional
        ``(N, *row_shape)``.
    dtype : numpy dtype, optional

    Notes
    -----
    ``rows[i]`` (int) gives one row ``row_shape``; ``rows[idx]`` (int array, list or slice with
    step 1) gives ``(len(idx), *row_shape)``, reading each run of consecutive indices with one
    ``pread``. Rows come back as new, writable arrays; nothing is cached. The file descriptor is
    opened per process (safe to pickle into DataLoader workers or across ``fork``).
    """

    def __init__(self, path: str | os.PathLike, offset: int | None = None,
                 shape: tuple[int, ...] | None = None, dtype: Any = None) -> None:
        self.path = Path(path)
        if offset is None or shape is None or dtype is None:
            with open(self.path, "rb") as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape_, fortran, dtype_ = read_header(fh)
                except ValueError as exc:
                    raise data_error(self.path, None, f"not a .npy file ({exc})",
                                     "give a file written by numpy.save") from exc
                if fortran and len(shape_) > 1:
                    raise data_error(self.path, None, "Fortran-ordered array", "save it C-ordered")
                offset, shape, dtype = fh.tell(), shape_, dtype_
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        if not self.shape:
            raise ValueError(f"{self.path}: a scalar has no rows")
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        size = self.path.stat().st_size
        if self.offset + self.row_bytes * self.shape[0] > size:
            raise data_error(self.path, None, f"holds {size} bytes, fewer than its {self.shape} {self.dtype} rows need",
                             "the file is truncated: delete it to rebuild the cache")
        self._fd: int | None = None
        self._pid: int | None = None

    # -- array-like --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.row_bytes * self.shape[0]

    def __repr__(self) -> str:
        return f"NpyRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None and self._pid == os.getpid():
            try:
                os.close(fd)
            except OSError:
                pass

    def _handle(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0)), os.getpid()
        return self._fd

    def _read(self, start: int, count: int, out: memoryview) -> None:
        fd, pos, want = self._handle(), self.offset + start * self.row_bytes, count * self.row_bytes
        done = 0
        while done < want:
            n = os.preadv(fd, [out[done:want]], pos + done) if hasattr(os, "preadv") else None
            if n is None:  # no preadv (Windows): pread into a bytes object
                chunk = os.pread(fd, want - done, pos + done)
                n = len(chunk)
                out[done:done + n] = chunk
            if n <= 0:
                raise data_error(self.path, None, f"short read at byte {pos + done}", "the file changed: rebuild it")
            done += n

    def read(self, idx: Iterable[int] | np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed) as a new array ``(len(idx), *row_shape)``."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        out = np.empty((len(idx), *self.row_shape), self.dtype)
        if not len(idx) or not self.row_bytes:
            return out
        order = np.argsort(idx, kind="stable")
        s = idx[order]
        tmp = out if np.array_equal(order, np.arange(len(idx))) else np.empty_like(out)
        buf = memoryview(tmp.reshape(-1).view(np.uint8))
        breaks = (np.flatnonzero(np.diff(s) != 1) + 1).tolist()  # runs of consecutive rows
        for start, end in zip([0, *breaks], [*breaks, len(s)]):
            self._read(int(s[start]), end - start, buf[start * self.row_bytes:end * self.row_bytes])
        if tmp is not out:
            out[order] = tmp
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.read([int(key)])[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            return self.read(np.arange(start, stop, step))
        if isinstance(key, tuple):
            return self[key[0]][(slice(None), *key[1:])]
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self.read(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole array in memory (what streaming avoids; for small sets and tests)."""
        a = self.read(np.arange(self.shape[0]))
        return a if dtype is None else a.astype(dtype, copy=False)


def _file_rows(a: Any) -> NpyRows | None:
    """An :class:`NpyRows` over the same bytes as the memory map ``a``, or None."""
    if isinstance(a, NpyRows):
        return a
    if not isinstance(a, np.memmap) or a.ndim < 1 or not a.flags.c_contiguous or a.filename is None:
        return None
    root = a
    while isinstance(root.base, np.memmap):
        root = root.base
    start = root.offset + (a.__array_interface__["data"][0] - root.__array_interface__["data"][0])
    return NpyRows(a.filename, start, a.shape, a.dtype)


def as_streaming(arrays: Any) -> Any:
    """``arrays`` (a dataclass of arrays, e.g. a TrainingArrays) with every file-backed memory
    map replaced by an :class:`NpyRows` over the same bytes; in-memory arrays are kept."""
    if not dataclasses.is_dataclass(arrays):
        return arrays
    changes = {}
    for f in dataclasses.fields(arrays):
        rows = _file_rows(getattr(arrays, f.name))
        if rows is not None and rows is not getattr(arrays, f.name):
            changes[f.name] = rows
    return dataclasses.replace(arrays, **changes) if changes else arrays


def save_windows(folder: str | os.PathLike, columns: Mapping[str, Iterable[np.ndarray]] | None = None, *,
                 n: int | None = None, shapes: Mapping[str, tuple[tuple[int, ...], Any]] | None = None,
                 fill=None, chunk: int = 256) -> Path:
    """Write a window folder, ``chunk`` rows at a time (never the whole set in memory).

    Parameters
    ----------
    folder : path
        Created; one ``<column>.npy`` per column.
    shapes : mapping column -> (row shape, dtype)
        With ``n`` and ``fill``: the columns to write.
    n : int
        Number of windows.
    fill : callable (column, start, stop) -> ndarray ``(stop - start, *row shape)``
        Produces the rows of a chunk.
    chunk : int

    Returns
    -------
    Path
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if columns is not None:
        for name, arr in columns.items():
            np.save(folder / f"{name}.npy", np.asarray(arr))
        return folder
    for name, (row_shape, dtype) in (shapes or {}).items():
        if name not in WINDOW_COLUMNS:
            raise ValueError(f"unknown window column {name!r}; expected one of {WINDOW_COLUMNS}")
        out = np.lib.format.open_memmap(folder / f".{name}.npy.tmp", mode="w+", dtype=dtype, shape=(n, *row_shape))
        for s in range(0, n, chunk):
            out[s:min(s + chunk, n)] = fill(name, s, min(s + chunk, n))
        out.flush()
        del out
        os.replace(folder / f".{name}.npy.tmp", folder / f"{name}.npy")
    return folder


def open_windows(folder: str | os.PathLike, limit: int | None = None):
    """The windows of a folder written by :func:`save_windows`, as a streaming TrainingArrays.

    ``limit`` keeps the first ``limit`` windows (without reading anything)."""
    from vssl_core.data.arrays import TrainingArrays

    folder = Path(folder)
    cols: dict[str, Any] = {}
    for name in WINDOW_COLUMNS:
        p = folder / f"{name}.npy"
        if p.is_file():
            cols[name] = np.load(p) if name == "clips" else NpyRows(p)
    for need in ("images", "audio"):
        if need not in cols:
            raise data_error(folder / f"{need}.npy", None, "file not found",
                             "write the folder with vssl_core.data.streaming.save_windows")
    n = len(cols["images"])
    bad = {k: len(v) for k, v in cols.items() if len(v) != n}
    if bad:
        raise data_error(folder, None, f"columns of different lengths: images {n}, {bad}", "rewrite the folder")
    if limit is not None:
        n = min(n, int(limit))
        cols = {k: (v[:n] if isinstance(v, np.ndarray) else NpyRows(v.path, v.offset, (n, *v.row_shape), v.dtype))
                for k, v in cols.items()}
    return TrainingArrays(cols["images"], cols["audio"], flow=cols.get("flow"), flow_field=cols.get("flow_field"),
                          clips=cols.get("clips"))
