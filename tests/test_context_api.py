"""``recommend(..., context=...)`` and ``score(..., context=...)``: the users' recent events that
the model has not learned, given with the ids a service has (issue 12's interface). The
lists equal what the harness ranks under ``context="fresh"``, models that use context score
an unknown user from it, nothing is learned, the others ignore it for scoring, and every
context's items leave the candidates."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins import Popularity
from recinc_plugins.context import Context
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.evaluation.prequential import CONTEXT_ITEMS
from recinc_plugins.knn import ItemKNN


def _session_stream(n_users: int = 60, per_user: int = 12, n_items: int = 80,
                    seed: int = 0) -> pd.DataFrame:
    """Users who walk a ring of items in sessions (item i, then i+1, ...), interleaved."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for j in range(per_user):
            rows.append((f"u{u}", f"i{(start + j) % n_items}", float(rng.random())))
    frame = pd.DataFrame(rows, columns=["user", "item", "order"])
    frame = frame.sort_values("order", kind="stable").drop(columns="order")
    frame["timestamp"] = np.arange(len(frame))
    return frame.reset_index(drop=True)


def test_recommend_with_context_ranks_as_the_harness_does_under_fresh_context():
    events = _session_stream()
    step, k = 240, 10
    stream = Stream(events, step=step)
    ranks = compare({"knn": ItemKNN()}, stream, k=k, context="fresh").records["knn"].rank
    model = ItemKNN()
    checked = 0
    for s in range(0, len(events), step):
        chunk = events.iloc[s:s + step]
        if s:  # the first step is scored against an empty model
            for e, (user, item) in enumerate(zip(chunk["user"], chunk["item"], strict=True)):
                earlier = chunk.iloc[:e]
                earlier = earlier[earlier["user"] == user]
                assert len(earlier) < CONTEXT_ITEMS
                items = model.recommend(user, k=k, context=earlier).items[0].tolist()
                expected = items.index(item) if item in items else np.inf
                # the harness counts a repeat (an item the user had) as a miss
                assert ranks[s + e] == expected
                checked += 1
        model.partial_fit(chunk)
    assert checked == len(events) - step


@pytest.mark.parametrize("name", ["item-knn", "implicit-als", "neural"])
def test_an_unknown_user_is_scored_from_its_context_and_nothing_is_learned(name):
    pytest.importorskip("implicit") if name == "implicit-als" else None
    events = _session_stream()
    model = recinc_plugins.make(name, **({} if name == "item-knn" else {"seed": 0}))
    model.fit(events)
    saved = model.get_params(), model.n_users, model.n_items, model.n_events_
    before = model.recommend("u3", k=5).items
    recent = ["i10", "i11", "i12"]
    recs = model.recommend("stranger", k=5, context=recent)
    assert not recs.cold[0]
    assert not set(recent) & set(recs.items[0].tolist())  # the context leaves the candidates
    plain = model.recommend("stranger", k=5)
    assert plain.cold[0] and not np.array_equal(plain.items, recs.items)
    # score: the pairs of a user with a context are scored with it, as score_block does
    items = ["i13", "i40", "i70"]
    scores, cold = model.score("stranger", items, context=recent, return_cold=True)
    assert not cold.any()
    idx = model.item_index_.lookup(np.array(recent, dtype=object))
    block = model.score_block(np.array([-1]), Context.from_lists([idx.tolist()]))
    np.testing.assert_allclose(scores, block[0, model.item_index_.lookup(
        np.array(items, dtype=object))], rtol=1e-6)
    # nothing learned: no new user, no event, the same lists as before
    assert (model.get_params(), model.n_users, model.n_items, model.n_events_) == saved
    np.testing.assert_array_equal(model.recommend("u3", k=5).items, before)


def test_the_three_forms_of_context_agree_and_strengths_are_read():
    pytest.importorskip("implicit")
    events = _session_stream()
    model = recinc_plugins.make("implicit-als", seed=0).fit(events)
    users = ["u1", "nobody"]
    frame = pd.DataFrame({"user": ["u1", "nobody", "u1", "other"],
                          "item": ["i5", "i20", "i6", "i50"]})
    mapping = {"u1": ["i5", "i6"], "nobody": ["i20"]}
    a = model.recommend(users, k=5, context=frame)
    b = model.recommend(users, k=5, context=mapping)
    np.testing.assert_array_equal(a.items, b.items)
    one = model.recommend("u1", k=5, context=["i5", "i6"])
    # (ALS solves the rows of a call together: float32 rounding may swap exact ties)
    np.testing.assert_allclose(one.scores[0], a.scores[0], rtol=1e-5)
    assert set(one.items[0]) == set(a.items[0])
    # a weight column is a strength: a heavier context event moves ALS's fold-in (with a
    # confidence that reads strengths; the default, "binary", does not)
    linear = recinc_plugins.make("implicit-als", confidence="linear", seed=0).fit(events)
    heavy = frame.assign(weight=[1.0, 1.0, 50.0, 1.0])
    assert not np.allclose(linear.score("u1", ["i7", "i8", "i30"], context=heavy),
                           linear.score("u1", ["i7", "i8", "i30"], context=frame))
    # an item the model does not know is left out, the rest still used
    np.testing.assert_array_equal(
        model.recommend("u1", k=5, context=["i5", "brand-new", "i6"]).items, one.items)


def test_a_model_without_context_ignores_it_for_scores_but_not_for_candidates():
    events = _session_stream()
    model = Popularity().fit(events)
    plain = model.recommend("u1", k=5)
    top = plain.items[0].tolist()
    recs = model.recommend("u1", k=5, context=top[:2])
    assert recs.items[0].tolist() == [i for i in model.recommend("u1", k=7).items[0]
                                      if i not in top[:2]][:5]
    np.testing.assert_array_equal(model.score("u1", top, context=top[:2]),
                                  model.score("u1", top))
    assert model.recommend("stranger", k=3, context=["i1"]).cold[0]  # still the fallback
    unmasked = model.recommend("u1", k=5, context=top[:2], exclude_seen=False)
    assert unmasked.items[0].tolist()[:2] == top[:2]


@pytest.mark.parametrize(("context", "error", "match"), [
    ("i5", TypeError, "list of item ids"),
    (pd.DataFrame({"user": ["u1"]}), ValueError, "'item'"),
    (pd.DataFrame({"user": ["u1"], "item": ["i5"], "rating": ["five"]}), ValueError,
     "column 'rating': non-numeric, missing or non-finite values in 1 row"),
    ({"u1": "i5"}, TypeError, r"context\['u1'\]"),
    (42, TypeError, "context must be"),
])
def test_bad_context_is_refused_with_a_message_naming_it(context, error, match):
    model = ItemKNN().fit(_session_stream())
    with pytest.raises(error, match=match):
        model.recommend("u1", k=3, context=context)
    with pytest.raises(error, match=match):
        model.score("u1", ["i1"], context=context)


def test_for_several_users_a_list_is_refused():
    model = ItemKNN().fit(_session_stream())
    with pytest.raises(TypeError, match="context must be"):
        model.recommend(["u1", "u2"], k=3, context=["i5"])


def test_a_rating_model_needs_the_context_ratings_and_uses_them():
    pytest.importorskip("surprise")
    events = _session_stream()
    events["rating"] = np.where(events.index % 2 == 0, 5.0, 2.0)
    model = recinc_plugins.make("surprise-svd").fit(events)
    with pytest.raises(ValueError, match="'rating' column"):
        model.recommend("stranger", k=3, context=["i1", "i2"])
    high = pd.DataFrame({"user": "stranger", "item": ["i1", "i2"], "rating": 5.0})
    low = high.assign(rating=1.0)
    assert (model.score("stranger", ["i3", "i4"], context=high)
            > model.score("stranger", ["i3", "i4"], context=low)).all()


def test_a_none_user_id_in_score_is_its_own_user_not_another_users_context():
    events = pd.DataFrame({"user": list("aabbc"), "item": list("xyyzx")})
    model = ItemKNN().fit(events)
    alone = model.score(["a"], ["z"], context={"a": ["x"]})
    scores, cold = model.score([None, "a"], ["z", "z"], context={"a": ["x"]}, return_cold=True)
    assert cold.tolist() == [True, False]
    assert scores[1] == alone[0]
    assert scores[0] == model.score([None], ["z"])[0]  # the fallback


def test_more_forms_of_context_and_their_errors():
    events = _session_stream()
    model = ItemKNN().fit(events)
    recent = pd.DataFrame({"user": ["u1", "u1", "u2"], "item": ["i5", "i6", "i9"]})
    by_user = recent.groupby("user")["item"].apply(list)  # a Series of lists: a mapping
    np.testing.assert_array_equal(model.recommend(["u1", "u2"], k=5, context=by_user).items,
                                  model.recommend(["u1", "u2"], k=5, context=recent).items)
    one = model.recommend("u1", k=5, context=recent.loc[recent["user"] == "u1", "item"])
    np.testing.assert_array_equal(one.items, model.recommend("u1", k=5,
                                                             context=["i5", "i6"]).items)
    with pytest.raises(TypeError, match="one-dimensional"):
        model.recommend("u1", k=5, context=np.array([["i5"], ["i6"]]))
    with pytest.raises(TypeError, match="hashable"):
        model.recommend("u1", k=5, context=[["i5", "i6"]])
    # another user's rows are not used, so their bad strengths do not matter
    other = pd.concat([recent, pd.DataFrame({"user": ["u9"], "item": ["i1"]})])
    other["weight"] = [1.0, 1.0, 1.0, np.nan]
    model.recommend("u1", k=5, context=other)
    with pytest.raises(ValueError, match=re.escape("column 'weight': non-numeric, missing or "
                                                   "non-finite values in 1 row(s) at positions 3")):
        model.recommend("u9", k=5, context=other)


@pytest.mark.parametrize("name", ["popularity", "item-knn", "implicit-als", "lightfm",
                                  "neural"])
def test_ids_added_but_not_learned_can_be_scored_and_given_a_context(name):
    pytest.importorskip("implicit") if name == "implicit-als" else None
    pytest.importorskip("lightfm") if name == "lightfm" else None
    events = _session_stream()
    model = recinc_plugins.make(name, **({} if name in ("popularity", "item-knn")
                                         else {"seed": 0})).fit(events)
    model.add_ids(users=["later"], items=["i-later"])
    recs = model.recommend(["later", "u1"], k=5, context={"later": ["i3", "i-later"]})
    assert recs.items.shape == (2, 5)
    assert np.isfinite(model.score("later", ["i3", "i-later"], context=["i3"])).all()


def test_a_series_of_lists_may_be_empty_or_miss_users_and_bad_ids_are_refused():
    model = ItemKNN().fit(_session_stream())
    recent = pd.DataFrame({"user": ["u1", "u1", "u2"], "item": ["i5", "i6", "i9"]})
    plain = model.recommend(["u1", "u2"], k=5)
    nobody = recent[recent["user"].isin([])].groupby("user")["item"].apply(list)
    np.testing.assert_array_equal(model.recommend(["u1", "u2"], k=5, context=nobody).items,
                                  plain.items)  # no recent events for anyone: no context
    some = recent.groupby("user")["item"].apply(list).reindex(["u1", "u2", "u3"])
    assert some.isna().tolist() == [False, False, True]
    np.testing.assert_array_equal(
        model.recommend(["u1", "u3"], k=5, context=some).items,
        model.recommend(["u1", "u3"], k=5, context={"u1": ["i5", "i6"]}).items)
    with pytest.raises(TypeError, match="indexed by 'user' holds several users"):
        model.recommend("u1", k=5, context=recent.set_index("user")["item"])
    for bad, what in ((["i5", None], "None or NaN"), (["i5", np.nan], "None or NaN"),
                      ([("u1", "i5")], "a tuple")):
        with pytest.raises(ValueError, match=re.escape(what) + ".*user 'u1' at position"):
            model.recommend("u1", k=5, context=bad)
    with pytest.raises(ValueError, match="None or NaN: 1 found, the first for user 'u2' at "
                                         "position 1"):
        model.recommend(["u1", "u2"], k=5, context={"u1": ["i5"], "u2": ["i9", None]})
    doubled = pd.concat([recent, recent[["item"]]], axis=1)
    with pytest.raises(ValueError, match=r"more than one column named \['item'\]"):
        model.recommend("u1", k=5, context=doubled)


@pytest.mark.parametrize("name", ["item-knn", "implicit-als", "implicit-bpr", "lightfm",
                                  "neural", "neural-seq"])
def test_an_unknown_users_context_of_unlearned_items_is_the_cold_start_and_says_so(name):
    pytest.importorskip("implicit") if name.startswith("implicit") else None
    pytest.importorskip("lightfm") if name == "lightfm" else None
    events = _session_stream()
    model = recinc_plugins.make(name, **({} if name == "item-knn" else {"seed": 0})).fit(events)
    model.add_ids(items=["i-new"])  # known by id, nothing learned about it
    cold = model.recommend("stranger", k=5)
    assert cold.cold.tolist() == [True]
    unlearned = model.recommend("stranger", k=5, context=["i-new"], exclude_seen=False)
    assert unlearned.cold.tolist() == [True]
    np.testing.assert_array_equal(unlearned.items, cold.items)  # the fallback's list
    scores, flags = model.score("stranger", ["i1", "i2"], context=["i-new"], return_cold=True)
    assert flags.tolist() == [True, True]
    np.testing.assert_array_equal(scores, model.score("stranger", ["i1", "i2"]))
    learned = model.recommend("stranger", k=5, context=["i-new", "i3"])
    assert learned.cold.tolist() == [False]  # one learned item: scored from the context
    # the harness scores the same rows the same way (score_block with the context)
    u = model.user_index_.lookup(["stranger"])
    ctx = Context.from_lists([model.item_index_.lookup(["i-new"]).tolist()])
    assert model.context_rows(u, ctx).tolist() == [False]
    np.testing.assert_array_equal(np.argsort(-np.asarray(model.score_block(u, ctx))[0],
                                             kind="stable")[:5],
                                  np.argsort(-model._fallback_scores(1)[0], kind="stable")[:5])


def test_a_model_that_cannot_use_the_context_flags_the_unknown_user_cold():
    pytest.importorskip("surprise")
    events = _session_stream()
    events["rating"] = np.where(events.index % 2 == 0, 5.0, 2.0)
    svd = recinc_plugins.make("surprise-svd").fit(events)
    svd.add_ids(items=["i-new"])
    ghost = pd.DataFrame({"user": ["stranger"], "item": ["i-new"], "rating": [5.0]})
    assert svd.recommend("stranger", k=5, context=ghost).cold.tolist() == [True]
    seen = ghost.assign(item="i3")
    assert svd.recommend("stranger", k=5, context=seen).cold.tolist() == [False]
    flat = recinc_plugins.make("neural", history=0, seed=0).fit(events.drop(columns="rating"))
    recs = flat.recommend("stranger", k=5, context=["i3"], exclude_seen=False)
    assert recs.cold.tolist() == [True]  # history=0: the context has nowhere to go
    np.testing.assert_array_equal(recs.items, flat.recommend("stranger", k=5).items)


def test_neural_in_rating_mode_takes_item_lists_as_context_since_it_reads_no_ratings():
    events = _session_stream()
    events["rating"] = np.where(events.index % 2 == 0, 5.0, 2.0)
    model = recinc_plugins.make("neural", loss="mse", seed=0).fit(events)
    assert model.predicts_ratings() and not model.context_reads_ratings
    with_list = model.score("stranger", ["i3", "i4"], context=["i1", "i2"])
    frame = pd.DataFrame({"user": "stranger", "item": ["i1", "i2"], "rating": [1.0, 5.0]})
    np.testing.assert_array_equal(with_list, model.score("stranger", ["i3", "i4"],
                                                         context=frame))
    assert not np.array_equal(with_list, model.score("stranger", ["i3", "i4"]))
