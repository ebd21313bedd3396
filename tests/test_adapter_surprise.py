"""The Surprise adapters against Surprise itself: refits, windows, fold-in, vectorised scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

surprise = pytest.importorskip("surprise")

from recinc_plugins.adapters import surprise as adapters  # noqa: E402
from recinc_plugins.adapters.surprise import (  # noqa: E402
    SurpriseAdapter,
    SurpriseBaselineOnly,
    SurpriseKNNBasic,
    SurpriseNMF,
    SurpriseSVD,
    SurpriseSVDpp,
)

ALL = [
    pytest.param(adapters.SurpriseSVD, {"n_factors": 8, "n_epochs": 5, "seed": 0},
                 id="svd"),
    pytest.param(adapters.SurpriseSVD, {"n_factors": 8, "biased": False, "seed": 0},
                 id="svd-unbiased"),
    pytest.param(adapters.SurpriseSVDpp, {"n_factors": 4, "n_epochs": 3, "seed": 0},
                 id="svdpp"),
    pytest.param(adapters.SurpriseNMF, {"n_factors": 4, "n_epochs": 5, "seed": 0},
                 id="nmf"),
    pytest.param(adapters.SurpriseBaselineOnly, {}, id="baseline"),
    pytest.param(adapters.SurpriseKNNBasic, {"k": 10}, id="knn"),
    pytest.param(adapters.SurpriseKNNWithMeans, {"k": 10}, id="knn-means"),
    pytest.param(adapters.SurpriseKNNWithZScore, {"k": 10}, id="knn-zscore"),
    pytest.param(adapters.SurpriseKNNBaseline, {"k": 10}, id="knn-baseline"),
    pytest.param(adapters.SurpriseSlopeOne, {}, id="slopeone"),
    pytest.param(adapters.SurpriseCoClustering, {"seed": 0}, id="coclustering"),
]


def _native_trainset(frame: pd.DataFrame):
    reader = surprise.Reader(rating_scale=(1, 5))
    data = surprise.Dataset.load_from_df(frame[["user", "item", "rating"]], reader)
    return data.build_full_trainset()


def test_svd_fit_equals_native_svd_fitted_on_the_same_frame(explicit_stream):
    model = SurpriseSVD(n_factors=8, seed=0, refit_every=None).fit(explicit_stream)
    trainset = _native_trainset(explicit_stream)
    native = surprise.SVD(n_factors=8, random_state=0).fit(trainset)
    users, items = explicit_stream["user"].to_numpy(), explicit_stream["item"].to_numpy()
    expected = [native.estimate(trainset.to_inner_uid(u), trainset.to_inner_iid(i))
                for u, i in zip(users, items, strict=True)]
    np.testing.assert_allclose(model.score(users, items), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("cls", "params"), ALL)
def test_scores_equal_the_algorithms_own_estimates(cls, params, explicit_stream):
    model = cls(refit_every=None, **params).fit(explicit_stream.iloc[:2000])
    algo = model.model_
    pairs = explicit_stream.iloc[1990:2010]  # known pairs, then pairs with unknown ids
    users = [*pairs["user"].tolist(), "nobody"]
    items = [*pairs["item"].tolist(), pairs["item"].iloc[0]]
    expected = [algo.predict(u, i, clip=False).est for u, i in zip(users, items, strict=True)]
    np.testing.assert_allclose(model.score(users, items), expected, rtol=0, atol=1e-9)
    top = model.recommend(users[:3], k=5)
    assert top.items.shape == (3, 5)


@pytest.mark.parametrize("unit", ["events", "steps"])
def test_refits_happen_every_n_events_or_steps(unit, explicit_stream):
    model = SurpriseBaselineOnly(refit_every=3, refit_unit=unit).fit(explicit_stream.iloc[:500])
    for start in range(500, 800, 50):  # six steps of 50 events
        model.partial_fit(explicit_stream.iloc[start:start + 50])
    assert model.n_refits_ == 1 + (6 if unit == "events" else 2)


def test_window_refits_on_the_last_events_only(explicit_stream):
    model = SurpriseBaselineOnly(refit_every=100, window=400).fit(explicit_stream.iloc[:1000])
    assert model.model_.trainset.n_ratings == 400
    model.partial_fit(explicit_stream.iloc[1000:1100])
    assert model.model_.trainset.n_ratings == 400
    assert model.n_refits_ == 2


@pytest.mark.parametrize("cls", [SurpriseSVD, SurpriseSVDpp, SurpriseNMF, SurpriseBaselineOnly])
def test_fold_in_gives_a_new_user_a_prediction_of_their_own_before_any_refit(
        cls, explicit_stream):
    train = explicit_stream.iloc[:2000]
    new_user = pd.DataFrame({"user": ["newcomer"] * 6,
                             "item": train["item"].value_counts().index[:6],
                             "rating": [5.0] * 6})
    seed = {} if cls is SurpriseBaselineOnly else {"seed": 0}
    folded = cls(refit_every=None, **seed).fit(train).partial_fit(new_user)
    stuck = cls(refit_every=None, fold_in=False, **seed).fit(train).partial_fit(new_user)
    assert folded.n_refits_ == stuck.n_refits_ == 1
    items = train["item"].value_counts().index[:6]
    # a user who gives 5 stars everywhere is predicted above the item-only fallback
    assert (folded.score("newcomer", items) > stuck.score("newcomer", items)).all()


def test_fold_in_on_ml100k_new_users_beat_the_global_mean_before_any_refit(ml100k):
    train, step, future = ml100k[:60000], ml100k[60000:65000], ml100k[65000:75000]
    new_users = set(step["user"]) - set(train["user"])
    later = future[future["user"].isin(new_users)]
    truth = later["rating"].to_numpy()
    model = SurpriseSVD(refit_every=None, seed=0).fit(train).partial_fit(step)
    assert model.n_refits_ == 1
    rmse = float(np.sqrt(np.mean((np.clip(model.score(later["user"], later["item"]), 1, 5)
                                  - truth) ** 2)))
    global_mean = float(np.sqrt(np.mean((model.mu_ - truth) ** 2)))
    assert len(new_users) > 20 and truth.size > 200
    assert rmse < global_mean - 0.05  # measured: 0.973 against 1.079


def test_saved_adapter_scores_the_same_and_keeps_its_parameters(explicit_stream, tmp_path):
    model = SurpriseSVD(n_factors=4, seed=1, refit_every=700).fit(explicit_stream[:1000])
    model.partial_fit(explicit_stream[1000:1500])
    model.save(tmp_path / "svd.recinc")
    loaded = SurpriseSVD.load(tmp_path / "svd.recinc")
    assert loaded.get_params() == model.get_params()
    assert repr(loaded) == "SurpriseSVD(refit_every=700, seed=1, n_factors=4)"
    users, items = explicit_stream["user"], explicit_stream["item"]
    np.testing.assert_array_equal(loaded.score(users, items), model.score(users, items))
    assert loaded.clone().get_params() == model.get_params()


def test_bad_parameters_are_named(explicit_stream):
    with pytest.raises(TypeError, match="algo must be a Surprise algorithm"):
        SurpriseAdapter(algo="SVD").fit(explicit_stream)
    with pytest.raises(ValueError, match="refit_every must be an integer >= 1 or None"):
        SurpriseSVD(refit_every=0).fit(explicit_stream)
    with pytest.raises(ValueError, match="refit_unit must be one of"):
        SurpriseSVD(refit_unit="days").fit(explicit_stream)
    with pytest.raises(ValueError, match="window must be an integer >= 1 or None"):
        SurpriseSVD(window=-1).fit(explicit_stream)
    with pytest.raises(ValueError, match=r"invalid parameters for surprise\.SVD"):
        SurpriseSVD(n_factorz=3).fit(explicit_stream)


def test_a_bad_similarity_is_named_before_anything_is_learned(explicit_stream):
    events = explicit_stream.iloc[:200]
    model = SurpriseKNNBasic(sim_options={"name": "bogus"}, refit_every=None)
    with pytest.raises(ValueError, match=r"sim_options\['name'\] must be one of .*'bogus'"):
        model.partial_fit(events)
    assert not model.is_fitted
    model.set_params(sim_options={"name": "cosine"})
    model.partial_fit(events)  # the retry counts the batch once
    assert model.n_events_ == 200 and model.n_refits_ == 1
    with pytest.raises(ValueError, match=r"sim_options has unknown option\(s\) \['user-based'\]"):
        SurpriseKNNBasic(sim_options={"user-based": False}).fit(events)
    with pytest.raises(ValueError, match=r"bsl_options\['method'\] must be one of .*'newton'"):
        SurpriseBaselineOnly(bsl_options={"method": "newton"}).fit(events)
    with pytest.raises(ValueError, match=r"sim_options\['name'\] must be one of .*'bogus'"):
        SurpriseAdapter(surprise.KNNBasic(sim_options={"name": "bogus"})).fit(events)


def test_a_refit_that_fails_leaves_the_model_as_it_was(explicit_stream):
    model = SurpriseSVD(n_factors=4, seed=0, refit_every=100).fit(explicit_stream[:1000])
    users, items = explicit_stream["user"][:50], explicit_stream["item"][:50]
    before = model.score(users, items)
    model.set_params(init_std_dev=-1.0)  # numpy refuses it inside Surprise's SVD.fit
    with pytest.raises(ValueError, match="scale < 0"):
        model.partial_fit(explicit_stream[1000:1100])  # 100 events: a refit is due
    assert (model.n_events_, model.n_refits_, model.events_since_refit_) == (1000, 1, 0)
    np.testing.assert_array_equal(model.score(users, items), before)
    assert model.recommend(users[:3], k=5).items.shape == (3, 5)
    with pytest.raises(ValueError, match="scale < 0"):
        model.fit(explicit_stream[1000:2000])
    assert model.n_events_ == 1000
    np.testing.assert_array_equal(model.score(users, items), before)
    model.set_params(init_std_dev=0.1)
    model.partial_fit(explicit_stream[1000:1100])
    assert (model.n_events_, model.n_refits_) == (1100, 2)
    assert model.model_.trainset.n_ratings == 1100


def test_a_first_fit_that_fails_leaves_an_unfitted_model_that_still_answers(explicit_stream):
    events = explicit_stream.iloc[:200]
    model = SurpriseSVD(init_std_dev=-1.0, refit_every=None)
    with pytest.raises(ValueError, match="scale < 0"):
        model.partial_fit(events)
    assert not model.is_fitted and model.model_ is None and model.n_users == 0
    assert np.isnan(model.score(events["user"][0], events["item"][0])).all()
    model.set_params(init_std_dev=0.1)
    model.partial_fit(events)
    assert model.n_events_ == 200 and model.n_refits_ == 1


def test_the_callers_option_dicts_are_not_changed(explicit_stream):
    sim_options = {"name": "cosine"}
    model = SurpriseKNNBasic(sim_options=sim_options, k=5).fit(explicit_stream.iloc[:300])
    assert sim_options == {"name": "cosine"}
    assert model.get_params()["sim_options"] == {"name": "cosine"}
    assert model.model_.sim_options == {"name": "cosine", "user_based": True}


def test_baseline_sgd_fold_in_uses_sgds_penalty_and_matches_a_converged_refit(explicit_stream):
    train = explicit_stream.iloc[:2000][["user", "item", "rating"]]
    items = train["item"].value_counts().index[:6]
    new_user = pd.DataFrame({"user": ["newcomer"] * 6, "item": items, "rating": [5.0] * 6})
    sgd = {"method": "sgd", "n_epochs": 500, "learning_rate": 0.01, "reg": 0.5}  # converges
    folded = SurpriseBaselineOnly(refit_every=None, bsl_options=sgd).fit(train)
    folded.partial_fit(new_user)
    refit = SurpriseBaselineOnly(refit_every=None, bsl_options=sgd).fit(
        pd.concat([train, new_user]))
    assert folded.n_refits_ == 1
    # measured: 1.466 against 1.453; ALS's penalty (reg_u=15 added once) gave 0.63
    assert abs(folded.user_bias_[folded.user_index_.lookup(["newcomer"])[0]]
               - refit.user_bias_[refit.user_index_.lookup(["newcomer"])[0]]) < 0.05
    np.testing.assert_allclose(folded.score("newcomer", items), refit.score("newcomer", items),
                               atol=0.05)


def test_seed_is_surprises_random_state_and_random_state_still_works(explicit_stream):
    seeded = SurpriseSVD(n_factors=4, seed=2, refit_every=None).fit(explicit_stream[:500])
    assert seeded.model_.random_state == 2 and "random_state" not in seeded.get_params()
    with pytest.warns(DeprecationWarning, match=r"SurpriseSVD\(random_state=...\) is deprecated"):
        old = SurpriseSVD(n_factors=4, random_state=2, refit_every=None)
    assert old.get_params() == seeded.get_params()
    np.testing.assert_array_equal(old.fit(explicit_stream[:500]).model_.pu, seeded.model_.pu)
