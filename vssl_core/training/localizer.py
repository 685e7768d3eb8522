"""Training of the localiser models (LVS, Hear The Flow, Oya et al.) on in-memory arrays.

The RCGrad family has its own loop (:mod:`vssl_core.training.contrastive`: InfoNCE, plateau schedule, early
stopping). This module is the small generic loop for models that carry their own loss:

- :class:`~vssl_core.models.lvs.LVS` -- ``model.loss(model(images, spec))`` (tri-map loss);
- :class:`~vssl_core.models.htf.HTF` -- ``model.loss(model(images, spec, flow_field))``;
- :class:`~vssl_core.models.oya.OyaNet` -- ``model.similarity_loss(images, wave).loss``.

Conventions
-----------
- Data come as a :class:`LocalizerArrays` of NumPy arrays: images ``(N, S, S, 3)`` uint8 RGB,
  audio ``(N, C, T)`` float32 waveforms in [-1, 1] at the model's ``config.audio_sr``, and for
  HTF the optical-flow field ``(N, S, S, 2)`` float32 = (dx, dy) in px per frame step at the
  image's resolution. Images and flow are resized (bilinear) to ``config.image_size``; flow
  values are not rescaled (Hear The Flow feeds the raw field; docs/conventions.md, "LVS and Hear The Flow").
- A batch becomes model inputs through :func:`inputs` (one adapter per model family) and a
  scalar loss through :func:`batch_loss` (the model's own loss API). Batches of one pair are
  dropped: every loss here needs in-batch negatives.
- Optimiser: Adam on the parameters with ``requires_grad`` only (HTF's frozen image encoder is
  left out; its BatchNorm statistics stay frozen because ``HTF.train()`` keeps it in eval
  mode). Constant learning rate, no early stopping; the returned model is the last epoch's.
- Augmentation: random horizontal flip (p = 0.5 per sample) of image and flow together
  (:func:`flip_horizontal`): the flow field is mirrored and its dx channel negated. The audio
  is used mono (channels are averaged by every front end), so it is left unchanged.
- Determinism: epoch ``e`` draws its sample order and flips from a ``torch.Generator`` seeded
  with ``(seed, e)`` (the plan of :mod:`vssl_core.training.contrastive`), so a run resumed from its last
  checkpoint ends with the same weights as an uninterrupted one. The model's initial weights
  are the caller's: build it after ``torch.manual_seed`` (:func:`cached_train_localizer`
  does).
- Checkpoints: ``out_dir/last.pt``, rewritten atomically after every epoch, holds only plain
  types and tensors (loadable with ``torch.load(weights_only=True)``): the training config as
  a dict, the model class name and config dict, ``vssl_core.__version__``, seed, epoch,
  history, model and optimizer state.
- Threads: torch's thread count is changed only when ``num_threads`` is set (then restored).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vssl_core.repro.cache import fingerprint
from vssl_core.models.checkpoints import load_checkpoint, save_checkpoint, save_model
from vssl_core.errors import data_error
from vssl_core.repro.memory import release_unused
from vssl_core.models.htf import HTF, prepare_flow_field
from vssl_core.models.lvs import LVS, prepare_lvs_audio
from vssl_core.models.oya import OyaNet
from vssl_core.models.rcgrad import prepare_audio, prepare_images
# Private helpers of the RCGrad loop, reused rather than copied: the seeded per-epoch plan
# (it reads only ``seed`` and ``batch_size`` of the config it is given).
from vssl_core.training.contrastive import _epoch_plan, model_fingerprint, resolve_device, torch_threads, without, RunningLoss

__all__ = ["LocalizerTrainConfig", "LocalizerArrays", "flip_horizontal", "inputs", "batch_loss",
           "train_localizer", "cached_train_localizer"]

Localizer = LVS | HTF | OyaNet

# Fields that do not change the trained weights (left out of resume checks and cache keys).
_RUNTIME_FIELDS = ("device", "num_threads", "log_every")


@dataclass(frozen=True)
class LocalizerTrainConfig:
    """One training run of a localiser model.

    Attributes
    ----------
    epochs : int
        Number of epochs.
    batch_size : int
        Pairs per step (the in-batch negatives of the loss); a last batch of one pair is dropped.
    lr, weight_decay : float
        Adam parameters (Oya et al. supp. A: lr 1e-4; LVS / HTF: 1e-4).
    seed : int
        Seeds the sample order and the flips.
    device : str
        "auto" (cuda if available, else cpu), "cpu", "cuda", ...
    hflip : bool
        Random horizontal flip (p = 0.5) of image and flow field together.
    num_threads : int or None
        ``torch.set_num_threads`` during training (None: leave torch's setting).
    log_every : int
        Update the progress bar's loss every this many steps.
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    hflip: bool = True
    num_threads: int | None = None
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"invalid LocalizerTrainConfig: epochs {self.epochs}, batch_size {self.batch_size}, "
                             f"lr {self.lr}, weight_decay {self.weight_decay}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"LocalizerTrainConfig.num_threads must be >= 1 or None, got {self.num_threads}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocalizerTrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown LocalizerTrainConfig fields {sorted(unknown)}")
        return cls(**dict(d))

    def weights_key(self) -> dict[str, Any]:
        """The fields that determine the trained weights (no device, threads, logging)."""
        return without(self.to_dict(), _RUNTIME_FIELDS)


@dataclass(frozen=True)
class LocalizerArrays:
    """Training pairs as NumPy arrays.

    Attributes
    ----------
    images : np.ndarray, uint8, shape (N, S, S, 3)
        RGB frames.
    audio : np.ndarray, float32, shape (N, C, T)
        Waveforms in [-1, 1] at the model's ``config.audio_sr``.
    flow_field : np.ndarray, float32, shape (N, S, S, 2), or None
        Optical flow (dx, dy) in px per frame step, on the images' pixel grid (HTF only).
    """

    images: np.ndarray
    audio: np.ndarray
    flow_field: np.ndarray | None = None

    def __post_init__(self) -> None:
        im, au, fl = self.images, self.audio, self.flow_field
        if im.ndim != 4 or im.shape[-1] != 3 or im.dtype != np.uint8:
            raise ValueError(f"images must be (N, S, S, 3) uint8, got {im.dtype} {im.shape}")
        if au.ndim != 3 or not np.issubdtype(au.dtype, np.floating):
            raise ValueError(f"audio must be (N, C, T) float waveforms, got {au.dtype} {au.shape}")
        if len(au) != len(im):
            raise ValueError(f"{len(im)} images but {len(au)} audio clips")
        if fl is not None and (fl.ndim != 4 or fl.shape != (*im.shape[:3], 2)):
            raise ValueError(f"flow_field must be (N, S, S, 2) matching the images {im.shape[:3]}, got {fl.shape}")

    def __len__(self) -> int:
        return len(self.images)


# -- batch -> model inputs -------------------------------------------------------------------------
def flip_horizontal(images: torch.Tensor, flow: torch.Tensor | None, flip: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror the selected samples left-right; a mirrored flow field gets ``dx -> -dx``.

    Parameters
    ----------
    images : Tensor, shape (N, 3, H, W)
    flow : Tensor, shape (N, 2, H, W) = (dx, dy), or None
    flip : bool Tensor, shape (N,)
        True for the samples to mirror.

    Returns
    -------
    images, flow : Tensors of the input shapes (new tensors; the inputs are not modified)
    """
    f = flip.to(device=images.device, dtype=torch.bool).view(-1, 1, 1, 1)
    images = torch.where(f, images.flip(-1), images)
    if flow is not None:
        if flow.ndim != 4 or flow.shape[1] != 2:
            raise ValueError(f"flow must be the (N, 2, H, W) field (dx, dy), got {tuple(flow.shape)}")
        sign = torch.tensor([-1.0, 1.0], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
        flow = torch.where(f, flow.flip(-1) * sign, flow)
    return images, flow


def inputs(model: Localizer, images: torch.Tensor, audio: torch.Tensor | np.ndarray,
           flow: torch.Tensor | None) -> tuple[Any, ...]:
    """The positional arguments of ``model`` for one batch.

    Parameters
    ----------
    model : LVS, HTF or OyaNet
    images : Tensor, shape (N, 3, s, s), floats in [0, 1]
    audio : Tensor or ndarray, shape (N, C, T)
        Waveforms at ``model.config.audio_sr``.
    flow : Tensor, shape (N, 2, s, s), or None
        Flow field (dx, dy) px/frame; needed by an HTF model with a flow encoder.

    Returns
    -------
    tuple
        LVS: ``(images, spec)``; HTF: ``(images, spec, flow)`` (``flow`` None for
        ``flow_encoder="none"``); OyaNet: ``(images, wave)``. ``spec`` is the
        ``(N, 1, 257, frames)`` LVS spectrogram, computed on the CPU and moved to the images'
        device.

    Raises
    ------
    TypeError
        For any other model type.
    """
    if isinstance(model, OyaNet):
        return images, torch.as_tensor(audio).to(images.device)
    if isinstance(model, (LVS, HTF)):
        waves = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        spec = prepare_lvs_audio(waves, model.config.audio_sr).to(images.device)
        if isinstance(model, LVS):
            return images, spec
        if not model.config.uses_flow:
            return images, spec, None
        if flow is None:
            raise ValueError(f"HTF with flow_encoder={model.config.flow_encoder!r} needs the flow field; got None")
        return images, spec, flow
    raise TypeError(f"no input adapter for {type(model).__name__}: expected LVS, HTF or OyaNet")


def batch_loss(model: Localizer, args: tuple[Any, ...]) -> torch.Tensor:
    """Scalar training loss of one batch through the model's own loss API.

    ``args`` comes from :func:`inputs`. LVS / HTF: ``model.loss(model(*args))`` (tri-map loss);
    OyaNet: ``model.similarity_loss(*args).loss`` (negatives: the batch shifted by one).
    """
    if isinstance(model, OyaNet):
        return model.similarity_loss(*args).loss
    if isinstance(model, (LVS, HTF)):
        return model.loss(model(*args))
    raise TypeError(f"no loss adapter for {type(model).__name__}: expected LVS, HTF or OyaNet")


def _batch(arrays: LocalizerArrays, idx: list[int], size: int, needs_flow: bool
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Slice and convert one batch: images (n, 3, s, s), audio (n, C, T), flow (n, 2, s, s) or None."""
    i = np.asarray(idx)
    img = prepare_images(arrays.images[i], size)
    aud = prepare_audio(arrays.audio[i])
    flo = prepare_flow_field(arrays.flow_field[i], size) if needs_flow else None
    return img, aud, flo


def _needs_flow(model: nn.Module) -> bool:
    return isinstance(model, HTF) and model.config.uses_flow


# -- training loop ---------------------------------------------------------------------------------
def _model_config(model: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(model, "config", None)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else None


def _payload(config: LocalizerTrainConfig, model: nn.Module, epoch: int, history: list,
             opt: torch.optim.Optimizer) -> dict[str, Any]:
    from vssl_core import __version__

    return {"config": config.to_dict(), "model_class": type(model).__name__, "model_config": _model_config(model),
            "version": __version__, "seed": config.seed, "epoch": epoch, "history": history,
            "model": model.state_dict(), "optimizer": opt.state_dict()}


def train_localizer(model: Localizer, config: LocalizerTrainConfig, arrays: LocalizerArrays,
                    out_dir: str | Path | None = None, *, resume: bool = True,
                    progress: bool = True) -> tuple[Localizer, list[dict[str, Any]]]:
    """Train an LVS, HTF or OyaNet model in place; return it (eval mode) and the history.

    Parameters
    ----------
    model : LVS, HTF or OyaNet
        The initial model (random or with its vision prior loaded); it is trained in place and
        moved to the training device.
    config : LocalizerTrainConfig
    arrays : LocalizerArrays
        ``flow_field`` is required for an HTF model with a flow encoder.
    out_dir : path, optional
        Where ``last.pt`` is written after every epoch; None trains without checkpoints.
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists. It must come from the same model class
        and config and the same training config (``epochs`` and the runtime fields may differ:
        a larger ``epochs`` extends the run).
    progress : bool
        Show a tqdm bar per epoch with the running loss.

    Returns
    -------
    model : the same object, eval mode, on the training device
    history : list of dict
        One dict per epoch: ``epoch`` (1-based), ``train_loss`` (mean over its pairs), ``steps``,
        ``lr``.

    Raises
    ------
    TypeError
        ``model`` is not an LVS, HTF or OyaNet.
    ValueError
        HTF with flow but ``arrays.flow_field`` is None, or fewer than 2 pairs.
    DataError
        ``last.pt`` was written by another model or training config.
    """
    if not isinstance(model, (LVS, HTF, OyaNet)):
        raise TypeError(f"train_localizer trains LVS, HTF or OyaNet models, got {type(model).__name__}")
    if _needs_flow(model) and arrays.flow_field is None:
        raise ValueError(f"HTF with flow_encoder={model.config.flow_encoder!r} needs LocalizerArrays.flow_field")
    if len(arrays) < 2:
        raise ValueError(f"need at least 2 training pairs (in-batch negatives), got {len(arrays)}")
    try:
        with torch_threads(config.num_threads):
            return _train(model, config, arrays, out_dir, resume, progress)
    finally:
        release_unused()  # the freed activations' heap back to the OS before the next cell


def _train(model: Localizer, config: LocalizerTrainConfig, arrays: LocalizerArrays, out_dir, resume: bool,
           progress: bool) -> tuple[Localizer, list[dict[str, Any]]]:
    device = resolve_device(config.device)
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    start = 0
    last = Path(out_dir) / "last.pt" if out_dir is not None else None
    if resume and last is not None and last.exists():
        ck = load_checkpoint(last)
        saved = LocalizerTrainConfig.from_dict(ck["config"])
        if replace(saved, epochs=config.epochs).weights_key() != config.weights_key():
            raise data_error(last, "config", "was written by a different training config",
                             "use another out_dir, or resume=False to start over")
        if ck.get("model_class") != type(model).__name__ or ck.get("model_config") != _model_config(model):
            raise data_error(last, "model_config", f"was written for another model ({ck.get('model_class')})",
                             "use another out_dir, or resume=False to start over")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, start = list(ck["history"]), int(ck["epoch"])
    size, needs_flow, name = model.config.image_size, _needs_flow(model), type(model).__name__
    for epoch in range(start, config.epochs):
        model.train()
        batches, flips = _epoch_plan(len(arrays), config, epoch)
        bar = tqdm(total=len(batches), desc=f"{name} epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        running = RunningLoss(bar, len(batches), config.log_every)
        for step, idx in enumerate(batches):
            img, aud, flo = _batch(arrays, idx, size, needs_flow)
            if config.hflip:
                img, flo = flip_horizontal(img, flo, flips[idx])
            img, aud = img.to(device), aud.to(device)
            flo = flo.to(device) if flo is not None else None
            running.step(opt, batch_loss(model, inputs(model, img, aud, flo)), len(idx), step)
        bar.close()
        history.append({"epoch": epoch + 1, "train_loss": running.mean, "steps": len(batches),
                        "lr": opt.param_groups[0]["lr"]})
        if last is not None:
            save_checkpoint(last, _payload(config, model, epoch + 1, history, opt))
    return model.eval(), history


# -- trained-model cache ---------------------------------------------------------------------------
def cached_train_localizer(model_factory: Callable[[], Localizer], model_config_dict: Mapping[str, Any],
                           config: LocalizerTrainConfig, arrays: LocalizerArrays, data_fingerprint: str,
                           cache_root: str | Path | None = None, *, progress: bool = True) -> Localizer:
    """Load the trained model for (model, training config, data) from the cache, or train and store it.

    ``model_factory`` is called once, right after ``torch.manual_seed(config.seed)``, to build
    the initial model (with its vision prior, if any); on a cache hit the stored weights are
    loaded into it and no training happens. The folder is
    ``<cache_root>/<class>-<key>/model.pt`` (``class`` = ``lvs``, ``htf`` or ``oyanet``), with
    ``key`` the :func:`vssl_core.repro.cache.fingerprint` of ``model_config_dict``, the
    weight-determining training fields, ``data_fingerprint`` (the caller's hash of the arrays'
    source) and the initial weights (:func:`vssl_core.training.contrastive.model_fingerprint`, so a changed
    prior file is a new entry). Default ``cache_root``: ``vssl_core.repro.paths.cache_dir() /
    "models"``. Checkpoints live in ``<cache_root>/.work-<class>-<key>`` while training (an
    interrupted run resumes) and are removed once ``model.pt`` is stored (atomically).

    Parameters
    ----------
    model_factory : callable () -> LVS, HTF or OyaNet
        Builds a fresh initial model, e.g. ``lambda: build_htf(cfg)[0]``.
    model_config_dict : mapping
        The model's config as a dict; must equal ``model.config.to_dict()``.
    config, arrays : LocalizerTrainConfig, LocalizerArrays
    data_fingerprint : str
    cache_root : path, optional
    progress : bool

    Returns
    -------
    The trained model, eval mode, on the CPU.
    """
    from vssl_core.repro.atomic import atomic_dir
    from vssl_core.repro.paths import cache_dir

    torch.manual_seed(config.seed)
    model = model_factory()
    if not isinstance(model, (LVS, HTF, OyaNet)):
        raise TypeError(f"model_factory must return an LVS, HTF or OyaNet model, got {type(model).__name__}")
    model_config = dict(model_config_dict)
    if fingerprint(model_config) != fingerprint(_model_config(model)):
        raise ValueError(f"model_config_dict does not match the factory's model config {_model_config(model)}")
    key = fingerprint({"format": 1, "model_class": type(model).__name__, "model": model_config,
                       "train": config.weights_key(), "data": data_fingerprint,
                       "init": model_fingerprint(model)})
    root = Path(cache_root) if cache_root is not None else cache_dir() / "models"
    name = f"{type(model).__name__.lower()}-{key}"
    final = root / name / "model.pt"
    if final.exists():
        payload = load_checkpoint(final)
        try:
            model.load_state_dict(payload["model"])
        except (KeyError, RuntimeError) as exc:
            raise data_error(final, "model", f"does not fit a {type(model).__name__} with this config ({exc})",
                             "delete the folder to retrain") from exc
        return model.eval()
    work = root / f".work-{name}"
    model, history = train_localizer(model, config, arrays, work, resume=True, progress=progress)
    model = model.cpu()
    with atomic_dir(root / name) as tmp:
        save_model(tmp / "model.pt", model, model_class=type(model).__name__, train_config=config.to_dict(),
                   seed=config.seed, history=history, data_fingerprint=data_fingerprint, cache_key=key)
    shutil.rmtree(work, ignore_errors=True)
    return model
