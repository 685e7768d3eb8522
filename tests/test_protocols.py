"""The `protocol` switch of the studies (companion / paper / released), what each value changes,
and what it must not change: the quick profile's models (shipped weights) and tables.

Also the pieces of issue 20 that serve it: overrides that reach borrowed models, the paper
profile's needs, and the evaluation cache that keeps one copy of each column.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vssl_core.data.flow import FlowParams, window_frame_pairs
from vssl_core.errors import DataError
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import score_cious
from vssl_core.models.htf import HTF, HTFConfig, JpegFlowField, build_htf, jpeg_flow_field
from vssl_core.repro.paths import repo_root
from vssl_core.studies import do_we_need_sound as dwns
from vssl_core.studies import flowgrad
from vssl_core.studies import hear_the_flow as hs
from vssl_core.training import rcgrad_family

from conftest import make_pairs

TINY = dict(image_size=32, width=1 / 16, layer4_stride=1)

#: Keys of quick-profile specs as shipped in weights/quick/MANIFEST.json. They change only with
#: the shipped weights (retrain and update both together); a protocol must never change them.
QUICK_KEYS = {"rcgrad": "1ee0f9fcf57fd013", "flowgrad_ic": "127eefe51c7ac54c", "htf-prior": "9c89606c4965f261",
              "htf-c": "867d5e6aab73c57f", "htf-d": "9c0eb4c6a93eed9c", "htf-f": "1e5db5ef67894068",
              "htf-maxpool": "f4c069baaa7ea06b", "oya-2500": "e6da74bdc44184cc"}


def _quick_specs(tmp_path):
    from vssl_core.cli.catalogue import all_specs
    from vssl_core.training.store import Models

    return all_specs("quick", Models(cache_root=tmp_path, allow_train=False, progress=False), progress=False)


# ------------------------------------------------------------------------- the quick profile
def test_quick_profile_keys_are_the_shipped_ones(tmp_path):
    specs = _quick_specs(tmp_path)
    assert {name: specs[name].key for name in QUICK_KEYS} == QUICK_KEYS


def test_quick_profile_matches_the_weights_manifest(tmp_path):
    """Every quick spec's key and recipe are those of the shipped manifest (when one is present:
    weights/quick/, or $VSSL_WEIGHTS_DIR/quick)."""
    from vssl_core.training.weights import read_manifest, weights_dir

    shipped = read_manifest(weights_dir("quick"))["models"]
    if not shipped:
        pytest.skip(f"no shipped weights manifest in {weights_dir('quick')}")
    specs = _quick_specs(tmp_path)
    assert set(specs) == set(shipped)
    differ = [name for name, spec in specs.items() if spec.key != shipped[name]["key"]
              or json.loads(json.dumps(dict(spec.recipe))) != shipped[name]["recipe"]]
    assert differ == [], f"quick specs that no longer match their shipped weights: {differ}"


def test_the_companion_protocol_is_the_quick_default():
    for cls in (flowgrad.FlowGradSetup, hs.HearTheFlowSetup, dwns.OyaSetup):
        assert cls().protocol == "companion" and cls.for_profile("quick").protocol == "companion"
        assert cls.for_profile("paper").protocol == "paper"
    # the companion's data: FlowGrad's 1-s window and 8-fps flow, as before
    h = hs.HearTheFlowSetup()
    assert h.flow == FlowParams(window_s=0.125) and h.eval_audio_seconds == 1.0
    # the released switches stay out of a companion model's config (recipe keys unchanged)
    cfg = hs.model_config(hs.HearTheFlowSetup(), flow=True, pretrained=True, frozen=True)
    assert not {"flow_input", "frozen_batchnorm", "flow_conv1"} & set(cfg.to_dict())
    assert HTFConfig.from_dict(cfg.to_dict()) == cfg


def _result(cious, cutoff, postprocess):
    return score_cious(np.asarray(cious, float), at=cutoff, n_boot=20, postprocess=postprocess)


def _results(postprocess, cutoff):
    return {k: _result([0.1, 0.6, 0.4, 0.0], cutoff, postprocess) for k in ("a", "b", "c", "d", "e", "f")}


def test_companion_tables_keep_their_columns():
    """The quick tables (figures/) do not change: no rule columns under the companion protocol."""
    res = _results("median", 0.3)
    t4 = hs.table4(res)
    assert t4.equals(hs.table4(res, protocol="companion"))
    assert "protocol" not in t4.columns and "postprocess" not in t4.columns
    assert "protocol" not in hs.table5({"MaxPool": res["a"], "ResNet18": res["f"]}).columns
    fg = {"RCGrad": _result([0.1, 0.5], 0.3, "clean"), "FlowGrad-H": _result([0.2, 0.5], 0.3, "none")}
    t1 = flowgrad.table1(fg)
    assert list(t1.columns) == list(flowgrad.table1(fg, protocol="companion").columns)
    assert "protocol" not in t1.columns and list(t1["postprocess"]) == ["clean", "none"]
    oya = {500: {dwns.LOC: _result([0.1, 0.5], 0.3, "clean"), dwns.POT: _result([0.2, 0.5], 0.3, "clean")}}
    assert "protocol" not in dwns.size_table(oya).columns


def test_other_protocols_name_their_rule_in_the_tables():
    res = _results("median", 0.5)
    t4 = hs.table4(res, protocol="paper")
    assert set(t4["protocol"]) == {"paper"} and set(t4["postprocess"]) == {"median"} and "cIoU@0.5" in t4.columns
    fg = {"RCGrad": _result([0.1, 0.5], 0.3, "clean"), "FlowGrad-H": _result([0.2, 0.5], 0.3, "none")}
    t1 = flowgrad.table1(fg, protocol="paper")
    assert list(t1["postprocess"]) == ["clean", "min-max+none"] and set(t1["protocol"]) == {"paper"}
    oya = {500: {dwns.LOC: _result([0.1, 0.5], 0.5, "clean"), dwns.POT: _result([0.2, 0.5], 0.5, "clean")}}
    table = dwns.size_table(oya, protocol="paper")
    assert set(table["protocol"]) == {"paper"} and "cIoU@0.5" in table.columns


# ------------------------------------------------------------------------------- the rules
def test_htf_rules_per_protocol_and_refusals():
    quick = hs.evaluation_rules(hs.HearTheFlowSetup(), 0.3, "clean")
    assert (quick.postprocess, quick.cutoff, quick.audio_seconds) == ("clean", 0.3, 1.0)
    assert "gate" in quick.model and "gate" not in hs.evaluation_rules(hs.HearTheFlowSetup(attn_gate=False)).model
    released = hs.HearTheFlowSetup(protocol="released")
    assert "gate" not in hs.evaluation_rules(released).model  # the released model has no gate
    for setup, gated in ((hs.HearTheFlowSetup(), True), (hs.HearTheFlowSetup(attn_gate=False), False), (released, False)):
        assert hs.model_config(setup, flow=True, pretrained=True, frozen=True).attn_gate is gated
        assert not hs.model_config(setup, flow=False, pretrained=True, frozen=True).attn_gate  # no attention
    paper = hs.HearTheFlowSetup(protocol="paper", audio_seconds=3.0)
    rules = hs.evaluation_rules(paper, 0.5, "median")
    assert (rules.postprocess, rules.cutoff, rules.audio_seconds) == ("median", 0.5, 3.0)
    assert "paper" in str(rules) and "cIoU@0.5" in str(rules)
    with pytest.raises(DataError, match="'at'.*set at = 0.5"):
        hs.evaluation_rules(paper, 0.3, "median")
    with pytest.raises(DataError, match="'lvs_postprocess'.*'median'"):
        hs.evaluation_rules(paper, 0.5, "clean")
    with pytest.raises(DataError, match="flow_window_s"):
        hs.HearTheFlowSetup(protocol="paper", flow_window_s=0.5)
    with pytest.raises(DataError, match="protocol"):
        hs.HearTheFlowSetup(protocol="papers")
    # the paper's flow: the frame and the next native frame; its audio: 3 s centred on the frame
    assert paper.flow == FlowParams.native() and paper.eval_audio_seconds == 3.0


def test_flowgrad_and_oya_rules():
    assert flowgrad.evaluation_rules(flowgrad.FlowGradSetup(), 0.3).cutoff == 0.3
    paper = flowgrad.evaluation_rules(flowgrad.FlowGradSetup(protocol="paper"), 0.3)
    assert paper.renormalise_flow and "min-max" in str(paper)
    released = flowgrad.evaluation_rules(flowgrad.FlowGradSetup(protocol="released"))
    assert not released.renormalise_flow and "22050 Hz" in str(released)
    with pytest.raises(DataError, match="set at = 0.3"):
        flowgrad.evaluation_rules(flowgrad.FlowGradSetup(protocol="paper"), 0.5)
    assert dwns.evaluation_rules(dwns.OyaSetup(protocol="paper"), 0.5).cutoff == 0.5
    with pytest.raises(DataError, match="set at = 0.5"):
        dwns.evaluation_rules(dwns.OyaSetup(protocol="paper"), 0.3)
    released = dwns.evaluation_rules(dwns.OyaSetup(protocol="released"), 0.5)      # no code: the paper's rules
    assert (released.cutoff, released.postprocess) == (0.5, "clean") and "released no code" in str(released)
    with pytest.raises(DataError, match="protocol"):
        dwns.OyaSetup(protocol="paper2")


# ---------------------------------------------------------------------- Hear The Flow models
def test_jpeg_flow_loses_negative_motion_and_fractions():
    field = np.array([[[[-3.2, 4.4], [2.6, -0.4]], [[0.49, 300.0], [-0.0, 1.5]]]], np.float32)  # (1, 2, 2, 2)
    q = jpeg_flow_field(field)
    np.testing.assert_array_equal(q * 255, [[[[0, 4], [3, 0]], [[0, 255], [0, 2]]]])
    assert q.dtype == np.float32 and q.min() >= 0 and q.max() <= 1
    view = JpegFlowField(np.repeat(field, 5, axis=0))
    assert len(view) == 5 and view.shape == (5, 2, 2, 2)
    np.testing.assert_array_equal(view[[0, 3]], np.repeat(q, 2, axis=0))
    np.testing.assert_array_equal(np.asarray(view)[4], q[0])


def test_jpeg_input_ignores_the_flip_sign_like_the_released_flip():
    """The released flip mirrors the stored JPEG without negating dx; the training loop negates
    dx, so a JPEG model reads |field|: a negated dx gives the same features, a signed model not."""
    torch.manual_seed(0)
    flow = torch.rand(2, 2, 32, 32)
    flipped = flow * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    base = dict(flow_encoder="resnet", freeze_vision=False, **TINY)
    jpeg = HTF(HTFConfig(flow_input="jpeg", **base)).eval()
    signed = HTF(HTFConfig(**base)).eval()
    signed.load_state_dict(jpeg.state_dict())
    torch.testing.assert_close(jpeg.encode_flow(flow, (8, 8)), jpeg.encode_flow(flipped, (8, 8)))
    assert not torch.allclose(signed.encode_flow(flow, (8, 8)), signed.encode_flow(flipped, (8, 8)))


@pytest.mark.parametrize("frozen_batchnorm", ["eval", "train"])
def test_frozen_vision_batchnorm(frozen_batchnorm):
    """Released frozen vision: parameters fixed, BatchNorm in train mode (running statistics move);
    the companion's: nothing of the image encoder changes."""
    torch.manual_seed(0)
    model = HTF(HTFConfig(flow_encoder="maxpool", freeze_vision=True, frozen_batchnorm=frozen_batchnorm, **TINY))
    before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    model.train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    images, audio = torch.rand(4, 3, 32, 32), torch.randn(4, 1, 257, 20)
    out = model(images, audio, torch.randn(4, 2, 32, 32))
    model.loss(out).backward()
    opt.step()
    after = model.image_encoder.state_dict()
    params = {n for n, _ in model.image_encoder.named_parameters()}
    assert all(torch.equal(before[k], after[k]) for k in params)          # weights never move
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    stats = [k for k in before if k.endswith("running_mean")]
    moved = any(not torch.equal(before[k], after[k]) for k in stats)
    assert moved == (frozen_batchnorm == "train")
    assert model.image_encoder.training == (frozen_batchnorm == "train")


def test_flow_conv1_random_or_rgb_mean_and_flow_only_prior():
    from vssl_core.models.encoders import resnet18_encoder

    torch.manual_seed(1)
    state = resnet18_encoder(3, TINY["width"], 1).state_dict()
    mean = state["conv1.weight"].mean(dim=1, keepdim=True).repeat(1, 2, 1, 1)
    base = dict(flow_encoder="resnet", freeze_vision=True, pretrained_flow=True, **TINY)
    ours, _ = build_htf(HTFConfig(**base), state)
    torch.testing.assert_close(ours.flow_encoder.conv1.weight, mean)
    released, _ = build_htf(HTFConfig(flow_conv1="random", **base), state)
    assert not torch.allclose(released.flow_encoder.conv1.weight, mean)
    torch.testing.assert_close(released.flow_encoder.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    # the released row d: a random vision encoder beside a pretrained flow encoder
    flow_only, reports = build_htf(HTFConfig(**{**base, "freeze_vision": False}), state, image=False)
    assert set(reports) == {"flow_encoder"}
    assert not torch.allclose(flow_only.image_encoder.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_released_specs_set_the_switches_where_they_apply(tmp_path):
    from vssl_core.training.store import Models

    setup = hs.HearTheFlowSetup(protocol="released", **TINY)
    specs = hs.model_specs(setup, Models(cache_root=tmp_path, progress=False), progress=False)
    cfg = {row: specs[row].recipe["model"] for row in (*hs.TABLE4_ROWS, "MaxPool")}
    assert "flow_input" not in cfg["a"] and cfg["f"]["flow_input"] == "jpeg"
    assert cfg["c"]["frozen_batchnorm"] == "train" and "frozen_batchnorm" not in cfg["e"]
    assert cfg["d"]["pretrained_flow"] and cfg["d"]["flow_conv1"] == "random" and "flow_conv1" not in cfg["MaxPool"]
    assert specs["d"].recipe["flow_prior"] == {"object_prior": specs["prior"].key} and specs["d"].recipe["vision"] is None
    paper = hs.model_specs(hs.HearTheFlowSetup(protocol="paper", **TINY), Models(cache_root=tmp_path, progress=False),
                           progress=False)
    companion = hs.model_specs(hs.HearTheFlowSetup(**TINY), Models(cache_root=tmp_path, progress=False), progress=False)
    assert paper["f"].recipe["data"]["flow"]["fps"] == 0.0          # native frames: another model than ours
    assert len({paper["f"].key, companion["f"].key, specs["f"].key}) == 3
    assert paper["f"].recipe["model"] == companion["f"].recipe["model"]


def test_released_pairs_carry_the_jpeg_field(monkeypatch):
    rng = np.random.default_rng(0)
    field = rng.normal(0, 3, (3, 32, 32, 2)).astype(np.float32)
    calls = {}

    def fake(dataset, clips, **kw):
        calls.update(kw)
        return make_pairs(np.zeros((3, 32, 32, 3), np.uint8), np.zeros((3, 1, 100), np.float32), flow_field=field)

    monkeypatch.setattr(hs, "load_evaluation", fake)
    ev = hs.load_pairs(None, None, hs.HearTheFlowSetup(protocol="released", audio_seconds=3.0, **TINY))
    assert calls["audio_seconds"] == 3.0 and calls["flow"] == FlowParams.native()
    np.testing.assert_array_equal(ev.flow_field[:], jpeg_flow_field(field))
    np.testing.assert_array_equal(ev.subset([2]).flow_field, jpeg_flow_field(field[2:]))
    ev = hs.load_pairs(None, None, hs.HearTheFlowSetup(**TINY))
    assert calls["audio_seconds"] == 1.0 and calls["flow"] == FlowParams(window_s=0.125)
    assert ev.flow_field is field


def test_native_flow_pairs_consecutive_frames():
    assert window_frame_pairs(1.0, 24.0, 240, FlowParams.native()) == [(24, 25)]
    assert window_frame_pairs(1.0, 24.0, 240) == [(24, 27)]                 # one 8-fps step: 3 frames
    assert window_frame_pairs(9.99, 24.0, 240, FlowParams.native()) == [(238, 239)]   # the clip's end
    assert FlowParams.native().steps(30.0) == (1, 1 / 30)


# ------------------------------------------------------------------------------- FlowGrad
def test_flowgrad_paper_renormalises_the_flow_maps_only():
    flow = np.zeros((2, 224, 224), np.float32)
    flow[:, :10] = 0.4                        # a slow car: below the 0.5 px threshold as it is
    stream = [("Optical flow only", LocalizationMaps(flow, "none", "flow")),
              ("RCGrad", LocalizationMaps(flow.copy(), "clean", "rcgrad"))]
    paper = dict(flowgrad.protocol_maps(stream, "paper"))
    ours = dict(flowgrad.protocol_maps(stream, "companion"))
    assert ours["Optical flow only"].maps is flow
    assert paper["Optical flow only"].maps.max() == 1.0 and paper["Optical flow only"].postprocess == "none"
    assert paper["RCGrad"].maps is stream[1][1].maps


def test_flowgrad_released_audio_and_flow(monkeypatch):
    calls = {}

    def fake(dataset, clips, **kw):
        calls.update(kw)
        sr = kw["audio_sr"]
        flow = np.full((2, 224, 224), 2.6, np.float32)
        flow[0, 0, 0] = 300.0
        return make_pairs(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 1, sr), np.float32), flow=flow,
                          audio_sr=sr)

    monkeypatch.setattr(flowgrad, "load_evaluation", fake)
    ev = flowgrad.load_pairs(None, None, flowgrad.FlowGradSetup(protocol="released"))
    assert calls["audio_sr"] == 22050 and ev.audio.shape[-1] == 22050 and ev.audio_sr == 16000  # unresampled
    assert ev.flow[0, 0, 0] == 255.0 and ev.flow[1, 5, 5] == 3.0
    ev = flowgrad.load_pairs(None, None, flowgrad.FlowGradSetup())
    assert calls["audio_sr"] == 16000 and ev.audio_sr == 16000 and ev.flow[1, 5, 5] == np.float32(2.6)


# ------------------------------------------------------------------------------- overrides
def test_overrides_reach_the_borrowed_rcgrad():
    said = []
    setup = rcgrad_family.borrowed_setup("paper", {"image_size": 32, "eval_clips": 2, "at": 0.5, "protocol": "x"},
                                         say=said.append, num_threads=1)
    assert (setup.image_size, setup.eval_clips, setup.num_threads, setup.width) == (32, 2, 1, 1.0)
    assert "image_size = 32" in said[0] and "at" not in said[0]
    assert rcgrad_family.borrowed_setup("quick") == rcgrad_family.RCGradFamilySetup()
    oya = dwns.OyaSetup(eval_clips=3)
    assert dwns.rcgrad_setup("paper", oya, {"epochs": 1}).epochs == 1
    assert dwns.rcgrad_setup("paper", oya, {"epochs": 1}).eval_clips == 3


@pytest.mark.parametrize("stem", ["03_ablations", "04_do_we_need_sound"])
def test_notebooks_pass_their_overrides_to_borrowed_models(stem):
    cells = json.loads((repo_root() / "notebooks" / f"{stem}.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "RCGradFamilySetup.for_profile(profile)" not in code
    assert "check_profile(" in code and "overrides" in code
    assert ("borrowed_setup(profile, overrides" in code) or ("rcgrad_setup(profile, setup, overrides" in code)
    assert "print(rules)" in code


# ----------------------------------------------------------------------------------- needs
def test_paper_needs_are_stated_and_scale_with_overrides():
    from vssl_core.cli.catalogue import needs_text, profile_needs

    nbs = ["02_flowgrad", "03_ablations", "04_do_we_need_sound"]
    paper = profile_needs("paper", nbs)
    quick = profile_needs("quick", nbs)
    assert paper["disk_gb"] > 40 and quick["disk_gb"] < 15 and paper["memory_gb"] > quick["memory_gb"]
    assert paper["gpu_hours"] > 1 and "synthetic scenes: training scenes" in paper["items"]
    # shared sets are counted once: 04 adds no second copy of 02's windows
    alone = profile_needs("paper", ["02_flowgrad"])["items"]
    both = profile_needs("paper", ["02_flowgrad", "04_do_we_need_sound"])["items"]
    assert [k for k in both if k.startswith("RCGrad family windows")] == [k for k in alone if k.startswith("RCGrad family windows")]
    tiny = profile_needs("paper", nbs, {"train_scenes": 16, "val_scenes": 4, "train_windows": 48, "image_size": 32,
                                        "width": 0.125, "epochs": 1, "train_sizes": [24, 48], "eval_clips": 2})
    assert tiny["items"]["synthetic scenes: training scenes"] < 0.1 and tiny["cpu_hours"] < 1
    assert "disk: about" in needs_text(paper) and "GB of RAM" in needs_text(paper)


def test_regenerate_states_the_needs_before_it_starts(monkeypatch, capsys):
    from vssl_core.cli import regenerate as cli

    order = []
    monkeypatch.setattr(cli, "_announce_needs", lambda *a: order.append("needs"))

    class Summary:
        manifest = "m"

        def table(self):
            return "t"

        def notes(self):
            return ""

    from vssl_core.repro import regenerate as runner

    monkeypatch.setattr(runner, "regenerate", lambda **kw: order.append("run") or Summary())
    assert cli.main(["--profile", "paper", "--only", "04"]) == 0
    assert order == ["needs", "run"]
    order.clear()
    assert cli.main(["--only", "04"]) == 0 and order == ["run"]         # quick: the README gives its needs
    monkeypatch.undo()
    cli._announce_needs("paper", ["04"], {})
    out = capsys.readouterr().out
    assert "04_do_we_need_sound" in out and "disk: about" in out and "02_flowgrad" not in out


# ------------------------------------------------------------------ one copy in the cache
@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from vssl_core.data.synth import SceneConfig, generate
    from vssl_core.data.urbansas import UrbansasDataset

    root = tmp_path_factory.mktemp("synth") / "set"
    cfg = SceneConfig(width=160, height=90, fps=8, duration=3.0, sample_rate=16000, n_moving=(1, 1))
    generate(root, 2, seed=3, config=cfg, n_jobs=1, progress=False)
    return UrbansasDataset(root)


def test_cached_sets_keep_one_copy_with_identical_reads(tiny_synth, tmp_path):
    from vssl_core.data import columns, evalset

    built = evalset.as_numpy(evalset.build_eval_set(tiny_synth, image_size=32, n_jobs=1, progress=False,
                                                    workdir=tmp_path / "w", flow_field=True), mmap=False)
    ds = evalset.load_eval_set(tiny_synth, image_size=32, n_jobs=1, progress=False, cache_root=tmp_path / "c",
                               flow_field=True)
    assert len(built["clip"]) > 0
    stored = columns.stored_columns(ds)
    assert set(stored) == {"image", "flow", "audio", "gt", "flow_field"}
    arrow = sum(Path(f["filename"]).stat().st_size for f in ds.cache_files)
    npy = sum(columns.column_path(ds, c, d).stat().st_size for c, d in stored.items())
    assert arrow < 0.05 * npy                                        # the Arrow table holds no pixels
    for mmap in (True, False):
        got = evalset.as_numpy(ds, mmap=mmap)
        for c, ref in built.items():
            if c in ("boxes", "labels"):
                assert [x.tolist() for x in got[c]] == [x.tolist() for x in ref]
            else:
                assert got[c].dtype == ref.dtype and got[c].shape == ref.shape, c
                np.testing.assert_array_equal(got[c], ref)
    assert isinstance(evalset.as_numpy(ds, ["flow"])["flow"], np.memmap)
    gt = evalset.as_numpy(ds, ["gt"], dtypes={"gt": np.float32})["gt"]   # a cast: written once from the .npy
    np.testing.assert_array_equal(gt, built["gt"].astype(np.float32))
    sub = ds.select([1, 0])
    np.testing.assert_array_equal(evalset.as_numpy(sub, ["image"])["image"], built["image"][[1, 0]])
    with pytest.raises(DataError, match="sliced"):
        evalset.as_numpy(ds.select(range(0, 1)), ["image"])
    columns.column_path(ds, "image", np.uint8).unlink()
    with pytest.raises(DataError, match="delete"):
        evalset.as_numpy(ds, ["image"])


def test_native_flow_and_the_audio_window_on_a_synthetic_clip(tiny_synth, tmp_path):
    from vssl_core.data import evalset

    def build(name, **kw):
        return evalset.as_numpy(evalset.build_eval_set(tiny_synth, image_size=32, n_jobs=1, progress=False,
                                                       workdir=tmp_path / name, **kw), mmap=False)

    native = build("native", flow=FlowParams.native(), audio_seconds=3.0)
    ours = build("ours")
    assert native["audio"].shape[-1] == 48000 and ours["audio"].shape[-1] == 16000
    # 3 s centred on the frame: FlowGrad's 1 s is its middle second
    np.testing.assert_array_equal(native["audio"][:, :, 16000:32000], ours["audio"])
    # on 8-fps video one native frame is one 8-fps step: the same flow
    np.testing.assert_allclose(native["flow"], ours["flow"], atol=1e-6)


def test_en_losses_reach_flowgrad_en_only(tmp_path):
    """A subset of FlowGrad-EN's pairwise losses gives EN a model config (and key) of its own, and
    leaves RCGrad and FlowGrad-IC as shipped."""
    from vssl_core.training.rcgrad_family import family_specs
    from vssl_core.training.store import Models

    models = Models(cache_root=tmp_path, allow_train=False, progress=False)
    paper = family_specs(flowgrad.FlowGradSetup.for_profile("quick"), models, progress=False)
    sub = family_specs(flowgrad.FlowGradSetup.for_profile("quick", {"en_losses": ["audio-image", "audio-flow"]}),
                       models, progress=False)
    assert sub["rcgrad"].key == paper["rcgrad"].key == QUICK_KEYS["rcgrad"]
    assert sub["flowgrad_ic"].key == paper["flowgrad_ic"].key
    assert sub["flowgrad_en"].key != paper["flowgrad_en"].key
    assert sub["flowgrad_en"].recipe["model"]["en_losses"] == ["audio-image", "audio-flow"]
    assert "en_losses" not in paper["flowgrad_en"].recipe["model"]
