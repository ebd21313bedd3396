"""Harness speed: replaying ml-100k through popularity, and two models in parallel.

Run: ``RECINC_DATA_HOME=/path/to/data python benchmarks/bench_harness.py`` (about a minute; it
falls back to a synthetic stream of the same size when ml-100k is absent). Prints:

- events/s at one event per step and at 1,000-event steps (targets: >= 25,000 and >= 200,000),
  with the time split between the model (its own scoring and updates) and the harness, and
  events per CPU-second (what the figure would be on a core of its own);
- the same protocol written the obvious way through the public API (``recommend`` then
  ``partial_fit`` per step, with a DataFrame per step) on a prefix, and the ratio;
- two models with ``n_jobs=2`` against one after the other (target: <= 0.6x);
- the cost of the "newcomer" cold-start policy: popularity with and without it, per event of
  the model's own work, and the ratio.

Each figure is the best of ``--repeat`` runs. The machine's load average is printed too: on a
shared machine the parallel figure depends on a free second core.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from _common import movielens_or_synthetic

from recinc_plugins.baselines import Popularity
from recinc_plugins.evaluation import Stream, compare


def best(fn, repeat: int):
    """Best (wall seconds, CPU seconds of this process, result) of ``repeat`` runs."""
    results = []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        results.append((time.perf_counter() - start, time.process_time() - cpu, out))
    return min(results, key=lambda r: r[0])


def naive_loop(frame: pd.DataFrame, step: int, k: int = 10) -> float:
    """The protocol through the public API: recommend (seen items excluded), then partial_fit."""
    model = Popularity()
    hits = 0
    seen_items: set = set()
    for start in range(0, len(frame), step):
        part = frame.iloc[start:start + step]
        if model.is_fitted:
            recs = model.recommend(part["user"].to_numpy(), k=k).items
            for row, item in zip(recs, part["item"].to_numpy(), strict=True):
                hits += item in seen_items and item in set(row.tolist())
        seen_items.update(part["item"].tolist())
        model.partial_fit(part)
    return hits / len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--parts", default="speed,naive,parallel,newcomer",
                        help="which figures to measure (comma-separated)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    name, frame = movielens_or_synthetic()
    print(f"data: {name}, {len(frame):,} events; cores: {os.cpu_count()}; load average "
          f"before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if "speed" in parts:
        bench_speed(frame, args.repeat)
    if "naive" in parts:
        bench_naive(frame, args.repeat, args.naive_events)
    if "parallel" in parts:
        bench_parallel(frame, args.repeat)
    if "newcomer" in parts:
        bench_newcomer(frame, args.repeat)
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def bench_speed(frame: pd.DataFrame, repeat: int) -> None:
    rows = []
    for step, target in ((1, 25_000), (1000, 200_000)):
        stream = Stream(frame, step=step)
        wall, cpu, res = best(lambda s=stream: compare({"popularity": Popularity()}, s, k=10),
                              repeat)
        row = res.summary.iloc[0]
        n = row["events"]
        model_s = row["update_s"] + row["score_s"]
        rows.append({
            "step": step, "recall@10": round(row["recall@10"], 4),
            "events/s": round(row["events_per_s"]),
            "events/CPU-s": round(n / cpu), "target": target,
            "met": row["events_per_s"] >= target,
            "model us/event": round(model_s / n * 1e6, 2),
            "harness us/event": round((row["wall_s"] - model_s) / n * 1e6, 2),
            "compare() wall s": round(wall, 2),
        })
    print("\npopularity through the harness, ml-100k order, top-10, seen items excluded")
    print("(events/s: wall clock of the replay; events/CPU-s: this process's CPU time for the "
          "whole compare() call, which other jobs on the machine barely change)")
    print(pd.DataFrame(rows).to_string(index=False))


def bench_newcomer(frame: pd.DataFrame, repeat: int) -> None:
    print("\nthe newcomer cold start's cost: Popularity() vs Popularity(cold_start=\"newcomer\")")
    for step in (1, 1000):
        stream = Stream(frame, step=step)
        per_event = {}
        for policy in ("popularity", "newcomer"):
            _, _, res = best(lambda s=stream, p=policy: compare(
                {"m": Popularity(cold_start=p)}, s, k=10), repeat)
            row = res.summary.iloc[0]
            per_event[policy] = (row["update_s"] + row["score_s"]) / row["events"] * 1e6
            per_event[policy + " recall"] = row["recall@10"]
        without, with_ = per_event["popularity"], per_event["newcomer"]
        print(f"step {step:>5}: model work {without:.2f} us/event without, {with_:.2f} with "
              f"({with_ / without:.2f}x; +{with_ - without:.2f} us); recall@10 "
              f"{per_event['popularity recall']:.4f} -> {per_event['newcomer recall']:.4f}")


def bench_naive(frame: pd.DataFrame, repeat: int, n_events: int) -> None:
    prefix = frame.iloc[np.argsort(frame["timestamp"].to_numpy(), kind="stable")]
    prefix = prefix.iloc[:n_events].reset_index(drop=True)
    print(f"\nthe same protocol through the public API, first {len(prefix):,} events")
    for step in (1, 1000):
        t_naive, _, _ = best(lambda s=step: naive_loop(prefix, s), 1)
        stream = Stream(prefix, step=step)
        t_fast, _, res = best(lambda s=stream: compare({"popularity": Popularity()}, s),
                              repeat)
        print(f"step {step:>5}: public-API loop {len(prefix) / t_naive:>10,.0f} events/s, "
              f"harness {res.summary.loc[0, 'events_per_s']:>10,.0f} events/s "
              f"(compare() wall {t_fast:.2f} s): {t_naive / t_fast:5.1f}x faster")



def bench_parallel(frame: pd.DataFrame, repeat: int) -> None:
    stream = Stream(frame, step=1)
    # two models of about the same cost, so the ideal ratio is 0.5 plus the process start-up
    models = {"popularity": Popularity(), "weighted-popularity": Popularity(weighted=True)}
    t_seq, _, _ = best(lambda: compare(models, stream, n_jobs=1), repeat)
    t_par, _, res = best(lambda: compare(models, stream, n_jobs=2), repeat)
    ratio = t_par / t_seq
    print(f"\ntwo models (popularity, rating-weighted popularity), one event per step: one "
          f"after the other {t_seq:.2f} s, n_jobs=2 {t_par:.2f} s: {ratio:.2f}x "
          f"(target <= 0.60: {'met' if ratio <= 0.6 else 'NOT met'}); failures: "
          f"{len(res.failures)}")


if __name__ == "__main__":
    main()
