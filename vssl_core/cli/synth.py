"""``python -m vssl_core synth``: generate synthetic street scenes in the Urbansas layout.

Every argument is range-checked before anything is generated (positive clip and worker counts,
a seed >= 0, a finite positive duration, an even frame rate, probabilities in [0, 1]); a bad one
is one message and exit status 2. ``--out`` must be new, empty, or a dataset this generator
wrote (its ``meta.json`` and nothing but the files it lists); anything else is refused, never
deleted. Ctrl-C or SIGTERM removes the temporary folder and stops the workers
(:func:`vssl_core.cli.run_cli`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from vssl_core.cli import (ArgumentParser, add_debug_flag, check_output_path, even_positive_int,
                           non_negative_int, positive_float, positive_int, probability, run_cli)


def _parser() -> argparse.ArgumentParser:
    from vssl_core.data.synth import SceneConfig

    d = SceneConfig()
    p = ArgumentParser(prog="python -m vssl_core synth",
                                description="Generate synthetic urban street scenes (video, stereo "
                                            "audio, annotations) in the official Urbansas layout.")
    p.add_argument("--out", required=True, help="dataset folder to create (new, empty, or a previous "
                                                "synthetic dataset, which is replaced)")
    p.add_argument("--clips", type=positive_int, required=True, help="number of clips (>= 1)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (>= 0, default 0)")
    p.add_argument("--jobs", type=positive_int, default=2, help="worker processes (>= 1, default 2)")
    p.add_argument("--duration", type=positive_float, default=d.duration,
                   help=f"seconds per clip, a multiple of 0.5 ({d.duration})")
    p.add_argument("--fps", type=even_positive_int, default=d.fps,
                   help=f"video frame rate, even ({d.fps})")
    p.add_argument("--size", type=positive_int, nargs=2, default=(d.width, d.height),
                   metavar=("W", "H"), help=f"video size ({d.width} {d.height})")
    p.add_argument("--night-fraction", type=probability, default=d.night_fraction,
                   help=f"probability of a night clip ({d.night_fraction})")
    p.add_argument("--shake-prob", type=probability, default=d.shake_prob,
                   help=f"probability of a shaky camera ({d.shake_prob})")
    p.add_argument("--idling-prob", type=probability, default=d.idling_prob,
                   help=f"probability of an idling vehicle ({d.idling_prob})")
    p.add_argument("--offscreen-prob", type=probability, default=d.offscreen_prob,
                   help=f"probability of an offscreen vehicle ({d.offscreen_prob})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return add_debug_flag(p)


def _main(argv: list[str]) -> int:
    from vssl_core.data.synth import SceneConfig, generate

    args = _parser().parse_args(argv)
    config = SceneConfig(duration=args.duration, fps=args.fps, width=args.size[0],
                         height=args.size[1], night_fraction=args.night_fraction,
                         shake_prob=args.shake_prob, idling_prob=args.idling_prob,
                         offscreen_prob=args.offscreen_prob)
    check_output_path(args.out, [], "--out", is_dir=True)
    t0 = time.perf_counter()
    out = generate(args.out, args.clips, args.seed, config, n_jobs=args.jobs,
                   progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    print(f"synth: {args.clips} clips, {meta['counts']['boxes']} boxes, {meta['counts']['events']} "
          f"events in {time.perf_counter() - t0:.1f} s -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("synth", _main, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
