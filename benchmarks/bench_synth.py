"""Synthetic scene generation speed: clips per second serial (n_jobs=1) vs parallel (n_jobs=2).

Usage: ``python benchmarks/bench_synth.py [--clips 10]``. Prints both rates and their ratio
(the baseline is the serial run of the same session); no timing is asserted anywhere.
"""
from __future__ import annotations

import argparse
import filecmp
import tempfile
import time
from pathlib import Path

from vssl_core.data.synth import SceneConfig, generate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    config = SceneConfig()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, args.jobs):
            out = Path(tmp) / f"j{jobs}"
            t0 = time.perf_counter()
            generate(out, args.clips, seed=0, config=config, n_jobs=jobs, progress=False)
            dt = time.perf_counter() - t0
            rates[jobs] = args.clips / dt
            print(f"n_jobs={jobs}: {args.clips} clips in {dt:.2f} s = {rates[jobs]:.2f} clips/s "
                  f"({dt / args.clips:.2f} s/clip)")
        same = all(filecmp.cmp(Path(tmp) / "j1" / "annotations" / f, Path(tmp) / f"j{args.jobs}"
                               / "annotations" / f, shallow=False)
                   for f in ("video_annotations.csv", "audio_annotations.csv", "objects.csv"))
    print(f"speed-up n_jobs={args.jobs} vs 1: {rates[args.jobs] / rates[1]:.2f}x; "
          f"identical CSVs: {same}")


if __name__ == "__main__":
    main()
