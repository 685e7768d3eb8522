"""Only the package's own progress bars show: datasets' "Generating train split: n/0" and
"Saving the dataset" bars do not leak into notebooks, even with progress=True."""
from __future__ import annotations

import datasets

from vssl_core.data import evalset


def test_datasets_bars_stay_hidden_and_the_setting_is_restored(tmp_path, capfd):
    feats = datasets.Features({"x": datasets.Value("int32")})
    before = datasets.utils.are_progress_bars_disabled()

    def gen():
        for i in range(50):
            yield {"x": i}

    evalset._save(lambda work, npy: evalset._to_dataset(gen, feats, work, progress=True), tmp_path, progress=True)
    err = capfd.readouterr().err
    assert "Generating" not in err and "Saving the dataset" not in err, err
    assert datasets.load_from_disk(str(tmp_path / "dataset"))["x"] == list(range(50))
    assert datasets.utils.are_progress_bars_disabled() == before
