"""LightFM adapter on MovieLens 100K: incremental steps versus full refits, and our overhead.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_lightfm.py`` (about a
minute on one core). The stream is ml-100k in timestamp order, every rating a positive event.
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
"""

from __future__ import annotations

import argparse
import copy

import pandas as pd
from _common import clocked, movielens, print_replay, print_step_overhead, replay

from recinc_plugins.adapters.lightfm import LightFMRecommender


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
    interactions, weights = prepared._step_matrices(batch, replay=True)
    native = prepared.model_
    t_native = clocked(lambda: native.fit_partial(
        interactions, sample_weight=weights, epochs=prepared.epochs,
        num_threads=prepared.num_threads))
    return t_ours, t_encoded, t_native


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=50_000)
    parser.add_argument("--step", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15, help="repeats of the overhead timing")
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


if __name__ == "__main__":
    main()
