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
- The released LVS checkpoints (``lvs_vggss``, ``lvs_soundnet`` of "Localizing Visual Sounds the
  Hard Way"): ``{"model_state_dict": {...}, ...}`` saved from ``nn.DataParallel`` (keys
  ``module.imgnet.*`` and ``module.audnet.*``; the prefix may be absent). Both nets are the
  released ResNet-18 whose layer4 has stride 1 and which carries three stems: ``conv1``
  (3 channels, used by ``imgnet``), ``conv1_a`` (1 channel, used by ``audnet``) and
  ``conv1_flow`` (6 channels, unused), plus an unused ``fc``. :func:`load_released_lvs` maps
  ``imgnet.X`` to ``image_encoder.X`` and ``audnet.conv1_a`` / ``audnet.X`` to
  ``audio_encoder.conv1`` / ``audio_encoder.X``; the unused stems and heads are listed as ignored.
- Hear The Flow checkpoints: a PyTorch Lightning ``.ckpt`` (``{"state_dict": {"model.imgnet.*",
  "model.audnet.*", "model.flownet.*", "model.flowatt.*"}, "hyper_parameters": ...}``) or the
  released ``.pth`` (``{"model": {"imgnet.*", ...}}``). ``imgnet``/``audnet``/``flownet`` are
  torchvision ResNet-18s (layer4 stride 2, ``fc`` replaced by an identity) and ``flowatt`` the
  cross-attention (``query_conv``, ``key_conv``, ``value_conv``). :func:`load_released_htf`
  maps them to ``image_encoder``, ``audio_encoder``, ``flow_encoder`` and ``attention.query``/
  ``key``/``value``; the flow encoder ("resnet" or "maxpool") is read from the keys.
- Foreign files are read with ``weights_only=True``; only ``argparse.Namespace`` (Lightning's
  saved hyper-parameters) is allowed on top of plain types.
"""
from __future__ import annotations

import argparse
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vssl_core.repro.atomic import write_bytes
from vssl_core.errors import DataError, data_error
from vssl_core.models.encoders import ResNetEncoder, resnet18_encoder
from vssl_core.models.rcgrad import ModelConfig, RCGrad, build_model

__all__ = ["LoadReport", "save_checkpoint", "load_checkpoint", "save_model", "load_model",
           "load_official_rcgrad", "load_imagenet_resnet18", "load_released_lvs", "load_released_htf",
           "load_foreign_checkpoint", "read_state_dict"]

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
            raise data_error(path, key, "the key is missing", "give a file written by vssl_core.models.checkpoints.save_model")
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
def read_state_dict(path_or_state: PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``(state dict, name for messages)`` of a checkpoint file or an in-memory state dict.

    A ``{"state_dict": ...}`` wrapper is opened and a ``module.`` prefix on every key (a model
    saved from ``DataParallel``) is dropped.
    """
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
               ignored: list[str],
               layout: str = "the official checkpoint (image_encoder./audio_encoder. ResNet-18 keys)"
               ) -> LoadReport:
    """Copy ``mapped`` (model key -> (file key, tensor)) into ``model`` strictly; ``layout`` names
    the expected file in the messages."""
    target = model.state_dict()
    for mkey, (fkey, tensor) in mapped.items():
        if mkey not in target:
            raise data_error(name, fkey, "is not a key of this model", f"give {layout}")
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
    state, name = read_state_dict(path_or_state_dict)
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
    state, name = read_state_dict(path)
    if "conv1.weight" not in state:
        first = next(iter(state), "<empty>")
        raise data_error(name, first, "no 'conv1.weight' key",
                         "give a torchvision resnet18 state dict (torchvision.models.resnet18().state_dict())")
    enc = resnet18_encoder(3, width=1.0, layer4_stride=layer4_stride)
    ignored = [k for k in state if k.startswith("fc.")]
    mapped = {k: (k, v) for k, v in state.items() if not k.startswith("fc.")}
    report = _copy_into(enc, mapped, name, ignored)
    return enc.eval(), report


# -- released LVS and Hear The Flow weights -------------------------------------------------------
def load_foreign_checkpoint(path: PathLike) -> dict[str, Any]:
    """:func:`load_checkpoint` for released files: also accepts ``argparse.Namespace`` (the
    hyper-parameters a PyTorch Lightning checkpoint pickles), nothing else beyond plain types."""
    safe = getattr(torch.serialization, "safe_globals", None)
    if safe is None:  # pragma: no cover - torch < 2.5
        return load_checkpoint(path)
    try:
        with safe([argparse.Namespace]):
            return load_checkpoint(path)
    except DataError as exc:
        cause = str(exc.__cause__ or "")
        if "global" not in cause.lower():
            raise
        found = cause.split("GLOBAL", 1)[1].split()[0] if "GLOBAL" in cause else "an object"
        raise data_error(path, None, f"pickles {found}, which is not read for safety (only tensors, plain "
                         "types and argparse.Namespace are)",
                         "if you trust the file, keep its weights only: python -c \"import torch; "
                         "torch.save(torch.load('FILE', weights_only=False)['state_dict'], 'plain.pt')\" "
                         "and give plain.pt") from exc


def _tensor_dict(obj: Mapping[str, Any], name: str, field: str) -> dict[str, torch.Tensor]:
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise data_error(name, field, "holds no tensors", "give the released checkpoint file unchanged")
    return state


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Remove ``prefix`` from every key when every key has it (DataParallel, Lightning)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _guess_family(keys: set[str]) -> str:
    """A short guess of what a state dict is, for error messages."""
    if any(k.startswith(("image_encoder.", "audio_encoder.")) for k in keys):
        return "it looks like an RCGrad checkpoint (load it with load_official_rcgrad)"
    if any(k.startswith(("flowatt.", "flownet.")) for k in keys) or (
            "audnet.conv1.weight" in keys and "audnet.conv1_a.weight" not in keys):
        return "it looks like a Hear The Flow checkpoint (load it with load_released_htf)"
    if "audnet.conv1_a.weight" in keys:
        return "it looks like an LVS checkpoint (load it with load_released_lvs)"
    if "conv1.weight" in keys and "fc.weight" in keys:
        return "it looks like a plain torchvision ResNet"
    return "its keys match no supported layout"


def _foreign_state(path_or_state: PathLike | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a released checkpoint: unwrapped from ``state_dict`` (Lightning),
    ``model_state_dict`` (LVS) or ``model`` (Hear The Flow's .pth), ``model.`` / ``module.``
    prefixes removed."""
    if isinstance(path_or_state, Mapping):
        obj, name = dict(path_or_state), "<state dict>"
    else:
        obj, name = load_foreign_checkpoint(path_or_state), str(path_or_state)
    field = "state_dict"
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj, field = dict(obj[key]), key
            break
    return _strip(_strip(_tensor_dict(obj, name, field), "model."), "module."), name


_LVS_IGNORED = ("imgnet.conv1_a.", "imgnet.conv1_flow.", "imgnet.fc.",
                "audnet.conv1.", "audnet.conv1_flow.", "audnet.fc.")


def load_released_lvs(path_or_state_dict: PathLike | Mapping[str, Any], *, audio_sr: int = 16000
                      ) -> tuple[nn.Module, LoadReport]:
    """Load a released LVS checkpoint (``lvs_vggss``, ``lvs_soundnet``) into an LVS model.

    The model is the released network: width 1.0, 224 px, image layer4 stride 1 (14x14 maps),
    audio map max-pooled (the released ``AdaptiveMaxPool2d``), and an audio ResNet whose layer4
    also has stride 1 (the released ``base_models.resnet18`` serves both nets; :class:`LVS`
    builds a stride-2 audio layer4, so it is replaced by a stride-1 one with the same keys).

    Parameters
    ----------
    path_or_state_dict : path or dict
        The file (``{"model_state_dict": ...}``), or an already loaded dict (the whole file or
        the bare state dict, with or without the ``module.`` prefix).
    audio_sr : int
        Sample rate (Hz) of the waveforms the model will be fed (``LVSConfig.audio_sr``). The
        released test computes the spectrogram at the file's own rate.

    Returns
    -------
    model : LVS
        In eval mode.
    report : LoadReport
        ``ignored``: the unused stems ``imgnet.conv1_a``, ``imgnet.conv1_flow``, ``audnet.conv1``
        (3 channels), ``audnet.conv1_flow`` and both ``fc`` heads.

    Raises
    ------
    DataError
        Unreadable or truncated file, a file of another family (the message says which it looks
        like), an unknown key, a wrong shape or a missing tensor.
    """
    from vssl_core.models.encoders import resnet18_encoder
    from vssl_core.models.lvs import LVS, LVSConfig

    state, name = _foreign_state(path_or_state_dict)
    keys = set(state)
    if not any(k.startswith("imgnet.") for k in keys) or "audnet.conv1_a.weight" not in keys:
        raise data_error(name, next(iter(sorted(keys)), "<empty>"),
                         f"not the released LVS layout (imgnet.*, audnet.conv1_a.*): {_guess_family(keys)}",
                         "give lvs_vggss / lvs_soundnet as downloaded from the LVS repository")
    model = LVS(LVSConfig(width=1.0, layer4_stride=1, image_size=224, audio_sr=int(audio_sr), audio_pool="max"))
    model.audio_encoder = resnet18_encoder(1, 1.0, layer4_stride=1)
    mapped: dict[str, tuple[str, torch.Tensor]] = {}
    ignored: list[str] = []
    for key, tensor in state.items():
        if key.startswith(_LVS_IGNORED):
            ignored.append(key)
        elif key.startswith("imgnet."):
            mapped["image_encoder." + key[len("imgnet."):]] = (key, tensor)
        elif key.startswith("audnet.conv1_a."):
            mapped["audio_encoder.conv1." + key[len("audnet.conv1_a."):]] = (key, tensor)
        elif key.startswith("audnet."):
            mapped["audio_encoder." + key[len("audnet."):]] = (key, tensor)
        else:
            raise data_error(name, key, "is not part of the released LVS layout",
                             "give lvs_vggss / lvs_soundnet (keys imgnet.*, audnet.*) unchanged")
    report = _copy_into(model, mapped, name, ignored, "the released LVS checkpoint (imgnet.*, audnet.* keys)")
    return model.eval(), report


_HTF_PREFIXES = {"imgnet.": "image_encoder.", "audnet.": "audio_encoder.", "flownet.": "flow_encoder.",
                 "flowatt.query_conv.": "attention.query.", "flowatt.key_conv.": "attention.key.",
                 "flowatt.value_conv.": "attention.value."}


def load_released_htf(path_or_state_dict: PathLike | Mapping[str, Any], *, audio_sr: int = 22050
                      ) -> tuple[nn.Module, LoadReport]:
    """Load a Hear The Flow checkpoint (Lightning ``.ckpt`` or the released ``.pth``) into an HTF model.

    The model: width 1.0, 224 px, layer4 stride 2 (7x7), audio map max-pooled (the released
    ``audnet.avgpool`` is an ``AdaptiveMaxPool2d``), ``attn_dim`` read from ``query_conv``, the
    flow encoder read from the keys: ``flownet.conv1`` present -> ``"resnet"``, otherwise a
    2-channel ``key_conv`` -> ``"maxpool"``, no ``flowatt`` at all -> ``"none"``.

    Parameters
    ----------
    path_or_state_dict : path or dict
        The file, or an already loaded dict (the whole file or a bare state dict; ``model.`` and
        ``module.`` prefixes are removed).
    audio_sr : int
        Sample rate (Hz) of the waveforms the model will be fed (Hear The Flow's test reads
        22.05 kHz wavs and computes the spectrogram at the file's rate).

    Returns
    -------
    model : HTF
        In eval mode.
    report : LoadReport
        ``ignored`` lists any ``fc`` head (the released nets replace it by an identity).

    Raises
    ------
    DataError
        As :func:`load_released_lvs`.
    """
    from vssl_core.models.htf import HTF, HTFConfig

    state, name = _foreign_state(path_or_state_dict)
    keys = set(state)
    if not any(k.startswith("imgnet.") for k in keys) or "audnet.conv1.weight" not in keys \
            or "audnet.conv1_a.weight" in keys:
        raise data_error(name, next(iter(sorted(keys)), "<empty>"),
                         f"not a Hear The Flow layout (imgnet.*, audnet.*, flownet.*, flowatt.*): {_guess_family(keys)}",
                         "give the released .pth or a Lightning .ckpt of the Hear The Flow code")
    if "flownet.conv1.weight" in keys:
        flow_encoder = "resnet"
    elif "flowatt.key_conv.weight" in keys:
        flow_encoder = "maxpool"
    else:
        flow_encoder = "none"
    attn_dim = int(state["flowatt.query_conv.weight"].shape[0]) if "flowatt.query_conv.weight" in keys else 64
    config = HTFConfig(flow_encoder=flow_encoder, freeze_vision=True, pretrained_vision=None, pretrained_flow=False,
                       width=1.0, layer4_stride=2, image_size=224, attn_dim=attn_dim, audio_sr=int(audio_sr),
                       audio_pool="max")
    model = HTF(config)
    mapped: dict[str, tuple[str, torch.Tensor]] = {}
    ignored: list[str] = []
    for key, tensor in state.items():
        if key.startswith(("imgnet.fc.", "audnet.fc.", "flownet.fc.")):
            ignored.append(key)
            continue
        prefix = next((p for p in _HTF_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise data_error(name, key, "is not part of the Hear The Flow layout",
                             "give the released .pth or a Lightning .ckpt (keys imgnet.*, audnet.*, flownet.*, flowatt.*)")
        mapped[_HTF_PREFIXES[prefix] + key[len(prefix):]] = (key, tensor)
    report = _copy_into(model, mapped, name, ignored,
                        "a Hear The Flow checkpoint (imgnet.*, audnet.*, flownet.*, flowatt.* keys)")
    return model.eval(), report
