"""The River adapters against River itself: same learning, same numbers, no side effects."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("river")

from river import optim, reco

from recinc_plugins.adapters.river import (
    RiverBaseline,
    RiverBiasedMF,
    RiverFunkMF,
    RiverRanker,
)
from recinc_plugins.base import Batch


def _tutorial_params(seed: int = 73) -> dict:
    """River's MovieLens tutorial parameters for BiasedMF."""
    return dict(n_factors=10, bias_optimizer=optim.SGD(0.025), latent_optimizer=optim.SGD(0.05),
                latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed))


ADAPTERS = [
    pytest.param(RiverBaseline, {"optimizer": optim.SGD(0.02)},
                 lambda: reco.Baseline(optimizer=optim.SGD(0.02)), id="baseline"),
    pytest.param(RiverBiasedMF, _tutorial_params(), lambda: reco.BiasedMF(**_tutorial_params()),
                 id="biasedmf"),
    pytest.param(RiverFunkMF, {"n_factors": 5, "seed": 3},
                 lambda: reco.FunkMF(n_factors=5, seed=3), id="funkmf"),
]


def _river_loop(native, frame: pd.DataFrame, predict: bool = False) -> np.ndarray:
    preds = []
    for user, item, y in zip(frame["user"].tolist(), frame["item"].tolist(),
                             frame["rating"].tolist(), strict=True):
        if predict:
            preds.append(native.predict_one(user, item))
        native.learn_one(user, item, y)
    return np.asarray(preds)


@pytest.mark.parametrize(("cls", "params", "native_factory"), ADAPTERS)
def test_partial_fit_in_steps_leaves_the_model_identical_to_rivers_loop(
        cls, params, native_factory, explicit_stream):
    model = cls(**params).fit(explicit_stream.iloc[:1000])
    for start in range(1000, 3000, 250):
        model.partial_fit(explicit_stream.iloc[start:start + 250])
    native = native_factory()
    _river_loop(native, explicit_stream)
    users, items = explicit_stream["user"].to_numpy(), explicit_stream["item"].to_numpy()
    expected = np.array([native.predict_one(u, i) for u, i in zip(users, items, strict=True)])
    np.testing.assert_array_equal(np.round(model.score(users, items), 12),
                                  np.round(expected, 12))
    if hasattr(native, "u_latents"):
        for user in np.unique(users)[:20].tolist():
            np.testing.assert_array_equal(model.model_.u_latents[user], native.u_latents[user])


@pytest.mark.parametrize(("cls", "params", "native_factory"), ADAPTERS)
def test_scoring_unseen_ids_equals_predict_one_and_inserts_nothing(
        cls, params, native_factory, explicit_stream):
    model = cls(**params).fit(explicit_stream.iloc[:500])
    dicts = [d for d in ("u_biases", "i_biases", "u_latents", "i_latents")
             if hasattr(model.model_, d)]
    sizes = [len(getattr(model.model_, d)) for d in dicts]
    twin = copy.deepcopy(model.model_)
    users = ["new-a", explicit_stream["user"].iloc[0], "new-a", "new-b"]
    items = [explicit_stream["item"].iloc[0], "new-x", "new-x", "new-y"]

    scores = model.score(users, items)

    expected = [twin.predict_one(u, i) for u, i in zip(users, items, strict=True)]
    np.testing.assert_array_equal(scores, expected)
    assert [len(getattr(model.model_, d)) for d in dicts] == sizes


def test_predicting_then_learning_each_event_reproduces_rivers_progressive_loop(
        explicit_stream):
    frame = explicit_stream.iloc[:600]
    native_preds = _river_loop(reco.BiasedMF(**_tutorial_params()), frame, predict=True)
    fused = RiverBiasedMF(**_tutorial_params()).predict_then_learn(frame)
    np.testing.assert_array_equal(fused, native_preds)

    # the same loop through score and partial_fit, one event at a time (the harness's path:
    # unknown ids arrive as index -1 before the step that learns them)
    model = RiverBiasedMF(**_tutorial_params())
    model._reset()
    stepwise = []
    for user, item, y in zip(frame["user"].tolist(), frame["item"].tolist(),
                             frame["rating"].tolist(), strict=True):
        u, i = model.user_index_.lookup([user]), model.item_index_.lookup([item])
        known = (u >= 0) & (i >= 0)
        stepwise.append((model._score_pairs(u, i) if known.all()
                         else model._fallback_pairs(u, i))[0])
        batch = Batch(users=model.user_index_.add([user]), items=model.item_index_.add([item]),
                      ratings=np.array([y]))
        model._partial_fit_encoded(batch)
    np.testing.assert_allclose(stepwise, native_preds, rtol=0, atol=1e-12)


def test_recommend_top10_equals_ranker_rank_top10(explicit_stream):
    model = RiverBiasedMF(**_tutorial_params()).fit(explicit_stream)
    native = copy.deepcopy(model.model_)
    catalogue = set(model.item_index_.ids.tolist())
    users = explicit_stream["user"].unique()[:15]
    recs = model.recommend(users, k=10, exclude_seen=False)
    for row, user in enumerate(users.tolist()):
        assert recs.items[row].tolist() == native.rank(user, catalogue)[:10]


def test_ranker_without_readable_state_falls_back_to_predict_one_and_warns(explicit_stream):
    with pytest.warns(UserWarning, match="scored with predict_one one pair at a time"):
        model = RiverRanker(reco.RandomNormal(seed=1)).fit(explicit_stream.iloc[:300])
    assert model.vectorised_ is False
    scores = model.score(explicit_stream["user"].iloc[:5], explicit_stream["item"].iloc[:5])
    assert scores.shape == (5,) and np.isfinite(scores).all()
    assert model.recommend(explicit_stream["user"].iloc[0], k=3).items.shape == (1, 3)


def test_saved_model_continues_exactly_like_the_original(explicit_stream, tmp_path):
    model = RiverBiasedMF(**_tutorial_params()).fit(explicit_stream.iloc[:1500])
    model.save(tmp_path / "mf.recinc")
    loaded = RiverBiasedMF.load(tmp_path / "mf.recinc")
    model.partial_fit(explicit_stream.iloc[1500:])
    loaded.partial_fit(explicit_stream.iloc[1500:])
    users, items = explicit_stream["user"], explicit_stream["item"]
    np.testing.assert_array_equal(model.score(users, items), loaded.score(users, items))
    assert pickle.loads(pickle.dumps(model)).n_events_ == 3000


def test_refitting_is_reproducible_because_initialisers_are_copied(explicit_stream):
    model = RiverBiasedMF(**_tutorial_params())
    first = model.fit(explicit_stream).score(explicit_stream["user"], explicit_stream["item"])
    again = model.fit(explicit_stream).score(explicit_stream["user"], explicit_stream["item"])
    np.testing.assert_array_equal(first, again)


def test_bad_parameters_are_named():
    events = pd.DataFrame({"user": [1], "item": [2], "rating": [3.0]})
    with pytest.raises(TypeError, match=r"model must be a river\.reco Ranker"):
        RiverRanker(model="BiasedMF").fit(events)
    with pytest.raises(ValueError, match="n_factors must be an integer >= 1, got 0"):
        RiverBiasedMF(n_factors=0).fit(events)
    with pytest.raises(ValueError, match="no 'rating' column"):
        RiverBiasedMF().fit(events.drop(columns="rating"))


def test_prequential_mae_on_ml100k_matches_rivers_loop_to_1e9(ml100k):
    from recinc_plugins.evaluation import Stream, compare

    native_preds = _river_loop(reco.BiasedMF(**_tutorial_params()), ml100k, predict=True)
    truth = ml100k["rating"].to_numpy()
    native_mae = float(np.abs(np.clip(native_preds, 1, 5) - truth).mean())
    assert 0.74 < native_mae < 0.76

    fused = RiverBiasedMF(**_tutorial_params()).predict_then_learn(ml100k)
    assert abs(float(np.abs(np.clip(fused, 1, 5) - truth).mean()) - native_mae) < 1e-9

    result = compare({"river-biasedmf": RiverBiasedMF(**_tutorial_params())},
                     Stream(ml100k, step=1), k=10, target="rating", clip=(1, 5))
    assert abs(float(result.summary["mae"].iloc[0]) - native_mae) < 1e-9


@pytest.mark.parametrize(("cls", "params", "native_factory"), ADAPTERS)
def test_one_event_steps_then_block_scores_see_every_event(cls, params, native_factory,
                                                           explicit_stream, tmp_path):
    # one-event steps are scored from River's dicts and leave the arrays behind; recommend,
    # score_block, large score calls and save bring them up to date first
    frame = explicit_stream.iloc[:400]
    model = cls(**params)
    model.reset()
    native = native_factory()
    for user, item, y in zip(frame["user"].tolist(), frame["item"].tolist(),
                             frame["rating"].tolist(), strict=True):
        u, i = model.add_ids(users=[user], items=[item])
        assert model.score_encoded(u, i)[0] == native.predict_one(user, item)
        model.learn_encoded(Batch(users=u, items=i, ratings=np.array([y])))
        native.learn_one(user, item, y)
    model.save(tmp_path / "model.recinc")
    loaded = cls.load(tmp_path / "model.recinc")
    users = frame["user"].unique()[:10]
    items = model.item_index_.ids.tolist()
    expected = np.array([[native.predict_one(u, i) for i in items] for u in users.tolist()])
    for scored in (model, loaded):
        block = scored.score_block(scored.user_index_.lookup(users))
        np.testing.assert_allclose(block, expected, rtol=0, atol=1e-12)
        pairs = scored.score(np.repeat(users, len(items)), np.tile(items, users.size))
        np.testing.assert_allclose(pairs, expected.ravel(), rtol=0, atol=1e-12)


def test_scoring_ids_added_but_not_learned_yet_equals_predict_one(explicit_stream):
    model = RiverBiasedMF(**_tutorial_params()).fit(explicit_stream.iloc[:200])
    twin = copy.deepcopy(model.model_)
    known = explicit_stream["item"].iloc[0]
    u, i = model.add_ids(users=["newcomer"], items=[known])  # no learning since
    assert model.score_encoded(u, i)[0] == twin.predict_one("newcomer", known)
    scores, cold = model.score(["newcomer", explicit_stream["user"].iloc[0]], [known, known],
                               return_cold=True)
    assert cold.tolist() == [True, False]
    assert scores[0] == twin.predict_one("newcomer", known)
    assert "newcomer" not in model.model_.u_latents


@pytest.mark.parametrize(("cls", "params", "native_factory"), ADAPTERS)
def test_scoring_unseen_ids_leaves_river_drawing_what_it_would_have_drawn(
        cls, params, native_factory, explicit_stream):
    # the values drawn for unseen ids are River's next draws, kept for River: a small call
    # keeps them, a large one reads them and rewinds past them; River's own calls on model_,
    # and later learning, get what they would have got had nothing been scored
    model = cls(**params).fit(explicit_stream.iloc[:500])
    twin = copy.deepcopy(model.model_)
    item = explicit_stream["item"].iloc[0]
    new_users = [f"new-{n}" for n in range(100)]
    small = model.score(new_users[:3], [item, "new-x", item])
    large = model.score(new_users, [item] * 100)  # over _FEW_AHEAD pairs
    for scores, users, items in [(small, new_users[:3], [item, "new-x", item]),
                                 (large, new_users, [item] * 100)]:
        reference = copy.deepcopy(twin)  # each call scores from the model as it stands
        np.testing.assert_array_equal(
            scores, [reference.predict_one(u, i) for u, i in zip(users, items, strict=True)])
    assert model.model_.predict_one("outsider", item) == twin.predict_one("outsider", item)
    model.partial_fit(explicit_stream.iloc[500:900])
    _river_loop(twin, explicit_stream.iloc[500:900])
    for name in ("u_biases", "i_biases", "u_latents", "i_latents"):
        if hasattr(twin, name):  # the same ids, with bit-identical values
            mine, rivers = getattr(model.model_, name), getattr(twin, name)
            assert mine.keys() == rivers.keys()
            assert all(np.array_equal(mine[key], rivers[key]) for key in rivers)


def test_a_large_encoded_call_with_ids_added_but_not_learned_yet_is_scored(explicit_stream):
    model = RiverBiasedMF(**_tutorial_params()).fit(explicit_stream.iloc[:200])
    twin = copy.deepcopy(model.model_)
    known = explicit_stream["user"].iloc[:20].tolist()
    users, items = model.add_ids(users=[*known, "late"], items=["fresh"] * 21)
    scores = model.score_encoded(users, items)
    np.testing.assert_array_equal(scores[:20], [twin.predict_one(u, "fresh") for u in known])
    assert scores[20] == twin.predict_one("late", "fresh")
