"""Concat-and-localize transform: pairing, image halves, GT placement (box and map routes)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vssl_core.data.concat import (
    concat_and_localize, concat_boxes, concat_dataset, concat_gt_maps, pair_indices,
)
from vssl_core.errors import DataError
from vssl_core.eval.metrics import gt_map_urbansas

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 0]], dtype=np.uint8)
# hand-built boxes (1280x720 units); expected full-size columns/rows on the 224 grid in comments
BOXES = [
    np.array([[0.0, 0.0, 640.0, 360.0]]),       # cols 0:112, rows 0:112
    np.array([[640.0, 360.0, 640.0, 360.0]]),   # cols 112:224, rows 112:224
    np.array([[320.0, 180.0, 320.0, 180.0],     # cols 56:112, rows 56:112
              [1000.0, 0.0, 560.0, 720.0]]),    # past the right edge: clipped to 1000..1280
    np.zeros((0, 4)),                           # no box
]


def _images(size: int = 64) -> np.ndarray:
    return np.broadcast_to(COLOURS[:, None, None, :], (4, size, size, 3)).copy()


def _audio() -> np.ndarray:
    return np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 1, 10), np.float32)


def _ones(gt: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.nonzero(gt)
    if rows.size == 0:
        return None
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def test_pairs_are_distinct_seeded_and_cover_every_sample():
    left, right = pair_indices(7, seed=3)
    assert left.shape == right.shape == (7,)
    assert (left != right).all()
    assert set(left.tolist()) | set(right.tolist()) == set(range(7))
    l2, r2 = pair_indices(7, seed=3)
    assert np.array_equal(left, l2) and np.array_equal(right, r2)
    l3, r3 = pair_indices(7, seed=4)
    assert not (np.array_equal(left, l3) and np.array_equal(right, r3))
    # n_pairs > n tiles permutations: 20 pairs over 5 samples, every sample involved
    left, right = pair_indices(5, seed=0, n_pairs=20)
    assert left.size == 20 and (left != right).all()
    counts = np.bincount(np.concatenate([left, right]), minlength=5)
    assert (counts >= 4).all()  # each sample is an anchor exactly 4 times
    # sides are randomised: over many pairs, both sides see anchors
    left, right = pair_indices(2, seed=0, n_pairs=40)
    assert 0 < (left == 0).sum() < 40
    with pytest.raises(DataError):
        pair_indices(1, seed=0)


def test_box_route_places_boxes_in_the_expected_half():
    cs = concat_and_localize(_images(), _audio(), boxes=BOXES, seed=0)
    assert len(cs) == 8 and cs.gts.shape == (8, 224, 224)
    seen = set()
    for m in range(len(cs)):
        src, side = int(cs.source[m]), str(cs.side[m])
        assert src == (cs.left[m] if side == "left" else cs.right[m])
        seen.add((src, side))
        off = 0 if side == "left" else 112
        gt = cs.gts[m]
        other = gt[:, 112:] if side == "left" else gt[:, :112]
        assert other.sum() == 0, "GT leaked into the other half"
        if src == 0:
            assert _ones(gt) == (slice(0, 112), slice(off + 0, off + 56))
            assert gt[0:112, off:off + 56].all()
        elif src == 1:
            assert _ones(gt) == (slice(112, 224), slice(off + 56, off + 112))
            assert gt[112:224, off + 56:off + 112].all()
        elif src == 2:
            # box 1: cols int(160 * 0.175) = 28 .. 28 + 28; box 2 (clipped to 1000..1280):
            # x' = 500 -> col 87, w' = 140 -> 24 cols
            exp = np.zeros((224, 224), np.float32)
            exp[56:112, off + 28:off + 56] = 1
            exp[0:224, off + 87:off + 111] = 1
            assert np.array_equal(gt, exp)
        else:
            assert gt.sum() == 0
        assert np.array_equal(cs.boxes[m], concat_boxes(BOXES[src], side))
        assert np.array_equal(cs.audio[m], _audio()[src])
    assert len(seen) >= 5


def test_concat_boxes_by_hand():
    b = concat_boxes(np.array([[100.0, 10.0, 200.0, 20.0], [-50.0, 0.0, 100.0, 5.0]]), "right")
    assert np.allclose(b, [[690.0, 10.0, 100.0, 20.0], [640.0, 0.0, 25.0, 5.0]])
    b = concat_boxes(np.array([100.0, 10.0, 200.0, 20.0]), "left")
    assert np.allclose(b, [[50.0, 10.0, 100.0, 20.0]])


def test_image_halves_are_the_resized_sources():
    images = _images(64)
    cs = concat_and_localize(images, _audio(), boxes=BOXES, seed=1)
    for m in range(len(cs)):
        img = cs.images[m]
        assert img.shape == (64, 64, 3)
        assert (img[:, :32] == COLOURS[cs.left[m]]).all()
        assert (img[:, 32:] == COLOURS[cs.right[m]]).all()
    # textured images: the per-half resize equals area-resizing the whole concatenation
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, size=(4, 48, 60, 3), dtype=np.uint8)
    cs = concat_and_localize(tex, _audio(), boxes=BOXES, seed=2)
    for m in range(0, len(cs), 2):
        full = np.concatenate([tex[cs.left[m]], tex[cs.right[m]]], axis=1)
        ref = cv2.resize(full, (60, 48), interpolation=cv2.INTER_AREA)
        assert np.abs(cs.images[m].astype(int) - ref.astype(int)).max() <= 1
        assert np.array_equal(cs.images[m], cs.images[m + 1])


def test_output_size_and_even_width():
    cs = concat_and_localize(_images(64), _audio(), boxes=BOXES, seed=0, size=(48, 96))
    assert cs.images.shape == (8, 48, 96, 3)
    assert (cs.images[0][:, :48] == COLOURS[cs.left[0]]).all()
    with pytest.raises(DataError):
        concat_and_localize(_images(64), _audio(), boxes=BOXES, seed=0, size=63)


def test_map_route_matches_box_route_up_to_one_column():
    gts = np.stack([gt_map_urbansas(b) for b in BOXES])
    by_map = concat_and_localize(_images(), _audio(), gts=gts, seed=5)
    by_box = concat_and_localize(_images(), _audio(), boxes=BOXES, seed=5)
    assert np.array_equal(by_map.source, by_box.source)
    assert by_map.boxes is None
    for m in range(len(by_map)):
        a, b = by_map.gts[m], by_box.gts[m]
        assert np.array_equal(a.any(axis=1), b.any(axis=1))  # same rows
        diff = np.abs(a - b).sum(axis=1)
        assert diff.max() <= 2  # at most one column at each end of a run
    # exact hand case: left, box cols 0:112 -> cols 0:56
    out = concat_gt_maps(gts[0], "left")
    assert _ones(out) == (slice(0, 112), slice(0, 56))
    out = concat_gt_maps(gts[0], "right")
    assert _ones(out) == (slice(0, 112), slice(112, 168))


def test_map_route_keeps_consensus_values():
    g = np.zeros((224, 224), np.float32)
    g[10:20, 40:80] = 0.5
    out = concat_gt_maps(g, "right")
    assert set(np.unique(out).tolist()) == {0.0, 0.5}
    assert _ones(out) == (slice(10, 20), slice(112 + 20, 112 + 40))


def test_determinism_and_flows():
    flows = np.stack([np.full((224, 224), i, np.float32) for i in range(4)])
    a = concat_and_localize(_images(), _audio(), boxes=BOXES, seed=9, flows=flows)
    b = concat_and_localize(_images(), _audio(), boxes=BOXES, seed=9, flows=flows)
    for field in ("images", "audio", "gts", "left", "right", "source", "flows"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.flows.shape == (8, 224, 224)
    assert (a.flows[:, :, :112] == a.left[:, None, None]).all()
    assert (a.flows[:, :, 112:] == a.right[:, None, None]).all()


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match="exactly one"):
        concat_and_localize(_images(), _audio(), seed=0)
    with pytest.raises(DataError, match="audio"):
        concat_and_localize(_images(), _audio()[:3], boxes=BOXES, seed=0)
    with pytest.raises(DataError, match="gts"):
        concat_and_localize(_images(), _audio(), gts=np.zeros((4, 10, 10)), seed=0)


def test_concat_dataset_on_hf_columns():
    import datasets  # a required dependency
    from vssl_core.data.evalset import eval_features

    feats = eval_features(image_size=64, n_channels=1, n_samples=10)
    rows = {
        "clip": [f"c{i}" for i in range(4)], "time": [0.5] * 4, "image": list(_images(64)),
        "flow": [np.zeros((224, 224), np.float32)] * 4, "audio": list(_audio()),
        "gt": [gt_map_urbansas(b).astype(np.uint8) for b in BOXES],
        "n_boxes": [len(b) for b in BOXES], "boxes": [b.ravel().tolist() for b in BOXES],
        "labels": [[0] * len(b) for b in BOXES],
    }
    ds = datasets.Dataset.from_dict(rows, features=feats)
    cs = concat_dataset(ds, seed=0)
    ref = concat_and_localize(_images(64), _audio(), boxes=BOXES, seed=0)
    assert np.array_equal(cs.gts, ref.gts) and np.array_equal(cs.images, ref.images)
    assert np.array_equal(cs.audio, ref.audio) and cs.flows.shape == (8, 224, 224)
    by_gt = concat_dataset(ds, use="gt", seed=0, with_flow=False)
    assert by_gt.flows is None and by_gt.gts.shape == (8, 224, 224)
    with pytest.raises(DataError, match="lacks"):
        concat_dataset(ds.remove_columns("boxes"), seed=0)
