"""LightFM adapter on MovieLens 100K: incremental steps versus full refits, and our overhead.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_lightfm.py`` (about a
minute on one core, and half a minute more for the one-event part). The stream is ml-100k in
timestamp order, every rating a positive event.
After the first 50,000 events, ``--steps`` steps of 1,000 events are replayed test-then-learn
with two models side by side, timed alternately on each step:

- incremental: ``partial_fit`` on each step (grown state, ``epochs`` passes over the new
  events plus ``replay`` times as many earlier ones);
- refit: a new model fitted from scratch on everything so far (``fit_epochs`` passes).

It prints recall@10 of both (every event scored before its step is learned, unknown users
answered by the model's cold-start fallback, the same counts in both), the median time per
step of each, and the ratio.
It then times one step of our ``partial_fit`` against LightFM's own ``fit_partial`` on the
same, prebuilt full-shape matrix (new plus replayed events) and an already grown model, so the
difference is the adapter's overhead: validation, id maps, growth, replay sampling.

Last, one event per step (issue 16): the model as it was a quarter and three quarters into
ml-100k at one event per step, each given the next ``--one-event`` events to learn one per step
(the harness's encoded path, learning only), alternately, best of three, CPU time: ours (LightFM's
epoch routine on the rows a step reaches) against the same steps through LightFM's own
``fit_partial`` on full-shape matrices (:class:`FitPartialSteps`, how the adapter trained before;
the numbers are bit for bit the same), and each one's cost at three quarters over a quarter.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import pandas as pd
from _common import clocked, movielens, print_replay, print_step_overhead, replay

from recinc_plugins.adapters.lightfm import LightFMRecommender
from recinc_plugins.base import Batch


class FitPartialSteps(LightFMRecommender):
    """The adapter training every step as it did before issue 16: LightFM's own
    ``fit_partial`` on a full-shape matrix of the step's events (the same numbers, bit for bit,
    at a cost that grows with the users and items)."""

    def _fit_rows(self, users: np.ndarray, items: np.ndarray, values: np.ndarray,
                  epochs: int) -> None:
        self._fit_partial(users, items, values, epochs)


def native_step(model: LightFMRecommender, chunk: pd.DataFrame) -> tuple[float, float, float]:
    """Times of one step: our ``partial_fit``, ours on a batch already encoded (the harness's
    path: no validation or id mapping), and LightFM's ``fit_partial`` on the same matrix."""
    ours = copy.deepcopy(model)
    t_ours = clocked(lambda: ours.partial_fit(chunk))
    encoded = copy.deepcopy(model)
    batch = encoded._encode(encoded._validate(chunk))
    t_encoded = clocked(lambda: encoded.learn_encoded(batch))

    # the native side gets a grown model and the very matrix our step trains on
    prepared = copy.deepcopy(model)
    batch = prepared._encode(prepared._validate(chunk))
    prepared._sync_size()
    interactions, weights = prepared._full_matrices(*prepared._step_events(batch, replay=True))
    native = prepared.model_
    t_native = clocked(lambda: native.fit_partial(
        interactions, sample_weight=weights, epochs=prepared.epochs,
        num_threads=prepared.num_threads))
    return t_ours, t_encoded, t_native


def one_event_cpu(model: Any, users: np.ndarray, items: np.ndarray) -> float:
    """CPU seconds a copy of ``model`` takes to learn the events one per step, each step's ids
    added first (as the harness adds them)."""
    model = copy.deepcopy(model)
    t0 = time.process_time()
    for j in range(users.size):
        model.learn_encoded(Batch(*model.add_ids(users[j:j + 1], items[j:j + 1])))
    return time.process_time() - t0


def one_event_table(frame: pd.DataFrame, count: int) -> None:
    n = len(frame)
    marks = (n // 4, 3 * n // 4)
    users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    model = LightFMRecommender(num_threads=1, seed=0)
    snapshots = {}
    for j in range(marks[-1]):
        model.learn_encoded(Batch(*model.add_ids(users[j:j + 1], items[j:j + 1])))
        if j + 1 in marks:
            snapshots[j + 1] = copy.deepcopy(model)
    best: dict[tuple[int, str], float] = {}
    for _ in range(3):
        for mark, snapshot in snapshots.items():
            for label, cls in (("ours", LightFMRecommender), ("fit_partial", FitPartialSteps)):
                timed = copy.deepcopy(snapshot)
                timed.__class__ = cls
                cpu = one_event_cpu(timed, users[mark:mark + count], items[mark:mark + count])
                best[mark, label] = min(best.get((mark, label), np.inf), cpu / count)
    print(f"\none event per step, learning only: CPU us per event over {count:,} steps, "
          "best of 3")
    print("| model as at | users | items | ours | LightFM fit_partial | ours / fit_partial |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mark, snapshot in snapshots.items():
        ours, native = best[mark, "ours"] * 1e6, best[mark, "fit_partial"] * 1e6
        print(f"| event {mark:,} | {snapshot.n_users:,} | {snapshot.n_items:,} | {ours:.0f} | "
              f"{native:.0f} | {ours / native:.2f} |")
    early, late = marks
    print(f"| 3/4 over 1/4 | | | {best[late, 'ours'] / best[early, 'ours']:.2f} | "
          f"{best[late, 'fit_partial'] / best[early, 'fit_partial']:.2f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=50_000)
    parser.add_argument("--step", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15, help="repeats of the overhead timing")
    parser.add_argument("--one-event", type=int, default=1_000,
                        help="one-event steps timed at 1/4 and 3/4 of the stream (0: none)")
    args = parser.parse_args()
    frame = movielens()
    print(f"ml-100k: {len(frame):,} events; first {args.start:,} learned, then "
          f"{args.steps} steps of {args.step:,} (num_threads=1)\n")

    def make() -> LightFMRecommender:
        return LightFMRecommender(num_threads=1, seed=0)

    name = "lightfm"
    recall, times = replay(make, frame, args.start, args.step, args.steps)
    print_replay(name, recall, times)

    model = make().fit(frame.iloc[:args.start])
    chunk = frame.iloc[args.start:args.start + args.step]
    pairs = [native_step(model, chunk) for _ in range(args.repeat)]
    print_step_overhead(name, "LightFM fit_partial on the same prebuilt matrix", pairs)
    if args.one_event:
        one_event_table(frame, args.one_event)


if __name__ == "__main__":
    main()
