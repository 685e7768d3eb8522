"""Hear The Flow ablation glue and FlowGrad's motion sweeps: configs, maps, recall, tables."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from vssl_core.studies import hear_the_flow as hs

from vssl_core.eval import metrics

from vssl_core.studies import flowgrad_motion as ms
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.models import lvs_maps
from vssl_core.models.htf import HTF

from conftest import make_pairs

SETUP = hs.HearTheFlowSetup(image_size=32, width=1 / 16, layer4_stride=1)


def test_model_config_rows():
    assert set(hs.TABLE4_ROWS) == set("abcdef")
    a = hs.model_config(SETUP, flow=False, pretrained=False, frozen=False)
    assert a.flow_encoder == "none" and a.pretrained_vision is None and not a.freeze_vision
    f = hs.model_config(SETUP, flow=True, pretrained=True, frozen=True)
    assert (f.flow_encoder, f.freeze_vision, f.pretrained_flow) == ("resnet", True, True)
    mp = hs.model_config(SETUP, flow=True, pretrained=True, frozen=True, flow_encoder="maxpool")
    assert mp.flow_encoder == "maxpool"
    with pytest.raises(ValueError, match="freezing"):
        hs.model_config(SETUP, flow=True, pretrained=False, frozen=True)
    # the released loss rules: easy negatives on the confident region, max-pooled audio
    assert (f.easy_negatives, f.audio_pool, f.eps_p, f.eps_n, f.tau) == ("confident", "max", 0.65, 0.4, 0.03)


def test_model_specs_cover_table4_and_5_with_distinct_keys(tmp_path):
    from vssl_core.training.store import Models

    specs = hs.model_specs(SETUP, Models(cache_root=tmp_path, progress=False), progress=False)
    assert set(specs) == set("abcdef") | {"MaxPool", "prior"}
    keys = {s.key for s in specs.values()}
    assert len(keys) == len(specs)
    # rows with the vision prior name it in their recipe; rows without do not
    assert specs["b"].recipe["vision"] == {"object_prior": specs["prior"].key} and specs["a"].recipe["vision"] is None
    with pytest.raises(ValueError, match="not HearTheFlowSetup fields"):
        hs.HearTheFlowSetup.from_params(epochz=3)


def test_trained_pretrained_rows_start_from_their_frozen_rows_unless_asked_for_the_paper(tmp_path):
    from vssl_core.training.store import Models

    models = Models(cache_root=tmp_path, progress=False)
    two_stage = hs.model_specs(SETUP, models, progress=False)
    paper = hs.model_specs(dataclasses.replace(SETUP, unfrozen_start="prior"), models, progress=False)
    for row, frozen_row in hs.FROZEN_ROW_OF.items():
        assert two_stage[row].recipe["start"] == {"from": two_stage[frozen_row].key, "lr_scale": SETUP.unfrozen_lr_scale}
        assert two_stage[row].config.lr == pytest.approx(SETUP.lr * SETUP.unfrozen_lr_scale)
        assert "start" not in paper[row].recipe and paper[row].config.lr == SETUP.lr
        assert two_stage[row].key != paper[row].key
    # every other row, and its key, is the same under both starts
    assert all(two_stage[r].key == paper[r].key for r in two_stage if r not in hs.FROZEN_ROW_OF)
    released = hs.model_specs(dataclasses.replace(SETUP, protocol="released"), models, progress=False)
    assert "start" not in released["b"].recipe
    with pytest.raises(Exception, match="unfrozen_start"):
        dataclasses.replace(SETUP, unfrozen_start="imagenet")
    with pytest.raises(Exception, match="unfrozen_lr_scale"):
        dataclasses.replace(SETUP, unfrozen_lr_scale=0.0)


def test_started_from_loads_the_first_stage_and_scales_the_learning_rate():
    from vssl_core.training.loop import TrainConfig
    from vssl_core.training.store import ModelSpec

    first = torch.nn.Linear(3, 2)
    with torch.no_grad():
        first.weight.fill_(0.5)
        first.bias.fill_(-1.0)

    class Store:  # what Models.get does for a trained first stage
        def get(self, spec):
            assert spec.name == "stage-1"
            return first

    start = ModelSpec("stage-1", {"x": 1}, lambda: torch.nn.Linear(3, 2), TrainConfig(lr=1e-3), lambda: (None, None))
    spec = ModelSpec("stage-2", {"x": 2}, lambda: torch.nn.Linear(3, 2), TrainConfig(lr=1e-3), lambda: (None, None))
    second = hs.started_from(spec, start, Store(), 0.1)
    model = second.factory()
    assert torch.equal(model.weight, first.weight) and torch.equal(model.bias, first.bias)
    assert model is not first                                   # a copy: the first stage stays as it was
    assert second.config.lr == pytest.approx(1e-4) and second.recipe["start"]["from"] == start.key
    assert second.key != spec.key and second.name == "stage-2"
    bad = ModelSpec("stage-2", {}, lambda: torch.nn.Linear(4, 2), TrainConfig(), lambda: (None, None))
    with pytest.raises(RuntimeError, match="size mismatch"):
        hs.started_from(bad, start, Store(), 0.1).factory()


def _batch(n=4, s=32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, s, s, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, (n, 1, 16000)).astype(np.float32)
    field = rng.normal(0, 1, (n, s, s, 2)).astype(np.float32)
    return images, audio, field


def test_localizer_maps_shapes_and_checks():
    torch.manual_seed(0)
    images, audio, field = _batch()
    model = HTF(hs.model_config(SETUP, flow=True, pretrained=False, frozen=False)).eval()
    out = lvs_maps.localizer_maps(model, images, audio, field, chunk_size=3)
    same = lvs_maps.maps(model, make_pairs(images, audio, flow_field=field))
    np.testing.assert_allclose(same.maps, out.maps, atol=1e-5)  # batch-size rounding of the convolutions, through a cubic kernel
    assert isinstance(out, LocalizationMaps) and out.maps.shape == (4, 224, 224)
    assert out.postprocess == "median" and out.method == "htf"
    assert out.maps.min() >= 0 and out.maps.max() <= 1
    with pytest.raises(ValueError, match="flow_field"):
        lvs_maps.localizer_maps(model, images, audio, None)
    with pytest.raises(ValueError, match="eval mode"):
        lvs_maps.localizer_maps(model.train(), images, audio, field)


def test_audio_sensitivity_is_zero_when_the_audio_is_ignored():
    torch.manual_seed(0)
    images, audio, _ = _batch()
    model = HTF(hs.model_config(SETUP, flow=False, pretrained=False, frozen=False)).eval()
    ev = make_pairs(images, audio)
    assert hs.audio_sensitivity(model, ev) > 1e-4           # random weights: audio matters a bit
    fixed = model.encode_audio(torch.zeros(1, 1, 257, 66)).detach()
    model.encode_audio = lambda spec: fixed.expand(len(spec), -1)       # every clip sounds the same
    assert hs.audio_sensitivity(model, ev) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        hs.audio_sensitivity(model, ev.subset([0]))


def test_uniform_share_separates_a_shift_from_a_change_of_shape():
    from vssl_core.eval.audio_sensitivity import uniform_share

    rng = np.random.default_rng(0)
    a = rng.random((3, 7, 7))
    shape = rng.standard_normal((7, 7))
    shape -= shape.mean()                              # zero mean: a pure change of shape
    b = np.stack([a[0] + 0.2, a[1] + shape, a[2]])
    share = uniform_share(a, b)
    assert share[0] == pytest.approx(1.0) and share[1] == pytest.approx(0.0, abs=1e-12) and np.isnan(share[2])
    mixed = uniform_share(a[:1], a[:1] + 0.1 + 0.1 * shape)
    assert mixed[0] == pytest.approx(0.01 / (0.01 + 0.01 * (shape ** 2).mean()))


def test_with_swapped_audio_gives_every_frame_another_samples_sound():
    from vssl_core.eval.audio_sensitivity import swap_partners, with_swapped_audio

    images, audio, field = _batch(n=5)
    ev = make_pairs(images, audio, flow_field=field)
    swapped = with_swapped_audio(ev, seed=4)
    partners = swap_partners(5, 4)
    assert np.all(partners != np.arange(5))
    np.testing.assert_array_equal(swapped.audio, audio[partners])
    np.testing.assert_array_equal(swapped.images, ev.images)
    np.testing.assert_array_equal(swapped.flow_field, ev.flow_field)


def test_audio_response_reads_the_raw_maps_and_matches_the_generic_sensitivity():
    from vssl_core.eval.audio_sensitivity import audio_sensitivity as generic

    torch.manual_seed(0)
    images, audio, field = _batch()
    model = HTF(hs.model_config(SETUP, flow=True, pretrained=False, frozen=False)).eval()
    ev = make_pairs(images, audio, flow_field=field)
    response = hs.audio_response(model, ev)
    assert response["audio sensitivity"] == pytest.approx(generic(lambda x: lvs_maps.maps(model, x), ev), abs=1e-6)
    assert response["raw change (RMS)"] > 0 and 0 <= response["uniform share"] <= 1
    table = hs.audio_change_table({"d": response})
    assert list(table["model"]) == ["d"] and table.loc[0, "n"] == 4
    # scored against a ground truth: the own-minus-swapped cIoU is the paired difference of the two maps' scores
    from vssl_core.eval import metrics
    from vssl_core.eval.audio_sensitivity import SOUND_GAIN, with_swapped_audio

    own_maps = lvs_maps.maps(model, ev).maps
    gt = (own_maps >= np.quantile(own_maps, 0.9, axis=(1, 2), keepdims=True)).astype(np.float32)  # own map's top
    ev = make_pairs(images, audio, flow_field=field, gt=gt)
    scored = hs.audio_response(model, ev, scoring=(0.3, "clean", 200))
    own_c = metrics.ciou(own_maps, gt, postprocess="clean")
    other_c = metrics.ciou(lvs_maps.maps(model, with_swapped_audio(ev)).maps, gt, postprocess="clean")
    assert scored[SOUND_GAIN] == pytest.approx(np.mean(own_c >= 0.3) - np.mean(other_c >= 0.3))
    assert scored[f"{SOUND_GAIN}_lo"] <= scored[SOUND_GAIN] <= scored[f"{SOUND_GAIN}_hi"]
    assert scored["audio sensitivity"] == response["audio sensitivity"] and SOUND_GAIN not in response
    fixed = model.encode_audio(torch.zeros(1, 1, 257, 66)).detach()
    model.encode_audio = lambda spec: fixed.expand(len(spec), -1)       # every clip sounds the same
    silent = hs.audio_response(model, ev, scoring=(0.3, "clean", 200))
    assert silent["raw change (RMS)"] == 0 and np.isnan(silent["uniform share"])
    assert silent[SOUND_GAIN] == 0 and silent[f"{SOUND_GAIN}_lo"] == silent[f"{SOUND_GAIN}_hi"] == 0


def test_flow_attention_stats_measure_what_the_attention_adds():
    from vssl_core.models.rcgrad import prepare_images

    torch.manual_seed(0)
    images, audio, field = _batch()
    ev = make_pairs(images, audio, flow_field=field)
    lvs = hs.model_config(SETUP, flow=False, pretrained=False, frozen=False)
    blind = hs.flow_attention_stats(HTF(lvs).eval(), ev)
    assert np.isnan(blind["attention / image"]) and np.isnan(blind["attention uniformity"])
    gated = HTF(hs.model_config(SETUP, flow=True, pretrained=False, frozen=False)).eval()
    assert gated.config.attn_gate and hs.flow_attention_stats(gated, ev)["attention / image"] == 0  # gate starts at 0
    model = HTF(dataclasses.replace(gated.config, attn_gate=False)).eval()
    mixed = hs.flow_attention_stats(model, ev, chunk=3)
    assert mixed["attention / image"] > 0 and 0 < mixed["attention uniformity"] < 1
    with torch.no_grad():  # V = a constant vector: every position receives the same one
        model.attention.value.weight.zero_()
        model.attention.value.bias.fill_(0.5)
        feats = model.encode_image(prepare_images(images, model.config.image_size))
    same = hs.flow_attention_stats(model, ev, chunk=3)
    dim = feats.shape[1]
    expected = (0.5 * np.sqrt(dim) / feats.norm(dim=1)).mean().item()
    assert same["attention uniformity"] == pytest.approx(1.0, abs=1e-5)
    assert same["attention / image"] == pytest.approx(expected, rel=1e-4)
    table = hs.audio_change_table({"a": {"n": 4}, "d": {"n": 4}}, {"d": same})
    assert np.isnan(table.loc[0, "attention uniformity"]) and table.loc[1, "attention uniformity"] == same["attention uniformity"]


def test_tables_carry_the_papers_numbers():
    r = metrics.score_cious(np.array([0.6, 0.2, 0.7]), at=0.5, n_boot=0)
    t4 = hs.table4({"a": r, "flow only (reference)": r}, sensitivity={"a": 0.1})
    assert t4.loc[0, "paper_cIoU@0.5"] == 0.129 and t4.loc[0, "audio sensitivity"] == 0.1
    assert np.isnan(t4.loc[1, "paper_cIoU@0.5"]) and t4.loc[0, "cIoU@0.5"] == pytest.approx(2 / 3)
    t5 = hs.table5({"MaxPool": r, "ResNet18": r})
    assert list(t5["paper_cIoU@0.5"]) == [0.379, 0.393]


def test_tables_add_the_papers_cutoff_beside_the_scored_one():
    """Scored at FlowGrad's 0.3, the tables still show cIoU@0.5 (the paper's metric), with a CI."""
    r = metrics.score_cious(np.array([0.6, 0.2, 0.7, 0.35]), at=0.3, n_boot=200)
    row = hs.table4({"d": r}).iloc[0]
    assert row["cIoU@0.3"] == pytest.approx(3 / 4) and row["cIoU@0.5"] == pytest.approx(2 / 4)
    assert row["cIoU@0.5_lo"] <= row["cIoU@0.5"] <= row["cIoU@0.5_hi"]
    only = metrics.score_cious(np.array([0.6, 0.2]), at=0.5, n_boot=0)
    assert "cIoU@0.5_lo" in hs.table5({"MaxPool": only}).columns and \
        list(hs.table5({"MaxPool": only}).columns).count("cIoU@0.5") == 1


def test_box_recall_by_hand():
    maps = np.zeros((3, 224, 224), np.float32)
    maps[:, :, :112] = 1.0                                   # the left half is predicted
    lm = LocalizationMaps(maps, "none", "test")
    left = np.array([[0.0, 0.0, 320.0, 720.0]])              # the left quarter of 1280x720
    across = np.array([[320.0, 0.0, 640.0, 720.0]])          # a box straddling the middle
    rec = ms.box_recall(lm, [left, across, np.zeros((0, 4))])
    assert rec[0] == pytest.approx(1.0) and rec[1] == pytest.approx(0.5) and np.isnan(rec[2])


def test_state_boxes_from_an_object_table():
    objects = pd.DataFrame({
        "filename": ["c1", "c1", "c1", "c2"], "time": [0.5, 0.5, 1.0, 0.5],
        "state": ["idling", "moving", "idling", "idling"], "x": [1.0, 2.0, 3.0, 4.0],
        "y": [0.0] * 4, "w": [10.0] * 4, "h": [5.0] * 4, "visible_fraction": [1.0, 1.0, 1.0, 0.05]})
    boxes = ms.state_boxes(objects, ["c1", "c1", "c2"], [0.5, 1.0, 0.5], "idling")
    assert [len(b) for b in boxes] == [1, 1, 0]                # c2's idling car is mostly hidden
    assert boxes[0][0, 0] == 1.0 and boxes[1][0, 0] == 3.0
    assert ms.context_key("FlowGrad-H", 5.0) == "FlowGrad-H @ 5 s"
    assert ms.shake_key("X", 8.0, True) == "X @ shake 8 (compensated)"


def test_score_swaps_only_the_lvs_postprocessing():
    gt = np.zeros((2, 224, 224), np.float32)
    gt[:, :20, :20] = 1                                           # a small box in the corner
    m = np.random.default_rng(0).uniform(0.0, 0.4, (2, 224, 224)).astype(np.float32)  # weak, varied
    m[:, :20, :20] = 1.0
    maps = {"lvs": LocalizationMaps(m, "median", "lvs"), "flow": LocalizationMaps(m, "none", "flow_only")}
    median = hs.score(maps, gt, at=0.3, n_boot=0)
    clean = hs.score(maps, gt, at=0.3, n_boot=0, lvs_postprocess="clean")
    assert median["lvs"].ciou == 0.0                # half the image is predicted: cIoU < 0.3
    assert clean["lvs"].ciou == 1.0                 # clean keeps only the box
    assert median["flow"].ciou == clean["flow"].ciou          # other methods keep their own rule
    assert clean["lvs"].postprocess == "clean" and clean["flow"].postprocess == "none"
    with pytest.raises(ValueError):
        hs.score(maps, gt, lvs_postprocess="top")
