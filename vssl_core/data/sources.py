"""Where a notebook's data comes from: the synthetic default, or real data by path.

Notebook parameters name real data as strings; ``''`` means "not given", in which case the
folder of ``$VSSL_SHARED_DATA`` is used when that variable is set (tests and CI), and the
dataset is skipped otherwise. A path that is given but wrong is an error, never a skip.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vssl_core.repro.paths import resolve_optional, shared_data_dir
from vssl_core.data.synth import SceneConfig, ensure_synthetic
from vssl_core.data.urbansas import UrbansasDataset


def _shared(sub: str) -> Path | None:
    root = shared_data_dir()
    if root is None:
        return None
    path = root / sub
    return path if path.exists() else None


def real_urbansas_root(path: str = "") -> Path | None:
    """The real Urbansas folder: ``path``, else ``$VSSL_SHARED_DATA/urbansas-mini``, else None."""
    return resolve_optional(path) if path else _shared("urbansas-mini")


def vggss_json(path: str = "") -> Path | None:
    """The VGG-SS annotation file: ``path``, else ``$VSSL_SHARED_DATA/vggss/vggss.json``."""
    return resolve_optional(path) if path else _shared("vggss/vggss.json")


def flickr_xml_dir(path: str = "") -> Path | None:
    """A folder of Flickr-SoundNet XML annotations; only by path (they are not public)."""
    return resolve_optional(path) if path else None


def real_urbansas(path: str = "", on_error: str = "raise") -> UrbansasDataset | None:
    """The real Urbansas dataset (see :func:`real_urbansas_root`), or None when none is given."""
    root = real_urbansas_root(path)
    return UrbansasDataset(root, on_error=on_error) if root is not None else None


def scene_config(**overrides: Any) -> SceneConfig:
    """The default :class:`SceneConfig` with notebook overrides (lists become tuples)."""
    fields = {f.name for f in dataclasses.fields(SceneConfig)}
    unknown = set(overrides) - fields
    if unknown:
        from vssl_core.errors import data_error

        raise data_error(None, ", ".join(sorted(unknown)), "not a SceneConfig field",
                         f"use some of {sorted(fields)}")
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(SceneConfig(), **clean)


def synthetic(n_clips: int, seed: int = 0, config: SceneConfig | None = None,
              progress: bool = True) -> UrbansasDataset:
    """The embedded default: ``n_clips`` synthetic clips, generated once into ``data/synth/``."""
    root = ensure_synthetic(n_clips, seed, config or SceneConfig(), progress=progress)
    return UrbansasDataset(root)


def load_objects(root: str | Path) -> "pd.DataFrame | None":
    """The synthetic generator's ``annotations/objects.csv`` (every object, its state), or None.

    Real Urbansas has no such table; analyses that need it (Type A/B, the oracle detector)
    then say so instead of guessing.
    """
    import pandas as pd

    path = Path(root) / "annotations" / "objects.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path)
