"""Localisation throughput: closed-form Grad-CAM against its physical limit and against autograd.

Three ways through the same model on the same inputs, measured in one run:

- **bare forward** (the physical limit): one batched no-grad forward pass of the image and the
  audio encoders (the same input preparation and chunks, channels-last images), computing
  embeddings and nothing else. No localisation can be cheaper than this.
- **closed form** (:func:`vssl_core.models.rcgrad_maps.rcgrad_maps`): the maps the notebooks use
  (per-clip spectrogram statistics, the Grad-CAM of the block output in closed form).
- **autograd Grad-CAM** (per sample, hooks and a backward pass): the reference the tests prove
  equal to the closed form.

Printed: samples/s of each, closed form / bare forward (target: <= 1.2x) and autograd / closed
form. Nothing is asserted about speed.

    python benchmarks/bench_localize.py            # 64 samples, 224 px, width 1.0
    python benchmarks/bench_localize.py --quick    # 64 samples, 128 px, width 0.5
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vssl_core.models.rcgrad_maps import autograd_rcgrad_maps, rcgrad_maps
from vssl_core.models.rcgrad import ModelConfig, build_model, prepare_audio, prepare_images


@torch.no_grad()
def bare_forward(model, images: np.ndarray, audio: np.ndarray, chunk: int) -> None:
    """Embeddings of both encoders in batched no-grad passes: the floor of any localisation."""
    size = model.config.image_size
    x_aud = prepare_audio(audio)
    for s in range(0, len(images), chunk):
        img = prepare_images(images[s:s + chunk], size).contiguous(memory_format=torch.channels_last)
        model.encode_image(img)
        model.encode_audio(x_aud[s:s + chunk])


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
    bare_forward(model, images[:2], audio[:2], args.chunk)
    t0 = time.perf_counter()
    bare_forward(model, images, audio, args.chunk)
    t_bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = rcgrad_maps(model, images, audio, chunk_size=args.chunk)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = autograd_rcgrad_maps(model, images, audio)
    t_slow = time.perf_counter() - t0
    err = float(np.abs(fast - slow).max() / max(float(np.abs(slow).max()), 1e-12))
    print(f"model: RCGrad width {width}, {size} px, layer4 stride 1, {args.n} samples, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"bare forward (batched, no grad): {args.n / t_bare:8.1f} samples/s  ({t_bare:.2f} s)")
    print(f"closed form (batched, no grad):  {args.n / t_fast:8.1f} samples/s  ({t_fast:.2f} s)")
    print(f"autograd Grad-CAM (per sample):  {args.n / t_slow:8.1f} samples/s  ({t_slow:.2f} s)")
    print(f"closed form / bare forward: {t_fast / t_bare:.2f}x (target <= 1.2x)")
    print(f"autograd / closed form: {t_slow / t_fast:.1f}x   (max relative difference of the maps {err:.1e})")


if __name__ == "__main__":
    main()
