"""``python -m vssl_core scale``: train RCGrad (or FlowGrad-IC/-EN) on a folder of real videos.

The notebooks train on the synthetic scenes (``python -m vssl_core train``); this command trains
the same models, with the same loop, on a real Urbansas release (its unlabelled clips included) or
a VGGSound-style folder of videos (:mod:`vssl_core.data.folders`), on one CPU, one GPU or many
(launch it with ``torchrun``). Sizes come from a profile's ``[02_flowgrad]`` table (``--profile
paper``: 224 px, full-width ResNet-18s, 5 s of audio, batch 128), overridable with ``-p K=V``.

Writes ``OUT/model.pt`` (loadable with :func:`vssl_core.training.store.load_trained`; it also
records the data folder and the windows' key) and keeps ``OUT/work/last.pt`` to resume an
interrupted run (run the same command again).

Example::

    torchrun --standalone --nproc_per_node 8 -m vssl_core scale \\
        --data /data/vggsound --profile paper --windows 200000 --out runs/vggsound-rcgrad
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from vssl_core.cli import ArgumentParser, add_debug_flag, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m vssl_core scale", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a real Urbansas folder or a VGGSound-style folder of videos")
    p.add_argument("--layout", default="auto", choices=["auto", "urbansas", "vggsound"])
    p.add_argument("--out", required=True, help="output folder (model.pt, work/last.pt)")
    p.add_argument("--model", default="rcgrad", choices=["rcgrad", "flowgrad_ic", "flowgrad_en"])
    p.add_argument("--init", default=None, help="a trained RCGrad model.pt to start from (FlowGrad-IC/-EN: required)")
    p.add_argument("--profile", default="quick", help="sizes from notebooks/profiles/PROFILE.toml [02_flowgrad]")
    p.add_argument("-p", "--param", action="append", default=[], metavar="K=V",
                   help="override a field of the profile (e.g. -p batch_size=256 -p epochs=20)")
    p.add_argument("--windows", type=int, default=None, help="training windows (default: the profile's train_windows)")
    p.add_argument("--val-windows", type=int, default=None, help="validation windows (default: the profile's)")
    p.add_argument("--val-clips", type=int, default=None, help="validation clips (default: 5%% of the clips, >= 1)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPUs that support it, or the CPU)")
    p.add_argument("--no-progress", action="store_true")
    return add_debug_flag(p)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from vssl_core.cli.train import _parse_params
    from vssl_core.data.folders import folder_training_data, open_folder
    from vssl_core.errors import DataError
    from vssl_core.models.checkpoints import save_checkpoint
    from vssl_core.models.rcgrad import FlowGradEN, FlowGradIC, ModelConfig, build_model
    from vssl_core.training import distributed
    from vssl_core.training.loop import train
    from vssl_core.training.rcgrad_family import RCGradFamilySetup
    from vssl_core.training.store import load_trained

    ctx = distributed.context()
    say = print if ctx.is_main else (lambda *a, **k: None)
    setup = RCGradFamilySetup.for_profile(args.profile, _parse_params(args.param))
    with distributed.main_first():  # rank 0 lays out the folder and builds the cached windows
        ds = open_folder(args.data, args.layout)
        pool = ds.unlabelled_clips()
        val_clips = args.val_clips or max(1, len(pool) // 20)
        data = folder_training_data(
            ds, n_windows=args.windows or setup.train_windows, n_val_windows=args.val_windows or setup.val_windows,
            val_clips=val_clips, seconds=setup.train_audio_seconds, image_size=setup.image_size, flow=setup.flow,
            audio_sr=setup.audio_sr, seed=setup.seed, progress=ctx.is_main and not args.no_progress)
    say(f"{ds}: {len(data.train)} training windows, {len(data.val)} validation windows "
        f"({val_clips} validation clips), windows key {data.key}")
    cfg = ModelConfig(kind=args.model, width=setup.width, layer4_stride=setup.layer4_stride,
                      image_size=setup.image_size, audio_sr=setup.audio_sr, flow_input=setup.flow_input)
    torch.manual_seed(setup.seed)
    if args.model == "rcgrad":
        model = build_model(cfg)
        if args.init:
            model.load_state_dict(load_trained(args.init)[0].state_dict())
    else:
        if not args.init:
            raise DataError(f"--model {args.model} starts from a trained RCGrad. Fix: pass --init RCGRAD/model.pt")
        model = (FlowGradIC if args.model == "flowgrad_ic" else FlowGradEN).from_rcgrad(load_trained(args.init)[0])
        model.config = cfg
    epochs = setup.epochs if args.model == "rcgrad" else setup.finetune_epochs
    config = setup.train_config(epochs)
    config = type(config)(**{**config.to_dict(), "bf16": bool(args.bf16)})
    out = Path(args.out)
    t0 = time.perf_counter()
    model, history = train(model, config, data.train, data.val, out / "work", resume=True,
                           progress=not args.no_progress, desc=args.model)
    if ctx.is_main:
        path = save_checkpoint(out / "model.pt", {
            "model_class": type(model).__name__, "model_config": model.config.to_dict(),
            "train_config": config.to_dict(), "history": history, "data": {
                "folder": str(Path(args.data).resolve()), "layout": args.layout, "windows_key": data.key,
                "windows": len(data.train), "val_windows": len(data.val)},
            "world_size": ctx.world_size, "seconds": round(time.perf_counter() - t0, 1),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
        best = min(history, key=lambda h: h["monitored"])
        say(f"wrote {path}: {len(history)} epochs, best {best['epoch']} (val loss {best.get('val_loss', float('nan')):.4f}, "
            f"retrieval {best.get('val_retrieval', float('nan')):.3f}), {ctx.world_size} process(es)")
    distributed.barrier()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``scale`` command under the shared error contract (:func:`vssl_core.cli.run_cli`)."""
    return run_cli("scale", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
