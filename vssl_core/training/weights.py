"""Shipped weights: the trained models of a profile, committed under ``weights/<profile>/``.

``python -m vssl_core train --profile quick`` trains every model the notebooks use and
:func:`export` writes them here: one file per model (``<name>.pt``, the stored form of
:mod:`vssl_core.training.store` with floating tensors in float16, loadable with
``torch.load(weights_only=True)``) and ``MANIFEST.json`` with, per model, the file's sha256,
the spec's key and recipe (model config, training scenes and windows, prior, training config),
the training history (train and validation loss, retrieval, held-out localisation per epoch),
the git commit of the code that trained it, steps, wall time and hardware.

:func:`load_shipped` is how notebooks get a model: the manifest entry must carry the key the
current setup computes (otherwise the weights belong to another setup and are not used) and
the file's sha256 must match (otherwise it is an error that says how to restore or retrain).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from vssl_core.errors import data_error
from vssl_core.models.checkpoints import save_checkpoint
from vssl_core.repro.atomic import write_text
from vssl_core.training.store import Models, ModelSpec, load_trained

__all__ = ["MANIFEST", "weights_dir", "models_for", "load_shipped", "export", "code_commit", "read_manifest", "sha256"]

MANIFEST = "MANIFEST.json"


def weights_dir(profile: str) -> Path:
    """``<repo>/weights/<profile>`` (``$VSSL_WEIGHTS_DIR/<profile>`` when that variable is set; a
    relative value is read from the repository root, :func:`vssl_core.repro.paths.env_folder`)."""
    from vssl_core.repro.paths import env_folder, repo_root

    return (env_folder("VSSL_WEIGHTS_DIR") or repo_root() / "weights") / profile


def models_for(profile: str, retrain: bool = False, progress: bool = True) -> Models:
    """The notebooks' source of models: the shipped weights of ``profile`` first (unless
    ``retrain``), then the local cache, then training (announced with its expected time)."""
    return Models(None if retrain else weights_dir(profile), allow_train=True, progress=progress)


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a weights folder (``{"models": {}}`` when there is none)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"models": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise data_error(path, None, f"is not valid JSON ({exc})",
                         "restore it with `git checkout -- weights/`, or retrain with `make train`") from exc
    if not isinstance(data.get("models"), dict):
        raise data_error(path, "models", "is missing or not an object", "restore it with `git checkout -- weights/`")
    return data


def load_shipped(folder: Path, spec: ModelSpec) -> tuple[nn.Module, dict[str, Any]] | None:
    """The shipped model of ``spec`` from ``folder``, or None when none matches the spec's key.

    Raises
    ------
    DataError
        The entry matches but the file is missing, altered (sha256) or unreadable.
    """
    entry = read_manifest(folder)["models"].get(spec.name)
    if entry is None or entry.get("key") != spec.key:
        return None
    path = Path(folder) / entry["file"]
    fix = ("restore it with `git checkout -- weights/` (or `git lfs pull` if you moved it to LFS), "
           "or retrain with `make train`")
    if not path.is_file():
        raise data_error(path, spec.name, "is listed in the weights manifest but missing", fix)
    digest = sha256(path)
    if digest != entry.get("sha256"):
        raise data_error(path, "sha256", f"is {digest[:12]}..., the manifest says {str(entry.get('sha256'))[:12]}...",
                         fix)
    model, meta = load_trained(path)
    if meta.get("key") != spec.key or meta.get("model_config") != model.config.to_dict():
        raise data_error(path, "key", "does not hold the model its manifest entry describes", fix)
    return model, {**meta, "file": str(path)}


def code_commit() -> str:
    """The checkout's commit, with ``+uncommitted`` when ``vssl_core/`` has local changes
    ("unknown" outside git): the provenance written with exported weights."""
    from vssl_core.repro.paths import repo_root

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True,
                             timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "vssl_core"], cwd=repo_root(),
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def export(folder: str | Path, specs: Iterable[ModelSpec], models: Models, commit: str | None = None) -> Path:
    """Write every spec's trained model (from ``models``) to ``folder`` in float16, with the
    manifest. Entries of other models already in the manifest are kept, and so is a model that
    ``models`` loaded from ``folder``'s own file under the same key (a dependency of what was
    trained, e.g. an object prior): rewriting it would change its provenance, not its weights.

    ``commit`` is the code the models were trained with (:func:`code_commit` taken before
    training; None: taken now, which misreports a tree edited while the models trained)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder)
    commit = commit if commit is not None else code_commit()
    for spec in specs:
        model = models.get(spec)
        meta = models.meta[spec.name]
        entry = manifest["models"].get(spec.name, {})
        if meta.get("source") == "shipped" and entry.get("key") == spec.key \
                and Path(meta.get("file", "")).resolve() == (folder / entry.get("file", "")).resolve():
            continue
        file = f"{spec.name}.pt"
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
        payload = {k: v for k, v in meta.items() if k not in ("source", "file")}
        payload.update(model=state, dtype="float16")
        save_checkpoint(folder / file, payload)
        manifest["models"][spec.name] = {
            "file": file, "sha256": sha256(folder / file), "bytes": (folder / file).stat().st_size,
            "key": spec.key, "model_class": type(model).__name__, "recipe": dict(spec.recipe),
            "train_config": spec.config.to_dict(), "history": meta.get("history", []),
            "seconds": meta.get("seconds"), "steps": meta.get("steps"), "hardware": meta.get("hardware"),
            "commit": commit, "version": meta.get("version"), "source": meta.get("source")}
    manifest["models"] = dict(sorted(manifest["models"].items()))
    write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")
    return folder / MANIFEST
