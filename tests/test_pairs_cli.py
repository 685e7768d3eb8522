"""``python -m vssl_core pairs``: JSON summary, clear errors with exit status 2."""
from __future__ import annotations

import json
import subprocess
import sys

from vssl_core.cli import pairs as cli


def test_flowgrad_summary(urbansas_mini, capsys):
    assert cli.main(["--root", str(urbansas_mini), "--protocol", "flowgrad"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["pairs"], out["clips"], out["protocol"]) == (102, 10, "flowgrad")
    assert out["boxes"] >= out["pairs"] and out["skipped"] == {}
    assert out["dropped"]["events: offscreen"] == 1
    assert all(k.split(":")[0] in {"events", "boxes", "clips"} for k in out["dropped"])


def test_how_to_listen_summary(urbansas_mini, capsys):
    assert cli.main(["--root", str(urbansas_mini), "--protocol", "how_to_listen"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "how_to_listen" and out["pairs"] > 102


def test_bad_root_exits_2(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "annotations/video_annotations.csv" in err


def test_root_without_annotations_exits_2(tmp_path, capsys):
    (tmp_path / "video").mkdir()
    assert cli.main(["--root", str(tmp_path)]) == 2
    assert "video_annotations.csv" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vssl_core", "pairs", "--root", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not found" in r.stderr and r.stdout == ""
