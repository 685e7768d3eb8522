"""Tests of ``python -m vssl_core evaluate``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vssl_core.eval import metrics
from vssl_core.cli import evaluate as cli

G = metrics.GRID


def _save(tmp_path: Path, maps: np.ndarray, gts: np.ndarray) -> tuple[Path, Path]:
    mp, gp = tmp_path / "maps.npy", tmp_path / "gt.npy"
    np.save(mp, maps)
    np.save(gp, gts)
    return mp, gp


def _hand_set() -> tuple[np.ndarray, np.ndarray]:
    """4 samples with per-sample cIoU 1, 1/3, 0, 0/0 under postprocess 'none'."""
    maps = np.zeros((4, G, G), dtype=np.float32)
    gts = np.zeros((4, G, G), dtype=np.float32)
    maps[0, :10, :10] = 1
    gts[0, :10, :10] = 1
    maps[1, :10, :10] = 1
    gts[1, 5:15, :10] = 1                                  # IoU 50 / 150
    gts[2, 50:60, 50:60] = 1                               # empty prediction
    return maps, gts                                       # sample 3: both empty


def test_main_prints_one_json_object(tmp_path, capsys):
    mp, gp = _save(tmp_path, *_hand_set())
    csv = tmp_path / "out" / "per_sample.csv"
    rc = cli.main(["--maps", str(mp), "--gt", str(gp), "--postprocess", "none", "--at", "0.3",
                   "--n-boot", "100", "--seed", "1", "--per-sample", str(csv)])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    res = json.loads(out[0])
    # cIoU >= 0.3: samples 0 and 1 (1/3 >= 0.3) of 4 (the NaN counts as a miss)
    assert res["cIoU"] == 0.5 and (res["n"], res["n_empty"]) == (4, 1)
    assert res["at"] == 0.3 and res["postprocess"] == "none" and res["cutoff"] == 0.3
    assert len(res["cIoU_ci"]) == 2 and res["cIoU_ci"][0] <= 0.5 <= res["cIoU_ci"][1]
    assert res["AUC"] == pytest.approx(metrics.auc(np.array([1, 1 / 3, 0, np.nan])))
    lines = csv.read_text().splitlines()
    assert lines[0] == "index,ciou" and lines[1] == "0,1.0" and lines[4] == "3,nan"
    assert float(lines[2].split(",")[1]) == pytest.approx(1 / 3)
    assert not list(csv.parent.glob(".*tmp"))


def test_exclude_and_text_reading(tmp_path, capsys):
    mp, gp = _save(tmp_path, *_hand_set())
    assert cli.main(["--maps", str(mp), "--gt", str(gp), "--postprocess", "none",
                     "--n-boot", "0", "--empty", "exclude", "--at", "0.5"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["n"], res["n_empty"], res["cIoU"]) == (3, 1, pytest.approx(1 / 3))
    assert res["cIoU_ci"] == [None, None]            # no bootstrap: null, not NaN
    assert cli.main(["--maps", str(mp), "--gt", str(gp), "--reading", "text", "--at", "0.3",
                     "--n-boot", "0"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["threshold"], res["cutoff"]) == (0.3, 0.5)


def test_other_map_sizes_are_resized(tmp_path, capsys):
    rng = np.random.default_rng(0)
    small = rng.random((3, 14, 14)).astype(np.float32)
    gts = np.zeros((3, G, G), dtype=np.float32)
    gts[:, 50:150, 50:150] = 1
    mp, gp = _save(tmp_path, small, gts)
    assert cli.main(["--maps", str(mp), "--gt", str(gp), "--n-boot", "0"]) == 0
    res = json.loads(capsys.readouterr().out)
    want = metrics.evaluate(metrics.resize_to_grid(small), gts, n_boot=0)
    assert res["cIoU"] == want.ciou and res["AUC"] == want.auc


@pytest.mark.parametrize("size", [G, 28])
def test_inputs_are_read_a_block_of_rows_at_a_time(tmp_path, capsys, monkeypatch, size):
    """The command never holds a whole input: every read of the files is a block of at most 64
    rows, and the scores equal those of the arrays held in memory (resized per block when the
    maps are off the grid)."""
    from vssl_core.data.streaming import NpyRows

    rng = np.random.default_rng(1)
    maps = rng.random((150, size, size)).astype(np.float32)
    gts = np.zeros((150, G, G), dtype=np.float32)
    for i in range(150):
        y, x = rng.integers(0, 150, 2)
        gts[i, y:y + 60, x:x + 70] = 1
    mp, gp = _save(tmp_path, maps, gts)
    reads = []
    original = NpyRows.read
    monkeypatch.setattr(NpyRows, "read", lambda self, idx: reads.append(len(idx)) or original(self, idx))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load of a whole input")
                        if k.get("mmap_mode") is None else np.lib.format.open_memmap(a[0], mode="r"))
    assert cli.main(["--maps", str(mp), "--gt", str(gp), "--n-boot", "50"]) == 0
    res = json.loads(capsys.readouterr().out)
    want = metrics.evaluate(metrics.resize_to_grid(maps), gts, n_boot=50)
    assert res["cIoU"] == want.ciou and res["AUC"] == want.auc and res["cIoU_ci"] == want.to_dict()["cIoU_ci"]
    # each row of maps and GT read once while scored; off-grid maps are also checked raw first
    assert reads and max(reads) <= 64 and sum(reads) == (2 if size == G else 3) * 150


@pytest.mark.parametrize("case, expected", [
    ("missing", "missing.npy"),
    ("gt_shape", "gt.npy: field 'gts'"),
    ("n_mismatch", "maps.npy: field 'maps'"),
    ("nan", "NaN"),
    ("not_npy", "maps.npy: field 'maps': cannot read"),
    ("empty_error", "indices [3]"),
])
def test_bad_input_exit_2_naming_the_file(tmp_path, capsys, case, expected):
    maps, gts = _hand_set()
    extra: list[str] = []
    if case == "gt_shape":
        gts = np.zeros((4, 100, 100), dtype=np.float32)
    elif case == "n_mismatch":
        maps = maps[:3]
    elif case == "nan":
        maps[1, 0, 0] = np.nan
    elif case == "empty_error":
        extra = ["--empty", "error", "--postprocess", "none"]
    mp, gp = _save(tmp_path, maps, gts)
    if case == "missing":
        mp = tmp_path / "missing.npy"
    elif case == "not_npy":
        mp.write_text("not an array")
    rc = cli.main(["--maps", str(mp), "--gt", str(gp), "--n-boot", "0", *extra])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert expected in captured.err and "Traceback" not in captured.err


def test_subprocess_entry_point(tmp_path):
    mp, gp = _save(tmp_path, *_hand_set())
    ok = subprocess.run([sys.executable, "-m", "vssl_core", "evaluate", "--maps", str(mp),
                         "--gt", str(gp), "--n-boot", "10", "--postprocess", "none"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["n"] == 4
    bad = subprocess.run([sys.executable, "-m", "vssl_core", "evaluate", "--maps",
                          str(tmp_path / "nope.npy"), "--gt", str(gp)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nope.npy" in bad.stderr and "Traceback" not in bad.stderr
