"""Optical-flow throughput: flow maps per second, serial (n_jobs=1) vs parallel (n_jobs=2).

Usage::

    python benchmarks/bench_flow.py [--root DIR] [--protocol flowgrad] [--repeat 2]

``--root`` defaults to ``$VSSL_SHARED_DATA/urbansas-mini``. Each configuration computes the
flow map of every evaluation pair (decode + Farneback, one task per clip); the best of
``--repeat`` runs is reported, with the parallel/serial speed ratio measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None)
    parser.add_argument("--protocol", default="flowgrad")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    root = args.root or (Path(os.environ.get("VSSL_SHARED_DATA", "../shared/data"))
                         / "urbansas-mini")

    from vssl_core.data.urbansas import UrbansasDataset
    from vssl_core.data.flow import FlowParams, flow_for_pairs, start_method

    ds = UrbansasDataset(root)
    pairs = ds.pairs(args.protocol)
    params = FlowParams()
    print(f"root={ds.root} pairs={len(pairs)} clips={len(pairs.clips)} "
          f"start_method={start_method()}")
    best: dict[int, float] = {}
    ref = None
    for n_jobs in args.jobs:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            maps = flow_for_pairs(ds, pairs, params, n_jobs=n_jobs, progress=False)
            times.append(time.perf_counter() - t0)
        ref = maps if ref is None else ref
        same = np.array_equal(np.asarray(ref), np.asarray(maps))
        best[n_jobs] = min(times)
        print(f"n_jobs={n_jobs}: {best[n_jobs]:.2f} s, {len(pairs) / best[n_jobs]:.1f} maps/s "
              f"(identical to n_jobs={args.jobs[0]}: {same})")
    base = best[args.jobs[0]]
    for n_jobs in args.jobs[1:]:
        print(f"speed-up n_jobs={n_jobs} vs n_jobs={args.jobs[0]}: {base / best[n_jobs]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
