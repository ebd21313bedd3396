"""``forget`` for item-knn (exact: equal to a model that never learned the events) and for the
neural models (approximate: rows and optimiser state zeroed, buffers and recent items cleaned,
touched rows re-trained), on small synthetic implicit streams."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from recinc_plugins.context import Context
from recinc_plugins.data import synthetic_stream
from recinc_plugins.knn import ItemKNN

torch = pytest.importorskip("torch")
from recinc_plugins.neural import NeuralRecommender, SequentialRecommender  # noqa: E402
from recinc_plugins.neural.replay import ReplayBuffer  # noqa: E402

KNN = dict(window=4, distance_decay=0.7, reverse=0.3, history=6, recency=0.9, alpha=0.4,
           beta=0.6, popularity=0.02)
GONE_USER = "forget-me-user-5d2b"
GONE_ITEM = "forget-me-item-a07c"


@pytest.fixture(scope="module")
def stream() -> pd.DataFrame:
    """An implicit stream with string ids, some items consumed again (so an item can occur
    twice in a user's window), and the ids to forget named for a byte search."""
    frame = synthetic_stream(n_events=2_400, n_users=50, n_items=110, feedback="implicit",
                             seed=11)
    again = frame.sample(300, random_state=2)
    frame = pd.concat([frame, again]).sort_values("timestamp", kind="stable")
    frame = frame.reset_index(drop=True)
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    frame["user"] = frame["user"].replace(frame["user"].iloc[0], GONE_USER)
    late = frame["item"].iloc[-400:].value_counts().index[0]  # in many recent-item lists
    frame["item"] = frame["item"].replace(late, GONE_ITEM)
    return frame


# the steps a model learns the stream in: a fit, one-event steps, then steps of varied size
STEPS = [(0, 700), *[(s, s + 1) for s in range(700, 760)], (760, 1000),
         *[(s, min(s + 173, 2_700)) for s in range(1000, 2_700, 173)]]


def _learn(model, frame, users=(), items=()):
    """Learn ``frame`` in STEPS, less the events of ``users`` and ``items``."""
    for i, (start, stop) in enumerate(STEPS):
        part = frame.iloc[start:stop]
        part = part[~part["user"].isin(users) & ~part["item"].isin(items)]
        if i == 0:
            model.fit(part)
        elif len(part):
            model.partial_fit(part)
    return model


def _same_knn(model: ItemKNN, fresh: ItemKNN, frame: pd.DataFrame) -> None:
    """``model`` (after forget) and ``fresh`` (never learned the events) hold the same state,
    compared through the ids, and score alike, with and without context."""
    users = np.array(sorted(fresh.user_index_.ids), dtype=object)
    items = np.array(sorted(fresh.item_index_.ids), dtype=object)
    mu, fu = model.user_index_.lookup(users), fresh.user_index_.lookup(users)
    mi, fi = model.item_index_.lookup(items), fresh.item_index_.lookup(items)
    assert (mu >= 0).all() and (mi >= 0).all()
    np.testing.assert_allclose(model.pairs_.tocsr()[mi][:, mi].toarray(),
                               fresh.pairs_.tocsr()[fi][:, fi].toarray(), rtol=1e-12,
                               atol=1e-12)
    assert model.pairs_.tocsr().nnz == fresh.pairs_.tocsr().nnz  # nothing else left
    to_model = np.full(len(fresh.item_index_), -1)
    to_model[fi] = mi
    recent = fresh.recent_[fu]
    np.testing.assert_array_equal(model.recent_[mu], np.where(recent >= 0, to_model[recent], -1))
    np.testing.assert_allclose(model.discount_[mi], fresh.discount_[fi], rtol=1e-12)
    np.testing.assert_array_equal(model.item_counts_[mi], fresh.item_counts_[fi])
    assert model.n_events_ == fresh.n_events_
    for u in users[:: max(1, users.size // 12)]:
        np.testing.assert_allclose(model.score(u, items), fresh.score(u, items), rtol=1e-9,
                                   atol=1e-12)
    ctx_items = items[:3].tolist()
    a = model.score_block(mu[:4], Context.from_lists([model.item_index_.lookup(ctx_items)] * 4))
    b = fresh.score_block(fu[:4], Context.from_lists([fresh.item_index_.lookup(ctx_items)] * 4))
    np.testing.assert_allclose(a[:, mi], b[:, fi], rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(model.kept_events(), fresh.kept_events())


# -- item-knn: exact ------------------------------------------------------------------------


@pytest.mark.parametrize("users, items", [
    ([GONE_USER], []),
    ([], [GONE_ITEM]),
    ([GONE_USER, "u3", "u17"], [GONE_ITEM, "i5"]),
    ([], "top5"),  # the most frequent items: many users' windows close up
])
def test_item_knn_forget_equals_a_model_that_never_learned_the_events(stream, users, items):
    if items == "top5":
        items = stream["item"].value_counts().index[:5].tolist()
    model = _learn(ItemKNN(**KNN), stream)
    report = model.forget(users=users or None, items=items or None)
    assert report.exact and model.forgets_exactly
    fresh = _learn(ItemKNN(**KNN), stream, users, items)
    _same_knn(model, fresh, stream)
    # and it stays equal while both go on learning
    more = stream.iloc[2_500:].copy()
    model.partial_fit(more[~more["user"].isin(users) & ~more["item"].isin(items)])
    fresh.partial_fit(more[~more["user"].isin(users) & ~more["item"].isin(items)])
    _same_knn(model, fresh, stream)


def test_item_knn_with_default_parameters_forgets_exactly(stream):
    # window 50 and reverse 1: a user's stretch to recount reaches far
    model = _learn(ItemKNN(), stream)
    model.forget(users=["u8"], items=[GONE_ITEM, "i40"])
    _same_knn(model, _learn(ItemKNN(), stream, ["u8"], [GONE_ITEM, "i40"]), stream)


def test_item_knn_forgotten_ids_leave_nothing_in_its_state_or_file(stream, tmp_path):
    model = _learn(ItemKNN(**KNN), stream)
    u = int(model.user_index_.lookup([GONE_USER])[0])
    i = int(model.item_index_.lookup([GONE_ITEM])[0])
    model.forget(users=[GONE_USER], items=[GONE_ITEM])
    n = model.log_.n
    assert n == model.n_events_
    assert not (model.log_.users[:n] == u).any() and not (model.log_.items[:n] == i).any()
    assert not model.log_.users[n:].any() and not model.log_.items[n:].any()  # spare capacity
    counts = model.pairs_.tocsr()
    assert counts.getrow(i).nnz == 0 and counts.getcol(i).nnz == 0
    assert (model.recent_[u] == -1).all() and not (model.recent_ == i).any()
    assert model.discount_[i] == 1.0 and model.item_counts_[i] == 0
    path = tmp_path / "knn.recinc"
    model.save(path)
    data = path.read_bytes()
    assert GONE_USER.encode() not in data and GONE_ITEM.encode() not in data
    loaded = ItemKNN.load(path)
    assert loaded.forgets_exactly and loaded.log_.n == n
    assert np.array_equal(loaded.log_.items[:n], model.log_.items[:n])


def test_item_knn_exact_true_equals_a_fit_on_the_kept_events_in_their_order(stream):
    model = _learn(ItemKNN(**KNN), stream)
    kept_order = model.kept_events()
    assert len(kept_order) == model.n_events_
    # the kept events come in the order learned: each user's sequence as it was
    first = kept_order.groupby("user", sort=False)["item"].apply(list)
    expected = stream.iloc[:STEPS[-1][1]].groupby("user", sort=False)["item"].apply(list)
    assert first.sort_index().equals(expected.sort_index())
    by_retraining = copy.deepcopy(model)
    by_retraining.forget(users=["u4"], items=["i9"], exact=True)
    model.forget(users=["u4"], items=["i9"])
    refit = ItemKNN(**KNN).fit(model.kept_events())
    _same_knn(model, refit, stream)
    _same_knn(by_retraining, refit, stream)


def test_item_knn_from_a_file_without_the_event_log_retrains(stream, tmp_path):
    model = _learn(ItemKNN(**KNN), stream)
    del model.log_  # as a file written before the log was kept
    path = tmp_path / "old.recinc"
    model.save(path)
    old = ItemKNN.load(path)
    assert old.log_ is None and not old.forgets_exactly
    report = old.forget(users=[GONE_USER])
    # retrained from the kept events, whose order within a user is lost: not exact
    assert not report.exact and old.log_ is None and not old.forgets_exactly
    assert GONE_USER not in old.user_index_
    assert old.n_events_ == int((stream.iloc[:STEPS[-1][1]]["user"] != GONE_USER).sum())


# -- the replay buffer ---------------------------------------------------------------------


def test_reservoir_drop_keeps_the_rest_and_refills_at_the_reservoir_rate():
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(100, "reservoir", width=3)
    users, items = rng.integers(0, 20, 1_000), rng.integers(0, 30, 1_000)
    seqs = rng.integers(0, 31, (1_000, 3)).astype(np.int32)
    buffer.add(users, items, np.ones(1_000, np.float32), rng, seqs)
    gone_users, gone_items = np.zeros(20, bool), np.zeros(30, bool)
    gone_users[3], gone_items[7] = True, True
    held = buffer.users.copy(), buffer.items.copy(), buffer.seqs.copy()
    dead = gone_users[held[0]] | gone_items[held[1]]
    stream_events = int((gone_users[users] | gone_items[items]).sum())
    assert buffer.drop(gone_users, gone_items, stream_events) == dead.sum()
    k = len(buffer)
    assert k == 100 - dead.sum() and buffer.n_seen == 1_000 - stream_events
    np.testing.assert_array_equal(buffer.users[:k], held[0][~dead])
    assert not buffer.users[k:].any() and not buffer.seqs[k:].any()
    assert not (buffer.seqs == 8).any()  # item 7, stored as 7 + 1
    row = held[2][~dead][0]
    np.testing.assert_array_equal(buffer.seqs[0], np.r_[row[row != 8], [0] * (row == 8).sum()])
    # the free slots fill as algorithm R admits events: about capacity / t of them
    buffer.add(np.zeros(2_000, np.int64), np.zeros(2_000, np.int64),
               np.ones(2_000, np.float32), rng, np.zeros((2_000, 3), np.int32))
    assert len(buffer) == 100 and buffer.n_seen == 3_000 - stream_events


def test_ring_drop_restarts_at_the_oldest_kept_event():
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(10, "recent")
    buffer.add(np.arange(25), np.arange(25), np.ones(25, np.float32), rng)
    gone = np.zeros(30, bool)
    gone[[16, 20]] = True
    buffer.drop(gone, np.zeros(30, bool), 2)
    assert buffer.users[:8].tolist() == [15, 17, 18, 19, 21, 22, 23, 24]
    for t in (25, 26, 27):
        buffer.add(np.array([t]), np.array([t]), np.ones(1, np.float32), rng)
    assert sorted(buffer.users.tolist()) == [17, 18, 19, 21, 22, 23, 24, 25, 26, 27]


# -- the neural models: approximate --------------------------------------------------------

NEURAL = dict(n_factors=8, history=5, replay_size=600, n_negatives=4, batch_size=64,
              device="cpu", seed=3)


def _neural(cls, **kw):
    return cls(**{**NEURAL, **kw})


@pytest.fixture(scope="module", params=[NeuralRecommender, SequentialRecommender],
                ids=["neural", "neural-seq"])
def learned(request, stream):
    model = _learn(_neural(request.param, forget_passes=0), stream)
    return model


def _rows(model, region, idx):
    return model._rows(region, np.asarray(idx, dtype=np.int64))


def test_neural_forget_zeroes_rows_and_optimiser_state_and_cleans_the_buffers(learned, tmp_path):
    model = copy.deepcopy(learned)
    u = int(model.user_index_.lookup([GONE_USER])[0])
    i = int(model.item_index_.lookup([GONE_ITEM])[0])
    holders = np.flatnonzero((model.hist_[: model.n_users] == i + 1).any(axis=1))
    holders = holders[holders != u]
    assert holders.size > 1 and (model.buffer_.items[: len(model.buffer_)] == i).any()
    recent = model._recent_items(holders)
    counts = model.hist_count_[: model.n_users].copy()
    arena = model.arena_
    before = arena.weight.clone(), arena.accum.clone()
    if isinstance(model, SequentialRecommender):
        assert model.attention_.t > 0
    model.forget(users=[GONE_USER], items=[GONE_ITEM])

    cleared = np.r_[_rows(model, "users", [u]), _rows(model, "items", [i]),
                    _rows(model, "history", [i])]
    assert not arena.weight[cleared].any() and not arena.accum[cleared].any()
    # forget_passes=0: nothing else moved
    other = np.setdiff1d(np.arange(arena.weight.shape[0]), cleared)
    assert torch.equal(arena.weight[other], before[0][other])
    assert torch.equal(arena.accum[other], before[1][other])
    # the replay buffer: no event of theirs, no forgotten item in a stored sequence
    n = len(model.buffer_)
    assert not (model.buffer_.users[:n] == u).any() and not (model.buffer_.items[:n] == i).any()
    if model.buffer_.seqs is not None:
        assert not (model.buffer_.seqs == i + 1).any()
    # recent items: the user's emptied, the item gone from everyone's, the rest in order
    assert not model.hist_[u].any() and model.hist_count_[u] == 0
    assert not (model.hist_ == i + 1).any()
    # as a model that never learned them has them: the last kept items, the latest first
    lost = model._recent_items(holders)
    for user, before_row, after_row in zip(holders, recent, lost, strict=True):
        kept = before_row[(before_row > 0) & (before_row != i + 1)]
        np.testing.assert_array_equal(after_row[: kept.size], kept)
        events = learned_events(model, user)
        np.testing.assert_array_equal(after_row[after_row > 0], events[::-1][:5] + 1)
    seen = np.asarray(model.seen_.tocsr().sum(axis=1)).ravel()
    np.testing.assert_array_equal(model.hist_count_[: model.n_users], seen)
    assert (model.hist_count_[: model.n_users] <= counts).all()
    if isinstance(model, SequentialRecommender):
        assert model.attention_.t == 0 and not model.attention_.m.any()
        assert not model.attention_.v.any()
    # no trace in the file
    path = tmp_path / "neural.recinc"
    model.save(path)
    data = path.read_bytes()
    assert GONE_USER.encode() not in data and GONE_ITEM.encode() not in data
    loaded = type(model).load(path)
    assert torch.equal(loaded.arena_.weight, model.arena_.weight)
    assert len(loaded.buffer_) == n

    # learning goes on; a forgotten item is never drawn as a negative, so its rows stay zero
    model.partial_fit(pd.concat([learned_tail(model), learned_tail(model)]))
    assert not model.arena_.weight[cleared].any()
    assert np.isfinite(model.last_loss_)
    assert np.isfinite(model.score("u5", ["i1", "i2"])).all()


def learned_events(model, user: int) -> np.ndarray:
    """The items of ``user``'s kept events, in the order learned (the stream's)."""
    frame = model.kept_events()
    return model.item_index_.lookup(frame["item"][frame["user"] == model.user_index_.ids_of(
        [user])[0]].to_numpy())


def learned_tail(model) -> pd.DataFrame:
    users = [x for x in model.user_index_.ids if x is not None][:40]
    items = [x for x in model.item_index_.ids if x is not None][:40]
    return pd.DataFrame({"user": users, "item": items[::-1]})


def test_neural_forget_relearns_the_touched_rows_for_its_budget(learned):
    zero = copy.deepcopy(learned)
    zero.forget(users=["u6"])
    one = copy.deepcopy(learned)
    one.set_params(forget_passes=1)
    one.forget(users=["u6"])
    touched = learned.seen_.tocsr()[learned.user_index_.lookup(["u6"])[0]].indices
    touched = touched[one.item_counts_[touched] > 0]  # items others had too
    rows = _rows(one, "items", touched)
    moved = (one.arena_.weight[rows] - zero.arena_.weight[rows]).abs().sum(dim=1)
    assert (moved > 0).all() and np.isfinite(one.last_loss_)
    # a model's seed decides its relearning
    again = copy.deepcopy(learned)
    again.set_params(forget_passes=1)
    again.forget(users=["u6"])
    assert torch.equal(again.arena_.weight, one.arena_.weight)
    with pytest.raises(ValueError, match="forget_passes"):
        again.set_params(forget_passes=-1).forget(users=["u7"])
    assert "u7" in again.user_index_


@pytest.mark.parametrize("cls", [NeuralRecommender, SequentialRecommender])
def test_neural_exact_true_refits_on_the_kept_events_in_the_order_learned(cls, stream):
    model = _learn(_neural(cls, forget_passes=0), stream.iloc[:1_200])
    users, items = [GONE_USER, "u3"], [stream["item"].iloc[10]]
    kept = copy.deepcopy(model)
    kept.forget(users=users, items=items)  # the same events dropped, no refit
    model.forget(users=users, items=items, exact=True)
    frame = kept.kept_events()
    # in the order learned: the kept stream as it came
    part = stream.iloc[:1_200]
    part = part[~part["user"].isin(users) & ~part["item"].isin(items)]
    np.testing.assert_array_equal(frame["user"], part["user"])
    np.testing.assert_array_equal(frame["item"], part["item"])
    refit = _neural(cls, forget_passes=0).fit(frame)
    assert torch.equal(model.arena_.weight, refit.arena_.weight)
    assert torch.equal(model.arena_.accum, refit.arena_.accum)
    assert GONE_USER not in model.user_index_ and items[0] not in model.item_index_
    assert model.n_events_ == kept.n_events_ == refit.n_events_


def test_neural_hashed_rows_shared_with_others_are_relearned(stream):
    model = _learn(_neural(NeuralRecommender, hash_buckets=16), stream.iloc[:1_200])
    u = model.user_index_.lookup([GONE_USER])
    row = _rows(model, "users", u)
    sharing = np.flatnonzero(_rows(model, "users", np.arange(model.n_users)) == row[0])
    assert sharing.size > 1  # 16 buckets for 50 users
    model.forget(users=[GONE_USER])
    # the bucket was zeroed, then relearned from the kept events of the ids sharing it
    assert model.arena_.weight[row].abs().sum() > 0


def test_neural_from_a_file_without_the_event_log_or_buffer_count(stream, tmp_path):
    model = _learn(_neural(SequentialRecommender), stream.iloc[:1_000])
    held = len(model.buffer_)
    del model.log_, model.buffer_.n_held  # as a file written before forgetting existed
    path = tmp_path / "old.recinc"
    model.save(path)
    old = SequentialRecommender.load(path)
    assert old.log_ is None and len(old.buffer_) == held
    old.forget(users=[GONE_USER])  # approximate: no log needed
    assert GONE_USER not in old.user_index_ and old.log_ is None
    # without the log a forgotten item leaves the rings, the later items keep their order
    rings = old.hist_[: old.n_users]
    values, counts = np.unique(rings[rings > 0], return_counts=True)
    i = int(values[np.argmax(counts)]) - 1
    holders = np.flatnonzero((rings == i + 1).any(axis=1))
    assert holders.size > 1
    recent = old._recent_items(holders)
    old.forget(items=old.item_index_.ids_of([i]))
    assert not (old.hist_ == i + 1).any()
    for before_row, after_row in zip(recent, old._recent_items(holders), strict=True):
        np.testing.assert_array_equal(after_row[after_row > 0],
                                      before_row[(before_row > 0) & (before_row != i + 1)])
    frame = old.kept_events()  # by index (the order is not known): each user's together
    assert len(frame) == old.n_events_
    assert (frame["user"] != frame["user"].shift()).sum() == frame["user"].nunique()
    old.forget(users=["u2"], exact=True)
    assert "u2" not in old.user_index_ and old.n_events_ == len(frame) - (
        frame["user"] == "u2").sum()
