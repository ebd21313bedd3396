"""recinc models inside Surprise's own tools: cross_validate, GridSearchCV, accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

surprise = pytest.importorskip("surprise")

from surprise import accuracy  # noqa: E402
from surprise.model_selection import GridSearchCV, KFold, cross_validate  # noqa: E402

from recinc_plugins.baselines import Popularity  # noqa: E402
from recinc_plugins.compat.surprise import SurpriseAlgo, as_surprise  # noqa: E402


def _dataset(frame: pd.DataFrame):
    reader = surprise.Reader(rating_scale=(1, 5))
    return surprise.Dataset.load_from_df(frame[["user", "item", "rating"]], reader)


def test_cross_validate_through_the_svd_adapter_reproduces_native_svd_on_ml100k(ml100k):
    data = _dataset(ml100k)
    native = cross_validate(surprise.SVD(random_state=0), data, measures=["rmse"],
                            cv=KFold(n_splits=5, random_state=0))
    ours = cross_validate(SurpriseAlgo("surprise-svd", seed=0, refit_every=None), data,
                          measures=["rmse"], cv=KFold(n_splits=5, random_state=0))
    native_rmse, our_rmse = native["test_rmse"].mean(), ours["test_rmse"].mean()
    assert 0.9 < native_rmse < 0.97
    assert abs(our_rmse - native_rmse) < 0.005
    assert np.abs(ours["test_rmse"] - native["test_rmse"]).max() < 0.01


@pytest.mark.parametrize(("name", "params"), [
    ("river-biasedmf", {"seed": 0}),
    ("lightfm", {"no_components": 8, "seed": 0}),
    ("popularity", {}),
])
def test_swapping_the_algorithm_for_other_backends_runs_unchanged(name, params,
                                                                 explicit_stream):
    data = _dataset(explicit_stream)
    result = cross_validate(SurpriseAlgo(name, **params), data, measures=["rmse", "mae"], cv=3)
    assert result["test_rmse"].shape == (3,)
    assert np.isfinite(result["test_rmse"]).all() and (result["test_mae"] >= 0).all()


def test_grid_search_builds_the_bound_class_with_each_parameter_set(explicit_stream):
    grid = GridSearchCV(as_surprise("surprise-svd"),
                        {"n_factors": [2, 8], "n_epochs": [2], "seed": [0]},
                        measures=["rmse"], cv=2)
    grid.fit(_dataset(explicit_stream))
    assert grid.best_params["rmse"]["n_factors"] in (2, 8)
    assert grid.best_estimator["rmse"].params["n_epochs"] == 2
    assert len(grid.cv_results["params"]) == 2


def test_grid_search_runs_in_worker_processes_with_the_same_results(explicit_stream):
    from joblib.externals.loky import get_reusable_executor

    grid = {"n_factors": [2, 8], "n_epochs": [3], "seed": [0]}
    runs = []
    try:
        for n_jobs in (1, 2):
            search = GridSearchCV(as_surprise("surprise-svd"), grid, measures=["rmse"],
                                  cv=KFold(n_splits=2, random_state=0), n_jobs=n_jobs)
            search.fit(_dataset(explicit_stream))
            runs.append(search.cv_results["mean_test_rmse"])
    finally:  # joblib keeps its worker processes for reuse: end them, as other tests expect
        get_reusable_executor().shutdown(wait=True)
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12)


def test_bound_instances_pickle_with_plain_pickle(explicit_stream):
    import pickle

    algo = as_surprise("surprise-svd")(n_factors=3, n_epochs=2, seed=0)
    algo.fit(_dataset(explicit_stream).build_full_trainset())
    copy = pickle.loads(pickle.dumps(algo))
    assert type(copy).__name__ == "SurpriseAlgo[surprise-svd]" and copy.params == algo.params
    user, item = explicit_stream["user"].iloc[0], explicit_stream["item"].iloc[0]
    assert copy.predict(user, item).est == algo.predict(user, item).est


def test_predictions_are_surprise_predictions_clipped_and_flagged(explicit_stream):
    trainset = _dataset(explicit_stream).build_full_trainset()
    algo = SurpriseAlgo(Popularity()).fit(trainset)
    user, item = explicit_stream["user"].iloc[0], explicit_stream["item"].iloc[0]
    known = algo.predict(user, item, r_ui=4.0)
    assert isinstance(known, surprise.Prediction) and known.r_ui == 4.0
    assert 1 <= known.est <= 5 and known.details["was_impossible"] is False
    unknown = algo.predict("no-such-user", "no-such-item")
    assert unknown.details["was_impossible"] is True
    predictions = algo.test(trainset.build_testset()[:50])
    assert len(predictions) == 50 and accuracy.rmse(predictions, verbose=False) >= 0


def test_each_fit_starts_from_scratch(explicit_stream):
    data = _dataset(explicit_stream)
    algo = SurpriseAlgo("river-baseline")
    first = algo.fit(data.build_full_trainset()).predict(explicit_stream["user"].iloc[0], 3).est
    again = algo.fit(data.build_full_trainset()).predict(explicit_stream["user"].iloc[0], 3).est
    assert first == again
    assert algo.model_.n_events_ == len(explicit_stream)


def test_a_model_that_is_not_one_is_named():
    trainset = _dataset(pd.DataFrame({"user": [1], "item": [2], "rating": [3.0]}))
    with pytest.raises(TypeError, match="model must be a registered model name or an "
                                        "IncrementalRecommender, got int"):
        SurpriseAlgo(42).fit(trainset.build_full_trainset())
    with pytest.raises(ValueError, match="unknown model 'svd-plus'"):
        SurpriseAlgo("svd-plus").fit(trainset.build_full_trainset())


@pytest.mark.parametrize("model", ["native", "surprise-svd", "lightfm", "river-biasedmf"])
def test_surprise_swap_example_runs_with_each_algorithm(model, monkeypatch, capsys):
    import runpy
    from pathlib import Path

    monkeypatch.delenv("RECINC_DATA_HOME", raising=False)  # the synthetic stream: seconds
    script = Path(__file__).resolve().parent.parent / "examples" / "surprise_swap.py"
    namespace = runpy.run_path(str(script))
    namespace["main"](model)
    out = capsys.readouterr().out
    assert f"synthetic, {model}: RMSE" in out and "was_impossible" in out


def test_estimate_answers_surprises_unknown_ids_with_the_fallback_never_a_known_user():
    frame = pd.DataFrame({"user": ["14", "14", "7", "7", "3"], "item": [1, 2, 1, 2, 1],
                          "rating": [5.0, 5.0, 1.0, 2.0, 3.0]})
    trainset = _dataset(frame).build_full_trainset()
    algo = SurpriseAlgo("surprise-baseline").fit(trainset)
    model, item = algo.model_, trainset.to_inner_iid(1)
    cold = float(model.score("nobody", 1)[0])
    known = float(model.score("14", 1)[0])
    assert abs(known - cold) > 0.1
    # Surprise's predict(14, 1) for the unknown int user 14 calls estimate("UKN__14", ...)
    assert algo.estimate("UKN__14", item) == cold
    assert algo.estimate(trainset.to_inner_uid("14"), item) == known
    assert algo.estimate(trainset.to_inner_uid("14"), "UKN__99") == float(
        model.score("14", 99)[0])
    assert algo.estimate("UKN__14", "UKN__1") == float(model.score("nobody", "nothing")[0])
    assert algo.estimate(10_000, item) == cold  # an inner id the trainset does not have


def test_a_model_whose_scores_are_not_ratings_warns_once_per_instance(explicit_stream):
    from recinc_plugins.compat import NotRatingsWarning

    data = _dataset(explicit_stream)
    algo = SurpriseAlgo("lightfm", no_components=4, epochs=1, fit_epochs=2, seed=0)
    with pytest.warns(NotRatingsWarning) as caught:
        cross_validate(algo, data, measures=["rmse"], cv=3)  # three fits, one warning
        algo.fit(data.build_full_trainset())
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "LightFMRecommender" in message and "returns ranking scores, not ratings" in message
    assert "use a rating model" in message
    with pytest.warns(NotRatingsWarning):  # another instance says it again
        SurpriseAlgo("popularity").fit(data.build_full_trainset())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NotRatingsWarning)  # rating models say nothing
        SurpriseAlgo("river-baseline").fit(data.build_full_trainset())


def test_the_neural_model_is_built_in_its_rating_mode_unless_a_loss_is_given(explicit_stream):
    pytest.importorskip("torch")
    from recinc_plugins.compat import NotRatingsWarning

    trainset = _dataset(explicit_stream).build_full_trainset()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NotRatingsWarning)
        algo = SurpriseAlgo("neural", n_factors=8, seed=0, device="cpu").fit(trainset)
    assert algo.model_.loss == "mse" and algo.model_.predicts_ratings()
    with pytest.warns(NotRatingsWarning, match=r"rating mode, NeuralRecommender\(loss='mse'\)"):
        ranking = SurpriseAlgo("neural", loss="bpr", n_factors=8, device="cpu").fit(trainset)
    assert ranking.model_.loss == "bpr"


def test_the_neural_rating_mode_predicts_ratings_on_ml100k_through_cross_validate(ml100k):
    """Surprise's predict_ratings.py example with SurpriseAlgo("neural") in place of KNNBasic:
    ranking scores came back clipped to the scale (est 1.05 for a true 4.0); the rating mode
    predicts ratings, RMSE under 1.0 over 3 folds."""
    pytest.importorskip("torch")
    data = _dataset(ml100k)
    algo = SurpriseAlgo("neural", seed=0, device="cpu")
    result = cross_validate(algo, data, measures=["rmse", "mae"],
                            cv=KFold(n_splits=3, random_state=0))
    assert (result["test_rmse"] < 1.0).all(), result["test_rmse"]
    pred = algo.predict(196, 302, r_ui=4)  # the example's pair, by the last fold's model
    assert 3.0 <= pred.est <= 5.0 and not pred.details["was_impossible"]
    raw = algo.model_.score(ml100k["user"].to_numpy()[:5000], ml100k["item"].to_numpy()[:5000])
    assert np.mean((raw >= 1) & (raw <= 5)) > 0.95  # ratings on the scale, not clipped scores
