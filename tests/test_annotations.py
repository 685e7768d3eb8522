"""Tests of the VGG-SS and Flickr-SoundNet annotation readers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vssl_core.data import flickr, vggss
from vssl_core.errors import DataError
from vssl_core.eval.metrics import gt_map_vggss

FLICKR_FIXTURES = Path(__file__).parent / "fixtures" / "flickr"
SENTINEL = -2.8823037615171176e16


# ---------------------------------------------------------------------------- VGG-SS
def _write_json(tmp_path: Path, data, name: str = "vggss.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_vggss_tiny_file_entries_and_defects(tmp_path):
    path = _write_json(tmp_path, [
        {"file": "a_000001", "class": "dog barking", "bbox": [[0.1, 0.2, 0.5, 0.6]]},
        {"file": "b_000002", "class": "cat", "bbox": [[0.3, 0.6, SENTINEL, 0.9],
                                                     [0.0, 0.0, 0.25, 0.25]]},
        {"file": "c_000003", "class": "horn", "bbox": [[0.2, 1.0, 0.7, 1.0]]},   # empty map
        {"file": "d_000004", "class": "drum", "bbox": [[0.4, 0.4, SENTINEL, SENTINEL]]},
    ])
    ann = vggss.load_vggss(path)
    assert len(ann) == 4 and ann.files == ["a_000001", "b_000002", "c_000003", "d_000004"]
    assert ann["b_000002"].label == "cat" and ann[1].boxes.shape == (2, 4)
    assert ann.defects.sentinel_boxes == ((1, 0), (3, 0))
    assert ann.defects.degenerate_boxes == ((1, 0), (2, 0), (3, 0))
    assert ann.defects.empty_maps == ("c_000003", "d_000004")
    assert ann.defects.counts() == {"sentinel_boxes": 2, "degenerate_boxes": 3,
                                    "empty_maps": 2, "dropped_boxes": 0}
    # the map follows int(224 * max(v, 0)): box 1 of b only -> [0:56, 0:56]
    assert ann[1].gt_map().sum() == 56 * 56
    maps = ann.gt_maps(["a_000001", 2])
    assert maps.shape == (2, 224, 224) and maps[0].sum() == 90 * 90 and maps[1].sum() == 0


def test_vggss_drop_invalid_keeps_maps(tmp_path):
    path = _write_json(tmp_path, [
        {"file": "b", "class": "cat", "bbox": [[0.3, 0.6, SENTINEL, 0.9], [0, 0, 0.25, 0.25]]},
        {"file": "c", "class": "horn", "bbox": [[0.2, 1.0, 0.7, 1.0]]},
    ])
    raw = vggss.load_vggss(path)
    clean = vggss.load_vggss(path, drop_invalid=True)
    assert clean[0].boxes.tolist() == [[0, 0, 0.25, 0.25]] and clean[1].boxes.shape == (0, 4)
    assert clean.defects.dropped_boxes == 2 and clean.defects.empty_maps == ("c",)
    for a, b in zip(raw, clean):
        assert np.array_equal(a.gt_map(), b.gt_map())


@pytest.mark.parametrize("content, field", [
    ("{not json", None),
    ('{"file": "x"}', None),
    ('[{"class": "c", "bbox": [[0, 0, 1, 1]]}]', r"\[0\]\.file"),
    ('[{"file": "x", "bbox": [[0, 0, 1, 1]]}]', r"\[0\]\.class"),
    ('[{"file": "x", "class": "c"}]', r"\[0\]\.bbox"),
    ('[{"file": "x", "class": "c", "bbox": [[0, 0, 1]]}]', r"\[0\]\.bbox"),
    ('[{"file": "x", "class": "c", "bbox": [["a", 0, 1, 1]]}]', r"\[0\]\.bbox"),
    ('[{"file": "x", "class": "c", "bbox": []}, {"file": "x", "class": "c", "bbox": []}]',
     r"\[1\]\.file"),
])
def test_vggss_bad_files_name_file_and_field(tmp_path, content, field):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    pattern = r"bad\.json" + (rf": field '{field}'" if field else "")
    with pytest.raises(DataError, match=pattern):
        vggss.load_vggss(path)


def test_vggss_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        vggss.load_vggss(tmp_path / "nope.json")


@pytest.mark.shared_data
def test_vggss_real_file_counts(shared_data):
    ann = vggss.load_vggss(shared_data / "vggss" / "vggss.json")
    assert len(ann) == 5158
    counts = ann.defects.counts()
    # README: 12 sentinel boxes, 18 degenerate boxes, 2 empty maps (verified: the 18 degenerate
    # boxes are the 12 sentinel boxes plus 6 zero-width/height ones)
    assert counts["sentinel_boxes"] == 12
    assert counts["degenerate_boxes"] == 18
    assert set(ann.defects.sentinel_boxes) <= set(ann.defects.degenerate_boxes)
    assert sorted(ann.defects.empty_maps) == ["M1P1xla8rg0_000000", "MKC9LvRivTM_000030"]
    # the test id list and the JSON hold the same clips
    ids = (shared_data / "vggss" / "vggss_test.csv").read_text().split()
    assert sorted(ids) == sorted(ann.files)
    # the analytic empty-map count agrees with building the maps (spot-check empties + a few)
    for key in list(ann.defects.empty_maps) + ann.files[:50]:
        assert (gt_map_vggss(ann[key].boxes).sum() == 0) == (key in ann.defects.empty_maps)
    n_boxes = np.bincount([len(e.boxes) for e in ann])
    assert n_boxes[0] == 0 and n_boxes.sum() == 5158


# --------------------------------------------------------------------------- Flickr
def test_flickr_fixture_boxes():
    ann = flickr.read_flickr_xml(FLICKR_FIXTURES / "1001.xml")
    assert ann.id == "1001" and ann.n_boxes == 3 and ann.first_child == ("1", "2", "3")
    assert ann.boxes.tolist() == [[32, 32, 160, 160], [64, 64, 192, 192], [0, 0, 64, 64]]


def test_flickr_consensus_map_values():
    # v -> int(224 * v / 256) = int(0.875 v): 32 -> 28, 64 -> 56, 160 -> 140, 192 -> 168
    g = flickr.read_flickr_xml(FLICKR_FIXTURES / "1001.xml").gt_map()
    assert g[30, 30] == 1.0 and g[100, 100] == 1.0     # two annotators agree
    assert g[150, 150] == 0.5 and g[10, 10] == 0.5     # one annotator
    assert g[200, 200] == 0.0 and g[27, 100] == 0.0
    # certain pixels: A1 & A2 = [56,140)^2, A1 & A3 = [28,56)^2
    assert (g == 1.0).sum() == 84 ** 2 + 28 ** 2
    # one annotator only: [8,16,248,240] -> [7,14,217,210] -> 0.5 on 210 x 196 pixels
    g2 = flickr.read_flickr_xml(FLICKR_FIXTURES / "1002.xml").gt_map()
    assert set(np.unique(g2).tolist()) == {0.0, 0.5} and (g2 == 0.5).sum() == 210 * 196
    assert g2[14, 7] == 0.5 and g2[13, 7] == 0.0 and g2[209, 216] == 0.5 and g2[210, 216] == 0
    # two identical boxes: [100,50,200,150] -> [87,43,175,131] -> 1 on 88 x 88 pixels
    g3 = flickr.read_flickr_xml(FLICKR_FIXTURES / "1003.xml").gt_map()
    assert set(np.unique(g3).tolist()) == {0.0, 1.0} and g3[43:131, 87:175].all()
    assert g3.sum() == 88 * 88


def test_flickr_load_with_id_list(tmp_path):
    ids = tmp_path / "test_list.txt"
    ids.write_text("1003.png\n1001.png\n\n")
    anns = flickr.load_flickr(FLICKR_FIXTURES, ids)
    assert [a.id for a in anns] == ["1003", "1001"]
    assert flickr.gt_maps(anns).shape == (2, 224, 224)
    assert [a.id for a in flickr.load_flickr(FLICKR_FIXTURES)] == ["1001", "1002", "1003"]
    with pytest.raises(DataError, match=r"missing.*9999\.xml"):
        flickr.load_flickr(FLICKR_FIXTURES, ["1001", "9999"])


def test_flickr_bad_xml(tmp_path):
    (tmp_path / "broken.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"broken\.xml: invalid XML"):
        flickr.read_flickr_xml(tmp_path / "broken.xml")
    (tmp_path / "short.xml").write_text(
        "<annotation><object><bbox><a>1</a><xmin>3</xmin></bbox></object></annotation>")
    with pytest.raises(DataError, match=r"short\.xml: field 'bbox\[0\]': 2 children"):
        flickr.read_flickr_xml(tmp_path / "short.xml")
    (tmp_path / "nan.xml").write_text(
        "<annotation><object><bbox><a>1</a><xmin>3</xmin><ymin>x</ymin><xmax>9</xmax>"
        "<ymax>9</ymax></bbox></object></annotation>")
    with pytest.raises(DataError, match=r"bbox\[0\]\.ymin"):
        flickr.read_flickr_xml(tmp_path / "nan.xml")
    with pytest.raises(DataError, match="not found"):
        flickr.read_flickr_xml(tmp_path / "absent.xml")


def test_flickr_test_ids_duplicates(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("1.png\n2.png\n1.png\n")
    with pytest.raises(DataError, match=r"field 'line 3': duplicate id '1'"):
        flickr.read_test_ids(path)
    assert flickr.read_test_ids(path, on_duplicate="drop") == ["1", "2"]


@pytest.mark.shared_data
def test_flickr_real_test_lists(shared_data):
    folder = shared_data / "flickr_soundnet"
    ids = flickr.read_test_ids(folder / "test_list.txt")
    assert len(ids) == 250 and len(set(ids)) == 250 and all(i.isdigit() for i in ids)
    # the "supervised" list repeats 30 ids: refused by default, first occurrences on request
    with pytest.raises(DataError, match="duplicate id"):
        flickr.read_test_ids(folder / "supervised_test_list.txt")
    sup = flickr.read_test_ids(folder / "supervised_test_list.txt", on_duplicate="drop")
    assert len(sup) == 250
    assert set(ids) - set(sup) == {"3908875357"} and set(sup) - set(ids) == {"3908875350"}
    csv_ids = flickr.read_test_ids(folder / "flickr_test.csv")
    assert len(csv_ids) == 249 and set(ids) - set(csv_ids) == {"3908875357"}
