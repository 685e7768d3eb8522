"""Peak memory of the processes a block of code starts (the notebook kernels and their workers).

:class:`PeakMemory` polls, from a background thread, the memory of every *descendant* of the
current process and keeps the largest sum it has seen. Per process it reads the proportional
set size (PSS: shared pages divided among the processes sharing them, so forked workers are
not counted twice) from ``/proc/<pid>/smaps_rollup`` where the platform offers it (Linux),
else the resident set size. It also keeps the peak of the *anonymous* part (``Pss_Anon``: heap,
arrays, tensors), which the kernel cannot reclaim; the rest of PSS is file-backed (libraries,
memory-mapped datasets) and is dropped and re-read under a memory limit such as Binder's.
Units: MiB
(2**20 bytes). A block shorter than the polling interval may be missed (peak 0), and a peak
between two polls is undercounted; the regeneration runner polls every 0.5 s.

The runner reports it per notebook (``python -m vssl_core regenerate`` prints it and writes it to
``figures/MANIFEST.json``): Binder gives a session about 2 GB for the kernel and the server.

:func:`release_unused` hands memory that allocators keep after a big temporary workload (building
a cached dataset: decoded frames, flow fields, Arrow buffers) back to the operating system; the
cache builders call it, so a notebook that builds its data first does not carry that heap into
training.
"""
from __future__ import annotations

import ctypes
import gc
import sys
import threading

import psutil

__all__ = ["PeakMemory", "release_unused", "tree_memory", "tree_memory_mib"]

MIB = 2 ** 20


def _pss_kib(pid: int) -> tuple[int, int] | None:
    """(PSS, anonymous PSS) in KiB from ``/proc/<pid>/smaps_rollup`` (Linux >= 4.14; one cheap
    read), else None. Kernels before 5.4 have no ``Pss_Anon`` line: anonymous is then 0."""
    pss = anon = None
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith(b"Pss_Anon:"):
                    anon = int(line.split()[1])
    except (FileNotFoundError, PermissionError, ProcessLookupError, ValueError):
        return None
    return None if pss is None else (pss, anon or 0)


def _process_mib(p: psutil.Process) -> tuple[float, float]:
    """(PSS or RSS, anonymous PSS) of one process in MiB."""
    pss = _pss_kib(p.pid)
    if pss is not None:
        return pss[0] / 1024.0, pss[1] / 1024.0
    try:
        return float(p.memory_info().rss) / MIB, 0.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return 0.0, 0.0  # the process ended between listing and reading: it holds nothing now


def tree_memory(root: psutil.Process | None = None, include_root: bool = False) -> tuple[float, float]:
    """Summed (PSS or RSS, anonymous PSS) in MiB of the descendants of ``root`` (default: this
    process)."""
    root = root or psutil.Process()
    procs = root.children(recursive=True) + ([root] if include_root else [])
    sizes = [_process_mib(p) for p in procs]
    return sum(t for t, _ in sizes), sum(a for _, a in sizes)


def tree_memory_mib(root: psutil.Process | None = None, include_root: bool = False) -> float:
    """Summed PSS (or RSS) in MiB of the descendants of ``root`` (default: this process)."""
    return tree_memory(root, include_root)[0]


def _malloc_trim() -> bool:
    """glibc's ``malloc_trim(0)``: free pages inside the C heap go back to the kernel. False where
    the C library is not glibc (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)                      # the symbols already loaded, libc's included
    if not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def release_unused() -> dict[str, bool]:
    """Return memory that is free but still held by this process's allocators to the OS.

    Runs the garbage collector, asks Arrow's memory pool (``datasets`` builds with it; its
    mimalloc/jemalloc pools cache freed buffers) to release unused memory, and trims glibc's
    heap. Nothing in use is touched; the call costs milliseconds.

    Returns
    -------
    dict
        ``{"arrow": bool, "malloc_trim": bool}``: which allocators were asked (Arrow only when
        ``pyarrow`` is already imported; ``malloc_trim`` only on glibc).
    """
    gc.collect()
    arrow = "pyarrow" in sys.modules
    if arrow:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    return {"arrow": arrow, "malloc_trim": _malloc_trim()}


class PeakMemory:
    """Context manager: the peak summed memory (MiB) of this process's descendants.

    Examples
    --------
    >>> with PeakMemory() as mem:
    ...     run_something_in_a_subprocess()
    >>> mem.peak_mib
    """

    def __init__(self, interval_s: float = 0.5) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self.peak_anon_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        root = psutil.Process()
        while True:
            total, anon = tree_memory(root)
            self.peak_mib = max(self.peak_mib, total)
            self.peak_anon_mib = max(self.peak_anon_mib, anon)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._poll, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
