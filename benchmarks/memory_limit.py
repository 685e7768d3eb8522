"""Run notebooks under a hard memory limit, as Binder does (about 2 GB per session).

Usage::

    python benchmarks/memory_limit.py [--limit-mib 2048] [--profile quick] [--only 04_do_we_need_sound ...]

Each notebook is regenerated (``python -m vssl_core regenerate --only NAME``) in its own
Linux memory cgroup whose limit covers RAM *and* swap, so a notebook that needs more than the
limit is killed by the kernel's OOM killer instead of slowing down. Everything runs inside
it: the regeneration runner, papermill and the notebook kernel (a Binder session also holds the
Jupyter server, ~100 MiB). The page cache charged to the cgroup (memory-mapped datasets, the
libraries' files) is reclaimable and the kernel drops it under the limit; anonymous memory
is not.

Printed per notebook: exit status, seconds, the cgroup's peak usage (``max_usage``: RAM and
page cache together, so it sits at the limit whenever reclaim happened), the peak of its
anonymous memory (polled every 0.5 s), how often the limit was hit (``failcnt``), and the OOM
kills. A notebook passes when it exits 0 with no OOM kill.

Needs root and the cgroup v1 memory controller (``/sys/fs/cgroup/memory``) or cgroup v2 with
the memory controller; otherwise it prints why and exits 2 (nothing is measured). Notebooks
run in the order given (``--only``) or the runner's order; regeneration writes figures as
usual (``figures/`` and its manifest).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")
MIB = 2 ** 20


class Cgroup:
    """A memory cgroup with a RAM+swap limit (v1 or v2); removed by :meth:`close`."""

    def __init__(self, name: str, limit_bytes: int) -> None:
        if (V1 / "memory.limit_in_bytes").exists():
            self.v = 1
            self.path = V1 / name
        elif (V2 / "cgroup.controllers").exists() and "memory" in (V2 / "cgroup.controllers").read_text():
            self.v = 2
            self.path = V2 / name
        else:
            raise OSError("no memory cgroup controller found (/sys/fs/cgroup/memory or cgroup v2)")
        self.path.mkdir()
        if self.v == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(limit_bytes))
        else:
            (self.path / "memory.max").write_text(str(limit_bytes))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")

    def enter(self) -> None:
        """Move the calling process into the cgroup (used as ``preexec_fn``)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def stats(self) -> dict[str, float]:
        if self.v == 1:
            read = lambda f: int((self.path / f).read_text())   # noqa: E731
            oom = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
            return {"max_usage_mib": read("memory.max_usage_in_bytes") / MIB,
                    "failcnt": read("memory.failcnt"), "oom_kills": int(oom.get("oom_kill", 0))}
        events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
        peak = self.path / "memory.peak"
        return {"max_usage_mib": int(peak.read_text()) / MIB if peak.exists() else float("nan"),
                "failcnt": int(events.get("max", 0)), "oom_kills": int(events.get("oom_kill", 0))}

    def anon_mib(self) -> float:
        """Anonymous memory charged to the cgroup now (heap, arrays, tensors; not reclaimable
        without swap), MiB."""
        key = "total_rss" if self.v == 1 else "anon"
        for line in (self.path / "memory.stat").read_text().splitlines():
            name, value = line.split()
            if name == key:
                return int(value) / MIB
        return float("nan")

    def close(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:           # processes still exiting
                time.sleep(0.1)


def notebook_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mib", type=int, default=2048)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--only", nargs="+", default=None, help="notebook names (default: all)")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    names = args.only or notebook_names(root)
    rows = []
    for name in names:
        try:
            group = Cgroup(f"vssl-{os.getpid()}-{name}", args.limit_mib * MIB)
        except OSError as exc:
            print(f"cannot create a memory cgroup ({exc}); run as root on Linux with the memory "
                  "controller. Nothing measured.", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen([args.python, "-m", "vssl_core", "regenerate", "--profile",
                                     args.profile, "--only", name], cwd=root, preexec_fn=group.enter)
            peak_anon = 0.0
            while proc.poll() is None:          # the anonymous peak, polled every 0.5 s
                peak_anon = max(peak_anon, group.anon_mib())
                time.sleep(0.5)
            stats = {**group.stats(), "peak_anon_mib": peak_anon}
        finally:
            group.close()
        rows.append((name, proc.returncode, time.perf_counter() - t0, stats))
        print(f"== {name}: exit {proc.returncode}, {stats}", flush=True)
    print(f"\nlimit {args.limit_mib} MiB (RAM + swap), profile {args.profile}")
    print(f"{'notebook':24s} {'exit':>4s} {'seconds':>8s} {'max_usage_MiB':>13s} {'peak_anon_MiB':>13s} "
          f"{'limit_hits':>10s} {'oom_kills':>9s}  verdict")
    ok = True
    for name, rc, secs, s in rows:
        passed = rc == 0 and s["oom_kills"] == 0
        ok &= passed
        print(f"{name:24s} {rc:4d} {secs:8.1f} {s['max_usage_mib']:13.0f} {s['peak_anon_mib']:13.0f} "
              f"{s['failcnt']:10d} {s['oom_kills']:9d}  {'fits' if passed else 'DOES NOT FIT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
