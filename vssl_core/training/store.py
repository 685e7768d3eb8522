"""Trained models: what defines each one (a :class:`ModelSpec`), where it is kept, how it is obtained.

A :class:`ModelSpec` names a model the notebooks use and carries its **recipe**: a portable,
JSON-able description of everything that determines its weights (model class and config, the
training scenes and windows, the prior it starts from, the training config). Its key is the
fingerprint of the recipe and of :data:`TRAINING_VERSION` (bumped whenever the training code
changes what it learns), never of paths or machines, so weights trained on one machine are
recognised on another.

:func:`obtain` returns the trained model from, in order: the shipped weights of the profile
(``weights/<profile>/``, :mod:`vssl_core.training.weights`), the local cache
(``<cache>/models/<name>-<key>/model.pt``), or a new training run (when allowed), which it then
caches. A stored model is ``{"model_class", "model_config", "train_config", "recipe", "key",
"history", "version", "model"}``: plain types and tensors, loadable with
``torch.load(weights_only=True)``; :func:`load_trained` rebuilds it from its class and config.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vssl_core.errors import DataError, data_error
from vssl_core.models.checkpoints import load_checkpoint, save_checkpoint
from vssl_core.repro.atomic import atomic_dir
from vssl_core.repro.cache import fingerprint
from vssl_core.training.loop import TrainConfig, train

__all__ = ["TRAINING_VERSION", "ModelSpec", "NotTrained", "Models", "model_classes", "build_from", "load_trained",
           "save_trained", "cached", "obtain"]

#: Bumped whenever a change of the training code changes the weights it produces.
TRAINING_VERSION = 2


class NotTrained(DataError):
    """A model has no shipped weights and no cached copy, and training was not allowed."""


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """One trainable model of the companion.

    Attributes
    ----------
    name : str
        Unique, readable (``"rcgrad"``, ``"htf-f"``, ``"oya-2500"``): file names and ``--only``.
    recipe : mapping
        Everything that determines the weights, as plain JSON-able values.
    factory : callable () -> nn.Module
        The initial model (its prior loaded); called after ``torch.manual_seed(config.seed)``.
    config : TrainConfig
    data : callable () -> (train TrainingArrays, validation TrainingArrays or None)
        Called only when the model is trained.
    on_epoch : callable model -> {name: float}, optional
        Extra held-out metrics per epoch (e.g. localisation on validation pairs).
    minutes : float
        Rough CPU training time on a 2-core laptop (said before training starts).
    """

    name: str
    recipe: Mapping[str, Any]
    factory: Callable[[], nn.Module]
    config: TrainConfig
    data: Callable[[], tuple[Any, Any]]
    on_epoch: Callable[[nn.Module], Mapping[str, float]] | None = None
    minutes: float = 1.0
    notes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Fingerprint of the recipe, the weight-determining training fields and the version."""
        return fingerprint({"training_version": TRAINING_VERSION, "name": self.name, "recipe": dict(self.recipe),
                            "train": self.config.weights_key()})

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "recipe": dict(self.recipe), "train_config": self.config.to_dict()}


def model_classes() -> dict[str, tuple[type, Callable[[Mapping[str, Any]], Any]]]:
    """Class name -> (class, config parser) for every trainable model of the companion."""
    from vssl_core.models.htf import HTF, HTFConfig
    from vssl_core.models.lvs import LVS, LVSConfig
    from vssl_core.models.oya import OyaConfig, OyaNet
    from vssl_core.models.pretrain import PriorNet, PriorConfig
    from vssl_core.models.rcgrad import FlowGradEN, FlowGradIC, ModelConfig, RCGrad

    rc = ModelConfig.from_dict
    return {"RCGrad": (RCGrad, rc), "FlowGradIC": (FlowGradIC, rc), "FlowGradEN": (FlowGradEN, rc),
            "LVS": (LVS, LVSConfig.from_dict), "HTF": (HTF, HTFConfig.from_dict),
            "OyaNet": (OyaNet, OyaConfig.from_dict), "PriorNet": (PriorNet, PriorConfig.from_dict)}


def build_from(model_class: str, model_config: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised model of a stored class and config (no prior loaded)."""
    classes = model_classes()
    if model_class not in classes:
        raise ValueError(f"unknown model class {model_class!r}; known: {sorted(classes)}")
    cls, parse = classes[model_class]
    return cls(parse(dict(model_config)))


def save_trained(path: str | Path, model: nn.Module, spec: ModelSpec, history: list, **meta: Any) -> Path:
    """Write a trained model and what defines it to ``path`` (atomically)."""
    from vssl_core import __version__

    payload = {"model_class": type(model).__name__, "model_config": model.config.to_dict(),
               "train_config": spec.config.to_dict(), "recipe": dict(spec.recipe), "key": spec.key,
               "name": spec.name, "history": list(history), "version": __version__,
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **meta}
    return save_checkpoint(path, payload)


def load_trained(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A stored model (eval mode, CPU, float32) and its metadata (everything but the weights)."""
    payload = load_checkpoint(path)
    for key in ("model_class", "model_config", "model"):
        if key not in payload:
            raise data_error(path, key, "the key is missing", "give a model file written by vssl_core.training")
    try:
        model = build_from(payload["model_class"], payload["model_config"])
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()}
        model.load_state_dict(state)
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise data_error(path, "model", f"does not match its class and config ({exc})",
                         "delete the file to retrain, or load it with the version that wrote it") from exc
    return model.eval(), {k: v for k, v in payload.items() if k != "model"}


def hardware(device: str = "auto") -> str:
    """What trains here: the GPU's name, or the CPU and its torch threads."""
    import platform

    if torch.cuda.is_available() and device in ("auto", "cuda"):
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def _cache_folder(spec: ModelSpec, cache_root: str | Path | None) -> Path:
    from vssl_core.repro.paths import cache_dir

    root = Path(cache_root) if cache_root is not None else cache_dir() / "models"
    return root / f"{spec.name}-{spec.key}"


def cached(spec: ModelSpec, cache_root: str | Path | None = None) -> Path | None:
    """The cached model file of ``spec``, or None."""
    path = _cache_folder(spec, cache_root) / "model.pt"
    return path if path.is_file() else None


def _train(spec: ModelSpec, cache_root: str | Path | None, progress: bool) -> tuple[nn.Module, dict[str, Any]]:
    from vssl_core.training import distributed  # under torchrun: every rank trains, rank 0 writes

    folder = _cache_folder(spec, cache_root)
    torch.manual_seed(spec.config.seed)
    model = spec.factory()
    with distributed.main_first():  # rank 0 builds the data caches, the other ranks then read them
        arrays, val = spec.data()
    work = folder.parent / f".work-{folder.name}"
    t0 = time.perf_counter()
    model, history = train(model, spec.config, arrays, val, work, resume=True, progress=progress,
                           on_epoch=spec.on_epoch, desc=spec.name)
    if distributed.is_main():
        with atomic_dir(folder) as tmp:
            save_trained(tmp / "model.pt", model, spec, history, seconds=round(time.perf_counter() - t0, 1),
                         hardware=hardware(spec.config.device), steps=sum(int(h.get("steps", 0)) for h in history))
        shutil.rmtree(work, ignore_errors=True)
    distributed.barrier()
    return load_trained(folder / "model.pt")


def obtain(spec: ModelSpec, *, weights_dir: str | Path | None = None, allow_train: bool = True,
           cache_root: str | Path | None = None, progress: bool = True,
           say: Callable[[str], None] | None = print) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of ``spec``: shipped weights, else the cache, else trained now.

    Parameters
    ----------
    weights_dir : path, optional
        A folder of shipped weights (``weights/<profile>``) to try first.
    allow_train : bool
        Train when neither holds the model; False raises :class:`NotTrained` instead.
    say : callable str -> None, optional
        Where to announce a training run and its expected time (None: silent).

    Returns
    -------
    model, meta : eval mode on the CPU; ``meta["source"]`` is "shipped", "cache" or "trained".

    Notes
    -----
    The caller's global torch RNG is left as it was: loading builds a randomly initialised model
    before its weights arrive, and training seeds the RNG. So a factory that obtains the model it
    starts from (e.g. an object prior) initialises its own new layers the same way whether or not
    that model was already loaded in this process, and a retrain reproduces the shipped weights.
    """
    with torch.random.fork_rng(devices=[]):
        return _obtain(spec, weights_dir, allow_train, cache_root, progress, say)


def _obtain(spec: ModelSpec, weights_dir: str | Path | None, allow_train: bool, cache_root: str | Path | None,
            progress: bool, say: Callable[[str], None] | None) -> tuple[nn.Module, dict[str, Any]]:
    if weights_dir is not None:
        from vssl_core.training.weights import load_shipped

        found = load_shipped(Path(weights_dir), spec)
        if found is not None:
            return found[0], {**found[1], "source": "shipped"}
    path = cached(spec, cache_root)
    if path is not None:
        model, meta = load_trained(path)
        return model, {**meta, "source": "cache"}
    if not allow_train:
        raise NotTrained(str(data_error(
            weights_dir, spec.name, f"no shipped weights match this setup (key {spec.key}) and no cached copy exists",
            "run `python -m vssl_core train` (or `make train`) for this profile, or allow training (retrain=True)")))
    if say is not None:
        say(f"{spec.name}: not in the shipped weights or the cache; training it now "
            f"(about {spec.minutes:.0f} min on a 2-core CPU, less on a GPU)")
    model, meta = _train(spec, cache_root, progress)
    return model, {**meta, "source": "trained"}


class Models:
    """Obtains trained models once per session (memoised by key), with one policy for all of them.

    Parameters
    ----------
    weights_dir : path, optional
        Shipped weights to try first (``weights/<profile>``).
    allow_train : bool
        Train what is neither shipped nor cached (False: :class:`NotTrained`).
    progress : bool
    say : callable str -> None, optional
        Where training announcements go.
    cache_root : path, optional

    ``models.get(spec)`` returns the model; ``models.meta[spec.name]`` its metadata (history,
    source: "shipped", "cache" or "trained").
    """

    def __init__(self, weights_dir: str | Path | None = None, *, allow_train: bool = True, progress: bool = True,
                 say: Callable[[str], None] | None = print, cache_root: str | Path | None = None) -> None:
        self.weights_dir, self.allow_train, self.progress = weights_dir, allow_train, progress
        self.say, self.cache_root = say, cache_root
        self._models: dict[str, nn.Module] = {}
        self.meta: dict[str, dict[str, Any]] = {}

    def get(self, spec: ModelSpec) -> nn.Module:
        if spec.key not in self._models:
            model, meta = obtain(spec, weights_dir=self.weights_dir, allow_train=self.allow_train,
                                 cache_root=self.cache_root, progress=self.progress, say=self.say)
            self._models[spec.key] = model
            self.meta[spec.name] = meta
        return self._models[spec.key]
