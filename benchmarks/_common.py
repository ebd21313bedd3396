"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import gc
import os
import statistics
import time

import numpy as np
import pandas as pd

from recinc_plugins.data import load_dataset, synthetic_stream
from recinc_plugins.evaluation import Stream


def movielens() -> pd.DataFrame:
    """MovieLens 100K from ``RECINC_DATA_HOME``, in the order the harness replays it."""
    return Stream(load_dataset("ml-100k", home=os.environ.get("RECINC_DATA_HOME"),
                               download=False)).frame


def movielens_or_synthetic() -> tuple[str, pd.DataFrame]:
    """``(label, frame)``: MovieLens 100K where it is found, else a synthetic stream of its
    size (943 users, 1,682 items, 100,000 events)."""
    try:
        return "ml-100k", load_dataset("ml-100k", download=False)
    except FileNotFoundError:
        return "synthetic (ml-100k not found)", synthetic_stream(
            n_events=100_000, n_users=943, n_items=1682, seed=0)


def clocked(fn) -> float:
    """Seconds ``fn()`` takes, with the garbage collector held off (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def hits(model, events: pd.DataFrame, k: int = 10) -> np.ndarray:
    """Per event: (hit in the top k, the user was known before the step)."""
    uniq, inverse = np.unique(events["user"].to_numpy(), return_inverse=True)
    recs = model.recommend(uniq, k=k)
    hit = (recs.items[inverse] == events["item"].to_numpy()[:, None]).any(axis=1)
    return np.stack([hit, ~recs.cold[inverse]])


def replay(make, frame: pd.DataFrame, start: int, step: int, steps: int):
    """Incremental and refit-every-step side by side, timed alternately on each step."""
    incremental = make().fit(frame.iloc[:start])
    refit = make().fit(frame.iloc[:start])
    found = {"incremental": [], "refit": []}
    times = {"incremental": [], "refit": []}
    for s in range(start, start + steps * step, step):
        chunk = frame.iloc[s:s + step]
        found["incremental"].append(hits(incremental, chunk))
        found["refit"].append(hits(refit, chunk))
        t0 = time.perf_counter()
        incremental.partial_fit(chunk)
        times["incremental"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        refit = make().fit(frame.iloc[:s + step])
        times["refit"].append(time.perf_counter() - t0)
    recall = {}
    for key, parts in found.items():
        hit, known = np.concatenate(parts, axis=1)
        recall[key], recall[f"{key} known"] = float(hit.mean()), float(hit[known].mean())
    return recall, {key: statistics.median(v) for key, v in times.items()}


def print_replay(name: str, recall: dict, times: dict) -> None:
    """The two lines every incremental-vs-refit benchmark prints."""
    rec_inc, rec_ref = recall["incremental"], recall["refit"]
    t_inc, t_ref = times["incremental"], times["refit"]
    print(f"{name}: recall@10 incremental {rec_inc:.4f}, refit every step {rec_ref:.4f} "
          f"({(rec_inc - rec_ref) / rec_ref:+.1%} relative); known users only "
          f"{recall['incremental known']:.4f} vs {recall['refit known']:.4f}")
    print(f"{name}: median time per step: incremental {t_inc * 1e3:7.1f} ms, full refit "
          f"{t_ref * 1e3:7.1f} ms -> incremental is {t_ref / t_inc:5.1f}x faster")


def print_step_overhead(name: str, native_label: str, pairs: list) -> None:
    """Report the best of repeated ``(ours, ours encoded, native)`` step timings: the least
    disturbed run of each on a shared machine."""
    t_ours, t_encoded, t_native = (min(p[j] for p in pairs) for j in range(3))
    print(f"{name}: one step, {native_label} {t_native * 1e3:6.2f} ms; ours {t_ours * 1e3:6.2f} "
          f"ms (overhead ratio {t_ours / t_native:4.2f}x), ours on an encoded batch "
          f"{t_encoded * 1e3:6.2f} ms ({t_encoded / t_native:4.2f}x)")
