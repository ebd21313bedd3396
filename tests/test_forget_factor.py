"""``forget`` for the factor models of implicit (ALS, BPR, LMF) and LightFM, against the real
libraries: the forgotten rows and every optimiser-state row are blank, the histories hold none
of their events, ALS's re-solved rows are the least-squares solutions on the kept events, only
the touched rows move, ``exact=True`` is a fit on the kept events, learning goes on, and a
saved file holds no trace."""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("implicit")
pytest.importorskip("lightfm")

from recinc_plugins.adapters._history import History
from recinc_plugins.adapters.implicit import ImplicitALS, ImplicitBPR, ImplicitLMF
from recinc_plugins.adapters.lightfm import _STATE, LightFMRecommender
from recinc_plugins.audit import audit_model
from recinc_plugins.data import synthetic_stream

GONE_USER = "gone-user-5d1c"
GONE_ITEM = "gone-item-8e2b"
SMALL = {"num_threads": 1, "seed": 0}
MODELS = {
    "als": (ImplicitALS, {**SMALL, "factors": 8, "iterations": 5}),
    "bpr": (ImplicitBPR, {**SMALL, "factors": 8, "iterations": 20}),
    "lmf": (ImplicitLMF, {**SMALL, "factors": 8, "iterations": 5}),
    "lightfm": (LightFMRecommender, {**SMALL, "no_components": 8, "fit_epochs": 5,
                                     "epochs": 2}),
}
NAMES = list(MODELS)


def _stream() -> pd.DataFrame:
    frame = synthetic_stream(n_events=2_000, n_users=80, n_items=150, feedback="implicit",
                             seed=11).copy()
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    busy_user = frame["user"].iloc[:1_200].value_counts().index[3]
    busy_item = frame["item"].iloc[:1_200].value_counts().index[2]
    frame["user"] = frame["user"].replace(busy_user, GONE_USER)
    frame["item"] = frame["item"].replace(busy_item, GONE_ITEM)
    return frame


STREAM = _stream()


def _learn(name: str, frame: pd.DataFrame = STREAM, stop: int = 1_600, **params):
    """Fit on the first 1,000 events, then 200-event steps up to ``stop``."""
    cls, defaults = MODELS[name]
    model = cls(**{**defaults, **params}).fit(frame.iloc[:1_000])
    for start in range(1_000, stop, 200):
        model.partial_fit(frame.iloc[start:min(start + 200, stop)])
    return model


def _gone(frame: pd.DataFrame) -> pd.Series:
    return (frame["user"] == GONE_USER) | (frame["item"] == GONE_ITEM)


def _tables(model) -> tuple[np.ndarray, np.ndarray]:
    """(user rows, item rows) of the model's factors: LightFM's embeddings."""
    if isinstance(model, LightFMRecommender):
        return model.model_.user_embeddings, model.model_.item_embeddings
    return model.model_.user_factors, model.model_.item_factors


def _blank_rows(model) -> tuple[np.ndarray, np.ndarray]:
    """What a forgotten user's and item's factor rows must be."""
    users, items = _tables(model)
    user, item = np.zeros(users.shape[1], np.float32), np.zeros(items.shape[1], np.float32)
    if isinstance(model, ImplicitBPR):
        user[-1] = 1.0
    if isinstance(model, ImplicitLMF):
        user[-2] = item[-1] = 1.0
    return user, item


def _kept_matrix(model, frame: pd.DataFrame) -> sp.csr_matrix:
    """The summed weights of ``frame``'s events in ``model``'s indices (float64)."""
    users = model.user_index_.lookup(frame["user"].to_numpy())
    items = model.item_index_.lookup(frame["item"].to_numpy())
    assert (users >= 0).all() and (items >= 0).all()
    return sp.csr_matrix((frame["weight"].to_numpy(), (users, items)),
                         shape=(model.n_users, model.n_items))


# -- the forgotten rows, the optimiser state and the histories ---------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forgotten_rows_optimiser_state_and_history_entries_are_gone(name):
    model = _learn(name)
    u, i = model.user_index_.lookup([GONE_USER])[0], model.item_index_.lookup([GONE_ITEM])[0]
    users, items = _tables(model)
    assert np.abs(users[u]).sum() > 0 and np.abs(items[i]).sum() > 0  # learned before
    model.forget(users=[GONE_USER], items=[GONE_ITEM])

    user_blank, item_blank = _blank_rows(model)
    users, items = _tables(model)
    np.testing.assert_array_equal(users[u], user_blank)
    np.testing.assert_array_equal(items[i], item_blank)

    # the history is the kept events' summed weights, nothing else
    kept = STREAM.iloc[:1_600][~_gone(STREAM.iloc[:1_600])]
    history = model.history_.tocsr()
    assert history[u].nnz == 0 and history[:, i].nnz == 0
    np.testing.assert_allclose(history.toarray(), _kept_matrix(model, kept).toarray(),
                               rtol=1e-6)
    assert model.history_.n_pending == 0 and model.history_.pending_rows.size == 0
    np.testing.assert_array_equal(model.dead_items_ if name != "lightfm"
                                  else model.dead_item_rows_, [i])

    if name == "als":
        item_users = model.item_history_.tocsr()
        np.testing.assert_allclose(item_users.toarray(), history.T.toarray())
        assert model.item_solved_[i] == 0
        als = model.model_
        assert als._user_norms is None and als._item_norms is None
        for cache, factors in (("_XtX", als.user_factors), ("_YtY", als.item_factors)):
            if getattr(als, cache) is not None:  # recomputed from the blank rows, not stale
                np.testing.assert_allclose(getattr(als, cache), factors.T @ factors,
                                           rtol=1e-4, atol=1e-4)
    if name == "lmf":
        assert not model.user_adagrad_[u].any() and not model.item_adagrad_[i].any()
        assert model.user_adagrad_.any()  # the others' sums are kept
    if name == "lightfm":
        for side, row in (("user", u), ("item", i)):
            for suffix, _ in _STATE:
                values = getattr(model.model_, f"{side}_{suffix}")[row]
                start = 1.0 if suffix.endswith("gradients") else 0.0  # adagrad's start
                np.testing.assert_array_equal(values, start, err_msg=f"{side}_{suffix}")


def test_history_drop_releases_the_pending_entries():
    history = History()
    history.add(np.arange(5_000) % 7, np.arange(5_000) % 11, np.ones(5_000))
    history.add(np.array([3, 3, 4]), np.array([1, 2, 1]), np.array([2.0, 1.0, 1.0]))
    assert history.n_pending == 3
    rows, _, _ = history.drop(rows=np.array([3]))
    assert set(rows.tolist()) == {3} and history.n_pending == 0
    assert history.pending_rows.size == history.pending_cols.size == 0
    assert history.tocsr()[3].nnz == 0 and history.rows(np.array([3])).nnz == 0
    assert history.tocsr()[4, 1] == 5_000 // 77 + 1 + 1  # (4, 1) before, plus the pending one
    history.add(np.array([3]), np.array([5]), np.array([1.0]))  # and it takes events again
    assert history.rows(np.array([3])).toarray()[0, 5] == 1.0


# -- ALS: exact ----------------------------------------------------------------------------


def _least_squares(other: np.ndarray, rows: sp.csr_matrix, reg: float) -> np.ndarray:
    """implicit's ALS solve in float64, written out: ``(O'O + reg I + O' (C_u - I) O)^-1
    O' C_u p_u`` for each row u of the confidences ``rows``."""
    other = other.astype(np.float64)
    gram = other.T @ other + reg * np.eye(other.shape[1])
    out = np.zeros((rows.shape[0], other.shape[1]))
    for r in range(rows.shape[0]):
        cols = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
        conf = rows.data[rows.indptr[r]:rows.indptr[r + 1]].astype(np.float64)
        if cols.size:
            o = other[cols]
            a = gram + (o.T * (conf - 1.0)) @ o
            out[r] = np.linalg.solve(a, o.T @ conf)
    return out


@pytest.mark.parametrize("what", ["user", "item", "both"])
def test_als_forget_re_solves_the_touched_rows_from_the_kept_events_exactly(what):
    # with linear confidences the summed weights matter: 1 + alpha * (sum of the pair's weights)
    model = _learn("als", confidence="linear", alpha=0.5)
    x0, y0 = model.model_.user_factors.copy(), model.model_.item_factors.copy()
    gone_users = [GONE_USER] if what in ("user", "both") else []
    gone_items = [GONE_ITEM] if what in ("item", "both") else []
    u = model.user_index_.lookup(gone_users)
    i = model.item_index_.lookup(gone_items)
    reg = model.model_.regularization
    learned = STREAM.iloc[:1_600]
    touched_users = np.setdiff1d(model.user_index_.lookup(
        learned.loc[learned["item"].isin(gone_items), "user"].unique()), u)
    touched_items = np.setdiff1d(model.item_index_.lookup(
        learned.loc[learned["user"].isin(gone_users), "item"].unique()), i)
    assert touched_users.size >= 3 or not gone_items
    assert touched_items.size >= 10 or not gone_users
    assert model.forget(users=gone_users, items=gone_items).exact

    # the reference, from the event frame only: blank the forgotten rows, re-solve the users
    # that had the item (against the items), then the items the user had (against the users)
    gone = learned["user"].isin(gone_users) | learned["item"].isin(gone_items)
    confidence = _kept_matrix(model, learned[~gone])
    confidence.data = 1.0 + 0.5 * confidence.data
    x, y = x0.astype(np.float64), y0.astype(np.float64)
    x[u], y[i] = 0.0, 0.0
    x[touched_users] = _least_squares(y, confidence[touched_users], reg)
    y[touched_items] = _least_squares(x, confidence.T.tocsr()[touched_items], reg)

    got_x, got_y = model.model_.user_factors, model.model_.item_factors
    np.testing.assert_allclose(got_x[touched_users], x[touched_users], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_y[touched_items], y[touched_items], rtol=1e-3, atol=1e-4)
    # the rest is as it was, bit for bit; the forgotten rows are zero
    others = np.setdiff1d(np.arange(model.n_users), np.append(touched_users, u))
    np.testing.assert_array_equal(got_x[others], x0[others])
    others = np.setdiff1d(np.arange(model.n_items), np.append(touched_items, i))
    np.testing.assert_array_equal(got_y[others], y0[others])
    assert not got_x[u].any() and not got_y[i].any()


def _overlap(before: np.ndarray, after: np.ndarray) -> float:
    pairs = zip(before, after, strict=True)
    return float(np.mean([len(set(a) & set(b)) / a.size for a, b in pairs]))


def test_als_other_users_recommendations_stay_close():
    # one fit: every row solved with one regularisation, the one forget re-solves with (after
    # steps of another size, a re-solved row would also move by the change of regularisation)
    cls, params = MODELS["als"]
    model = cls(**params).fit(STREAM.iloc[:1_600])
    others = [u for u in STREAM["user"].iloc[:1_600].unique() if u != GONE_USER]
    before = model.recommend(others, k=10).items
    model.forget(users=[GONE_USER])  # a busy user: more than half the items re-solved
    assert _overlap(before, model.recommend(others, k=10).items) >= 0.9


def test_als_forget_on_ml100k_is_exact_and_fast(ml100k):
    model = ImplicitALS(num_threads=1, seed=0).fit(ml100k)
    user = ml100k["user"].iloc[0]
    u = model.user_index_.lookup([user])[0]
    y0 = model.model_.item_factors.copy()
    x = model.model_.user_factors.astype(np.float64)
    x[u] = 0.0
    items = np.unique(model.history_.tocsr()[u].indices)
    before = model.recommend(ml100k["user"].unique()[1:200], k=10).items
    start = time.perf_counter()
    model.forget(users=[user])
    seconds = time.perf_counter() - start
    kept = ml100k[ml100k["user"] != user].assign(weight=1.0)
    confidence = _kept_matrix(model, kept)
    confidence.data = np.full_like(confidence.data, 2.0)  # binary: 1 + alpha
    expected = _least_squares(x, confidence.T.tocsr()[items], model.model_.regularization)
    np.testing.assert_allclose(model.model_.item_factors[items], expected, rtol=1e-3,
                               atol=1e-4)
    others = np.setdiff1d(np.arange(model.n_items), items)
    np.testing.assert_array_equal(model.model_.item_factors[others], y0[others])
    assert seconds < 1.0, f"forgetting one user took {seconds:.3f} s (target: 0.1 s)"
    others = ml100k["user"].unique()[1:200]
    assert _overlap(before, model.recommend(others, k=10).items) >= 0.95


# -- the approximate models: only the touched rows move ------------------------------------------


@pytest.mark.parametrize("name", ["bpr", "lmf", "lightfm"])
def test_re_training_moves_only_the_rows_that_lost_events(name):
    model = _learn(name)
    u = model.user_index_.lookup([GONE_USER])[0]
    learned = STREAM.iloc[:1_600]
    touched = np.unique(model.item_index_.lookup(
        learned.loc[learned["user"] == GONE_USER, "item"].to_numpy()))
    users0, items0 = (t.copy() for t in _tables(model))

    no_budget = copy.deepcopy(model)
    no_budget._retrain_touched = lambda users, items: None  # the removal alone
    no_budget.forget(users=[GONE_USER])
    users1, items1 = _tables(no_budget)
    np.testing.assert_array_equal(np.delete(users1, u, axis=0), np.delete(users0, u, axis=0))
    np.testing.assert_array_equal(items1, items0)

    model.forget(users=[GONE_USER])
    users2, items2 = _tables(model)
    moved = np.flatnonzero(np.abs(items2 - items0).sum(axis=1) > 0)
    assert moved.size > 0.5 * touched.size  # re-trained ...
    assert set(moved.tolist()) <= set(touched.tolist())  # ... and nothing else
    np.testing.assert_array_equal(np.delete(users2, u, axis=0), np.delete(users0, u, axis=0))


def test_sampled_negatives_leave_out_forgotten_items():
    model = _learn("bpr")
    gone = STREAM["item"].iloc[:1_000].value_counts().index[[0, 5, 9]].tolist()
    model.forget(items=gone)
    dead = model.item_index_.lookup(gone)
    assert (dead < 0).all()
    drawn = model._negatives(200_000)
    assert not np.isin(drawn, model.dead_items_).any()
    counts = np.bincount(drawn, minlength=model.n_items)
    live = np.setdiff1d(np.arange(model.n_items), model.dead_items_)
    assert (counts[live] > 0.5 * drawn.size / live.size).all()  # uniform over the others


# -- exact=True: a fit on the kept events --------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_exact_true_equals_a_fit_on_the_kept_events(name):
    model = _learn(name)
    twin = copy.deepcopy(model)
    assert model.forget(users=[GONE_USER], items=[GONE_ITEM], exact=True).exact
    twin.forget(users=[GONE_USER], items=[GONE_ITEM])
    kept = twin.kept_events()
    # the kept events are the learned ones less the forgotten, with their weights' sums
    learned = STREAM.iloc[:1_600]
    expected = learned[~_gone(learned)].groupby(["user", "item"])["weight"].agg(["size", "sum"])
    got = kept.groupby(["user", "item"])["weight"].agg(["size", "sum"])
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False)

    cls, params = MODELS[name]
    fresh = cls(**params).fit(kept)
    for a, b in zip(_tables(model), _tables(fresh), strict=True):
        np.testing.assert_array_equal(a, b)
    users = ["u1", "u2", "u3", "someone-new"]
    pd.testing.assert_frame_equal(model.recommend(users, k=10).to_frame(),
                                  fresh.recommend(users, k=10).to_frame())


# -- afterwards: learning goes on, the file holds no trace ---------------------------------------


def _recall(model, events: pd.DataFrame) -> float:
    known = events[model.user_index_.lookup(events["user"].to_numpy()) >= 0]
    users = known["user"].unique()
    top = dict(zip(users, model.recommend(users, k=10).items, strict=True))
    return float(np.mean([item in top[user]
                          for user, item in zip(known["user"], known["item"], strict=True)]))


@pytest.mark.parametrize("name", NAMES)
def test_learning_goes_on_after_forget(name):
    control = _learn(name, stop=1_400)
    model = copy.deepcopy(control)
    model.forget(users=[GONE_USER], items=[GONE_ITEM])
    more = STREAM.iloc[1_400:1_600]
    more = more[~_gone(more)]
    for start in range(0, len(more), 20):  # small steps: sampled negatives, replay
        model.partial_fit(more.iloc[start:start + 20])
        control.partial_fit(more.iloc[start:start + 20])
    tail = STREAM.iloc[1_600:]
    tail = tail[~_gone(tail)]
    recall, recall_control = _recall(model, tail), _recall(control, tail)
    assert recall_control > 0.05  # the stream has something to learn
    assert recall >= 0.7 * recall_control, (recall, recall_control)

    # the forgotten rows stayed blank through the training (never a negative), small steps
    # and a large one (implicit's own fit over the whole history, LightFM's fit_partial)
    step = STREAM.iloc[:1_000]
    model.partial_fit(step[~_gone(step)].sample(1_000, replace=True, random_state=0))
    u, i = (np.flatnonzero(index.dead) for index in (model.user_index_, model.item_index_))
    user_blank, item_blank = _blank_rows(model)
    np.testing.assert_array_equal(_tables(model)[0][u[0]], user_blank)
    np.testing.assert_array_equal(_tables(model)[1][i[0]], item_blank)
    # the forgotten user comes back as a new one, and is learned
    model.partial_fit(pd.DataFrame({"user": [GONE_USER] * 3, "item": ["i1", "i2", "i3"],
                                    "weight": 1.0}))
    u = model.user_index_.lookup([GONE_USER])[0]
    assert u == model.n_users - 1 and model.history_.rows(np.array([u])).nnz == 3


@pytest.mark.parametrize("name", NAMES)
def test_saved_file_holds_no_trace_of_the_forgotten_ids(tmp_path, name):
    model = _learn(name)
    before = tmp_path / "before.recinc"
    model.save(before)
    assert GONE_USER.encode() in before.read_bytes()  # the searches can find them
    assert not audit_model(before, users=[GONE_USER], items=[GONE_ITEM]).clean

    model.forget(users=[GONE_USER], items=[GONE_ITEM])
    path = tmp_path / "model.recinc"
    model.save(path)
    data = path.read_bytes()
    for text in (GONE_USER, GONE_ITEM):
        assert text.encode() not in data and text.encode("utf-16-le") not in data
        assert text.encode("utf-32-le") not in data
    audit = audit_model(path, users=[GONE_USER], items=[GONE_ITEM])
    assert audit.clean, audit.traces

    loaded = type(model).load(path)
    assert GONE_USER not in loaded.user_index_ and GONE_ITEM not in loaded.item_index_
    for a, b in zip(_tables(model), _tables(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (loaded.history_.tocsr() != model.history_.tocsr()).nnz == 0
    pairs = STREAM.iloc[:50][~_gone(STREAM.iloc[:50])]
    np.testing.assert_array_equal(loaded.score(pairs["user"], pairs["item"]),
                                  model.score(pairs["user"], pairs["item"]))


# -- LightFM's side features ---------------------------------------------------------------------


def test_lightfm_forget_drops_the_users_feature_values():
    model = _learn("lightfm", stop=1_200)
    users = [u for u in STREAM["user"].iloc[:1_200].unique()[:10] if u != GONE_USER]
    users.append(GONE_USER)
    features = pd.DataFrame({"group-a": 1.0, "only-gone": 0.0}, index=users)
    features.loc[GONE_USER, "only-gone"] = 1.0
    model.set_user_features(features)
    model.partial_fit(STREAM.iloc[1_200:1_400])
    columns = model.user_features_.names
    u = model.user_index_.lookup([GONE_USER])[0]
    shared = model.model_.user_embeddings[columns["group-a"]].copy()
    assert model.model_.user_embeddings[columns["only-gone"]].any()

    model.forget(users=[GONE_USER])
    state = model.user_features_
    assert state.side.tocsr()[u].nnz == 0  # its values are gone
    row = state.matrix()[u]
    assert row.nnz == 1 and row.indices[0] == state.identity[u]  # identity only
    for suffix, _ in _STATE:  # the feature only it had is reset, the shared one is not
        values = getattr(model.model_, f"user_{suffix}")
        start = 1.0 if suffix.endswith("gradients") else 0.0
        np.testing.assert_array_equal(values[columns["only-gone"]], start)
        np.testing.assert_array_equal(values[state.identity[u]], start)
    np.testing.assert_array_equal(model.model_.user_embeddings[columns["group-a"]], shared)
    assert np.isfinite(model.score("u1", ["i1", "i2"])).all()
