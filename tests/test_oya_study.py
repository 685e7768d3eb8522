"""The "Do We Need Sound?" study glue: setup, audio resampling, maps, side accuracy, tables,
cached training on tiny inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vssl_core.eval import metrics
from vssl_core.studies import do_we_need_sound as oy
from vssl_core.data.arrays import EvalArrays
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.errors import DataError
from vssl_core.eval.metrics import GRID
from vssl_core.eval.scoring import score
from vssl_core.models.audio import resample_audio
from vssl_core.models.baselines import random_maps
from vssl_core.data.arrays import TrainingArrays
from vssl_core.training.store import Models
from vssl_core.training.rcgrad_family import RCGradFamilySetup as FlowGradSetup

from conftest import make_pairs

TINY = dict(train_sizes=(6, 8), image_size=16, image_blocks=2, audio_blocks=2, width=1 / 16,
            embed_dim=8, audio_sr=8000, n_fft=62, hop=31, epochs=1, batch_size=4)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one torch thread


def _results(**cious):
    return {k: metrics.score_cious(np.asarray(v, float), at=0.3, n_boot=200, seed=0)
            for k, v in cious.items()}


# -- setup ---------------------------------------------------------------------------------------
def test_setup_from_checks_names_and_turns_lists_into_tuples():
    s = oy.OyaSetup.from_params(train_sizes=[10, 20], epochs=2)
    assert s.train_sizes == (10, 20) and s.default_size == 20 and s.epochs == 2
    assert s.model_config.negatives == s.negatives and s.train_config.epochs == 2
    assert s.model_config.map_size == s.image_size // 2 ** s.image_blocks
    with pytest.raises(ValueError, match="epoch"):
        oy.OyaSetup.from_params(epoch=2)
    with pytest.raises(ValueError):
        oy.OyaSetup.from_params(train_sizes=[20, 10])   # must be ascending
    with pytest.raises(ValueError):
        oy.OyaSetup.from_params(negatives="some")        # OyaConfig validates


def test_data_setup_shares_the_rcgrad_windows_and_split():
    s = oy.OyaSetup.from_params(train_sizes=[100, 400], eval_clips=7, seed=3)
    base = FlowGradSetup(image_size=96, audio_sr=22050)
    d = oy.data_setup(s, base)
    assert (d.train_windows, d.eval_clips, d.seed) == (base.train_windows, 7, 3)
    assert (d.image_size, d.audio_sr) == (96, 22050)
    assert oy.data_setup(oy.OyaSetup.from_params(train_sizes=[10**5]), base).train_windows == 10**5


def test_rcgrad_setup_reads_notebook_02_in_the_same_profile():
    s = oy.OyaSetup.from_params(eval_clips=5, num_threads=1)
    rc = oy.rcgrad_setup("smoke", s)
    import tomllib

    from vssl_core.repro.paths import repo_root
    table = tomllib.loads((repo_root() / "notebooks/profiles/smoke.toml").read_text())["02_flowgrad"]
    assert rc.image_size == table["image_size"] and rc.train_windows == table["train_windows"]
    assert rc.eval_clips == 5 and rc.num_threads == 1


# -- audio ---------------------------------------------------------------------------------------
def test_resample_audio_keeps_a_tone_and_the_duration():
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)[None, None]   # (1, 1, 16000)
    assert resample_audio(x, 16000, 16000) is x
    y = resample_audio(x, 16000, 8000)
    assert y.shape == (1, 1, 8000) and y.dtype == np.float32
    spec = np.abs(np.fft.rfft(y[0, 0]))
    assert np.argmax(spec) == 1000                 # 1 Hz per bin at 8000 samples / 8 kHz
    assert resample_audio(x, 16000, 22050).shape[-1] == 22050


# -- maps and side accuracy ----------------------------------------------------------------------
def test_random_maps_are_seeded_and_on_the_grid():
    a, b, c = random_maps(3, 4, seed=1), random_maps(3, 4, seed=1), random_maps(3, 4, 2)
    assert a.maps.shape == (3, GRID, GRID) and a.postprocess == "clean"
    assert np.array_equal(a.maps, b.maps) and not np.array_equal(a.maps, c.maps)


def _half_maps(sides: list[str]) -> LocalizationMaps:
    m = np.zeros((len(sides), GRID, GRID), np.float32)
    for i, s in enumerate(sides):
        if s == "left":
            m[i, :, :GRID // 2] = 1.0
        elif s == "right":
            m[i, :, GRID // 2:] = 1.0
    return LocalizationMaps(m, "none", "test")


def test_side_accuracy_by_hand():
    maps = _half_maps(["left", "right", "left", "none"])
    acc = oy.side_accuracy(maps, np.array(["left", "left", "right", "right"]))
    assert acc.tolist() == [1.0, 0.0, 0.0, 0.5]       # right, wrong, wrong, tie (empty map)
    with pytest.raises(DataError, match="field 'side'"):
        oy.side_accuracy(maps, np.array(["left", "up", "left", "left"]))


def test_a_sound_blind_map_scores_one_half_on_a_concat_set():
    """The same map for both rows of every pair (what the potential map gives) is right once."""
    rng = np.random.default_rng(0)
    n = 5
    ev = _eval_arrays(n, rng)
    cs = oy.concat_set(ev, oy.OyaSetup.from_params(seed=0))
    per_pair = rng.random((len(cs) // 2, 4, 4)).astype(np.float32)
    blind = np.repeat(per_pair, 2, axis=0)                  # identical for both rows of a pair
    acc = oy.side_accuracy(LocalizationMaps(metrics.resize_to_grid(blind), "clean", "x"), cs.side)
    assert acc.mean() == pytest.approx(0.5)
    pair = acc.reshape(-1, 2).sum(axis=1)
    assert np.allclose(pair, 1.0)


def _eval_arrays(n: int, rng: np.random.Generator) -> EvalArrays:
    boxes = [np.array([[100.0 + 50 * i, 200.0, 300.0, 150.0]]) for i in range(n)]
    gt = np.stack([metrics.gt_map_urbansas(b) for b in boxes]).astype(np.float32)
    return EvalArrays(np.array([f"c{i}" for i in range(n)]), np.arange(n, dtype=float),
                      rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
                      rng.random((n, GRID, GRID)).astype(np.float32),
                      rng.uniform(-1, 1, (n, 1, 1600)).astype(np.float32), gt, boxes)


def test_concat_set_puts_each_source_in_its_half():
    ev = _eval_arrays(4, np.random.default_rng(1))
    cs = oy.concat_set(ev, oy.OyaSetup.from_params(seed=0))
    assert len(cs) == 8 and cs.images.shape == (8, 16, 16, 3) and cs.flows.shape == (8, GRID, GRID)
    for k in range(len(cs)):
        half = slice(0, GRID // 2) if cs.side[k] == "left" else slice(GRID // 2, GRID)
        other = slice(GRID // 2, GRID) if cs.side[k] == "left" else slice(0, GRID // 2)
        assert cs.gts[k][:, half].sum() > 0 and cs.gts[k][:, other].sum() == 0
        assert np.array_equal(cs.audio[k], ev.audio[cs.source[k]])


# -- tables --------------------------------------------------------------------------------------
def test_size_and_gap_tables_pair_the_two_maps():
    rng = np.random.default_rng(0)
    pot = rng.uniform(0, 0.3, 300)
    res = {1000: _results(**{oy.LOC: pot + 0.3, oy.POT: pot}), 20: _results(**{oy.LOC: pot, oy.POT: pot})}
    rnd = _results(r=np.zeros(300))["r"]
    t = oy.size_table(res, rnd)
    assert len(t) == 5 and t.iloc[-1]["map"] == oy.RANDOM
    assert t.iloc[-1]["paper_cIoU@0.5"] == oy.OYA_RANDOM["table1"][0]
    row = t[(t.train_size == 1000) & (t["map"] == oy.LOC)].iloc[0]
    assert row["paper_cIoU@0.5"] == oy.OYA_TABLE1_DE_NOVO[1000][0]
    pre = oy.size_table(res, rnd, paper=oy.OYA_TABLE5, paper_random=oy.OYA_RANDOM["table5"])
    assert pre.iloc[1]["paper_AUC"] == oy.OYA_TABLE5[1000][3]                # potential map AUC
    assert pre.iloc[-1]["paper_AUC"] == oy.OYA_RANDOM["table5"][1]
    assert row["cIoU@0.3"] == 1.0 and row["cIoU@0.3_lo"] <= row["cIoU@0.3"] <= row["cIoU@0.3_hi"]
    assert np.isnan(t[t.train_size == 20].iloc[0]["paper_AUC"])        # the paper has no 20
    g = oy.gap_table(res, n_boot=200).set_index("train_size")
    assert g.loc[1000, "cIoU@0.3_gap"] > 0.5 and g.loc[1000, "cIoU@0.3_lo"] > 0
    assert g.loc[20, "cIoU@0.3_gap"] == 0 and g.loc[20, "cIoU@0.3_lo"] <= 0 <= g.loc[20, "cIoU@0.3_hi"]
    t5 = oy.gap_table(res, n_boot=0, paper=oy.OYA_TABLE5).set_index("train_size")
    p = oy.OYA_TABLE5[1000]
    assert t5.loc[1000, "paper_cIoU_gap"] == pytest.approx(p[0] - p[2])


def test_type_table_separates_the_types():
    # the sound helps on B only: loc = pot on A, loc = pot + 0.5 on B
    types = np.array(["A"] * 50 + ["B"] * 50)
    pot = np.full(100, 0.1)
    loc = pot + np.where(types == "B", 0.5, 0.0)
    res = _results(**{oy.LOC: loc, oy.POT: pot, oy.RANDOM: np.zeros(100)})
    t = oy.type_table(res, types, n_boot=100).set_index("type")
    assert list(t.index) == ["A", "B"]
    assert t.loc["A", "gap_cIoU@0.3"] == 0 and t.loc["B", "gap_cIoU@0.3"] == 1.0
    assert t.loc["B", "loc_cIoU@0.3"] == 1.0 and t.loc["B", "random_cIoU@0.3"] == 0
    assert t.loc["B", "paper_gap_IoU"] == pytest.approx(oy.OYA_TABLE4["B"][0] - oy.OYA_TABLE4["B"][2])
    g = oy.type_gap_table(res, types, [(oy.LOC, oy.POT), ("absent", oy.POT)], n_boot=50)
    assert set(g["comparison"]) == {f"{oy.LOC} - {oy.POT}"} and len(g) == 2
    b = oy.type_gap(g, oy.LOC, oy.POT, "B")
    assert b["type"] == "B" and b["cIoU@0.3_gap"] == 1.0
    assert oy.type_gap(g, oy.LOC, oy.POT, "A")["cIoU@0.3_gap"] == 0
    with pytest.raises(KeyError, match="'absent'"):
        oy.type_gap(g, "absent", oy.POT)


def test_protocol_table_joins_methods_present_in_both():
    o = _results(a=[0.5, 0.5], b=[0.0, 0.0])
    c = _results(a=[0.0, 0.5, 0.5, 0.5])
    t = oy.protocol_table(o, c, {"a": np.array([1.0, 0.0, 1.0, 1.0])})
    assert t["method"].tolist() == ["a"]
    assert t.iloc[0]["orig_cIoU@0.3"] == 1.0 and t.iloc[0]["concat_cIoU@0.3"] == 0.75
    assert t.iloc[0]["side_accuracy"] == 0.75
    # the interval resamples the two pairs (rows 0-1: 0.5, rows 2-3: 1.0), never single rows
    assert 0.5 <= t.iloc[0]["side_accuracy_lo"] <= 0.75 <= t.iloc[0]["side_accuracy_hi"] <= 1.0
    assert "side_accuracy" not in oy.protocol_table(o, c).columns


# -- training and maps on tiny inputs -------------------------------------------------------------
def test_sizes_train_on_nested_prefixes_and_the_potential_ignores_the_sound(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = TrainingArrays(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
                            rng.uniform(-1, 1, (8, 1, 1600)).astype(np.float32))
    seen = []
    monkeypatch.setattr(oy, "_windows", lambda setup, data, progress=True: (arrays, arrays))
    monkeypatch.setattr(oy, "validation_metrics", lambda data: None)
    setup = oy.OyaSetup.from_params(**TINY, prior_epochs=0)
    data = oy.data_setup(setup, FlowGradSetup(train_windows=8))
    models = Models(cache_root=tmp_path, progress=False, say=None)
    specs = oy.model_specs(setup, data, models, progress=False)
    assert set(specs) == {6, 8} and specs[6].key != specs[8].key   # no prior: "de novo"
    for n in (6, 8):
        train, _ = specs[n].data()
        seen.append(len(train))
        assert np.array_equal(train.images, arrays.images[:n])
    assert seen == [6, 8]
    trained = oy.trained_sizes(setup, data, models, progress=False)
    assert set(trained) == {6, 8} and not trained[6].training
    assert len(list(tmp_path.glob("oya-*"))) == 2
    with pytest.raises(ValueError):
        oy._prefix(arrays, 9)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    audio = rng.uniform(-1, 1, (3, 1, 3200)).astype(np.float32)       # 16 kHz, resampled
    a = oy.oya_method_maps(trained[6], make_pairs(images, audio), " x")
    b = oy.oya_method_maps(trained[6], make_pairs(images, audio[::-1].copy()), " x")
    assert set(a) == {oy.LOC + " x", oy.POT + " x"}
    assert a[oy.POT + " x"].maps.shape == (3, GRID, GRID)
    assert np.array_equal(a[oy.POT + " x"].maps, b[oy.POT + " x"].maps)


def test_the_prior_initialised_trunk_trains_at_a_tenth_of_the_rate_as_in_the_paper(tmp_path):
    from vssl_core.models.oya import OyaNet

    data = oy.data_setup(oy.OyaSetup.from_params(**TINY), FlowGradSetup(train_windows=8))
    models = Models(cache_root=tmp_path, progress=False, say=None)
    pretrained = oy.model_specs(oy.OyaSetup.from_params(**TINY, prior_epochs=1), data, models, progress=False)
    assert all(pretrained[n].config.lr_multipliers == ((oy.PRETRAINED_TRUNK, 0.1),) for n in (6, 8))
    # the prefix names exactly the parameters the object prior initialises
    model = OyaNet(oy.OyaSetup.from_params(**TINY).model_config)
    trunk = {n for n, _ in model.named_parameters() if n.startswith(oy.PRETRAINED_TRUNK)}
    assert trunk == {"image_net.features." + n for n, _ in model.image_net.features.named_parameters()} and trunk
    de_novo = oy.model_specs(oy.OyaSetup.from_params(**TINY, prior_epochs=0), data, models, progress=False)
    one_rate = oy.model_specs(oy.OyaSetup.from_params(**TINY, prior_epochs=1, image_lr_scale=1.0), data, models,
                              progress=False)
    assert de_novo[8].config.lr_multipliers == () and one_rate[8].config.lr_multipliers == ()
    assert one_rate[8].key != pretrained[8].key
    with pytest.raises(DataError, match="image_lr_scale"):
        oy.OyaSetup.from_params(**TINY, image_lr_scale=0)


def test_pick_examples_takes_one_sample_per_clip():
    gain = np.array([0.9, 0.8, 0.1, np.nan, -0.5, -0.4])
    clips = ["a", "a", "b", "c", "d", "d"]
    rows = oy.pick_examples(gain, clips, n_best=2, n_worst=1)
    assert rows == [(0, "sound helps"), (2, "sound helps"), (4, "sound hurts")]
    with pytest.raises(DataError, match="field 'clips'"):
        oy.pick_examples(gain, clips[:3])


def test_score_stream_equals_scoring_all_maps_at_once():
    """Streaming scores (drop each map after use) give the same results as scoring a dict."""
    rng = np.random.default_rng(0)
    gt = np.zeros((6, 224, 224), np.float32)
    gt[:, 50:120, 30:100] = 1
    maps = {f"m{k}": LocalizationMaps(rng.random((6, 224, 224), dtype=np.float32), "clean", "x") for k in range(3)}
    side = np.array(["left", "right"] * 3)
    res, sides, kept = oy.score_stream(iter(maps.items()), gt, at=0.3, n_boot=20, side=side, keep=["m1"])
    ref = score(maps, gt, at=0.3, n_boot=20)
    assert list(res) == list(maps) and list(kept) == ["m1"] and kept["m1"] is maps["m1"]
    for k in maps:
        np.testing.assert_array_equal(res[k].cious, ref[k].cious)
        assert res[k].ciou_lo == ref[k].ciou_lo
        np.testing.assert_array_equal(sides[k], oy.side_accuracy(maps[k], side))


def test_score_methods_in_chunks_equals_scoring_everything_at_once():
    """Chunked scoring (real tiny models, 11 samples in chunks of 4) gives the results of
    scoring every method's maps on all samples at once; kept maps are the asked rows."""
    from vssl_core.models.oya import OyaNet
    from vssl_core.models.rcgrad import ModelConfig, RCGrad

    torch.manual_seed(0)
    setup = oy.OyaSetup.from_params(**{**TINY, "image_size": 32})
    oya = OyaNet(setup.model_config).eval()
    rcgrad = RCGrad(ModelConfig(width=0.125, image_size=32, audio_sr=8000)).eval()
    rng = np.random.default_rng(1)
    n = 11
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    audio = rng.uniform(-1, 1, (n, 1, 1600)).astype(np.float32)
    flow = rng.random((n, GRID, GRID), dtype=np.float32) * 3
    gt = np.zeros((n, GRID, GRID), np.uint8)
    gt[:, 40:150, 20:120] = 1
    side = np.array(["left", "right"] * 5 + ["left"])
    map_size = setup.model_config.map_size
    ev = make_pairs(images, audio, flow=flow, gt=gt, audio_sr=8000)
    ref, ref_side, _ = oy.score_stream(
        oy.method_stream({" a": oya}, rcgrad, ev, map_size, seed=0),
        gt, at=0.3, n_boot=50, seed=0, side=side)
    res, sides, kept = oy.score_methods({" a": oya}, rcgrad, ev, map_size,
                                        at=0.3, n_boot=50, seed=0, side=side, chunk=4,
                                        keep=["RCGrad", oy.RANDOM], keep_rows=[9, 2])
    assert list(res) == list(ref)
    for k in ref:
        np.testing.assert_allclose(res[k].cious, ref[k].cious, atol=1e-6, err_msg=k)
        assert (res[k].ciou, res[k].postprocess) == (ref[k].ciou, ref[k].postprocess)
        np.testing.assert_array_equal(sides[k], ref_side[k])
    floor = random_maps(n, map_size, seed=0).maps
    np.testing.assert_array_equal(kept[oy.RANDOM].maps, floor[[9, 2]])
    assert kept["RCGrad"].maps.shape == (2, GRID, GRID) and kept["RCGrad"].postprocess == "clean"
    with pytest.raises(ValueError):
        oy.score_methods({}, None, ev, map_size, chunk=0)


def test_swapped_sound_control_scores_the_map_of_another_pairs_sound():
    """The control row is the localisation map of each pair made with its swap partner's sound,
    scored against the pair's own ground truth; a model whose sound features are all alike
    scores the same with either sound."""
    from vssl_core.eval.audio_sensitivity import swap_partners
    from vssl_core.models import oya_maps
    from vssl_core.models.oya import OyaNet

    torch.manual_seed(0)
    setup = oy.OyaSetup.from_params(**{**TINY, "image_size": 32})
    oya = OyaNet(setup.model_config).eval()
    rng = np.random.default_rng(2)
    n = 9
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    audio = rng.uniform(-1, 1, (n, 1, 1600)).astype(np.float32) * rng.uniform(0.01, 1, (n, 1, 1)).astype(np.float32)
    gt = np.zeros((n, GRID, GRID), np.uint8)
    gt[:, 40:150, 20:120] = 1
    ev = make_pairs(images, audio, gt=gt, audio_sr=8000)
    got = oy.swapped_sound_results(oya, ev, at=0.3, n_boot=50, seed=3, chunk=4)
    assert list(got) == [oy.LOC + oy.SWAPPED]
    loc, _ = oya_maps.both_maps(oya, ev.with_audio(audio[swap_partners(n, 3)]))
    expected = score({"x": loc}, gt, at=0.3, n_boot=50, seed=3)["x"]
    np.testing.assert_allclose(got[oy.LOC + oy.SWAPPED].cious, expected.cious, atol=1e-6)
    own = oy.score_methods({"": oya}, None, ev, setup.model_config.map_size, at=0.3, n_boot=50, seed=3)[0][oy.LOC]
    assert not np.allclose(own.cious, expected.cious)  # the sound moves this model's map
    fixed = oya.encode_audio(torch.as_tensor(audio[:1])).detach()
    oya.encode_audio = lambda wave: fixed.expand(len(wave), -1)  # every clip sounds the same
    deaf = oy.swapped_sound_results(oya, ev, at=0.3, n_boot=50, seed=3)[oy.LOC + oy.SWAPPED]
    deaf_own = oy.score_methods({"": oya}, None, ev, setup.model_config.map_size, at=0.3, n_boot=50, seed=3)[0][oy.LOC]
    np.testing.assert_allclose(deaf.cious, deaf_own.cious, atol=1e-6)
