"""Localisation maps of RCGrad and the FlowGrad family (Grad-CAM of ``<f_img, f_aud>``).

Grad-CAM in closed form
-----------------------
The target layer is the last block of layer4 (docs/conventions.md, "RCGrad"); global average pooling follows it
directly, so with ``A`` the block output ``(D, h, w)`` and ``a`` the audio embedding,
``d<mean_ij A, a> / dA_k(i, j) = a_k / (h w)``. Grad-CAM's channel weights are the spatial mean
of that gradient, ``a_k / (h w)``, and the map is ``ReLU(sum_k a_k A_k(i, j)) / (h w)``.
:func:`rcgrad_maps` computes exactly this in one batched no-grad pass (channels-last input, which
is ~1.5x faster on CPU and equal up to float rounding); :class:`GradCAM` is a
reference autograd implementation (hooks on the target layer) used by the tests and the
benchmark to prove both agree. The "How to Listen" text names "the first normalization layer in
the last block" as target; the released code uses the block output, followed here.

The audio embedding is the RAW (not L2-normalised) one: back-propagating through the normalised
embeddings gives much worse maps. Audio is encoded one clip at a time in effect: each
spectrogram is standardised on its own statistics (the official inference runs batches of one),
and with ``ModelConfig.faithful_audio_bn`` the audio BatchNorms use each clip's statistics too.

Maps for the metric
-------------------
:func:`maps` (RCGrad, FlowGrad-IC, FlowGrad-EN) and :func:`flowgrad_h_maps` have the companion's
one map signature ``(model, ev) -> LocalizationMaps`` (:mod:`vssl_core.eval.maps`), with
``ev`` an :class:`~vssl_core.data.arrays.EvalArrays`; :func:`localize` is the same on plain arrays.

FlowGrad-H is ``clean(RCGrad map) x raw flow magnitude`` (:func:`flowgrad_h`), not renormalised:
thresholding the product at 0.5 keeps pixels moving at >= 0.5 px per step, weighted by the clean
RCGrad map. See ``docs/conventions.md``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from vssl_core.eval.maps import GRID, POSTPROCESS, LocalizationMaps, clean, flow_to_grid, to_grid
from vssl_core.models.rcgrad import FlowGradEN, RCGrad, prepare_audio, prepare_flow, prepare_images

__all__ = [
    "audio_embeddings", "pair_embeddings", "cam_closed_form", "rcgrad_maps", "flow_maps", "en_branch_maps", "flowgrad_h", "GradCAM", "EmbeddingDot",
    "autograd_rcgrad_maps", "localize", "localize_flowgrad_h", "maps", "flowgrad_h_maps", "flowgrad_h_from_rcgrad",
]

def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _chunks(n: int, size: int) -> range:
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {size}")
    return range(0, n, size)


@torch.no_grad()
def audio_embeddings(model: RCGrad, audio: np.ndarray, *, chunk_size: int = 32) -> torch.Tensor:
    """Raw audio embeddings ``(N, D)`` as the official inference computes them, clip by clip.

    Spectrograms are standardised per clip. With ``model.config.faithful_audio_bn`` every clip
    goes through the audio encoder alone with BatchNorm on its own statistics (running
    statistics untouched); otherwise the audio encoder must be in eval mode.
    """
    x = prepare_audio(audio)  # (N, C, T)
    dev = _device(model)
    out = []
    if model.config.faithful_audio_bn:
        for i in range(x.shape[0]):
            out.append(model.encode_audio(x[i:i + 1].to(dev), per_sample_norm=True,
                                          batch_stat_bn=True).embedding)
    else:
        for s in _chunks(x.shape[0], chunk_size):
            out.append(model.encode_audio(x[s:s + chunk_size].to(dev), per_sample_norm=True).embedding)
    return torch.cat(out).float()


def cam_closed_form(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``<mean_ij features, weights>``: ``ReLU(sum_k w_k A_k) / (h w)``.

    Parameters
    ----------
    features : Tensor, shape (N, D, h, w)
    weights : Tensor, shape (N, D)

    Returns
    -------
    Tensor, shape (N, h, w)
    """
    h, w = features.shape[-2:]
    return torch.relu(torch.einsum("ndij,nd->nij", features, weights)) / (h * w)


def _check_eval(model: nn.Module) -> None:
    if model.training:
        raise ValueError("call model.eval() before computing maps (BatchNorm must use running "
                         "statistics; set ModelConfig.faithful_audio_bn for the official audio quirk)")


@torch.no_grad()
def rcgrad_maps(model: RCGrad, images: np.ndarray, audio: np.ndarray, flow: np.ndarray | None = None,
                *, chunk_size: int = 32) -> np.ndarray:
    """Raw Grad-CAM maps through the image encoder (RCGrad, FlowGrad-IC, FlowGrad-EN's image branch).

    Parameters
    ----------
    model : RCGrad, FlowGradIC or FlowGradEN, in eval mode
    images : ndarray uint8, shape (N, H, W, 3)
    audio : ndarray float32, shape (N, C, T) at ``model.config.audio_sr``
    flow : ndarray float32, shape (N, H, W), px/frame; required for FlowGrad-IC only
    chunk_size : int
        Samples per forward pass (memory bound).

    Returns
    -------
    ndarray float32, shape (N, h, w)
        ``h = w = image_size / 16`` (layer4 stride 1). Not normalised; see :func:`to_grid`.
    """
    _check_eval(model)
    size, dev = model.config.image_size, _device(model)
    aud = audio_embeddings(model, audio, chunk_size=chunk_size)
    needs_flow = model.kind == "flowgrad_ic"
    if needs_flow and flow is None:
        raise ValueError("FlowGrad-IC maps need the flow magnitude (N, H, W)")
    out = []
    for s in _chunks(len(images), chunk_size):
        img = prepare_images(images[s:s + chunk_size], size).to(dev)
        flo = prepare_flow(flow[s:s + chunk_size], size).to(dev) if needs_flow else None
        x = model.image_input(img, flo).contiguous(memory_format=torch.channels_last)  # ~1.5x on CPU
        feats = model.image_encoder(x).features  # (n, D, h, w)
        out.append(cam_closed_form(feats.float(), aud[s:s + chunk_size].to(dev)).cpu())
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def pair_embeddings(model: RCGrad, ev, *, chunk_size: int = 32) -> dict[str, np.ndarray]:
    """The pooled embeddings that the contrastive loss compares, computed as the maps compute them.

    Parameters
    ----------
    model : RCGrad, FlowGradIC or FlowGradEN, in eval mode
    ev : EvalArrays
        The pairs (images, audio at ``model.config.audio_sr``, flow magnitude).
    chunk_size : int
        Samples per forward pass (memory bound).

    Returns
    -------
    dict of str to ndarray float32, shape (N, D)
        ``"audio"`` (each clip's spectrogram standardised on its own, as :func:`audio_embeddings`),
        ``"image"`` (FlowGrad-IC: RGB + flow channel) and, for FlowGrad-EN, ``"flow"``.
    """
    _check_eval(model)
    _check_rate(model, ev)
    size, dev = model.config.image_size, _device(model)
    out = {"audio": audio_embeddings(model, ev.audio, chunk_size=chunk_size).cpu().numpy()}
    image, flow = [], []
    for s in _chunks(len(ev.images), chunk_size):
        flo = prepare_flow(ev.flow[s:s + chunk_size], size).to(dev) if model.kind != "rcgrad" else None
        img = prepare_images(ev.images[s:s + chunk_size], size).to(dev)
        image.append(model.image_encoder(model.image_input(img, flo)).embedding.float().cpu())
        if model.kind == "flowgrad_en":
            flow.append(model.encode_flow(flo).embedding.float().cpu())
    out["image"] = torch.cat(image).numpy()
    if flow:
        out["flow"] = torch.cat(flow).numpy()
    return out


@torch.no_grad()
def flow_maps(model: FlowGradEN, flow: np.ndarray, audio: np.ndarray, *, chunk_size: int = 32) -> np.ndarray:
    """Raw Grad-CAM maps ``(N, h, w)`` through FlowGrad-EN's flow encoder with the audio embedding."""
    _check_eval(model)
    size, dev = model.config.image_size, _device(model)
    aud = audio_embeddings(model, audio, chunk_size=chunk_size)
    out = []
    for s in _chunks(len(flow), chunk_size):
        flo = prepare_flow(flow[s:s + chunk_size], size).to(dev).contiguous(memory_format=torch.channels_last)
        feats = model.encode_flow(flo).features  # (n, D, h, w)
        out.append(cam_closed_form(feats.float(), aud[s:s + chunk_size].to(dev)).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def flowgrad_h(rcgrad_clean_maps: np.ndarray, flow_mag: np.ndarray) -> LocalizationMaps:
    """FlowGrad-H: the CLEAN RCGrad map times the raw flow magnitude, not renormalised.

    Parameters
    ----------
    rcgrad_clean_maps : ndarray, shape (N, 224, 224)
        ``clean(to_grid(rcgrad_maps(...)))``: values in [0, 1].
    flow_mag : ndarray, shape (N, H, W)
        Flow magnitude in px/frame (resized with :func:`flow_to_grid`).

    Returns
    -------
    LocalizationMaps with ``postprocess="none"`` (threshold 0.5 applies to the product).
    """
    m = np.asarray(rcgrad_clean_maps, dtype=np.float32)
    if m.ndim != 3 or m.shape[1:] != (GRID, GRID):
        raise ValueError(f"rcgrad_clean_maps must be (N, {GRID}, {GRID}), got {m.shape}")
    if m.size and (m.min() < 0 or m.max() > 1):
        raise ValueError("rcgrad_clean_maps must be clean maps in [0, 1] (to_grid then clean)")
    f = flow_to_grid(flow_mag)
    if f.shape[0] != m.shape[0]:
        raise ValueError(f"{m.shape[0]} maps but {f.shape[0]} flow fields")
    return LocalizationMaps(m * f, POSTPROCESS["flowgrad_h"], "flowgrad_h")


def flowgrad_h_from_rcgrad(rcgrad: LocalizationMaps, flow_mag: np.ndarray) -> LocalizationMaps:
    """FlowGrad-H from RCGrad's maps (as :func:`localize` returns them): ``clean(maps) x flow``."""
    if rcgrad.method != "rcgrad":
        raise ValueError(f"FlowGrad-H multiplies RCGrad's map, got {rcgrad.method!r} maps")
    return flowgrad_h(clean(rcgrad.maps), flow_mag)


def localize(model: RCGrad, images: np.ndarray, audio: np.ndarray, flow: np.ndarray | None = None,
             *, chunk_size: int = 32) -> LocalizationMaps:
    """Maps of RCGrad / FlowGrad-IC / FlowGrad-EN in the space the metric expects.

    RCGrad and IC: ``to_grid(rcgrad_maps)``; EN: ``to_grid(image CAM) * to_grid(flow CAM)``
    (each Grad-CAM map is min-max scaled on the grid before the product, as Grad-CAM tools
    return them). All with ``postprocess="clean"``.
    """
    grid = to_grid(rcgrad_maps(model, images, audio, flow, chunk_size=chunk_size))
    if model.kind == "flowgrad_en":
        if flow is None:
            raise ValueError("FlowGrad-EN maps need the flow magnitude (N, H, W)")
        grid = grid * to_grid(flow_maps(model, flow, audio, chunk_size=chunk_size))
    return LocalizationMaps(grid, POSTPROCESS[model.kind], model.kind)


def localize_flowgrad_h(model: RCGrad, images: np.ndarray, audio: np.ndarray, flow: np.ndarray,
                        *, chunk_size: int = 32) -> LocalizationMaps:
    """FlowGrad-H from an RCGrad model: ``clean(RCGrad grid) * flow``, ``postprocess="none"``."""
    if model.kind != "rcgrad":
        raise ValueError(f"FlowGrad-H uses an RCGrad model, got {model.kind}")
    return flowgrad_h_from_rcgrad(localize(model, images, audio, chunk_size=chunk_size), flow)


def _check_rate(model: RCGrad, ev) -> None:
    if int(ev.audio_sr) != int(model.config.audio_sr):
        raise ValueError(f"the audio is at {ev.audio_sr} Hz but the model expects {model.config.audio_sr} Hz")


def maps(model: RCGrad, ev) -> LocalizationMaps:
    """RCGrad / FlowGrad-IC / FlowGrad-EN maps of the pairs ``ev`` (an ``EvalArrays``)."""
    _check_rate(model, ev)
    return localize(model, ev.images, ev.audio, None if model.kind == "rcgrad" else ev.flow)


def flowgrad_h_maps(model: RCGrad, ev) -> LocalizationMaps:
    """FlowGrad-H of the pairs ``ev``: ``clean(RCGrad map) x flow magnitude`` (:func:`flowgrad_h`)."""
    _check_rate(model, ev)
    return localize_flowgrad_h(model, ev.images, ev.audio, ev.flow)


def en_branch_maps(model: FlowGradEN, ev) -> Iterator[tuple[str, LocalizationMaps]]:
    """FlowGrad-EN's two Grad-CAM maps scored apart, then their product (its own map), as
    ``(name, maps)`` in the metric's space: ``"image branch"``, ``"flow branch"``,
    ``"product (FlowGrad-EN)"`` (the last equals :func:`maps`)."""
    if model.kind != "flowgrad_en":
        raise ValueError(f"en_branch_maps needs a FlowGrad-EN model, got {model.kind}")
    _check_rate(model, ev)
    rule = POSTPROCESS[model.kind]
    image = to_grid(rcgrad_maps(model, ev.images, ev.audio))
    yield "image branch", LocalizationMaps(image, rule, model.kind)
    flow = to_grid(flow_maps(model, ev.flow, ev.audio))
    yield "flow branch", LocalizationMaps(flow, rule, model.kind)
    yield "product (FlowGrad-EN)", LocalizationMaps(image * flow, rule, model.kind)


# -- reference autograd Grad-CAM -----------------------------------------------------------------
class EmbeddingDot:
    """Grad-CAM target ``<embedding, vector>`` for one sample (``vector`` shape (D,))."""

    def __init__(self, vector: torch.Tensor) -> None:
        self.vector = vector.detach()

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        return (embedding * self.vector.to(embedding)).sum()


class GradCAM:
    """Autograd Grad-CAM on one target layer; hooks live only inside this object.

    Parameters
    ----------
    forward : callable
        Maps an input batch to embeddings ``(N, D)`` (e.g. ``lambda x: enc(x).embedding``).
    target_layer : nn.Module
        The layer whose output ``A (N, D, h, w)`` is explained.

    Use as a context manager (or call :meth:`close`) so the hooks are removed::

        with GradCAM(lambda x: enc(x).embedding, enc.target_layer) as cam:
            maps = cam(x, [EmbeddingDot(a) for a in audio_emb])   # (N, h, w)
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], target_layer: nn.Module) -> None:
        self.forward = forward
        self._activations: torch.Tensor | None = None
        self._gradients: torch.Tensor | None = None
        self._handle = target_layer.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._activations = output.detach()

        def keep_grad(grad: torch.Tensor) -> None:
            self._gradients = grad.detach()

        output.register_hook(keep_grad)

    def __call__(self, x: torch.Tensor, targets: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
        """Raw Grad-CAM ``ReLU(sum_k mean_ij(dS/dA_k) A_k)`` of ``S = sum_i targets[i](emb_i)``, (N, h, w)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            emb = self.forward(x)
            if len(targets) != emb.shape[0]:
                raise ValueError(f"{emb.shape[0]} samples but {len(targets)} targets")
            score = sum(t(e) for t, e in zip(targets, emb))
            score.backward()
        weights = self._gradients.mean(dim=(2, 3), keepdim=True)  # (N, D, 1, 1)
        return torch.relu((weights * self._activations).sum(dim=1))  # (N, h, w)

    def close(self) -> None:
        """Remove the hook (idempotent)."""
        self._handle.remove()

    def __enter__(self) -> GradCAM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def autograd_rcgrad_maps(model: RCGrad, images: np.ndarray, audio: np.ndarray,
                         flow: np.ndarray | None = None) -> np.ndarray:
    """Reference: per-sample autograd Grad-CAM through the image encoder, (N, h, w) raw maps.

    Equal to :func:`rcgrad_maps` (the tests check it); one backward pass per sample, slow.
    """
    _check_eval(model)
    size, dev = model.config.image_size, _device(model)
    aud = audio_embeddings(model, audio)
    out = []
    with GradCAM(lambda x: model.image_encoder(x).embedding, model.image_encoder.target_layer) as cam:
        for i in range(len(images)):
            img = prepare_images(images[i:i + 1], size).to(dev)
            flo = prepare_flow(flow[i:i + 1], size).to(dev) if model.kind == "flowgrad_ic" else None
            x = model.image_input(img, flo)
            out.append(cam(x, [EmbeddingDot(aud[i])]).cpu())
    return torch.cat(out).numpy().astype(np.float32)
