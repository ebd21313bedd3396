"""``forget`` in the rating models: Surprise's algorithms and River's reco models.

Surprise: the forgotten ids leave the adapter's history and arrays and the wrapped algorithm's
trainset (ratings, raw-id maps) and factors; deterministic algorithms refit and equal a model
fitted without the events, SVD/SVD++/NMF are cut and re-trained. River: every dict inside the
wrapped model (biases, latents, optimiser state) loses the forgotten ids, side by side, the
global mean and step counts lose their ratings. Real libraries, small synthetic streams.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("surprise")
pytest.importorskip("river")

from river import optim, reco

import recinc_plugins
from recinc_plugins.adapters.river import RiverBaseline, RiverBiasedMF, RiverFunkMF, RiverRanker
from recinc_plugins.adapters.surprise import (
    SurpriseAdapter,
    SurpriseBaselineOnly,
    SurpriseKNNBasic,
    SurpriseNMF,
    SurpriseSlopeOne,
    SurpriseSVD,
    SurpriseSVDpp,
)
from recinc_plugins.data import synthetic_stream

GONE_USER = "gone-user-5d1b"
GONE_ITEM = "gone-item-a07c"
SURPRISE = [n for n in recinc_plugins.list_models()["name"] if n.startswith("surprise-")]


@pytest.fixture(scope="module")
def stream() -> pd.DataFrame:
    """1,500 ratings, 60 users, 90 items, string ids; one user and one item renamed to ids
    that appear nowhere else, so a byte search for them means something."""
    frame = synthetic_stream(n_events=1_500, n_users=60, n_items=90, seed=11,
                             feedback="explicit")
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    gone_user = frame["user"].value_counts().index[0]
    gone_item = frame["item"].value_counts().index[0]
    frame["user"] = frame["user"].replace(gone_user, GONE_USER)
    frame["item"] = frame["item"].replace(gone_item, GONE_ITEM)
    return frame


def _kept(frame: pd.DataFrame, users=(GONE_USER,), items=(GONE_ITEM,)) -> pd.DataFrame:
    return frame[~frame["user"].isin(users) & ~frame["item"].isin(items)]


def _learn(model, frame: pd.DataFrame):
    model.fit(frame.iloc[:1_000])
    for start in range(1_000, len(frame), 250):
        model.partial_fit(frame.iloc[start:start + 250])
    return model


def _leaves(obj, seen=None):
    """Every key, value and attribute reachable from ``obj`` that could hold an id: dict keys
    and values, list/tuple/set elements, object attributes, object arrays' elements."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (int, float, bool, type(None), np.number)):
        return
    seen.add(id(obj))
    if isinstance(obj, (str, bytes)):
        yield obj
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for value in obj.ravel().tolist():
                yield from _leaves(value, seen)
    elif isinstance(obj, (pd.Index, pd.Series)):
        yield from _leaves(obj.to_numpy(), seen)
    elif isinstance(obj, dict):
        for key, value in list(obj.items()):
            yield key
            yield from _leaves(key, seen)
            yield from _leaves(value, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            yield value
            yield from _leaves(value, seen)
    elif hasattr(obj, "__dict__") and not callable(obj):
        for value in vars(obj).values():
            yield from _leaves(value, seen)
    elif hasattr(obj, "__slots__"):
        for name in obj.__slots__:
            yield from _leaves(getattr(obj, name, None), seen)


def _assert_no_trace(model, tmp_path, *ids) -> None:
    found = [leaf for leaf in _leaves(model.__dict__) if isinstance(leaf, str) and leaf in ids]
    assert not found, f"traces in the model: {found}"
    path = tmp_path / "model.recinc"
    model.save(path)
    data = path.read_bytes()
    for id_ in ids:
        assert id_.encode() not in data and id_.encode("utf-16-le") not in data


# -- Surprise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SURPRISE)
def test_surprise_forget_leaves_no_trace_and_learning_goes_on(name, stream, tmp_path):
    model = _learn(recinc_plugins.make(name, refit_every=400), stream)
    trainset = model.model_.trainset
    trainset.to_raw_uid(0), trainset.to_raw_iid(0)  # fills Surprise's inner -> raw caches
    assert GONE_USER in trainset._raw2inner_id_users
    report = model.forget(users=[GONE_USER], items=[GONE_ITEM])
    gone = (stream["user"] == GONE_USER) | (stream["item"] == GONE_ITEM)
    assert report.events == int(gone.sum()) and model._n_hist == int((~gone).sum())

    algo, trainset = model.model_, model.model_.trainset
    assert GONE_USER not in trainset._raw2inner_id_users
    assert GONE_ITEM not in trainset._raw2inner_id_items
    assert trainset.n_users == len(trainset.ur) == len(trainset._raw2inner_id_users)
    assert trainset.n_items == len(trainset.ir) == len(trainset._raw2inner_id_items)
    assert trainset.n_ratings == sum(map(len, trainset.ur.values()))
    for attr, n in (("pu", trainset.n_users), ("bu", trainset.n_users),
                    ("qi", trainset.n_items), ("bi", trainset.n_items)):
        if getattr(algo, attr, None) is not None:
            assert np.asarray(getattr(algo, attr)).shape[0] == n, attr
    u = model.user_index_.lookup(["u1"])[0]
    assert model.user_inner_[u] == trainset.to_inner_uid("u1")
    _assert_no_trace(model, tmp_path, GONE_USER, GONE_ITEM)

    model.partial_fit(stream.iloc[:450].replace({"u1": GONE_USER}))  # a refit comes due
    assert GONE_USER in model.model_.trainset._raw2inner_id_users
    assert np.isfinite(model.score(GONE_USER, ["i1", "i2", "i3"])).all()


@pytest.mark.parametrize("make", [
    pytest.param(lambda: SurpriseKNNBasic(k=10, refit_every=400), id="knn"),
    pytest.param(lambda: SurpriseKNNBasic(sim_options={"user_based": False}, window=900,
                                          refit_every=300), id="knn-items-window"),
    pytest.param(lambda: SurpriseBaselineOnly(refit_every=None), id="baseline-fold-in"),
    pytest.param(lambda: SurpriseBaselineOnly(bsl_options={"method": "sgd"}), id="baseline-sgd"),
    pytest.param(lambda: SurpriseSlopeOne(refit_every=None), id="slopeone"),
    pytest.param(lambda: recinc_plugins.make("surprise-coclustering", seed=3), id="coclustering"),
])
def test_deterministic_surprise_models_forget_exactly(make, stream):
    model = _learn(make(), stream)
    assert model.forgets_exactly
    report = model.forget(users=[GONE_USER, "u2"], items=[GONE_ITEM])
    assert report.exact
    kept = _kept(stream, users=(GONE_USER, "u2"))
    fresh = make().fit(kept)
    users = [*sorted(set(kept["user"]))[:20], "never-seen"]
    items = sorted(set(kept["item"]))
    for user in users:
        np.testing.assert_allclose(model.score(user, items), fresh.score(user, items),
                                   rtol=1e-12, atol=1e-12)
    model.partial_fit(stream.iloc[:300])  # learning goes on
    fresh.partial_fit(stream.iloc[:300])
    np.testing.assert_allclose(model.score("u1", items), fresh.score("u1", items), atol=1e-12)


@pytest.mark.parametrize("cls", [SurpriseSVD, SurpriseNMF])
def test_svd_and_nmf_cut_keeps_the_algorithm_and_the_arrays_in_step(cls, stream):
    # with no re-training the cut model is the refit less the forgotten rows: the adapter's
    # scores are Surprise's own estimate on the cut trainset, pair for pair
    model = cls(n_factors=4, seed=0, refit_every=None).fit(stream)
    assert not model.forgets_exactly
    before = model.user_factors_.copy()
    original = type(model)._forget
    try:
        type(model)._forget = lambda self, removed: original(self, removed, epochs=0)
        model.forget(users=[GONE_USER], items=[GONE_ITEM])
    finally:
        type(model)._forget = original
    algo, trainset = model.model_, model.model_.trainset
    kept = _kept(stream)
    assert model.mu_ == pytest.approx(kept["rating"].mean(), rel=1e-12)
    assert trainset.n_ratings == len(kept)
    users, items = kept["user"].to_numpy()[:300], kept["item"].to_numpy()[:300]
    ours = model.score(users, items)
    theirs = [algo.estimate(trainset.to_inner_uid(u), trainset.to_inner_iid(i))
              for u, i in zip(users, items, strict=True)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    # an untouched user keeps its factors; touched ones (they rated the item) too at epochs=0
    u = model.user_index_.lookup(["u1"])[0]
    np.testing.assert_array_equal(model.user_factors_[u], before[u])


def test_svd_forget_retrains_the_touched_rows_only(stream):
    model = SurpriseSVD(n_factors=4, seed=0, refit_every=None).fit(stream)
    items_before = model.item_factors_.copy()
    users_before = model.user_factors_.copy()
    touched = set(stream.loc[stream["user"] == GONE_USER, "item"])
    model.forget(users=[GONE_USER])
    index = model.item_index_
    changed = {index.ids[n] for n in np.flatnonzero(
        np.any(model.item_factors_ != items_before, axis=1)) if not index.dead[n]}
    assert changed and changed <= touched  # SGD steps on the items the user rated
    live = ~model.user_index_.dead
    np.testing.assert_array_equal(model.user_factors_[live], users_before[live])
    assert np.all(model.user_factors_[~live] == 0) and not model.has_user_[~live].any()


def test_svdpp_forgetting_an_item_recomputes_its_raters_implicit_term(stream, tmp_path):
    model = SurpriseSVDpp(n_factors=3, n_epochs=5, seed=0, refit_every=None).fit(stream)
    model.forget(items=[GONE_ITEM])
    algo, trainset = model.model_, model.model_.trainset
    rater = stream.loc[stream["item"] == GONE_ITEM, "user"].iloc[0]
    u = model.user_index_.lookup([rater])[0]
    assert np.isfinite(model.user_factors_[u]).all() and model.has_user_[u]
    assert algo.yj.shape[0] == trainset.n_items == algo.qi.shape[0]
    _assert_no_trace(model, tmp_path, GONE_ITEM)


def test_surprise_exact_true_refits_on_the_kept_stream_in_its_order(stream):
    make = lambda: SurpriseSVD(n_factors=4, seed=1, refit_every=None)  # noqa: E731
    model = _learn(make(), stream)
    assert model.forget(users=[GONE_USER], items=[GONE_ITEM], exact=True).exact
    fresh = make().fit(_kept(stream))
    items = sorted(set(_kept(stream)["item"]))
    np.testing.assert_array_equal(model.score("u3", items), fresh.score("u3", items))
    # not the kept pairs in index order (kept_events): KNN's neighbours, on ties, are the
    # first in inner-id order, so the order of the events matters even to a deterministic refit
    knn = _learn(SurpriseKNNBasic(k=10), stream)
    knn.forget(users=[GONE_USER], exact=True)
    in_order = SurpriseKNNBasic(k=10).fit(_kept(stream, items=()))
    np.testing.assert_array_equal(knn.score("u3", items), in_order.score("u3", items))
    shuffled = SurpriseKNNBasic(k=10).fit(knn.kept_events())
    assert not np.array_equal(knn.score("u3", items), shuffled.score("u3", items))


def test_surprise_forgetting_every_user_leaves_an_unfitted_model_that_learns_again(stream):
    model = SurpriseSVD(n_factors=3, seed=0).fit(stream.iloc[:200])
    model.forget(users=sorted(set(stream["user"].iloc[:200])))
    assert model.model_ is None and model._n_hist == 0 and not model.has_item_.any()
    assert np.isnan(model.score("u1", ["i1"])).all()  # no rating left to take a mean of
    model.partial_fit(stream.iloc[200:400])
    assert np.isfinite(model.score("u1", ["i1"])).all()


def test_svd_whose_refit_learned_only_forgotten_events_refits_on_the_rest(stream):
    first = stream["user"].iloc[0]
    model = SurpriseSVD(n_factors=3, seed=0, refit_every=None).fit(
        stream[stream["user"] == first])
    model.partial_fit(stream[stream["user"] != first])  # folded in, not refit
    model.forget(users=[first])
    assert model.n_refits_ == 2
    fresh = SurpriseSVD(n_factors=3, seed=0).fit(stream[stream["user"] != first])
    items = sorted(set(stream["item"]))
    np.testing.assert_array_equal(model.score("u3", items), fresh.score("u3", items))


def test_surprise_forget_refuses_a_bad_budget(stream):
    model = SurpriseSVD(n_factors=3, seed=0).fit(stream.iloc[:200])
    removed = model._forget_shared(model.user_index_.lookup(["u1"]), np.empty(0, np.int64))
    with pytest.raises(ValueError, match="epochs must be an integer >= 0"):
        model._forget(removed, epochs=-1)


def test_a_generic_adapter_says_whether_a_refit_is_exact():
    import surprise

    assert SurpriseAdapter(surprise.KNNBasic()).forgets_exactly
    assert SurpriseAdapter(surprise.CoClustering(random_state=1)).forgets_exactly
    assert not SurpriseAdapter(surprise.CoClustering()).forgets_exactly
    assert not SurpriseAdapter(surprise.SVD(random_state=1)).forgets_exactly
    assert not SurpriseAdapter(surprise.NormalPredictor()).forgets_exactly


# -- River -------------------------------------------------------------------------------------

RIVER = [
    pytest.param(lambda: RiverBaseline(optimizer=optim.SGD(0.02)), id="baseline"),
    pytest.param(lambda: RiverBiasedMF(n_factors=4, seed=2), id="biasedmf"),
    pytest.param(lambda: RiverBiasedMF(n_factors=4, seed=2, bias_optimizer=optim.AdaGrad(0.1),
                                       latent_optimizer=optim.Adam(0.01)), id="biasedmf-adam"),
    pytest.param(lambda: RiverFunkMF(n_factors=4, seed=2, optimizer=optim.Momentum(0.02)),
                 id="funkmf-momentum"),
]


@pytest.mark.parametrize("make", RIVER)
def test_river_forget_deletes_the_ids_everywhere_inside_the_model(make, stream, tmp_path):
    model = _learn(make(), stream)
    model.recommend(["u1"], k=3)  # the mirrored arrays are filled
    inside = set(_leaves(model.model_))
    assert GONE_USER in inside and GONE_ITEM in inside
    report = model.forget(users=[GONE_USER], items=[GONE_ITEM])
    inside = set(_leaves(model.model_))
    assert GONE_USER not in inside and GONE_ITEM not in inside
    assert not report.exact and not model.forgets_exactly
    kept = _kept(stream)
    river = model.model_
    if hasattr(river, "global_mean"):
        assert river.global_mean.n == len(kept)
        assert river.global_mean.get() == pytest.approx(kept["rating"].mean(), rel=1e-12)
    from recinc_plugins.adapters.river import _optimizers

    assert {o.n_iterations for o in _optimizers(river)} == {len(kept)}
    _assert_no_trace(model, tmp_path, GONE_USER, GONE_ITEM)

    # learning goes on, and the adapter still scores as River does
    model.partial_fit(stream.iloc[:300].replace({"u1": GONE_USER}))
    native = copy.deepcopy(model.model_)
    users, items = kept["user"].to_numpy()[:200], kept["item"].to_numpy()[:200]
    expected = [native.predict_one(u, i) for u, i in zip(users, items, strict=True)]
    np.testing.assert_allclose(model.score(users, items), expected, rtol=1e-12)
    block = model.recommend(["u1", GONE_USER], k=model.item_index_.n_live,
                            exclude_seen=False).to_frame()
    assert GONE_ITEM not in set(block["item"])


def test_river_forget_is_side_by_side_when_a_user_and_an_item_share_an_id():
    # ints: user 0 and item 0 both exist, and 0 is also the filler the id map leaves behind
    frame = synthetic_stream(n_events=400, n_users=30, n_items=30, seed=4, feedback="explicit")
    assert {0, 3} <= set(frame["user"]) & set(frame["item"])
    model = RiverBiasedMF(n_factors=3, seed=1).fit(frame)
    item_3 = model.model_.i_latents[3].copy()
    user_0 = (model.model_.u_biases[0], model.model_.u_latents[0].copy())
    model.forget(users=[3])
    river = model.model_
    assert 3 not in river.u_biases and 3 not in river.u_latents
    np.testing.assert_array_equal(river.i_latents[3], item_3)  # item 3 is not user 3
    slot = int(np.flatnonzero(model.user_index_.dead)[0])
    assert model._user_keys[slot] is None  # never the filler 0, a live user's key
    assert river.u_biases[0] == user_0[0]
    np.testing.assert_array_equal(river.u_latents[0], user_0[1])
    native = copy.deepcopy(river)
    np.testing.assert_allclose(model.score(0, list(range(30))),
                               [native.predict_one(0, i) for i in range(30)], rtol=1e-12)
    model.partial_fit(frame[frame["user"] == 3])  # user 3 comes back as a new id
    assert 3 in model.model_.u_biases and 3 in model.user_index_


def test_river_forgetting_every_user_empties_the_model_and_it_learns_again(stream):
    model = RiverBiasedMF(n_factors=3, seed=0).fit(stream.iloc[:300])
    model.forget(users=sorted(set(stream["user"].iloc[:300])))
    river = model.model_
    assert not river.u_biases and not river.u_latents and river.global_mean.n == 0
    model.partial_fit(stream.iloc[300:400])
    native = copy.deepcopy(model.model_)
    user, item = stream["user"].iloc[350], stream["item"].iloc[350]
    assert model.score(user, [item])[0] == native.predict_one(user, item)


def test_river_retraining_the_touched_rows_moves_only_them(stream):
    model = _learn(RiverBiasedMF(n_factors=4, seed=2), stream)
    river = model.model_
    touched = set(stream.loc[stream["user"] == GONE_USER, "item"])
    before = {i: river.i_latents[i].copy() for i in river.i_latents}
    users_before = {u: river.u_latents[u].copy() for u in river.u_latents}
    removed = model._forget_shared(model.user_index_.lookup([GONE_USER]),
                                   np.empty(0, dtype=np.int64))
    model._forget(removed, epochs=2)
    moved = {i for i in river.i_latents if not np.array_equal(river.i_latents[i], before[i])}
    assert moved and moved <= touched
    assert all(np.array_equal(river.u_latents[u], users_before[u]) for u in river.u_latents)
    model._sync_arrays()
    for item in sorted(moved)[:5]:
        n = model.item_index_.lookup([item])[0]
        np.testing.assert_array_equal(model.item_latent_[n], river.i_latents[item])


@pytest.mark.parametrize("make", RIVER[:2])
def test_river_exact_true_equals_a_fit_on_the_kept_events(make, stream):
    model = _learn(make(), stream)
    twin = copy.deepcopy(model)
    twin.forget(users=[GONE_USER])  # the same shared state: the events the retrain learns
    assert model.forget(users=[GONE_USER], exact=True).exact
    fresh = make().fit(twin.kept_events())
    users, items = stream["user"].to_numpy()[5:205], stream["item"].to_numpy()[5:205]
    np.testing.assert_array_equal(model.score(users, items), fresh.score(users, items))


def test_a_river_ranker_the_adapter_cannot_read_is_retrained(stream, tmp_path):
    with pytest.warns(UserWarning, match="predict_one"):
        model = RiverRanker(reco.RandomNormal(seed=1)).fit(stream)
    with pytest.warns(UserWarning, match="predict_one"):  # the refit builds it again
        assert model.forget(users=[GONE_USER]).exact
    _assert_no_trace(model, tmp_path, GONE_USER)
