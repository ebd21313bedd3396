"""The evaluation harness: protocol, metrics, the cold-start split, the ml-100k anchors."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pandas as pd
import pytest
from _toy_models import UserMean

from recinc_plugins.base import Batch, IncrementalRecommender
from recinc_plugins.baselines import DecayedPopularity, Popularity, Random
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import (
    ReplayConfig,
    Stream,
    compare,
    drift_points,
    event_metrics,
    paired_tests,
    replay,
)


class CoOccurrence(IncrementalRecommender):
    """A small personalised model: an item scores its co-occurrences with the user's items."""

    def __init__(self, damping: float = 1.0) -> None:
        self.damping = damping

    def _init_model(self) -> None:
        self.co_ = np.zeros((0, 0))
        self.hist_: dict[int, list[int]] = {}

    def _grow(self, n_users: int, n_items: int) -> None:
        grown = np.zeros((n_items, n_items))
        grown[: self.co_.shape[0], : self.co_.shape[1]] = self.co_
        self.co_ = grown

    def _partial_fit(self, batch: Batch) -> None:
        for u, i in zip(batch.users.tolist(), batch.items.tolist(), strict=True):
            for other in self.hist_.get(u, []):
                self.co_[i, other] += 1
                self.co_[other, i] += 1
            self.hist_.setdefault(u, []).append(i)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((users.size, self.n_items))
        for row, u in enumerate(users.tolist()):
            for i in self.hist_.get(u, []):
                out[row] += self.co_[i]
        return out + self.damping * self.item_counts_ / max(self.n_events_, 1)


class Spy(Popularity):
    """Popularity that logs, in order, what it was asked to score and what it was given."""

    log: list[tuple[str, int, list]] = []

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        Spy.log.append(("score", self.n_events_, self.user_index_.ids_of(users).tolist()))
        return super()._score_users(users)

    def _fallback_scores(self, n_rows: int) -> np.ndarray:
        Spy.log.append(("score", self.n_events_, [None] * n_rows))
        return np.repeat(self.popularity_[None, :], n_rows, axis=0)

    def _partial_fit(self, batch: Batch) -> None:
        pairs = list(zip(self.user_index_.ids_of(batch.users).tolist(),
                         self.item_index_.ids_of(batch.items).tolist(), strict=True))
        Spy.log.append(("learn", self.n_events_ - len(batch), pairs))
        super()._partial_fit(batch)


class Failing(Popularity):
    """Popularity that raises on its third update."""

    def _partial_fit(self, batch: Batch) -> None:
        self.calls_ = getattr(self, "calls_", 0) + 1
        if self.calls_ == 3:
            raise RuntimeError("boom on the third step")
        super()._partial_fit(batch)


def reference_ranks(model: IncrementalRecommender, stream: Stream, kmax: int,
                    exclude_seen: bool = True) -> np.ndarray:
    """The protocol written the slow, obvious way, through the public API only."""
    frame = stream.frame
    users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    if stream.n_warmup:
        model.fit(frame.iloc[: stream.n_warmup])
    ranks = []
    for s, t in zip(stream.bounds[:-1], stream.bounds[1:], strict=True):
        seen_items = list(dict.fromkeys(items[:s].tolist()))
        for e in range(s, t):
            had = set(items[:s][users[:s] == users[e]].tolist()) if exclude_seen else set()
            if items[e] not in seen_items or items[e] in had:
                ranks.append(np.inf)
                continue
            cand = [x for x in seen_items if x not in had]
            scores = model.score(users[e], cand) if model.is_fitted else np.zeros(len(cand))
            pos = cand.index(items[e])
            rank = int((scores > scores[pos]).sum() + (scores[:pos] == scores[pos]).sum())
            ranks.append(rank if rank < kmax else np.inf)
        model.partial_fit(frame.iloc[s:t])
    return np.array(ranks, dtype=np.float64)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return synthetic_stream(n_events=600, n_users=30, n_items=60, seed=2)


# -- the ml-100k anchors -------------------------------------------------------------------

def test_popularity_anchor_one_event_per_step(ml100k):
    res = compare({"pop": Popularity()}, Stream(ml100k, step=1), k=10)
    assert res.summary.loc[0, "events"] == 100_000
    assert round(res.summary.loc[0, "recall@10"], 3) == 0.077


def test_popularity_anchor_thousand_event_steps(ml100k):
    res = compare({"pop": Popularity()}, Stream(ml100k, step=1000), k=10)
    assert round(res.summary.loc[0, "recall@10"], 3) == 0.054


# -- the protocol --------------------------------------------------------------------------

@pytest.mark.parametrize("step, warmup", [(1, 0), (1, 100), (7, 50), ("10min", 0)])
@pytest.mark.parametrize("make_model", [Popularity, lambda: DecayedPopularity(half_life=50),
                                        CoOccurrence], ids=["pop", "decayed", "cooc"])
@pytest.mark.parametrize("ks", [(10,), (5, 10)])
def test_ranks_match_a_naive_reference_loop(small, step, warmup, make_model, ks):
    stream = Stream(small, step=step, warmup=warmup)
    expected = reference_ranks(make_model(), stream, max(ks))
    res = compare({"m": make_model()}, stream, ks=ks)
    np.testing.assert_array_equal(res.records["m"].rank, expected)
    assert np.isfinite(expected).sum() > 100  # the comparison is not vacuous


def test_ranks_with_seen_items_kept_and_repeated_pairs():
    events = pd.DataFrame({"user": [1, 2, 1, 1, 2, 3, 1, 2, 3, 3],
                           "item": [10, 10, 11, 10, 11, 10, 11, 12, 12, 10]})
    for exclude in (True, False):
        for step in (1, 3):
            stream = Stream(events, step=step)
            expected = reference_ranks(Popularity(), stream, 10, exclude_seen=exclude)
            res = compare([Popularity()], stream, k=10, exclude_seen=exclude)
            np.testing.assert_array_equal(res.records["Popularity"].rank, expected)
    assert Stream(events, step=1).repeat.tolist() == [False] * 3 + [True] + [False] * 2 + [True] \
        + [False] * 2 + [True]


def test_no_model_is_given_a_step_before_it_is_scored_on_it(small):
    for step in (1, 25):
        Spy.log.clear()
        stream = Stream(small, step=step, warmup=40)
        compare({"spy": Spy()}, stream, k=10)
        learned = [e for e in Spy.log if e[0] == "learn"]
        # learned in stream order, each event exactly once (the warm-up through fit)
        given = [pair for entry in learned for pair in entry[2]]
        frame = stream.frame
        assert given == list(zip(frame["user"], frame["item"], strict=True))
        # every scoring call comes before its step is learned: the model has learned exactly
        # the events before the step, and the users it scores have events in the step
        log = list(Spy.log)
        assert log.pop(0) == ("learn", 0, given[: stream.n_warmup])  # the warm-up, by fit
        for j, (s, t) in enumerate(zip(stream.bounds[:-1], stream.bounds[1:], strict=True)):
            step_users = set(frame["user"].iloc[s:t])
            calls = []
            while log and log[0][0] == "score":
                calls.append(log.pop(0))
            assert calls, f"step {j} was not scored"
            for _, n_events, scored in calls:
                assert n_events == s
                assert {u for u in scored if u is not None} <= step_users
            kind, n_before, pairs = log.pop(0)
            assert kind == "learn" and n_before == s and len(pairs) == t - s
        assert not log


class Padded(Popularity):
    """Popularity whose id maps start with a padding user and item, so its indices are not
    the stream's codes: the harness must translate."""

    def _reset(self) -> None:
        super()._reset()
        self.user_index_.add(["__pad__"])
        self.item_index_.add(["__pad__"])
        self._sync_size()


def test_ids_are_translated_to_a_model_own_indices(small):
    for step in (1, 13):
        stream = Stream(small, step=step, warmup=30)
        plain = compare({"m": Popularity()}, stream, ks=(10,))
        padded = compare({"m": Padded()}, stream, ks=(10,))
        assert padded.records["m"].extra["identity_items"] is False
        np.testing.assert_array_equal(padded.records["m"].rank, plain.records["m"].rank)
        np.testing.assert_array_equal(padded.records["m"].recommended,
                                      plain.records["m"].recommended)


class FrameSpy(Popularity):
    """Popularity that keeps the extra column of every frame it is given."""

    def _partial_fit(self, batch: Batch) -> None:
        self.genres_ = [*getattr(self, "genres_", []), *batch.frame["genre"].tolist()]
        super()._partial_fit(batch)


def test_extra_columns_reach_the_model_with_each_step():
    events = tiny().assign(genre=list("abcdefgh"))
    for step in (1, 3):
        model = FrameSpy()
        replay("spy", model, Stream(events, step=step, warmup=2), ReplayConfig())
        assert model.genres_ == list("abcdefgh")


def test_tied_timestamps_keep_file_order():
    events = pd.DataFrame({"user": ["u3", "u1", "u2", "u4", "u1"],
                           "item": ["c", "a", "b", "a", "b"],
                           "timestamp": [5, 1, 5, 1, 5]})
    stream = Stream(events, step=1)
    assert stream.frame["user"].tolist() == ["u1", "u4", "u3", "u2", "u1"]
    assert stream.item_ids.tolist() == ["a", "c", "b"]
    # without timestamps the file order is the replay order
    assert Stream(events.drop(columns="timestamp")).frame["user"].tolist() == \
        events["user"].tolist()


def tiny() -> pd.DataFrame:
    return pd.DataFrame({"user": ["a", "b", "a", "c", "b", "a", "d", "c"],
                         "item": ["x", "x", "y", "y", "y", "z", "z", "x"]})


def test_metrics_match_hand_computed_values_on_a_tiny_stream():
    # ranks, worked by hand (popularity, one event per step, the user's items excluded):
    #   a-x cold item; b-x rank 0 (fallback); a-y cold item; c-y rank 1 (x:2 > y:1);
    #   b-y rank 0 (x excluded); a-z cold item; d-z rank 2 (y:3, x:2, z:1);
    #   c-x rank 0 (y excluded; x and z tie at 2, x was seen first)
    res = compare({"pop": Popularity()}, Stream(tiny(), step=1), ks=(1, 2, 3))
    np.testing.assert_array_equal(res.records["pop"].rank,
                                  [np.inf, 0, np.inf, 1, 0, np.inf, 2, 0])
    row = res.summary.iloc[0]
    assert row["recall@1"] == 3 / 8 and row["recall@2"] == 4 / 8 and row["recall@3"] == 5 / 8
    assert row["precision@2"] == pytest.approx(4 / 8 / 2)
    assert row["f1@2"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)
    assert row["ndcg@2"] == pytest.approx((3 + 1 / np.log2(3)) / 8)
    assert row["ndcg@3"] == pytest.approx((3 + 1 / np.log2(3) + 1 / np.log2(4)) / 8)
    assert row["mrr@2"] == pytest.approx((3 + 1 / 2) / 8)
    assert row["mrr@3"] == pytest.approx((3 + 1 / 2 + 1 / 3) / 8)
    # top-1 lists: x, x, y, y, x (empty where every candidate was excluded): 2 of 3 items
    assert row["coverage@1"] == pytest.approx(2 / 3)
    assert row["coverage@2"] == pytest.approx(1.0)


def test_cold_user_and_cold_item_split_is_counted_right():
    res = compare({"pop": Popularity()}, Stream(tiny(), step=1), k=1)
    row = res.summary.iloc[0]
    # new users: a, b, c, d at their first event; new items: x, y, z at theirs
    assert row["cold_user_events"] == 4 and row["cold_item_events"] == 3
    assert row["warm_events"] == 2 and row["warm_recall@1"] == 1.0  # b-y and c-x
    assert row["cold_user_recall@1"] == 0.25  # b-x hits through the fallback
    # in a step, everything not seen before the step is cold, even if seen earlier in it
    stream = Stream(tiny(), step=4)
    assert stream.cold_user.tolist() == [True] * 4 + [False, False, True, False]
    assert stream.cold_item.tolist() == [True] * 4 + [False, True, True, False]


def test_a_model_unknown_user_is_ranked_by_its_cold_start_fallback():
    events = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["p", "q", "q", "q"]})
    res = compare({"pop": Popularity()}, Stream(events, step=2), k=1)
    # step 2 (users 2 and 3, both new): popularity fallback ranks p and q tied at 1 -> p first
    np.testing.assert_array_equal(res.records["pop"].rank, [np.inf, np.inf, np.inf, np.inf])
    res = compare({"pop": Popularity()}, Stream(events, step=2), k=2)
    np.testing.assert_array_equal(res.records["pop"].rank, [np.inf, np.inf, 1, 1])


def test_rating_predictions_are_made_before_learning_and_clipped(explicit_stream):
    stream = Stream(explicit_stream.iloc[:800], step=20, warmup=100)
    reference = UserMean()
    reference.fit(stream.warmup_frame())
    expected = []
    for s, t in zip(stream.bounds[:-1], stream.bounds[1:], strict=True):
        part = stream.frame.iloc[s:t]
        expected.append(reference.score(part["user"], part["item"]))
        reference.partial_fit(part)
    expected = np.concatenate(expected)
    res = compare({"mean": UserMean(), "pop": Popularity()}, stream, k=10)
    np.testing.assert_allclose(res.records["mean"].pred, expected)
    truth = stream.ratings[stream.n_warmup:]
    row = res.summary.set_index("model").loc["mean"]
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean((expected - truth) ** 2)))
    assert row["mae"] == pytest.approx(np.mean(np.abs(expected - truth)))
    assert np.isnan(res.summary.set_index("model").loc["pop", "rmse"])  # not a rating model
    clipped = compare({"mean": UserMean()}, stream, clip=(3.0, 3.5)).records["mean"].pred
    np.testing.assert_allclose(clipped, np.clip(expected, 3.0, 3.5))
    rated = compare({"pop": Popularity()}, stream, target="rating")
    assert "recall@10" not in rated.summary.columns and rated.summary.loc[0, "rated_events"] == 700


def test_every_model_sees_the_same_stream_and_the_inputs_are_untouched(small):
    pop = Popularity()
    res = compare({"pop": pop, "decayed": DecayedPopularity(), "random": Random(seed=1)},
                  Stream(small, step=50), k=10)
    assert not pop.is_fitted
    assert set(res.summary["events"]) == {600}
    assert res.summary["status"].tolist() == ["ok"] * 3
    hits = res.hits()
    assert all(h.shape == (600,) for h in hits.values())


def test_a_failing_model_is_reported_and_the_others_finish(small):
    for n_jobs in (1, 2):
        res = compare({"pop": Popularity(), "bad": Failing()}, Stream(small, step=50),
                      n_jobs=n_jobs)
        assert list(res.records) == ["pop"]
        assert "boom on the third step" in res.failures["bad"]
        assert "Traceback" in res.failures["bad"]
        status = res.summary.set_index("model")["status"]
        assert status["bad"] == "failed" and status["pop"] == "ok"


def test_parallel_runs_give_the_same_numbers_as_sequential_ones(small):
    stream = Stream(small, step=1, warmup=60)
    models = {"pop": Popularity(), "cooc": CoOccurrence(), "random": Random(seed=4)}
    seq = compare(models, stream, ks=(5, 10))
    par = compare(models, stream, ks=(5, 10), n_jobs=2)
    for name in models:
        np.testing.assert_array_equal(seq.records[name].rank, par.records[name].rank)
        np.testing.assert_array_equal(seq.records[name].recommended,
                                      par.records[name].recommended)


def test_a_model_over_its_time_budget_is_stopped(small):
    res = compare({"slow": CoOccurrence(), "pop": Popularity()}, Stream(small, step=1),
                  time_budget_s=1e-4)
    assert "time budget" in res.failures["slow"]


# -- metrics, paired tests, drift -----------------------------------------------------------

def test_event_metrics_by_hand():
    m = event_metrics(np.array([0.0, 1.0, 9.0, 10.0, np.inf]), k=10)
    np.testing.assert_allclose(m["recall"], [1, 1, 1, 0, 0])
    np.testing.assert_allclose(m["precision"], [0.1, 0.1, 0.1, 0, 0])
    np.testing.assert_allclose(m["f1"], [2 / 11, 2 / 11, 2 / 11, 0, 0])
    np.testing.assert_allclose(m["ndcg"], [1, 1 / np.log2(3), 1 / np.log2(11), 0, 0])
    np.testing.assert_allclose(m["mrr"], [1, 1 / 2, 1 / 10, 0, 0])


def test_paired_tests_count_discordant_events_and_bracket_the_difference():
    rng = np.random.default_rng(0)
    a = rng.random(5000) < 0.30
    b = np.where(rng.random(5000) < 0.5, a, rng.random(5000) < 0.20)
    row = paired_tests({"a": a, "b": b}).iloc[0]
    assert row["a_only"] == int((a & ~b).sum()) and row["b_only"] == int((~a & b).sum())
    assert row["ci_low"] < row["diff"] < row["ci_high"]
    assert row["diff"] == pytest.approx(a.mean() - b.mean())
    assert row["significant"] and row["mcnemar_p"] < 1e-6
    same = paired_tests({"a": a, "b": a.copy()}).iloc[0]
    assert same["mcnemar_p"] == 1.0 and not same["significant"] and same["diff"] == 0
    with pytest.raises(ValueError, match="different numbers of events"):
        paired_tests({"a": a, "b": b[:10]})


def test_drift_points_flag_a_change_in_the_hit_rate():
    pytest.importorskip("river")
    rng = np.random.default_rng(1)
    hits = np.concatenate([rng.random(3000) < 0.4, rng.random(3000) < 0.05])
    flat = rng.random(6000) < 0.2
    points = drift_points({"shift": hits, "flat": flat})
    shift = points[points["model"] == "shift"]
    assert len(shift) >= 1 and 3000 <= shift["event"].iloc[0] < 3400
    assert shift["before"].iloc[0] > shift["after"].iloc[0]
    assert (points["model"] == "flat").sum() == 0


def test_curves_are_cumulative_and_windowed_means(small):
    res = compare({"pop": Popularity()}, Stream(small, step=10), k=10)
    curves = res.curves(window=100, n_points=600)
    recall = curves[curves["metric"] == "recall@10"].set_index("event")
    hit = res.hits()["pop"].astype(float)
    assert recall.loc[600, "cumulative"] == pytest.approx(hit.mean())
    assert recall.loc[350, "window"] == pytest.approx(hit[250:350].mean())
    assert recall.loc[50, "window"] == pytest.approx(hit[:50].mean())


# -- input checking --------------------------------------------------------------------------

def test_stream_rejects_bad_steps_and_warmups(small):
    with pytest.raises(ValueError, match="step must be >= 1"):
        Stream(small, step=0)
    with pytest.raises(ValueError, match="warmup=600 events"):
        Stream(small, warmup=600)
    with pytest.raises(ValueError, match=r"warmup=1.5 as a fraction"):
        Stream(small, warmup=1.5)
    with pytest.raises(ValueError, match="duration like '1D'"):
        Stream(small, step="often")
    with pytest.raises(ValueError, match="no 'timestamp' column"):
        Stream(small.drop(columns="timestamp"), step="1D")
    with pytest.raises(ValueError, match="covers all 600 events"):
        Stream(small, warmup="2100-01-01")
    with pytest.raises(ValueError, match="empty"):
        Stream(small.iloc[:0])


def test_stream_steps_by_time_window_and_warmup_by_fraction_or_time(small):
    stream = Stream(small, step="1h", warmup=0.25)
    assert stream.n_warmup == 150
    hours = stream.frame["timestamp"].iloc[150:].dt.floor("1h")
    assert stream.n_steps == hours.nunique()
    by_time = Stream(small, warmup=str(small["timestamp"].iloc[100]))
    assert by_time.n_warmup == int((small["timestamp"] < small["timestamp"].iloc[100]).sum())


def test_compare_rejects_bad_arguments(small):
    stream = Stream(small, step=100)
    with pytest.raises(ValueError, match="target must be one of"):
        compare([Popularity()], stream, target="clicks")
    with pytest.raises(ValueError, match="positive integers"):
        compare([Popularity()], stream, ks=(0,))
    with pytest.raises(ValueError, match="n_jobs must be"):
        compare([Popularity()], stream, n_jobs=0)
    with pytest.raises(TypeError, match="not an IncrementalRecommender"):
        compare({"x": object()}, stream)
    with pytest.raises(ValueError, match="needs ratings"):
        compare([Popularity()], Stream(small.drop(columns="rating")), target="rating")
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint_dir"):
        compare([Popularity()], stream, checkpoint_every=3)


def test_replay_trains_the_given_model_in_place(small):
    model = Popularity()
    record = replay("pop", model, Stream(small, step=100), ReplayConfig(ks=(10,)))
    assert model.n_events_ == 600 and record.steps_done == 6


def test_big_steps_are_scored_in_blocks_of_users_with_the_same_result(small, monkeypatch):
    import recinc_plugins.evaluation.prequential as replay_module

    stream = Stream(small, step=50, warmup=30)
    whole = compare({"m": CoOccurrence()}, stream, ks=(5, 10)).records["m"]
    monkeypatch.setattr(replay_module, "_BLOCK_BYTES", 8 * 120)  # two or three users per block
    blocks = compare({"m": CoOccurrence()}, stream, ks=(5, 10)).records["m"]
    np.testing.assert_array_equal(blocks.rank, whole.rank)
    np.testing.assert_array_equal(blocks.recommended, whole.recommended)


def test_reports_carry_every_model_and_the_failures(small, tmp_path):
    import json

    res = compare({"pop": Popularity(), "bad": Failing(), "random": Random(seed=2)},
                  Stream(small, step=50), ks=(5, 10))
    written = res.write(tmp_path, plots=False)
    assert {"summary.csv", "summary.json", "curves.csv", "paired.csv", "report.md"} <= \
        set(written)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["model"].tolist() == ["pop", "bad", "random"]
    assert summary.set_index("model").loc["bad", "status"] == "failed"
    report = (tmp_path / "report.md").read_text()
    assert "## Failures" in report and "boom on the third step" in report
    assert "| pop" in report and "McNemar" in report
    data = json.loads((tmp_path / "summary.json").read_text())
    assert "boom on the third step" in data["failures"]["bad"]
    assert data["stream"]["events"] == 600 and data["config"]["ks"] == [5, 10]
    events = res.events()
    assert len(events) == 2 * 600 and set(events["model"]) == {"pop", "random"}
    assert {"user", "item", "rank", "hit@5", "cold_user", "cold_item", "pred"} <= \
        set(events.columns)


# -- regressions -----------------------------------------------------------------------------

class NanFirst(Popularity):
    """Popularity whose first item scores NaN for everyone (NaN ranks as -inf)."""

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        scores = super()._score_users(users)
        scores[:, :1] = np.nan
        return scores

    def _fallback_scores(self, n_rows: int) -> np.ndarray:
        return self._score_users(np.zeros(n_rows, dtype=np.int64))

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        scores = np.asarray(super()._score_pairs(users, items), dtype=np.float64)
        return np.where(items == 0, self.nan_as, scores)

    def _fallback_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._score_pairs(users, items)

    nan_as = np.nan


class MinusInfFirst(NanFirst):
    """The same scores through the public API, with -inf where NaN was (the reference)."""

    nan_as = -np.inf


class MinusInfRows(MinusInfFirst):
    """MinusInfFirst with -inf, not NaN, in its score rows too."""

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        scores = super()._score_users(users)
        scores[:, :1] = -np.inf
        return scores


def test_nan_scores_stop_the_model_as_diverged_on_every_path():
    """NaN is a model gone wrong (issue 15): reported as diverged at the step it shows, on
    the one-event path as on the block path; -inf is never recommended, as before."""
    events = pd.DataFrame({"user": list("abcdefghb"), "item": list("xyyyzzwyw")})
    for step in (1, 2):
        res = compare({"m": NanFirst(), "ok": MinusInfRows()},
                      Stream(events, step=step, warmup=7), k=2)
        assert res.diverged == {"m": 0} and "scores hold NaN" in res.failures["m"], step
        assert res.summary.set_index("model").loc["m", "status"] == "diverged"
        # the candidates of the last event are x (-inf), y, z, w: its item w ranks second
        assert res.records["ok"].rank.tolist() == [0.0, 1.0], step
    stream = Stream(synthetic_stream(n_events=500, n_users=30, n_items=50, seed=4), step=1,
                    warmup=100)
    inf_target = stream.items[stream.n_warmup:] == 0
    for ks in ((10,), (5, 20)):
        assert compare({"m": NanFirst()}, stream, ks=ks).diverged == {"m": 0}
        rank = compare({"m": MinusInfRows()}, stream, ks=ks).records["m"].rank
        assert np.isinf(rank[inf_target]).all()  # -inf: never in a top-K list
        ref = reference_ranks(MinusInfFirst(), stream, max(ks))
        np.testing.assert_array_equal(rank[~inf_target], ref[~inf_target])
        assert np.isfinite(rank).sum() > 200


def test_a_rating_model_on_a_stream_without_ratings_fails_as_partial_fit_would(small):
    stream = Stream(small.drop(columns="rating"), step=1)
    with pytest.raises(ValueError, match="UserMean learns from explicit ratings"):
        UserMean().partial_fit(small.drop(columns="rating").iloc[:5])
    with pytest.raises(ValueError, match="UserMean learns from explicit ratings"):
        replay("mean", UserMean(), stream, ReplayConfig(ks=(10,)))
    for step in (1, 100):
        res = compare({"pop": Popularity(), "mean": UserMean()},
                      Stream(small.drop(columns="rating"), step=step))
        assert list(res.records) == ["pop"]
        assert "learns from explicit ratings" in res.failures["mean"]


def test_a_whole_number_float_step_is_a_number_of_events(small):
    assert Stream(small, step=100.0).bounds.tolist() == Stream(small, step=100).bounds.tolist()
    assert Stream(small, step=np.float64(1e2)).n_steps == 6
    for bad in (2.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step must be a whole number of events"):
            Stream(small, step=bad)
    assert Stream(small, step=pd.Timedelta("1h")).n_steps == Stream(small, step="1h").n_steps


def test_a_warmup_that_leaves_nothing_to_score_is_refused(small):
    with pytest.raises(ValueError, match="covers all 600 events: nothing is left to score"):
        Stream(small, warmup=0.9995)
    assert Stream(small, warmup=0.998).n_scored == 1


def test_hits_and_paired_refuse_a_k_above_the_largest_k_of_the_run(small):
    res = compare({"pop": Popularity(), "random": Random(seed=1)}, Stream(small, step=50),
                  ks=(5, 10))
    assert res.hits(10)["pop"].sum() >= res.hits(5)["pop"].sum()
    with pytest.raises(ValueError, match=r"k=20 is above .* the Ks \[5, 10\]"):
        res.hits(20)
    with pytest.raises(ValueError, match=r"k=11 is above .* the Ks \[5, 10\]"):
        res.paired(11)
    with pytest.raises(ValueError, match="window must be a positive number of events"):
        res.curves(window=0)


def test_resume_without_a_checkpoint_dir_is_refused(small):
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_dir"):
        compare([Popularity()], Stream(small, step=100), resume=True)


def test_summary_counts_stay_integers_when_a_model_fails(small, tmp_path):
    res = compare({"pop": Popularity(), "bad": Failing()}, Stream(small, step=50))
    assert str(res.summary["events"].dtype) == "Int64"
    res.write(tmp_path, plots=False)
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert lines[1].split(",")[header.index("events")] == "600"
    assert lines[1].split(",")[header.index("warm_events")].isdigit()


def test_report_says_why_there_is_no_drift_detection(explicit_stream, tmp_path):
    res = compare({"mean": UserMean()}, Stream(explicit_stream, step=500), target="rating")
    assert res.drift is None
    res.write(tmp_path, plots=False)
    report = (tmp_path / "report.md").read_text()
    assert "No ranking target" in report and "River is not installed" not in report


class Unpicklable(Popularity):
    """Popularity holding a lambda (a user callback, say): it cannot go to a worker process
    that does not fork."""

    def __init__(self, weighted: bool = False) -> None:
        super().__init__(weighted)
        self.hook = lambda x: x


def test_an_unpicklable_model_fails_alone_in_a_parallel_run(small):
    stream = Stream(small, step=100)
    res = compare({"bad": Unpicklable(), "pop": Popularity(), "random": Random(seed=0)},
                  stream, n_jobs=2, mp_context="spawn")
    assert list(res.records) == ["pop", "random"]
    assert "Traceback" in res.failures["bad"] and "pickle" in res.failures["bad"].lower()
    assert res.summary.set_index("model").loc["bad", "status"] == "failed"
    assert not multiprocessing.active_children()
