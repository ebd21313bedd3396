"""River adapters on MovieLens 100K: same numbers as River's own loop, and how fast.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_river.py`` (about half a
minute on one core). The stream is ml-100k in timestamp order (stable on ties); BiasedMF has
River's MovieLens tutorial parameters (10 factors, SGD 0.025 for biases and 0.05 for latents,
Normal(0, 0.1) initialiser, seed 73). It prints:

1. Prequential MAE/RMSE (each event predicted, clipped to 1..5, then learned) and wall time of
   - River's own loop: ``predict_one`` then ``learn_one`` per event (the reference);
   - ``RiverBiasedMF.predict_then_learn``: the same loop run by the adapter on the whole frame;
   - the evaluation harness, ``compare(..., Stream(frame, step=1), target="rating")``: one
     ``partial_fit`` call per event through the shared interface (per-step machinery included).
   The MAE differences must be below 1e-9; the time ratios are against River's loop.
2. Top-10 over the full catalogue for ``--users`` users: ``Ranker.rank`` (River: ``predict_one``
   per item, then a sort; timed once) against ``recommend`` (one vectorised call for all the
   users, and one call per user; best of ``--repeats``), the share of identical top-10 lists,
   and the speed-ups.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import pandas as pd
from _common import movielens
from river import optim, reco

from recinc_plugins.adapters.river import RiverBiasedMF
from recinc_plugins.evaluation import Stream, compare


def tutorial_params() -> dict:
    return dict(n_factors=10, bias_optimizer=optim.SGD(0.025), latent_optimizer=optim.SGD(0.05),
                latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73))


def river_loop(frame: pd.DataFrame) -> tuple[np.ndarray, float, reco.BiasedMF]:
    model = reco.BiasedMF(**tutorial_params())
    predict, learn = model.predict_one, model.learn_one
    preds = []
    t0 = time.perf_counter()
    for user, item, y in zip(frame["user"].tolist(), frame["item"].tolist(),
                             frame["rating"].tolist(), strict=True):
        preds.append(predict(user, item))
        learn(user, item, y)
    return np.asarray(preds), time.perf_counter() - t0, model


def errors(preds: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    diff = np.clip(preds, 1, 5) - truth
    return float(np.abs(diff).mean()), float(np.sqrt(np.mean(diff**2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best-of runs for timings")
    parser.add_argument("--users", type=int, default=200, help="users for the top-10 part")
    args = parser.parse_args()
    frame = movielens()
    truth = frame["rating"].to_numpy()
    print(f"ml-100k: {len(frame):,} ratings, {frame['user'].nunique()} users, "
          f"{frame['item'].nunique()} items, timestamp order")

    # 1. prequential, one event per step
    native_t, fused_t = [], []
    for _ in range(args.repeats):
        native_preds, t, native = river_loop(frame)
        native_t.append(t)
        adapter = RiverBiasedMF(**tutorial_params())
        t0 = time.perf_counter()
        fused_preds = adapter.predict_then_learn(frame)
        fused_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    result = compare({"river-biasedmf": RiverBiasedMF(**tutorial_params())},
                     Stream(frame, step=1), k=10, target="rating", clip=(1, 5))
    harness_t = time.perf_counter() - t0
    n_mae, n_rmse = errors(native_preds, truth)
    f_mae, f_rmse = errors(fused_preds, truth)
    h_mae = float(result.summary["mae"].iloc[0])
    h_rmse = float(result.summary["rmse"].iloc[0])
    best_native = min(native_t)
    print("\nprequential, predict then learn each event (clipped to 1..5)")
    print(f"{'loop':<34}{'MAE':>12}{'RMSE':>12}{'|dMAE|':>10}{'time s':>9}{'ratio':>7}")
    rows = [("River predict_one + learn_one", n_mae, n_rmse, best_native),
            ("RiverBiasedMF.predict_then_learn", f_mae, f_rmse, min(fused_t)),
            ("harness compare(step=1)", h_mae, h_rmse, harness_t)]
    for name, mae, rmse, t in rows:
        print(f"{name:<34}{mae:>12.9f}{rmse:>12.9f}{abs(mae - n_mae):>10.1e}{t:>9.2f}"
              f"{t / best_native:>6.2f}x")
    print(f"same final model: "
          f"{np.array_equal(adapter.model_.u_latents[196], native.u_latents[196])}")

    # 2. top-10 over the full catalogue
    users = frame["user"].drop_duplicates().to_numpy()[: args.users]
    catalogue = set(adapter.item_index_.ids.tolist())
    ranker = copy.deepcopy(adapter.model_)
    t0 = time.perf_counter()
    river_top = [ranker.rank(u, catalogue)[:10] for u in users.tolist()]
    river_t = time.perf_counter() - t0
    batch_t, single_t = np.inf, np.inf
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = adapter.recommend(users, k=10, exclude_seen=False)
        batch_t = min(batch_t, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for u in users.tolist():
            adapter.recommend(u, k=10, exclude_seen=False)
        single_t = min(single_t, time.perf_counter() - t0)
    same = np.mean([ours.items[r].tolist() == river_top[r] for r in range(users.size)])
    print(f"\ntop-10 of {len(catalogue)} items for {users.size} users")
    print(f"Ranker.rank (predict_one per item): {river_t * 1e3 / users.size:8.2f} ms/user")
    print(f"recommend, one call for all users:  {batch_t * 1e3 / users.size:8.3f} ms/user "
          f"({river_t / batch_t:,.0f}x faster)")
    print(f"recommend, one call per user:       {single_t * 1e3 / users.size:8.3f} ms/user "
          f"({river_t / single_t:,.0f}x faster)")
    print(f"identical top-10 lists: {same:.1%}")


if __name__ == "__main__":
    main()
