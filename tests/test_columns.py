"""Memory-mapped column copies (vssl_core.data.columns) and as_numpy's two routes."""
from __future__ import annotations

import datasets
import numpy as np
import pytest

from vssl_core.data import columns
from vssl_core.data.evalset import as_numpy


@pytest.fixture
def saved(tmp_path):
    """A dataset on disk in several Arrow chunks: uint8 images, float32 maps, strings, lists."""
    rng = np.random.default_rng(0)
    n = 23
    image = rng.integers(0, 256, (n, 5, 6, 3), dtype=np.uint8)
    flow = rng.normal(size=(n, 7, 7)).astype(np.float32)
    gt = (rng.random((n, 7, 7)) > 0.5).astype(np.uint8)
    feats = datasets.Features({"clip": datasets.Value("string"),
                               "image": datasets.Array3D((5, 6, 3), "uint8"),
                               "flow": datasets.Array2D((7, 7), "float32"),
                               "gt": datasets.Array2D((7, 7), "uint8"),
                               "boxes": datasets.Sequence(datasets.Value("float64"))})
    rows = {"clip": [f"c{i}" for i in range(n)], "image": list(image), "flow": list(flow),
            "gt": list(gt), "boxes": [[float(i)] * (4 * (i % 3)) for i in range(n)]}
    ds = datasets.Dataset.from_dict(rows, features=feats)
    ds.save_to_disk(str(tmp_path / "ds"), num_shards=3)   # several Arrow files
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    assert len(loaded.cache_files) > 1
    return loaded, {"image": image, "flow": flow, "gt": gt}


def test_mapped_equals_copied_across_shards_and_slices(saved):
    ds, ref = saved
    for c in ("image", "flow", "gt"):
        arr = columns.mapped_column(ds, c, rows_per_write=4)
        assert isinstance(arr, np.memmap)
        assert arr.dtype == ref[c].dtype and arr.shape == ref[c].shape
        np.testing.assert_array_equal(arr, ref[c])
    a = as_numpy(ds, mmap=True)
    b = as_numpy(ds, mmap=False)
    assert not isinstance(b["flow"], np.memmap)
    for c in ("image", "flow", "gt", "clip"):
        np.testing.assert_array_equal(a[c], b[c])
    assert [x.tolist() for x in a["boxes"]] == [x.tolist() for x in b["boxes"]]


def test_dtype_cast_is_written_once_and_reused(saved):
    ds, ref = saved
    a = as_numpy(ds, ["gt"], dtypes={"gt": np.float32})["gt"]
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, ref["gt"].astype(np.float32))
    path = columns.column_path(ds, "gt", np.float32)
    stamp = path.stat().st_mtime_ns
    again = as_numpy(ds, ["gt"], dtypes={"gt": np.float32})["gt"]
    assert path.stat().st_mtime_ns == stamp                          # not rewritten
    np.testing.assert_array_equal(again, a)
    # the fallback route applies the same cast
    assert as_numpy(ds, ["gt"], mmap=False, dtypes={"gt": np.float32})["gt"].dtype == np.float32


def test_writes_stay_in_the_process(saved):
    ds, ref = saved
    arr = columns.mapped_column(ds, "flow")
    arr[:] = 0.0
    np.testing.assert_array_equal(columns.mapped_column(ds, "flow"), ref["flow"])


def test_a_foreign_file_is_replaced(saved):
    ds, ref = saved
    path = columns.column_path(ds, "flow", np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros((3, 7, 7), np.float32))                 # wrong row count
    np.testing.assert_array_equal(columns.mapped_column(ds, "flow"), ref["flow"])


def test_a_failed_write_leaves_nothing(saved, monkeypatch):
    ds, _ = saved
    calls = {"n": 0}
    real = np.lib.format.open_memmap

    def failing(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "open_memmap", failing)
    with pytest.raises(OSError, match="disk full"):
        columns.mapped_column(ds, "flow")
    assert calls["n"] == 1
    folder = columns.column_path(ds, "flow", np.float32).parent
    assert list(folder.iterdir()) == []                              # no partial or temporary file


def test_selected_rows_fall_back_to_a_copy(saved):
    ds, ref = saved
    sub = ds.select([3, 1, 2])
    assert not columns.mappable(sub, "flow")
    with pytest.raises(ValueError, match="mmap=False"):
        columns.mapped_column(sub, "flow")
    np.testing.assert_array_equal(as_numpy(sub, ["flow"])["flow"], ref["flow"][[3, 1, 2]])
    assert not columns.mappable(ds, "clip")                           # not an array feature


def test_in_memory_dataset_falls_back(saved):
    _, ref = saved
    mem = datasets.Dataset.from_dict({"flow": list(ref["flow"])},
                                     features=datasets.Features({"flow": datasets.Array2D((7, 7), "float32")}))
    assert not columns.mappable(mem, "flow")
    np.testing.assert_array_equal(as_numpy(mem)["flow"], ref["flow"])
