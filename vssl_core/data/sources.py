"""Where a notebook's data comes from: the synthetic default, or real data by path.

Notebook parameters name real data as strings; ``''`` means "not given", in which case the
folder of ``$VSSL_SHARED_DATA`` is used when that variable is set (tests and CI), and the
dataset is skipped otherwise. A path that is given but wrong is an error, never a skip.

A skip is never silent: :func:`real_urbansas`, :func:`vggss_json` and :func:`flickr_xml_dir`
print what was skipped, where the data comes from and how to supply it (:data:`REAL_SOURCES`,
:func:`skip_message`) unless called with ``say=None``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vssl_core.repro.paths import resolve_optional, shared_data_dir
from vssl_core.data.synth import SceneConfig, ensure_synthetic
from vssl_core.data.urbansas import UrbansasDataset


@dataclasses.dataclass(frozen=True)
class RealSource:
    """A real dataset a notebook can read, and how a learner supplies it.

    Attributes
    ----------
    title : str
        What it is, for the message.
    parameter : str
        The notebook parameter that takes its path.
    example : str
        An example value of that parameter.
    shared : str
        Its place under ``$VSSL_SHARED_DATA`` ('' : never looked up there).
    origin : str
        Where it comes from.
    """

    title: str
    parameter: str
    example: str
    shared: str
    origin: str


#: The real data sources and where they come from (the text of every skip message).
REAL_SOURCES = {
    "urbansas": RealSource(
        "real Urbansas clips", "urbansas_root", "/path/to/urbansas", "urbansas-mini",
        "the Urbansas release (Fuentes et al., \"Urban Sound & Sight\", ICASSP 2022): a folder "
        "with annotations/video_annotations.csv, annotations/audio_annotations.csv, "
        "audio/<clip>.wav and video/**/<clip>.mp4"),
    "vggss": RealSource(
        "VGG-SS test annotations", "vggss_json", "/path/to/vggss.json", "vggss/vggss.json",
        "vggss.json (5,158 entries) in the public repository of \"Localizing Visual Sounds the "
        "Hard Way\" (Chen et al., CVPR 2021): github.com/hche11/Localizing-Visual-Sounds-the-Hard-Way, "
        "file metadata/vggss.json"),
    "flickr": RealSource(
        "Flickr-SoundNet box annotations", "flickr_xml_dir", "/path/to/xml_folder", "",
        "the XML box files of Senocak et al. (CVPR 2018), which are not public: give a folder "
        "of them if you have a copy"),
}


def skip_message(key: str) -> str:
    """What was skipped, where it comes from and how to supply it (a source of
    :data:`REAL_SOURCES`), in three lines."""
    src = REAL_SOURCES[key]
    why = f"{src.parameter} = ''"
    if src.shared:
        root = shared_data_dir()
        why += (" and VSSL_SHARED_DATA is not set" if root is None
                else f" and {root / src.shared} does not exist")
    how = (f"set {src.parameter} = \"{src.example}\" in the parameters cell "
           f"(or -p {src.parameter}={src.example} with python -m vssl_core regenerate)")
    if src.shared:
        how += f", or export VSSL_SHARED_DATA=/folder with it at /folder/{src.shared} before starting Jupyter"
    return (f"Skipped: {src.title} ({why}).\n"
            f"  They come from {src.origin}.\n"
            f"  To include them: {how}.")


def _report(key: str, say: Callable[[str], None] | None) -> None:
    if say is not None:
        say(skip_message(key))


def _shared(sub: str) -> Path | None:
    root = shared_data_dir()
    if root is None:
        return None
    path = root / sub
    return path if path.exists() else None


def real_urbansas_root(path: str = "") -> Path | None:
    """The real Urbansas folder: ``path``, else ``$VSSL_SHARED_DATA/urbansas-mini``, else None."""
    return resolve_optional(path) if path else _shared("urbansas-mini")


def vggss_json(path: str = "", say: Callable[[str], None] | None = print) -> Path | None:
    """The VGG-SS annotation file: ``path``, else ``$VSSL_SHARED_DATA/vggss/vggss.json``, else
    None after ``say`` (default ``print``) has said where the file comes from."""
    found = resolve_optional(path) if path else _shared("vggss/vggss.json")
    if found is None:
        _report("vggss", say)
    return found


def flickr_xml_dir(path: str = "", say: Callable[[str], None] | None = print) -> Path | None:
    """A folder of Flickr-SoundNet XML annotations; only by path (they are not public). None,
    after ``say`` has said so, when no path is given."""
    if not path:
        _report("flickr", say)
        return None
    return resolve_optional(path)


def real_urbansas(path: str = "", on_error: str = "raise",
                  say: Callable[[str], None] | None = print) -> UrbansasDataset | None:
    """The real Urbansas dataset (see :func:`real_urbansas_root`), or None when none is given,
    after ``say`` (default ``print``; None: silent) has said how to supply it."""
    root = real_urbansas_root(path)
    if root is None:
        _report("urbansas", say)
        return None
    return UrbansasDataset(root, on_error=on_error)


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
