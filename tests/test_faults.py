"""Fault injection: every finding of issue 19 reproduced, and the behaviour that replaces it.

Each test breaks something on purpose (a bad argument, a truncated or corrupted file, a killed or
interrupted run, a hostile path) and asserts what the user sees: the exit status, one message
naming the problem (no traceback), the user's files intact, ``figures/`` and its manifest
consistent.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from conftest import make_project, write_notebook
import soundfile as sf

from vssl_core.cli import benchmark as benchmark_cli
from vssl_core.cli import compare as compare_cli
from vssl_core.cli import evaluate as evaluate_cli
from vssl_core.cli import pairs as pairs_cli
from vssl_core.cli import regenerate as regenerate_cli
from vssl_core.cli import scale as scale_cli
from vssl_core.cli import synth as synth_cli
from vssl_core.cli import train as train_cli
from vssl_core.data import columns, synth
from vssl_core.data.synth import SceneConfig, ensure_synthetic, generate
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.errors import DataError
from vssl_core.eval import metrics
from vssl_core.repro import atomic, cache, promote
from vssl_core.repro.paths import repo_root
from vssl_core.repro.regenerate import list_notebooks, regenerate

G = metrics.GRID
TINY = SceneConfig(width=160, height=90, fps=8, duration=4.0, sample_rate=16000, idling_prob=1.0,
                   n_moving=(1, 1), n_parked=(0, 0), n_pedestrians=(0, 0), n_trees=(0, 0),
                   offscreen_prob=0.0, shake_prob=0.0, night_fraction=0.0)
#: What the environment of a subprocess needs to import this checkout.
ENV = {**os.environ, "PYTHONPATH": str(repo_root())}


def _cli(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a command's ``main`` in-process: (exit status, stdout, stderr)."""
    try:
        rc = main(argv)
    except SystemExit as exc:              # argparse errors
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err and err.count("\n") <= 3, err


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """A 2-clip synthetic dataset in the Urbansas layout (4-s clips, an idling vehicle each)."""
    return generate(tmp_path_factory.mktemp("tiny") / "ds", 2, seed=5, config=TINY, n_jobs=1,
                    progress=False)


@pytest.fixture()
def root_copy(tiny_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_root, tmp_path / "copy"))


# ============================================================================ data loss
def test_synth_refuses_a_folder_with_a_foreign_meta_json(tmp_path, capsys):
    """Finding: ``synth --out DIR`` deleted any folder holding a meta.json."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "meta.json").write_text('{"my": "project"}')
    (out / "thesis.tex").write_text("years of work")
    rc, stdout, err = _cli(synth_cli.main, ["--out", str(out), "--clips", "1", "--jobs", "1",
                                            "--quiet"], capsys)
    assert rc == 2 and stdout == ""
    assert "meta.json" in err and "marker" in err and "nothing was deleted" in err
    _no_traceback(err)
    assert (out / "thesis.tex").read_text() == "years of work"
    assert json.loads((out / "meta.json").read_text()) == {"my": "project"}


def test_synth_refuses_a_generated_dataset_holding_other_files(tiny_root, tmp_path):
    ds = Path(shutil.copytree(tiny_root, tmp_path / "ds"))
    (ds / "audio" / "my_recording.wav").write_bytes(b"RIFF....")
    before = _tree(ds)
    with pytest.raises(DataError, match="my_recording.wav"):
        generate(ds, 2, 5, TINY, n_jobs=1, progress=False)
    assert _tree(ds) == before
    (ds / "audio" / "my_recording.wav").unlink()           # only the generator's files left:
    generate(ds, 1, 6, TINY, n_jobs=1, progress=False)       # replaced
    assert json.loads((ds / "meta.json").read_text())["seed"] == 6


def test_synth_marker_must_carry_its_own_fingerprint(tiny_root, tmp_path):
    ds = Path(shutil.copytree(tiny_root, tmp_path / "ds"))
    meta = json.loads((ds / "meta.json").read_text())
    meta["seed"] = 99                                        # no longer matches its fingerprint
    (ds / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="marker"):
        generate(ds, 1, 0, TINY, n_jobs=1, progress=False)
    assert (ds / "annotations" / "video_annotations.csv").is_file()


@pytest.fixture()
def hand_set(tmp_path) -> tuple[Path, Path]:
    maps = np.zeros((3, G, G), np.float32)
    gts = np.zeros((3, G, G), np.float32)
    for i in range(3):
        maps[i, 10 * i:10 * i + 40, 20:60] = 1
        gts[i, 10:50, 20:60] = 1
    mp, gp = tmp_path / "maps.npy", tmp_path / "gt.npy"
    np.save(mp, maps)
    np.save(gp, gts)
    return mp, gp


@pytest.mark.parametrize("which", ["maps", "gt"])
def test_evaluate_never_overwrites_its_input(hand_set, capsys, which):
    """Finding: ``evaluate --per-sample maps.npy`` overwrote its own input."""
    mp, gp = hand_set
    target = mp if which == "maps" else gp
    before = target.read_bytes()
    rc, out, err = _cli(evaluate_cli.main, ["--maps", str(mp), "--gt", str(gp), "--n-boot", "0",
                                            "--per-sample", str(target)], capsys)
    assert rc == 2 and out == ""
    assert "--per-sample" in err and "overlaps the input" in err
    _no_traceback(err)
    assert target.read_bytes() == before


# ============================================================================ silent wrong results
@pytest.mark.parametrize("at", ["-1", "nan", "1.5", "inf", "x"])
def test_evaluate_refuses_an_at_outside_0_1(hand_set, capsys, at):
    """Finding: ``--at -1`` printed cIoU 1.0 and ``--at nan`` printed "at": null, exit 0."""
    mp, gp = hand_set
    rc, out, err = _cli(evaluate_cli.main, ["--maps", str(mp), "--gt", str(gp), "--at", at], capsys)
    assert rc == 2 and out == ""
    assert "--at" in err and "Traceback" not in err


@pytest.mark.parametrize("at", [-1.0, float("nan"), 1.01])
def test_metrics_refuse_an_at_outside_0_1(at):
    with pytest.raises(DataError, match="field 'at'"):
        metrics.score_cious(np.array([0.5, 1.0]), at=at, n_boot=0)


def test_a_map_whose_range_overflows_float32_is_refused(hand_set, tmp_path, capsys):
    """Finding: a finite map of +-3e38 (float32) scored a perfect map as 0."""
    _, gp = hand_set
    gts = np.load(gp)
    huge = np.where(gts > 0, np.float32(3e38), np.float32(-3e38)).astype(np.float32)
    with pytest.raises(DataError, match="overflows float32"):
        metrics.validate(huge, gts)
    with pytest.raises(DataError, match="overflows float32"):
        metrics.ciou(huge, gts)
    # the same map in float64 is fine and scores what it is: a perfect map
    assert metrics.ciou(huge.astype(np.float64), gts).tolist() == [1.0, 1.0, 1.0]
    mp = tmp_path / "huge.npy"
    np.save(mp, huge)
    rc, out, err = _cli(evaluate_cli.main, ["--maps", str(mp), "--gt", str(gp)], capsys)
    assert rc == 2 and out == "" and "huge.npy" in err and "rescale" in err
    small = tmp_path / "huge14.npy"                       # the resize path checks too
    np.save(small, np.where(np.arange(14 * 14).reshape(1, 14, 14) % 2, 3e38, -3e38).astype(np.float32)
            .repeat(3, 0))
    rc, out, err = _cli(evaluate_cli.main, ["--maps", str(small), "--gt", str(gp)], capsys)
    assert rc == 2 and out == "" and "huge14.npy" in err and "overflows" in err


def test_truncated_synthetic_annotations_are_regenerated(tmp_path, capfd):
    """Finding: a truncated cached video_annotations.csv gave a smaller Table 2."""
    path = ensure_synthetic(1, 3, TINY, root=tmp_path, n_jobs=1, progress=False)
    csv = path / "annotations" / "video_annotations.csv"
    full = csv.read_bytes()
    lines = full.splitlines(keepends=True)
    csv.write_bytes(b"".join(lines[: len(lines) // 2]))          # cut at a row boundary
    again = ensure_synthetic(1, 3, TINY, root=tmp_path, n_jobs=1, progress=False)
    assert again == path and csv.read_bytes() == full
    err = capfd.readouterr().err
    assert "annotations/video_annotations.csv differs" in err and "generating it again" in err


def test_synthetic_dataset_without_recorded_hashes_is_regenerated(tmp_path, capfd):
    path = ensure_synthetic(1, 3, TINY, root=tmp_path, n_jobs=1, progress=False)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]                                              # as an older version wrote it
    (path / "meta.json").write_text(json.dumps(meta))
    ensure_synthetic(1, 3, TINY, root=tmp_path, n_jobs=1, progress=False)
    assert "files" in json.loads((path / "meta.json").read_text())
    assert "recorded no file hashes" in capfd.readouterr().err


def _edit_csv(path: Path, row: int, column: str, value: str) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.rename(columns={"Unnamed: 0": ""}).to_csv(path, index=False)


@pytest.mark.parametrize("column, value, problem", [
    ("x", "", "empty cell"), ("h", "nan", "empty cell"), ("y", "12,5", "'12,5' is not a finite number"),
    ("time", "abc", "'abc' is not a finite number"), ("visibility", "inf", "not a finite number"),
])
def test_bad_video_annotation_cells_name_file_column_and_row(root_copy, capsys, column, value, problem):
    """Findings: an empty coordinate (NaN) was kept as a box; ``pairs`` on a non-numeric
    coordinate or time printed a traceback."""
    csv = root_copy / "annotations" / "video_annotations.csv"
    _edit_csv(csv, 2, column, value)
    with pytest.raises(DataError) as info:
        UrbansasDataset(root_copy)
    msg = str(info.value)
    assert "video_annotations.csv" in msg and f"field '{column}'" in msg
    assert "row 3 (line 4 of the file)" in msg and problem in msg
    rc, out, err = _cli(pairs_cli.main, ["--root", str(root_copy)], capsys)
    assert rc == 2 and out == "" and f"field '{column}'" in err and "row 3" in err
    _no_traceback(err)


def test_bad_audio_annotation_cell(root_copy):
    _edit_csv(root_copy / "annotations" / "audio_annotations.csv", 0, "start", "soon")
    with pytest.raises(DataError, match=r"audio_annotations.csv: field 'start': row 1 \(line 2"):
        UrbansasDataset(root_copy)


def test_empty_clip_name_is_an_error(root_copy):
    _edit_csv(root_copy / "annotations" / "video_annotations.csv", 1, "filename", "")
    with pytest.raises(DataError, match="field 'filename': row 2"):
        UrbansasDataset(root_copy)


def test_truncated_wav_is_an_error_or_a_counted_skip(root_copy, capsys):
    """Finding: a WAV truncated to a third was zero-padded without a word."""
    ds = UrbansasDataset(root_copy)
    clip = max(ds.clips, key=ds._annotated_until)
    assert ds._annotated_until(clip) >= 3.0                  # the annotations run to the end
    wav = ds.audio_path(clip)
    audio, sr = sf.read(wav, always_2d=True)
    sf.write(wav, audio[: len(audio) // 3], sr, subtype="PCM_16")
    with pytest.raises(DataError, match=r"lasts 1\.33 s but the annotations"):
        UrbansasDataset(root_copy)
    skipped = UrbansasDataset(root_copy, on_error="skip")
    assert skipped.skipped == {"audio shorter than annotations": [clip]}
    assert clip not in skipped.clips and clip not in skipped.unlabelled_clips()
    rc, out, _ = _cli(pairs_cli.main, ["--root", str(root_copy), "--on-error", "skip"], capsys)
    assert rc == 0 and json.loads(out)["skipped"] == {"audio shorter than annotations": [clip]}
    rc, out, err = _cli(pairs_cli.main, ["--root", str(root_copy)], capsys)
    assert rc == 2 and wav.name in err and "truncated" in err


@pytest.fixture()
def saved_columns(tmp_path) -> tuple[datasets.Dataset, np.ndarray]:
    flow = np.random.default_rng(0).random((16, 8, 8)).astype(np.float32)
    feats = datasets.Features({"flow": datasets.Array2D((8, 8), "float32")})
    datasets.Dataset.from_dict({"flow": list(flow)}, features=feats).save_to_disk(str(tmp_path / "ds"))
    return datasets.load_from_disk(str(tmp_path / "ds")), flow


def test_same_size_corruption_of_a_cached_column_is_rewritten(saved_columns, capfd):
    """Finding: a same-size corruption of a cached evaluation column changed cIoU silently."""
    ds, flow = saved_columns
    np.testing.assert_array_equal(columns.mapped_column(ds, "flow"), flow)
    path = columns.column_path(ds, "flow", np.float32)
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-256:] = b"\x00" * 256                               # same size, other values
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))      # even with the old mtime
    again = columns.mapped_column(ds, "flow")
    np.testing.assert_array_equal(again, flow)
    assert "SHA-256 differs" in capfd.readouterr().err


def test_truncated_cached_column_is_rewritten(saved_columns, capfd):
    ds, flow = saved_columns
    columns.mapped_column(ds, "flow")
    path = columns.column_path(ds, "flow", np.float32)
    path.write_bytes(path.read_bytes()[:300])
    np.testing.assert_array_equal(columns.mapped_column(ds, "flow"), flow)
    assert "rewriting it" in capfd.readouterr().err


# ============================================================================ caches
def test_truncated_state_json_of_a_cached_dataset_is_rebuilt(tmp_path, capfd):
    """Finding: a truncated cached state.json raised a bare ValueError with no path."""
    calls = []

    def build(folder: Path) -> None:
        calls.append(1)
        datasets.Dataset.from_dict({"x": [1, 2, 3]}).save_to_disk(str(folder / "dataset"))

    path = cache.cached("toy", {"k": 1}, build, root=tmp_path)
    state = path / "dataset" / "state.json"
    state.write_text(state.read_text()[:20])
    again = cache.cached("toy", {"k": 1}, build, root=tmp_path)
    assert again == path and len(calls) == 2
    assert datasets.load_from_disk(str(path / "dataset"))["x"] == [1, 2, 3]
    assert "dataset/state.json differs" in capfd.readouterr().err


@pytest.mark.parametrize("damage", ["delete", "meta", "legacy", "flip"])
def test_cache_entry_damage_rebuilds_it(tmp_path, capfd, damage):
    calls = []

    def build(folder: Path) -> None:
        calls.append(1)
        (folder / "a.bin").write_bytes(bytes(range(200)))

    path = cache.cached("toy", {"k": 2}, build, root=tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["files"]["a.bin"] == {"size": 200, "sha256": hashlib.sha256(bytes(range(200))).hexdigest()}
    if damage == "delete":
        (path / "a.bin").unlink()
    elif damage == "meta":
        (path / "meta.json").write_text("{")
    elif damage == "legacy":
        del meta["files"]
        (path / "meta.json").write_text(json.dumps(meta))
    else:
        (path / "a.bin").write_bytes(bytes(range(1, 201)))
    cache.cached("toy", {"k": 2}, build, root=tmp_path)
    assert len(calls) == 2 and (path / "a.bin").read_bytes() == bytes(range(200))
    assert "rebuilding it" in capfd.readouterr().err
    cache.cached("toy", {"k": 2}, build, root=tmp_path)      # intact now: reused
    assert len(calls) == 2


# ============================================================================ tracebacks
@pytest.mark.parametrize("args, words", [
    (["--clips", "0"], "--clips"), (["--clips", "2", "--jobs", "0"], "--jobs"),
    (["--clips", "1", "--duration", "nan"], "--duration"), (["--clips", "1", "--seed", "-1"], "--seed"),
    (["--clips", "1", "--fps", "25"], "--fps"), (["--clips", "1", "--night-fraction", "2"], "--night-fraction"),
    (["--clips", "1", "--duration", "0.3"], "duration"), (["--clips", "1", "--size", "8", "8"], "width/height"),
])
def test_synth_argument_errors_are_one_message(tmp_path, capsys, args, words):
    """Finding: every synth argument error printed the right words under a traceback."""
    rc, out, err = _cli(synth_cli.main, ["--out", str(tmp_path / "o"), "--quiet", *args], capsys)
    assert rc == 2 and out == "" and words in err
    _no_traceback(err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command, main, args, words", [
    ("train", train_cli.main, ["--profile", "a b"], "--profile"),
    ("train", train_cli.main, ["--list", "--param", "epochs"], "epochs"),
    ("train", train_cli.main, ["--list", "-p", "en_losses=['flow']"], "ModelConfig.en_losses must be"),
    ("train", train_cli.main, ["--list", "-p", "flow_input='bad'"], "ModelConfig.flow_input must be"),
    ("compare", compare_cli.main, ["{tmp}/missing", "{tmp}"], "missing"),
    ("benchmark", benchmark_cli.main, [], "--vggss"),
    ("scale", scale_cli.main, ["--data", "{tmp}/missing", "--out", "{tmp}/o"], "missing"),
])
def test_every_command_shares_the_error_contract(tmp_path, capsys, command, main, args, words):
    """train, compare, benchmark and scale: one line naming the command, status 2, no traceback."""
    rc, out, err = _cli(main, [a.format(tmp=tmp_path) for a in args], capsys)
    assert rc == 2 and err.startswith(f"{command}: error: ") and words in err, err
    assert len(err.strip().splitlines()) == 1
    _no_traceback(err)


def test_generate_refuses_a_config_with_nan(tmp_path):
    with pytest.raises(DataError, match="field 'shake_amplitude': nan is not finite"):
        generate(tmp_path / "o", 1, 0, SceneConfig(shake_amplitude=float("nan")), n_jobs=1,
                 progress=False)
    assert not (tmp_path / "o").exists()


def test_synth_to_an_unwritable_place(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, out, err = _cli(synth_cli.main, ["--out", str(blocker / "ds"), "--clips", "1", "--quiet"], capsys)
    assert rc == 2 and "cannot write under" in err
    _no_traceback(err)


def test_subprocess_error_has_no_traceback_unless_debug(tmp_path):
    cmd = [sys.executable, "-m", "vssl_core", "synth", "--out", str(tmp_path / "f"), "--clips", "1",
           "--duration", "0.3", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
    assert res.returncode == 2 and "duration" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, timeout=120, env=ENV)
    assert res.returncode == 2 and "Traceback" in res.stderr and "Fix:" in res.stderr


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--n-boot", "-5"], ["--seed", "1.5"]])
def test_evaluate_negative_seed_and_count(hand_set, capsys, args):
    mp, gp = hand_set
    rc, out, err = _cli(evaluate_cli.main, ["--maps", str(mp), "--gt", str(gp), *args], capsys)
    assert rc == 2 and out == "" and args[0] in err and "Traceback" not in err


def test_per_sample_to_an_unwritable_path_is_refused_before_scoring(hand_set, tmp_path, capsys,
                                                                   monkeypatch):
    mp, gp = hand_set
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(metrics, "evaluate", lambda *a, **k: pytest.fail("scored before the check"))
    rc, out, err = _cli(evaluate_cli.main, ["--maps", str(mp), "--gt", str(gp),
                                            "--per-sample", str(blocker / "c.csv")], capsys)
    assert rc == 2 and out == "" and "cannot write under" in err


def test_per_sample_write_failure_keeps_the_printed_result(hand_set, tmp_path, capsys, monkeypatch):
    """Finding: a failing --per-sample write lost the result (it was printed after)."""
    mp, gp = hand_set
    target = tmp_path / "c.csv"

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(evaluate_cli, "write_text", refuse)
    rc, out, err = _cli(evaluate_cli.main, ["--maps", str(mp), "--gt", str(gp), "--n-boot", "0",
                                            "--postprocess", "none", "--per-sample", str(target)], capsys)
    assert rc == 2 and json.loads(out)["n"] == 3 and json.loads(out)["cIoU"] == 1.0  # IoUs .6, 1, .6
    assert "c.csv: Permission denied" in err
    _no_traceback(err)


def test_only_repeated_names_run_once():
    """Finding: ``--only 01 01_dataset_bias`` ran the notebook twice, then failed to promote."""
    books = list_notebooks(repo_root() / "notebooks", ["01", "01_dataset_bias", "dataset_bias"])
    assert [b.stem for b in books] == ["01_dataset_bias"]


# ============================================================================ regeneration
PARAMS = "profile = 'quick'\noutput_dir = 'out'\nreal = ''\n"
BODY = """
import sys
import pandas as pd
from vssl_core.repro import outputs
print('PROGRESS-MARK from the kernel', flush=True)
print('STDERR-MARK from the kernel', file=sys.stderr, flush=True)
outputs.save_table(pd.DataFrame({'v': [1.0, 2.0]}), 'synthetic', output_dir)
if real:
    outputs.save_table(pd.DataFrame({'v': [3.0]}), 'real', output_dir)
"""


def _notebook(path: Path, params: str = PARAMS, body: str = BODY) -> None:
    write_notebook(path, params, body)


@pytest.fixture()
def project(tmp_path: Path) -> dict[str, Path]:
    return make_project(tmp_path, PARAMS, BODY, "[01_first]\n")


def _run(project, **kw):
    kw.setdefault("progress", False)
    return regenerate(notebooks_dir=project["notebooks"], figures_dir=project["figures"],
                      build_dir=project["build"], **kw)


def _consistent(figures: Path) -> dict:
    """The manifest lists exactly the files of the notebook folders, with their sha256."""
    manifest = json.loads((figures / "MANIFEST.json").read_text())
    on_disk = {p.relative_to(figures).as_posix() for p in figures.glob("*/**/*") if p.is_file()}
    assert set(manifest["files"]) == on_disk
    for rel, entry in manifest["files"].items():
        assert entry["sha256"] == _sha(figures / rel), rel
    assert not [p.name for p in figures.iterdir() if p.name.startswith(".") and p.name != promote.LOCK]
    return manifest


def test_regeneration_keeps_what_it_could_not_remake(project, capfd, monkeypatch):
    """Issue 15 item 8 (outputs needing absent data are kept with their provenance; --prune
    removes them), issue 17 item 5 (the kernel's output reaches the terminal) and issue 19
    (stale staging of a dead run with our pid, duplicate --only, umask)."""
    figures = project["figures"]
    old_mask = os.umask(0o022)
    try:
        stale = figures / f".staging-{os.getpid()}" / "01_first"     # a dead run, same pid
        stale.mkdir(parents=True)
        (stale / "evil.csv").write_text("stale")
        first = _run(project, only=["01", "01_first"], overrides={"real": "/data/urbansas"},
                     progress=True)
        err = capfd.readouterr().err
        assert "PROGRESS-MARK from the kernel" in err and "STDERR-MARK from the kernel" in err
        assert [r.name for r in first.runs] == ["01_first"]
        assert any(f".staging-{os.getpid()}" in r for r in first.recovered)
        m1 = _consistent(figures)
        assert "01_first/evil.csv" not in m1["files"]
        assert m1["files"]["01_first/real.csv"]["run"] == first.run_id
        assert oct((figures / "MANIFEST.json").stat().st_mode & 0o777) == "0o644"
        assert oct((figures / "01_first" / "real.csv").stat().st_mode & 0o777) == "0o644"
        synthetic = (figures / "01_first" / "synthetic.csv").read_bytes()

        monkeypatch.setenv("VSSL_SHARED_DATA", "/nowhere")
        second = _run(project)                                   # no real data this time
        m2 = _consistent(figures)
        assert (figures / "01_first" / "synthetic.csv").read_bytes() == synthetic  # echo changes nothing
        assert second.runs[0].kept == ["01_first/real.csv", "01_first/real.md"]
        entry = m2["files"]["01_first/real.csv"]
        assert entry["kept_from"] == first.run_id and entry["kept_in"] == second.run_id
        assert entry["sha256"] == m1["files"]["01_first/real.csv"]["sha256"]
        assert entry["data"]["VSSL_SHARED_DATA"] != "/nowhere"  # the data of the run that made it
        assert m2["files"]["01_first/synthetic.csv"]["data"]["VSSL_SHARED_DATA"] == "/nowhere"
        assert m2["notebooks"]["01_first"]["kept"] == ["01_first/real.csv", "01_first/real.md"]
        assert "01_first/real.csv  (from " + first.run_id in second.notes()

        (figures / "01_first" / "mine.txt").write_text("a user's note")
        third = _run(project, prune=True)
        assert third.runs[0].pruned == ["01_first/real.csv", "01_first/real.md"]
        assert not (figures / "01_first" / "real.csv").exists()
        assert (figures / "01_first" / "mine.txt").read_text() == "a user's note"  # never ours
        m3 = _consistent(figures)
        assert "not written by regenerate" in m3["files"]["01_first/mine.txt"]["kept_from"]
        assert "pruned" in third.notes()

        fourth = _run(project, overrides={"real": "/data/urbansas"})   # the data is back
        m4 = _consistent(figures)
        assert "kept_from" not in m4["files"]["01_first/real.csv"]
        assert m4["files"]["01_first/real.csv"]["run"] == fourth.run_id
    finally:
        os.umask(old_mask)


def test_runner_parameters_and_profile_names_are_refused(project, capsys):
    """Findings: ``-p output_dir=...`` was ignored but recorded; ``--profile ../../x`` read a
    TOML from anywhere and wrote outside build/."""
    with pytest.raises(DataError, match="output_dir.*set by the regeneration runner"):
        _run(project, overrides={"output_dir": "/tmp/elsewhere"})
    with pytest.raises(DataError, match="profile.*set by the regeneration runner"):
        _run(project, overrides={"profile": "paper"})
    (project["notebooks"] / "profiles" / "quick.toml").write_text("[all]\noutput_dir = 'x'\n")
    with pytest.raises(DataError, match=r"quick.toml\[all\]: field 'output_dir'"):
        _run(project)
    (project["notebooks"] / "profiles" / "quick.toml").write_text("[01_first]\n")
    outside = project["notebooks"].parent / "x.toml"
    outside.write_text("[01_first]\n")
    for name in ("../x", "../../x", "a/b", "x.toml", ""):
        with pytest.raises(DataError, match="not a profile name"):
            _run(project, profile=name)
    rc, out, err = _cli(regenerate_cli.main, ["--profile", "../../x"], capsys)
    assert rc == 2 and "not a profile name" in err
    _no_traceback(err)
    assert not project["figures"].exists() and not project["build"].exists()


def test_a_second_regeneration_is_refused_while_one_runs(project, capsys):
    with promote.checkout_lock(project["figures"]):
        with pytest.raises(DataError, match=r"another regeneration of this checkout is running "
                                            rf"\(pid {os.getpid()}"):
            _run(project)
    assert not (project["figures"] / "01_first").exists()


def _before_and_staged(tmp_path: Path) -> tuple[Path, Path, dict]:
    """figures/ with 01_a and 03_c and their manifest; a staging folder with new 01_a, 02_b and
    the manifest of the promoted state."""
    figures = tmp_path / "figures"
    for n, text in (("01_a", "old a"), ("03_c", "old c, not rerun")):
        (figures / n).mkdir(parents=True)
        (figures / n / "t.csv").write_text(text)
    staging = figures / ".staging-123-abc"
    for n, text in (("01_a", "new a"), ("02_b", "new b")):
        (staging / n).mkdir(parents=True)
        (staging / n / "t.csv").write_text(text)

    def manifest(folders: dict[str, Path]) -> str:
        return json.dumps({"files": {f"{n}/t.csv": {"sha256": _sha(d / "t.csv"), "notebook": n}
                                     for n, d in folders.items()}})

    (figures / "MANIFEST.json").write_text(manifest({n: figures / n for n in ("01_a", "03_c")}))
    (staging / "MANIFEST.json").write_text(manifest({"01_a": staging / "01_a",
                                                     "02_b": staging / "02_b",
                                                     "03_c": figures / "03_c"}))
    return figures, staging, _tree(figures)


# journal write (1), 01_a out + in (2), 02_b in (1), manifest (1): kill before each, and before
# the journal is deleted
@pytest.mark.parametrize("kill_at", range(6))
def test_a_promotion_killed_at_any_point_is_rolled_back(tmp_path, kill_at):
    """Findings: a kill between the renames of a promotion left a figure folder missing; a kill
    between promotion and manifest left sha mismatches."""
    figures, staging, before = _before_and_staged(tmp_path)
    before = {k: v for k, v in before.items() if not k.startswith(".staging")}
    pid = os.fork()
    if pid == 0:                                   # the run that gets SIGKILLed
        real, calls = os.replace, [0]

        def replace(a, b):
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            calls[0] += 1
            real(a, b)

        def unlink(self, missing_ok=False):
            if self.name == promote.JOURNAL:        # the commit point: kill just before it
                os.kill(os.getpid(), signal.SIGKILL)
            real_unlink(self, missing_ok)

        real_unlink = Path.unlink
        os.replace, Path.unlink = replace, unlink
        promote.commit(figures, staging, ["01_a", "02_b"], token="123-abc")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    with promote.checkout_lock(figures):
        done = promote.recover(figures)
    assert done                                    # something was left and is now cleaned
    assert _tree(figures) == {**before, promote.LOCK: (figures / promote.LOCK).read_bytes()}
    _consistent(figures)


def test_a_complete_promotion_is_consistent(tmp_path):
    figures, staging, _ = _before_and_staged(tmp_path)
    promote.commit(figures, staging, ["01_a", "02_b"], token="123-abc")
    shutil.rmtree(staging)
    manifest = _consistent(figures)
    assert set(manifest["files"]) == {"01_a/t.csv", "02_b/t.csv", "03_c/t.csv"}
    assert (figures / "01_a" / "t.csv").read_text() == "new a"


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (Linux /proc)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += sorted(kids - out)
            out |= kids
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_sigterm_during_synth_removes_the_temporary_folder_and_workers(tmp_path):
    """Finding: SIGTERM during synth left a temporary folder and two worker processes."""
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "vssl_core", "synth", "--out", str(out),
                             "--clips", "40", "--jobs", "2", "--duration", "4", "--size", "160", "90",
                             "--fps", "8", "--quiet"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: list(tmp_path.glob(".ds.*.tmp/audio/*.wav")) or proc.poll() is not None,
                  "the first clip")
        assert proc.poll() is None, proc.communicate()
        workers = _children(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    _wait_for(lambda: not any(_alive(w) for w in workers), "the workers to end")


SLEEPY = """
import pathlib, time
pathlib.Path(marker).write_text('running')
time.sleep(300)
"""


def test_sigterm_during_regenerate_leaves_figures_as_they_were(project, tmp_path):
    """Finding: SIGTERM during regenerate left figures/.staging-<pid>/ behind."""
    _run(project)
    before = _tree(project["figures"])
    marker = tmp_path / "marker"
    _notebook(project["notebooks"] / "01_first.ipynb", PARAMS + f"marker = {str(marker)!r}\n", SLEEPY)
    script = ("import sys\nfrom pathlib import Path\nfrom vssl_core.cli import run_cli\n"
              "from vssl_core.repro.regenerate import regenerate\n"
              "p = [Path(a) for a in sys.argv[1:]]\n"
              "sys.exit(run_cli('regenerate', lambda argv: regenerate(notebooks_dir=p[0], "
              "figures_dir=p[1], build_dir=p[2], progress=False) and 0, []))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(project["notebooks"]),
                             str(project["figures"]), str(project["build"])], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: marker.exists() or proc.poll() is not None, "the notebook to start")
        assert proc.poll() is None, proc.communicate()
        assert list(project["figures"].glob(".staging-*"))
        kernels = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    # our process says one line; the kernel it shut down may log its own socket error first
    assert err.strip().splitlines()[-1].startswith("regenerate: interrupted by SIGTERM")
    assert "vssl_core" not in err
    after = _tree(project["figures"])
    assert after == {**before, promote.LOCK: after[promote.LOCK]}
    assert not list(project["figures"].glob(".staging-*"))
    _wait_for(lambda: not any(_alive(k) for k in kernels), "the kernel to end")


# ============================================================================ file modes
@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    """Finding: atomic writes left figures and the manifest at 0600 and caches at 0700."""
    old = os.umask(mask)
    try:
        f = atomic.write_text(tmp_path / "f.txt", "x")
        with atomic.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner.txt").write_text("y")
        c = cache.cached("toy", {"m": mask}, lambda p: (p / "a").write_text("z"), root=tmp_path / "c")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "d").stat().st_mode & 0o777 == dir_mode
    assert c.stat().st_mode & 0o777 == dir_mode
    assert (c / "meta.json").stat().st_mode & 0o777 == file_mode
