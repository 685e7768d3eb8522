"""Benchmark: vectorised cIoU / AUC / bootstrap of ``vssl_core.eval.metrics`` against naive loops.

The baseline is the deliberately naive per-sample implementation of
``tests/fixtures/make_metrics_reference.py`` (one NumPy sort per map, Python loops for the
dataset statistics), measured in the same run on the same data. Values must agree exactly
(NaN == NaN); the script prints times and ratios and asserts nothing about speed.

Data: ``--n`` (default 5,704, the size of the FlowGrad Urbansas evaluation set) heatmaps made by
bilinearly upsampling random 14 x 14 maps (like a ResNet layer4 map) and Urbansas-like GT maps
of 1-4 random boxes; a few samples get an empty GT and a constant map (the 0/0 case).
Memory: maps and GTs are float32, 2 x N x 200 KB (2.3 GB for 5,704); ``ciou`` itself works in
chunks of ``metrics.CHUNK`` samples.

Usage::

    .venv/bin/python benchmarks/bench_metrics.py [--n 5704] [--n-boot 1000] [--seed 0]
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import time
from pathlib import Path

import numpy as np

from vssl_core.eval import metrics
from vssl_core.eval.bootstrap import bootstrap_ci, bootstrap_distribution, resample_indices

ROOT = Path(__file__).resolve().parent.parent


def _naive_module():
    path = ROOT / "tests" / "fixtures" / "make_metrics_reference.py"
    spec = importlib.util.spec_from_file_location("naive_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Urbansas-like GT maps and Grad-CAM-like heatmaps that partly follow them.

    Each heatmap is a 14 x 14 map (noise, plus a bump on the cells of a random subset of the
    GT boxes), passed through ReLU(x - 0.5) like a Grad-CAM and bilinearly upsampled to 224:
    mostly sparse maps (the median is then 0 and needs no partial sort) with some dense ones.
    """
    rng = np.random.default_rng(seed)
    maps = np.empty((n, metrics.GRID, metrics.GRID), dtype=np.float32)
    gts = np.empty_like(maps)
    low = np.empty((n, 14, 14), dtype=np.float32)
    for i in range(n):
        m = rng.integers(1, 5)
        xy = rng.uniform(0, 1100, size=(m, 2)) * [1, 0.6]
        wh = rng.uniform(40, 400, size=(m, 2)) * [1, 0.6]
        boxes = np.hstack([xy, wh])
        gts[i] = metrics.gt_map_urbansas(boxes)
        noise = rng.random((14, 14), dtype=np.float32) * rng.uniform(0.3, 1.5)
        hit = metrics.gt_map_urbansas(boxes[rng.random(m) < 0.7])[8::16, 8::16]
        low[i] = np.maximum(noise + rng.uniform(0.0, 1.0) * hit - 0.5, 0)
    for s in range(0, n, 256):
        maps[s:s + 256] = metrics.resize_to_grid(low[s:s + 256])
    empty = rng.choice(n, size=max(1, n // 1000), replace=False)
    gts[empty] = 0
    maps[empty] = 0.25
    return maps, gts


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def naive_bootstrap(cious: np.ndarray, idx: np.ndarray, at: float) -> tuple[np.ndarray, ...]:
    """Per-resample NumPy loop (a strong baseline: one vector comparison per threshold)."""
    xs = [0.05 * i for i in range(21)]
    at_vals, auc_vals = [], []
    for rows in idx:
        c = cious[rows]
        at_vals.append(np.mean(c >= at))
        auc_vals.append(np.trapezoid([np.mean(c >= x) for x in xs], xs))
    return np.array(at_vals), np.array(auc_vals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5704)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--at", type=float, default=0.3)
    args = parser.parse_args()
    naive = _naive_module()
    print(f"N = {args.n}, n_boot = {args.n_boot}, numpy {np.__version__}, "
          f"cpus {os.cpu_count()}, chunk {metrics.CHUNK}")

    (maps, gts), t_data = timed(make_data, args.n, args.seed)
    print(f"data: {maps.nbytes / 1e9:.2f} GB maps + {gts.nbytes / 1e9:.2f} GB GT "
          f"({t_data:.1f} s to make)")

    for method in ("clean", "median"):
        def run_vec():
            c = metrics.ciou(maps, gts, postprocess=method)
            return c, metrics.auc(c), metrics.ciou_at(c, args.at)

        def run_naive():
            c = [naive.naive_ciou(maps[i], gts[i], method, 0.5) for i in range(len(maps))]
            return np.array(c), naive.naive_auc(c), naive.naive_fraction(c, args.at)

        (c_vec, auc_vec, at_vec), t_vec = timed(run_vec)
        (c_nai, auc_nai, at_nai), t_nai = timed(run_naive)
        same = np.array_equal(c_vec, c_nai, equal_nan=True)
        print(f"[{method:6s}] cIoU+AUC  vectorised {t_vec:7.2f} s | naive loop {t_nai:7.2f} s | "
              f"ratio {t_nai / t_vec:6.1f}x | identical per-sample: {same} | "
              f"AUC {auc_vec:.6f} vs {auc_nai:.6f} | cIoU@{args.at} {at_vec:.6f} vs {at_nai:.6f}"
              f" | NaN {int(np.isnan(c_vec).sum())}")
        if not (same and auc_vec == auc_nai and at_vec == at_nai):
            raise SystemExit("MISMATCH between vectorised and naive results")

    cious = metrics.ciou(maps, gts, "clean")
    del maps, gts
    stat_at = functools.partial(metrics.ciou_at, at=args.at)

    def run_boot():  # what evaluate() does: the statistics with the level-count fast path
        return (bootstrap_ci(cious, metrics.CIoUAt(args.at), n_boot=args.n_boot, seed=args.seed),
                bootstrap_ci(cious, metrics.AUC(), n_boot=args.n_boot, seed=args.seed))

    def run_boot_generic():  # plain callables: gathered (block, N) resamples
        return (bootstrap_ci(cious, stat_at, n_boot=args.n_boot, seed=args.seed),
                bootstrap_ci(cious, metrics.auc, n_boot=args.n_boot, seed=args.seed))

    (ci_at, ci_auc), t_boot = timed(run_boot)
    (g_at, g_auc), t_gen = timed(run_boot_generic)
    if (g_at, g_auc) != (ci_at, ci_auc):
        raise SystemExit("MISMATCH between the fast and the gathered bootstrap")
    idx = resample_indices(cious.size, args.n_boot, args.seed)
    (nb_at, nb_auc), t_nboot = timed(naive_bootstrap, cious, idx, args.at)
    same_boot = (np.array_equal(nb_at, bootstrap_distribution(cious, stat_at, args.n_boot,
                                                              args.seed))
                 and np.allclose(nb_auc, bootstrap_distribution(cious, metrics.auc, args.n_boot,
                                                                args.seed), rtol=0, atol=1e-12))
    print(f"[boot  ] cIoU@{args.at}+AUC CIs fast path (levels) {t_boot:7.2f} s | gathered floats "
          f"{t_gen:7.2f} s | per-resample numpy loop {t_nboot:7.2f} s | loop / fast "
          f"{t_nboot / t_boot:6.1f}x | gathered / fast {t_gen / t_boot:5.1f}x | "
          f"same distributions: {same_boot}")
    print(f"         cIoU@{args.at} = {ci_at.estimate:.4f} [{ci_at.lo:.4f}, {ci_at.hi:.4f}], "
          f"AUC = {ci_auc.estimate:.4f} [{ci_auc.lo:.4f}, {ci_auc.hi:.4f}]")


if __name__ == "__main__":
    main()
