"""Baselines: flow only, centred box, and the vision-only+CF+TF topline (filters, detectors)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from vssl_core.eval import metrics
from vssl_core.models.baselines import (Detection, Detector, OracleDetector, TorchvisionDetector, box_iou,
                                 build_fasterrcnn, centred_box, class_filter, flow_only_map,
                                 temporal_filter, topline_boxes, topline_maps)
from vssl_core.errors import DataError


def _row(t, label, x, y=300.0, w=200.0, h=120.0, vis=1.0, state="moving", clip="c1"):
    return dict(filename=clip, time=t, label=label, x=x, y=y, w=w, h=h, visible_fraction=vis, state=state)


@pytest.fixture()
def table():
    rows = []
    for t in (0.0, 0.5, 1.0):
        rows.append(_row(t, "car", 100.0, state="parked"))           # stationary
        rows.append(_row(t, "bus", 400.0 + 150 * t * 2, y=100.0))     # moves 150 units per 0.5 s
        rows.append(_row(t, "pedestrian", 900.0 + 40 * t, w=40, h=100))  # not a vehicle
        rows.append(_row(t, "truck", 1000.0 + 200 * t, vis=0.3))      # mostly hidden: unseen
    return pd.DataFrame(rows)


def test_box_iou_hand_cases():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_oracle_sees_visible_objects_only(table):
    det = OracleDetector(table)
    assert isinstance(det, Detector)
    labels = sorted(d.label for d in det.detect("c1", 0.5))
    assert labels == ["bus", "car", "pedestrian"]
    assert det.detect("c1", 0.5 + 1e-9) == det.detect("c1", 0.5)  # float noise tolerated
    assert det.detect("other", 0.5) == []
    with pytest.raises(DataError, match="visible_fraction"):
        OracleDetector(table.drop(columns="visible_fraction"), source="objects.csv")


def test_class_filter_drops_pedestrian(table):
    kept = class_filter(OracleDetector(table).detect("c1", 0.0))
    assert sorted(d.label for d in kept) == ["bus", "car"]


def test_temporal_filter_drops_stationary_keeps_moving():
    parked = Detection((100.0, 300.0, 200.0, 120.0), "car")
    moving = Detection((400.0, 100.0, 200.0, 120.0), "bus")
    later = [Detection((100.0, 300.0, 200.0, 120.0), "car"), Detection((550.0, 100.0, 200.0, 120.0), "bus")]
    assert temporal_filter([parked, moving], later) == [moving]
    # IoU exactly at the cut-off is kept (strict >), a hair above is dropped
    nudged = Detection((100.0, 300.0, 200.0 * 0.95, 120.0), "car")
    assert temporal_filter([nudged], [parked]) == [nudged]
    assert temporal_filter([parked], []) == [parked]


def test_topline_boxes_and_last_frame_uses_earlier_frame(table):
    det = OracleDetector(table)
    kept = topline_boxes(det, "c1", 0.0, clip_end=1.0)
    assert [d.label for d in kept] == ["bus"]
    # t = 1.0 is the last frame: compared with t = 0.5, the parked car is still dropped
    assert [d.label for d in topline_boxes(det, "c1", 1.0, clip_end=1.0)] == ["bus"]
    assert [d.label for d in topline_boxes(det, "c1", 0.5, clip_end=1.0, symmetric=True)] == ["bus"]


def test_topline_maps_rasterise_like_ground_truth(table):
    out = topline_maps(OracleDetector(table), ["c1", "c1"], [0.0, 1.0], clip_ends=1.0)
    assert out.postprocess == "none" and out.maps.shape == (2, 224, 224)
    bus0 = table[(table.label == "bus") & (table.time == 0.0)][["x", "y", "w", "h"]].to_numpy()
    np.testing.assert_array_equal(out.maps[0], metrics.gt_map_urbansas(bus0))
    res = metrics.evaluate(out.maps[:1], metrics.gt_map_urbansas(bus0)[None], postprocess=out.postprocess)
    assert res.auc > 0.9  # the map equals the GT


def test_flow_only_map_is_raw_magnitude():
    flow = np.zeros((1, 112, 112), dtype=np.float32)
    flow[0, :, :56] = 0.6  # left half moves at 0.6 px/frame
    out = flow_only_map(flow)
    assert out.postprocess == "none" and out.method == "flow_only"
    assert out.maps.max() == pytest.approx(0.6)  # not renormalised
    mask = metrics.binarize(out.maps, out.postprocess)[0]
    assert mask[:, :100].all() and not mask[:, 120:].any()


def test_centred_box_wraps_bias():
    out = centred_box(3)
    assert out.maps.shape == (3, 224, 224) and out.postprocess == "none"
    assert 0.45 < out.maps[0].mean() < 0.55


def test_fasterrcnn_constructs_without_weights_and_runs():
    torch.manual_seed(0)
    model = build_fasterrcnn(min_size=96, max_size=96)
    frame = np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8)
    det = TorchvisionDetector.from_model(model, lambda clip, t: frame, score_threshold=0.0)
    dets = det.detect("c", 0.0)
    assert isinstance(dets, list)
    for d in dets:
        assert len(d.box) == 4 and 0.0 <= d.score <= 1.0
        assert d.label in ("car", "bus", "truck", "motorbike") or d.label.startswith("coco:")


def test_torchvision_detector_missing_weights(tmp_path):
    with pytest.raises(DataError, match="frcnn.pth.*does not exist"):
        TorchvisionDetector(tmp_path / "frcnn.pth", lambda clip, t: np.zeros((8, 8, 3), np.uint8))
