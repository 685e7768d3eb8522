"""Localisation throughput: batched closed-form Grad-CAM vs per-sample autograd Grad-CAM.

Both compute the same RCGrad maps (tests/test_localize.py proves equality); this prints
samples/s for each and their ratio, measured in the same run on the same model. Target: the
closed form >= 10x faster.

    python benchmarks/bench_localize.py            # 64 samples, 224 px, width 1.0
    python benchmarks/bench_localize.py --quick    # 64 samples, 128 px, width 0.5
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vssl_core.models.rcgrad_maps import autograd_rcgrad_maps, rcgrad_maps
from vssl_core.models.rcgrad import ModelConfig, build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="samples")
    ap.add_argument("--quick", action="store_true", help="128 px, width 0.5 (the quick profile)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--chunk", type=int, default=32, help="closed-form chunk size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    size, width = (128, 0.5) if args.quick else (224, 1.0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rcgrad", width=width, layer4_stride=1, image_size=size)).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, size, size, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((args.n, 1, 16000))).astype(np.float32)
    rcgrad_maps(model, images[:2], audio[:2])  # warm-up
    t0 = time.perf_counter()
    fast = rcgrad_maps(model, images, audio, chunk_size=args.chunk)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = autograd_rcgrad_maps(model, images, audio)
    t_slow = time.perf_counter() - t0
    err = float(np.abs(fast - slow).max() / max(float(np.abs(slow).max()), 1e-12))
    print(f"model: RCGrad width {width}, {size} px, layer4 stride 1, {args.n} samples, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"closed form (batched, no grad): {args.n / t_fast:8.1f} samples/s  ({t_fast:.2f} s)")
    print(f"autograd Grad-CAM (per sample): {args.n / t_slow:8.1f} samples/s  ({t_slow:.2f} s)")
    print(f"speed-up: {t_slow / t_fast:.1f}x   (max relative difference of the maps {err:.1e})")


if __name__ == "__main__":
    main()
