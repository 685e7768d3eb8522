"""What each model family learns from a batch: its inputs, its loss, and how it scores pairs.

The training loop (:mod:`vssl_core.training.loop`) is the same for every model; an objective
is the small part that differs:

- :class:`Contrastive` -- RCGrad, FlowGrad-IC, FlowGrad-EN: symmetric InfoNCE of the pooled
  embeddings (``model.loss``); a pair's score is the cosine of its image and audio embeddings.
- :class:`Trimap` -- LVS and Hear The Flow: the tri-map loss of the cosine maps
  (``model.loss``); a pair's score is its cosine map averaged over the map's own confident
  region (the rule the loss uses for its easy negatives).
- :class:`Similarity` -- Oya et al.: the similarity loss of eqs. 4-6
  (``model.similarity_loss``); a pair's score is ``cos(s, s_hat)`` with the localisation map
  computed from that pair's sound.
- :class:`DenseObjects` -- the object prior (:class:`~vssl_core.models.pretrain.PriorNet`):
  per-cell object classes of whole frames; no pairs, no retrieval.

``pair_scores(model, batch)`` returns an ``(n_images, n_sounds)`` matrix: the loop ranks the
images for each sound of a validation chunk (audio-to-image retrieval; chance is ``1 / n``).

Across processes (:mod:`~vssl_core.training.distributed`), ``global_loss(model, batch, counts)``
is what each rank back-propagates: the families with in-batch negatives gather their per-rank
outputs across ranks with gradients and compute the loss of the global batch (so negatives come
from every rank, as in one process); the object prior's per-sample loss needs no gather.

Batches: images ``(n, 3, s, s)`` floats in [0, 1] at the model's input size, audio as the model
reads it (waveforms ``(n, C, T)``, or LVS spectrograms ``(n, 1, 257, frames)``), flow as the
model reads it (magnitude ``(n, 1, s, s)`` px/step, or the field ``(n, 2, s, s)`` = (dx, dy)) or
None. A horizontal flip mirrors the image and its flow together (a mirrored field also changes
the sign of dx); the audio is mono, so it stays as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vssl_core.models.htf import HTF, prepare_flow_field
from vssl_core.models.lvs import LVS, cosine_maps, prepare_lvs_audio
from vssl_core.models.oya import OyaNet
from vssl_core.models.rcgrad import RCGrad, prepare_audio, prepare_flow, prepare_images
from vssl_core.training import distributed

__all__ = ["Batch", "Objective", "Contrastive", "Trimap", "Similarity", "DenseObjects", "objective_for",
           "flip_horizontal"]


@dataclass(frozen=True)
class Batch:
    """Model inputs of one batch (CPU tensors until :meth:`to`)."""

    images: torch.Tensor
    audio: torch.Tensor | None
    flow: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device) -> Batch:
        def move(x):
            return None if x is None else x.to(device)
        return Batch(self.images.to(device), move(self.audio), move(self.flow), move(self.targets))


def flip_horizontal(images: torch.Tensor, flow: torch.Tensor | None, flip: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror the selected samples left-right; a mirrored flow field gets ``dx -> -dx``.

    Parameters
    ----------
    images : Tensor, shape (N, 3, H, W)
    flow : Tensor, shape (N, 1, H, W) (magnitude) or (N, 2, H, W) (field dx, dy), or None
    flip : bool Tensor, shape (N,)

    Returns
    -------
    images, flow : new tensors of the input shapes
    """
    f = flip.to(device=images.device, dtype=torch.bool).view(-1, 1, 1, 1)
    images = torch.where(f, images.flip(-1), images)
    if flow is not None:
        if flow.ndim != 4 or flow.shape[1] not in (1, 2):
            raise ValueError(f"flow must be (N, 1, H, W) or the (N, 2, H, W) field, got {tuple(flow.shape)}")
        mirrored = flow.flip(-1)
        if flow.shape[1] == 2:
            mirrored = mirrored * torch.tensor([-1.0, 1.0], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
        flow = torch.where(f, mirrored, flow)
    return images, flow


class Objective:
    """Base: make a batch from arrays; subclasses give ``loss`` and ``pair_scores``."""

    #: Which flow array the family reads: None, "flow" (magnitude) or "flow_field".
    flow_key: str | None = None

    def __init__(self, model: nn.Module) -> None:
        self.flow_key = self.flow_array(model)

    def flow_array(self, model: nn.Module) -> str | None:
        return None

    def audio_input(self, model: nn.Module, waves: np.ndarray) -> torch.Tensor:
        return prepare_audio(waves)

    def batch(self, model: nn.Module, arrays: Any, idx: np.ndarray, flip: np.ndarray | None = None) -> Batch:
        """The batch of rows ``idx`` of ``arrays`` (a TrainingArrays), flipped where ``flip``."""
        size = model.config.image_size
        images = prepare_images(arrays.images[idx], size)
        flow = None
        if self.flow_key == "flow":
            if arrays.flow is None:
                raise ValueError(f"{type(model).__name__} needs the flow magnitude; the arrays have none")
            flow = prepare_flow(arrays.flow[idx], size)
        elif self.flow_key == "flow_field":
            if arrays.flow_field is None:
                raise ValueError(f"{type(model).__name__} needs the flow field; the arrays have none")
            flow = prepare_flow_field(arrays.flow_field[idx], size)
        if flip is not None:
            images, flow = flip_horizontal(images, flow, torch.as_tensor(np.asarray(flip, dtype=bool)))
        return Batch(images, self.audio_input(model, arrays.audio[idx]), flow)

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def pair_scores(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def global_loss(self, model: nn.Module, batch: Batch, counts: list[int]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss this rank back-propagates, and the global batch's loss value.

        Parameters
        ----------
        batch : Batch
            This rank's rows of the global batch (``counts[rank]`` of them).
        counts : list of int
            Rows of every rank (:func:`vssl_core.training.distributed.shard`).

        Returns
        -------
        loss : Tensor, scalar
            Its gradient, averaged over ranks by DistributedDataParallel, is the gradient of
            :meth:`loss` of the global batch in one process.
        value : Tensor, scalar, detached
            :meth:`loss` of the global batch (the same on every rank).
        """
        loss = self.gathered_loss(model, batch, lambda x: distributed.gather_rows(x, counts))
        return loss, loss.detach()

    def gathered_loss(self, model: nn.Module, batch: Batch, gather) -> torch.Tensor:
        """The loss of the global batch from this rank's ``batch``; ``gather`` maps a tensor of
        this rank's rows ``(n, ...)`` to the global batch's rows ``(sum(counts), ...)``."""
        raise NotImplementedError


class Contrastive(Objective):
    """RCGrad / FlowGrad-IC / FlowGrad-EN."""

    def flow_array(self, model: nn.Module) -> str | None:
        return "flow" if model.config.uses_flow else None

    def forward(self, model: RCGrad, batch: Batch) -> Any:
        return model(batch.images, batch.audio, batch.flow)

    def loss(self, model: RCGrad, batch: Batch) -> torch.Tensor:
        return model.loss(self.forward(model, batch))

    def pair_scores(self, model: RCGrad, batch: Batch) -> torch.Tensor:
        out = self.forward(model, batch)
        v = nn.functional.normalize(out.image.embedding, dim=1)
        a = nn.functional.normalize(out.audio.embedding, dim=1)
        return v @ a.t()

    def gathered_loss(self, model: RCGrad, batch: Batch, gather) -> torch.Tensor:
        out = self.forward(model, batch)

        def g(enc):
            return None if enc is None else enc._replace(embedding=gather(enc.embedding))
        return model.loss(out._replace(image=g(out.image), audio=g(out.audio), flow=g(out.flow)))


class Trimap(Objective):
    """LVS / Hear The Flow (audio enters as LVS spectrograms)."""

    def flow_array(self, model: nn.Module) -> str | None:
        return "flow_field" if isinstance(model, HTF) and model.config.uses_flow else None

    def audio_input(self, model: nn.Module, waves: np.ndarray) -> torch.Tensor:
        return prepare_lvs_audio(np.asarray(waves), model.config.audio_sr)

    def forward(self, model: LVS | HTF, batch: Batch) -> Any:
        if isinstance(model, HTF):
            return model(batch.images, batch.audio, batch.flow)
        return model(batch.images, batch.audio)

    def loss(self, model: LVS | HTF, batch: Batch) -> torch.Tensor:
        return model.loss(self.forward(model, batch))

    def pair_scores(self, model: LVS | HTF, batch: Batch) -> torch.Tensor:
        out = self.forward(model, batch)
        sim = cosine_maps(out.image_features, out.audio_embedding).flatten(2)  # (n, n, h*w)
        cfg = model.config
        m = torch.sigmoid((sim - cfg.eps_p) / cfg.tau)
        return (m * sim).sum(2) / m.sum(2).clamp_min(torch.finfo(sim.dtype).tiny)

    def gathered_loss(self, model: LVS | HTF, batch: Batch, gather) -> torch.Tensor:
        out = self.forward(model, batch)
        return model.loss(out._replace(image_features=gather(out.image_features),
                                       audio_embedding=gather(out.audio_embedding)))


class Similarity(Objective):
    """Oya et al.'s model."""

    def forward(self, model: OyaNet, batch: Batch) -> Any:
        return model(batch.images, batch.audio)

    def loss(self, model: OyaNet, batch: Batch) -> torch.Tensor:
        return model.similarity_loss(batch.images, batch.audio).loss

    def pair_scores(self, model: OyaNet, batch: Batch) -> torch.Tensor:
        return model.pair_scores(batch.images, batch.audio)

    def gathered_loss(self, model: OyaNet, batch: Batch, gather) -> torch.Tensor:
        """``model.similarity_loss`` (``shift=1``, ``config.negatives``) of the global batch: the
        encoders run on this rank's rows, the selection module on the gathered ``v, P, s``."""
        from vssl_core.models.oya import selection, similarity_loss

        v, p = model.encode_image(batch.images)
        s = model.encode_audio(batch.audio)
        v, p, s = gather(v), gather(p), gather(s)
        n = v.shape[0]
        if n < 2:
            raise ValueError(f"need a batch of >= 2, got N={n}")
        if model.config.negatives == "shift":
            s_all = torch.cat([s, torch.roll(s, shifts=-1, dims=0)])  # row n + N: s[(n + 1) % N]
            v_all, p_all = torch.cat([v, v]), torch.cat([p, p])
            positive = torch.arange(2 * n, device=s.device) < n
        else:
            s_all = s.repeat(n, 1)  # row i * N + j: image i with sound j
            v_all, p_all = v.repeat_interleave(n, dim=0), p.repeat_interleave(n, dim=0)
            idx = torch.arange(n, device=s.device)
            positive = (idx[:, None] == idx[None, :]).reshape(-1)
        alpha, _ = selection(v_all, s_all, p_all)
        per_pair = similarity_loss(s_all, model.attend(v_all, alpha), positive)
        return (per_pair[positive].mean() + per_pair[~positive].mean()) / 2


class DenseObjects(Objective):
    """The object prior: per-cell classes; arrays are a :class:`~vssl_core.models.pretrain.PriorArrays`."""

    def batch(self, model: nn.Module, arrays: Any, idx: np.ndarray, flip: np.ndarray | None = None) -> Batch:
        images = prepare_images(arrays.images[idx], model.config.image_size)
        targets = torch.from_numpy(np.asarray(arrays.targets[idx], dtype=np.float32))
        if flip is not None:
            f = torch.as_tensor(np.asarray(flip, dtype=bool)).view(-1, 1, 1, 1)
            images = torch.where(f, images.flip(-1), images)
            targets = torch.where(f, targets.flip(-1), targets)
        return Batch(images, None, None, targets)

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        return model(batch.images)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model.loss(model(batch.images), batch.targets)

    def pair_scores(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        return None

    def global_loss(self, model: nn.Module, batch: Batch, counts: list[int]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A per-sample mean needs no gather: this rank's mean weighted by its share of the rows
        (times the number of ranks, which DDP's averaging divides out)."""
        ctx = distributed.context()
        n, total = counts[ctx.rank], sum(counts)
        local = self.loss(model, batch)
        value = distributed.all_reduce_sum(local.detach() * (n / total))
        return local * (n * len(counts) / total), value


def objective_for(model: nn.Module) -> Objective:
    """The objective of ``model``'s family."""
    from vssl_core.models.pretrain import PriorNet

    if isinstance(model, PriorNet):
        return DenseObjects(model)
    if isinstance(model, RCGrad):
        return Contrastive(model)
    if isinstance(model, (LVS, HTF)):
        return Trimap(model)
    if isinstance(model, OyaNet):
        return Similarity(model)
    raise TypeError(f"no training objective for {type(model).__name__}: expected RCGrad (and its FlowGrad "
                    "subclasses), LVS, HTF or OyaNet")
