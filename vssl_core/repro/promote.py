"""Crash-safe promotion of staged notebook folders and the manifest into ``figures/``.

``figures/`` only ever changes through :func:`commit`, under the per-checkout lock
(:func:`checkout_lock`):

1. the old ``MANIFEST.json`` is copied to a backup folder ``figures/.backup-<token>/`` and a
   journal ``figures/.promote.json`` (written atomically and synced) names the staging folder,
   the backup folder, the notebook folders and which of them existed;
2. each ``figures/<notebook>`` is renamed into the backup folder and the staged folder renamed
   into its place; then the staged manifest replaces ``MANIFEST.json`` (one rename);
3. deleting the journal is the commit point; the backup and staging folders are removed after.

A run killed anywhere (SIGKILL included) leaves either no journal (nothing was promoted; at most
stale hidden folders) or a journal, and the next run (:func:`recover`, under the lock) rolls the
promotion back from it: every figure folder and the manifest are as they were before the killed
run, so ``figures/`` and its manifest always agree. Stale hidden folders and temporary files of
dead runs (``.staging-*``, ``.backup-*``, ``.previous-*``, ``.*.tmp``) are removed at the same
time; a staging folder is never promoted by a later run.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from vssl_core.errors import data_error
from vssl_core.repro import atomic

JOURNAL = ".promote.json"
LOCK = ".regenerate.lock"
MANIFEST = "MANIFEST.json"
#: Hidden names of ``figures/`` that only a run in progress uses (removed by :func:`recover`).
STALE_PREFIXES = (".staging-", ".backup-", ".previous-")


@contextlib.contextmanager
def checkout_lock(figures: Path, wait: bool = False) -> Iterator[Path]:
    """Hold the regeneration lock of ``figures`` (an ``flock`` on ``figures/.regenerate.lock``).

    The kernel releases the lock when the process ends, however it ends, so a killed run never
    leaves a stale lock behind.

    Parameters
    ----------
    figures : Path
        The figures folder (created if missing).
    wait : bool
        Wait for a running regeneration to finish instead of refusing.

    Raises
    ------
    DataError
        When another process holds the lock and ``wait`` is False (the message names its pid).
    """
    figures.mkdir(parents=True, exist_ok=True)
    path = figures / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~atomic.current_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise data_error(path, "lock", f"another regeneration of this checkout is running "
                             f"({holder})", "wait for it to finish, or pass --wait to queue "
                             "behind it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)                     # releases the lock


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _rollback(figures: Path, plan: dict) -> None:
    """Undo a promotion described by journal ``plan`` (idempotent: safe to re-run if killed)."""
    staging, backup = figures / plan["staging"], figures / plan["backup"]
    existed = set(plan["existed"])
    for name in plan["names"]:
        target = figures / name
        if name in existed:
            if (backup / name).exists():          # moved out: the old copy goes back
                _remove(target)
                os.replace(backup / name, target)
        elif target.exists() and not (staging / name).exists():
            _remove(target)                       # a new folder that was moved in
    if (backup / MANIFEST).exists():
        os.replace(backup / MANIFEST, figures / MANIFEST)
    elif not plan["manifest_existed"]:
        _remove(figures / MANIFEST)
    _fsync_dir(figures)
    (figures / JOURNAL).unlink()


def recover(figures: Path) -> list[str]:
    """Roll back a promotion a killed run left half done and remove stale run folders.

    Call it holding :func:`checkout_lock` (no other run is in progress then).

    Returns
    -------
    list of str
        What was done, one line per item (empty when ``figures/`` was clean).
    """
    done = []
    journal = figures / JOURNAL
    if journal.is_file():
        try:
            plan = json.loads(journal.read_text())
        except (OSError, ValueError) as exc:
            raise data_error(journal, None, f"the promotion journal of a killed run is unreadable "
                             f"({exc})", "restore figures/ with git (git checkout -- figures) and "
                             "delete the journal") from exc
        _rollback(figures, plan)
        done.append(f"rolled back the promotion of {', '.join(plan['names'])} that a killed run "
                    "left half done")
    for p in sorted(figures.iterdir()) if figures.is_dir() else []:
        if p.name.startswith(STALE_PREFIXES) or (p.name.startswith(".") and p.name.endswith(".tmp")):
            _remove(p)
            done.append(f"removed {p.name} left by a dead run")
    return done


def commit(figures: Path, staging: Path, names: Sequence[str], token: str) -> None:
    """Promote ``staging/<name>`` for every name, and ``staging/MANIFEST.json``, into ``figures/``
    (module docstring). On an exception the promotion is rolled back before it propagates."""
    backup = figures / f".backup-{token}"
    backup.mkdir()
    manifest_existed = (figures / MANIFEST).is_file()
    if manifest_existed:
        shutil.copy2(figures / MANIFEST, backup / MANIFEST)
    plan = {"staging": staging.name, "backup": backup.name, "names": list(names),
            "existed": [n for n in names if (figures / n).exists()],
            "manifest_existed": manifest_existed}
    atomic.write_text(figures / JOURNAL, json.dumps(plan, indent=1) + "\n")
    _fsync_dir(figures)
    try:
        for name in names:
            if (figures / name).exists():
                os.replace(figures / name, backup / name)
            os.replace(staging / name, figures / name)
        os.replace(staging / MANIFEST, figures / MANIFEST)
        _fsync_dir(figures)
    except BaseException:
        _rollback(figures, plan)
        raise
    (figures / JOURNAL).unlink()                  # the commit point
    _fsync_dir(figures)
    _remove(backup)
