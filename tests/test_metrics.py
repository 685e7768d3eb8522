"""Tests of vssl_core.eval.metrics and vssl_core.eval.bootstrap.

Hand-computed cases first, then a stored reference made by an independent naive implementation.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from vssl_core.eval import metrics as M
from vssl_core.eval.bootstrap import bootstrap_ci, bootstrap_distribution, paired_bootstrap
from vssl_core.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
G = M.GRID


def box_map(y1: int, y2: int, x1: int, x2: int, value: float = 1.0) -> np.ndarray:
    m = np.zeros((G, G), dtype=np.float32)
    m[y1:y2, x1:x2] = value
    return m


# ------------------------------------------------------------------ per-sample cIoU by hand
def test_ciou_of_two_known_boxes_is_plain_iou():
    pred = box_map(0, 10, 0, 10)        # 100 px
    gt = box_map(5, 15, 0, 10)          # 100 px, overlap rows 5..9 -> 50 px
    # IoU = 50 / (100 + 100 - 50) = 1/3; "none" keeps the binary map, B = pred >= 0.5
    assert M.ciou(pred, gt, postprocess="none")[0] == pytest.approx(1 / 3, abs=1e-15)
    # identical boxes -> 1, disjoint boxes -> 0
    assert M.ciou(pred, pred, postprocess="none")[0] == 1.0
    assert M.ciou(pred, box_map(100, 110, 100, 110), postprocess="none")[0] == 0.0


def test_ciou_consensus_weighting():
    gt = np.zeros((G, G), dtype=np.float32)
    gt[0, 0:4] = 1.0     # 4 certain pixels
    gt[1, 0:4] = 0.5     # 4 half-agreed pixels
    pred = np.zeros((G, G), dtype=np.float32)
    pred[0, 0:2] = 1     # 2 of the certain pixels
    pred[1, 0:4] = 1     # all 4 half pixels
    pred[5, 0:3] = 1     # 3 false positives where G == 0
    # inter = 2*1 + 4*0.5 = 4; |G| = 4 + 4*0.5 = 6; fp = 3 -> 4 / 9
    assert M.ciou(pred, gt, postprocess="none")[0] == pytest.approx(4 / 9, abs=1e-15)
    # a false positive on a G == 0.5 pixel is not a false positive: missing half pixels only
    # lower the intersection (2 + 0 = 2 over 6)
    pred2 = np.zeros((G, G), dtype=np.float32)
    pred2[0, 0:2] = 1
    assert M.ciou(pred2, gt, postprocess="none")[0] == pytest.approx(2 / 6, abs=1e-15)


def test_threshold_binarises_with_ge():
    pred = np.zeros((G, G), dtype=np.float32)
    pred[0, 0] = 0.5      # exactly at the threshold: kept
    pred[0, 1] = 0.4999   # below: dropped
    gt = box_map(0, 1, 0, 2)
    assert M.ciou(pred, gt, postprocess="none", threshold=0.5)[0] == 0.5
    assert M.ciou(pred, gt, postprocess="none", threshold=0.4)[0] == 1.0


def _three_level_map() -> np.ndarray:
    flat = np.empty(G * G, dtype=np.float32)
    flat[:10000] = 0.0
    flat[10000:40000] = 0.6
    flat[40000:] = 1.0          # 10,176 pixels
    return flat.reshape(G, G)


def test_clean_and_median_postprocess_by_hand():
    m = _three_level_map()
    # sorted[25088] = 0.6 (indices 10000..39999 hold 0.6)
    b_clean = M.binarize(m, "clean")[0]
    b_median = M.binarize(m, "median")[0]
    b_none = M.binarize(m, "none")[0]
    assert b_clean.sum() == 40176          # P >= max(0.5, 0.6): the 0.6 and 1.0 pixels
    assert b_median.sum() == 10176         # P > 0.6 only
    assert b_none.sum() == 40176
    p = M.postprocess(m, "clean")[0]
    assert set(np.unique(p).tolist()) == {0.0, np.float32(0.6), 1.0}
    assert np.array_equal(M.postprocess(m, "median")[0], b_median.astype(np.float32))


def test_grid_constants_are_the_released_codes():
    """224 x 224 grid; the 'median' is the value at index 224 * 224 / 2 = 25088 of the sort;
    AUC abscissae 0.05 * i for i = 0..20 as Python floats (so 0.15 is 0.15000000000000002)."""
    assert (M.GRID, M.MEDIAN_INDEX) == (224, 25088)
    assert len(M.AUC_THRESHOLDS) == 21 and M.AUC_THRESHOLDS[3] == 0.15000000000000002
    assert M.AUC_THRESHOLDS[10] == 0.5 and M.AUC_THRESHOLDS[20] == 1.0


def test_clean_mask_equals_p_ge_max_half_median():
    rng = np.random.default_rng(1)
    maps = np.stack([rng.random((G, G)) ** e for e in (0.2, 1.0, 5.0)]
                    + [np.floor(rng.random((G, G)) * 3), rng.standard_normal((G, G)) * 9])
    for m in maps:
        p = (m - m.min()) / (m.max() - m.min())
        med = np.sort(p.ravel())[25088]            # 224 * 224 / 2, by hand
        expected = p >= max(0.5, med)
        assert np.array_equal(M.binarize(m, "clean")[0], expected)
        assert np.array_equal(M.postprocess(m, "clean")[0] >= 0.5, expected)


def test_fast_binarize_path_equals_postprocess_path():
    rng = np.random.default_rng(2)
    maps = rng.random((12, G, G)).astype(np.float32) ** rng.uniform(0.1, 6, (12, 1, 1))
    maps = maps.astype(np.float32)
    maps[3] = np.round(maps[3] * 2)     # ties at the median
    maps[4] = 1.5                       # constant
    for thr in (0.05, 0.3, 0.5, 0.8):
        assert np.array_equal(M.binarize(maps, "clean", thr),
                              M.postprocess(maps, "clean") >= thr)


def test_median_mask_is_half_minus_one_for_distinct_values():
    m = np.random.default_rng(3).permutation(G * G).reshape(G, G).astype(np.float64)
    # strictly above sorted[25088] -> 50176 - 25089 pixels
    assert M.binarize(m, "median")[0].sum() == 25087     # 50176 - 25088 - 1


def test_minmax_makes_scale_and_offset_irrelevant():
    m = np.random.default_rng(4).random((G, G))
    gt = box_map(50, 150, 30, 200)
    for method in ("clean", "median"):
        assert M.ciou(m, gt, method)[0] == pytest.approx(M.ciou(m * 37.0 - 5.0, gt, method)[0],
                                                         abs=1e-12)


def test_constant_maps_are_left_as_they_are():
    full = np.ones((G, G), dtype=np.float32)
    for method in ("clean", "none"):   # min-max does not touch a constant map
        assert np.array_equal(M.postprocess(np.full((G, G), 0.7), method)[0],
                              np.full((1, G, G), 0.7)[0])
    assert not M.postprocess(np.full((G, G), 0.7), "median").any()
    # clean: nothing is strictly below the median -> 0.7 everywhere -> B full
    assert M.ciou(np.full((G, G), 0.7), full, "clean")[0] == 1.0
    # 0.2 < 0.5 -> B empty -> cIoU 0 against a non-empty G
    assert M.ciou(np.full((G, G), 0.2), full, "clean")[0] == 0.0
    # median: nothing strictly above the median -> B empty
    assert M.ciou(np.full((G, G), 0.7), full, "median")[0] == 0.0


# ----------------------------------------------------------------------------- empty policy
def _empty_batch() -> tuple[np.ndarray, np.ndarray]:
    maps = np.zeros((4, G, G), dtype=np.float32)
    gts = np.zeros((4, G, G), dtype=np.float32)
    maps[0] = box_map(0, 10, 0, 10)
    gts[0] = box_map(0, 10, 0, 10)                  # perfect: 1
    maps[1] = box_map(0, 10, 0, 10)                 # B non-empty, G empty: 0
    gts[2] = box_map(0, 10, 0, 10)                  # B empty, G non-empty: 0
    return maps, gts                                 # sample 3: both empty: 0/0


def test_empty_compat_gives_nan_counted_as_miss():
    maps, gts = _empty_batch()
    c = M.ciou(maps, gts, "none")
    assert c[:3].tolist() == [1.0, 0.0, 0.0] and np.isnan(c[3])
    assert M.ciou_at(c, 0.5) == 0.25
    res = M.evaluate(maps, gts, "none", at=0.5, n_boot=50)
    assert (res.n, res.n_empty, res.ciou) == (4, 1, 0.25)


def test_empty_error_names_indices():
    maps, gts = _empty_batch()
    with pytest.raises(DataError, match=r"indices \[3\]"):
        M.ciou(maps, gts, "none", empty="error")


def test_empty_exclude_drops_from_denominators():
    maps, gts = _empty_batch()
    res = M.evaluate(maps, gts, "none", at=0.5, n_boot=50, empty="exclude")
    assert (res.n, res.n_empty) == (3, 1)
    assert res.ciou == pytest.approx(1 / 3)
    assert np.isnan(res.cious[3]) and res.cious.shape == (4,)
    assert M.ciou_at(np.array([1.0, 0.2, np.nan]), 0.5, empty="exclude") == 0.5


# --------------------------------------------------------------------- cIoU@a and AUC
def test_ciou_at_counts_ge_and_nan_as_miss():
    c = np.array([1.0, 0.5, 0.2, np.nan])
    assert M.ciou_at(c, 0.5) == 0.5
    assert M.ciou_at(c, 0.0) == 0.75
    assert M.ciou_at(c, 0.51) == 0.25


def test_auc_by_hand():
    x = 0.05
    assert M.auc(np.ones(7)) == pytest.approx(1.0, abs=1e-12)
    # ciou = 0 still passes x_0 = 0: one trapezoid (1 + 0) / 2 * 0.05
    assert M.auc(np.zeros(7)) == pytest.approx(0.5 * x, abs=1e-12)
    assert M.auc(np.full(3, np.nan)) == 0.0
    # all 0.5: y = 1 for i <= 10 (0.05 * 10 == 0.5 exactly), 0 after -> 10 full steps + half
    assert M.auc(np.full(5, 0.5)) == pytest.approx(10 * x + 0.5 * x, abs=1e-12)
    # half the samples at 1, half at 0: y_0 = 1, y_i = 0.5 for i >= 1
    assert M.auc(np.array([0.0, 1.0])) == pytest.approx(0.5 * x * 1.5 + 19 * x * 0.5, abs=1e-12)


def test_auc_thresholds_are_python_floats_a_hair_above():
    assert M.AUC_THRESHOLDS[3] > 0.15 and M.AUC_THRESHOLDS[6] > 0.3
    assert M.AUC_THRESHOLDS[10] == 0.5 and M.AUC_THRESHOLDS[20] == 1.0
    # a cIoU of exactly 0.15 fails x_3 = 0.15000000000000002: y = 1 for i = 0..2 only
    assert M.auc(np.array([0.15])) == pytest.approx(2 * 0.05 + 0.025, abs=1e-12)
    # ... but cIoU@0.3 uses the literal cut-off 0.3
    assert M.ciou_at(np.array([0.3]), 0.3) == 1.0
    assert M.success_fractions(np.array([0.3]), M.AUC_THRESHOLDS)[6] == 0.0


def test_success_fractions_batched_and_unsorted_thresholds():
    rng = np.random.default_rng(5)
    c = rng.random((6, 40))
    c[c < 0.1] = np.nan
    thr = [0.7, 0.05, 0.3, 0.3]
    got = M.success_fractions(c, thr)
    want = np.array([[np.mean(np.nan_to_num(row, nan=-1) >= t) for t in thr] for row in c])
    assert np.array_equal(got, want)
    assert np.allclose(M.auc(c), [M.auc(row) for row in c], atol=0, rtol=0)


# ---------------------------------------------------------------------- ground truth
def test_gt_urbansas_integer_truncation():
    # x1 = int(100/1280*224) = int(17.5) = 17; bw = int(200/1280*224) = 35
    # y1 = int(50/720*224) = int(15.56) = 15;  bh = int(100/720*224) = int(31.1) = 31
    gt = M.gt_map_urbansas(np.array([[100, 50, 200, 100]]))
    assert gt.dtype == np.float32 and gt.shape == (G, G)
    assert np.array_equal(gt, box_map(15, 46, 17, 52))
    # union of overlapping boxes stays binary
    two = M.gt_map_urbansas(np.array([[100, 50, 200, 100], [100, 50, 200, 100]]))
    assert np.array_equal(two, gt)
    # empty box list
    assert M.gt_map_urbansas(np.zeros((0, 4))).sum() == 0


def test_gt_urbansas_partly_outside_is_clipped_and_frame_size_scales():
    # x = -64 -> int(-11.2) = -11 -> clipped to 0; bw = int(22.4) = 22 -> x2 = 11
    gt = M.gt_map_urbansas(np.array([[-64, 0, 128, 72]]))
    assert np.array_equal(gt, box_map(0, 22, 0, 11))   # bh = int(72/720*224) = int(22.4) = 22
    # a box running past the right edge stops at 224
    assert M.gt_map_urbansas(np.array([[1200, 0, 400, 720]]))[:, 210:].all()
    # the same box in 400x225 preview units gives the same map
    same = M.gt_map_urbansas(np.array([[100, 50, 200, 100]]) * (400 / 1280), frame_size=(400, 225))
    assert np.abs(same - M.gt_map_urbansas(np.array([[100, 50, 200, 100]]))).sum() <= 2 * G


def test_gt_vggss_by_hand_and_defects():
    # int(22.4)=22, int(44.8)=44, int(112.0)=112, int(134.4)=134
    gt = M.gt_map_vggss(np.array([[0.1, 0.2, 0.5, 0.6]]))
    assert np.array_equal(gt, box_map(44, 134, 22, 112))
    assert gt.sum() == 90 * 90
    sentinel = M.gt_map_vggss(np.array([[0.39, 0.66, -2.8823037615171176e16, 0.98]]))
    assert sentinel.sum() == 0                        # x2 -> max(v, 0) = 0 <= x1
    assert M.gt_map_vggss(np.array([[0.5, 0.5, 1.5, 1.0]]))[112:, 112:].all()  # > 1: clipped
    assert M.gt_map_vggss(np.array([[0.2, 1.0, 0.7, 1.0]])).sum() == 0          # degenerate


def test_gt_vggss_matches_per_pixel_definition():
    rng = np.random.default_rng(6)
    boxes = np.sort(rng.uniform(-0.1, 1.1, size=(5, 2, 2)), axis=1).transpose(0, 2, 1)
    boxes = boxes.reshape(5, 4)[:, [0, 2, 1, 3]]     # x1, y1, x2, y2
    gt = M.gt_map_vggss(boxes)
    want = np.zeros((G, G), dtype=bool)
    rows, cols = np.mgrid[0:G, 0:G]
    for b in boxes:
        x1, y1, x2, y2 = (int(224 * max(v, 0)) for v in b)
        want |= (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    assert np.array_equal(gt.astype(bool), want)


def test_gt_flickr_consensus_values():
    a = np.array([[0, 0, 128, 128]])     # int(224*128/256) = 112 -> [0:112, 0:112]
    b = np.array([[64, 64, 192, 192]])   # -> [56:168, 56:168]
    gt = M.gt_map_flickr([a, b])
    assert set(np.unique(gt).tolist()) == {0.0, 0.5, 1.0}
    assert gt[0, 0] == 0.5 and gt[100, 100] == 1.0 and gt[160, 160] == 0.5 and gt[200, 200] == 0
    assert (gt == 1.0).sum() == 56 * 56
    three = M.gt_map_flickr([a, a, a])
    assert three.max() == 1.0 and (three == 1.0).sum() == 112 * 112   # 3/2 clipped at 1
    assert M.gt_map_flickr([]).sum() == 0
    # a single (K, 4) array is accepted too
    assert np.array_equal(M.gt_map_flickr(np.vstack([a, b])), gt)


def test_gt_rejects_bad_boxes():
    with pytest.raises(DataError, match="boxes_xywh"):
        M.gt_map_urbansas(np.zeros((2, 3)))
    with pytest.raises(DataError, match="frame_size"):
        M.gt_map_urbansas(np.zeros((1, 4)), frame_size=(0, 720))


# -------------------------------------------------------------------------- resizing
def test_resize_matches_cv2_bilinear():
    import cv2  # a required dependency: its absence is a failure, not a skip
    rng = np.random.default_rng(7)
    for h, w in ((14, 14), (7, 7), (300, 400), (224, 100)):
        x = rng.random((2, h, w)).astype(np.float32)
        ref = np.stack([cv2.resize(a, (G, G), interpolation=cv2.INTER_LINEAR) for a in x])
        got = M.resize_to_grid(x)
        assert got.dtype == np.float32 and got.shape == (2, G, G)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_resize_keeps_grid_maps_and_constants():
    x = np.random.default_rng(8).random((G, G))
    assert np.array_equal(M.resize_to_grid(x)[0], x)
    assert np.allclose(M.resize_to_grid(np.full((3, 14, 14), 2.5)), 2.5, atol=1e-12)
    assert M.resize_to_grid(np.ones((5, 5), dtype=np.int64)).dtype == np.float64


# -------------------------------------------------------------------------- validate
@pytest.mark.parametrize("maps, gts, field, text", [
    (np.zeros((2, 1, G, G)), np.zeros((2, G, G)), "maps", "4-D"),
    (np.zeros((2, G, G)), np.zeros(G), "gts", "1-D"),
    (np.zeros((2, G, G)), np.zeros((2, 100, 100)), "gts", "224x224"),
    (np.zeros((2, 14, 14)), np.zeros((2, G, G)), "maps", "resize_to_grid"),
    (np.zeros((3, G, G)), np.zeros((2, G, G)), "maps", "3 heatmaps but 2"),
    (np.full((1, G, G), np.nan), np.zeros((1, G, G)), "maps", "NaN or inf"),
    (np.full((1, G, G), np.inf), np.zeros((1, G, G)), "maps", "NaN or inf"),
    (np.zeros((1, G, G)), np.full((1, G, G), 2.0), "gts", r"\[0, 1\]"),
    (np.zeros((1, G, G)), np.full((1, G, G), -0.5), "gts", r"\[0, 1\]"),
    (np.zeros((1, G, G)), np.full((1, G, G), np.nan), "gts", r"\[0, 1\]"),
    (np.zeros((0, G, G)), np.zeros((0, G, G)), "maps", "N = 0"),
])
def test_validate_rejects(maps, gts, field, text):
    with pytest.raises(DataError, match=rf"field '{field}'.*({text})"):
        M.validate(maps, gts, maps_file="m.npy", gts_file="g.npy")


def test_validate_names_files_and_fix():
    with pytest.raises(DataError, match=r"^g\.npy: field 'gts'.*Fix:"):
        M.validate(np.zeros((1, G, G)), np.zeros((1, 5, 5)), gts_file="g.npy")


def test_bad_choices_are_rejected():
    z = np.zeros((1, G, G))
    with pytest.raises(DataError, match="postprocess"):
        M.ciou(z, z, postprocess="minmax")
    with pytest.raises(DataError, match="empty"):
        M.ciou(z, z, empty="skip")
    with pytest.raises(DataError, match="reading"):
        M.evaluate(z, z, reading="paper")


# ---------------------------------------------------------------------- reference data
def _load_reference_script():
    spec = importlib.util.spec_from_file_location(
        "make_metrics_reference", FIXTURES / "make_metrics_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matches_stored_naive_reference():
    ref_script = _load_reference_script()
    ref = np.load(FIXTURES / "metrics_reference.npz")
    maps, gts = ref_script.make_inputs(int(ref["seed"]))
    assert ref_script.checksum(maps, gts) == str(ref["checksum"]), (
        "regenerated inputs differ from those the reference was made with (NumPy random "
        "streams changed?): re-run tests/fixtures/make_metrics_reference.py and review")
    n_checked = 0
    for d, dtype in enumerate(ref["dtypes"]):
        for k, method in enumerate(ref["methods"]):
            for t, thr in enumerate(ref["thresholds"]):
                got = M.ciou(maps.astype(str(dtype)), gts, str(method), float(thr))
                want = ref["cious"][d, k, t]
                np.testing.assert_allclose(got, want, atol=1e-6, rtol=0, equal_nan=True)
                assert M.auc(got) == pytest.approx(ref["auc"][d, k, t], abs=1e-6)
                at = [M.ciou_at(got, float(c)) for c in ref["cutoffs"]]
                np.testing.assert_allclose(at, ref["ciou_at"][d, k, t], atol=1e-6, rtol=0)
                n_checked += 1
    assert n_checked == 12 and np.isnan(ref["cious"]).any()


# -------------------------------------------------------------------- evaluate, bootstrap
def _random_set(n: int = 60, seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = rng.random((n, G, G)).astype(np.float32)
    gts = np.zeros((n, G, G), dtype=np.float32)
    for i in range(n):
        y, x = rng.integers(0, 150, 2)
        gts[i, y:y + 70, x:x + 70] = 1
        maps[i, y:y + 70, x:x + 70] += rng.uniform(0, 1.5)
    return maps, gts


def test_evaluate_fields_and_ci():
    maps, gts = _random_set()
    res = M.evaluate(maps, gts, "clean", at=0.3, n_boot=200, seed=0)
    assert res.ciou == M.ciou_at(res.cious, 0.3) and res.auc == M.auc(res.cious)
    assert res.ciou_lo <= res.ciou <= res.ciou_hi and res.auc_lo <= res.auc <= res.auc_hi
    assert res.ciou_lo < res.ciou_hi
    assert (res.n, res.n_empty, res.threshold, res.cutoff) == (60, 0, 0.5, 0.3)
    d = res.to_dict()
    for key in ("cIoU", "AUC", "n", "at", "postprocess", "cIoU_ci", "AUC_ci", "n_empty"):
        assert key in d
    row = M.summary_row("noise", res, digits=3)
    assert row["method"] == "noise" and "cIoU@0.3" in row and "cIoU@0.3_lo" in row


def test_evaluate_text_reading_binarises_at_the_at_value():
    maps, gts = _random_set()
    code = M.evaluate(maps, gts, "none", at=0.3, n_boot=0)
    text = M.evaluate(maps, gts, "none", at=0.3, n_boot=0, reading="text")
    assert (text.threshold, text.cutoff) == (0.3, M.TEXT_READING_CUTOFF)
    assert np.array_equal(text.cious, M.ciou(maps, gts, "none", threshold=0.3))
    assert not np.array_equal(text.cious, code.cious)
    assert np.isnan(code.ciou_lo)          # n_boot = 0: no interval


def test_bootstrap_is_deterministic_and_contains_estimate():
    c = np.random.default_rng(10).random(300)
    stat = functools.partial(M.ciou_at, at=0.5)
    a = bootstrap_ci(c, stat, n_boot=300, seed=3)
    b = bootstrap_ci(c, stat, n_boot=300, seed=3)
    other = bootstrap_ci(c, stat, n_boot=300, seed=4)
    assert a == b and a != other
    assert a.lo <= a.estimate <= a.hi
    # blocking does not change the values
    assert np.array_equal(bootstrap_distribution(c, M.auc, 100, 1, block=7),
                          bootstrap_distribution(c, M.auc, 100, 1, block=1000))
    # the distribution equals a per-resample loop
    idx = np.random.default_rng(1).integers(0, c.size, size=(100, c.size))
    assert np.array_equal(bootstrap_distribution(c, M.auc, 100, 1),
                          np.array([M.auc(c[i]) for i in idx]))


def test_resampled_fast_path_equals_gathered_resamples():
    rng = np.random.default_rng(12)
    c = np.round(rng.random(500), 2)          # many ties at the thresholds
    c[:7] = np.nan
    for empty in ("compat", "exclude"):
        for fast, slow in ((M.CIoUAt(0.3, empty), functools.partial(M.ciou_at, at=0.3,
                                                                    empty=empty)),
                           (M.AUC(empty), functools.partial(M.auc, empty=empty))):
            assert fast(c) == slow(c)
            assert np.array_equal(bootstrap_distribution(c, fast, 150, 2, block=64),
                                  bootstrap_distribution(c, slow, 150, 2, block=64), equal_nan=True)


def test_threshold_levels_count_reached_thresholds_and_mark_nan():
    c = np.array([np.nan, 0.0, 0.05, 0.3, 0.29999, 1.0])
    levels, order = M.threshold_levels(c, [0.3, 0.0, 0.05])     # unsorted thresholds
    assert order.tolist() == [1, 2, 0]
    assert levels.dtype == np.uint8 and levels.tolist() == [4, 1, 2, 3, 2, 3]
    frac = M.fractions_from_levels(levels[None], order, "compat")[0]
    assert frac.tolist() == [2 / 6, 5 / 6, 4 / 6]              # in the given threshold order
    frac = M.fractions_from_levels(levels[None], order, "exclude")[0]
    assert frac.tolist() == [2 / 5, 5 / 5, 4 / 5]
    all_nan = M.fractions_from_levels(np.full((1, 3), 4, np.uint8), order, "exclude")
    assert np.isnan(all_nan).all()


def test_paired_bootstrap():
    rng = np.random.default_rng(11)
    a = rng.random(400)
    same = paired_bootstrap(a, a.copy(), M.auc, n_boot=200, seed=0)
    assert (same.diff, same.lo, same.hi, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    better = np.minimum(a + 0.2, 1.0)
    res = paired_bootstrap(better, a, functools.partial(M.ciou_at, at=0.5), n_boot=200, seed=0)
    assert res.diff > 0 and res.lo > 0 and res.p_value == pytest.approx(2 / 201)
    with pytest.raises(DataError, match="values_b"):
        paired_bootstrap(a, a[:10], M.auc)


# ------------------------------------------------------------- gaps found by the mutation check
def test_ciou_checks_every_chunk_and_names_the_sample():
    """ciou validates each chunk of CHUNK samples itself (not only through validate)."""
    maps = np.zeros((11, G, G), np.float32)
    gts = np.zeros((11, G, G), np.float32)
    maps[9, 5, 5] = np.nan                       # in the second chunk of 8
    with pytest.raises(DataError, match=r"NaN or inf values in samples \[9\]"):
        M.ciou(maps, gts)


def test_dataset_statistics_of_one_set_are_python_floats():
    c = np.array([0.2, 0.6, np.nan])
    assert type(M.ciou_at(c, 0.5)) is float and M.ciou_at(c, 0.5) == pytest.approx(1 / 3)
    assert type(M.auc(c)) is float
    assert M.ciou_at(np.stack([c, c]), 0.5).shape == (2,)


def test_empty_error_names_the_field_and_the_fix():
    maps = np.zeros((2, G, G), np.float32)
    gts = np.zeros((2, G, G), np.float32)
    with pytest.raises(DataError, match=r"field 'gts': 2 samples .* Fix: drop them"):
        M.ciou(maps, gts, "none", empty="error")


def test_gt_urbansas_frame_size_boundaries():
    # a 1 x 1 annotation frame: the box [0, 0, 1, 1] covers all of it, so the whole grid
    assert M.gt_map_urbansas(np.array([[0.0, 0.0, 1.0, 1.0]]), frame_size=(1, 1)).sum() == G * G
    for bad in ((1280, 0), (0, 720), (-1, 720)):
        with pytest.raises(DataError, match="field 'frame_size'"):
            M.gt_map_urbansas(np.zeros((1, 4)), frame_size=bad)


@pytest.mark.parametrize("method", ["clean", "median", "none"])
@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_binarize_at_the_end_thresholds_equals_postprocess(method, threshold):
    """--reading text binarises at ``at`` itself, so 0 and 1 are reachable thresholds."""
    rng = np.random.default_rng(11)
    maps = rng.random((4, G, G)).astype(np.float32) ** np.float32(3)
    maps[1] = 0.7                                     # constant
    maps[2, :, :150] = 0                              # many exact zeros
    want = M.postprocess(maps, method) >= threshold
    assert np.array_equal(M.binarize(maps, method, threshold), want)
    if threshold == 0.0:
        assert want.all()                             # every value of P is >= 0


def test_median_with_exactly_half_zeros():
    """25,088 zeros: the 'median' (index 25088 of the sort) is the smallest positive value, so
    the mask keeps the 25,087 values above it; one more zero and the median is 0."""
    vals = np.concatenate([np.zeros(25088), np.arange(1, 25089)]).astype(np.float64)
    m = np.random.default_rng(0).permutation(vals).reshape(G, G)
    assert M.binarize(m, "median")[0].sum() == 25087
    assert M.postprocess(m, "median")[0].sum() == 25087
    vals[25088] = 0.0                                 # 25,089 zeros
    m = np.random.default_rng(0).permutation(vals).reshape(G, G)
    assert M.binarize(m, "median")[0].sum() == 25087  # median 0: all positive values


def test_postprocess_keeps_float32():
    m = np.random.default_rng(0).random((2, G, G)).astype(np.float32)
    for method in ("clean", "median", "none"):
        assert M.postprocess(m, method).dtype == np.float32
    assert M.postprocess(m.astype(np.float64), "median").dtype == np.float64


def test_thresholds_above_one_keep_nothing_and_choices_name_their_field():
    m = np.random.default_rng(5).random((2, G, G))
    for method in ("clean", "median", "none"):
        assert not M.binarize(m, method, 1.5).any()
        assert np.array_equal(M.binarize(m, method, 1.5), M.postprocess(m, method) >= 1.5)
    with pytest.raises(DataError, match="field 'postprocess': unknown value 'bogus'"):
        M.postprocess(m, "bogus")
    with pytest.raises(DataError, match="field 'empty': unknown value 'drop'"):
        M.ciou(m, np.zeros((2, G, G)), empty="drop")
    with pytest.raises(DataError, match="field 'empty': unknown value 'drop'"):
        M.success_fractions(np.array([0.5]), [0.5], empty="drop")
    with pytest.raises(DataError, match=r"field 'maps': expected maps of 224x224, got \(10, 10\)"):
        M.postprocess(np.zeros((1, 10, 10)), "clean")


def test_gt_urbansas_messages_name_the_field_and_the_fix():
    with pytest.raises(DataError, match=r"field 'frame_size': must be positive, got \(1280, 0\). "
                                        r"Fix: pass \(width, height\), e.g. \(1280, 720\)"):
        M.gt_map_urbansas(np.zeros((1, 4)), frame_size=(1280, 0))
    with pytest.raises(DataError, match="field 'boxes_xywh'"):
        M.gt_map_urbansas(np.zeros((1, 3)))


def test_row_array_likes_score_as_the_arrays_they_hold(tmp_path):
    """ciou / validate / evaluate accept a file read a block at a time (NpyRows) and a lazily
    resized view (GridRows): the same per-sample values as the in-memory arrays, and errors
    still name the sample."""
    from vssl_core.data.streaming import NpyRows
    from vssl_core.eval.maps import GridRows

    rng = np.random.default_rng(7)
    small = rng.random((70, 20, 30)).astype(np.float32)
    gts = (rng.random((70, M.GRID, M.GRID)) > 0.7).astype(np.float32)
    np.save(tmp_path / "m.npy", small)
    np.save(tmp_path / "g.npy", gts)
    lazy = GridRows(NpyRows(tmp_path / "m.npy"))
    assert lazy.shape == (70, M.GRID, M.GRID) and lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy[3:9], M.resize_to_grid(small[3:9]))
    for post in ("clean", "median"):
        np.testing.assert_array_equal(M.ciou(lazy, NpyRows(tmp_path / "g.npy"), post),
                                      M.ciou(M.resize_to_grid(small), gts, post))
    small[66, 4, 5] = np.nan
    np.save(tmp_path / "bad.npy", small)
    with pytest.raises(DataError, match=r"samples \[66\]"):
        M.validate_maps(NpyRows(tmp_path / "bad.npy"), maps_file="bad.npy")


def _released_median_rule(m: np.ndarray) -> np.ndarray:
    """The released LVS test / HTF evaluation, written out: min-max, values above the median
    element set to 1, then values below 1 set to 0."""
    pred = (m - m.min()) / (m.max() - m.min())
    med = np.sort(pred.ravel())[M.MEDIAN_INDEX]
    pred[pred > med] = 1
    pred[pred < 1] = 0
    return pred


def test_median_rule_is_the_released_one_on_degenerate_maps():
    """Maps with more than half of their pixels at the maximum (saturated), at the minimum, two
    values only, and a plain random map: postprocess("median") and the ciou fast path both give
    the released rule's mask."""
    rng = np.random.default_rng(3)
    G_ = M.GRID
    maps = rng.random((6, G_, G_)).astype(np.float32)
    maps[0, : G_ * 3 // 4] = 1.0                      # 75% at the maximum: median == max
    maps[1] = np.where(rng.random((G_, G_)) < 0.6, 5.0, 2.0)   # two values, 60% at the maximum
    maps[2, : G_ // 2 + 1] = 0.0                      # just over half at the minimum: median 0
    maps[3] = np.where(rng.random((G_, G_)) < 0.5, 1.0, 0.0)   # two values near half and half
    maps[4, :, : G_ // 2] = 7.0                       # exactly half at the maximum (not more)
    want = np.stack([_released_median_rule(m.astype(np.float64)) for m in maps])
    got = M.postprocess(maps, "median")
    np.testing.assert_array_equal(got, want)
    assert got[0].mean() == pytest.approx(0.75, abs=0.01) and got[1].mean() > 0.5   # the saturated maps light
    gts = np.zeros((6, G_, G_), np.float32)
    gts[:, :100, :100] = 1
    b = want > 0
    g = gts > 0
    expected = (b & g).sum(axis=(1, 2)) / (b | g).sum(axis=(1, 2))
    np.testing.assert_allclose(M.ciou(maps, gts, "median"), expected, rtol=1e-12)


def test_htf_maps_are_resized_bicubic_lvs_bilinear():
    import cv2

    from vssl_core.eval.maps import minmax, to_grid

    rng = np.random.default_rng(0)
    heat = rng.random((3, 7, 7)).astype(np.float32)
    cubic = to_grid(heat, "bicubic")
    np.testing.assert_array_equal(cubic[1], minmax(cv2.resize(heat[1], (224, 224), interpolation=cv2.INTER_CUBIC)[None])[0])
    np.testing.assert_array_equal(to_grid(heat), minmax(M.resize_to_grid(heat)))
    assert np.abs(cubic - to_grid(heat)).max() > 0.01
    with pytest.raises(ValueError, match="resize"):
        to_grid(heat, "nearest")
