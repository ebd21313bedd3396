"""NeuralRecommender with context: a user's unlearned events join its recent items at once."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recinc_plugins.context import Context  # noqa: E402
from recinc_plugins.neural import NeuralRecommender  # noqa: E402

SMALL = dict(n_factors=8, history=5, n_negatives=4, replay_size=500, n_replay=2, device="cpu")


def learned_items(model: NeuralRecommender, user: int) -> list[int]:
    """The user's recent items as the model keeps them, oldest first (from its ring)."""
    count, length = int(model.hist_count_[user]), model.hist_.shape[1]
    return [int(model.hist_[user, t % length]) - 1 for t in range(max(0, count - length), count)]


def reference_scores(model: NeuralRecommender, users, context: Context) -> np.ndarray:
    """In float64 from the tables: each user's row (zero for -1) plus the pooled embeddings of
    its last ``history`` items after the context is appended to its learned ones, weighted
    ``history_decay ** age / sqrt(count)``; dotted with ``[q_i, b_i]`` (plus the global mean and
    the user bias for ratings)."""
    weight = model.arena_.weight.numpy().astype(np.float64)
    items = weight[model.arena_.offset["items"]:][:model.n_items]
    out = []
    for r, user in enumerate(users):
        recent = (learned_items(model, user) if user >= 0 else []) + context.row(r)[0].tolist()
        recent = recent[-model.history:]
        z = weight[model.arena_.offset["users"] + user].copy() if user >= 0 \
            else np.zeros(weight.shape[1])
        for age, item in enumerate(reversed(recent)):
            row = weight[model.arena_.offset["history"] + item]
            z[:-1] += model.history_decay ** age / np.sqrt(len(recent)) * row[:-1]
        scores = items[:, :-1] @ z[:-1] + items[:, -1]
        if model.loss == "mse":
            scores += model.global_mean_ + z[-1]
        out.append(scores)
    return np.array(out)


@pytest.fixture(scope="module", params=["bpr", "mse"])
def model(request, explicit_stream):
    return NeuralRecommender(**SMALL, loss=request.param, seed=0).fit(explicit_stream.iloc[:1500])


@pytest.mark.parametrize("n_users", [3, 40])  # the numpy path of small blocks, then torch
def test_an_empty_context_scores_exactly_as_no_context(model, n_users):
    users = np.arange(n_users)
    empty = Context.from_lists([[] for _ in range(n_users)])
    np.testing.assert_array_equal(model.score_block(users, empty), model.score_block(users))


@pytest.mark.parametrize("n_users", [4, 40])
def test_a_context_scores_as_if_appended_to_the_recent_items(model, n_users):
    rng = np.random.default_rng(n_users)
    users = rng.choice(model.n_users, n_users, replace=False)
    users[0] = -1  # a user the model never learned: its context alone
    # lengths 0 to 8 (history is 5: longer contexts push every learned item out)
    rows = [rng.integers(0, model.n_items, rng.integers(0, 9)).tolist() for _ in users]
    rows[0] = rows[0] or [1, 2]
    context = Context.from_lists(rows)
    before = model.arena_.weight.clone(), model.hist_.copy(), model.hist_count_.copy()
    got = model.score_block(users, context)
    np.testing.assert_allclose(got, reference_scores(model, users, context), rtol=1e-5,
                               atol=1e-5)
    # nothing was learned or remembered
    assert torch.equal(model.arena_.weight, before[0])
    np.testing.assert_array_equal(model.hist_, before[1])
    np.testing.assert_array_equal(model.hist_count_, before[2])


def test_context_scores_equal_the_model_after_remembering_the_context(model):
    users = np.array([2, 7, 11])
    context = Context.from_lists([[5, 9], [], [3, 3, 8]])
    remembered = copy.deepcopy(model)
    for r, user in enumerate(users):
        items = context.row(r)[0]
        remembered._remember(np.full(items.size, user), items)
    np.testing.assert_allclose(model.score_block(users, context),
                               remembered.score_block(users), rtol=1e-5, atol=1e-6)


def test_an_unknown_user_without_context_gets_the_cold_start_scores(model):
    scores = model.score_block(np.array([-1, 0]), Context.from_lists([[], []]))
    np.testing.assert_array_equal(scores[0], model.cold_scores())
    np.testing.assert_array_equal(scores[1], model.score_block(np.array([0]))[0])


def test_hashed_tables_take_context_through_the_same_buckets(explicit_stream):
    model = NeuralRecommender(**SMALL, hash_buckets=16, seed=0).fit(explicit_stream.iloc[:800])
    users = np.array([0, 5, -1])
    context = Context.from_lists([[4], [7, 1, 9], [2]])
    remembered = copy.deepcopy(model)
    for r, user in enumerate(users[:2]):
        items = context.row(r)[0]
        remembered._remember(np.full(items.size, user), items)
    np.testing.assert_allclose(model.score_block(users[:2], context.take([0, 1])),
                               remembered.score_block(users[:2]), rtol=1e-5, atol=1e-6)
    assert np.isfinite(model.score_block(users, context)).all()


def test_fresh_context_changes_the_ranks_of_exactly_the_events_with_one(explicit_stream):
    from recinc_plugins.evaluation import Stream, compare

    events = Stream(explicit_stream.iloc[:1200]).frame  # in replay order
    ranks = {}
    for step, context in ((1, "learned"), (1, "fresh"), (100, "learned"), (100, "fresh")):
        result = compare({"m": NeuralRecommender(**SMALL, seed=0)}, Stream(events, step=step),
                         k=10, context=context)
        ranks[step, context] = result.records["m"].rank
    np.testing.assert_array_equal(ranks[1, "learned"], ranks[1, "fresh"])
    # at 100-event steps, an event whose user has no earlier event in its step is scored as
    # without context; the others with their earlier in-step items
    step_of = np.arange(len(events)) // 100
    has_context = events.groupby([step_of, events["user"].to_numpy()]).cumcount().to_numpy() > 0
    learned, fresh = ranks[100, "learned"], ranks[100, "fresh"]
    np.testing.assert_array_equal(learned[~has_context], fresh[~has_context])
    assert (learned[has_context] != fresh[has_context]).any()
