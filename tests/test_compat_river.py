"""recinc models as River Rankers: River's own checks, progressive validation, the buffer,
clicks and non-clicks."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

pytest.importorskip("river")

from river import checks, evaluate, metrics, optim, preprocessing, reco

import recinc_plugins
from recinc_plugins.adapters.river import RiverBiasedMF
from recinc_plugins.baselines import Popularity
from recinc_plugins.compat.river import RecincRanker

# small settings where the registry's defaults are slow, so the registry loop stays quick
SMALL = {
    "implicit-als": {"factors": 4, "iterations": 3},
    "implicit-bpr": {"factors": 4, "iterations": 20, "update_iterations": 2},
    "implicit-lmf": {"factors": 4, "iterations": 5, "update_iterations": 1},
    "lightfm": {"no_components": 4, "epochs": 1, "fit_epochs": 2},
    "river-biasedmf": {"n_factors": 4},
    "river-funkmf": {"n_factors": 4},
    "neural": {"n_factors": 8},
    "neural-seq": {"n_factors": 8},
    **{name: {"n_factors": 4, "n_epochs": 5}
       for name in ("surprise-svd", "surprise-svdpp", "surprise-nmf")},
}
#: the registered models that learn ratings: River's and Surprise's (the others, the neural
#: model's default ranking loss included, learn implicit feedback)
RATING_MODELS = ("river-", "surprise-")


def _params(name: str) -> dict:
    """``SMALL``'s settings, seeded, single-threaded and on the CPU where the model has those
    parameters, so two rankers fed the same events end in the same state."""
    params = dict(SMALL.get(name, {}))
    defaults = recinc_plugins.make(name).get_params()
    for key, value in (("seed", 0), ("num_threads", 1), ("device", "cpu")):
        if key in defaults:
            params.setdefault(key, value)
    return params


def _registered() -> list:
    """Every registered model, skipped (with the reason) where its extra is not installed."""
    out = []
    for row in recinc_plugins.list_models().itertuples():
        marks = () if row.installed else pytest.mark.skip(
            reason=f"{row.name} needs the {row.extra!r} extra, which is not installed")
        out.append(pytest.param(row.name, marks=marks, id=row.name))
    return out


@pytest.mark.parametrize("name", _registered())
def test_rivers_check_estimator_passes_for_every_registered_model(name):
    checks.check_estimator(RecincRanker(name, model_params=_params(name)))


def test_check_estimator_passes_with_an_instance_and_mini_batches():
    checks.check_estimator(RecincRanker(Popularity(), batch_size=8))


def _clicks_and_non_clicks(n: int = 80) -> list[tuple[str, str, bool]]:
    """River-style events, the way River's reco routine sends them: (user, item, clicked).
    User "lurker" never clicks; item "dud" is never clicked."""
    rng = random.Random(5)
    users, items = ["ann", "bob", "cid", "dee"], ["a", "b", "c", "d", "e", "f"]
    events = [(rng.choice(users), rng.choice(items), rng.random() < 0.5) for _ in range(n)]
    events[0] = ("ann", "a", True)
    events[10:10] = [("lurker", "a", False), ("bob", "dud", False), ("lurker", "dud", False)]
    return events


@pytest.mark.parametrize("name", _registered())
def test_clicks_and_non_clicks_never_fail_and_a_non_click_changes_nothing_it_should_not(name):
    events = _clicks_and_non_clicks()
    params = _params(name)
    every = RecincRanker(name, model_params=params)
    clicks_only = RecincRanker(name, model_params=params)
    catalogue = sorted({item for _, item, _ in events})
    for user, item, clicked in events:
        for ranker in (every, clicks_only):  # the same calls, for models that draw when scoring
            assert sorted(ranker.rank(user, catalogue)) == catalogue
        every.learn_one(user, item, clicked)
        if clicked:
            clicks_only.learn_one(user, item, clicked)
    n_clicks = sum(clicked for *_, clicked in events)
    users = [user for user, *_ in events] + ["lurker"]
    items = [item for _, item, _ in events] + ["dud"]
    scores, cold = every.model_.score(users, items, return_cold=True)
    if name.startswith(RATING_MODELS):
        # a rating model learns the non-click as the rating 0, like River's own models
        assert every.n_skipped == 0 and every.model_.n_events_ == len(events)
        return
    # an implicit model: the non-click is not a positive event, so it is not learned at all:
    # the model is the one that saw the clicks alone, and a user who never clicked is unknown
    # to it (answered by the cold-start fallback)
    assert every.n_skipped == len(events) - n_clicks
    assert every.model_.n_events_ == clicks_only.model_.n_events_ == n_clicks
    np.testing.assert_array_equal(scores, clicks_only.model_.score(users, items))
    assert cold[-1] and "lurker" not in every.model_.user_index_.ids.tolist()
    assert "dud" not in every.model_.item_index_.ids.tolist()


def test_a_non_click_is_the_rating_0_for_river_models_as_rivers_own_model_learns_it():
    events = _clicks_and_non_clicks()
    ranker = RecincRanker(RiverBiasedMF(n_factors=4, seed=1))
    native = reco.BiasedMF(n_factors=4, seed=1)
    for user, item, clicked in events:
        ranker.learn_one(user, item, clicked)
        native.learn_one(user, item, clicked)
    for user, item, _ in events:
        assert ranker.predict_one(user, item) == pytest.approx(native.predict_one(user, item),
                                                               abs=1e-12)


def test_the_neural_model_learns_non_clicks_as_ratings_only_with_a_rating_loss():
    pytest.importorskip("torch")
    events = _clicks_and_non_clicks(30)
    for loss, skipped in [("mse", 0), ("bpr", sum(not clicked for *_, clicked in events))]:
        ranker = RecincRanker("neural", model_params={"n_factors": 4, "device": "cpu",
                                                      "seed": 0, "loss": loss})
        for event in events:
            ranker.learn_one(*event)
        assert ranker.n_skipped == skipped
        assert ranker.model_.n_events_ == len(events) - skipped
        assert ranker.model_.predicts_ratings() is (loss == "mse")


def _tutorial_stream(frame):
    """(x, y, {"user", "item"}) triples, the way River's MovieLens tutorial feeds reco models."""
    return [({}, y, {"user": u, "item": i})
            for u, i, y in zip(frame["user"].tolist(), frame["item"].tolist(),
                               frame["rating"].tolist(), strict=True)]


def test_progressive_val_score_equals_rivers_own_model(explicit_stream):
    stream = _tutorial_stream(explicit_stream.iloc[:1500])

    def params():
        return dict(n_factors=10, bias_optimizer=optim.SGD(0.025),
                    latent_optimizer=optim.SGD(0.05),
                    latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73))

    native = evaluate.progressive_val_score(
        stream, preprocessing.PredClipper(reco.BiasedMF(**params()), y_min=1, y_max=5),
        metrics.MAE() + metrics.RMSE())
    ours = evaluate.progressive_val_score(
        stream, preprocessing.PredClipper(RecincRanker(RiverBiasedMF(**params())), y_min=1,
                                          y_max=5),
        metrics.MAE() + metrics.RMSE())
    for a, b in zip(native, ours, strict=True):
        assert abs(a.get() - b.get()) < 1e-12


def test_buffered_events_are_learned_before_predicting_and_never_lost(explicit_stream):
    lazy = RecincRanker("popularity", batch_size=100, flush_before_predict=False)
    eager = RecincRanker("popularity", batch_size=100)
    for u, i in zip(explicit_stream["user"].iloc[:30], explicit_stream["item"].iloc[:30],
                    strict=True):
        lazy.learn_one(u, i, 1.0)
        eager.learn_one(u, i, 1.0)
    item = explicit_stream["item"].iloc[0]
    assert lazy.n_pending == 30 and lazy.predict_one("u", item) == 0.0
    assert eager.predict_one("u", item) > 0 and eager.n_pending == 0

    restored = pickle.loads(pickle.dumps(lazy))
    assert restored.n_pending == 30
    restored.flush()
    assert restored.predict_one("u", item) == eager.predict_one("u", item)


def test_rank_orders_items_by_score_in_one_call(explicit_stream):
    ranker = RecincRanker("popularity")
    for u, i in zip(explicit_stream["user"].iloc[:500], explicit_stream["item"].iloc[:500],
                    strict=True):
        ranker.learn_one(u, i, 1.0)
    items = explicit_stream["item"].iloc[:500].unique().tolist()
    ranked = ranker.rank("anyone", set(items))
    scores = [ranker.predict_one("anyone", i) for i in ranked]
    assert sorted(ranked, key=str) == sorted(items, key=str)
    assert np.all(np.diff(scores) <= 0)


def test_clone_has_the_same_parameters_and_an_unfitted_model(explicit_stream):
    ranker = RecincRanker(RiverBiasedMF(n_factors=3), batch_size=2)
    ranker.learn_one("a", "x", 4.0)
    ranker.learn_one("a", "y", 2.0)
    clone = ranker.clone()
    assert not clone.model_.is_fitted and ranker.model_.n_events_ == 2
    assert clone.model_.n_factors == 3 and clone.batch_size == 2


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        RecincRanker(batch_size=0)
    with pytest.raises(TypeError, match="model must be a registered model name"):
        RecincRanker(model=3.5)
    with pytest.raises(ValueError, match="model_params applies to a model given by name"):
        RecincRanker(Popularity(), model_params={"weighted": True})


def test_river_loop_example_runs_a_lightfm_backed_model(monkeypatch, capsys):
    import runpy
    from pathlib import Path

    monkeypatch.delenv("RECINC_DATA_HOME", raising=False)  # the synthetic stream: seconds
    script = Path(__file__).resolve().parent.parent / "examples" / "river_loop.py"
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "lightfm     hit rate@10" in out and "MAE:" in out


def test_a_bad_event_is_refused_before_it_is_buffered():
    ranker = RecincRanker("river-baseline", batch_size=4)
    ranker.learn_one("a", "x", 4.0)
    for user, item, y, message in [
        ("a", "y", float("nan"), r"y must be a finite number, got nan \(user 'a', item 'y'\)"),
        ("a", "y", "four", "y must be a finite number, got 'four'"),
        ("a", "y", None, "y must be a finite number, got None"),
        (None, "y", 3.0, "user must not be None or NaN, got None"),
        ("a", float("nan"), 3.0, "item must not be None or NaN, got nan"),
    ]:
        with pytest.raises(ValueError, match=message):
            ranker.learn_one(user, item, y)
    assert ranker.n_pending == 1  # only the good event
    assert np.isfinite(ranker.predict_one("a", "x")) and ranker.n_pending == 0
    ranker.learn_one("b", "y", 2.0)
    ranker.flush()
    assert ranker.model_.n_events_ == 2


def test_a_failing_flush_reports_its_events_and_does_not_block_the_ranker(explicit_stream):
    from recinc_plugins.adapters.surprise import SurpriseSVD
    from recinc_plugins.compat.river import FlushError

    pytest.importorskip("surprise")
    model = SurpriseSVD(n_factors=2, init_std_dev=-1.0, refit_every=None)  # its fit fails
    ranker = RecincRanker(model, batch_size=2)
    ranker.learn_one("a", "x", 4.0)
    with pytest.raises(FlushError, match=r"failed on 2 buffered event\(s\), which were taken "
                                         r"out of the buffer and not learned.*\('a', 'x', 4\.0\), "
                                         r"\('b', 'y', 2\.0\) \(ValueError: scale < 0\)") as info:
        ranker.learn_one("b", "y", 2.0)
    assert info.value.events == [("a", "x", 4.0), ("b", "y", 2.0)]
    assert ranker.n_pending == 0 and not model.is_fitted
    assert ranker.rank("a", ["x", "y"]) == ["x", "y"]  # answers instead of re-raising
    model.set_params(init_std_dev=0.1)
    for event in info.value.events:  # the caller can learn them again
        ranker.learn_one(*event)
    assert model.n_events_ == 2 and np.isfinite(ranker.predict_one("a", "x"))


def test_predict_one_says_once_when_the_model_scores_are_not_ratings():
    import warnings

    from recinc_plugins.compat import NotRatingsWarning

    ranker = RecincRanker("popularity")
    ranker.predict_one("a", "x")  # nothing learned yet: nothing to say
    for user, item in [("a", "x"), ("b", "x"), ("b", "y")]:
        ranker.learn_one(user, item, True)
    with pytest.warns(NotRatingsWarning, match="Popularity.* returns ranking scores") as caught:
        ranker.predict_one("a", "y")
        ranker.predict_one("c", "y")
        ranker.rank("a", ["x", "y"])  # ranking is what it is for
    assert len(caught) == 1 and "use a rating model" in str(caught[0].message)
    rating = RecincRanker("river-baseline")
    rating.learn_one("a", "x", 4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotRatingsWarning)
        rating.predict_one("a", "x")
