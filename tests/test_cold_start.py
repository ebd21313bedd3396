"""The shared cold-start policies: ``cold_start="popularity"`` and ``"newcomer"``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recinc_plugins.base import NEWCOMER_EVENTS, NEWCOMER_HALF_LIFE
from recinc_plugins.baselines import Popularity

pytest.importorskip("implicit")
pytest.importorskip("lightfm")
pytest.importorskip("torch")

from recinc_plugins.adapters.implicit import ImplicitALS, ImplicitBPR, ImplicitLMF
from recinc_plugins.adapters.lightfm import LightFMRecommender
from recinc_plugins.neural import NeuralRecommender

SMALL = {"num_threads": 1}
MODELS = [
    (ImplicitALS, {"factors": 4, "random_state": 0, **SMALL}),
    (ImplicitBPR, {"factors": 4, "random_state": 0, **SMALL}),
    (ImplicitLMF, {"factors": 4, "random_state": 0, **SMALL}),
    (LightFMRecommender, {"no_components": 4, "random_state": 0, **SMALL}),
    (NeuralRecommender, {"n_factors": 8, "seed": 0, "device": "cpu", **SMALL}),
    (Popularity, {}),
]
IDS = [cls.__name__ for cls, _ in MODELS]


def _veteran_and_newcomers() -> pd.DataFrame:
    # a veteran piles 200 events onto "old-hit" (only its first 50 count as a newcomer's);
    # then 60 new users each start with "starter"
    veteran = pd.DataFrame({"user": ["vet"] * 200, "item": ["old-hit"] * 200})
    newcomers = pd.DataFrame({"user": [f"n{k}" for k in range(60)], "item": ["starter"] * 60})
    return pd.concat([veteran, newcomers], ignore_index=True)


@pytest.mark.parametrize(("cls", "params"), MODELS, ids=IDS)
def test_newcomer_answers_unknown_users_with_what_new_users_took(cls, params):
    frame = _veteran_and_newcomers()
    newcomer = cls(**params, cold_start="newcomer").fit(frame)
    popularity = cls(**params, cold_start="popularity").fit(frame)
    recs = newcomer.recommend(["someone-new"], k=1)
    assert recs.cold.tolist() == [True]
    assert recs.items[0, 0] == "starter"
    assert popularity.recommend(["someone-new"], k=1).items[0, 0] == "old-hit"


@pytest.mark.parametrize(("cls", "params"), MODELS[:5], ids=IDS[:5])
def test_the_ranking_adapters_default_to_newcomer(cls, params):
    assert cls(**params).cold_start == "newcomer"
    assert Popularity().cold_start == "popularity"


@pytest.mark.parametrize(("cls", "params"), MODELS, ids=IDS)
@pytest.mark.parametrize("bad", ["random", None, 1])
def test_a_bad_policy_is_refused_by_name_before_any_state(cls, params, bad):
    model = cls(**params, cold_start=bad)
    with pytest.raises(ValueError, match=r"cold_start must be one of \['popularity', 'newcomer'\]"):
        model.fit(_veteran_and_newcomers())
    assert not model.is_fitted


def test_counts_are_exact_with_one_event_s_decay_per_event():
    events = pd.DataFrame({"user": ["u", "u", "v"], "item": ["a", "b", "a"]})
    model = Popularity(cold_start="newcomer").fit(events)
    scores = model.score(["nobody", "nobody", "nobody"], ["a", "b", "c"])
    h = NEWCOMER_HALF_LIFE
    expected = np.array([2 ** (-2 / h) + 1.0, 2 ** (-1 / h), 0.0])
    # plus the popularity tie-breaker: 1e-6 * count / events
    expected += 1e-6 * np.array([2, 1, 0]) / 3
    np.testing.assert_allclose(scores[:2], expected[:2], rtol=0, atol=1e-12)
    assert np.isnan(scores[2]) or scores[2] == 0.0  # an unknown item


def test_only_each_user_s_first_events_count():
    n = NEWCOMER_EVENTS + 30
    events = pd.DataFrame({"user": ["u"] * n, "item": ["a"] * n})
    model = Popularity(cold_start="newcomer").fit(events)
    assert model.user_events_[0] == n
    raw = model.newcomer_[0] * 2.0 ** -model.newcomer_clock_
    decays = 2.0 ** (-(n - np.arange(1, NEWCOMER_EVENTS + 1)) / NEWCOMER_HALF_LIFE)
    assert raw == pytest.approx(decays.sum(), rel=1e-12)


@pytest.mark.parametrize("chunks", [[1], [7], [1, 3, 50, 2], [5000]])
def test_counts_do_not_depend_on_how_the_stream_is_cut(implicit_stream, chunks):
    frame = implicit_stream.iloc[:600]
    whole = Popularity(cold_start="newcomer").fit(frame)
    cut = Popularity(cold_start="newcomer")
    start, k = 0, 0
    while start < len(frame):
        size = chunks[k % len(chunks)]
        cut.partial_fit(frame.iloc[start:start + size])
        start, k = start + size, k + 1
    np.testing.assert_allclose(cut._fallback_scores(1), whole._fallback_scores(1), rtol=1e-12)
    np.testing.assert_array_equal(cut.user_events_[: cut.n_users],
                                  whole.user_events_[: whole.n_users])


def test_the_counts_stay_finite_over_long_streams():
    # the clock passes the rescaling point (500 half-lives) many times over
    model = Popularity(cold_start="newcomer")
    rng = np.random.default_rng(0)
    for _ in range(12):
        users = rng.integers(0, 10**6, 600_000)
        model.partial_fit(pd.DataFrame({"user": users, "item": rng.integers(0, 50, users.size)}))
    scores = model._fallback_scores(1)[0]
    assert np.isfinite(scores).all() and scores.max() > 0
    assert model.newcomer_clock_ <= 500 + 1


def test_switching_the_policy_on_after_fitting_starts_counting_from_there():
    model = Popularity().fit(_veteran_and_newcomers())
    model.set_params(cold_start="newcomer")
    assert model.recommend("x", k=1).items[0, 0] == "old-hit"  # nothing counted yet: popularity
    model.partial_fit(pd.DataFrame({"user": ["p", "q"], "item": ["fresh", "fresh"]}))
    assert model.recommend("x", k=1).items[0, 0] == "fresh"


@pytest.mark.parametrize(("cls", "params"), MODELS, ids=IDS)
def test_save_load_keeps_the_counts_and_goes_on_identically(cls, params, tmp_path):
    frame = _veteran_and_newcomers()
    model = cls(**params, cold_start="newcomer").fit(frame.iloc[:230])
    model.save(tmp_path / "m.recinc")
    loaded = cls.load(tmp_path / "m.recinc")
    rest = frame.iloc[230:]
    model.partial_fit(rest)
    loaded.partial_fit(rest)
    np.testing.assert_allclose(loaded._fallback_scores(1), model._fallback_scores(1), rtol=1e-12)
    assert loaded.recommend("new", k=2).items.tolist() == model.recommend("new", k=2).items.tolist()


def test_a_file_saved_before_the_policies_loads_with_popularity_order(tmp_path):
    model = Popularity(cold_start="newcomer").fit(_veteran_and_newcomers())
    state = model._get_state()
    for key in ("user_events_", "newcomer_", "newcomer_clock_"):
        del state[key]
    old = Popularity(cold_start="newcomer")
    old._set_state(state)
    assert old.recommend("x", k=1).items[0, 0] == "old-hit"
    assert old.user_events_[: old.n_users].tolist() == [200] + [1] * 60
    old.partial_fit(pd.DataFrame({"user": ["vet", "p"], "item": ["late", "fresh"]}))
    assert old.recommend("x", k=1).items[0, 0] == "fresh"  # the veteran's event does not count


@pytest.mark.data
def test_on_ml100k_the_adapters_beat_popularity_by_a_clear_margin(ml100k):
    """1,000-event steps, defaults: implicit-als beats popularity (0.0536) by over 5% relative,
    and beats popularity with the same cold-start policy too, on warm events by over 5%."""
    from recinc_plugins.evaluation import Stream, compare

    models = {
        "pop": Popularity(),
        "pop+newcomer": Popularity(cold_start="newcomer"),
        "als": ImplicitALS(num_threads=1, random_state=0),
    }
    summary = compare(models, Stream(ml100k, step=1000), k=10).summary.set_index("model")
    recall, warm = summary["recall@10"], summary["warm_recall@10"]
    assert recall["pop"] == pytest.approx(0.0536, abs=5e-4)
    assert recall["pop+newcomer"] > recall["pop"] * 1.04
    assert recall["als"] > recall["pop"] * 1.05
    assert recall["als"] > recall["pop+newcomer"]
    assert warm["als"] > warm["pop+newcomer"] * 1.05
