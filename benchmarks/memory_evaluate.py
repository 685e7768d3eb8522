"""Peak memory of ``python -m vssl_core evaluate`` on many maps: the command (inputs read a block
of rows at a time) vs the same scores computed from both arrays loaded whole with ``np.load``
(the baseline; what the command did before).

Usage: ``python benchmarks/memory_evaluate.py [--n 20000] [--size 224] [--n-boot 1000]
[--dir DIR]``.

The inputs are synthetic: ``--n`` float32 heatmaps ``(n, size, size)`` (smooth random blobs)
and float32 binary ground-truth maps ``(n, 224, 224)``, written into a temporary folder (``--dir``
to choose where; 20,000 maps need 8 GB of disk) a chunk at a time. Each measurement runs in a
fresh process and reports its peak RSS (``VmHWM``) and peak anonymous RSS (``RssAnon``, sampled
every 20 ms), in MiB; both runs must print the same cIoU and AUC. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_training import _status  # noqa: E402  (this folder: the scripts share the reader)

ROOT = Path(__file__).resolve().parents[1]


def write_inputs(folder: Path, n: int, size: int, chunk: int = 500) -> tuple[Path, Path]:
    """Heatmaps and ground truths as ``.npy`` files, written ``chunk`` rows at a time."""
    import numpy as np

    rng = np.random.default_rng(0)
    maps = np.lib.format.open_memmap(folder / "maps.npy", "w+", np.float32, (n, size, size))
    gts = np.lib.format.open_memmap(folder / "gt.npy", "w+", np.float32, (n, 224, 224))
    yy, xx = np.mgrid[0:size, 0:size] / size
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        cy, cx = rng.random((2, k, 1, 1))
        maps[s:s + k] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02) + 0.1 * rng.random((k, size, size))
        g = np.zeros((k, 224, 224), np.float32)
        shift = rng.normal(0, 25, (k, 2)).astype(int)  # GT boxes near, not always on, the blob
        for i, (y, x) in enumerate(zip((cy[:, 0, 0] * 224).astype(int) + shift[:, 0],
                                       (cx[:, 0, 0] * 224).astype(int) + shift[:, 1])):
            g[i, max(0, y - 30):max(0, y + 30), max(0, x - 40):max(0, x + 40)] = 1
        gts[s:s + k] = g
    maps.flush()
    gts.flush()
    del maps, gts
    return folder / "maps.npy", folder / "gt.npy"


def child(mode: str, maps: str, gt: str, n_boot: int) -> None:
    """Run one way of scoring and print its result and peak memory as JSON."""
    import contextlib
    import io

    peak_anon = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], _status("RssAnon"))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    if mode == "command":
        from vssl_core.cli import evaluate

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = evaluate.main(["--maps", maps, "--gt", gt, "--n-boot", str(n_boot)])
        if rc:
            raise SystemExit(rc)
        result = json.loads(out.getvalue())
        ciou, auc = result["cIoU"], result["AUC"]
    else:
        import numpy as np

        from vssl_core.eval import metrics

        m, g = np.load(maps), np.load(gt)
        if m.shape[1:] != (metrics.GRID, metrics.GRID):
            m = metrics.resize_to_grid(m)
        metrics.validate(m, g)
        res = metrics.evaluate(m, g, n_boot=n_boot)
        ciou, auc = res.ciou, res.auc
    seconds = time.perf_counter() - t0
    done.set()
    peak_anon[0] = max(peak_anon[0], _status("RssAnon"))
    print(json.dumps({"mode": mode, "cIoU": ciou, "AUC": auc, "seconds": round(seconds, 1),
                      "peak_rss_mib": _status("VmHWM"), "peak_anon_mib": peak_anon[0]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="number of maps (default 20000)")
    p.add_argument("--size", type=int, default=224, help="heatmap side (224: on the grid)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--dir", type=Path, default=None, help="where to write the inputs (default: a temp folder)")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        mode, maps, gt, n_boot = args.child
        child(mode, maps, gt, int(n_boot))
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_evaluate_") as tmp:
        t0 = time.perf_counter()
        maps, gt = write_inputs(Path(tmp), args.n, args.size)
        gib = (maps.stat().st_size + gt.stat().st_size) / 2**30
        print(f"inputs: {args.n} maps {args.size}x{args.size} + GT 224x224, float32, {gib:.1f} GiB "
              f"(written in {time.perf_counter() - t0:.0f} s)")
        rows = {}
        for mode in ("command", "np.load"):
            res = subprocess.run([sys.executable, __file__, "--child", mode, str(maps), str(gt), str(args.n_boot)],
                                 capture_output=True, text=True, cwd=ROOT)
            if res.returncode:
                print(f"{mode}: failed\n{res.stderr[-2000:]}")
                continue
            rows[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{'mode':<10} {'cIoU@0.3':>9} {'AUC':>7} {'seconds':>8} {'peak RSS MiB':>13} {'peak anon MiB':>14}")
    for mode, r in rows.items():
        print(f"{mode:<10} {r['cIoU']:>9.4f} {r['AUC']:>7.4f} {r['seconds']:>8.1f} {r['peak_rss_mib']:>13} "
              f"{r['peak_anon_mib']:>14}")
    if len(rows) == 2:
        a, b = rows["command"], rows["np.load"]
        same = a["cIoU"] == b["cIoU"] and a["AUC"] == b["AUC"]
        print(f"peak RSS np.load / command: {b['peak_rss_mib'] / a['peak_rss_mib']:.1f}x; "
              f"time command / np.load: {a['seconds'] / b['seconds']:.2f}x; same scores: {same}")


if __name__ == "__main__":
    main()
