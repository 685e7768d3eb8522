"""Cross-modal retrieval of paired embeddings (vssl_core.eval.retrieval) and notebook 02's table of
what FlowGrad-EN's pairs of encoders learned to match."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vssl_core.eval import retrieval


def _paired(n=40, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d))


def test_batches_are_disjoint_full_and_seeded():
    parts = retrieval.batches(10, 4, seed=3)
    assert [len(p) for p in parts] == [4, 4]          # the remainder (2) is left out
    flat = np.concatenate(parts)
    assert len(set(flat.tolist())) == 8 and flat.max() < 10
    np.testing.assert_array_equal(np.concatenate(retrieval.batches(10, 4, seed=3)), flat)
    assert not np.array_equal(np.concatenate(retrieval.batches(10, 4, seed=4)), flat)


def test_partners_that_are_the_same_vector_are_always_found():
    a = _paired()
    assert retrieval.top1(a, 3.0 * a, batch_size=8) == (1.0, 1.0)     # cosine ignores the norm
    assert retrieval.infonce(a, a, scale=1000.0, batch_size=8) < 1e-6


def test_a_deaf_model_sits_at_chance():
    a = _paired()
    same = np.ones((40, 8))                 # every sound embeds alike: its scores tie
    # ties go to the lower index, so only the first image of each batch is found by a sound
    assert retrieval.top1(same, a, batch_size=8)[0] == pytest.approx(1 / 8)
    assert retrieval.infonce(same, same, scale=14.3, batch_size=8) == pytest.approx(math.log(8))


def test_partners_swapped_within_a_batch_are_never_found():
    a = _paired(n=8)
    order = retrieval.batches(8, 8, seed=0)[0]
    b = a.copy()
    b[order] = a[np.roll(order, 1)]         # each sample's partner is another sample's vector
    assert retrieval.top1(a, b, batch_size=8) == (0.0, 0.0)


def test_infonce_of_a_hand_worked_batch():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])   # cosines: [[1, 1/sqrt2], [0, 1/sqrt2]]
    c = 1 / math.sqrt(2)
    s = 2.0
    rows = [math.log(math.exp(s) + math.exp(s * c)) - s, math.log(1 + math.exp(s * c)) - s * c]
    cols = [math.log(math.exp(s) + 1) - s, math.log(2 * math.exp(s * c)) - s * c]
    expected = 0.5 * (np.mean(rows) + np.mean(cols))
    assert retrieval.infonce(a, b, scale=s, batch_size=2) == pytest.approx(expected, rel=1e-12)
    assert retrieval.top1(a, b, batch_size=2) == (1.0, 0.5)    # column 1 ties: the lower index wins


def test_chance_upper_bounds_random_ranking():
    upper = retrieval.chance_upper(512, 64)
    rng = np.random.default_rng(0)
    hits = rng.binomial(512, 1 / 64, size=20000) / 512
    assert 0.015 < np.mean(hits > upper) < 0.026       # at most 2.5% of random runs exceed it
    assert np.mean(hits >= upper) > 0.025              # and it is the smallest such share
    assert 1 / 64 < upper < 0.05


@pytest.mark.parametrize("a, b, bs, match", [
    (np.zeros((4, 2)), np.zeros((5, 2)), 2, "same samples"),
    (np.zeros((4, 2)), np.zeros((4, 2)), 8, "cannot fill one batch"),
    (np.zeros(4), np.zeros((4, 2)), 2, "2-D"),
    (np.full((4, 2), np.nan), np.zeros((4, 2)), 2, "non-finite"),
    (np.zeros((4, 2)), np.zeros((4, 2)), 1, "at least 2"),
])
def test_bad_input_is_named(a, b, bs, match):
    with pytest.raises(ValueError, match=match):
        retrieval.top1(a, b, batch_size=bs)


def test_infonce_needs_a_positive_scale():
    with pytest.raises(ValueError, match="scale"):
        retrieval.infonce(np.eye(4), np.eye(4), scale=0.0, batch_size=2)


def test_pair_retrieval_table_scores_each_pair_each_loss_compares():
    from vssl_core.models.rcgrad import ModelConfig, build_model
    from vssl_core.models.rcgrad_maps import pair_embeddings
    from vssl_core.studies.flowgrad import pair_retrieval_table

    rng = np.random.default_rng(0)
    n, size = 8, 64
    ev = SimpleNamespace(images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                         audio=(0.1 * rng.standard_normal((n, 1, 4000))).astype(np.float32),
                         flow=(3 * rng.random((n, size, size))).astype(np.float32), audio_sr=8000)
    small = dict(width=0.25, image_size=size, audio_sr=8000)
    torch.manual_seed(0)
    models = {"RCGrad": build_model(ModelConfig(**small)).eval(),
              "EN": build_model(ModelConfig(kind="flowgrad_en", **small)).eval()}
    table = pair_retrieval_table(models, ev, batch_size=4, seed=1)
    assert list(zip(table["model"], table["pair"])) == [
        ("RCGrad", "audio-image"), ("EN", "audio-image"), ("EN", "image-flow"), ("EN", "audio-flow")]
    assert (table["ranked"] == 8).all() and (table["top-1 chance"] == 0.25).all()
    emb = pair_embeddings(models["EN"], ev)
    assert set(emb) == {"audio", "image", "flow"} and emb["flow"].shape == (n, emb["image"].shape[1])
    row = table.iloc[3]
    assert (row["top-1 (A->B)"], row["top-1 (B->A)"]) == retrieval.top1(emb["audio"], emb["flow"], 4, 1)
    scale = float(models["EN"].logit_scale.detach().exp())
    assert row["InfoNCE"] == pytest.approx(retrieval.infonce(emb["audio"], emb["flow"], scale, 4, 1))
    assert row["InfoNCE chance"] == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="eval"):
        pair_embeddings(build_model(ModelConfig(**small)), ev)


def test_the_loudness_rule_row_matches_sounds_to_frames_by_loudness_and_motion():
    from vssl_core.models.loudness_rule import LOUDNESS_RULE
    from vssl_core.studies.flowgrad import pair_retrieval_table

    rng = np.random.default_rng(2)
    n, size = 16, 8
    level = rng.permutation(np.linspace(0.05, 1.0, n))       # distinct loudness = distinct motion
    ev = SimpleNamespace(images=np.zeros((n, size, size, 3), dtype=np.uint8),
                         audio=(level[:, None, None] * rng.standard_normal((n, 1, 2000))).astype(np.float32),
                         flow=np.broadcast_to(3 * level[:, None, None], (n, size, size)).astype(np.float32),
                         audio_sr=8000)
    row = pair_retrieval_table({}, ev, batch_size=8, seed=0, loudness_rule=True).iloc[0]
    assert (row["model"], row["pair"]) == (LOUDNESS_RULE, "audio-flow") and np.isnan(row["InfoNCE"])
    assert row["top-1 (A->B)"] == 1.0 and row["top-1 (B->A)"] == 1.0   # ranks agree: every pick is right
    ev.flow = ev.flow[::-1].copy()                                        # motion no longer follows loudness
    row = pair_retrieval_table({}, ev, batch_size=8, seed=0, loudness_rule=True).iloc[0]
    assert row["top-1 (A->B)"] < 0.5


def test_percentile_embedding_ranks_by_closeness():
    from vssl_core.models.loudness_rule import percentile_embedding

    e = percentile_embedding(np.array([0.1, 0.2, 0.5, 0.9]))
    cos = e @ e[0]
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0) and list(np.argsort(-cos)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="percentiles"):
        percentile_embedding(np.array([1.5]))


def test_retrieval_markdown_words_each_pair_by_the_chance_bound():
    import pandas as pd

    from vssl_core.eval.findings import retrieval_markdown

    table = pd.DataFrame({"model": ["EN", "EN", "EN"], "pair": ["image-flow", "audio-flow", "audio-image"],
                          "top-1 (A->B)": [0.146, 0.018, 0.031], "top-1 (B->A)": [0.158, 0.016, 0.020],
                          "top-1 chance": 1 / 64, "chance 97.5%": 0.027})
    lines = retrieval_markdown(table).split("\n")
    assert "**beyond chance**" in lines[0] and "0.146 / 0.158" in lines[0]
    assert "**at chance**" in lines[1]
    assert "**one way only**" in lines[2]
    # exactly at the bound is not beyond it
    at_bound = table.assign(**{"top-1 (A->B)": 0.027, "top-1 (B->A)": 0.027})
    assert all("**at chance**" in line for line in retrieval_markdown(at_bound).split("\n"))
    with pytest.raises(KeyError, match="chance 97.5%"):
        retrieval_markdown(table.drop(columns="chance 97.5%"))
