"""Training across processes and GPUs: ``torchrun`` + DistributedDataParallel, one process per device.

:func:`vssl_core.training.loop.train` calls :func:`context` first: launched by ``torchrun`` (or
``srun torchrun``, or anything that sets ``WORLD_SIZE`` > 1, ``RANK`` and ``LOCAL_RANK`` and the
rendezvous variables), it joins the process group (NCCL on GPUs, gloo on CPUs) and trains with
DistributedDataParallel; otherwise it is the single-process loop, unchanged.

Conventions
-----------
- ``TrainConfig.batch_size`` is the **global** batch: the loop's ``epoch_plan`` is the single
  source of the order; every rank computes the same plan and takes its contiguous share of each
  batch (:func:`shard`), so 2 processes x 32 rows see exactly the batches of 1 process x 64, and a
  model's cache key does not depend on how many processes trained it.
- Objectives with in-batch negatives (contrastive, tri-map, similarity) gather the per-rank
  outputs across ranks **with gradients** (:func:`gather_rows`) and every rank computes the loss
  of the global batch. With DDP averaging the gradients this is the gradient of the
  single-process loss on the global batch: rank ``r`` receives ``W * dL/d(out_r)`` through the
  gather's backward (a sum over ranks) and DDP divides by ``W``.
- Batch statistics: under DDP every ``BatchNorm*d`` becomes a :class:`GlobalBatchNorm` (on CPU
  and GPU alike; ``torch.nn.SyncBatchNorm`` refuses CPU tensors), which normalises a training
  batch with the statistics of the **global** batch (two differentiable all-reduces per layer),
  and RCGrad's batch-standardised spectrogram a :class:`GlobalLogSpectrogram`, both while
  :func:`synced` is active: the training step and the BatchNorm recalibration. Elsewhere (eval
  mode, the per-epoch ``on_epoch`` check on rank 0) they are the plain layers. The returned
  model has its original classes back. What remains different from one process is float
  rounding (sums in another order); the equivalence test states its tolerance.
- Rank 0 writes the checkpoints and shows the progress; every rank resumes from the same
  ``last.pt`` (``out_dir`` must be on a filesystem that every node sees).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vssl_core.models.audio import LOG_EPS, LogSpectrogram, to_mono

__all__ = ["Context", "launched", "context", "shard", "gather_rows", "all_reduce_sum", "GlobalBatchNorm",
           "convert_batchnorm", "revert_batchnorm", "synced", "barrier", "is_main", "main_first",
           "broadcast_object", "all_gather_object"]


@dataclass(frozen=True)
class Context:
    """Where this process stands.

    Attributes
    ----------
    rank, world_size, local_rank : int
        ``(0, 1, 0)`` without ``torchrun``.
    backend : str or None
        "nccl", "gloo", or None (single process).
    group : ProcessGroup or None
        A group of every rank for the gathers and the BatchNorm statistics (kept apart from
        the group DDP reduces gradients on).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    group: Any = None

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` under NCCL, the CPU under gloo."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        if requested not in ("auto", "cpu"):
            raise ValueError(f"device {requested!r} with the gloo backend: gloo trains on the CPU "
                             "(launch on GPUs to use NCCL, or set device='auto')")
        return torch.device("cpu")


_CONTEXT: Context | None = None
_SYNC: list[Any] = [None]  # the group GlobalBatchNorm synchronises on, while `synced` is active


def launched() -> bool:
    """True when this process was started by ``torchrun`` (or alike) with more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def context() -> Context:
    """This process's :class:`Context`, joining the process group on the first call when
    :func:`launched` (NCCL when CUDA is available, else gloo)."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    if not launched():
        return Context()
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {var} is not set: launch with "
                               "`torchrun --nproc_per_node N ...` (or `srun torchrun ...`)")
    local_rank = int(os.environ["LOCAL_RANK"])
    if not dist.is_initialized():
        timeout = datetime.timedelta(minutes=int(os.environ.get("VSSL_DIST_TIMEOUT_MIN", "60")))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl", timeout=timeout, device_id=torch.device("cuda", local_rank))
        else:
            dist.init_process_group("gloo", timeout=timeout)
    backend = dist.get_backend()
    group = dist.new_group(backend=backend)
    _CONTEXT = Context(dist.get_rank(), dist.get_world_size(), local_rank, str(backend), group)
    return _CONTEXT


def is_main() -> bool:
    """True on rank 0, and in a single process."""
    return context().is_main


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    ctx = context()
    if ctx.is_distributed:
        dist.barrier(group=ctx.group)


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. building a cache), the other ranks after it finished."""
    ctx = context()
    if ctx.is_distributed and not ctx.is_main:
        dist.barrier(group=ctx.group)
    try:
        yield
    finally:
        if ctx.is_distributed and ctx.is_main:
            dist.barrier(group=ctx.group)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects)."""
    ctx = context()
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=ctx.group)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    ctx = context()
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj, group=ctx.group)
    return out


def shard(idx: np.ndarray, rank: int, world_size: int) -> tuple[np.ndarray, list[int]]:
    """This rank's contiguous share of a global batch, and every rank's count.

    Parameters
    ----------
    idx : ndarray of int, shape (B,)
        One batch of ``epoch_plan`` (sorted rows).
    rank, world_size : int

    Returns
    -------
    rows : ndarray of int, shape (counts[rank],)
        ``idx`` split into ``world_size`` contiguous parts whose sizes differ by at most one
        (``numpy.array_split``), so concatenating the parts in rank order gives ``idx`` back.
    counts : list of int, length world_size
    """
    parts = np.array_split(np.asarray(idx), world_size)
    return parts[rank], [len(p) for p in parts]


class _GatherRows(torch.autograd.Function):
    """All-gather of per-rank row blocks of possibly different sizes, differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: tuple[int, ...], rank: int, group: Any) -> torch.Tensor:
        ctx.counts, ctx.rank, ctx.group = counts, rank, group
        m = max(counts)
        x = x.contiguous()
        if x.shape[0] < m:
            x = torch.cat([x, x.new_zeros((m - x.shape[0], *x.shape[1:]))])
        parts = [torch.empty_like(x) for _ in counts]
        dist.all_gather(parts, x, group=group)
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # d(sum over ranks of their losses)/d(this rank's rows): the sum of every rank's gradient
        g = grad.contiguous().clone()
        dist.all_reduce(g, group=ctx.group)
        start = sum(ctx.counts[:ctx.rank])
        return g[start:start + ctx.counts[ctx.rank]], None, None, None


def gather_rows(x: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """The rows of every rank, concatenated in rank order, keeping the autograd graph.

    Parameters
    ----------
    x : Tensor, shape (counts[rank], ...)
        This rank's rows (e.g. embeddings ``(n, D)`` or feature maps ``(n, D, h, w)``).
    counts : sequence of int
        Rows of every rank (:func:`shard`).

    Returns
    -------
    Tensor, shape (sum(counts), ...)
        ``x`` itself in a single process. The backward pass hands each rank the sum over ranks
        of the gradients of its rows (every rank's loss uses every rank's rows).
    """
    ctx = context()
    if not ctx.is_distributed:
        return x
    if x.shape[0] != counts[ctx.rank]:
        raise ValueError(f"rank {ctx.rank} holds {x.shape[0]} rows, the counts say {counts[ctx.rank]}")
    return _GatherRows.apply(x, tuple(int(c) for c in counts), ctx.rank, ctx.group)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = x.contiguous().clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.contiguous().clone()
        dist.all_reduce(g, group=ctx.group)
        return g, None


def all_reduce_sum(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Sum of ``x`` over ranks, differentiable (``x`` itself in a single process)."""
    ctx = context()
    if not ctx.is_distributed:
        return x
    return _AllReduceSum.apply(x, group if group is not None else ctx.group)


# ----------------------------------------------------------------------------------- BatchNorm
class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm (any dimension) that, inside :func:`synced`, normalises a training batch with
    the mean and variance of the batch of **every** rank (and updates its running statistics with
    them); outside, or in eval mode, exactly ``torch.nn.BatchNorm*d``.

    Same parameters, buffers and state-dict keys as the BatchNorm it replaces
    (:func:`convert_batchnorm`). Statistics are computed in float32 in two passes (mean, then the
    centred sum of squares), each one all-reduce of ``C`` (+1) numbers.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = _SYNC[0]
        if group is None or not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.new_full((1,), x.numel() // max(x.shape[1], 1))])
        tot = all_reduce_sum(local, group)
        n = tot[-1].detach()
        if float(n) < 2:
            raise ValueError(f"GlobalBatchNorm needs more than 1 value per channel over all ranks, got {int(n)}")
        mean = tot[:-1] / n
        xc = xf - mean.view(shape)
        var = all_reduce_sum((xc * xc).sum(dims), group) / n  # biased, for normalising
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(mean.detach().to(self.running_mean.dtype), alpha=f)
                unbiased = var.detach() * (n / (n - 1))
                self.running_var.mul_(1 - f).add_(unbiased.to(self.running_var.dtype), alpha=f)
        return y.to(x.dtype)


class GlobalLogSpectrogram(LogSpectrogram):
    """RCGrad's audio front end whose batch standardisation (``per_sample=False``: the mean and
    standard deviation of the whole batch) uses the global batch inside :func:`synced`; outside,
    or with ``per_sample=True``, exactly :class:`~vssl_core.models.audio.LogSpectrogram`."""

    def forward(self, wave: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        group = _SYNC[0]
        if group is None or per_sample:
            return super().forward(wave)
        x = to_mono(wave)
        x = x if x.is_floating_point() else x.float()
        spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.hop, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)  # (n, F, frames)
        logp = torch.log(spec.abs().pow(2) + LOG_EPS).unsqueeze(1)  # (n, 1, F, frames)
        # the waveform needs no gradient: plain all-reduces of (sum, count), then of the centred squares
        with torch.no_grad():
            tot = torch.stack([logp.double().sum(), torch.tensor(float(logp.numel()), dtype=torch.float64,
                                                                   device=logp.device)])
            dist.all_reduce(tot, group=group)
            mean = tot[0] / tot[1]
            sq = ((logp.double() - mean) ** 2).sum()
            dist.all_reduce(sq, group=group)
            std = torch.sqrt(sq / (tot[1] - 1))  # unbiased, as Tensor.std
        return (logp - mean.to(logp.dtype)) / std.to(logp.dtype).clamp_min(1e-8)


#: Module classes that compute batch statistics, and their global-batch replacements.
def _replacement(m: nn.Module) -> type | None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, GlobalBatchNorm):
        return GlobalBatchNorm
    if type(m) is LogSpectrogram:
        return GlobalLogSpectrogram
    return None


def convert_batchnorm(model: nn.Module) -> dict[str, type]:
    """Make every layer of ``model`` that uses batch statistics use the global batch's under
    :func:`synced`: each ``BatchNorm*d`` becomes a :class:`GlobalBatchNorm`, each
    :class:`~vssl_core.models.audio.LogSpectrogram` a :class:`GlobalLogSpectrogram` (in place, by
    class: parameters, buffers, state-dict keys and parameter order are unchanged). Returns
    ``{module name: original class}`` for :func:`revert_batchnorm`."""
    originals: dict[str, type] = {}
    for name, m in model.named_modules():
        new = _replacement(m)
        if new is not None:
            originals[name] = type(m)
            m.__class__ = new
    return originals


def revert_batchnorm(model: nn.Module, originals: dict[str, type]) -> nn.Module:
    """Give back the classes that :func:`convert_batchnorm` replaced (in place)."""
    modules = dict(model.named_modules())
    for name, cls in originals.items():
        modules[name].__class__ = cls
    return model


@contextlib.contextmanager
def synced() -> Iterator[None]:
    """Within the block, :class:`GlobalBatchNorm` layers in training mode use global statistics
    (every rank must then run the same forward passes: the training step, the recalibration)."""
    ctx = context()
    old = _SYNC[0]
    _SYNC[0] = ctx.group if ctx.is_distributed else None
    try:
        yield
    finally:
        _SYNC[0] = old
