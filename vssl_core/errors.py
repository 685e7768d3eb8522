"""Errors with messages a user can act on: the file, the field and the fix."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: a missing file or column, an undecodable clip, out-of-range values.

    Build it with :func:`data_error` so every message names the file, the field and the fix.
    """


def data_error(file: str | Path | None, field: str | None, problem: str, fix: str) -> DataError:
    """Return a :class:`DataError` whose message reads ``FILE: field FIELD: PROBLEM. Fix: FIX``.

    Parameters
    ----------
    file : path or None
        The file the problem was found in (None when it is not about one file).
    field : str or None
        The column, key, parameter or array the problem is about.
    problem : str
        What is wrong, with the offending value where it helps.
    fix : str
        What the user should do (expected layout, valid range, ...).
    """
    parts = []
    if file is not None:
        parts.append(f"{file}")
    if field is not None:
        parts.append(f"field '{field}'")
    where = ": ".join(parts)
    head = f"{where}: " if where else ""
    return DataError(f"{head}{problem}. Fix: {fix}")
