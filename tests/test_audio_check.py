"""The generic "does the map change with the sound, and toward the source?" check
(eval.audio_sensitivity.audio_check / sensitivity_table) on toy map functions whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_pairs
from vssl_core.eval.audio_sensitivity import (SOUND_GAIN, audio_check, audio_sensitivity, sensitivity_table,
                                              swap_partners)
from vssl_core.eval.maps import LocalizationMaps

N = 6


def _box(col: int) -> np.ndarray:
    m = np.zeros((224, 224), np.float32)
    m[80:140, col:col + 30] = 1
    return m


def _pairs():
    """Sample i's sound says "the source is at column 20 + 30 i"; its GT is there."""
    audio = np.zeros((N, 1, 8), np.float32)
    audio[:, 0, 0] = np.arange(N)
    gt = np.stack([_box(20 + 30 * i) for i in range(N)])
    return make_pairs(np.zeros((N, 8, 8, 3), np.uint8), audio, gt=gt)


def listening(ev) -> LocalizationMaps:
    """Paints where the sound says: a perfect listener."""
    return LocalizationMaps(np.stack([_box(20 + 30 * int(a)) for a in ev.audio[:, 0, 0]]), "none", "toy")


def deaf(ev) -> LocalizationMaps:
    """The same centred box whatever the sound."""
    return LocalizationMaps(np.stack([_box(100)] * len(ev)), "none", "toy")


def test_a_map_that_follows_the_sound_gains_and_a_deaf_one_does_not():
    ev = _pairs()
    heard = audio_check(listening, ev, seed=0, at=0.3, n_boot=200)
    assert heard[SOUND_GAIN] == 1.0          # own sound: every GT found; another sound: none (disjoint boxes)
    assert heard[f"{SOUND_GAIN}_lo"] == heard[f"{SOUND_GAIN}_hi"] == 1.0
    assert heard["audio sensitivity"] > 1.0   # two disjoint boxes correlate negatively
    blind = audio_check(deaf, ev, seed=0, at=0.3, n_boot=200)
    assert blind["audio sensitivity"] == 0.0 and blind[SOUND_GAIN] == 0.0
    assert SOUND_GAIN not in audio_check(listening, ev, seed=0)     # no cut-off: no scoring


def test_chunks_and_the_plain_sensitivity_agree():
    ev = _pairs()
    whole = audio_check(listening, ev, seed=3, at=0.3, n_boot=100)
    chunked = audio_check(listening, ev, seed=3, chunk=4, at=0.3, n_boot=100)
    assert whole == pytest.approx(chunked)
    assert audio_sensitivity(listening, ev, seed=3) == pytest.approx(whole["audio sensitivity"])
    assert np.all(swap_partners(N, 3) != np.arange(N))


def test_sensitivity_table_rows_and_columns():
    ev = _pairs()
    table = sensitivity_table({"listens": listening, "deaf": deaf}, ev, seed=0, at=0.3, n_boot=100)
    assert table["method"].tolist() == ["listens", "deaf"] and (table["n"] == N).all()
    assert table[SOUND_GAIN].tolist() == [1.0, 0.0]
    assert SOUND_GAIN not in sensitivity_table({"deaf": deaf}, ev).columns
