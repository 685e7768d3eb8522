"""One training loop for every model of the companion, checked on held-out data every epoch.

``train(model, config, arrays, val)`` trains RCGrad, FlowGrad-IC/-EN, LVS, Hear The Flow and
Oya et al.'s model alike; what differs per family (inputs, loss, pair scores) is its
:mod:`~vssl_core.training.objectives` objective.

Conventions
-----------
- Data: a :class:`~vssl_core.data.arrays.TrainingArrays` (images ``(N, S, S, 3)`` uint8, audio
  ``(N, C, T)`` float32 at the model's rate, flow magnitude or field as the family needs) for
  training and another for **validation**: windows of clips that training never sees (split
  by clip, :func:`vssl_core.data.arrays.split_clips`), never the evaluation clips.
- Every epoch: the training loss (mean over its pairs), then BatchNorm recalibration
  (:mod:`~vssl_core.training.batchnorm`, on ``config.bn_batches`` fixed training batches), then on
  the validation windows, in eval mode, the loss and the audio-to-image retrieval top-1 within
  chunks of ``batch_size`` (chance ``1 / batch_size``), then ``on_epoch(model)`` (e.g. the
  held-out localisation score of validation pairs), all in the epoch's history row.
- Checkpoint choice and early stopping on the validation loss (without validation arrays, on
  the training loss); ``schedule="plateau"`` lowers the learning rate on a plateau of the same
  quantity. The returned model holds the best epoch's weights and recalibrated statistics.
- Optimiser: Adam on the parameters with ``requires_grad`` (a frozen encoder is left out).
- Augmentation: random horizontal flip (p = 0.5) of image and flow together.
- Determinism: the model's initial weights are the caller's (build it after
  ``torch.manual_seed``); epoch ``e`` draws its order and flips from a generator seeded with
  ``(seed, e)``; the recalibration batches are a fixed seeded draw. An interrupted run resumed
  from ``last.pt`` ends with the same weights as an uninterrupted one (same machine).
- Checkpoints (``out_dir/last.pt`` every epoch, ``out_dir/best.pt`` on improvement) hold only
  plain types and tensors, written atomically (loadable with ``torch.load(weights_only=True)``).
- Device: ``"auto"`` uses CUDA when present, else the CPU; the returned model is on the CPU.
- Data are read a batch at a time: file-backed arrays (the cached sets' memory-mapped columns)
  are read through :func:`vssl_core.data.streaming.as_streaming` (``pread`` of the batch's rows),
  so training, the recalibration and validation never hold more than a batch of windows.
- Across processes: launched by ``torchrun`` (``WORLD_SIZE`` > 1), the same loop trains with
  DistributedDataParallel (:mod:`~vssl_core.training.distributed`): ``batch_size`` is the global
  batch, each rank takes its share of every batch of :func:`epoch_plan`, in-batch negatives are
  gathered across ranks with gradients, BatchNorm uses global-batch statistics, validation
  chunks are split across ranks, and rank 0 writes the checkpoints and shows the progress. One
  process (or ``torchrun --nproc_per_node 1``) runs exactly the single-process loop.
- Mixed precision: ``bf16=True`` runs the forward passes under ``torch.autocast`` with bfloat16
  (CUDA devices that support it, and CPUs); off by default.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vssl_core.data.streaming import as_streaming
from vssl_core.errors import data_error
from vssl_core.models.checkpoints import load_checkpoint, save_checkpoint
from vssl_core.repro.config import PlainConfig
from vssl_core.repro.memory import release_unused
from vssl_core.training import distributed
from vssl_core.training.batchnorm import recalibrate
from vssl_core.training.objectives import Objective, objective_for

__all__ = ["TrainConfig", "train", "param_groups", "resolve_device", "torch_threads", "epoch_plan", "RUNTIME_FIELDS"]

#: Fields that do not change the trained weights (left out of resume checks and cache keys).
RUNTIME_FIELDS = ("device", "log_every", "num_threads")
#: Fields added after weights were shipped: left out of :meth:`TrainConfig.weights_key` at these
#: values, so that every existing model keeps its key.
KEY_DEFAULTS = {"bf16": False, "lr_multipliers": ()}
SCHEDULES = ("plateau", "constant")


@dataclass(frozen=True)
class TrainConfig(PlainConfig):
    """One training run (the model's own config is separate).

    Attributes
    ----------
    epochs : int
        Maximum number of epochs (early stopping may end sooner).
    batch_size : int
        Pairs per step: the in-batch negatives of every loss here. A last batch of one pair is
        dropped. Under ``torchrun`` this is the global batch, shared by the processes.
    lr, weight_decay : float
        Adam.
    seed : int
    schedule : {"plateau", "constant"}
        ``"plateau"``: ReduceLROnPlateau (``plateau_factor``, ``plateau_patience``) on the
        monitored loss.
    plateau_factor, plateau_patience : float, int
    early_stopping_patience : int
        Stop after this many epochs without improvement of the monitored loss.
    hflip : bool
        Random horizontal flip of image and flow.
    bn_batches : int
        Training batches for the BatchNorm recalibration after each epoch (0: none).
    device : str
        "auto" (CUDA if available, else CPU), "cpu", "cuda", ...
    log_every : int
        Progress-bar update period (steps).
    num_threads : int or None
        ``torch.set_num_threads`` while training (None: torch's default).
    bf16 : bool
        Forward passes under bfloat16 autocast (CUDA with bf16 support, or the CPU); changes the
        weights, so it is part of the weights key when True.
    lr_multipliers : tuple of (str, float)
        ``(name prefix, factor)`` pairs: parameters whose name starts with a prefix (the first
        that matches) train at ``lr * factor``, e.g. ``(("flow_encoder.", 10.0),)`` for a new
        encoder beside pretrained ones. Empty (the default, not part of the weights key): one
        learning rate.
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    schedule: str = "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    early_stopping_patience: int = 10
    hflip: bool = True
    bn_batches: int = 16
    device: str = "auto"
    log_every: int = 10
    num_threads: int | None = None
    bf16: bool = False
    lr_multipliers: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        pairs = tuple((str(prefix), float(factor)) for prefix, factor in self.lr_multipliers)
        if any(not prefix or not factor > 0 for prefix, factor in pairs):
            raise ValueError(f"TrainConfig.lr_multipliers needs (non-empty prefix, factor > 0) pairs, "
                             f"got {self.lr_multipliers!r}")
        object.__setattr__(self, "lr_multipliers", pairs)
        if self.epochs < 1 or self.batch_size < 2 or not self.lr > 0:
            raise ValueError(f"invalid TrainConfig: epochs {self.epochs}, batch_size {self.batch_size}, lr {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.bn_batches < 0 or self.early_stopping_patience < 1:
            raise ValueError(f"invalid TrainConfig: bn_batches {self.bn_batches}, "
                             f"early_stopping_patience {self.early_stopping_patience}")

    @classmethod
    def from_setup(cls, setup: Any, epochs: int | None = None, lr: float | None = None) -> TrainConfig:
        """The run a study's Setup asks for: its ``batch_size``, ``seed``, ``patience`` (early
        stopping), ``num_threads``, and ``epochs`` / ``lr`` unless given here."""
        return cls(epochs=setup.epochs if epochs is None else epochs, batch_size=setup.batch_size,
                   lr=setup.lr if lr is None else lr, seed=setup.seed, early_stopping_patience=setup.patience,
                   num_threads=setup.num_threads)

    def weights_key(self) -> dict[str, Any]:
        """The fields that determine the trained weights (no device, threads, logging; the
        fields of :data:`KEY_DEFAULTS` only when they differ from those values)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in RUNTIME_FIELDS and not (k in KEY_DEFAULTS and v == KEY_DEFAULTS[k])}


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


def epoch_plan(n: int, config: TrainConfig, epoch: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Batches (sorted index arrays) and per-sample flip flags ``(n,)`` of one epoch."""
    g = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).numpy()
    flips = (torch.rand(n, generator=g) < 0.5).numpy() if config.hflip else np.zeros(n, bool)
    bs = config.batch_size
    batches = [np.sort(perm[s:s + bs]) for s in range(0, n, bs)]
    return [b for b in batches if len(b) >= 2], flips


def _recalibration_rows(n: int, config: TrainConfig) -> list[np.ndarray]:
    rng = np.random.default_rng(int(config.seed) + 7_919)
    order = rng.permutation(n)
    bs = config.batch_size
    rows = [np.sort(order[s:s + bs]) for s in range(0, min(n, config.bn_batches * bs), bs)]
    return [r for r in rows if len(r) >= 2]


def _to(batch, device):
    return batch.to(device) if device.type != "cpu" else batch


def _autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device`` when ``enabled`` (a no-op context otherwise)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


@torch.no_grad()
def _validate(model: nn.Module, objective: Objective, val: Any, config: TrainConfig, device,
              ctx: distributed.Context | None = None, amp: bool = False) -> dict[str, float]:
    """Validation loss (pair-weighted mean) and audio-to-image top-1 within chunks of batch_size.

    Across processes each rank scores whole chunks (chunk ``k`` on rank ``k mod W``) and the
    sums are all-reduced: the same chunks, hence the same metrics, as one process."""
    model.eval()
    n, bs = len(val), config.batch_size
    total, count, hits, ranked = 0.0, 0, 0, 0
    starts = list(range(0, n - 1, bs))
    if ctx is not None and ctx.is_distributed:
        starts = starts[ctx.rank::ctx.world_size]
    for s in starts:
        idx = np.arange(s, min(s + bs, n))
        if len(idx) < 2:
            continue
        batch = _to(objective.batch(model, val, idx), device)
        with _autocast(device, amp):
            total += float(objective.loss(model, batch)) * len(idx)
            count += len(idx)
            scores = objective.pair_scores(model, batch) if len(idx) == bs else None  # (images, sounds)
        if scores is not None:
            hits += int((scores.argmax(0) == torch.arange(bs, device=scores.device)).sum())
            ranked += bs
    if ctx is not None and ctx.is_distributed:
        sums = torch.tensor([total, count, hits, ranked], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(sums, group=ctx.group)
        total, count, hits, ranked = float(sums[0]), int(sums[1]), int(sums[2]), int(sums[3])
    out = {"val_loss": total / max(count, 1)}
    if ranked:
        out.update(val_retrieval=hits / ranked, retrieval_chance=1.0 / bs)
    return out


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _payload(config: TrainConfig, model: nn.Module, epoch: int, history: list, **extra: Any) -> dict[str, Any]:
    from vssl_core import __version__

    cfg = getattr(model, "config", None)
    return {"train_config": config.to_dict(), "model_class": type(model).__name__,
            "model_config": cfg.to_dict() if hasattr(cfg, "to_dict") else None, "version": __version__,
            "seed": config.seed, "epoch": epoch, "history": history, "model": _state(model), **extra}


def train(model: nn.Module, config: TrainConfig, arrays: Any, val: Any | None = None,
          out_dir: str | Path | None = None, *, resume: bool = True, progress: bool = True,
          on_epoch: Callable[[nn.Module], Mapping[str, float]] | None = None,
          desc: str | None = None) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train ``model`` (in place) and return it with the best epoch's weights, and the history.

    Parameters
    ----------
    model : RCGrad (or a FlowGrad subclass), LVS, HTF or OyaNet
        The initial model (random, or with its prior loaded).
    config : TrainConfig
    arrays, val : TrainingArrays
        Training windows, and validation windows of other clips (None: no validation; the
        training loss is then monitored).
    out_dir : path, optional
        ``last.pt`` / ``best.pt`` go there; None trains without checkpoints.
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists (same model and weight-determining
        config; ``epochs`` may be larger to extend a run).
    progress : bool
        tqdm bars (steps with the running loss; the epoch line with the validation metrics).
    on_epoch : callable model -> {name: float}, optional
        Extra held-out metrics per epoch (the model is in eval mode, recalibrated).
    desc : str, optional
        Progress-bar label (default: the model's class name).

    Returns
    -------
    model : eval mode, on the CPU, best epoch's weights
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_retrieval``,
        ``retrieval_chance``, ``lr``, ``seconds``, ``monitored``, ``best`` and the ``on_epoch``
        metrics.
    """
    if len(arrays) < 2:
        raise ValueError(f"need at least 2 training pairs (in-batch negatives), got {len(arrays)}")
    try:
        with torch_threads(config.num_threads):
            return _train(model, config, arrays, val, out_dir, resume, progress, on_epoch, desc)
    finally:
        release_unused()  # the freed activations' heap back to the OS before the next cell


class _Step(nn.Module):
    """The per-rank training step as one module, so that DistributedDataParallel wraps the whole
    loss (the families' losses are not their ``forward``)."""

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch, counts: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        if counts is None:  # a batch smaller than the world: every rank computes all of it
            loss = self.objective.loss(self.model, batch)
            return loss, loss.detach()
        return self.objective.global_loss(self.model, batch, counts)


def _local_rows(idx: np.ndarray, ctx: distributed.Context) -> tuple[np.ndarray, list[int] | None]:
    if len(idx) < ctx.world_size:
        return idx, None
    return distributed.shard(idx, ctx.rank, ctx.world_size)


def _prefetched(make: Callable[[Any], Any], items: list, enabled: bool) -> Iterator[Any]:
    """``make(item)`` for every item; with ``enabled``, the next one is built in a thread while
    the caller uses the current one (the GPU trains while the CPU reads and resizes)."""
    if not enabled:
        for item in items:
            yield make(item)
        return
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(make, items[0]) if items else None
        for k in range(len(items)):
            cur = nxt.result()
            nxt = pool.submit(make, items[k + 1]) if k + 1 < len(items) else None
            yield cur


def _resume_state(last: Path | None, resume: bool, ctx: distributed.Context) -> dict[str, Any] | None:
    """The checkpoint to resume from (every rank reads the same ``last.pt``), or None."""
    ck = load_checkpoint(last) if resume and last is not None and last.exists() else None
    if ctx.is_distributed:
        seen = distributed.all_gather_object(None if ck is None else int(ck["epoch"]))
        if len(set(seen)) != 1:
            raise data_error(last, "epoch", f"ranks see different checkpoints (epoch per rank: {seen})",
                             "put out_dir on a filesystem that every node sees (or resume=False)")
    return ck


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Adam's parameter groups: the trainable parameters at ``config.lr`` first, then one group
    per factor of ``config.lr_multipliers`` (in the order given; empty groups left out)."""
    factors = [1.0, *(factor for _, factor in config.lr_multipliers)]
    groups: list[list[nn.Parameter]] = [[] for _ in factors]
    for name, p in model.named_parameters():
        if p.requires_grad:
            hit = next((i + 1 for i, (prefix, _) in enumerate(config.lr_multipliers) if name.startswith(prefix)), 0)
            groups[hit].append(p)
    return [{"params": ps, "lr": config.lr * f} for ps, f in zip(groups, factors) if ps or f == 1.0]


def _train(model, config, arrays, val, out_dir, resume, progress, on_epoch, desc):
    ctx = distributed.context()
    device = ctx.device(config.device) if ctx.is_distributed else resolve_device(config.device)
    amp = bool(config.bf16) and _bf16_supported(device)
    if config.bf16 and not amp:
        warnings.warn(f"bf16 autocast is not supported on {device}: training in float32", stacklevel=3)
    arrays = as_streaming(arrays)
    val = as_streaming(val) if val is not None else None
    objective = objective_for(model)
    bn_classes = distributed.convert_batchnorm(model) if ctx.is_distributed else {}
    model = model.to(device)
    opt = torch.optim.Adam(param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=config.plateau_factor,
                                                       patience=config.plateau_patience)
    history: list[dict[str, Any]] = []
    state = {"best": float("inf"), "best_epoch": 0, "bad_epochs": 0, "stopped": False}
    best_state = _state(model)
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    last = out / "last.pt" if out is not None else None
    ck = _resume_state(last, resume, ctx)
    if ck is not None:
        saved = TrainConfig.from_dict(ck["train_config"])
        if replace(saved, epochs=config.epochs).weights_key() != config.weights_key():
            raise data_error(last, "train_config", "was written by a different training config",
                             "use another out_dir, or resume=False to start over")
        if ck.get("model_class") != type(model).__name__:
            raise data_error(last, "model_class", f"was written for a {ck.get('model_class')}",
                             "use another out_dir, or resume=False to start over")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history, state, start = list(ck["history"]), dict(ck["state"]), int(ck["epoch"])
        best_state = ck["best_model"]
    step_module = None
    if ctx.is_distributed:
        with warnings.catch_warnings():
            # broadcast_buffers=False: GlobalBatchNorm keeps the running statistics equal on every rank
            warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
            step_module = torch.nn.parallel.DistributedDataParallel(_Step(model, objective), device_ids=None,
                                                                    broadcast_buffers=False)
        # 1x1 convolutions' gradients come channels-last: DDP copies them into its buckets (harmless)
        warnings.filterwarnings("ignore", "Grad strides do not match bucket view strides", UserWarning)
    name = desc or type(model).__name__
    progress = progress and ctx.is_main
    writes = out is not None and ctx.is_main
    recal_rows = _recalibration_rows(len(arrays), config)
    epochs = tqdm(range(start, config.epochs), desc=name, disable=not progress, leave=True,
                  initial=start, total=config.epochs, unit="epoch")
    for epoch in epochs:
        if state["stopped"]:
            break
        t0 = time.perf_counter()
        model.train()
        batches, flips = epoch_plan(len(arrays), config, epoch)
        lr = opt.param_groups[0]["lr"]
        total, count = 0.0, 0
        steps = tqdm(batches, desc=f"{name} epoch {epoch + 1}/{config.epochs}", disable=not progress,
                     leave=False, unit="step")
        if not ctx.is_distributed:
            for step, idx in enumerate(steps):
                batch = _to(objective.batch(model, arrays, idx, flips[idx]), device)
                with _autocast(device, amp):
                    loss = objective.loss(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                if (step + 1) % config.log_every == 0:
                    steps.set_postfix(loss=f"{total / count:.4f}")
        else:
            def make(idx):
                rows, counts = _local_rows(idx, ctx)
                return _to(objective.batch(model, arrays, rows, flips[rows]), device), counts
            for step, (idx, (batch, counts)) in enumerate(zip(steps, _prefetched(make, batches, device.type == "cuda"))):
                with distributed.synced(), _autocast(device, amp):
                    loss, value = step_module(batch, counts)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(value) * len(idx)
                count += len(idx)
                if (step + 1) % config.log_every == 0:
                    steps.set_postfix(loss=f"{total / count:.4f}")
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "lr": lr,
                               "steps": len(batches)}
        if config.bn_batches:
            def recal_batch(r):
                rows = _local_rows(r, ctx)[0] if ctx.is_distributed else r
                return _to(objective.batch(model, arrays, rows), device)

            def forward(m, b):
                with _autocast(device, amp):
                    return objective.forward(m, b)
            with distributed.synced():
                recalibrate(model, (recal_batch(r) for r in recal_rows), forward if amp else objective.forward)
        model.eval()
        if val is not None and len(val) >= 2:
            row.update(_validate(model, objective, val, config, device, ctx, amp))
        if on_epoch is not None and ctx.is_main:
            row.update({k: float(v) for k, v in on_epoch(model).items()})
        if ctx.is_distributed:
            row = distributed.broadcast_object(row)  # rank 0's on_epoch metrics for every rank
        monitored = row.get("val_loss", row["train_loss"])
        if config.schedule == "plateau":
            sched.step(monitored)
        improved = monitored < state["best"]
        if improved:
            state.update(best=monitored, best_epoch=epoch + 1, bad_epochs=0)
            best_state = _state(model)
            if writes:
                save_checkpoint(out / "best.pt", _payload(config, model, epoch + 1, history + [row]))
        else:
            state["bad_epochs"] += 1
            state["stopped"] = state["bad_epochs"] >= config.early_stopping_patience
        row.update(monitored=monitored, best=improved, seconds=round(time.perf_counter() - t0, 1))
        history.append(row)
        epochs.set_postfix({k: f"{row[k]:.3f}" for k in ("train_loss", "val_loss", "val_retrieval") if k in row})
        if writes:
            save_checkpoint(last, _payload(config, model, epoch + 1, history, optimizer=opt.state_dict(),
                                           scheduler=sched.state_dict(), state=state, best_model=best_state))
    epochs.close()
    if ctx.is_distributed:
        del step_module
        distributed.barrier()  # rank 0's last checkpoint is on disk before any rank goes on
        distributed.revert_batchnorm(model, bn_classes)
    model.load_state_dict(best_state)
    return model.cpu().eval(), history
