"""``forget`` for every registered model: the ids are unknown afterwards, a saved file holds no
trace of them, exact models equal a model trained without the events, and learning goes on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins import DecayedPopularity, Popularity
from recinc_plugins.audit import audit_model
from recinc_plugins.data import synthetic_stream

MODELS = recinc_plugins.list_models()
GONE_USER = "forget-me-user-7f3a"
GONE_ITEM = "forget-me-item-c91e"


def _events(explicit: bool) -> pd.DataFrame:
    frame = synthetic_stream(n_events=1_500, n_users=60, n_items=90, seed=5,
                             feedback="explicit" if explicit else "implicit")
    frame = frame.copy()
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    first_user, first_item = frame["user"].iloc[0], frame["item"].iloc[1]
    frame["user"] = frame["user"].replace(first_user, GONE_USER)
    frame["item"] = frame["item"].replace(first_item, GONE_ITEM)
    return frame


def _model(name: str):
    row = MODELS.set_index("name").loc[name]
    if not row["installed"]:
        pytest.skip(f"{name} needs the {row['extra']!r} extra")
    return recinc_plugins.make(name)


def _learn(model, frame):
    explicit = not type(model).capabilities.implicit
    if explicit and "rating" not in frame:
        frame = frame.assign(rating=3.0)
    model.fit(frame.iloc[:1_000])
    model.partial_fit(frame.iloc[1_000:])
    return model


@pytest.mark.parametrize("name", MODELS["name"].tolist())
def test_forget_leaves_no_trace_and_the_model_keeps_learning(tmp_path, name):
    model = _model(name)
    explicit = not type(model).capabilities.implicit
    frame = _events(explicit)
    _learn(model, frame)
    assert GONE_USER in model.user_index_ and GONE_ITEM in model.item_index_
    n_events = model.n_events_
    report = model.forget(users=[GONE_USER], items=[GONE_ITEM])
    gone = (frame["user"] == GONE_USER) | (frame["item"] == GONE_ITEM)
    assert report.users == 1 and report.items == 1 and report.events == int(gone.sum())
    assert model.n_events_ == n_events - int(gone.sum())
    assert GONE_USER not in model.user_index_ and GONE_ITEM not in model.item_index_

    # unknown now: scored by the cold-start policy, never recommended
    _, cold = model.score(GONE_USER, [frame["item"].iloc[5]], return_cold=True)
    assert cold.all()
    recs = model.recommend(["u1", GONE_USER], k=20, exclude_seen=False).to_frame()
    assert GONE_ITEM not in set(recs["item"])

    # a saved file holds no trace: not the id's bytes, and the structured audit finds none
    path = tmp_path / "model.recinc"
    model.save(path)
    data = path.read_bytes()
    assert GONE_USER.encode() not in data and GONE_ITEM.encode() not in data
    assert GONE_USER.encode("utf-16-le") not in data
    found = audit_model(path, users=[GONE_USER], items=[GONE_ITEM])
    assert found.clean, found.traces

    # forgetting again is a clear error, and changes nothing; missing="ignore" skips it
    with pytest.raises(ValueError, match="unknown user id"):
        model.forget(users=[GONE_USER, "u1"])
    assert "u1" in model.user_index_
    assert model.forget(users=[GONE_USER], missing="ignore").users == 0

    # learning goes on, the id comes back as a new one
    more = frame.iloc[:200].copy()
    more.loc[more.index[:5], "user"] = GONE_USER
    model.partial_fit(more)
    assert GONE_USER in model.user_index_
    scores = model.score("u1", more["item"].iloc[:10].tolist())
    assert np.isfinite(scores).all()
    loaded = type(model).load(path)
    assert GONE_USER not in loaded.user_index_


@pytest.mark.parametrize("name", ["popularity", "random"])
def test_exact_models_equal_a_model_trained_without_the_events(name):
    frame = _events(explicit=False)
    model = _learn(_model(name), frame)
    assert model.forget(users=[GONE_USER, "u3"], items=[GONE_ITEM]).exact
    kept = frame[~frame["user"].isin([GONE_USER, "u3"]) & (frame["item"] != GONE_ITEM)]
    fresh = _learn(_model(name), kept)
    users = ["u1", "u2", "u10", "never-seen"]
    if name == "random":
        return  # nothing learned; its draws depend on the calls, not the events
    a = model.recommend(users, k=15).to_frame()
    b = fresh.recommend(users, k=15).to_frame()
    pd.testing.assert_frame_equal(a, b)


def test_decayed_popularity_in_time_forgets_exactly():
    # "now" stays the time of the latest event learned (forgetting does not turn the clock
    # back): the model equals one trained without the events whose clock reached that time
    frame = _events(explicit=False)
    frame["timestamp"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(
        np.arange(len(frame)) * 3600, unit="s")
    model = _learn(DecayedPopularity(half_life="3D"), frame)
    assert model.forgets_exactly
    model.forget(users=[GONE_USER, frame["user"].iloc[-1]], items=[GONE_ITEM])
    gone = frame["user"].isin([GONE_USER, frame["user"].iloc[-1]]) | (frame["item"] == GONE_ITEM)
    fresh = _learn(DecayedPopularity(half_life="3D"), frame[~gone])
    def now(m):  # the latest learned event's time, ns
        return m.origin_ns_ + m.clock_ * m._half_life_ns

    items = sorted(set(frame.loc[~gone, "item"]))
    later = 2.0 ** ((now(fresh) - now(model)) / model._half_life_ns)  # fresh's clock to model's
    assert now(model) > now(fresh)
    np.testing.assert_allclose(model.score("x", items), fresh.score("x", items) * later,
                               rtol=1e-9)
    assert not DecayedPopularity(half_life=100).forgets_exactly


def test_weighted_popularity_takes_out_the_weights():
    frame = _events(explicit=False)
    model = _learn(Popularity(weighted=True), frame)
    model.forget(users=["u4"])
    fresh = _learn(Popularity(weighted=True), frame[frame["user"] != "u4"])
    items = sorted(set(frame["item"]))
    np.testing.assert_allclose(model.score("x", items), fresh.score("x", items), atol=1e-9)


def test_exact_true_retrains_on_the_kept_events():
    frame = _events(explicit=False)
    model = _learn(Popularity(), frame)
    kept = model.kept_events()
    assert len(kept) == model.n_events_ == len(frame)
    report = model.forget(items=[GONE_ITEM], exact=True)
    assert report.exact and GONE_ITEM not in model.item_index_
    assert len(model.kept_events()) == int((frame["item"] != GONE_ITEM).sum())


def test_a_refused_forget_changes_nothing(tmp_path):
    frame = _events(explicit=False)
    model = _learn(Popularity(), frame)
    before = tmp_path / "before.recinc"
    model.save(before)
    for bad in ({"users": ["nobody"]}, {"items": [GONE_ITEM, "no-such-item"]}):
        with pytest.raises(ValueError, match="unknown"):
            model.forget(**bad)
    with pytest.raises(ValueError, match="missing"):
        model.forget(users=["u1"], missing="skip")
    after = tmp_path / "after.recinc"
    model.save(after)
    assert Popularity.load(before).kept_events().equals(Popularity.load(after).kept_events())
    assert model.n_users == Popularity.load(before).n_users


def test_rating_totals_follow_the_forgotten_ratings():
    frame = _events(explicit=True)
    model = recinc_plugins.make("surprise-baseline") if MODELS.set_index("name").loc[
        "surprise-baseline", "installed"] else None
    if model is None:
        pytest.skip("needs the surprise extra")
    _learn(model, frame)
    model.forget(users=[GONE_USER])
    kept = frame[frame["user"] != GONE_USER]
    assert model.n_ratings_ == len(kept)
    assert model.global_mean_ == pytest.approx(kept["rating"].mean(), rel=1e-12)
