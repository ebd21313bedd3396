"""Forgetting on MovieLens 100K: what ``forget`` costs, and how far an approximate one lands
from a model retrained without the forgotten users.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_forget.py`` (1 to 4
minutes on one core of a shared 2-core machine; ``--quick`` takes the first 30,000 events, in
under half a minute; ``--models implicit-als,lightfm`` a few models, rating models included).
It skips with a message where ml-100k is absent. The numbers it printed are in
``docs/forget.md``.

For every registered ranking model with its own ``_forget`` (``--models`` may name any model),
whose extra is installed:

- **Cost.** The model learns the whole stream (``fit``, time order), then, on copies of it,
  forgets 1 user (five times, five users: the median call) and 100 users in one call. It
  prints the time per call and per user, and for popularity, item-knn and implicit-als
  PASS/FAIL against the target of 100 ms per user (both ways).
- **Gap** (every model; for an exact one it is a check). The model learns the first 90% of
  the stream, forgets 100 users drawn from it (seeded), and recommends 10 items once to every
  other user of the last 10% (seen items excluded; nothing learned from that part): recall@10
  over their events, against a model with the same seed fitted on the kept events (the
  first 90% less the forgotten users' events), as a ratio. Where the model has
  ``item_vectors``, the relative distance of its item vectors to the retrained model's
  (``||V - V_kept|| / ||V_kept||`` over the items both know), next to the same distance
  between two retrainings on the kept events with different seeds: the noise floor of
  training itself.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from recinc_plugins import list_models, make  # noqa: E402
from recinc_plugins.forget import Forgetting  # noqa: E402

#: the models held to the cost target, and the target (ms per forgotten user)
TARGET_MODELS = ("popularity", "item-knn", "implicit-als")
TARGET_MS = 100.0
K = 10


def _frame(quick: bool) -> pd.DataFrame | None:
    from recinc_plugins.data import load_dataset
    from recinc_plugins.evaluation import Stream

    try:
        raw = load_dataset("ml-100k", home=os.environ.get("RECINC_DATA_HOME"), download=False)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"skipped: MovieLens 100K not found ({exc}); set RECINC_DATA_HOME to a folder "
              "holding ml-100k/")
        return None
    frame = Stream(raw).frame  # the harness's replay order: by time, stable on ties
    return frame.iloc[:30_000].reset_index(drop=True) if quick else frame


def _models(names: str | None) -> tuple[list[str], list[str]]:
    table = list_models(capabilities=True)
    chosen, skipped = [], []
    wanted = None if names is None else [n.strip() for n in names.split(",") if n.strip()]
    for row in table.itertuples():
        if wanted is not None and row.name not in wanted:
            continue
        if not row.installed:
            skipped.append(f"{row.name} (needs the {row.extra!r} extra)")
            continue
        cls = type(make(row.name))
        if wanted is None and (cls._forget is Forgetting._forget
                               or not cls.capabilities.implicit):
            continue  # retrains to forget, or a rating model: not a ranking model's case
        chosen.append(row.name)
    if wanted is not None:
        unknown = sorted(set(wanted) - set(table["name"]))
        if unknown:
            raise SystemExit(f"unknown model(s): {', '.join(unknown)} (see `recinc models`)")
    return chosen, skipped


def _make(name: str, seed: int) -> Any:
    model = make(name)
    params = model._param_names()
    given = {}
    if "seed" in params:
        given["seed"] = seed
    if "num_threads" in params:
        given["num_threads"] = 1
    return model.set_params(**given) if given else model


def cost(name: str, frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, Any]:
    """Time ``forget`` of 1 user (median of 5 calls) and of 100 users in one call, on copies
    of a model that learned the whole stream."""
    model = _make(name, 0)
    t0 = time.perf_counter()
    model.fit(frame)
    fit_s = time.perf_counter() - t0
    users = rng.choice(pd.unique(frame["user"]), size=105, replace=False)
    one = copy.deepcopy(model)
    singles = []
    exact = True
    for user in users[:5]:
        t0 = time.perf_counter()
        report = one.forget(users=[user])
        singles.append(time.perf_counter() - t0)
        exact &= report.exact
    many = copy.deepcopy(model)
    t0 = time.perf_counter()
    report = many.forget(users=users[5:])
    hundred = time.perf_counter() - t0
    return {"fit_s": fit_s, "one_ms": statistics.median(singles) * 1e3,
            "hundred_ms": hundred * 1e3, "per_user_ms": hundred * 1e3 / 100,
            "events": report.events, "exact": bool(exact and report.exact)}


def _lists(model: Any, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-10 lists of the test users, per event whether it was a hit, and per event whether
    its user was known (not answered by the cold-start policy)."""
    users, inverse = np.unique(test["user"].to_numpy(), return_inverse=True)
    recs = model.recommend(users, k=K)
    hit = (recs.items[inverse] == test["item"].to_numpy()[:, None]).any(axis=1)
    return recs.items, hit, ~recs.cold[inverse]


def _vectors(model: Any) -> pd.DataFrame | None:
    """The item vectors by item id (live items only), or None."""
    vectors = model.item_vectors()
    if vectors is None:
        return None
    index = model.item_index_
    live = np.flatnonzero(~index.dead)
    live = live[live < len(vectors)]
    return pd.DataFrame(np.asarray(vectors, dtype=np.float64)[live],
                        index=index.ids_of(live))


def _distance(a: pd.DataFrame | None, b: pd.DataFrame | None) -> float:
    if a is None or b is None:
        return float("nan")
    common = a.index.intersection(b.index)
    va, vb = a.loc[common].to_numpy(), b.loc[common].to_numpy()
    return float(np.linalg.norm(va - vb) / max(np.linalg.norm(vb), 1e-12))


def gap(name: str, frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, Any]:
    """recall@10 on the last 10% and item-vector distance: forgotten vs retrained."""
    split = int(0.9 * len(frame))
    train, test = frame.iloc[:split], frame.iloc[split:]
    gone = rng.choice(pd.unique(train["user"]), size=100, replace=False)
    kept = train[~train["user"].isin(gone)]
    test = test[~test["user"].isin(gone)]
    model = _make(name, 1).fit(train)
    t0 = time.perf_counter()
    report = model.forget(users=gone)
    forget_s = time.perf_counter() - t0
    retrained = _make(name, 1).fit(kept)
    other_seed = _make(name, 2).fit(kept)
    lists, hit, warm = _lists(model, test)
    lists_kept, hit_kept, _ = _lists(retrained, test)
    _, hit_seed, _ = _lists(other_seed, test)
    _, first = np.unique(test["user"].to_numpy(), return_index=True)
    known = warm[first]  # per user: known to the model (the same users for both)
    same = (lists == lists_kept).all(axis=1)
    mine, theirs, noise = _vectors(model), _vectors(retrained), _vectors(other_seed)
    return {"exact": bool(report.exact), "forget_s": forget_s,
            "recall_forgot": float(hit.mean()), "recall_retrained": float(hit_kept.mean()),
            "recall_other_seed": float(hit_seed.mean()),
            "ratio": _ratio(hit.mean(), hit_kept.mean()),
            "warm_ratio": _ratio(hit[warm].mean(), hit_kept[warm].mean()),
            "cold_ratio": _ratio(hit[~warm].mean(), hit_kept[~warm].mean()),
            "same_warm": float(same[known].mean()), "same_cold": float(same[~known].mean()),
            "distance": _distance(mine, theirs), "noise": _distance(noise, theirs)}


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None,
                        help="comma-separated model names (default: every installed ranking "
                             "model with its own forget)")
    parser.add_argument("--quick", action="store_true",
                        help="the first 30,000 events of ml-100k instead of all 100,000")
    parser.add_argument("--seed", type=int, default=0, help="seed of the users drawn")
    parser.add_argument("--no-gap", action="store_true", help="time forget only")
    args = parser.parse_args(argv)
    frame = _frame(args.quick)
    if frame is None:
        return 0
    names, skipped = _models(args.models)
    print(f"MovieLens 100K: {len(frame):,} events, {frame['user'].nunique():,} users, "
          f"{frame['item'].nunique():,} items; one thread; models: {', '.join(names)}")
    if skipped:
        print("not run: " + "; ".join(skipped))
    print()
    print(f"{'model':<22}{'exact':>6}{'fit s':>8}{'1 user ms':>11}{'100 users ms':>14}"
          f"{'ms/user':>9}{'events':>8}  target")
    costs = {}
    for name in names:
        found = costs[name] = cost(name, frame, np.random.default_rng(args.seed))
        verdict = ""
        if name in TARGET_MODELS:
            ok = found["one_ms"] < TARGET_MS and found["per_user_ms"] < TARGET_MS
            verdict = f"{'PASS' if ok else 'FAIL'} (< {TARGET_MS:g} ms per user)"
        print(f"{name:<22}{'yes' if found['exact'] else 'no':>6}{found['fit_s']:>8.2f}"
              f"{found['one_ms']:>11.2f}{found['hundred_ms']:>14.1f}"
              f"{found['per_user_ms']:>9.2f}{found['events']:>8,}  {verdict}", flush=True)
    if args.no_gap:
        return 0
    print()
    print("forget 100 users after the first 90%, recall@10 of the others on the last 10% "
          "(recommended once), against a retraining on the kept events (same seed): all "
          "events, the ratio for known (warm) and new (cold) users, the share of identical "
          "top-10 lists; item vectors: relative distance to the retraining, and between two "
          "retrainings (seeds 1, 2)")
    print(f"{'model':<22}{'exact':>6}{'forget s':>10}{'recall':>8}{'retrained':>10}"
          f"{'ratio':>7}{'warm':>7}{'cold':>7}{'same warm':>10}{'same cold':>10}"
          f"{'seed 2':>8}{'distance':>9}{'noise':>7}")
    for name in names:
        found = gap(name, frame, np.random.default_rng(args.seed + 1))
        print(f"{name:<22}{'yes' if found['exact'] else 'no':>6}{found['forget_s']:>10.3f}"
              f"{found['recall_forgot']:>8.4f}{found['recall_retrained']:>10.4f}"
              f"{found['ratio']:>7.3f}{found['warm_ratio']:>7.3f}{found['cold_ratio']:>7.3f}"
              f"{found['same_warm']:>10.1%}{found['same_cold']:>10.1%}"
              f"{found['recall_other_seed']:>8.4f}{found['distance']:>9.3f}"
              f"{found['noise']:>7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
