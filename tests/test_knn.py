"""item-knn: sequence-aware item-to-item co-occurrence, with context."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import recinc_plugins as rp
from recinc_plugins.context import Context
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.knn import ItemKNN

PARAMS = dict(window=4, distance_decay=0.7, reverse=0.3, history=6, recency=0.9, alpha=0.4,
              beta=0.6, popularity=0.02)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return synthetic_stream(n_events=4000, n_users=60, n_items=200, feedback="implicit",
                            seed=1)


def reference_counts(users: list, items: list, p: dict) -> tuple[dict, dict, dict, np.ndarray]:
    """The model in plain Python: ids -> indices in order of appearance, the pair counts, each
    user's items in order, each item's event count."""
    uid: dict = {}
    iid: dict = {}
    for u, i in zip(users, items, strict=True):
        uid.setdefault(u, len(uid))
        iid.setdefault(i, len(iid))
    counts = np.zeros((len(iid), len(iid)))
    n = np.zeros(len(iid))
    seqs: dict = {}
    for u, i in zip(users, items, strict=True):
        seq, i = seqs.setdefault(uid[u], []), iid[i]
        for d in range(1, p["window"] + 1):
            if len(seq) >= d and seq[-d] != i:
                counts[seq[-d], i] += p["distance_decay"] ** (d - 1)
                counts[i, seq[-d]] += p["reverse"] * p["distance_decay"] ** (d - 1)
        seq.append(i)
        n[i] += 1
    return uid, iid, seqs, (counts, n)


def reference_scores(sequence: list, counts: np.ndarray, n: np.ndarray, p: dict) -> np.ndarray:
    row = np.zeros(len(n))
    for r, j in enumerate(sequence[::-1][: p["history"]]):
        row += p["recency"] ** r * counts[j] / max(n[j], 1) ** p["alpha"]
    return row / np.maximum(n, 1) ** p["beta"] + p["popularity"] * n / n.sum()


@pytest.mark.parametrize("step", [1, 37, 4000])
def test_scores_match_a_plain_python_reference_whatever_the_step(events, step):
    events = events.iloc[:1500] if step == 1 else events  # one partial_fit per event: slow
    users, items = events["user"].tolist(), events["item"].tolist()
    _, _, seqs, (counts, n) = reference_counts(users, items, PARAMS)
    model = ItemKNN(**PARAMS)
    for s in range(0, len(events), step):
        model.partial_fit(events.iloc[s:s + step])
    expected = np.array([reference_scores(seqs[u], counts, n, PARAMS)
                         for u in range(model.n_users)])
    # many users at once (a sparse product) and one at a time (rows read directly)
    np.testing.assert_allclose(model.score_block(np.arange(model.n_users)), expected,
                               rtol=1e-12, atol=1e-15)
    for u in (0, 7, model.n_users - 1):
        np.testing.assert_allclose(model.score_block(np.array([u]))[0], expected[u],
                                   rtol=1e-12, atol=1e-15)


def test_large_queries_read_sparse_rows_when_dense_ones_would_not_fit(events, monkeypatch):
    model = ItemKNN(**PARAMS).fit(events.iloc[:3000])
    model.partial_fit(events.iloc[3000:3007])  # some pairs still buffered
    users = np.arange(model.n_users)
    dense = model.score_block(users)
    monkeypatch.setattr("recinc_plugins.knn._DENSE_BYTES", 0)
    np.testing.assert_allclose(model.score_block(users), dense, rtol=1e-12, atol=1e-15)


def test_context_is_appended_to_the_learned_items_and_never_learned(events):
    users, items = events["user"].tolist(), events["item"].tolist()
    _, _, seqs, (counts, n) = reference_counts(users, items, PARAMS)
    model = ItemKNN(**PARAMS).fit(events)
    before = model.pairs_.tocsr().copy()
    rng = np.random.default_rng(0)
    rows = [[], list(rng.integers(0, model.n_items, 3)), list(rng.integers(0, model.n_items, 9)),
            list(rng.integers(0, model.n_items, 2))]
    users_ = np.array([3, 5, 8, -1])  # -1: a user the model never learned
    got = model.score_block(users_, Context.from_lists(rows))
    for r, (user, ctx) in enumerate(zip(users_.tolist(), rows, strict=True)):
        learned = seqs[user] if user >= 0 else []
        np.testing.assert_allclose(got[r], reference_scores(learned + ctx, counts, n, PARAMS),
                                   rtol=1e-12, atol=1e-15)
    # nine context items outnumber history=6: the learned ones no longer count
    np.testing.assert_allclose(got[2], model.score_block(np.array([-1]),
                                                         Context.from_lists([rows[2]]))[0])
    assert (model.pairs_.tocsr() != before).nnz == 0
    with pytest.raises(ValueError, match="3 rows for 4 users"):
        model.score_block(users_, Context.from_lists(rows[:3]))


def test_partial_fit_costs_the_step_not_the_history(events):
    model = ItemKNN(window=3, reverse=0.0).fit(events.iloc[:50])
    added: list[int] = []
    learn = model.pairs_.add  # count the pairs each later step hands to the counts
    model.pairs_.add = lambda r, c, v: (added.append(r.size), learn(r, c, v))[1]
    for s in range(50, len(events), 50):
        model.partial_fit(events.iloc[s:s + 50])
        # log-structured: each level under 1/8 of the one before, so a few levels at most
        sizes = [level.nnz for level in model.pairs_.levels]
        assert all(b * 8 < a for a, b in itertools.pairwise(sizes))
        assert len(sizes) <= 1 + np.log(max(model.pairs_.nnz, 8)) / np.log(8)
    # at most window pairs per event, however much was learned before
    assert len(added) == len(events) // 50 - 1 and max(added) <= 50 * 3


def test_save_and_load_give_the_same_scores_and_learning_carries_on(events, tmp_path):
    model = ItemKNN(**PARAMS).fit(events.iloc[:3000])
    model.partial_fit(events.iloc[3000:3007])  # pairs left in the buffer
    assert model.pairs_.n_buffered > 0
    model.save(tmp_path / "knn.recinc")
    loaded = rp.load(tmp_path / "knn.recinc")
    assert loaded.get_params() == model.get_params()
    users = np.arange(model.n_users)
    np.testing.assert_allclose(loaded.score_block(users), model.score_block(users))
    for m in (model, loaded):
        m.partial_fit(events.iloc[3001:])
    np.testing.assert_allclose(loaded.score_block(users), model.score_block(users))
    ids = events["user"].iloc[:5].tolist()
    assert loaded.recommend(ids, k=5).items.tolist() == model.recommend(ids, k=5).items.tolist()


@pytest.mark.parametrize("params, message", [
    ({"window": 0}, "window must be an integer >= 1"),
    ({"history": True}, "history must be an integer >= 1"),
    ({"recency": 1.5}, r"recency must be a finite number in \[0, 1\]"),
    ({"distance_decay": -0.1}, "distance_decay must be a finite number >= 0"),
    ({"alpha": float("nan")}, "alpha must be a finite number >= 0"),
    ({"reverse": "1"}, "reverse must be a finite number >= 0"),
    ({"popularity": -1}, "popularity must be a finite number >= 0"),
    ({"cold_start": "nobody"}, "cold_start must be one of"),
])
def test_bad_parameters_are_refused_by_name_before_anything_is_built(params, message):
    with pytest.raises(ValueError, match=message):
        ItemKNN(**params).fit(pd.DataFrame({"user": [1], "item": [2]}))


def test_it_is_registered_and_uses_context():
    model = rp.make("item-knn")
    assert isinstance(model, ItemKNN) and model.capabilities.context
    assert model.shared_scores() is None and model.item_vectors() is None
    spec = rp.registry.get_spec("item-knn")
    assert spec.installed and spec.extra is None and spec.model_class() is ItemKNN


def test_users_and_items_known_by_id_only_are_scored_without_error():
    model = ItemKNN().fit(pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"]}))
    users, items = model.add_ids(users=["new"], items=["z"])
    scores = model.score_block(np.r_[0, users], Context.from_lists([[int(items[0])], []]))
    assert scores.shape == (2, 3) and np.isfinite(scores).all()


def test_fresh_context_lifts_item_knn_in_the_harness_and_changes_nothing_at_one_event(events):
    stream = Stream(events, step=1000)  # recall@10 0.081 learned, 0.104 fresh
    learned = compare({"knn": ItemKNN()}, stream, k=10)
    fresh = compare({"knn": ItemKNN()}, stream, k=10, context="fresh")
    assert fresh.summary.loc[0, "recall@10"] > learned.summary.loc[0, "recall@10"] + 0.015
    one = Stream(events.iloc[:800], step=1)
    a = compare({"knn": ItemKNN()}, one, k=10).records["knn"].rank
    b = compare({"knn": ItemKNN()}, one, k=10, context="fresh").records["knn"].rank
    np.testing.assert_array_equal(a, b)


def test_ml100k_fresh_context_at_1000_event_steps_reaches_the_target(ml100k):
    # 0.2044 with the defaults (docs/knn.md); the target is 0.14
    res = compare({"item-knn": ItemKNN()}, Stream(ml100k, step=1000), k=10, context="fresh")
    assert res.summary.loc[0, "recall@10"] >= 0.14
