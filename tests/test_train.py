"""The one training loop: every family trains, validation each epoch, best epoch kept, resume,
determinism, frozen vision, the model store (cache, keys, NotTrained)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vssl_core.data.arrays import TrainingArrays
from vssl_core.errors import DataError
from vssl_core.eval import metrics
from vssl_core.models.checkpoints import load_checkpoint
from vssl_core.models.htf import HTF, HTFConfig
from vssl_core.models.lvs import LVS, LVSConfig
from vssl_core.models.oya import OyaConfig, OyaNet
from vssl_core.models.rcgrad import FlowGradEN, FlowGradIC, ModelConfig, RCGrad
from vssl_core.models.rcgrad_maps import localize
from vssl_core.training.loop import TrainConfig, param_groups, train
from vssl_core.training.objectives import Contrastive, Trimap, flip_horizontal, objective_for
from vssl_core.training.store import Models, ModelSpec, NotTrained, load_trained, obtain

SIZE = 32
RC = ModelConfig(kind="rcgrad", width=0.125, image_size=SIZE, audio_sr=8000)
SR, T = 11025, 274 + 238 * 16  # 16 LVS spectrogram frames
LVS_CFG = LVSConfig(width=0.125, image_size=SIZE, audio_sr=SR)
HTF_CFG = HTFConfig(flow_encoder="maxpool", freeze_vision=True, width=0.125, image_size=SIZE, audio_sr=SR)
OYA_CFG = OyaConfig(width=1 / 16, image_blocks=2, audio_blocks=2, embed_dim=8, image_size=SIZE, audio_sr=SR,
                    n_fft=62, hop=31)
CFG = TrainConfig(epochs=2, batch_size=8, seed=3, bn_batches=2, device="cpu", num_threads=1)


def _planted(n=48, seed=0, samples=4000):
    """Images with a bright square left or right; the audio is a tone whose pitch says which side;
    the flow moves where the square is."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, SIZE, SIZE, 3), dtype=np.uint8)
    sides = rng.integers(0, 2, n)
    t = np.arange(samples) / 8000
    audio = np.zeros((n, 1, samples), dtype=np.float32)
    flow = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    field = np.zeros((n, SIZE, SIZE, 2), dtype=np.float32)
    for i, s in enumerate(sides):
        x0 = 2 if s == 0 else SIZE - 14
        images[i, 10:22, x0:x0 + 12] = 250
        flow[i, 10:22, x0:x0 + 12] = 2.0
        field[i, 10:22, x0:x0 + 12, 0] = 2.0
        audio[i, 0] = 0.5 * np.sin(2 * np.pi * (400 if s == 0 else 2400) * t) + 0.01 * rng.standard_normal(samples)
    return TrainingArrays(images, audio, flow, field, np.asarray([f"c{i}" for i in range(n)]))


def _model(cls, cfg, seed=0):
    torch.manual_seed(seed)
    return cls(cfg)


# -- the loop --------------------------------------------------------------------------------------
def test_contrastive_loss_decreases_with_validation_each_epoch():
    model, history = train(_model(RCGrad, RC), replace(CFG, epochs=4), _planted(), _planted(16, seed=1),
                           progress=False)
    losses = [h["train_loss"] for h in history]
    assert len(history) == 4 and losses[-1] < losses[0]
    for h in history:
        assert np.isfinite(h["val_loss"]) and 0.0 <= h["val_retrieval"] <= 1.0
        assert h["retrieval_chance"] == pytest.approx(1 / 8) and h["monitored"] == h["val_loss"]
    assert not model.training and next(model.parameters()).device.type == "cpu"


def test_trained_maps_score_as_by_hand():
    """A trained model's maps go through ``metrics.evaluate`` exactly as written out by hand:
    clean (min-max, values below sorted[25088] -> 0), >= 0.5, IoU, cIoU@0.3 and the AUC."""
    arrays = _planted()
    model, _ = train(_model(RCGrad, RC), replace(CFG, epochs=1), arrays, progress=False)
    out = localize(model, arrays.images[:8], arrays.audio[:8])
    assert out.maps.shape == (8, 224, 224) and np.isfinite(out.maps).all()
    gts = np.stack([metrics.gt_map_urbansas(np.array([[80.0, 200.0, 200.0, 300.0]]))] * 8)
    res = metrics.evaluate(out.maps, gts, postprocess=out.postprocess, n_boot=0)
    ious = []
    for m, g in zip(out.maps.astype(np.float64), gts):
        p = (m - m.min()) / (m.max() - m.min())
        b = np.where(p < np.sort(p.ravel())[25088], 0, p) >= 0.5
        ious.append((b & (g > 0)).sum() / (b | (g > 0)).sum())
    xs = [0.05 * i for i in range(21)]
    ys = [np.mean(np.asarray(ious) >= x) for x in xs]
    np.testing.assert_allclose(res.cious, ious, rtol=1e-12)
    assert res.auc == pytest.approx(sum(0.05 * (ys[i] + ys[i + 1]) / 2 for i in range(20)), abs=1e-12)
    assert res.ciou == pytest.approx(np.mean(np.asarray(ious) >= 0.3), abs=1e-12)


@pytest.mark.parametrize("cls, cfg, flow", [(LVS, LVS_CFG, False), (HTF, HTF_CFG, True), (OyaNet, OYA_CFG, False)])
def test_every_localiser_family_trains(cls, cfg, flow):
    arrays = _planted(16, samples=T)
    model = _model(cls, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, history = train(model, replace(CFG, epochs=1), arrays, _planted(8, seed=1, samples=T), progress=False)
    assert np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])
    changed = [k for k, v in trained.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed
    if cls is OyaNet:  # the similarity loss is a mean of cosines of non-negative features
        assert 0.0 <= history[0]["train_loss"] <= 1.0


def test_htf_frozen_vision_keeps_weights_and_statistics():
    model = _model(HTF, HTF_CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, _ = train(model, replace(CFG, epochs=1), _planted(16, samples=T), progress=False)
    after = trained.state_dict()
    frozen = [k for k in before if k.startswith("image_encoder.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # BN statistics included
    assert not torch.equal(before["audio_encoder.conv1.weight"], after["audio_encoder.conv1.weight"])


@pytest.mark.parametrize("cls", [FlowGradIC, FlowGradEN])
def test_flow_models_fine_tune_from_rcgrad_and_need_flow(cls):
    rc = _model(RCGrad, RC)
    model = cls.from_rcgrad(rc)
    _, history = train(model, replace(CFG, epochs=1), _planted(16), progress=False)
    assert np.isfinite(history[0]["train_loss"])
    no_flow = replace(_planted(16), flow=None)
    with pytest.raises(ValueError, match="flow"):
        train(cls.from_rcgrad(rc), replace(CFG, epochs=1), no_flow, progress=False)


def test_the_best_epoch_by_validation_loss_is_returned(tmp_path):
    model, history = train(_model(RCGrad, RC), replace(CFG, epochs=3), _planted(), _planted(16, seed=1),
                           tmp_path, progress=False)
    best = min(history, key=lambda h: h["val_loss"])
    assert [h["best"] for h in history].count(True) >= 1
    stored = load_checkpoint(tmp_path / "best.pt")
    assert stored["epoch"] == best["epoch"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, stored["model"][k]), k


def test_early_stopping_on_validation():
    cfg = replace(CFG, epochs=6, lr=1e-12, early_stopping_patience=1, plateau_patience=0)
    _, history = train(_model(RCGrad, RC), cfg, _planted(16), _planted(16, seed=1), progress=False)
    assert len(history) < 6  # a ~frozen model stops improving and stops early


def test_resume_equals_uninterrupted_run(tmp_path):
    arrays, val = _planted(24), _planted(16, seed=1)
    full, hist_full = train(_model(RCGrad, RC), CFG, arrays, val, tmp_path / "a", progress=False)
    train(_model(RCGrad, RC), replace(CFG, epochs=1), arrays, val, tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed, hist_resumed = train(_model(RCGrad, RC, seed=99), CFG, arrays, val, tmp_path / "b", progress=False)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in hist_full]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in hist_resumed]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_same_seed_same_weights_and_plain_checkpoints(tmp_path):
    a, _ = train(_model(RCGrad, RC), replace(CFG, epochs=1), _planted(16), out_dir=tmp_path, progress=False)
    b, _ = train(_model(RCGrad, RC), replace(CFG, epochs=1), _planted(16), progress=False)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    ck = torch.load(tmp_path / "last.pt", weights_only=True)  # plain types and tensors only
    assert ck["epoch"] == 1 and ck["model_class"] == "RCGrad" and TrainConfig.from_dict(ck["train_config"]).seed == 3
    other, _ = train(_model(RCGrad, RC), replace(CFG, epochs=1, seed=4), _planted(16), progress=False)
    assert not torch.equal(other.audio_encoder.backbone.conv1.weight, a.audio_encoder.backbone.conv1.weight)


def test_resume_refuses_another_config_or_model(tmp_path):
    train(_model(RCGrad, RC), replace(CFG, epochs=1), _planted(16), out_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="different training config"):
        train(_model(RCGrad, RC), replace(CFG, epochs=2, lr=5e-4), _planted(16), out_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="model_class"):
        train(_model(LVS, LVS_CFG), replace(CFG, epochs=2), _planted(16, samples=T), out_dir=tmp_path,
              progress=False)


def test_lr_multipliers_train_a_named_encoder_faster_and_leave_the_rest_as_before():
    """FlowGrad-EN's flow encoder at 10x the rate: its parameter group has lr * 10, every other
    trainable parameter stays in the first group at lr; without multipliers one group as before."""
    en = FlowGradEN.from_rcgrad(_model(RCGrad, RC))
    config = replace(CFG, lr=1e-4, lr_multipliers=(("flow_encoder.", 10.0),))
    groups = param_groups(en, config)
    flow = {id(p) for n, p in en.named_parameters() if n.startswith("flow_encoder.")}
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert {id(p) for p in groups[1]["params"]} == flow
    assert not flow & {id(p) for p in groups[0]["params"]}
    plain = param_groups(en, replace(CFG, lr=1e-4))
    assert len(plain) == 1 and [id(p) for p in plain[0]["params"]] == [id(p) for p in en.parameters()]
    before = {n: p.detach().clone() for n, p in en.named_parameters()}
    one_step = replace(config, epochs=1, bn_batches=0)
    fast, _ = train(en, one_step, _planted(16), progress=False)
    slow, _ = train(FlowGradEN.from_rcgrad(_model(RCGrad, RC)), replace(one_step, lr_multipliers=()), _planted(16),
                    progress=False)

    def moved(model, prefix):
        return sum(float((p.detach() - before[n]).abs().sum()) for n, p in model.named_parameters()
                   if n.startswith(prefix))
    assert moved(fast, "flow_encoder.") > 3 * moved(slow, "flow_encoder.")
    assert TrainConfig(lr_multipliers=[["flow_encoder.", 10]]).lr_multipliers == (("flow_encoder.", 10.0),)
    assert "lr_multipliers" not in TrainConfig().weights_key() and "lr_multipliers" in config.weights_key()
    with pytest.raises(ValueError, match="lr_multipliers"):
        TrainConfig(lr_multipliers=(("flow_encoder.", 0.0),))


def test_config_validation():
    with pytest.raises(ValueError):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="at least 2"):
        train(_model(RCGrad, RC), CFG, _planted(1), progress=False)


# -- objectives ------------------------------------------------------------------------------------
def test_flip_mirrors_image_and_flow_and_negates_dx():
    images = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 3)
    field = torch.zeros(2, 2, 2, 3)
    field[:, 0, 0, 0] = 5.0  # dx = +5 (moving right) at the top-left pixel
    field[:, 1, 0, 0] = -2.0  # dy = -2 (moving up) there
    img, flo = flip_horizontal(images, field, torch.tensor([True, False]))
    assert torch.equal(img[0], images[0][..., [2, 1, 0]])
    assert flo[0, 0, 0, 2] == -5.0 and flo[0, 1, 0, 2] == -2.0 and flo[0].abs().sum() == 7.0
    assert torch.equal(img[1], images[1]) and torch.equal(flo[1], field[1]) and field[0, 0, 0, 0] == 5.0
    mag = torch.zeros(2, 1, 2, 3)
    mag[:, 0, 0, 0] = 3.0
    _, m = flip_horizontal(images, mag, torch.tensor([True, False]))
    assert m[0, 0, 0, 2] == 3.0 and m[1, 0, 0, 0] == 3.0  # a magnitude keeps its sign
    with pytest.raises(ValueError):
        flip_horizontal(images, torch.zeros(2, 3, 2, 3), torch.tensor([True, False]))


def test_objectives_dispatch_and_score_pairs():
    arrays = _planted(8, samples=T)
    rc = _model(RCGrad, RC).eval()
    obj = objective_for(rc)
    assert isinstance(obj, Contrastive) and obj.flow_key is None
    batch = obj.batch(rc, arrays, np.arange(8))
    assert batch.images.shape == (8, 3, SIZE, SIZE) and obj.pair_scores(rc, batch).shape == (8, 8)
    ic = FlowGradIC.from_rcgrad(rc)
    assert objective_for(ic).flow_key == "flow"
    htf = _model(HTF, HTF_CFG).eval()
    tri = objective_for(htf)
    assert isinstance(tri, Trimap) and tri.flow_key == "flow_field"
    b = tri.batch(htf, arrays, np.arange(4))
    assert b.audio.shape[:3] == (4, 1, 257) and b.flow.shape == (4, 2, SIZE, SIZE)
    assert tri.pair_scores(htf, b).shape == (4, 4)
    oya = _model(OyaNet, OYA_CFG).eval()
    assert objective_for(oya).pair_scores(oya, objective_for(oya).batch(oya, arrays, np.arange(4))).shape == (4, 4)
    with pytest.raises(TypeError):
        objective_for(torch.nn.Linear(2, 2))


# -- the store -------------------------------------------------------------------------------------
def _spec(name="tiny", recipe=None, calls=None, epochs=1):
    calls = calls if calls is not None else {"data": 0}

    def data():
        calls["data"] += 1
        return _planted(16), _planted(8, seed=1)
    return ModelSpec(name, recipe or {"model": RC.to_dict(), "data": "planted-v1"}, lambda: RCGrad(RC),
                     replace(CFG, epochs=epochs), data, minutes=0.1)


def test_obtain_trains_once_then_reads_the_cache(tmp_path):
    calls = {"data": 0}
    spec = _spec(calls=calls)
    said = []
    first, meta = obtain(spec, cache_root=tmp_path, progress=False, say=said.append)
    assert meta["source"] == "trained" and calls["data"] == 1 and said and "training it now" in said[0]
    assert len(meta["history"]) == 1 and meta["key"] == spec.key
    folders = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and folders[0].name == f"tiny-{spec.key}"
    second, meta2 = obtain(_spec(calls=calls), cache_root=tmp_path, progress=False, say=None)
    assert meta2["source"] == "cache" and calls["data"] == 1  # the data were not even loaded
    for k, v in first.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k
    model, stored = load_trained(folders[0] / "model.pt")
    assert isinstance(model, RCGrad) and stored["recipe"] == dict(spec.recipe)


def test_obtaining_a_model_leaves_the_global_rng_as_it_was(tmp_path):
    """A second stage's factory obtains the model it starts from and then initialises its new layers:
    those must come out the same whether the first stage is loaded now or was loaded before (else a
    retrain in a fresh process cannot reproduce the shipped weights)."""
    obtain(_spec(), cache_root=tmp_path, progress=False, say=None)  # trained and cached

    def second_stage(store):
        torch.manual_seed(0)
        store.get(_spec())  # loading builds a randomly initialised model first
        return RCGrad(RC).state_dict()

    store = Models(cache_root=tmp_path, progress=False, say=None)
    loaded_now = second_stage(store)
    loaded_before = second_stage(store)  # memoised: nothing is built
    for k, v in loaded_now.items():
        assert torch.equal(v, loaded_before[k]), k
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    obtain(_spec(epochs=2), cache_root=tmp_path / "other", progress=False, say=None)  # training seeds the RNG
    assert torch.equal(torch.rand(3), expected)


def test_the_key_follows_the_recipe_and_training_config_not_runtime_fields():
    base = _spec()
    assert _spec(recipe={"model": RC.to_dict(), "data": "planted-v2"}).key != base.key
    assert _spec(epochs=2).key != base.key
    runtime = ModelSpec("tiny", base.recipe, base.factory, replace(base.config, device="cuda", num_threads=7),
                        base.data)
    assert runtime.key == base.key


def test_obtain_without_training_refuses_with_the_fix(tmp_path):
    with pytest.raises(NotTrained, match="python -m vssl_core train"):
        obtain(_spec(), cache_root=tmp_path, allow_train=False, progress=False)


def test_models_resolves_each_spec_once(tmp_path):
    models = Models(cache_root=tmp_path, progress=False, say=None)
    calls = {"data": 0}
    spec = _spec(calls=calls)
    assert models.get(spec) is models.get(spec) and calls["data"] == 1
    assert models.meta["tiny"]["source"] == "trained"
