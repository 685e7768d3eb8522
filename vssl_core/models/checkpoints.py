"""Checkpoint files: our own training checkpoints, the official RCGrad weights, ImageNet ResNet-18.

Conventions
-----------
- Our files hold only plain Python types and tensors (config as a dict, the package version,
  seed, epoch, history, state dicts), so they load with ``torch.load(weights_only=True)``;
  nothing is ever unpickled unsafely. They are written atomically (``torch.save`` to memory,
  then :func:`vssl_core.repro.atomic.write_bytes`).
- A file that cannot be read (truncated, not a torch file, needs unsafe unpickling) or that does
  not have the expected layout raises :class:`~vssl_core.errors.DataError` naming the file and
  the offending key.
- The official ``rc_grad.pt`` (docs/conventions.md, "Checkpoint layouts"): a flat state dict with ``image_encoder.`` and
  ``audio_encoder.`` prefixes. Our audio encoder nests its ResNet under ``backbone`` (next to
  the spectrogram front end), so ``audio_encoder.X`` maps to ``audio_encoder.backbone.X``.
  Ignored on purpose, and listed in the :class:`LoadReport`: the image encoder's unused
  ``conv1_a`` (1-channel), ``conv1_flow`` (6-channel) and ``fc`` (1000 classes) weights, an
  audio ``fc`` if present, and the audio encoder's ``spectrogram.window`` buffer (we rebuild the
  Hann window). A ``logit_scale`` entry is loaded when present (it only matters for training);
  when absent it keeps its initial value and is reported as missing.
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vssl_core.repro.atomic import write_bytes
from vssl_core.errors import data_error
from vssl_core.models.encoders import ResNetEncoder, resnet18_encoder
from vssl_core.models.rcgrad import ModelConfig, RCGrad, build_model

__all__ = ["LoadReport", "save_checkpoint", "load_checkpoint", "save_model", "load_model",
           "load_official_rcgrad", "load_imagenet_resnet18"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class LoadReport:
    """What a loader did with the keys of a state dict.

    Attributes
    ----------
    loaded : tuple of str
        Keys of the file that were copied into the model (file names, not model names).
    ignored : tuple of str
        Keys of the file deliberately not used (known unused weights and buffers).
    missing : tuple of str
        Model keys the file lacked and that kept their initial value (only ``logit_scale`` and
        BatchNorm ``num_batches_tracked`` counters are allowed to be missing).
    """

    loaded: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors, ignored {len(self.ignored)} "
                f"({', '.join(self.ignored) or '-'}), missing {len(self.missing)} "
                f"({', '.join(self.missing) or '-'})")


# -- plain checkpoint files ----------------------------------------------------------------------
def save_checkpoint(path: PathLike, payload: Mapping[str, Any]) -> Path:
    """Atomically write ``payload`` (plain types and tensors only) to ``path``."""
    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    return write_bytes(path, buf.getvalue())


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` (or any plain torch file) on the CPU.

    Raises
    ------
    DataError
        The file is missing, truncated, not a torch file, or needs unsafe unpickling.
    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, None, "the checkpoint file does not exist", "check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise data_error(path, None, f"cannot be read as a torch checkpoint ({type(exc).__name__}: {exc})",
                         "the file is truncated or not a plain state dict; download or save it again") from exc
    if not isinstance(obj, dict):
        raise data_error(path, None, f"holds a {type(obj).__name__}, not a dict",
                         "save a state dict (a dict of tensors)")
    return obj


def save_model(path: PathLike, model: RCGrad, **meta: Any) -> Path:
    """Save a trained model: ``{"config": dict, "version": str, "model": state_dict, **meta}``."""
    from vssl_core import __version__

    return save_checkpoint(path, {"config": model.config.to_dict(), "version": __version__,
                                  "model": model.state_dict(), **meta})


def load_model(path: PathLike) -> tuple[RCGrad, dict[str, Any]]:
    """Inverse of :func:`save_model` (also reads training checkpoints): (model in eval mode, meta)."""
    payload = load_checkpoint(path)
    for key in ("config", "model"):
        if key not in payload:
            raise data_error(path, key, "the key is missing", "give a file written by vssl_core.training.contrastive")
    cfg = payload["config"]
    cfg = cfg["model"] if "model" in cfg and isinstance(cfg["model"], dict) else cfg
    try:
        model = build_model(ModelConfig.from_dict(cfg))
        model.load_state_dict(payload["model"])
    except (ValueError, TypeError, RuntimeError) as exc:
        raise data_error(path, "model", f"does not match its config ({exc})",
                         "retrain, or load with the vssl_core version that wrote it") from exc
    meta = {k: v for k, v in payload.items() if k != "model"}
    return model.eval(), meta


# -- foreign weights ----------------------------------------------------------------------------
def _read_state(path_or_state: PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(path_or_state, Mapping):
        state, name = dict(path_or_state), "<state dict>"
    else:
        state, name = load_checkpoint(path_or_state), str(path_or_state)
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = dict(state["state_dict"])
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, name


_OFFICIAL_IGNORED = ("image_encoder.conv1_a.", "image_encoder.conv1_flow.", "image_encoder.fc.",
                     "audio_encoder.fc.", "audio_encoder.spectrogram.")
_MAY_BE_MISSING = ("logit_scale", "num_batches_tracked")


def _copy_into(model: nn.Module, mapped: dict[str, tuple[str, torch.Tensor]], name: str,
               ignored: list[str]) -> LoadReport:
    """Copy ``mapped`` (model key -> (file key, tensor)) into ``model`` strictly."""
    target = model.state_dict()
    for mkey, (fkey, tensor) in mapped.items():
        if mkey not in target:
            raise data_error(name, fkey, "is not a key of this model",
                             "give the official checkpoint (image_encoder./audio_encoder. ResNet-18 keys)")
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(target[mkey].shape):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise data_error(name, fkey, f"has shape {shape}, the model expects {tuple(target[mkey].shape)}",
                             "the checkpoint is for another architecture (a width-1.0 ResNet-18 is expected)")
    missing = [k for k in target if k not in mapped]
    required = [k for k in missing if not k.endswith(_MAY_BE_MISSING)]
    if required:
        raise data_error(name, required[0], f"is missing ({len(required)} required keys missing)",
                         "give a complete checkpoint")
    model.load_state_dict({k: t for k, (_, t) in mapped.items()}, strict=False)
    return LoadReport(tuple(f for f, _ in mapped.values()), tuple(sorted(ignored)), tuple(missing))


def load_official_rcgrad(path_or_state_dict: PathLike | Mapping[str, Any], *,
                         faithful_audio_bn: bool = True) -> tuple[RCGrad, LoadReport]:
    """Load the released RCGrad weights (``rc_grad.pt``) into an :class:`RCGrad` at width 1.0.

    Parameters
    ----------
    path_or_state_dict : path or dict
        The file, or its already-loaded flat state dict.
    faithful_audio_bn : bool
        Stored in the model config (official inference quirk, see :mod:`vssl_core.models.rcgrad_maps`).

    Returns
    -------
    model : RCGrad
        224 px, layer4 stride 1, 16 kHz, in eval mode.
    report : LoadReport

    Raises
    ------
    DataError
        Unreadable file, no ``image_encoder.``/``audio_encoder.`` keys, an unknown key, a wrong
        shape or a missing tensor (the message names the file and the key).
    """
    state, name = _read_state(path_or_state_dict)
    prefixes = ("image_encoder.", "audio_encoder.")
    if not any(k.startswith(p) for k in state for p in prefixes):
        first = next(iter(state), "<empty>")
        raise data_error(name, first, "no key starts with 'image_encoder.' or 'audio_encoder.'",
                         "this is not an RCGrad checkpoint; give the official rc_grad.pt")
    model = RCGrad(ModelConfig(kind="rcgrad", width=1.0, layer4_stride=1, image_size=224,
                               audio_sr=16000, faithful_audio_bn=faithful_audio_bn))
    mapped: dict[str, tuple[str, torch.Tensor]] = {}
    ignored: list[str] = []
    for key, tensor in state.items():
        if key.startswith(_OFFICIAL_IGNORED):
            ignored.append(key)
        elif key.startswith("image_encoder.") or key == "logit_scale":
            mapped[key] = (key, tensor)
        elif key.startswith("audio_encoder."):
            mapped["audio_encoder.backbone." + key[len("audio_encoder."):]] = (key, tensor)
        else:
            raise data_error(name, key, "is not part of the RCGrad layout",
                             "give the official rc_grad.pt (keys image_encoder.*, audio_encoder.*)")
    if "logit_scale" in mapped and mapped["logit_scale"][1].ndim != 0:
        mapped["logit_scale"] = ("logit_scale", mapped["logit_scale"][1].reshape(()))
    report = _copy_into(model, mapped, name, ignored)
    return model.eval(), report


def load_imagenet_resnet18(path: PathLike | Mapping[str, Any], *, layer4_stride: int = 1) -> tuple[ResNetEncoder, LoadReport]:
    """Load a user-supplied torchvision ImageNet ``resnet18`` state dict into a width-1.0 encoder.

    ``fc.*`` (the classifier) is ignored and reported; layer4's stride is a forward-time choice
    and does not change the weights. Never downloads anything.
    """
    state, name = _read_state(path)
    if "conv1.weight" not in state:
        first = next(iter(state), "<empty>")
        raise data_error(name, first, "no 'conv1.weight' key",
                         "give a torchvision resnet18 state dict (torchvision.models.resnet18().state_dict())")
    enc = resnet18_encoder(3, width=1.0, layer4_stride=layer4_stride)
    ignored = [k for k in state if k.startswith("fc.")]
    mapped = {k: (k, v) for k, v in state.items() if not k.startswith("fc.")}
    report = _copy_into(enc, mapped, name, ignored)
    return enc.eval(), report
