"""Where things live: the repository, generated data, caches and the real shared data.

Environment variables
---------------------
VSSL_DATA_DIR
    Overrides ``<repo>/data`` (generated synthetic clips, caches, trained models).
VSSL_SHARED_DATA
    The folder with the real data (``urbansas-mini/``, ``vggss/``, ``flickr_soundnet/``).
    Read in place, never copied.
"""
from __future__ import annotations

import os
from pathlib import Path

from vssl_core.errors import data_error

SHARED_DATA_ENV = "VSSL_SHARED_DATA"


def repo_root() -> Path:
    """The repository root (the folder holding ``vssl_core/``)."""
    return Path(__file__).resolve().parents[2]


def env_folder(name: str) -> Path | None:
    """The folder named by environment variable ``name`` (None when unset or empty).

    A relative value is read from the repository root, not from the current directory: the
    README's commands run from the root, but a notebook's kernel runs in ``notebooks/``, and
    both must see the same folder (``make retrain`` sets ``VSSL_DATA_DIR=build/retrain/data``).
    """
    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value).expanduser()
    return (path if path.is_absolute() else repo_root() / path).resolve()


def data_dir() -> Path:
    """Generated and user data: ``$VSSL_DATA_DIR`` (relative: from the repository root) or
    ``<repo>/data``."""
    return env_folder("VSSL_DATA_DIR") or repo_root() / "data"


def cache_dir() -> Path:
    """Cached evaluation sets and trained models: ``<data_dir>/cache``."""
    return data_dir() / "cache"


def figures_dir() -> Path:
    """Regenerated figures and tables: ``<repo>/figures``."""
    return repo_root() / "figures"


def shared_data_dir(required: bool = False) -> Path | None:
    """The real shared data folder from ``$VSSL_SHARED_DATA``.

    Returns None when the variable is unset and ``required`` is False. When the variable is
    set, the folder must exist: a set-but-missing folder is an error, never a silent skip.
    """
    path = env_folder(SHARED_DATA_ENV)  # a relative value is read from the repository root
    if path is None:
        if required:
            raise data_error(None, SHARED_DATA_ENV, "the variable is not set",
                             "export VSSL_SHARED_DATA=/path/to/shared/data")
        return None
    if not path.is_dir():
        raise data_error(path, SHARED_DATA_ENV, "the folder does not exist",
                         "point VSSL_SHARED_DATA at the folder holding urbansas-mini/ and vggss/")
    return path


def resolve_optional(path: str | os.PathLike | None) -> Path | None:
    """A notebook parameter that may name a folder: '' or None means 'not given'.

    A relative path is taken from the current directory, then from the repository root.
    A path that is given but missing is an error naming it.
    """
    if path is None or str(path) == "":
        return None
    p = Path(path).expanduser()
    for candidate in (p, repo_root() / p, repo_root() / "notebooks" / p):
        if candidate.exists():
            return candidate.resolve()
    raise data_error(p, None, "the path does not exist", "give an existing file or folder, or '' to skip")
