"""Fresh context: a step's earlier events of a user are given when scoring, never learned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recinc_plugins import Popularity
from recinc_plugins.base import Batch, Capabilities, IncrementalRecommender
from recinc_plugins.context import Context
from recinc_plugins.evaluation import Stream, compare


class ContextSpy(IncrementalRecommender):
    """Scores by popularity; records every context it is given and every batch it learns."""

    capabilities = Capabilities(context=True)
    log: list = []

    def _init_model(self) -> None:
        self.counts_ = np.zeros(0)

    def _grow(self, n_users: int, n_items: int) -> None:
        grown = np.zeros(n_items)
        grown[: self.counts_.size] = self.counts_
        self.counts_ = grown

    def _partial_fit(self, batch: Batch) -> None:
        ContextSpy.log.append(("learn", self.item_index_.ids_of(batch.items).tolist()))
        np.add.at(self.counts_, batch.items, 1.0)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts_, (users.size, 1))

    def _score_in_context(self, users: np.ndarray, context: Context) -> np.ndarray:
        for r, user in enumerate(users.tolist()):
            items, _ = context.row(r)
            uid = self.user_index_.ids_of(np.array([user]))[0] if user >= 0 else None
            ContextSpy.log.append(("context", uid, self.item_index_.ids_of(items).tolist()))
        return np.tile(self.counts_, (users.size, 1))


def _events(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": rng.integers(0, 25, n), "item": rng.integers(0, 60, n),
                         "timestamp": np.arange(n)})


def test_learned_context_is_the_default_and_fresh_equals_it_at_one_event_per_step():
    stream = Stream(_events(), step=1, warmup=50)
    learned = compare({"m": Popularity()}, stream, ks=(5, 10))
    fresh = compare({"m": Popularity()}, stream, ks=(5, 10), context="fresh")
    assert learned.summary.loc[0, "context"] == "learned"
    assert fresh.summary.loc[0, "context"] == "fresh"
    np.testing.assert_array_equal(learned.records["m"].rank, fresh.records["m"].rank)
    np.testing.assert_array_equal(learned.records["m"].recommended,
                                  fresh.records["m"].recommended)


def reference_fresh_ranks(events: pd.DataFrame, step: int, k: int) -> list[float]:
    """Popularity with fresh context, one event at a time in plain Python: counts from the
    steps before, candidates the items seen before the step less everything the user had
    before the event (earlier steps and earlier in this step)."""
    users, items = events["user"].tolist(), events["item"].tolist()
    ranks = []
    for s in range(0, len(events), step):
        counts: dict = {}
        for i in items[:s]:
            counts[i] = counts.get(i, 0) + 1
        order = sorted(counts, key=lambda i: (-counts[i], items.index(i)))
        for e in range(s, min(s + step, len(events))):
            had = {items[x] for x in range(e) if users[x] == users[e]}
            top = [i for i in order if i not in had][:k]
            hit = items[e] in top and items[e] not in had
            ranks.append(float(top.index(items[e])) if hit else np.inf)
    return ranks


@pytest.mark.parametrize("step", [7, 50, 400])
def test_fresh_context_excludes_the_user_earlier_items_in_the_step(step):
    events = _events()
    res = compare({"m": Popularity()}, Stream(events, step=step), k=10, context="fresh")
    np.testing.assert_array_equal(res.records["m"].rank, reference_fresh_ranks(events, step, 10))
    stream = Stream(events, step=step)
    assert res.summary.loc[0, "repeat_events"] == int(stream.seen_before.sum())


def test_a_model_gets_exactly_the_step_earlier_events_as_context_and_never_learns_them():
    events = _events(200, seed=3)
    step = 40
    ContextSpy.log = []
    res = compare({"spy": ContextSpy()}, Stream(events, step=step), k=10, context="fresh")
    assert not res.failures
    users, items = events["user"].tolist(), events["item"].tolist()
    learned: list = []
    calls = []
    for entry in ContextSpy.log:
        if entry[0] == "learn":
            learned.extend(entry[1])  # the steps, whole, in order, after they were scored
        else:
            calls.append((len(learned), entry[1], entry[2]))
    assert learned == items
    assert calls
    for n_learned, user, context in calls:
        s = n_learned  # the context was given while scoring the step that starts here
        known = set(items[:s])
        # some event of the user in this step had exactly these earlier in-step items, less
        # the ones first seen in the step (unknown to the model), oldest first
        expected = []
        for e in range(s, s + step):
            if (user is None and users[e] in users[:s]) or (user is not None and
                                                            users[e] != user):
                continue
            before = [items[x] for x in range(s, e) if users[x] == users[e]]
            if before:
                expected.append([i for i in before if i in known])
        assert context in expected
    # every event with earlier in-step events of a known item was given them
    assert len(calls) == sum(
        1 for s in range(0, 200, step) for e in range(s, s + step)
        if any(users[x] == users[e] and items[x] in set(items[:s]) for x in range(s, e)))


def test_als_scores_a_context_with_implicit_own_recalculate_user(explicit_stream):
    import scipy.sparse as sp

    import recinc_plugins

    model = recinc_plugins.make("implicit-als", factors=8, seed=0, num_threads=1)
    model.fit(explicit_stream.iloc[:2_000])
    context = Context.from_lists([[3, 5, 3], [7], [1, 2]], [[4.0, 1.0, 2.0], [5.0], [1.0, 3.0]])
    users = np.array([0, -1, 4])
    got = model.user_vectors(users, context)
    # the reference: each user's own history row (none for the unknown user) plus
    # context_weight (4 by default) times the context, as confidences, through implicit's
    # recalculate_user
    history, recent = [], []
    for r, user in enumerate(users.tolist()):
        history.append(model.user_items_[user].toarray()[0] if user >= 0
                       else np.zeros(model.n_items))
        row = np.zeros(model.n_items)
        items, values = context.row(r)
        np.add.at(row, items, values)
        recent.append(row)
    confidence = (model._confidence(sp.csr_matrix(np.array(history, dtype=np.float32)))
                  + model.context_weight
                  * model._confidence(sp.csr_matrix(np.array(recent, dtype=np.float32))))
    expected = model.model_.recalculate_user(np.arange(3), confidence)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(model.score_block(users, context),
                               expected @ model.model_.item_factors.T, atol=1e-5)
    # without a context, the learned factors as they are
    np.testing.assert_array_equal(model.user_vectors(np.array([0, 4])),
                                  model.model_.user_factors[[0, 4]])


@pytest.mark.parametrize(("name", "floor"), [("implicit-als", 0.13), ("neural", 0.12)])
def test_ml100k_fresh_context_at_1000_event_steps_doubles_popularity(ml100k, name, floor):
    """Issue 12's target at the defaults: with fresh context at 1,000-event steps the factor
    models reach at least twice popularity's learned-context 0.054 (docs/knn.md: ALS 0.1458,
    neural 0.1333; both defaults were chosen on the first half of ml-100k and the synthetic
    stream). lightfm (0.1309) is left out to keep the suite short."""
    import recinc_plugins

    stream = Stream(ml100k, step=1000)
    models = {"pop": Popularity(), name: recinc_plugins.make(name, seed=0)}
    summary = compare(models, stream, k=10, context="fresh").summary.set_index("model")
    learned = compare({"pop": Popularity()}, stream, k=10).summary.set_index("model")
    assert learned.loc["pop", "recall@10"] == pytest.approx(0.0536, abs=5e-4)
    assert summary.loc[name, "recall@10"] >= max(floor, 2 * learned.loc["pop", "recall@10"])
