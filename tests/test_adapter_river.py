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
    # River's own default optimiser, given explicitly (the adapter's default is a smaller step)
    pytest.param(RiverFunkMF, {"n_factors": 5, "seed": 3, "optimizer": optim.SGD(0.1)},
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


# -- the harness's fast path for one-event steps (score_then_learn_encoded) --------------------


def _per_step(cls: type) -> type:
    """The adapter without its fast path: the replay then calls score_encoded and
    learn_encoded once per step, as for any model."""
    return type(f"PerStep{cls.__name__}", (cls,),
                {"score_then_learn_encoded": lambda self, batch: None})


def _replay(model, stream, **config):
    from recinc_plugins.evaluation.prequential import ReplayConfig, replay

    return replay("m", model, stream, ReplayConfig(ranking=False, rating="always", **config))


def _same_river_state(a, b) -> None:
    for name in ("u_biases", "i_biases", "u_latents", "i_latents"):
        if hasattr(b, name):
            mine, theirs = getattr(a, name), getattr(b, name)
            assert mine.keys() == theirs.keys()
            assert all(np.array_equal(mine[key], theirs[key]) for key in theirs)
    if hasattr(b, "global_mean"):
        assert a.global_mean.get() == b.global_mean.get()


@pytest.mark.parametrize(("cls", "params", "native_factory"), ADAPTERS)
def test_replay_through_the_fast_path_gives_the_per_step_numbers(cls, params, native_factory,
                                                                  explicit_stream):
    from recinc_plugins.evaluation import Stream

    # a warm-up, then one-event steps with three-event ones among them (shared timestamps):
    # runs of one-event steps go through one call each and stop at the larger steps
    frame = explicit_stream.iloc[:1500].copy()
    hours = np.arange(len(frame))
    hours[200::37] -= 1  # each of these events shares the hour of the one before it ...
    hours[201::37] -= 2  # ... and so does the next one: steps of 3 events
    frame["timestamp"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(hours, unit="h")
    stream = Stream(frame, step="1h", warmup=150)
    sizes = np.diff(stream.bounds)
    assert sizes.max() == 3 and (sizes == 1).sum() > 1000

    fast, slow = cls(**params), _per_step(cls)(**params)
    fast_record, slow_record = _replay(fast, stream), _replay(slow, stream)
    np.testing.assert_array_equal(fast_record.pred, slow_record.pred)
    assert np.isfinite(fast_record.pred).all()
    assert fast_record.extra["fused_steps"] == (sizes == 1).sum()
    assert "fused_steps" not in slow_record.extra
    _same_river_state(fast.model_, slow.model_)
    native = native_factory()  # and both are River's own loop
    _river_loop(native, frame.sort_values("timestamp", kind="stable"))
    _same_river_state(fast.model_, native)
    assert fast.n_events_ == slow.n_events_ == len(frame)
    np.testing.assert_array_equal(fast.item_counts_, slow.item_counts_)
    assert (fast.seen_.tocsr() != slow.seen_.tocsr()).nnz == 0


class CrashingBiasedMF(RiverBiasedMF):
    """BiasedMF whose fast path fails on its n-th call, as a crash mid-replay would."""

    crash_at: int | None = None

    def score_then_learn_encoded(self, batch):
        self.calls_ = getattr(self, "calls_", 0) + 1
        if self.calls_ == CrashingBiasedMF.crash_at:
            raise RuntimeError("crash")
        return super().score_then_learn_encoded(batch)


def test_runs_of_one_event_steps_stop_at_checkpoints_so_a_crashed_replay_resumes_exactly(
        explicit_stream, tmp_path):
    from recinc_plugins.evaluation import Stream, compare

    stream = Stream(explicit_stream.iloc[:2000], step=1, warmup=100)
    full = compare({"mf": CrashingBiasedMF(**_tutorial_params())}, stream, target="rating")
    CrashingBiasedMF.crash_at = 7  # the probe (an empty batch), then runs of 300 steps
    try:
        crashed = compare({"mf": CrashingBiasedMF(**_tutorial_params())}, stream,
                          target="rating", checkpoint_dir=tmp_path, checkpoint_every=300)
    finally:
        CrashingBiasedMF.crash_at = None
    assert "RuntimeError: crash" in crashed.failures["mf"]
    resumed = compare({"mf": CrashingBiasedMF(**_tutorial_params())}, stream, target="rating",
                      checkpoint_dir=tmp_path, checkpoint_every=300, resume=True)
    record = resumed.records["mf"]
    assert record.resumed_from == 1500
    np.testing.assert_array_equal(record.pred, full.records["mf"].pred)
    assert record.extra["fused_steps"] == stream.n_steps  # before the crash and after it


def test_a_model_without_the_fast_path_is_asked_and_changes_nothing(explicit_stream):
    from recinc_plugins.baselines import Popularity

    empty = np.empty(0, dtype=np.int64)
    for model in (Popularity().fit(explicit_stream.iloc[:100]),
                  pytest.warns(UserWarning, match="cannot be read")):
        if not isinstance(model, Popularity):
            with model:
                model = RiverRanker(reco.RandomNormal(seed=1)).fit(explicit_stream.iloc[:100])
        before = (model.n_events_, model.n_users, model.n_items)
        u, i = model.add_ids(users=[explicit_stream["user"].iloc[0]],
                             items=[explicit_stream["item"].iloc[0]])
        assert model.score_then_learn_encoded(Batch(users=u, items=i,
                                                    ratings=np.array([4.0]))) is None
        assert (model.n_events_, model.n_users, model.n_items) == before
    river = RiverBiasedMF(**_tutorial_params()).fit(explicit_stream.iloc[:100])
    out = river.score_then_learn_encoded(Batch(users=empty, items=empty, ratings=np.empty(0)))
    assert out is not None and out.size == 0 and river.n_events_ == 100


# -- FunkMF's defaults (issue 16) ----------------------------------------------------------


def _first_nan(native, frame: pd.DataFrame) -> int | None:
    """River's own loop: the first event whose prediction is not finite, or None."""
    for n, (user, item, y) in enumerate(zip(frame["user"].tolist(), frame["item"].tolist(),
                                            frame["rating"].tolist(), strict=True)):
        if not np.isfinite(native.predict_one(user, item)):
            return n
        native.learn_one(user, item, y)
    return None


def test_funkmf_at_its_defaults_stays_finite_where_rivers_default_step_diverges():
    from recinc_plugins.data import synthetic_stream
    from recinc_plugins.evaluation import Stream, compare

    # ratings 1-5 with users of a few hundred events: River's FunkMF defaults (SGD(0.1))
    # diverge here as they do on ml-100k (NaN after 1,534 events there)
    frame = synthetic_stream(n_events=5000, n_users=200, n_items=400, seed=7)
    stream = Stream(frame, step=1)
    nan_at = _first_nan(reco.FunkMF(seed=0), stream.frame)
    assert nan_at is not None and nan_at > 1000

    models = {"default": RiverFunkMF(seed=0),
              "rivers-step": RiverFunkMF(seed=0, optimizer=optim.SGD(0.1)),
              "rivers-step-per-step": _per_step(RiverFunkMF)(seed=0,
                                                             optimizer=optim.SGD(0.1))}
    result = compare(models, stream, target="rating", clip=(1, 5))
    summary = result.summary.set_index("model")
    assert summary.loc["default", "status"] == "ok"
    # finite, and below what a model that learned nothing scores (every prediction under the
    # scale, clipped to 1: 2.44)
    floor = float(np.sqrt(np.mean((frame["rating"].to_numpy() - 1.0) ** 2)))
    assert 1.0 < summary.loc["default", "rmse"] < floor - 0.1
    # River's own step, passed explicitly, is River's: it diverges at River's event, and the
    # fast path reports the step the per-step replay reports
    assert result.diverged == {"rivers-step": nan_at, "rivers-step-per-step": nan_at}


def test_funkmf_defaults_on_ml100k_stay_finite_for_ratings_and_ranking(ml100k):
    from recinc_plugins.evaluation import Stream, compare

    rating = compare({"funk": RiverFunkMF(seed=0)}, Stream(ml100k, step=1), target="rating",
                     clip=(1, 5)).summary.iloc[0]
    assert rating["status"] == "ok" and 1.2 < rating["rmse"] < 1.45
    ranking = compare({"funk": RiverFunkMF(seed=0)}, Stream(ml100k, step=1000),
                      target="ranking").summary.iloc[0]
    assert ranking["status"] == "ok" and ranking["recall@10"] > 0.04


def test_mirror_arrays_grow_with_spare_room_one_new_item_at_a_time(explicit_stream):
    # one new item per event on a growing catalogue must not copy every array each time
    # (quadratic): the arrays are views of buffers that at least double when full
    model = RiverBiasedMF(**_tutorial_params()).fit(explicit_stream.iloc[:200])
    buffers: list = []  # each distinct buffer, held so that no id is reused
    for j in range(300):
        model.partial_fit(pd.DataFrame({"user": ["u0"], "item": [f"new{j}"], "rating": [4.0]}))
        assert model.item_bias_.shape[0] == model.n_items
        base = model.item_latent_.base
        assert base is not None and base.shape[0] >= model.n_items
        if not any(base is b for b in buffers):
            buffers.append(base)
    assert len(buffers) <= 4  # reallocated a few times, not 300
    fresh = RiverBiasedMF(**_tutorial_params()).fit(explicit_stream.iloc[:200])
    for j in range(300):
        fresh.partial_fit(pd.DataFrame({"user": ["u0"], "item": [f"new{j}"], "rating": [4.0]}))
    np.testing.assert_array_equal(model.recommend(["u0"], k=20).items,
                                  fresh.recommend(["u0"], k=20).items)
