"""Deletion requests in the replay: every model forgets the ids at the request's time, the
forgotten ids are gone from the models, a forgotten item is never a candidate again, a user who
comes back is a new (cold) user, each request's cost and the recall around it are recorded, and
a stream without requests replays exactly as before."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins.audit import audit_model
from recinc_plugins.base import Batch
from recinc_plugins.baselines import Popularity, Random
from recinc_plugins.cli import main
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import ReplayConfig, Stream, compare, replay


def _events(n_events: int = 2400, seed: int = 4) -> pd.DataFrame:
    frame = synthetic_stream(n_events=n_events, n_users=80, n_items=120, seed=seed)
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    frame["timestamp"] = pd.Timestamp("2024-03-01") + pd.to_timedelta(
        np.arange(len(frame)) * 60, unit="s")
    return frame


def _gone_for_good(frame: pd.DataFrame, at: int) -> tuple[str, str]:
    """A user and an item seen before event ``at`` and never after it."""
    before, after = frame.iloc[:at], frame.iloc[at:]
    user = next(u for u in before["user"].value_counts().index if u not in set(after["user"]))
    item = next(i for i in before["item"].value_counts().index if i not in set(after["item"]))
    return user, item


def test_the_forgotten_ids_vanish_from_every_model(tmp_path):
    frame = _events()
    user, item = _gone_for_good(frame, 1500)
    requests = pd.DataFrame({"timestamp": [frame["timestamp"].iloc[1499]] * 2,
                             "user": [user, None], "item": [None, item]})
    stream = Stream(frame, step=200, warmup=400, deletions=requests)
    assert 1500 in stream.bounds  # the step the requests fall in is cut at them
    for name in ("popularity", "item-knn"):
        model = recinc_plugins.make(name)
        record = replay(name, model, stream, ReplayConfig())
        assert user not in model.user_index_ and item not in model.item_index_
        kept = frame[(frame["user"] != user) & (frame["item"] != item)]
        assert model.n_events_ == len(kept)
        assert record.deletions["position"] == [1500]
        assert record.deletions["users"] == [1] and record.deletions["items"] == [1]
        assert record.deletions["events"] == [int(len(frame) - len(kept))]
        path = tmp_path / f"{name}.recinc"
        model.save(path)
        found = audit_model(path, users=[user], items=[item])
        assert found.clean, found.traces


def test_a_forgotten_item_is_never_a_candidate_again():
    # six items, all ranked (k above the catalogue), random scores: a forgotten item still
    # scored by the model would take a place in every list
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"user": rng.integers(0, 30, n), "item": rng.integers(0, 6, n),
                          "timestamp": np.arange(n)})
    frame.loc[300:, "item"] = frame.loc[300:, "item"].where(frame.loc[300:, "item"] != 5, 4)
    requests = pd.DataFrame({"position": [300], "item": [5]})
    config = dict(k=10, exclude_seen=False, seed=None)
    kept = compare({"random": Random(seed=1)}, Stream(frame, step=20, warmup=100,
                                                      deletions=requests), **config)
    plain = compare({"random": Random(seed=1)}, Stream(frame, step=20, warmup=100), **config)
    after = slice(300 - 100, None)  # the scored events after the request
    # five candidates left: ranks 0..4; without the request item 5 pushes some to rank 5
    assert np.nanmax(kept.records["random"].rank[after]) == 4
    assert np.nanmax(plain.records["random"].rank[after]) == 5
    assert np.nanmax(kept.records["random"].rank[:after.start]) == 5


def test_a_user_who_comes_back_is_a_new_cold_user():
    # ann's favourite is the most popular item; after her request she comes back to it
    frame = pd.DataFrame({
        "user": ["ann", "bob", "cy", "ann", "dee", "bob", "eve", "fay", "ann", "gus"],
        "item": ["hit", "hit", "hit", "b", "hit", "c", "b", "c", "hit", "b"],
        "timestamp": np.arange(10)})
    requests = pd.DataFrame({"timestamp": [6], "user": ["ann"]})
    stream = Stream(frame, step=1, warmup=3, deletions=requests)
    back = 8  # ann's event after the request
    assert stream.user_ids[stream.users[back]] == "ann"
    assert stream.users[back] != stream.users[0]  # a code of her own: a new user
    assert stream.cold_user[back - stream.n_warmup]
    config = dict(k=3, seed=None)
    with_request = compare({"pop": Popularity()}, stream, **config).records["pop"]
    without = compare({"pop": Popularity()}, Stream(frame, step=1, warmup=3),
                      **config).records["pop"]
    at = back - stream.n_warmup
    assert without.rank[at] == np.inf  # a repeat of what she had: a miss by construction
    assert with_request.rank[at] == 0  # a newcomer: the most popular item, first
    model = Popularity()
    replay("pop", model, stream, ReplayConfig(ks=(3,)))
    assert model.user_index_.lookup(["ann"])[0] == len(model.user_index_) - 2  # a new index
    assert model.user_index_.dead[0]


def test_each_request_s_cost_and_the_recall_around_it_are_reported(tmp_path):
    frame = _events()
    user, item = _gone_for_good(frame, 1200)
    other, _ = _gone_for_good(frame, 2000)
    requests = pd.DataFrame({"timestamp": frame["timestamp"].iloc[[1199, 1199, 1999]].tolist(),
                             "user": [user, None, other], "item": [None, item, None]})
    models = {"pop": Popularity(), "knn": recinc_plugins.make("item-knn")}
    result = compare(models, Stream(frame, step=300, warmup=600), k=10, deletions=requests)
    summary = result.summary.set_index("model")
    assert (summary["deletions"] == 2).all()
    assert (summary["forget_s"] > 0).all() and (summary["forget_ms_per_id"] > 0).all()
    served = result.deletions(window=200)
    assert len(served) == 4 and set(served["model"]) == {"pop", "knn"}
    first = served[(served["model"] == "pop") & (served["position"] == 1200)].iloc[0]
    assert (first["users"], first["items"], first["forgot_users"], first["forgot_items"]) == \
        (1, 1, 1, 1)
    assert first["events"] == int(((frame["user"] == user) | (frame["item"] == item))
                                  .iloc[:1200].sum())
    assert first["exact"] and first["forget_ms"] > 0
    assert first["timestamp"] == frame["timestamp"].iloc[1199]
    assert first["events_before"] == first["events_after"] == 200
    hits = result.records["pop"].rank < 10
    at = 1200 - 600  # the request's place among the scored events
    assert first["recall@10_before"] == hits[at - 200:at].mean()
    assert first["recall@10_after"] == hits[at:at + 200].mean()
    files = result.write(tmp_path, plots=False)
    assert "deletions.csv" in files
    report = (tmp_path / "report.md").read_text()
    assert "## Deletion requests" in report and "3 deletion request(s)" in report
    assert user not in (tmp_path / "deletions.csv").read_text()  # counts, not the ids


def test_a_stream_without_requests_replays_exactly_as_before():
    frame = _events()
    stream = Stream(frame, step=150, warmup=300)
    result = compare({"pop": Popularity()}, stream, ks=(5, 10))
    rec = result.records["pop"]
    digest = hashlib.sha256()
    for array in (rec.rank, rec.recommended, rec.scored_users):
        digest.update(np.ascontiguousarray(array).tobytes())
    # computed with the harness before deletion requests existed (commit c9be02b)
    assert digest.hexdigest()[:16] == "bd5653a70b87e420"
    assert stream.fingerprint == "0520bcd8647a8fa2"
    assert "deletions" not in result.summary.columns and rec.deletions is None
    # requests for ids the stream never has, on step bounds: nothing changes
    noop = pd.DataFrame({"position": [600, 1200], "user": ["nobody", None],
                         "item": [None, "nothing"]})
    models = {"pop": Popularity(), "knn": recinc_plugins.make("item-knn")}
    plain = compare(models, stream, ks=(5, 10))
    with_noop = compare(models, stream, ks=(5, 10), deletions=noop)
    for name in models:
        a, b = plain.records[name], with_noop.records[name]
        np.testing.assert_array_equal(a.rank, b.rank)
        np.testing.assert_array_equal(a.recommended, b.recommended)
        assert b.deletions["users"] == b.deletions["items"] == [0, 0]


def test_an_event_column_carries_the_same_requests_as_a_frame():
    frame = _events(n_events=1500)
    user, item = _gone_for_good(frame, 900)
    requests = pd.DataFrame({"timestamp": [frame["timestamp"].iloc[899]] * 2,
                             "user": [user, None], "item": [None, item]})
    rows = requests.assign(event="delete")
    with_rows = pd.concat([frame, rows], ignore_index=True)  # appended: the time places them
    a = Stream(frame, step=100, warmup=200, deletions=requests)
    b = Stream(with_rows, step=100, warmup=200)
    assert list(b.frame.columns) == list(frame.columns)  # the column said nothing else
    assert b.deletions[["position", "user", "item"]].equals(a.deletions[["position", "user",
                                                                         "item"]])
    assert a.fingerprint == b.fingerprint
    ra = compare({"pop": Popularity()}, a, k=10).records["pop"]
    rb = compare({"pop": Popularity()}, b, k=10).records["pop"]
    np.testing.assert_array_equal(ra.rank, rb.rank)


def test_requests_inside_the_warmup_are_served_when_it_ends():
    frame = _events(n_events=1200)
    user = frame["user"].iloc[10]
    stream = Stream(frame, step=100, warmup=500,
                    deletions=pd.DataFrame({"position": [50], "user": [user]}))
    assert stream.deletions["served_at"].tolist() == [500]
    model = Popularity()
    record = replay("pop", model, stream, ReplayConfig())
    assert record.deletions["position"] == [500]
    assert record.deletions["events"] == [int((frame["user"].iloc[:500] == user).sum())]
    # every event of the user after the warm-up is a new user's
    later = frame["user"].iloc[500:] == user
    if later.any():
        assert user in model.user_index_
        assert stream.cold_user[np.flatnonzero(later.to_numpy())[0]]


class CrashingPopularity(Popularity):
    """Popularity that raises on its ``crash_at``-th update (a class-level switch)."""

    crash_at: int | None = None

    def _partial_fit(self, batch: Batch) -> None:
        self.calls_ = getattr(self, "calls_", 0) + 1
        if self.calls_ == CrashingPopularity.crash_at:
            raise RuntimeError("crash")
        super()._partial_fit(batch)


def test_a_resumed_replay_serves_the_requests_as_an_uninterrupted_one(tmp_path):
    frame = _events()
    user, item = frame["user"].iloc[650], frame["item"].iloc[650]  # both come back later
    requests = pd.DataFrame({"position": [700, 700, 1900], "user": [user, None, "u3"],
                             "item": [None, item, None]})
    stream = Stream(frame, step=100, warmup=300, deletions=requests)
    full = compare({"pop": CrashingPopularity()}, stream, k=10).records["pop"]
    CrashingPopularity.crash_at = 12
    try:
        crashed = compare({"pop": CrashingPopularity()}, stream, k=10,
                          checkpoint_dir=tmp_path, checkpoint_every=5)
    finally:
        CrashingPopularity.crash_at = None
    assert "RuntimeError: crash" in crashed.failures["pop"]
    resumed = compare({"pop": CrashingPopularity()}, stream, k=10, checkpoint_dir=tmp_path,
                      checkpoint_every=5, resume=True).records["pop"]
    assert resumed.resumed_from == 10
    np.testing.assert_array_equal(resumed.rank, full.rank)
    np.testing.assert_array_equal(resumed.recommended, full.recommended)
    assert resumed.deletions["position"] == full.deletions["position"] == [700, 1900]


def test_dropped_ratings_keep_the_requests_at_their_events():
    frame = _events(n_events=1200).assign(rating=4.0)
    frame.loc[[100, 200, 900], "rating"] = 1000.0  # errors, dropped
    user = frame["user"].iloc[1000]
    requests = pd.DataFrame({"timestamp": [frame["timestamp"].iloc[999]], "user": [user]})
    result = compare({"pop": Popularity()}, Stream(frame, step=100, warmup=300), k=10,
                     deletions=requests, rating_scale=(1, 5), on_out_of_scale="drop")
    assert result.stream.deletions["position"].tolist() == [997]  # 1000 less three dropped
    assert result.records["pop"].deletions["events"] == [
        int((frame["user"].iloc[:1000] == user).sum()
            - (frame["user"].iloc[[100, 200, 900]] == user).sum())]


@pytest.mark.parametrize(("requests", "says"), [
    (pd.DataFrame({"position": [5], "user": ["u1"], "item": ["i1"]}), "not both"),
    (pd.DataFrame({"position": [5], "user": [None]}), "not both and not neither"),
    (pd.DataFrame({"user": ["u1"]}), "needs a 'timestamp'"),
    (pd.DataFrame({"position": [99999], "user": ["u1"]}), "whole number of events"),
    (pd.DataFrame({"position": [5], "user": ["u1"], "reason": ["gdpr"]}), "'reason'"),
])
def test_bad_requests_are_refused_naming_the_problem(requests, says):
    with pytest.raises(ValueError, match=says):
        Stream(_events(n_events=300), step=50, deletions=requests)


def test_requests_by_time_need_a_stream_with_times_and_come_one_way():
    frame = _events(n_events=300)
    with pytest.raises(ValueError, match="no 'timestamp' column"):
        Stream(frame.drop(columns="timestamp"), step=50,
               deletions=pd.DataFrame({"timestamp": [3], "user": ["u1"]}))
    rows = pd.DataFrame({"timestamp": [frame["timestamp"].iloc[3]], "user": ["u1"],
                         "event": ["delete"]})
    with pytest.raises(ValueError, match="give them one way"):
        Stream(pd.concat([frame, rows]), step=50,
               deletions=pd.DataFrame({"position": [3], "user": ["u2"]}))


def test_recinc_compare_serves_a_deletions_file(tmp_path, capsys):
    frame = _events(n_events=1500)
    frame.to_csv(tmp_path / "events.csv", index=False)
    user, item = _gone_for_good(frame, 900)
    pd.DataFrame({"timestamp": [frame["timestamp"].iloc[899]] * 2, "user": [user, None],
                  "item": [None, item]}).to_csv(tmp_path / "deletions.csv", index=False)
    code = main(["compare", "--data", str(tmp_path / "events.csv"), "--models",
                 "popularity,item-knn", "--step", "100", "--warmup", "300", "--deletions",
                 str(tmp_path / "deletions.csv"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "deletion requests (2)" in out and "ms per id" in out
    assert "recall@10 before" in out
    assert main(["compare", "--data", str(tmp_path / "events.csv"), "--models", "popularity",
                 "--deletions", str(tmp_path / "missing.csv"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
