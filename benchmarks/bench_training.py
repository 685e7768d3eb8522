"""Training at scale: samples/s of 1 vs 2 processes (torchrun, gloo, this CPU), and the peak memory
of training as the number of windows grows (1k, 5k, 20k), rows read by ``pread`` (the loop's
streaming reader) vs through a memory map (the baseline).

Usage: ``python benchmarks/bench_training.py [--windows 1000,5000,20000] [--skip-speed] [--skip-memory]``.

The windows are **synthetic arrays** written into a temporary folder as ``.npy`` files
(:func:`vssl_core.data.streaming.save_windows`; noise at the quick profile's shapes: 128-px images,
1 s of 16 kHz audio, 128-px flow), not decoded from videos: decoding 20,000 real windows takes
hours on a 2-core CPU, and what is measured here (what training holds in memory, how fast it
steps) does not depend on the pixels. The model is a small RCGrad (width 1/8, 64-px input).
Every measurement runs in a fresh process. Ratios are against a baseline of the same run; no
timing is asserted anywhere.

Memory columns: peak RSS (``VmHWM``: every resident page, file-backed memory-mapped pages
included, which is what RSS-based limits such as Slurm's or a container's count) and peak
anonymous RSS (``RssAnon``, sampled every 20 ms: heap, arrays, tensors), in MiB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"images": ((128, 128, 3), "uint8"), "audio": ((1, 16000), "float32"), "flow": ((128, 128), "float32")}


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    return 0


# -- child processes -----------------------------------------------------------------------------
def _model_and_config(batch: int, threads: int | None):
    import torch

    from vssl_core.models.rcgrad import ModelConfig, RCGrad
    from vssl_core.training.loop import TrainConfig

    torch.manual_seed(0)
    model = RCGrad(ModelConfig(kind="rcgrad", width=0.125, image_size=64, audio_sr=16000))
    return model, TrainConfig(epochs=1, batch_size=batch, bn_batches=2, device="cpu", num_threads=threads)


def child_memory(folder: str, n: int, reader: str, out: str) -> None:
    import numpy as np

    from vssl_core.data.arrays import TrainingArrays
    from vssl_core.data.streaming import open_windows
    from vssl_core.training.loop import train

    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _status("RssAnon"))
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    arrays = open_windows(folder, limit=n)
    if reader == "memmap":  # the baseline: plain ndarray views of memory maps (the loop then indexes them)
        def mm(rows):
            return np.asarray(np.memmap(rows.path, rows.dtype, "r", rows.offset, rows.shape))
        arrays = TrainingArrays(mm(arrays.images), mm(arrays.audio), mm(arrays.flow))
    model, config = _model_and_config(64, None)
    t0 = time.perf_counter()
    _, history = train(model, config, arrays, None, progress=False)
    stop.set()
    Path(out).write_text(json.dumps({"n": n, "reader": reader, "hwm": _status("VmHWM"), "anon": peak[0],
                                     "seconds": time.perf_counter() - t0, "loss": history[0]["train_loss"]}))


def child_speed(folder: str, n: int, out: str) -> None:
    import torch

    from vssl_core.data.streaming import open_windows
    from vssl_core.training import distributed
    from vssl_core.training.loop import train

    ctx = distributed.context()
    threads = max(1, (os.cpu_count() or 2) // ctx.world_size)
    model, config = _model_and_config(32, threads)
    config = type(config)(**{**config.to_dict(), "bn_batches": 0, "epochs": 2})
    t0 = time.perf_counter()
    _, history = train(model, config, open_windows(folder, limit=n), None, progress=False)
    if ctx.is_main:  # epoch 2 only: epoch 1 includes the warm-up
        Path(out).write_text(json.dumps({"world_size": ctx.world_size, "threads": threads, "n": n,
                                         "seconds": history[1]["seconds"], "total": time.perf_counter() - t0,
                                         "losses": [h["train_loss"] for h in history]}))
    del torch


# -- driver --------------------------------------------------------------------------------------
def _fill(name, start, stop):
    import numpy as np

    rng = np.random.default_rng(start)
    shape, dtype = SHAPES[name]
    if dtype == "uint8":
        return rng.integers(0, 256, (stop - start, *shape), dtype=np.uint8)
    return rng.random((stop - start, *shape), dtype=np.float32)


def _env(threads: int | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _run(args: list[str], env: dict) -> None:
    res = subprocess.run(args, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{res.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", default="1000,5000,20000", help="comma-separated window counts (memory)")
    p.add_argument("--speed-windows", type=int, default=1024, help="windows per epoch of the speed runs")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--tmp", default=None, help="folder for the synthetic windows (default: a temporary one)")
    args = p.parse_args()
    counts = [int(x) for x in args.windows.split(",")]
    from vssl_core.data.streaming import save_windows

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp) / "windows"
        n_max = max(counts + [args.speed_windows])
        t0 = time.perf_counter()
        save_windows(folder, n=n_max, shapes=SHAPES, fill=_fill)
        size = sum(f.stat().st_size for f in folder.glob("*.npy")) / 2**20
        print(f"synthetic windows (noise arrays, not decoded videos): {n_max} x (image 128x128x3 uint8, audio "
              f"1x16000 float32, flow 128x128 float32) = {size:.0f} MiB on disk, written in "
              f"{time.perf_counter() - t0:.0f} s; model RCGrad width 1/8 at 64 px, batch 64")
        if not args.skip_speed:
            rates = {}
            for nproc in (1, 2):
                out = Path(tmp) / f"speed{nproc}.json"
                _run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                      __file__, "--child-speed", str(folder), str(args.speed_windows), str(out)],
                     _env(max(1, (os.cpu_count() or 2) // nproc)))
                r = json.loads(out.read_text())
                rates[nproc] = r["n"] / r["seconds"]
                print(f"{nproc} process(es) x {r['threads']} torch thread(s), global batch 32: "
                      f"{rates[nproc]:.1f} samples/s (epoch 2 of {r['n']} windows in {r['seconds']:.1f} s; "
                      f"losses {', '.join(f'{x:.4f}' for x in r['losses'])})")
            print(f"speed ratio 2 processes / 1 process: {rates[2] / rates[1]:.2f}x (same {os.cpu_count()} cores)")
        if not args.skip_memory:
            rows = []
            for reader in ("memmap", "stream"):
                for n in counts:
                    out = Path(tmp) / f"mem-{reader}-{n}.json"
                    _run([sys.executable, __file__, "--child-memory", str(folder), str(n), reader, str(out)], _env())
                    rows.append(json.loads(out.read_text()))
            print("\npeak memory of one training epoch (MiB)")
            print(f"{'windows':>8} | {'memmap RSS':>10} {'memmap anon':>11} | {'stream RSS':>10} {'stream anon':>11} | "
                  f"{'s/epoch (stream)':>16}")
            by = {(r["reader"], r["n"]): r for r in rows}
            for n in counts:
                m, s = by[("memmap", n)], by[("stream", n)]
                print(f"{n:>8} | {m['hwm']:>10} {m['anon']:>11} | {s['hwm']:>10} {s['anon']:>11} | {s['seconds']:>16.1f}")
            base = by[("stream", counts[0])]
            for reader in ("memmap", "stream"):
                hi = by[(reader, counts[-1])]
                lo = by[(reader, counts[0])]
                print(f"{reader}: peak RSS at {counts[-1]} / at {counts[0]} windows = {hi['hwm'] / lo['hwm']:.2f}x; "
                      f"peak anonymous {hi['anon'] / lo['anon']:.2f}x")
            print(f"(baseline: the streaming reader at {counts[0]} windows, {base['hwm']} MiB RSS)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-memory":
        child_memory(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-speed":
        child_speed(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
