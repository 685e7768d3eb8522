"""Atomic writes: a reader sees the old file or folder, or the new one, never half of one.

Files and folders are created through ``tempfile`` (mode 0600 / 0700) and renamed into place;
before the rename they get the mode a plain ``open()`` / ``mkdir()`` would have given them under
the process umask (0644 / 0755 with the usual umask 022), so figures, the manifest and caches
are readable by whoever may read their folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """The process umask (read from ``/proc/self/status`` where possible, which changes nothing;
    else set and restored at once)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a new file (0666) or folder (0777) gets under the umask.

    Only the files and folders this module creates go through here; a folder's contents are
    not changed.
    """
    base = 0o777 if stat.S_ISDIR(os.lstat(path).st_mode) else 0o666
    os.chmod(path, base & ~current_umask())


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` (same folder, so the rename is atomic) for the block to
    write; when the block ends without an exception it gets the umask's mode and is renamed onto
    ``path``, otherwise (an interruption included) it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic text write (UTF-8, '\\n' newlines)."""
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temporary sibling, then move it to ``path`` in one rename.

    An existing ``path`` is replaced only once the new folder is complete; on an exception (an
    interruption included) the temporary folder is removed and ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_dir(cache / "pairs-abc123") as tmp:   # doctest: +SKIP
    ...     dataset.save_to_disk(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        apply_umask(tmp)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)          # put the previous folder back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
