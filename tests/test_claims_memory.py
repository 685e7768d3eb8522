"""Claim checks (paired / independent bootstrap verdicts) and the peak-memory probe."""
from __future__ import annotations

import subprocess
from pathlib import Path
import sys

import numpy as np
import pytest

from vssl_core.eval import metrics
from vssl_core.eval.claims import Claim, check_claims, verdict
from vssl_core.repro.memory import PeakMemory


def _result(cious: np.ndarray) -> metrics.EvalResult:
    return metrics.score_cious(np.asarray(cious, float), at=0.5, n_boot=0)


def test_verdicts():
    assert verdict(0.01, 0.2) == "reproduced"
    assert verdict(-0.3, -0.1) == "opposite"
    assert verdict(-0.1, 0.1) == "not resolved"
    assert verdict(np.nan, 0.1) == "not resolved"
    # an interval that excludes 0 is not enough: the effect must be at least 0.02
    assert verdict(0.005, 0.04, 0.015) == "too small to matter"
    assert verdict(0.005, 0.06, 0.028) == "reproduced"
    assert verdict(-0.03, -0.001, -0.01) == "too small to matter"
    assert verdict(0.001, 0.2, 0.02, min_effect=0.05) == "too small to matter"


def test_paired_claims_on_hand_built_scores():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    results = {"good": _result(np.clip(base + 0.3, 0, 1)), "bad": _result(base),
               "same": _result(base.copy()), "other_size": _result(base[:150])}
    table = check_claims(results, [Claim("good > bad", "good", "bad", "paper"),
                                   Claim("bad > good", "bad", "good"),
                                   Claim("bad > same", "bad", "same"),
                                   Claim("good > other", "good", "other_size")], n_boot=300)
    assert list(table["verdict"]) == ["reproduced", "opposite", "not resolved", "reproduced"]
    assert list(table["bootstrap"]) == ["paired", "paired", "paired", "independent"]
    # the difference is the statistic's difference: cIoU@0.5 = share of samples >= 0.5
    expected = np.mean(np.clip(base + 0.3, 0, 1) >= 0.5) - np.mean(base >= 0.5)
    assert table.loc[0, "difference"] == pytest.approx(expected)
    assert table.loc[2, "difference"] == 0 and table.loc[2, "lo"] == 0 == table.loc[2, "hi"]


def test_claim_naming_a_missing_result_is_an_error():
    with pytest.raises(KeyError, match="nope"):
        check_claims({"a": _result(np.ones(3))}, [Claim("a > nope", "a", "nope")])


def test_peak_memory_sees_a_child_process():
    code = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
    with PeakMemory(interval_s=0.05) as mem:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert mem.peak_mib > 250                       # the child's 300 MiB buffer was seen
    if Path("/proc/self/smaps_rollup").exists() and "Pss_Anon" in Path("/proc/self/smaps_rollup").read_text():
        assert mem.peak_anon_mib > 250                # ... and it is anonymous memory
    with PeakMemory(interval_s=0.05) as idle:
        subprocess.run([sys.executable, "-c", "import time; time.sleep(0.5)"], check=True)
    assert idle.peak_mib < mem.peak_mib - 200        # and a small child is small
    assert idle.peak_anon_mib < mem.peak_anon_mib - 200 or idle.peak_anon_mib == mem.peak_anon_mib == 0
    with pytest.raises(ValueError):
        PeakMemory(interval_s=0)


_FRAGMENTED_HEAP = r"""
import sys
import numpy as np
from vssl_core.repro.memory import release_unused

def anon_mib():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Pss_Anon:"):
            return int(line.split()[1]) / 1024

base = anon_mib()
blocks = [np.ones(512, dtype=np.float64) for _ in range(200_000)]   # ~800 MiB of 4-KiB heap blocks
keep = blocks[::500]                                                # a few survivors pin the heap
del blocks
held = anon_mib()
done = release_unused()
print(base, held, anon_mib(), done["malloc_trim"])
"""


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux smaps_rollup")
def test_release_unused_returns_a_fragmented_heap_to_the_os():
    """Freed small blocks pinned by a few survivors stay in the process until release_unused trims
    the heap (what a cache build leaves behind before training)."""
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED_HEAP], capture_output=True, text=True,
                         check=True).stdout.split()
    base, held, after = map(float, out[:3])
    if out[3] != "True":
        pytest.skip("not glibc: no malloc_trim")
    assert held - base > 300, f"the freed heap was not held ({base:.0f} -> {held:.0f} MiB)"
    assert after - base < 0.25 * (held - base), f"not released: {base:.0f} -> {held:.0f} -> {after:.0f} MiB"
