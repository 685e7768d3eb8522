"""``python -m vssl_core synth``: generate synthetic street scenes in the Urbansas layout."""
from __future__ import annotations

import argparse
import json
import time

from vssl_core.data.synth import SceneConfig, generate


def _parser() -> argparse.ArgumentParser:
    d = SceneConfig()
    p = argparse.ArgumentParser(prog="python -m vssl_core synth",
                                description="Generate synthetic urban street scenes (video, stereo "
                                            "audio, annotations) in the official Urbansas layout.")
    p.add_argument("--out", required=True, help="dataset folder to create (new, empty, or a previous "
                                                "synthetic dataset, which is replaced)")
    p.add_argument("--clips", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--duration", type=float, default=d.duration, help=f"seconds per clip ({d.duration})")
    p.add_argument("--fps", type=int, default=d.fps, help=f"video frame rate, even ({d.fps})")
    p.add_argument("--size", type=int, nargs=2, default=(d.width, d.height), metavar=("W", "H"),
                   help=f"video size ({d.width} {d.height})")
    p.add_argument("--night-fraction", type=float, default=d.night_fraction,
                   help=f"probability of a night clip ({d.night_fraction})")
    p.add_argument("--shake-prob", type=float, default=d.shake_prob,
                   help=f"probability of a shaky camera ({d.shake_prob})")
    p.add_argument("--idling-prob", type=float, default=d.idling_prob,
                   help=f"probability of an idling vehicle ({d.idling_prob})")
    p.add_argument("--offscreen-prob", type=float, default=d.offscreen_prob,
                   help=f"probability of an offscreen vehicle ({d.offscreen_prob})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    config = SceneConfig(duration=args.duration, fps=args.fps, width=args.size[0],
                         height=args.size[1], night_fraction=args.night_fraction,
                         shake_prob=args.shake_prob, idling_prob=args.idling_prob,
                         offscreen_prob=args.offscreen_prob)
    t0 = time.perf_counter()
    out = generate(args.out, args.clips, args.seed, config, n_jobs=args.jobs,
                   progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    print(f"synth: {args.clips} clips, {meta['counts']['boxes']} boxes, {meta['counts']['events']} "
          f"events in {time.perf_counter() - t0:.1f} s -> {out}")
    return 0
