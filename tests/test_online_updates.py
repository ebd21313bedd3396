"""One event at a time: the work per event of the implicit and LightFM adapters does not grow
with the stream (counted, not timed), and the defaults follow the step size."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("implicit")

from recinc_plugins.adapters import _history
from recinc_plugins.adapters._history import History
from recinc_plugins.adapters.implicit import (
    SMALL_STEP,
    ImplicitALS,
    ImplicitBPR,
    ImplicitLMF,
)
from recinc_plugins.base import Batch

SMALL = {"factors": 8, "iterations": 5, "num_threads": 1, "seed": 0}


def _one_event_steps(model, frame, start: int, stop: int) -> None:
    """Learn events ``start:stop`` one per step through the encoded path (the harness's)."""
    users, items = model.add_ids(frame["user"].to_numpy()[start:stop],
                                 frame["item"].to_numpy()[start:stop])
    weights = frame["weight"].to_numpy()[start:stop]
    for j in range(stop - start):
        model.learn_encoded(Batch(users[j:j + 1], items[j:j + 1], weights=weights[j:j + 1]))


def _events(n: int, n_rows: int, n_cols: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (rng.integers(n_rows, size=n), rng.integers(n_cols, size=n),
            rng.random(n).astype(np.float32) + 0.5)


def test_history_rows_and_samples_match_the_matrix_of_the_same_events():
    rows, cols, values = _events(3000, 60, 80, seed=1)
    history = History()
    for start in range(0, 2000):  # one at a time: entries wait unmerged
        history.add(rows[start:start + 1], cols[start:start + 1], values[start:start + 1])
    history.add(rows[2000:2900], cols[2000:2900], values[2000:2900])  # a big step merges
    for start in range(2900, 3000):
        history.add(rows[start:start + 1], cols[start:start + 1], values[start:start + 1])
    assert history.n_pending == 100
    expected = sp.csr_matrix((values, (rows, cols)), shape=(60, 80)).toarray()
    picked = np.array([7, 3, 59, 3])  # any order, repeats allowed
    np.testing.assert_allclose(history.rows(picked).toarray(), expected[picked], rtol=1e-6)
    r, c, v = history.sample(500, np.random.default_rng(0))
    assert (expected[r, c] > 0).all() and (v > 0).all()
    np.testing.assert_allclose(history.tocsr().toarray(), expected, rtol=1e-6)
    assert history.n_pending == 0


def test_history_rows_read_from_the_merged_matrix_are_canonical_and_exact():
    rows, cols, values = _events(3000, 60, 80, seed=2)
    history = History()
    history.add(rows, cols, values)  # merged: nothing pending
    history.resize(65, 80)  # rows past the stored matrix are empty
    expected = np.zeros((65, 80), dtype=np.float32)
    np.add.at(expected, (rows, cols), values)
    for picked in (np.array([7, 3, 59, 3, 64, 0]), np.arange(65), np.array([62]),
                   np.empty(0, dtype=np.int64)):
        out = history.rows(picked)
        assert out.shape == (picked.size, 80) and out.dtype == np.float32
        np.testing.assert_allclose(out.toarray(), expected[picked], rtol=1e-6)
        canonical = out.copy()
        canonical.has_canonical_format = False
        canonical.sum_duplicates()  # recomputes: nothing to sum or sort
        np.testing.assert_array_equal(canonical.indices, out.indices)
        assert out.nnz == np.count_nonzero(expected[picked])
    history.add(np.array([3]), np.array([5]), np.array([2.0], dtype=np.float32))  # pending
    expected[3, 5] += 2.0
    picked = np.array([3, 7])  # one row with a pending entry: read through both
    np.testing.assert_allclose(history.rows(picked).toarray(), expected[picked], rtol=1e-6)
    np.testing.assert_allclose(history.rows(np.array([7])).toarray(), expected[[7]])
    # a matrix that is not canonical (a file can say anything) is read the careful way
    unsorted = History.from_csr(sp.csr_matrix(expected[:4]))
    unsorted.csr = sp.csr_matrix((np.array([1.0, 2.0, 3.0], dtype=np.float32),
                                  np.array([5, 2, 2]), np.array([0, 3, 3, 3, 3])),
                                 shape=(4, 80))
    out = unsorted.rows(np.array([0, 1]))
    assert list(out.indices) == [2, 5] and list(out.data) == [5.0, 1.0]


def test_history_adds_one_event_in_amortised_constant_work(monkeypatch):
    merged = []
    merge = History.merge

    def counting(self):
        merged.append(self.n_stored)  # entries copied by this merge
        merge(self)

    monkeypatch.setattr(History, "merge", counting)
    rows, cols, values = _events(40_000, 900, 1600, seed=2)
    history = History()
    for j in range(rows.size):
        history.add(rows[j:j + 1], cols[j:j + 1], values[j:j + 1])
    # a merge copies the history once it has grown by an eighth (4,096 entries at least): at
    # most nine copies per event however long the stream, against one per stored entry per
    # event when every step is added into a CSR matrix (here 20,000 on average)
    assert sum(merged) <= 9 * rows.size, (len(merged), sum(merged))
    assert history.n_pending <= max(_history._MIN_PENDING, history.csr.nnz // 8) + 1


@pytest.mark.parametrize("cls", [ImplicitBPR, ImplicitLMF])
def test_bpr_and_lmf_train_the_same_bounded_sample_per_event_however_long_the_history(
        cls, implicit_stream):
    model = cls(**SMALL, replay=8.0).fit(implicit_stream.iloc[:500])
    sampled, warm = [], []
    train_sample, train_warm = model._train_sample, model._train_warm
    model._train_sample = lambda u, i, v: (sampled.append(u.size), train_sample(u, i, v))
    model._train_warm = lambda m: (warm.append(m.nnz), train_warm(m))
    _one_event_steps(model, implicit_stream, 500, 2500)
    # each event: itself and 8 replayed events, whether the history holds 500 or 2,499
    assert sampled == [9] * 2000 and warm == []
    assert model.history_.n_stored == 2500
    # a step of SMALL_STEP events or more trains on the whole history, as before
    model.partial_fit(implicit_stream.iloc[:SMALL_STEP])
    assert warm == [model.history_.tocsr().nnz] and len(sampled) == 2000


def test_als_re_solves_the_touched_user_every_event_and_items_on_their_schedule(
        implicit_stream):
    model = ImplicitALS(**SMALL, item_refresh=0.5).fit(implicit_stream.iloc[:1000])
    solved_users, solved_items = [], []
    fit_users, fit_items = model.model_.partial_fit_users, model.model_.partial_fit_items

    def users(ids, rows):
        solved_users.append(len(ids))
        assert rows.nnz == model.history_.rows(ids).nnz  # each against its whole history
        return fit_users(ids, rows)

    def items(ids, rows):
        solved_items.extend(ids.tolist())
        return fit_items(ids, rows)

    model.model_.partial_fit_users, model.model_.partial_fit_items = users, items
    counts_before = model.item_counts_.copy()
    _one_event_steps(model, implicit_stream, 1000, 2000)
    assert solved_users == [1] * 1000
    # an item is solved again once its events grew by half since its last solve: far fewer
    # solves than events, and every item new to the step was solved at once
    assert 0 < len(solved_items) < 1000
    new_items = np.flatnonzero(model.item_counts_[: counts_before.size] == 0)
    assert set(new_items.tolist()) <= set(solved_items)
    grown = model.item_counts_[: counts_before.size] - counts_before
    stale = (grown > 0) & (model.item_solved_[: counts_before.size] < counts_before)
    assert not stale.any() or (grown[stale] < 0.5 * counts_before[stale] + 1).all()


def test_auto_defaults_follow_the_step_size(implicit_stream):
    # ALS's "auto" regularization is 3 at every step size (it was 30 for fits and steps of
    # 1,000 events or more); a number given is used at every step size
    als = ImplicitALS(**SMALL).fit(implicit_stream.iloc[:1000])
    assert als.model_.regularization == 3.0  # a fit is a large step
    _one_event_steps(als, implicit_stream, 1000, 1001)
    assert als.model_.regularization == 3.0
    als.partial_fit(implicit_stream.iloc[1001:2001])
    assert als.model_.regularization == 3.0
    als = ImplicitALS(**SMALL, regularization=30.0).fit(implicit_stream.iloc[:1000])
    _one_event_steps(als, implicit_stream, 1000, 1001)
    assert als.model_.regularization == 30.0
    assert ImplicitBPR()._value("learning_rate") == 0.01
    assert ImplicitBPR()._value("learning_rate", small=True) == 0.05
    assert ImplicitBPR(learning_rate=0.2)._value("learning_rate", small=True) == 0.2
    lmf = ImplicitLMF()
    assert (lmf._value("regularization"), lmf._value("neg_prop")) == (10.0, 30)
    assert (lmf._value("regularization", True), lmf._value("neg_prop", True)) == (0.1, 8)


@pytest.mark.parametrize("cls", [ImplicitALS, ImplicitBPR, ImplicitLMF])
def test_save_load_keeps_events_learned_one_at_a_time(cls, implicit_stream, tmp_path):
    model = cls(**SMALL).fit(implicit_stream.iloc[:500])
    _one_event_steps(model, implicit_stream, 500, 700)
    expected = model.history_.tocsr().toarray()
    model.save(tmp_path / "m.recinc")
    loaded = cls.load(tmp_path / "m.recinc")
    np.testing.assert_array_equal(loaded.history_.tocsr().toarray(), expected)
    users = implicit_stream["user"].unique()[:10]
    np.testing.assert_array_equal(model.recommend(users, k=5).items,
                                  loaded.recommend(users, k=5).items)
    _one_event_steps(loaded, implicit_stream, 700, 710)  # and it learns on


def test_state_written_before_history_loads_into_one(implicit_stream):
    model = ImplicitALS(**SMALL).fit(implicit_stream.iloc[:800])
    state = model._get_state()
    old = dict(state)
    old["user_items_"] = old.pop("history_").tocsr()
    old["item_users_"] = old.pop("item_history_").tocsr()
    del old["item_solved_"]
    restored = ImplicitALS(**SMALL)
    restored._set_state(old)
    np.testing.assert_array_equal(restored.user_items_.toarray(), model.user_items_.toarray())
    np.testing.assert_array_equal(restored.item_users_.toarray(), model.item_users_.toarray())
    restored.partial_fit(implicit_stream.iloc[800:900])
    assert restored.n_events_ == 900


@pytest.mark.data
def test_one_event_steps_on_ml100k_beat_popularity(ml100k):
    from recinc_plugins import Popularity
    from recinc_plugins.evaluation import Stream, compare

    stream = Stream(ml100k.iloc[:10_000], step=1)
    models = {"popularity": Popularity(), "implicit-als": ImplicitALS(),
              "implicit-bpr": ImplicitBPR(), "implicit-lmf": ImplicitLMF()}
    recall = compare(models, stream, threads=1).summary.set_index("model")["recall@10"]
    for name in ("implicit-als", "implicit-bpr", "implicit-lmf"):
        assert recall[name] > recall["popularity"], recall.to_dict()


def test_a_copy_of_a_history_samples_as_the_original_would(tmp_path):
    import copy

    rows, cols, values = _events(500, 30, 40, seed=3)
    history = History()
    for j in range(rows.size):
        history.add(rows[j:j + 1], cols[j:j + 1], values[j:j + 1])
    copied = copy.deepcopy(history)
    assert history.n_pending == copied.n_pending == 500  # copying merged nothing
    a = history.sample(50, np.random.default_rng(5))
    b = copied.sample(50, np.random.default_rng(5))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(copied.rows(np.array([3])).toarray(),
                                  history.rows(np.array([3])).toarray())
