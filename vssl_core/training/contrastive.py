"""Contrastive training of RCGrad / FlowGrad-IC / FlowGrad-EN on in-memory arrays.

Conventions
-----------
- Data come as a :class:`TrainArrays` of plain NumPy arrays (no dataset object): images
  ``(N, S, S, 3)`` uint8 RGB, audio ``(N, C, T)`` float32 waveforms at
  ``config.model.audio_sr`` (mono ``C = 1`` typical; channels are averaged), flow magnitude
  ``(N, S, S)`` float32 in px/frame (FlowGrad models only), optional validation arrays.
  Images and flow are resized to ``config.model.image_size`` when ``S`` differs.
- Optimisation (docs/conventions.md, "RCGrad"): Adam (lr 1e-3), ReduceLROnPlateau (factor 0.1, patience 5) and
  early stopping (patience 10) on the validation loss when validation arrays are given, else
  on the mean training loss of the epoch. The returned model holds the best epoch's weights.
- Augmentation: random horizontal flip of image and flow together (flow magnitude is
  flip-invariant). The audio is mono; a stereo model would also have to swap its channels.
- Determinism: the model is initialised after ``torch.manual_seed(seed)``; epoch ``e`` draws its
  sample order and flips from a ``torch.Generator`` seeded with ``(seed, e)``, so an interrupted
  run resumed from its last checkpoint ends with the same weights as an uninterrupted one.
  Checkpoints contain no wall-clock times, so the same seed writes the same bytes (on the same
  machine, thread count and torch version).
- Checkpoints (``out_dir/last.pt`` every epoch, ``out_dir/best.pt`` on improvement) hold only
  plain types and tensors: the config as a dict, ``vssl_core.__version__``, seed, epoch,
  history, model / optimizer / scheduler state; written atomically.
- Threads: torch's default thread count is left alone unless ``TrainConfig.num_threads`` is set
  (then restored after training).
"""
from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vssl_core.repro.cache import fingerprint
from vssl_core.models.checkpoints import load_checkpoint, load_model, save_checkpoint, save_model
from vssl_core.errors import data_error
from vssl_core.repro.memory import release_unused
from vssl_core.models.rcgrad import (FlowGradEN, FlowGradIC, ModelConfig, RCGrad, build_model, prepare_audio,
                            prepare_flow, prepare_images)

__all__ = ["TrainConfig", "TrainArrays", "train", "cached_train", "resolve_device", "model_fingerprint"]

# Fields that do not change the trained weights (left out of resume checks and cache keys).
_RUNTIME_FIELDS = ("device", "num_workers", "log_every", "num_threads")


def without(d: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``d`` without the keys ``names`` (a config's weight-determining fields)."""
    return {k: v for k, v in d.items() if k not in names}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (None: unchanged), then restore."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(old)


class RunningLoss:
    """Sample-weighted mean loss of an epoch, shown on a progress bar every ``log_every`` steps."""

    def __init__(self, bar: Any, n_steps: int, log_every: int) -> None:
        self.bar, self.n_steps, self.log_every = bar, n_steps, max(log_every, 1)
        self.total, self.count = 0.0, 0

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, n: int, step: int) -> None:
        """One optimiser step on ``loss`` (a batch of ``n`` pairs), then update the mean and bar."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.total += loss.item() * n
        self.count += n
        self.bar.update(1)
        if (step + 1) % self.log_every == 0 or step + 1 == self.n_steps:
            self.bar.set_postfix(loss=f"{self.mean:.4f}")

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes
    ----------
    model : ModelConfig
    epochs : int
        Maximum number of epochs (early stopping may end sooner).
    batch_size : int
        Pairs per step; the in-batch negatives of the contrastive loss. A last batch with a
        single pair is dropped (InfoNCE needs two).
    lr, weight_decay : float
        Adam parameters.
    seed : int
    num_workers : int
        DataLoader workers that slice and convert the arrays (0 = in the main process).
    device : str
        "auto" (cuda if available, else cpu), "cpu", "cuda", ...
    plateau_factor, plateau_patience : float, int
        ReduceLROnPlateau on the monitored loss.
    early_stopping_patience : int
        Stop after this many epochs without improvement of the monitored loss.
    hflip : bool
        Random horizontal flip (p = 0.5) of image and flow together.
    log_every : int
        Update the progress bar's loss every this many steps.
    num_threads : int or None
        ``torch.set_num_threads`` during training (None: leave torch's default).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    early_stopping_patience: int = 10
    hflip: bool = True
    log_every: int = 10
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError(f"invalid TrainConfig: epochs {self.epochs}, batch_size {self.batch_size}, lr {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (``model`` as a dict)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        d = dict(d)
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        d["model"] = ModelConfig.from_dict(d.get("model", {}))
        return cls(**d)

    def weights_key(self) -> dict[str, Any]:
        """The fields that determine the trained weights (no device, workers, logging)."""
        return without(self.to_dict(), _RUNTIME_FIELDS)


@dataclass(frozen=True)
class TrainArrays:
    """Training (and optional validation) pairs as NumPy arrays; see the module docstring."""

    images: np.ndarray
    audio: np.ndarray
    flow: np.ndarray | None = None
    val_images: np.ndarray | None = None
    val_audio: np.ndarray | None = None
    val_flow: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_split(self.images, self.audio, self.flow, "images", "audio", "flow")
        if (self.val_images is None) != (self.val_audio is None):
            raise ValueError("give both val_images and val_audio, or neither")
        if self.val_images is not None:
            _check_split(self.val_images, self.val_audio, self.val_flow, "val_images", "val_audio", "val_flow")
            if (self.flow is None) != (self.val_flow is None):
                raise ValueError("give val_flow exactly when flow is given")

    @property
    def has_val(self) -> bool:
        return self.val_images is not None


def _check_split(images: np.ndarray, audio: np.ndarray, flow: np.ndarray | None,
                 ni: str, na: str, nf: str) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{ni} must be (N, S, S, 3) uint8, got {images.dtype} {images.shape}")
    if audio.ndim != 3:
        raise ValueError(f"{na} must be (N, C, T) waveforms, got shape {audio.shape}")
    if len(audio) != len(images):
        raise ValueError(f"{len(images)} {ni} but {len(audio)} {na}")
    if flow is not None and (flow.ndim != 3 or flow.shape != images.shape[:3]):
        raise ValueError(f"{nf} must be (N, S, S) matching {ni} {images.shape[:3]}, got {flow.shape}")


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Batches(torch.utils.data.Dataset):
    """Index-batch dataset: item ``idx`` (a list of sample indices) -> tensors of that batch."""

    def __init__(self, images: np.ndarray, audio: np.ndarray, flow: np.ndarray | None,
                 batches: list[list[int]], size: int) -> None:
        self.images, self.audio, self.flow, self.batches, self.size = images, audio, flow, batches, size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        idx = np.asarray(self.batches[i])
        img = prepare_images(self.images[idx], self.size)  # (n, 3, s, s) in [0, 1]
        aud = prepare_audio(self.audio[idx])  # (n, C, T)
        flo = prepare_flow(self.flow[idx], self.size) if self.flow is not None else None  # (n, 1, s, s)
        return img, aud, flo


def _loader(images, audio, flow, batches, config: TrainConfig) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(_Batches(images, audio, flow, batches, config.model.image_size),
                                       batch_size=None, shuffle=False, num_workers=config.num_workers,
                                       collate_fn=_identity)


def _identity(batch):
    return batch


def _epoch_plan(n: int, config: TrainConfig, epoch: int) -> tuple[list[list[int]], torch.Tensor]:
    """Sample order (batches of indices) and per-sample flip flags of one epoch."""
    g = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    flips = torch.rand(n, generator=g) < 0.5
    bs = config.batch_size
    batches = [perm[s:s + bs] for s in range(0, n, bs)]
    return [b for b in batches if len(b) >= 2], flips


def _forward_loss(model: RCGrad, img, aud, flo, device) -> torch.Tensor:
    img, aud = img.to(device), aud.to(device)
    flo = flo.to(device) if flo is not None else None
    return model.loss(model(img, aud, flo))


@torch.no_grad()
def _val_loss(model: RCGrad, arrays: TrainArrays, config: TrainConfig, device) -> float:
    model.eval()
    n = len(arrays.val_images)
    batches = [list(range(s, min(s + config.batch_size, n))) for s in range(0, n, config.batch_size)]
    batches = [b for b in batches if len(b) >= 2]
    total, count = 0.0, 0
    for img, aud, flo in _loader(arrays.val_images, arrays.val_audio, arrays.val_flow, batches, config):
        total += float(_forward_loss(model, img, aud, flo, device)) * len(img)
        count += len(img)
    return total / max(count, 1)


def _initial_model(config: TrainConfig, init_model: RCGrad | None) -> RCGrad:
    torch.manual_seed(config.seed)
    if init_model is None:
        return build_model(config.model)
    if init_model.kind != "rcgrad":
        raise ValueError(f"init_model must be an RCGrad model, got {init_model.kind}")
    for name in ("width", "layer4_stride"):
        if getattr(init_model.config, name) != getattr(config.model, name):
            raise ValueError(f"init_model.{name}={getattr(init_model.config, name)} differs from the config's")
    init_model = init_model.cpu()
    if config.model.kind == "flowgrad_ic":
        model = FlowGradIC.from_rcgrad(init_model)
    elif config.model.kind == "flowgrad_en":
        model = FlowGradEN.from_rcgrad(init_model)
    else:
        model = build_model(config.model)
        model.load_state_dict(init_model.state_dict())
    # from_rcgrad copies the init config: apply this run's image size / sample rate / quirk flag.
    model.config = config.model
    return model


def train(config: TrainConfig, arrays: TrainArrays, out_dir: str | Path | None = None, *,
          resume: bool = True, progress: bool = True,
          init_model: RCGrad | None = None) -> tuple[RCGrad, list[dict[str, Any]]]:
    """Train a model contrastively; return the best epoch's model (eval mode) and the history.

    Parameters
    ----------
    config : TrainConfig
    arrays : TrainArrays
    out_dir : path, optional
        Where ``last.pt`` / ``best.pt`` go; None trains without checkpoints.
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists. It must come from the same config
        (``epochs`` and the runtime fields may differ: a larger ``epochs`` extends the run).
    progress : bool
        Show a tqdm bar with the running loss.
    init_model : RCGrad, optional
        Start from this (trained) RCGrad: FlowGrad-IC / EN are built with ``from_rcgrad``.

    Returns
    -------
    model : RCGrad (or subclass), eval mode, on the training device
    history : list of dict
        One dict per epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss`` (None without
        validation arrays), ``lr`` (at the start of the epoch), ``monitored``.
    """
    if config.model.uses_flow and arrays.flow is None:
        raise ValueError(f"{config.model.kind} needs TrainArrays.flow")
    try:
        with torch_threads(config.num_threads):
            return _train(config, arrays, out_dir, resume, progress, init_model)
    finally:
        release_unused()  # the freed activations' heap back to the OS before the next cell


def _payload(config: TrainConfig, epoch: int, model: RCGrad, history: list, **extra: Any) -> dict[str, Any]:
    from vssl_core import __version__

    return {"config": config.to_dict(), "version": __version__, "seed": config.seed, "epoch": epoch,
            "history": history, "model": model.state_dict(), **extra}


def _train(config: TrainConfig, arrays: TrainArrays, out_dir, resume: bool, progress: bool,
           init_model: RCGrad | None) -> tuple[RCGrad, list[dict[str, Any]]]:
    device = resolve_device(config.device)
    model = _initial_model(config, init_model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=config.plateau_factor,
                                                       patience=config.plateau_patience)
    history: list[dict[str, Any]] = []
    state = {"best": float("inf"), "best_epoch": 0, "bad_epochs": 0, "stopped": False}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    last = out / "last.pt" if out is not None else None
    if resume and last is not None and last.exists():
        ck = load_checkpoint(last)
        saved = TrainConfig.from_dict(ck["config"])
        if replace(saved, epochs=config.epochs).weights_key() != config.weights_key():
            raise data_error(last, "config", "was written by a different training config",
                             "use another out_dir, or resume=False to start over")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history, state, start = list(ck["history"]), dict(ck["state"]), int(ck["epoch"])
        best_state = load_checkpoint(out / "best.pt")["model"] if state["best_epoch"] > 0 else best_state
    n = len(arrays.images)
    for epoch in range(start, config.epochs):
        if state["stopped"]:
            break
        model.train()
        batches, flips = _epoch_plan(n, config, epoch)
        lr = opt.param_groups[0]["lr"]
        bar = tqdm(total=len(batches), desc=f"{config.model.kind} epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        running = RunningLoss(bar, len(batches), config.log_every)
        loader = _loader(arrays.images, arrays.audio, arrays.flow, batches, config)
        for step, (batch, (img, aud, flo)) in enumerate(zip(batches, loader)):
            if config.hflip:
                f = flips[batch]  # (n,) bool
                img = torch.where(f.view(-1, 1, 1, 1), img.flip(-1), img)
                if flo is not None:
                    flo = torch.where(f.view(-1, 1, 1, 1), flo.flip(-1), flo)
            running.step(opt, _forward_loss(model, img, aud, flo, device), len(batch), step)
        bar.close()
        train_loss = running.mean
        val_loss = _val_loss(model, arrays, config, device) if arrays.has_val else None
        monitored = val_loss if val_loss is not None else train_loss
        sched.step(monitored)
        if monitored < state["best"]:
            state.update(best=monitored, best_epoch=epoch + 1, bad_epochs=0)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out is not None:
                save_checkpoint(out / "best.pt", _payload(config, epoch + 1, model, history))
        else:
            state["bad_epochs"] += 1
            if state["bad_epochs"] >= config.early_stopping_patience:
                state["stopped"] = True
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                        "monitored": monitored})
        if out is not None:
            save_checkpoint(last, _payload(config, epoch + 1, model, history, optimizer=opt.state_dict(),
                                           scheduler=sched.state_dict(), state=state))
    model.load_state_dict(best_state)
    return model.eval(), history


# -- trained-model cache ---------------------------------------------------------------------------
def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 hex of a model's state (key names, dtypes, shapes and bytes, in key order)."""
    h = hashlib.sha256()
    for key, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _cache_key(config: TrainConfig, data_fingerprint: str, init_model: RCGrad | None) -> str:
    return fingerprint({"format": 1, "train": config.weights_key(), "data": data_fingerprint,
                         "init": model_fingerprint(init_model) if init_model is not None else None})


def _cache_location(config: TrainConfig, data_fingerprint: str, cache_root: str | Path | None,
                    init_model: RCGrad | None) -> tuple[Path, str, str]:
    from vssl_core.repro.paths import cache_dir

    root = Path(cache_root) if cache_root is not None else cache_dir() / "models"
    key = _cache_key(config, data_fingerprint, init_model)
    return root, f"{config.model.kind}-{key}", key


def cached_model(config: TrainConfig, data_fingerprint: str, cache_root: str | Path | None = None, *,
                 init_model: RCGrad | None = None) -> RCGrad | None:
    """The model :func:`cached_train` stored for (config, data, init), or None when there is none.

    Lets a caller skip loading the training arrays when the model is already trained.
    """
    root, name, _ = _cache_location(config, data_fingerprint, cache_root, init_model)
    final = root / name / "model.pt"
    if not final.exists():
        return None
    model, _ = load_model(final)
    return model


def cached_train(config: TrainConfig, arrays: TrainArrays, data_fingerprint: str,
                 cache_root: str | Path | None = None, *, progress: bool = True,
                 init_model: RCGrad | None = None) -> RCGrad:
    """Load the trained model for (config, data) from the cache, or train and store it.

    The folder is ``<cache_root>/<kind>-<key>/model.pt`` with ``key`` the
    :func:`vssl_core.repro.cache.fingerprint` (16 hex digits) of
    the weight-determining config fields, ``data_fingerprint`` (the caller's hash of the
    arrays' source) and the init model's weights. Default ``cache_root``:
    ``vssl_core.repro.paths.cache_dir() / "models"``. Training checkpoints live in
    ``<cache_root>/.work-<kind>-<key>`` while training (an interrupted run resumes) and are
    removed once ``model.pt`` is stored (atomically).

    Returns
    -------
    RCGrad (or subclass) in eval mode, on the CPU.
    """
    from vssl_core.repro.atomic import atomic_dir

    model = cached_model(config, data_fingerprint, cache_root, init_model=init_model)
    if model is not None:
        return model
    root, name, key = _cache_location(config, data_fingerprint, cache_root, init_model)
    work = root / f".work-{name}"
    model, history = train(config, arrays, work, resume=True, progress=progress, init_model=init_model)
    model = model.cpu()
    with atomic_dir(root / name) as tmp:
        save_model(tmp / "model.pt", model, train_config=config.to_dict(), seed=config.seed,
                   history=history, data_fingerprint=data_fingerprint, cache_key=key)
    shutil.rmtree(work, ignore_errors=True)
    return model
