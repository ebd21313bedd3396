"""River adapters on MovieLens 100K: same numbers as River's own loop, and how fast.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_river.py`` (about two
minutes on one core; ``--model baseline`` or ``funkmf`` for the other adapters). The stream is
ml-100k in timestamp order (stable on ties); the models have River's MovieLens tutorial
parameters (BiasedMF: 10 factors, SGD 0.025 for biases and 0.05 for latents, Normal(0, 0.1)
initialiser, seed 73; Baseline and FunkMF the matching subset). It prints:

1. Prequential MAE/RMSE (each event predicted, clipped to 1..5, then learned) and CPU time,
   best of ``--repeats``, of
   - River's own loop: ``predict_one`` then ``learn_one`` per event (the reference);
   - ``predict_then_learn``: the same loop run by the adapter on the whole frame;
   - the evaluation harness, ``compare(..., Stream(frame, step=1), target="rating")`` (the
     same as ``recinc compare --target rating --step 1``): runs of one-event steps through
     the adapter's ``score_then_learn_encoded`` (River's loop on an encoded batch, up to 1,024
     steps a call);
   - the same replay with that fast path off (an adapter subclass without it): one
     ``score_encoded`` and one ``learn_encoded`` call per event through the public encoded
     interface, as for any model, and as for River in a ranking replay.
   The MAE differences must be below 1e-9; the time ratios are against River's loop. Then the
   per-step replay's ratio split into its parts: River's own work (1.00x), the adapter's cost
   beyond it, the interface's shared bookkeeping (``learn_encoded`` of a model that learns
   nothing: id maps, seen matrix, counts) and the harness's per-step machinery (the rest).
``--new-items N`` instead times growth: N one-event steps, each with an item never seen
(``add_ids`` then ``learn_encoded``, as the harness does), at N and 2N, with the adapter's
mirrored arrays grown in buffers with spare room (today) and at their exact size on every new
id (before): time doubling with N is linear, more than doubling is the quadratic copying.

2. Top-10 over the full catalogue for ``--users`` users: ``Ranker.rank`` (River: ``predict_one``
   per item, then a sort; timed once) against ``recommend`` (one vectorised call for all the
   users, and one call per user; best of ``--repeats``), the share of identical top-10 lists,
   and the speed-ups.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import pandas as pd
from _common import movielens
from river import optim, reco

from recinc_plugins.adapters.river import RiverBaseline, RiverBiasedMF, RiverFunkMF
from recinc_plugins.base import Batch, Capabilities, IncrementalRecommender
from recinc_plugins.evaluation import Stream, compare

MODELS = {"biasedmf": (reco.BiasedMF, RiverBiasedMF), "baseline": (reco.Baseline, RiverBaseline),
          "funkmf": (reco.FunkMF, RiverFunkMF)}


def tutorial_params(model: str = "biasedmf") -> dict:
    """River's MovieLens tutorial parameters (fresh optimisers and initialiser each call)."""
    init = optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73)
    if model == "baseline":
        return dict(optimizer=optim.SGD(0.025))
    if model == "funkmf":
        return dict(n_factors=10, optimizer=optim.SGD(0.05), initializer=init)
    return dict(n_factors=10, bias_optimizer=optim.SGD(0.025), latent_optimizer=optim.SGD(0.05),
                latent_initializer=init)


def river_loop(frame: pd.DataFrame, model: str = "biasedmf") -> tuple[np.ndarray, float, Any]:
    native = MODELS[model][0](**tutorial_params(model))
    predict, learn = native.predict_one, native.learn_one
    preds = []
    t0 = time.process_time()
    for user, item, y in zip(frame["user"].tolist(), frame["item"].tolist(),
                             frame["rating"].tolist(), strict=True):
        preds.append(predict(user, item))
        learn(user, item, y)
    return np.asarray(preds), time.process_time() - t0, native


class NoLearning(IncrementalRecommender):
    """A model that learns nothing: its ``learn_encoded`` is the interface's shared
    bookkeeping (id maps, seen matrix, counts, rating mean) and nothing else."""

    capabilities = Capabilities(explicit=True, implicit=False)

    def _grow(self, n_users: int, n_items: int) -> None:
        pass

    def _partial_fit(self, batch: Batch) -> None:
        pass

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.zeros((users.size, self.n_items))


def per_step(cls: type) -> type:
    """The adapter without its fast path for runs of one-event steps: the replay then scores
    and learns each step with one ``score_encoded`` and one ``learn_encoded`` call."""
    return type(f"PerStep{cls.__name__}", (cls,),
                {"score_then_learn_encoded": lambda self, batch: None})


def interface_loop(model: IncrementalRecommender, frame: pd.DataFrame, calls: str) -> float:
    """CPU seconds for the harness's calls on one-event steps, without the harness: per event,
    ``score_encoded`` (an id not learned yet is -1, as the harness passes it), then ``add_ids``
    for a new id and ``learn_encoded``. ``calls``: ``"all"``; ``"learn"`` (no scoring); or
    ``"none"``, the loop's own plumbing alone (slices, batches), which the harness has too."""
    model.reset()
    user_codes, user_ids = pd.factorize(frame["user"])  # codes in order of first appearance
    item_codes, item_ids = pd.factorize(frame["item"])
    table_u = np.full(len(user_ids), -1, dtype=np.int64)
    table_i = np.full(len(item_ids), -1, dtype=np.int64)
    ratings = frame["rating"].to_numpy(np.float64)
    score_encoded, learn_encoded, add_ids = model.score_encoded, model.learn_encoded, model.add_ids
    score, learn = calls == "all", calls != "none"
    t0 = time.process_time()
    for s, (cu, ci) in enumerate(zip(user_codes.tolist(), item_codes.tolist(), strict=True)):
        u, i = table_u[cu:cu + 1], table_i[ci:ci + 1]
        if score:
            score_encoded(u, i)
        if learn and u[0] < 0:
            table_u[cu] = add_ids(users=user_ids[cu:cu + 1])[0][0]
        if learn and i[0] < 0:
            table_i[ci] = add_ids(items=item_ids[ci:ci + 1])[1][0]
        batch = Batch(users=table_u[cu:cu + 1], items=table_i[ci:ci + 1],
                      ratings=ratings[s:s + 1])
        if learn:
            learn_encoded(batch)
    return time.process_time() - t0


def errors(preds: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    diff = np.clip(preds, 1, 5) - truth
    return float(np.abs(diff).mean()), float(np.sqrt(np.mean(diff**2)))


def new_items(model_name: str, n: int) -> None:
    """One-event steps, each bringing a new item, through the adapter as it grows now and with
    every growth at the exact size (``grown`` in place of ``grown_view``)."""
    import recinc_plugins.adapters.river as river_module
    from recinc_plugins.base import Batch
    from recinc_plugins.growth import grown

    adapter_cls = MODELS[model_name][1]

    def run(count: int) -> float:
        model = adapter_cls(**tutorial_params(model_name))
        model.fit(pd.DataFrame({"user": ["a"], "item": ["x"], "rating": [3.0]}))
        start = time.process_time()
        for j in range(count):
            users, items = model.add_ids(["a"], [f"i{j}"])
            model.learn_encoded(Batch(users=users, items=items, ratings=np.array([4.0])))
        return time.process_time() - start

    spare = river_module.grown_view
    for label, growth in (("buffers with spare room (today)", spare),
                          ("exact size on every new id (before)",
                           lambda array, rows, fill=0: grown(array, rows, fill))):
        river_module.grown_view = growth
        try:
            t1, t2 = run(n), run(2 * n)
        finally:
            river_module.grown_view = spare
        print(f"{label}: {n:,} new items {t1:.2f} s, {2 * n:,} {t2:.2f} s "
              f"({t2 / t1:.2f}x for twice the items)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="biasedmf")
    parser.add_argument("--repeats", type=int, default=3, help="best-of runs for timings")
    parser.add_argument("--users", type=int, default=200, help="users for the top-10 part")
    parser.add_argument("--new-items", type=int, default=0, metavar="N",
                        help="instead: time N and 2N one-event steps each with a new item")
    args = parser.parse_args()
    if args.new_items:
        new_items(args.model, args.new_items)
        return
    frame = movielens()
    truth = frame["rating"].to_numpy()
    adapter_cls = MODELS[args.model][1]
    print(f"ml-100k: {len(frame):,} ratings, {frame['user'].nunique()} users, "
          f"{frame['item'].nunique()} items, timestamp order; River {adapter_cls.__name__}")

    # 1. prequential, one event per step, in CPU seconds of this process (the replay runs in it,
    # single-threaded): other jobs on a shared machine weigh less than on wall time; and the
    # loops take turns, so what load remains weighs on each of them alike
    stream = Stream(frame, step=1)
    times: dict[str, list[float]] = {key: [] for key in (
        "native", "fused", "harness", "steps", "interface", "bookkeeping", "plumbing")}
    for _ in range(args.repeats):
        native_preds, t, native = river_loop(frame, args.model)
        times["native"].append(t)
        adapter = adapter_cls(**tutorial_params(args.model))
        t0 = time.process_time()
        fused_preds = adapter.predict_then_learn(frame)
        times["fused"].append(time.process_time() - t0)
        t0 = time.process_time()
        result = compare({args.model: adapter_cls(**tutorial_params(args.model))}, stream, k=10,
                         target="rating", clip=(1, 5))
        times["harness"].append(time.process_time() - t0)
        t0 = time.process_time()
        stepwise = compare({args.model: per_step(adapter_cls)(**tutorial_params(args.model))},
                           stream, k=10, target="rating", clip=(1, 5))
        times["steps"].append(time.process_time() - t0)
        times["interface"].append(interface_loop(adapter_cls(**tutorial_params(args.model)),
                                                 frame, "all"))
        times["bookkeeping"].append(interface_loop(NoLearning(), frame, "learn"))
        times["plumbing"].append(interface_loop(NoLearning(), frame, "none"))
    best = {key: min(values) for key, values in times.items()}
    n = len(frame)
    n_mae, n_rmse = errors(native_preds, truth)
    f_mae, f_rmse = errors(fused_preds, truth)
    h_mae = float(result.summary["mae"].iloc[0])
    h_rmse = float(result.summary["rmse"].iloc[0])
    s_mae = float(stepwise.summary["mae"].iloc[0])
    s_rmse = float(stepwise.summary["rmse"].iloc[0])
    print(f"\nprequential, predict then learn each event (clipped to 1..5), best of "
          f"{args.repeats}")
    print(f"{'loop':<34}{'MAE':>12}{'RMSE':>12}{'|dMAE|':>10}{'cpu s':>9}{'ratio':>7}")
    rows = [("River predict_one + learn_one", n_mae, n_rmse, best["native"]),
            (f"{adapter_cls.__name__}.predict_then_learn", f_mae, f_rmse, best["fused"]),
            ("harness compare(step=1)", h_mae, h_rmse, best["harness"]),
            ("  the same, per-step calls", s_mae, s_rmse, best["steps"])]
    for name, mae, rmse, t in rows:
        print(f"{name:<34}{mae:>12.9f}{rmse:>12.9f}{abs(mae - n_mae):>10.1e}{t:>9.2f}"
              f"{t / best['native']:>6.2f}x")
    if hasattr(native, "u_latents"):
        user = frame["user"].iloc[0]
        print(f"same final model: "
              f"{np.array_equal(adapter.model_.u_latents[user], native.u_latents[user])}")

    parts = [
        ("River's own work (predict_one + learn_one)", best["native"]),
        ("adapter (score_encoded + learn_encoded beyond River's work and the bookkeeping)",
         best["interface"] - best["bookkeeping"] - best["native"]),
        ("interface bookkeeping (learn_encoded of a model that learns nothing)",
         best["bookkeeping"] - best["plumbing"]),
        ("harness per-step machinery (compare's loop around those calls)",
         best["steps"] - best["interface"] + best["plumbing"]),
    ]
    print(f"\nharness/native ratio, compare(..., Stream(frame, step=1), target=\"rating\"): "
          f"{best['harness'] / best['native']:.2f}x "
          f"({(best['harness'] - best['native']) / n * 1e6:.2f} us/event beyond River's loop)")
    print(f"with per-step calls (the fast path off): {best['steps'] / best['native']:.2f}x, "
          "made of")
    for name, t in parts:
        print(f"  {t / best['native']:5.2f}x {t / n * 1e6:6.2f} us/event  {name}")

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
