"""Tiny training runs for the distributed tests, launched as
``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_tiny_run.py SPEC.json``
(or run plainly for one process).

SPEC.json: ``{"out": results.json, "runs": [...]}`` where a run is either a training run
``{"name", "family", "epochs", "out_dir" (optional), "interrupt_at" (optional: rank 0 dies in that
epoch, after its training steps, before its checkpoint)}`` or a gradient check ``{"name",
"family", "grad": true}`` (the gradients of the first step of epoch 0: the global batch in one
process, its shards under DDP). Rank 0 writes ``{name: {...}}`` to ``out`` after every run (so an
interrupted launch keeps what finished before).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_train import CFG, OYA_CFG, RC, T, _model, _planted  # noqa: E402

from vssl_core.models.lvs import LVS, LVSConfig  # noqa: E402
from vssl_core.models.oya import OyaNet  # noqa: E402
from vssl_core.models.pretrain import PRIOR_CLASSES, PriorArrays, PriorConfig, PriorNet  # noqa: E402
from vssl_core.models.rcgrad import FlowGradEN, RCGrad  # noqa: E402
from vssl_core.training import distributed  # noqa: E402
from vssl_core.training.loop import _Step, epoch_plan, train  # noqa: E402
from vssl_core.training.objectives import objective_for  # noqa: E402

#: The tiny profile: 44 training windows in global batches of 9 (ranks get 5 + 4 rows; the last
#: batch of 8 gives 4 + 4), 16 validation windows, BatchNorm recalibration on 2 batches.
TINY = replace(CFG, batch_size=9, bn_batches=2, num_threads=1)


def family(name: str):
    """(model, train arrays, validation arrays) of a tiny run."""
    if name == "rcgrad":
        return _model(RCGrad, RC), _planted(44), _planted(16, seed=1)
    if name == "flowgrad_en":
        return FlowGradEN.from_rcgrad(_model(RCGrad, RC)), _planted(44), _planted(16, seed=1)
    if name == "oya":
        return _model(OyaNet, OYA_CFG), _planted(44, samples=T), _planted(16, seed=1, samples=T)
    if name == "lvs":
        return (_model(LVS, LVSConfig(width=0.125, image_size=32, audio_sr=11025)), _planted(44, samples=T),
                _planted(16, seed=1, samples=T))
    if name == "prior":
        a = _planted(44)
        targets = np.zeros((44, len(PRIOR_CLASSES), 2, 2), np.float32)
        targets[:, 0] = 1.0
        targets[::3, :, 0, 1], targets[::3, 1, 0, 1] = 0.0, 1.0
        return (_model(PriorNet, PriorConfig(width=0.125, layer4_stride=1, image_size=32)),
                PriorArrays(a.images, targets), None)
    raise ValueError(name)


def first_step_grads(name: str) -> dict:
    """Loss and gradients of the first step of epoch 0 (the global batch of TINY)."""
    ctx = distributed.context()
    model, arrays, _ = family(name)
    obj = objective_for(model)
    batches, flips = epoch_plan(len(arrays), TINY, 0)
    idx = batches[0]
    model.train()
    if ctx.is_distributed:
        distributed.convert_batchnorm(model)
        step = torch.nn.parallel.DistributedDataParallel(_Step(model, obj), broadcast_buffers=False)
        rows, counts = distributed.shard(idx, ctx.rank, ctx.world_size)
        with distributed.synced():
            loss, value = step(obj.batch(model, arrays, rows, flips[rows]), counts)
    else:
        value = loss = obj.loss(model, obj.batch(model, arrays, idx, flips[idx]))
    loss.backward()
    return {"loss": float(value.detach()), "grads": {k: p.grad.flatten().tolist() for k, p in model.named_parameters()
                                            if p.grad is not None}}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    ctx = distributed.context()
    torch.set_num_threads(1)
    results = {}
    for run in spec["runs"]:
        if run.get("grad"):
            results[run["name"]] = first_step_grads(run["family"])
            if ctx.is_main:
                Path(spec["out"]).write_text(json.dumps(results))
            continue
        model, arrays, val = family(run["family"])
        stop = run.get("interrupt_at")

        def on_epoch(m, stop=stop, seen=[0]):
            seen[0] += 1
            if stop is not None and seen[0] == stop:
                os._exit(3)  # a crash: no cleanup, no checkpoint of this epoch
            return {}
        trained, history = train(model, replace(TINY, epochs=run["epochs"]), arrays, val, run.get("out_dir"),
                                 progress=False, on_epoch=on_epoch if stop is not None else None)
        results[run["name"]] = {
            "history": [{k: v for k, v in h.items() if k != "seconds"} for h in history],
            "weights": {k: v.flatten()[:64].tolist() for k, v in trained.state_dict().items()
                        if v.is_floating_point()},
            "world_size": ctx.world_size,
            "bn_classes": sorted({type(m).__name__ for m in trained.modules() if "BatchNorm" in type(m).__name__}),
        }
        if ctx.is_main:
            Path(spec["out"]).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
