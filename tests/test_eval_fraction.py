"""eval_fraction: a seeded sample of the events is ranked, every event learned, every metric
over the ranked events, an interval on the headline recall."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from _toy_models import UserMean

from recinc_plugins.baselines import DecayedPopularity, Popularity, Random
from recinc_plugins.cli import main
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import CompareResult, ReplayConfig, Stream, compare
from recinc_plugins.evaluation.metrics import event_metrics, wilson_interval
from recinc_plugins.evaluation.report import protocol_text


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream(synthetic_stream(n_events=4000, n_users=150, n_items=300, seed=11), step=100,
                  warmup=400)


MODELS = {"pop": Popularity(), "decayed": DecayedPopularity(half_life=500),
          "random": Random(seed=1), "usermean": UserMean()}


@pytest.fixture(scope="module")
def full(stream) -> CompareResult:
    return compare(MODELS, stream, ks=(5, 10))


@pytest.fixture(scope="module")
def sampled(stream) -> CompareResult:
    return compare(MODELS, stream, ks=(5, 10), eval_fraction=0.3, eval_seed=4)


# -- end to end ----------------------------------------------------------------------------

def test_compare_ranks_a_seeded_fraction_the_same_for_every_model(stream, full, sampled):
    mask = ReplayConfig(eval_fraction=0.3, eval_seed=4).sample(stream.n_scored)
    n = stream.n_scored
    summary = sampled.summary.set_index("model")
    # (a) about 30% of the events, the same count for every model; every event learned
    assert summary["scored_events"].nunique() == 1
    assert summary["scored_events"].iloc[0] == mask.sum()
    assert abs(mask.sum() / n - 0.3) < 0.03
    assert (summary["events"] == n).all()
    # (b) each metric over the ranked events equals the full run's restricted to them (for
    # the models whose scores do not depend on which events were scored before: Random draws
    # its scores from its generator at each call)
    for name, rec in full.records.items():
        if name == "random":
            continue
        for k in (5, 10):
            metrics = event_metrics(rec.rank[mask], k)
            for metric in ("recall", "ndcg", "mrr"):
                assert summary.loc[name, f"{metric}@{k}"] == pytest.approx(
                    metrics[metric].mean(), abs=1e-12), (name, metric, k)
        np.testing.assert_array_equal(sampled.hits(10)[name], rec.rank[mask] < 10)
    # the same events across models, and the paired tests count only them
    assert (sampled.paired()["events"] == mask.sum()).all()
    # interval around the headline recall, present only when sampling
    lo, hi = summary["recall@5_lo"], summary["recall@5_hi"]
    assert ((lo <= summary["recall@5"]) & (summary["recall@5"] <= hi)).all()
    assert "recall@5_lo" not in full.summary.columns
    assert (full.summary["scored_events"] == n).all()
    # a different seed draws different events
    other = ReplayConfig(eval_fraction=0.3, eval_seed=5).sample(n)
    assert not np.array_equal(mask, other)


def test_the_replay_ranks_only_the_sampled_events_and_learns_them_all(stream, full, sampled):
    mask = ReplayConfig(eval_fraction=0.3, eval_seed=4).sample(stream.n_scored)
    for name, rec in sampled.records.items():
        assert rec.scored is not None, name
        np.testing.assert_array_equal(rec.scored, mask)
        assert np.isinf(rec.rank[~mask]).all()
        if name != "random":  # (its scores depend on how many rows it scored before)
            np.testing.assert_array_equal(rec.rank[mask], full.records[name].rank[mask])
        assert rec.steps_done == stream.n_steps  # every step learned
    pred = sampled.records["usermean"].pred
    assert np.isnan(pred[~mask]).all()
    np.testing.assert_allclose(pred[mask], full.records["usermean"].pred[mask])


def test_rating_metrics_cold_splits_and_events_use_the_ranked_events(stream, full, sampled):
    mask = sampled.mask
    off = stream.n_warmup
    row = sampled.summary.set_index("model").loc["usermean"]
    pred = full.records["usermean"].pred[mask]
    err = pred - stream.ratings[off:][mask]
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)))
    assert row["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert row["rated_events"] == mask.sum()
    assert row["cold_user_events"] == stream.cold_user[mask].sum()
    assert row["cold_item_events"] == stream.cold_item[mask].sum()
    warm = ~stream.cold_user[mask] & ~stream.cold_item[mask]
    assert row["warm_events"] == warm.sum()
    events = sampled.events()
    assert len(events) == len(MODELS) * mask.sum()
    pop = events[events["model"] == "pop"]
    np.testing.assert_array_equal(pop["position"], off + np.flatnonzero(mask))
    np.testing.assert_array_equal(pop["rank"], full.records["pop"].rank[mask])


def test_with_target_rating_the_metrics_are_over_the_sampled_events(stream, full):
    # the replay predicts every event's rating (cheap) when nothing is ranked; the metrics
    # still use the sampled events, as with ranking
    res = compare({"usermean": UserMean()}, stream, target="rating", eval_fraction=0.5,
                  eval_seed=2)
    mask = ReplayConfig(eval_fraction=0.5, eval_seed=2).sample(stream.n_scored)
    row = res.summary.iloc[0]
    assert row["scored_events"] == row["rated_events"] == mask.sum()
    err = (full.records["usermean"].pred - stream.ratings[stream.n_warmup:])[mask]
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)))
    assert "recall@10_lo" not in res.summary.columns
    assert "rated: a seeded sample" in protocol_text(res)


def test_curves_and_drift_are_over_the_ranked_events(stream, full, sampled):
    mask = sampled.mask
    curves = sampled.curves(window=500)
    recall = curves[(curves["model"] == "pop") & (curves["metric"] == "recall@10")]
    last = recall.iloc[-1]
    assert last["event"] == stream.n_scored  # positions count every scored event
    hit = full.records["pop"].rank[mask] < 10
    assert last["cumulative"] == pytest.approx(hit.mean())
    window = mask[-500:]
    assert last["window"] == pytest.approx((full.records["pop"].rank[-500:][window] < 10).mean())
    drift = sampled.drift
    if drift is not None and len(drift):
        assert set(drift["event"]) <= set(np.flatnonzero(mask))


def test_a_record_ranked_on_other_events_is_refused(stream, full):
    config = dataclasses.replace(full.config, eval_fraction=0.3, eval_seed=4)
    rec = dataclasses.replace(full.records["pop"],
                              scored=ReplayConfig(eval_fraction=0.3, eval_seed=9)
                              .sample(stream.n_scored))
    with pytest.raises(ValueError, match="other events"):
        CompareResult(stream=stream, config=config, records={"pop": rec}, order=["pop"])


def test_records_built_by_hand_with_a_mask(stream, full):
    """What the engine hands over (``scored`` set, unranked events inf/NaN) gives the same
    summary as a full run's records restricted to the mask."""
    config = dataclasses.replace(full.config, eval_fraction=0.3, eval_seed=4)
    mask = config.sample(stream.n_scored)
    records = {}
    for name, rec in full.records.items():
        rank, pred = rec.rank.copy(), rec.pred.copy()
        rank[~mask] = np.inf
        pred[~mask] = np.nan
        records[name] = dataclasses.replace(rec, rank=rank, pred=pred, scored=mask)
    by_hand = CompareResult(stream=stream, config=config, records=records, order=list(records))
    restricted = CompareResult(stream=stream, config=config, records=dict(full.records),
                               order=list(full.records))
    pd.testing.assert_frame_equal(by_hand.summary, restricted.summary)
    assert (by_hand.summary["scored_events"] == mask.sum()).all()


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.5", None])
def test_eval_fraction_out_of_range_is_refused(stream, bad):
    with pytest.raises(ValueError, match="eval_fraction"):
        compare({"pop": Popularity()}, stream, eval_fraction=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_bad_eval_seed_is_refused(stream, bad):
    with pytest.raises(ValueError, match="eval_seed"):
        compare({"pop": Popularity()}, stream, eval_fraction=0.5, eval_seed=bad)


def test_eval_fraction_one_ranks_everything(stream, full):
    res = compare({"pop": Popularity()}, stream, ks=(5, 10), eval_fraction=1)
    assert res.mask is None
    assert res.summary["recall@5"].iloc[0] == full.summary["recall@5"].iloc[0]


@pytest.mark.parametrize(("hits", "n"), [(0, 10), (3, 10), (10, 10), (300, 2000), (1, 1)])
def test_wilson_interval_matches_scipy(hits, n):
    from scipy.stats import binomtest

    ci = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(hits, n)
    assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


# -- the command line ----------------------------------------------------------------------

def test_cli_eval_fraction_and_seed_reach_the_summary_and_the_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["compare", "--models", "popularity,random", "--step", "500",
                 "--eval-fraction", "0.25", "--eval-seed", "3", "--out", str(out), "--quiet",
                 "--no-plots"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "scored_events" in printed and "recall@10_lo" in printed
    summary = pd.read_csv(out / "summary.csv")
    mask = ReplayConfig(eval_fraction=0.25, eval_seed=3).sample(20_000)
    assert (summary["events"] == 20_000).all()
    assert (summary["scored_events"] == mask.sum()).all()
    assert ((summary["recall@10_lo"] <= summary["recall@10"])
            & (summary["recall@10"] <= summary["recall@10_hi"])).all()
    report = (out / "report.md").read_text()
    assert "eval_fraction = 0.25" in report and "eval_seed = 3" in report
    assert "Wilson" in report and "candidate items are never sampled" in report


@pytest.mark.parametrize(("args", "message"), [
    (["--eval-fraction", "0"], "--eval-fraction must be in (0, 1]"),
    (["--eval-fraction", "1.5"], "--eval-fraction must be in (0, 1]"),
    (["--eval-fraction", "0.5", "--eval-seed", "-2"], "--eval-seed must be"),
])
def test_cli_refuses_bad_eval_options(capsys, args, message):
    assert main(["compare", "--models", "popularity", "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
