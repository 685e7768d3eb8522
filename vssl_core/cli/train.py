"""``python -m vssl_core train``: train every model the notebooks use, then write the shipped weights.

Each model is trained once (the local cache keeps it; an interrupted run resumes from its last
epoch, even days later), checked on held-out validation data every epoch, and exported with its
history and provenance to ``weights/<profile>/`` (``--no-export`` skips that). ``--list`` shows
what would be trained and what is already there. A GPU is used when present.

Launched by ``torchrun`` (``torchrun --nproc_per_node N -m vssl_core train ...``, or ``srun
torchrun ...`` on a Slurm cluster), every process trains each model together
(:mod:`vssl_core.training.distributed`); rank 0 builds the data caches first, writes the cache
and the shipped weights, and prints.
"""
from __future__ import annotations

import argparse
import re
import time

from vssl_core.cli import ArgumentParser, add_debug_flag, run_cli
from vssl_core.errors import DataError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m vssl_core train", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick", help="profile name in notebooks/profiles/ (default quick)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="train only these models (and what they start from); names or prefixes, see --list")
    p.add_argument("--list", action="store_true", help="list the models, their keys and where each is found")
    p.add_argument("--no-export", action="store_true", help="train (or check) without writing weights/")
    p.add_argument("--retrain", action="store_true",
                   help="ignore the shipped weights (the local cache is still used)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="K=V",
                   help="override a Setup field of every study, e.g. -p epochs=2 (repeatable)")
    return add_debug_flag(p)


def _parse_params(items: list[str]) -> dict:
    import ast

    out = {}
    for item in items:
        if "=" not in item:
            raise DataError(f"--param {item!r}: expected K=V. Fix: write e.g. -p epochs=2")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def _selected(names: list[str], only: list[str] | None) -> list[str]:
    if not only:
        return names
    chosen = [n for n in names if any(n == o or n.startswith(o) for o in only)]
    if not chosen:
        raise DataError(f"--only {only}: no model matches. Fix: choose among {names}")
    return chosen


def _summary_row(name: str, meta: dict) -> str:
    h = meta.get("history") or []
    best = min(h, key=lambda r: r.get("monitored", float("inf"))) if h else {}
    fmt = lambda k: f"{best[k]:.3f}" if isinstance(best.get(k), float) else "-"  # noqa: E731
    return (f"{name:<14} {meta.get('source', '-'):<8} epochs {len(h):>2} best {best.get('epoch', '-')!s:>2} "
            f"val loss {fmt('val_loss')} retrieval {fmt('val_retrieval')} "
            f"val cIoU@0.3 {fmt('val_ciou@0.3') if 'val_ciou@0.3' in best else fmt('val_loc_ciou@0.3')} "
            f"audio sens. {fmt('val_audio_sensitivity')}")


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from vssl_core.cli.catalogue import all_specs
    from vssl_core.training import distributed
    from vssl_core.training.store import Models, cached
    from vssl_core.training.weights import code_commit, export, read_manifest, weights_dir

    main_rank = distributed.is_main()  # joins the process group when launched by torchrun
    say = print if main_rank else (lambda *a, **k: None)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.profile):
        raise DataError(f"--profile {args.profile!r}: not a profile name. Fix: use letters, digits, _ or -")
    overrides = _parse_params(args.param)
    folder = weights_dir(args.profile)
    models = Models(None if args.retrain else folder, allow_train=not args.list, say=say if main_rank else None)
    try:
        specs = all_specs(args.profile, models, overrides)
    except ValueError as exc:  # a Setup or model config that refuses a value: the user's input
        given = " ".join(f"-p {k}={v!r}" for k, v in overrides.items()) or "no --param"
        raise DataError(f"profile {args.profile!r} (notebooks/profiles/{args.profile}.toml) with {given}: {exc}. "
                        f"Fix: give the field a value it accepts") from exc
    names = _selected(list(specs), args.only)
    if args.list:
        shipped = read_manifest(folder)["models"]
        for name in names:
            spec = specs[name]
            where = ("shipped" if shipped.get(name, {}).get("key") == spec.key
                     else "cached" if cached(spec) else "to train")
            say(f"{name:<14} key {spec.key}  {where:<9} ~{spec.minutes:.0f} min on a 2-core CPU")
        return 0
    commit = code_commit()  # the code that trains them, whatever the tree holds when they are done
    t0 = time.perf_counter()
    for name in names:
        models.get(specs[name])
    say(f"\n{len(names)} models in {(time.perf_counter() - t0) / 60:.1f} min:")
    for name in names:
        say(" ", _summary_row(name, models.meta[name]))
    if not args.no_export and main_rank:
        done = [specs[n] for n in specs if n in models.meta]  # everything obtained, dependencies too
        print(f"wrote {export(folder, done, models, commit)}")
    return 0

def main(argv: list[str] | None = None) -> int:
    """Run the ``train`` command under the shared error contract (:func:`vssl_core.cli.run_cli`)."""
    return run_cli("train", _main, argv)
