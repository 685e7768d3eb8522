"""VGG-SS / Flickr-SoundNet media readers, the released protocols, the benchmark CLI and Table 3.

Fixture benchmarks are generated in both layouts (tests/benchmark_fixtures.py): complete samples,
a missing wav, a corrupt jpg, a broken XML and ids absent from the annotations.
"""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from benchmark_fixtures import (LO, make_flickr, make_vggss_frames, make_vggss_videos, official_rcgrad_state,
                                lvs_release_state, torchvision_trunk)
from vssl_core.cli import benchmark as cli
from vssl_core.data.benchmark_arrays import Protocol, audio_window, eval_arrays, fit_image
from vssl_core.data.benchmarks import Sample, open_benchmark
from vssl_core.errors import DataError
from vssl_core.studies import how_to_listen_benchmarks as hb


@pytest.fixture(scope="module")
def vggss(tmp_path_factory):
    return make_vggss_frames(tmp_path_factory.mktemp("vggss"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_vggss_videos(tmp_path_factory.mktemp("vggss_videos"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    torch.save(official_rcgrad_state(), root / "rc_grad.pt")
    torch.save({"epoch": 1, "model_state_dict": lvs_release_state(torchvision_trunk(3, 1, 1), torchvision_trunk(1, 1, 2))},
               root / "lvs_vggss.pth.tar")
    return root


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- readers -------------------------------------------------------------------------------------------
def test_vggss_frames_layout_reports_every_problem_per_id(vggss):
    bench = open_benchmark("vggss", vggss, ids=vggss / "ids.txt")
    assert bench.layout == "frames" and bench.ids[-1] == "eee_000050"
    assert bench.annotated_ids() == ["aaa_000010", "bbb_000020", "ccc_000030", "ddd_000040"]
    assert bench.problems == {"ccc_000030": "audio missing", "eee_000050": "no annotation"}
    assert bench.media_ids() == ["aaa_000010", "bbb_000020", "ddd_000040"]
    s = bench.load("aaa_000010")
    assert s.frame.shape == (120, 160, 3) and s.frame.dtype == np.uint8
    assert s.audio.shape == (1, 32000) and s.sr == 16000 and s.centre_s == 1.0
    assert s.gt.shape == (224, 224) and s.gt[32:191, 32:191].all() and s.gt.sum() == 159 * 159
    with pytest.raises(DataError, match=r"frame unreadable: .*ddd_000040\.jpg"):
        bench.load("ddd_000040")
    assert bench.audio_rate() == 16000


def test_flickr_frames_and_original_layouts(tmp_path):
    for original in (False, True):
        root = make_flickr(tmp_path / ("orig" if original else "frames"), original_layout=original)
        bench = open_benchmark("flickr", root)
        assert bench.ids == ("1001", "1002", "1003", "1004", "1005")
        assert bench.problems["1003"] == "no annotation"
        assert bench.problems["1004"].startswith("annotation unreadable")
        assert bench.problems["1005"] == "audio missing"
        assert bench.media_ids() == ["1001", "1002"]
        g = bench.load("1001").gt      # two annotators agree on [37, 37, 219, 219] -> 32..190 certain
        assert g[32:191, 32:191].min() == 1.0 and g.sum() == 159 * 159
        assert set(np.unique(bench.load("1002").gt)) == {0.0, 0.5}


def test_hear_the_flow_file_names_are_found(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "htf"
    (root / "frames").mkdir(parents=True)
    (root / "audio").mkdir()
    (root / "vggss.json").write_text(json.dumps([{"file": "aaa_000010", "class": "x", "bbox": [[0, 0, 1, 1]]}]))
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "frames" / "aaa_10000_20000.jpg")
    sf.write(root / "audio" / "aaa_10000_20000.wav", np.zeros(1600, np.float32), 16000)
    assert open_benchmark("vggss", root).media_ids() == ["aaa_000010"]


def test_videos_layout_cuts_the_centre_frame_and_both_flows(videos):
    bench = open_benchmark("vggss", videos)
    assert bench.layout == "videos" and bench.has_flow_mag and bench.has_htf_flow
    s = bench.load("aaa_000010", flow=True)
    n, fps = 24, 8.0
    assert s.frame_time == (n // 2) / fps and s.centre_s == s.frame_time
    background = s.frame[50:60, :, 0].astype(float).mean()
    assert abs(background - 8 * (n // 2)) < 4          # frame n // 2 has brightness 8 (n // 2)
    assert s.flow_mag.shape == (64, 96) and s.htf_flow.shape == (64, 96, 2) and s.htf_flow.dtype == np.uint8
    # the square moves 3 px per video frame: FlowGrad's pair (t, t + 1/8 s) is one frame apart at 8 fps
    assert s.flow_mag[25:35, 45:55].max() > 1.5 and np.median(s.flow_mag[50:60]) < 10


def test_bad_roots_and_names_are_data_errors(tmp_path, vggss):
    with pytest.raises(DataError, match="does not exist"):
        open_benchmark("vggss", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no frames/, videos/"):
        open_benchmark("vggss", tmp_path / "empty", annotations=vggss / "vggss.json")
    with pytest.raises(DataError, match="unknown benchmark"):
        open_benchmark("kinetics", vggss)
    with pytest.raises(DataError, match="XML folder"):
        open_benchmark("flickr", vggss)


# -- protocols -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(120, 160, 3), (160, 120, 3)])
def test_frame_geometry_matches_torchvision_transforms(shape):
    from torchvision import transforms

    img = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    pil = Image.fromarray(img)
    crop = transforms.Compose([transforms.Resize(224, transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224)])
    squash = transforms.Resize((224, 224), transforms.InterpolationMode.BICUBIC)
    assert np.array_equal(fit_image(img, "centre_crop"), np.asarray(crop(pil)))
    assert np.array_equal(fit_image(img, "squash"), np.asarray(squash(pil)))


def _sample(audio: np.ndarray, sr: int, centre: float) -> Sample:
    return Sample("x", np.zeros((8, 8, 3), np.uint8), audio[None].astype(np.float32), sr,
                  np.zeros((224, 224), np.float32), np.zeros((0, 4)), centre)


def test_audio_windows_of_the_released_code():
    sr = 100
    ramp = np.arange(750, dtype=np.float32) / 1000           # 7.5 s
    lvs = Protocol(audio_anchor="start", audio_seconds=10.0, audio_fill="tile", clip=True)
    w = audio_window(_sample(ramp, sr, 3.5), lvs, sr)
    assert w.shape == (1, 1000) and np.array_equal(w[0, :750], ramp) and np.array_equal(w[0, 750:], ramp[:250])
    htf = Protocol(audio_anchor="centre", audio_seconds=3.0, audio_fill="tile")
    w = audio_window(_sample(ramp, sr, math.floor(7.5) / 2), htf, sr)   # centred on 3.5 s: 2.0 .. 5.0 s
    assert np.array_equal(w[0], ramp[200:500])
    whole = Protocol(audio_seconds=None)
    assert audio_window(_sample(ramp, sr, 0.0), whole, 50).shape == (1, 375)   # resampled to 50 Hz
    loud = _sample(np.full(100, 3.0), sr, 0.0)
    assert audio_window(loud, lvs, sr).max() == 1.0 and audio_window(loud, htf, sr).max() == 3.0


def test_whole_file_audio_groups_samples_by_length():
    a, b, c = (_sample(np.zeros(n, np.float32), 100, 0.0) for n in (300, 500, 300))
    groups = eval_arrays([a, b, c], Protocol(audio_seconds=None), 100)
    assert [pos for pos, _ in groups] == [[0, 2], [1]]
    assert groups[0][1].audio.shape == (2, 1, 300) and groups[1][1].images.shape == (1, 224, 224, 3)


# -- evaluation ------------------------------------------------------------------------------------------
def test_cli_prints_table3_rows_and_saves_scores_and_problems(vggss, weights, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["--vggss", str(vggss), "--vggss-ids", str(vggss / "ids.txt"), "--weights",
                   f"rcgrad={weights / 'rc_grad.pt'}", "--weights", f"lvs={weights / 'lvs_vggss.pth.tar'}",
                   "--out", str(out), "--n-boot", "20"])
    text = capsys.readouterr().out
    assert rc == 0
    rows = [ln for ln in text.splitlines() if ln.startswith("| VGG-SS")]
    assert [r.split("|")[2].strip() for r in rows] == ["Baseline (centred box)", "LVS", "RCGrad"]
    assert "0.226" in rows[2] and "0.263" in rows[1]          # the paper's numbers beside ours
    per = _csv(out / "vggss_per_sample.csv")
    assert [r["id"] for r in per] == ["aaa_000010", "bbb_000020"]
    assert [float(r["centred_box"]) for r in per] == [1.0, 0.0]
    assert all(0.0 <= float(r["rcgrad"]) <= 1.0 and 0.0 <= float(r["lvs"]) <= 1.0 for r in per)
    problems = {r["id"]: r["problem"] for r in _csv(out / "vggss_problems.csv")}
    assert problems["ccc_000030"] == "audio missing" and problems["eee_000050"] == "no annotation"
    assert problems["ddd_000040"].startswith("frame unreadable")
    table = _csv(out / "vggss_table.csv")
    assert {r["method"]: int(r["n"]) for r in table} == {"Baseline (centred box)": 2, "LVS": 2, "RCGrad": 2}
    assert "FlowGrad-H not run" in text and "2 of 5 test ids scored" in text


def test_videos_layout_scores_flowgrad_h_and_hear_the_flow(videos, weights, tmp_path):
    from benchmark_fixtures import htf_release_modules, save_htf_ckpt

    bench = open_benchmark("vggss", videos)
    htf = save_htf_ckpt(tmp_path / "htf.ckpt", htf_release_modules(seed=5))
    runners = {"centred_box": hb.load_runner("centred_box", "vggss"),
               "flowgrad_h": hb.load_runner("flowgrad_h", "vggss", weights / "rc_grad.pt"),
               "htf": hb.load_runner("htf", "vggss", htf, file_sr=bench.audio_rate())}
    assert runners["htf"].protocol.audio_sr == 22050 and runners["htf"].protocol.map_resize == "bicubic"
    ev = hb.evaluate(bench, runners, n_boot=0)
    assert ev.ids == ["aaa_000010", "bbb_000020"] and list(ev.cious["centred_box"]) == [1.0, 0.0]
    table = hb.evaluation_table(ev)
    assert list(table["method"]) == ["Baseline (centred box)", "FlowGrad-H", "Hear The Flow"]
    assert table.loc[table["method"] == "Hear The Flow", "paper_cIoU"].item() == 0.394
    assert (table["n"] == 2).all() and "FlowGrad's 1/8-s pair" in table["protocol"].iloc[1]


@pytest.mark.parametrize("args, message", [
    (["--vggss", "/nonexistent/vggss"], "does not exist"),
    (["--weights", "clip=x.pt"], "unknown method 'clip'"),
    (["--methods", "htf"], "Hear The Flow cannot run on VGG-SS"),
    (["--methods", "rcgrad"], "no --weights rcgrad=FILE"),
    ([], None),
])
def test_cli_bad_input_is_one_line_and_exit_2(vggss, tmp_path, capsys, args, message):
    if message is None:   # a truncated weights file
        bad = tmp_path / "rc_grad.pt"
        torch.save(official_rcgrad_state(), bad)
        bad.write_bytes(bad.read_bytes()[:1000])
        args, message = ["--weights", f"rcgrad={bad}"], "rc_grad.pt.*cannot be read"
    base = [] if "--vggss" in args else ["--vggss", str(vggss)]
    rc = cli.main(base + args + ["--out", str(tmp_path / "o"), "--n-boot", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("benchmark: error: ")
    import re
    assert re.search(message, err), err


# -- Table 3 as far as the data allow ---------------------------------------------------------------
def test_table3_without_media_says_what_to_supply(tmp_path, vggss, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "vggss").mkdir(parents=True)
    (shared / "vggss" / "vggss.json").write_text((vggss / "vggss.json").read_text())
    monkeypatch.setenv("VSSL_SHARED_DATA", str(shared))
    monkeypatch.setenv("VSSL_DATA_DIR", str(tmp_path / "data"))
    t = hb.table3(hb.find_supplied(), n_boot=0).set_index(["dataset", "method"])
    base = t.loc[("VGG-SS", "Baseline (centred box)")]
    assert base["status"].startswith("computed") and base["n"] == 4 and base["paper_cIoU"] == 0.323
    # the four boxes: the centred box itself, a disjoint corner, and two 0.2..0.6 boxes
    assert base["cIoU"] == 0.25
    assert t.loc[("VGG-SS", "RCGrad"), "missing"] == "VGG-SS media, rc_grad.pt"
    assert t.loc[("VGG-SS", "CLIPAudioTran"), "missing"] == "CLIP + Wav2CLIP"
    assert t.loc[("Flickr-SoundNet", "LVS"), "missing"] == "Flickr XML boxes, Flickr media, LVS weights"
    assert t.loc[("Flickr-SoundNet", "FlowGrad-H"), "missing"].endswith("two frames (videos)")
    assert (t["status"] == "computed").sum() == 0 and np.isnan(t.loc[("VGG-SS", "LVS"), "cIoU"])
    supply = hb.what_to_supply(t.reset_index()).set_index("missing")
    assert "hohsiangwu/rethinking-visual-sound-localization" in supply.loc["rc_grad.pt", "what to supply, from where"]
    assert "RCGrad (VGG-SS)" in supply.loc["rc_grad.pt", "rows"]
    monkeypatch.delenv("VSSL_SHARED_DATA")
    none = hb.table3(hb.find_supplied(), n_boot=0)
    assert (none["status"] == "not computed").all() and none["missing"].str.len().gt(0).all()


def test_table3_with_media_and_weights_scores_the_same_samples(tmp_path, vggss, weights, monkeypatch):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(vggss, data / "benchmarks" / "vggss")
    (data / "weights").mkdir()
    shutil.copy(weights / "rc_grad.pt", data / "weights" / "rc_grad.pt")
    monkeypatch.delenv("VSSL_SHARED_DATA", raising=False)
    monkeypatch.setenv("VSSL_DATA_DIR", str(data))
    t = hb.table3(hb.find_supplied(), n_boot=0, out_dir=tmp_path / "res").set_index(["dataset", "method"])
    rc, base = t.loc[("VGG-SS", "RCGrad")], t.loc[("VGG-SS", "Baseline (centred box)")]
    # ccc has no wav and ddd a corrupt jpg: both rows score aaa (centred box: 1) and bbb (0) only
    assert rc["status"] == base["status"] == "computed" and rc["n"] == base["n"] == 2
    assert base["cIoU"] == 0.5
    assert t.loc[("VGG-SS", "LVS"), "missing"] == "LVS weights"
    assert (tmp_path / "res" / "vggss_per_sample.csv").is_file()


# -- the real annotations, read in place ----------------------------------------------------------------
def test_real_vggss_annotations_with_a_tiny_media_folder(shared_data, tmp_path):
    ann = shared_data / "vggss" / "vggss.json"
    real = json.loads(ann.read_text())
    chosen = [real[0]["file"], real[1]["file"]]
    rng = np.random.default_rng(0)
    for i in chosen:
        (tmp_path / "frames").mkdir(exist_ok=True)
        (tmp_path / "audio").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "frames" / f"{i}.jpg")
        sf.write(tmp_path / "audio" / f"{i}.wav", np.zeros(16000, np.float32), 16000)
    bench = open_benchmark("vggss", tmp_path, annotations=ann)
    assert len(bench.ids) == 5158 and bench.media_ids() == chosen
    summary = bench.summary()
    assert summary["problems"] == {"audio missing": 5156, "frame missing": 5156}
    ev = hb.evaluate(open_benchmark("vggss", None, annotations=ann), {"centred_box": hb.load_runner("centred_box", "vggss")},
                     n_boot=0)
    # How to Listen Table 3 (4,436 of the clips): 0.323 / 0.372
    assert ev.annotations_only and abs(ev.results["centred_box"].ciou - 0.323) < 0.01
    assert abs(ev.results["centred_box"].auc - 0.372) < 0.01


def test_flickr_box_source_reads_the_xml_folder():
    """Notebook 01's flickr_xml_dir path: the Flickr boxes feed Table 2 and the naive row."""
    from pathlib import Path

    from vssl_core.studies import how_to_listen

    src = how_to_listen.flickr_source(Path(__file__).parent / "fixtures" / "flickr")
    assert src.n_frames == 3 and src.paper_key == "FS"
    assert (src.table["sample_id"] == "1001").sum() == 3      # three annotators' boxes
    assert len(how_to_listen.naive_baseline_cious(src)) == 3


def test_frames_with_released_flow_jpgs_feed_hear_the_flow(tmp_path, vggss):
    """Hear The Flow's own test layout: frames/ + audio/ + flow/flow_x, flow/flow_y jpgs."""
    import shutil

    from benchmark_fixtures import htf_release_modules, save_htf_ckpt

    root = tmp_path / "htf_layout"
    shutil.copytree(vggss, root)
    for axis, value in (("flow_x", 200), ("flow_y", 0)):
        (root / "flow" / axis).mkdir(parents=True)
        for i in ("aaa_000010", "bbb_000020"):
            Image.fromarray(np.full((120, 160), value, np.uint8)).save(root / "flow" / axis / f"{i}.jpg")
    bench = open_benchmark("vggss", root)
    assert bench.has_htf_flow and not bench.has_flow_mag
    s = bench.load("aaa_000010", flow=True)
    assert s.htf_flow.shape == (120, 160, 2) and abs(int(s.htf_flow[..., 0].mean()) - 200) <= 1
    runner = hb.load_runner("htf", "vggss", save_htf_ckpt(tmp_path / "h.ckpt", htf_release_modules(seed=7)),
                            file_sr=bench.audio_rate())
    (_, ev), = eval_arrays([s], runner.protocol, runner.protocol.audio_sr, flow_field=True)
    assert ev.flow_field.shape == (1, 224, 224, 2) and abs(ev.flow_field[..., 0].mean() - 200 / 255) < 0.01
    assert ev.audio.shape == (1, 1, 3 * 16000)            # 3 s of the 2-s file, tiled, at its 16 kHz
    result = hb.evaluate(bench, {"htf": runner}, n_boot=0)
    assert result.ids == ["aaa_000010", "bbb_000020"] and result.results["htf"].postprocess == "median"


def test_full_youtube_video_cuts_the_clip_at_the_ids_second(tmp_path):
    import cv2

    root = tmp_path / "full"
    (root / "videos").mkdir(parents=True)
    (root / "audio").mkdir()
    (root / "vggss.json").write_text(json.dumps([{"file": "fff_000002", "class": "x", "bbox": [[0, 0, 1, 1]]}]))
    vw = cv2.VideoWriter(str(root / "videos" / "fff_000002.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 4.0, (32, 32))
    for k in range(48):                                   # 12 s at 4 fps, frame k has brightness 5 k
        vw.write(np.full((32, 32, 3), 5 * k, np.uint8))
    vw.release()
    sf.write(root / "audio" / "fff_000002.wav", np.zeros(12 * 1000, np.float32), 1000)
    s = open_benchmark("vggss", root, full_video=True).load("fff_000002")
    assert s.frame_time == 7.0 and s.clip_start_s == 2.0          # clip [2, 12): its centre, 7 s = frame 28
    assert abs(s.frame.astype(float).mean() - 5 * 28) < 4
    assert audio_window(s, Protocol(audio_seconds=None), 1000).shape == (1, 10 * 1000)   # the 10-s clip only
    assert open_benchmark("vggss", root).load("fff_000002").frame_time == 24 / 4.0        # a clip: frame n // 2


def test_find_supplied_takes_given_folders_and_rejects_wrong_ones(tmp_path, vggss, weights, monkeypatch):
    monkeypatch.delenv("VSSL_SHARED_DATA", raising=False)
    monkeypatch.setenv("VSSL_DATA_DIR", str(tmp_path / "data"))
    flickr = make_flickr(tmp_path / "flickr")
    s = hb.find_supplied(media={"vggss": vggss, "flickr": flickr}, weights={"rcgrad": weights / "rc_grad.pt"})
    assert s.benchmarks["vggss"].media_ids() == ["aaa_000010", "bbb_000020", "ddd_000040"]
    assert s.benchmarks["flickr"].media_ids() == ["1001", "1002"]        # its Annotations/ and flickr_test.csv
    assert s.weights["rcgrad"] == weights / "rc_grad.pt" and s.weights["lvs"] is None
    assert s.missing == {"vggss": [], "flickr": []}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no frames/, videos/"):
        hb.find_supplied(vggss_json=vggss / "vggss.json", media={"vggss": tmp_path / "empty"})


def test_models_trained_by_the_companion_run_as_their_own_method(tmp_path):
    """A model file of `python -m vssl_core train` (e.g. weights/quick/rcgrad.pt) loads as RCGrad
    and FlowGrad-H; offered as another method it is refused, naming the class."""
    from vssl_core.models.checkpoints import save_checkpoint
    from vssl_core.models.rcgrad import ModelConfig, RCGrad

    torch.manual_seed(0)
    model = RCGrad(ModelConfig(kind="rcgrad", width=0.125, image_size=32))
    path = save_checkpoint(tmp_path / "rcgrad.pt", {
        "model_class": "RCGrad", "model_config": model.config.to_dict(),
        "model": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}})
    for key in ("rcgrad", "flowgrad_h"):
        runner = hb.load_runner(key, "vggss", path)
        assert "vssl_core RCGrad (32 px)" in runner.report and runner.protocol.audio_sr == 16000
    with pytest.raises(DataError, match="is RCGrad.*give a trained LVS"):
        hb.load_runner("lvs", "vggss", path)
