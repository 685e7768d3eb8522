"""Tests of vssl_core.eval.box_stats with hand-checkable boxes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vssl_core.eval import box_stats as bias
from vssl_core.errors import DataError


def test_conventions_map_to_the_same_normalised_box():
    # the left half, top half of the image in the three conventions
    want = [[0.0, 0.0, 0.5, 0.5]]
    assert bias.to_normalised_xyxy(np.array([[0, 0, 640, 360]]), "urbansas").tolist() == want
    assert bias.to_normalised_xyxy(np.array([[0, 0, 128, 128]]), "flickr").tolist() == want
    assert bias.to_normalised_xyxy(np.array([[0, 0, 0.5, 0.5]]), "vggss").tolist() == want
    assert bias.to_normalised_xyxy(np.array([[0, 0, 200, 112.5]]), "urbansas",
                                   frame_size=(400, 225)).tolist() == want
    with pytest.raises(DataError, match="convention"):
        bias.to_normalised_xyxy(np.zeros((1, 4)), "coco")


def test_partly_outside_boxes_are_clipped():
    # x = -640 .. 640 -> visible 0 .. 0.5
    assert bias.to_normalised_xyxy(np.array([[-640, 0, 1280, 720]]), "urbansas").tolist() == \
        [[0.0, 0.0, 0.5, 1.0]]


def test_box_area_percent():
    boxes = np.array([[0, 0, 0.5, 0.5], [0, 0, 1, 1], [0.2, 0.2, 0.2, 0.9], [0.5, 0.5, 1.5, 1.5]])
    assert bias.box_area_percent(boxes).tolist() == [25.0, 100.0, 0.0, 25.0]
    # image units: a 64 x 36 box in a 1280 x 720 frame covers 0.25 %
    assert bias.box_area_percent(np.array([[0, 0, 64, 36]]), (1280, 720))[0] == \
        pytest.approx(0.25)


def test_box_centres_grid():
    c = bias.box_centres_grid(np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.25]]))
    assert c.tolist() == [[112.0, 112.0], [56.0, 28.0]]
    assert bias.box_centres_grid(np.array([[0, 0, 128, 64]]), (256, 256)).tolist() == \
        [[56.0, 28.0]]


def test_centre_histogram_orientation_and_density():
    centres = np.array([[10.0, 200.0], [10.0, 205.0], [220.0, 5.0], [np.nan, 3.0]])
    hist, edges = bias.centre_histogram(centres, bins=4)
    assert edges.tolist() == [0, 56, 112, 168, 224]
    assert hist.shape == (4, 4) and hist.sum() == 3
    assert hist[3, 0] == 2       # bottom-left: cy ~ 200 (row 3), cx = 10 (column 0)
    assert hist[0, 3] == 1       # top-right
    dens, _ = bias.centre_histogram(centres, bins=4, density=True)
    assert dens.sum() == pytest.approx(1.0)


def _tables() -> pd.DataFrame:
    us = bias.box_table([
        ("clip1_0.5", np.array([[0, 0, 640, 360], [640, 360, 640, 360]])),   # 2 boxes, 25 % each
        ("clip1_1.0", np.array([[0, 0, 1280, 720]])),                       # 100 %
        ("clip2_0.0", np.zeros((0, 4))),                                     # no box
    ], "urbansas", dataset="US")
    vs = bias.box_table([
        ("a", np.array([[0.0, 0.0, 0.5, 0.2]])),                            # 10 %
        ("b", np.array([[0.3, 0.6, -2.88e16, 0.9], [0, 0, 0.1, 0.1]])),    # sentinel dropped, 1 %
    ], "vggss", dataset="VS")
    return pd.concat([us, vs], ignore_index=True)


def test_box_table_columns_and_empty_frames():
    df = _tables()
    assert list(df.columns) == bias.BOX_COLUMNS
    empty = df[df["sample_id"] == "clip2_0.0"]
    assert len(empty) == 1 and empty["box"].iloc[0] == -1 and empty["x1"].isna().all()
    assert df.loc[df["sample_id"] == "clip1_0.5", "cx"].tolist() == [0.25, 0.75]
    vs = bias.box_table([("b", np.array([[0.3, 0.6, -2.88e16, 0.9], [0, 0, 0.1, 0.1]]))], "vggss")
    assert vs.attrs["dropped_boxes"] == 1 and len(vs) == 1
    counts = bias.boxes_per_frame(df)
    assert counts.tolist() == [2, 1, 0, 1, 1]


def test_table2_summary_by_hand():
    t = bias.table2_summary(_tables())
    us, vs = t.loc["US"], t.loc["VS"]
    assert (us.frames, us.boxes, us.min_boxes, us.max_boxes) == (3, 3, 0, 2)
    assert us.pct_single_box == pytest.approx(100 / 3)
    assert us.mean_area_pct == pytest.approx((25 + 25 + 100) / 3)
    assert (vs.frames, vs.boxes, vs.min_boxes, vs.max_boxes) == (2, 2, 1, 1)
    assert vs.pct_single_box == 100.0
    assert vs.mean_area_pct == pytest.approx((10 + 1) / 2)
    assert vs.median_area_pct == pytest.approx(5.5)


def test_centred_box_map():
    m = bias.centred_box_map(0.5)
    # s = sqrt(0.5): corners 0.1464 -> int(32.8) = 32 and 0.8536 -> int(191.2) = 191
    assert m.dtype == np.float32 and m.shape == (224, 224)
    assert m[32:191, 32:191].all() and m.sum() == 159 * 159
    assert m[31, 100] == 0 and m[191, 100] == 0
    assert m.sum() / 224 ** 2 == pytest.approx(0.5, abs=0.01)
    assert bias.centred_box_map(1.0).all()
    with pytest.raises(DataError, match="area_fraction"):
        bias.centred_box_map(0.0)


def test_quadrant_boxes_map():
    m = bias.quadrant_boxes_map(1 / 8)
    assert m.sum() / 224 ** 2 == pytest.approx(4 / 8, abs=0.02)
    # symmetric: the four quadrants hold the same number of pixels, one box each
    q = [m[:112, :112].sum(), m[:112, 112:].sum(), m[112:, :112].sum(), m[112:, 112:].sum()]
    assert len(set(q)) == 1 and q[0] > 0
    assert m[56, 56] == 1 and m[0, 0] == 0 and m[112, 112] == 0


@pytest.mark.shared_data
def test_vggss_statistics_real_file(shared_data):
    from vssl_core.data.vggss import load_vggss

    ann = load_vggss(shared_data / "vggss" / "vggss.json")
    df = bias.box_table(((e.file, e.boxes) for e in ann), "vggss", dataset="VS")
    t = bias.table2_summary(df).loc["VS"]
    assert t.frames == 5158
    # 18 degenerate boxes (12 with a sentinel) have no visible area; clipping drops no other
    assert df.attrs["dropped_boxes"] == 18
    assert t.boxes == sum(len(e.boxes) for e in ann) - 18
    assert t.min_boxes == 0 and t.max_boxes == 7           # the 2 empty-map entries: 0 boxes
    assert 85.0 < t.pct_single_box < 95.0                   # paper: 89.3 % on its 4,436 frames
