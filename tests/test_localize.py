"""Grad-CAM localisation: closed form == autograd, map spaces and post-processing per method."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vssl_core.eval import metrics
from vssl_core.eval.maps import GRID, LocalizationMaps, clean, to_grid
from vssl_core.models.rcgrad_maps import (EmbeddingDot, GradCAM, autograd_rcgrad_maps, cam_closed_form, flow_maps,
                                          flowgrad_h, localize, localize_flowgrad_h, rcgrad_maps)
from vssl_core.models.rcgrad import ModelConfig, build_model, prepare_flow, prepare_images

SMALL = dict(width=0.25, image_size=64, audio_sr=8000)


def _batch(n=4, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((n, 1, 4000))).astype(np.float32)
    flow = (3 * rng.random((n, size, size))).astype(np.float32)
    return images, audio, flow


def _minmax(m):
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    return (m - lo) / np.where(hi > lo, hi - lo, 1)


def _reference_clean(maps):
    """The clean rule by hand (docs/conventions.md): min-max, value at index 25088 of the sorted map, strictly below -> 0."""
    out = []
    for m in maps:
        lo, hi = m.min(), m.max()
        p = (m - lo) / (hi - lo) if hi > lo else m.copy()
        med = np.sort(p.ravel())[25088]
        out.append(np.where(p < med, 0, p))
    return np.stack(out)


@pytest.mark.parametrize("kind,seed", [("rcgrad", 0), ("rcgrad", 1), ("flowgrad_ic", 2), ("flowgrad_en", 3)])
def test_closed_form_equals_autograd_gradcam(kind, seed):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind=kind, **SMALL)).eval()
    images, audio, flow = _batch(seed=seed)
    fast = rcgrad_maps(model, images, audio, flow, chunk_size=3)  # chunks of 3 and 1
    slow = autograd_rcgrad_maps(model, images, audio, flow)
    assert fast.shape == slow.shape == (4, 4, 4)
    assert fast.max() > 0
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-6 * fast.max())
    np.testing.assert_allclose(_minmax(fast), _minmax(slow), atol=1e-5)


@pytest.mark.parametrize("kind,seed", [("rcgrad", 4), ("flowgrad_ic", 5)])
def test_closed_form_equals_autograd_where_the_relu_acts(kind, seed, monkeypatch):
    """Signed audio embeddings (the trained ones are not all non-negative) make the weighted sum
    of the features negative at some positions: both paths must cut it to 0 there (a missing
    ReLU in either one fails this test)."""
    import vssl_core.models.rcgrad_maps as rm

    plain = rm.audio_embeddings

    def signed(model, audio, **kw):
        emb = plain(model, audio, **kw)
        return emb - emb.mean(dim=1, keepdim=True)       # both signs in every embedding

    monkeypatch.setattr(rm, "audio_embeddings", signed)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind=kind, **SMALL)).eval()
    images, audio, flow = _batch(seed=seed)
    fast = rcgrad_maps(model, images, audio, flow, chunk_size=3)
    slow = autograd_rcgrad_maps(model, images, audio, flow)
    # the linear combination itself, without the ReLU (plain einsum of features and weights)
    with torch.no_grad():
        x = model.image_input(prepare_images(images, 64),
                              prepare_flow(flow, 64) if kind == "flowgrad_ic" else None)
        linear = torch.einsum("ndij,nd->nij", model.image_encoder(x).features,
                              signed(model, audio)).numpy() / 16
    assert (linear < 0).any() and (linear > 0).any()       # the ReLU has work to do
    np.testing.assert_allclose(fast, np.maximum(linear, 0), rtol=1e-4, atol=1e-6 * linear.max())
    np.testing.assert_allclose(slow, np.maximum(linear, 0), rtol=1e-4, atol=1e-6 * linear.max())
    assert (fast[linear < 0] == 0).all() and (slow[linear < 0] == 0).all()


def test_cam_closed_form_hand_case():
    feats = torch.zeros(1, 2, 1, 2)
    feats[0, 0, 0] = torch.tensor([1.0, 2.0])
    feats[0, 1, 0] = torch.tensor([3.0, -5.0])
    w = torch.tensor([[1.0, 1.0]])
    # sums per pixel: [4, -3] -> ReLU -> [4, 0]; divided by h*w = 2
    torch.testing.assert_close(cam_closed_form(feats, w), torch.tensor([[[2.0, 0.0]]]))


def test_gradcam_hooks_are_removed():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL)).eval()
    layer = model.image_encoder.target_layer
    with GradCAM(lambda x: model.image_encoder(x).embedding, layer) as cam:
        assert len(layer._forward_hooks) == 1
        x = model.image_input(prepare_images(_batch(1)[0], 64))
        d = model.image_encoder.out_channels
        maps = cam(x, [EmbeddingDot(torch.ones(d))])
        assert maps.shape == (1, 4, 4)
    assert len(layer._forward_hooks) == 0


def test_maps_refuse_train_mode():
    model = build_model(ModelConfig(**SMALL))
    images, audio, _ = _batch()
    with pytest.raises(ValueError, match="eval"):
        rcgrad_maps(model, images, audio)


def test_maps_do_not_depend_on_batch_composition():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL)).eval()
    images, audio, _ = _batch()
    full = rcgrad_maps(model, images, audio, chunk_size=4)
    np.testing.assert_allclose(full[2:3], rcgrad_maps(model, images[2:3], audio[2:3]), rtol=1e-5, atol=1e-7)


def test_faithful_audio_bn_changes_maps_per_clip_only():
    torch.manual_seed(0)
    cfg = ModelConfig(faithful_audio_bn=True, **SMALL)
    model = build_model(cfg).eval()
    images, audio, _ = _batch()
    quirk = rcgrad_maps(model, images, audio)
    np.testing.assert_allclose(quirk[1:2], rcgrad_maps(model, images[1:2], audio[1:2]), rtol=1e-5, atol=1e-7)
    model.config = ModelConfig(**SMALL)
    assert not np.allclose(quirk, rcgrad_maps(model, images, audio))


def test_to_grid_shape_range_and_constant_maps():
    maps = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    maps[2] = 0.25
    grid = to_grid(maps)
    assert grid.shape == (3, GRID, GRID) and grid.dtype == np.float32
    assert grid[:2].min() == 0 and grid[:2].max() == pytest.approx(1)
    np.testing.assert_array_equal(grid[2], 0.25)  # constant map left as is
    # bilinear with half-pixel centres: a 2x2 map's centre-most pixels interpolate
    np.testing.assert_allclose(to_grid(np.array([[[0, 1], [0, 1]]], dtype=np.float32))[0, 0, [0, 55, 168, 223]],
                               [0, 0, 1, 1], atol=1e-6)


def test_clean_matches_reference_definition():
    maps = np.random.default_rng(3).random((2, GRID, GRID)).astype(np.float32)
    np.testing.assert_allclose(clean(maps), _reference_clean(maps), atol=1e-7)


def test_flowgrad_h_is_clean_times_raw_flow_and_not_renormalised():
    rng = np.random.default_rng(0)
    raw = rng.random((2, 8, 8)).astype(np.float32)
    cleaned = clean(to_grid(raw))
    flow = np.full((2, GRID, GRID), 2.0, dtype=np.float32)
    flow[1] = 0.1  # slow everywhere: the product never reaches 0.5
    out = flowgrad_h(cleaned, flow)
    assert isinstance(out, LocalizationMaps) and out.postprocess == "none" and out.method == "flowgrad_h"
    np.testing.assert_allclose(out.maps, cleaned * flow)
    assert out.maps[0].max() == pytest.approx(2.0)  # not renormalised
    assert not metrics.binarize(out.maps, out.postprocess)[1].any()
    with pytest.raises(ValueError, match="clean"):
        flowgrad_h(cleaned * 3, flow)  # raw-scale maps are rejected


def test_localize_returns_metric_space_per_kind():
    images, audio, flow = _batch()
    for kind in ("rcgrad", "flowgrad_ic", "flowgrad_en"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind=kind, **SMALL)).eval()
        out = localize(model, images, audio, flow)
        assert out.maps.shape == (4, GRID, GRID) and out.postprocess == "clean" and out.method == kind
        assert np.isfinite(out.maps).all() and out.maps.min() >= 0 and out.maps.max() <= 1
        if kind == "flowgrad_en":
            expected = to_grid(rcgrad_maps(model, images, audio)) * to_grid(flow_maps(model, flow, audio))
            np.testing.assert_allclose(out.maps, expected, atol=1e-6)
    torch.manual_seed(0)
    rc = build_model(ModelConfig(**SMALL)).eval()
    h = localize_flowgrad_h(rc, images, audio, flow)
    assert h.postprocess == "none"
    np.testing.assert_allclose(h.maps, clean(localize(rc, images, audio).maps)
                               * metrics.resize_to_grid(flow), atol=1e-6)


def test_en_branch_maps_score_each_branch_and_their_product_is_the_model_map():
    from types import SimpleNamespace

    from vssl_core.models.rcgrad_maps import en_branch_maps
    from vssl_core.studies.flowgrad import en_branch_table

    images, audio, flow = _batch()
    gt = np.zeros((4, 224, 224), np.float32)
    gt[:, 40:120, 60:160] = 1
    ev = SimpleNamespace(images=images, audio=audio, flow=flow, gt=gt, audio_sr=SMALL["audio_sr"])
    torch.manual_seed(0)
    en = build_model(ModelConfig(kind="flowgrad_en", **SMALL)).eval()
    branches = dict(en_branch_maps(en, ev))
    assert list(branches) == ["image branch", "flow branch", "product (FlowGrad-EN)"]
    np.testing.assert_allclose(branches["product (FlowGrad-EN)"].maps, localize(en, images, audio, flow).maps, atol=1e-6)
    np.testing.assert_allclose(branches["flow branch"].maps, to_grid(flow_maps(en, flow, audio)), atol=1e-6)
    table = en_branch_table(en, ev, n_boot=0)
    assert list(table["map"]) == list(branches) and (table["n"] == 4).all()
    single = metrics.evaluate(branches["flow branch"].maps, gt, postprocess="clean", at=0.3, n_boot=0)
    assert table.loc[1, "cIoU@0.3"] == pytest.approx(single.ciou)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="FlowGrad-EN"):
        list(en_branch_maps(build_model(ModelConfig(**SMALL)).eval(), ev))
