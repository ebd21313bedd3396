"""The LightFM adapter against the real library."""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("lightfm")

from recinc_plugins.adapters.lightfm import LightFMRecommender
from recinc_plugins.base import Batch

SMALL = {"no_components": 8, "num_threads": 1, "seed": 0, "fit_epochs": 5}
STATE = [f"{side}_{suffix}" for side in ("user", "item") for suffix in (
    "embeddings", "embedding_gradients", "embedding_momentum",
    "biases", "bias_gradients", "bias_momentum")]


def _assert_layout(model, n_user_rows: int, n_item_rows: int) -> None:
    for name in STATE:
        array = getattr(model.model_, name)
        rows = n_user_rows if name.startswith("user") else n_item_rows
        expected = (rows, 8) if "embedding" in name else (rows,)
        assert array.shape == expected, name
        assert array.dtype == np.float32, name
        assert array.flags.c_contiguous, name


@pytest.mark.parametrize("schedule", ["adagrad", "adadelta"])
def test_growth_appends_all_twelve_arrays_as_lightfm_initialises_them(schedule,
                                                                      implicit_stream):
    model = LightFMRecommender(**SMALL, learning_schedule=schedule).fit(
        implicit_stream.iloc[:1000])
    users = implicit_stream["user"].iloc[:200].to_numpy()
    items = implicit_stream["item"].iloc[:200].to_numpy()
    before = model.score(users, items)
    n_users, n_items = model.n_users, model.n_items

    model.user_index_.add(np.array(["grown-u"], dtype=object))
    model.item_index_.add(np.array(["grown-i1", "grown-i2"], dtype=object))
    model._sync_size()

    np.testing.assert_array_equal(model.score(users, items), before)
    _assert_layout(model, n_users + 1, n_items + 2)
    lfm = model.model_
    start = 1.0 if schedule == "adagrad" else 0.0
    assert np.all(lfm.item_embedding_gradients[n_items:] == start)
    assert np.all(lfm.item_bias_gradients[n_items:] == start)
    assert np.all(lfm.user_embedding_gradients[n_users:] == start)
    for name in ("item_embedding_momentum", "item_biases", "item_bias_momentum"):
        assert np.all(getattr(lfm, name)[n_items:] == 0.0), name
    fresh = lfm.item_embeddings[n_items:]
    assert np.all(np.abs(fresh) <= 0.5 / 8) and np.any(fresh != 0)


def test_new_users_and_items_are_recommendable_after_one_partial_fit(implicit_stream):
    model = LightFMRecommender(**SMALL).fit(implicit_stream.iloc[:1500])
    old_user = implicit_stream["user"].iloc[0]
    model.partial_fit(pd.DataFrame({
        "user": ["fresh", "fresh", old_user],
        "item": ["fresh-item", implicit_stream["item"].iloc[3], "fresh-item"],
    }))
    _assert_layout(model, model.n_users, model.n_items)
    recs = model.recommend(["fresh"], k=5)
    assert not recs.cold[0] and np.isfinite(recs.scores).all()
    offered = model.recommend([implicit_stream["user"].iloc[7]], k=1,
                              candidates=["fresh-item"], exclude_seen=False)
    assert offered.items[0, 0] == "fresh-item"
    # scores agree with LightFM's own predict on the grown model
    u = model.user_index_.lookup(["fresh"] * model.n_items)
    i = np.arange(model.n_items, dtype=np.int32)
    native = model.model_.predict(u.astype(np.int32), i)
    np.testing.assert_allclose(model._score_users(u[:1])[0], native, rtol=1e-5, atol=1e-5)


def test_replay_mixes_earlier_events_into_each_step(implicit_stream):
    model = LightFMRecommender(**SMALL, replay=3.0).fit(implicit_stream.iloc[:1000])
    step = implicit_stream.iloc[1000:1100]
    u, i = model.add_ids(step["user"], step["item"])
    users, items, _ = model._step_events(Batch(u, i), replay=True)
    assert users.size == items.size == 400
    np.testing.assert_array_equal(users[:100], u)
    np.testing.assert_array_equal(items[:100], i)
    # the other 300 are earlier events, drawn from the history
    learned = model.history_.tocsr()
    assert (np.asarray(learned[users[100:], items[100:]]).ravel() > 0).all()


@pytest.mark.parametrize("loss", ["warp", "bpr", "logistic", "warp-kos"])
def test_every_loss_learns_and_grows(loss, implicit_stream):
    model = LightFMRecommender(**SMALL, loss=loss).fit(implicit_stream.iloc[:800])
    model.partial_fit(implicit_stream.iloc[800:1200])
    _assert_layout(model, model.n_users, model.n_items)
    assert np.isfinite(model.recommend(implicit_stream["user"].unique()[:5], k=3).scores).all()


def test_item_features_score_cold_items_and_grow_with_new_features(implicit_stream):
    items = implicit_stream["item"].unique()
    genre = pd.DataFrame({"drama": (np.arange(items.size) % 2).astype(float)}, index=items)
    model = LightFMRecommender(**SMALL)
    model.set_item_features(genre)
    model.partial_fit(implicit_stream.iloc[:1500])  # fit() would start over, features too
    n_rows = model.model_.item_embeddings.shape[0]
    assert n_rows == model.n_items + 1  # identity columns plus one named feature

    model.set_item_features(pd.DataFrame({"drama": [1.0], "short": [1.0]}, index=["cold-item"]))
    assert model.model_.item_embeddings.shape[0] == n_rows + 2  # its identity, "short"
    _assert_layout(model, model.n_users, n_rows + 2)
    # the cold item is known and scored through its features: the mean of its identity,
    # "drama" and "short" embeddings (rows normalised to sum 1, as lightfm.data.Dataset does)
    user = implicit_stream["user"].iloc[0]
    row = model.item_index_.lookup(["cold-item"])
    rep, _ = model._representations("item", row)
    lfm, names = model.model_, model.item_features_.names
    cols = [model.item_features_.identity[row[0]], names["drama"], names["short"]]
    np.testing.assert_allclose(rep[0], lfm.item_embeddings[cols].mean(axis=0), rtol=1e-5)
    assert np.linalg.norm(lfm.item_embeddings[names["drama"]]) > 0  # learned from the stream
    offered = model.recommend([user], k=1, candidates=["cold-item"])
    assert offered.items[0, 0] == "cold-item" and not offered.cold[0]
    model.partial_fit(pd.DataFrame({"user": [user], "item": ["cold-item"]}))
    _assert_layout(model, model.n_users, n_rows + 2)


def test_user_features_make_unknown_users_scorable(implicit_stream):
    users = implicit_stream["user"].unique()
    model = LightFMRecommender(**SMALL)
    model.set_user_features(pd.DataFrame({"old": (np.arange(users.size) % 3 == 0) * 1.0},
                                         index=users))
    model.partial_fit(implicit_stream.iloc[:1500])
    model.set_user_features(pd.DataFrame({"old": [1.0]}, index=["newcomer"]))
    recs = model.recommend(["newcomer", "stranger"], k=3)
    assert recs.cold.tolist() == [False, True]


@pytest.mark.parametrize(
    ("features", "error", "match"),
    [
        (np.ones((3, 2)), TypeError, "must be a pandas DataFrame indexed by item id"),
        (pd.DataFrame({"f": [1.0, 2.0]}, index=["a", "a"]), ValueError, "duplicated item ids"),
        (pd.DataFrame({"f": ["x", "y"]}, index=["a", "b"]), ValueError, "must be numeric"),
        (pd.DataFrame({"f": [1.0, np.nan]}, index=["a", "b"]), ValueError, "non-finite values"),
        (pd.DataFrame([[1.0, 2.0]], columns=["f", "f"], index=["a"]), ValueError,
         "duplicated feature columns"),
    ],
)
def test_mismatched_feature_frames_raise_clear_errors(features, error, match):
    with pytest.raises(error, match=match):
        LightFMRecommender(**SMALL).set_item_features(features)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"loss": "hinge"}, "loss must be one of"),
        ({"learning_schedule": "adam"}, "learning_schedule must be one of"),
        ({"no_components": 0}, "no_components must be an integer >= 1"),
        ({"epochs": 1.5}, "epochs must be an integer >= 1"),
        ({"replay": -1}, "replay must be a finite number >= 0"),
        ({"learning_rate": 0}, "learning_rate must be a finite number > 0"),
        ({"rho": 1.0}, "rho must be strictly between 0 and 1"),
        ({"loss": "warp-kos", "use_weights": True}, "use_weights=True is not possible"),
    ],
)
def test_bad_parameters_raise_clear_errors(params, match, implicit_stream):
    with pytest.raises(ValueError, match=match):
        LightFMRecommender(**params).fit(implicit_stream.iloc[:50])


def test_save_load_round_trips_recommendations_and_training(implicit_stream, tmp_path):
    model = LightFMRecommender(**SMALL).fit(implicit_stream.iloc[:1000]).partial_fit(
        implicit_stream.iloc[1000:1300])
    path = tmp_path / "lightfm.recinc"
    model.save(path)
    loaded = LightFMRecommender.load(path)
    users = implicit_stream["user"].unique()[:20]
    a, b = model.recommend(users, k=10), loaded.recommend(users, k=10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    model.partial_fit(implicit_stream.iloc[1300:1400])
    loaded.partial_fit(implicit_stream.iloc[1300:1400])
    np.testing.assert_array_equal(loaded.model_.item_embeddings, model.model_.item_embeddings)


def test_weights_reach_lightfm_as_sample_weights(implicit_stream):
    # a step's weights change what it learns, exactly as fit_partial's sample_weight does
    # (test_small_steps_learn_exactly_what_fit_partial_learns checks every number)
    weighted = LightFMRecommender(**SMALL, use_weights=True, replay=0.0).fit(
        implicit_stream.iloc[:500])
    reference = _through_fit_partial(weighted)
    step = implicit_stream.iloc[500:600]
    assert step["weight"].nunique() > 1
    weighted.partial_fit(step)
    reference.partial_fit(step)
    _assert_same_state(weighted, reference)
    unweighted = LightFMRecommender(**SMALL, use_weights=True, replay=0.0).fit(
        implicit_stream.iloc[:500]).partial_fit(step.assign(weight=1.0))
    assert not np.array_equal(weighted.model_.user_embeddings,
                              unweighted.model_.user_embeddings)


@pytest.mark.data
def test_incremental_lightfm_on_ml100k_stays_near_a_refit(ml100k):
    """After 40,000 events and a 1,000-event step: known users' recall@10 on the next 2,000
    events within 0.02 (absolute) of refitting from scratch, with every array grown."""
    first, step = ml100k.iloc[:40_000], ml100k.iloc[40_000:41_000]
    test = ml100k.iloc[41_000:43_000]
    test = test[test["user"].isin(pd.concat([first, step])["user"])]
    incremental = LightFMRecommender(seed=0).fit(first)
    n_users = incremental.n_users
    incremental.partial_fit(step)
    assert incremental.n_users > n_users
    for name in STATE:
        array = getattr(incremental.model_, name)
        rows = incremental.n_users if name.startswith("user") else incremental.n_items
        assert array.shape[0] == rows and array.dtype == np.float32, name
    refit = LightFMRecommender(seed=0).fit(pd.concat([first, step]))

    def recall(model):
        uniq, inverse = np.unique(test["user"].to_numpy(), return_inverse=True)
        items = model.recommend(uniq, k=10).items[inverse]
        return float((items == test["item"].to_numpy()[:, None]).any(axis=1).mean())

    rec_inc, rec_refit = recall(incremental), recall(refit)
    assert rec_refit > 0.03
    assert abs(rec_inc - rec_refit) <= 0.02, (rec_inc, rec_refit)


def test_missing_lightfm_raises_an_import_error_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lightfm", None)  # what an absent package looks like
    with pytest.raises(ImportError, match=r"recinc-plugins\[lightfm\]"):
        LightFMRecommender().fit(pd.DataFrame({"user": [1], "item": [2]}))


def test_an_empty_fit_leaves_the_model_to_train_fully_on_the_next_batch(implicit_stream):
    model = LightFMRecommender(**SMALL).fit(implicit_stream.iloc[:0])
    assert not model.is_fitted
    model.partial_fit(implicit_stream.iloc[:500])
    _assert_layout(model, model.n_users, model.n_items)


def test_weighted_lightfm_refuses_non_positive_strengths(implicit_stream):
    model = LightFMRecommender(no_components=4, use_weights=True, seed=0)
    bad = implicit_stream.head(5).assign(weight=[1.0, 2.0, -1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"use_weights=True needs positive strengths; 2 "
                                         r"event\(s\) .* \(positions \[2, 4\]\)"):
        model.fit(bad)


# -- small steps: LightFM's epoch routine on the rows a step reaches (issue 16) -----------------


class _ThroughFitPartial(LightFMRecommender):
    """The reference: every step after the first trained by LightFM's own ``fit_partial`` on
    a full-shape matrix of the step's events (built here), as the adapter used to train."""

    def _fit_rows(self, users, items, values, epochs):
        shape = (self.n_users, self.n_items)
        interactions = sp.coo_matrix(
            (np.ones(users.size, dtype=np.float32),
             (users.astype(np.int32), items.astype(np.int32))), shape=shape)
        weights = None
        if self.use_weights:
            weights = sp.coo_matrix((values.astype(np.float32),
                                     (interactions.row, interactions.col)), shape=shape)
        side = self.user_features_.has_side or self.item_features_.has_side
        self.model_.fit_partial(
            interactions, sample_weight=weights, epochs=epochs, num_threads=self.num_threads,
            user_features=self.user_features_.matrix() if side else None,
            item_features=self.item_features_.matrix() if side else None)


def _through_fit_partial(model):
    twin = copy.deepcopy(model)
    twin.__class__ = _ThroughFitPartial
    return twin


def _assert_same_state(model, reference):
    for name in STATE:
        np.testing.assert_array_equal(getattr(model.model_, name),
                                      getattr(reference.model_, name), err_msg=name)
    ours, theirs = model.model_.random_state.get_state(), reference.model_.random_state.get_state()
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert ours[2:] == theirs[2:]


def _with_features(model, stream):
    users, items = stream["user"].unique(), stream["item"].unique()
    model.set_user_features(pd.DataFrame({"group": (np.arange(users.size) % 2) * 1.0},
                                         index=users))
    model.set_item_features(pd.DataFrame({"a": (np.arange(items.size) % 2) * 1.0,
                                          "b": (np.arange(items.size) % 3 == 0) * 0.5},
                                         index=items))
    return model


CASES = [(loss, weights, side) for loss in ("warp", "bpr", "logistic", "warp-kos")
         for weights in (False, True) for side in (False, True)
         if not (loss == "warp-kos" and weights)]


@pytest.mark.parametrize(("loss", "use_weights", "side"), CASES)
def test_small_steps_learn_exactly_what_fit_partial_learns(loss, use_weights, side,
                                                           implicit_stream):
    """Bit for bit, LightFM's random state included: one-event steps (the rows reached,
    WARP's negatives among 3,000 items that no event has) and 40-event steps (WARP
    reaching every item: LightFM's own item arrays)."""
    model = LightFMRecommender(**SMALL, loss=loss, use_weights=use_weights)
    if side:
        model = _with_features(model, implicit_stream)
        model.partial_fit(implicit_stream.iloc[:600])  # fit() would drop the features
    else:
        model.fit(implicit_stream.iloc[:600])
    model.add_ids(items=[f"unseen-{j}" for j in range(3_000)])
    reference = _through_fit_partial(model)
    steps = [implicit_stream.iloc[j:j + 1] for j in range(600, 640)]
    steps += [implicit_stream.iloc[j:j + 40] for j in range(640, 760, 40)]
    steps.append(pd.DataFrame({"user": ["new-user"], "item": ["new-item"], "weight": 2.0}))
    for step in steps:
        model.partial_fit(step)
        reference.partial_fit(step)
    _assert_same_state(model, reference)


@pytest.mark.parametrize("params", [
    {"item_alpha": 1e-3, "user_alpha": 1e-3},  # every row moves: LightFM's own arrays
    {"user_alpha": 1e-3},
    {"learning_schedule": "adadelta"},
    {"num_threads": 2, "replay": 0.0},  # one event per call: one thread works, the same numbers
    {"num_threads": 2, "replay": 0.0, "loss": "warp-kos"},
])
def test_small_steps_match_fit_partial_with_penalties_adadelta_and_threads(params,
                                                                           implicit_stream):
    model = LightFMRecommender(**{**SMALL, **params}).fit(implicit_stream.iloc[:600])
    model.add_ids(items=[f"unseen-{j}" for j in range(3_000)])
    reference = _through_fit_partial(model)
    for j in range(600, 630):
        model.partial_fit(implicit_stream.iloc[j:j + 1])
        reference.partial_fit(implicit_stream.iloc[j:j + 1])
    _assert_same_state(model, reference)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_step_that_diverges_raises_lightfms_error_with_the_same_state(implicit_stream):
    # a learning rate that tiny weights keep finite, and a step weight that overflows it
    model = LightFMRecommender(**SMALL, loss="bpr", use_weights=True, learning_rate=1e5).fit(
        implicit_stream.iloc[:600].assign(weight=1e-6))
    model.add_ids(items=[f"unseen-{j}" for j in range(3_000)])
    reference = _through_fit_partial(model)
    huge = implicit_stream.iloc[600:601].assign(weight=3e38)
    message = "Not all estimated parameters are finite, your model may have diverged"
    with pytest.raises(ValueError, match=message):
        reference.partial_fit(huge)
    with pytest.raises(ValueError, match=message):
        model.partial_fit(huge)
    assert not np.isfinite(model.model_.item_embeddings).all()
    for name in STATE:  # left as fit_partial leaves it
        np.testing.assert_array_equal(getattr(model.model_, name),
                                      getattr(reference.model_, name), err_msg=name)


def _learning_cpu(model, steps):
    model = copy.deepcopy(model)
    t0 = time.process_time()
    for u, i in steps:
        model.learn_encoded(Batch(u, i))
    return time.process_time() - t0


@pytest.mark.parametrize("loss", ["bpr", "logistic"])
def test_one_event_steps_cost_the_same_with_100_times_the_users_and_items(loss,
                                                                          implicit_stream):
    """fit_partial's work in proportion to the users and items (full-shape matrices, a
    finiteness check of every row, the routine's pass over every row) made a step on the
    large model 3.6-4.8 times dearer; the rows a step reaches cost the same in both. (BPR and
    logistic: their routine's own work is the same in both models. WARP draws negatives
    until one scores high enough, and 30,000 untrained items change how many draws that
    takes: a different computation, not more overhead.)"""
    small = LightFMRecommender(**SMALL, loss=loss).fit(implicit_stream.iloc[:600])
    large = copy.deepcopy(small)
    large.add_ids(users=[f"extra-u{j}" for j in range(30_000)],
                  items=[f"extra-i{j}" for j in range(30_000)])
    events = implicit_stream.iloc[600:800]
    steps = {}
    for key, model in (("small", small), ("large", large)):
        users, items = model.add_ids(events["user"], events["item"])
        model.learn_encoded(Batch(users[:1], items[:1]))  # grows the state arrays
        steps[key] = [(users[j:j + 1], items[j:j + 1]) for j in range(1, users.size)]
    assert large.n_users > 100 * small.n_users and large.n_items > 100 * small.n_items
    best = {"small": np.inf, "large": np.inf}
    for _ in range(3):  # alternately, best of three: the machine is shared
        for key, model in (("small", small), ("large", large)):
            best[key] = min(best[key], _learning_cpu(model, steps[key]))
    assert best["large"] < 1.5 * best["small"], best
