"""Core speed: IdIndex at 10 million ids, and batched recommend for 1,000 users x 10,000 items.

Run: ``python benchmarks/bench_core.py`` (about a minute). Prints wall-clock figures and the
ratio against the obvious pure-Python alternative (a dict built and queried id by id).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from recinc_plugins.baselines import Popularity
from recinc_plugins.ids import IdIndex


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_ids(n: int) -> None:
    rng = np.random.default_rng(0)
    int_ids = rng.permutation(np.arange(n, dtype=np.int64) * 7 + 3)
    str_ids = np.array([f"user-{i}" for i in range(n // 10)], dtype=object)
    queries = rng.choice(int_ids, size=n)

    index = IdIndex()
    t_add = timed(lambda: index.add(int_ids))
    t_lookup = timed(lambda: index.lookup(queries))
    t_dict_add = timed(lambda: {x: i for i, x in enumerate(int_ids.tolist())})
    table = {x: i for i, x in enumerate(int_ids.tolist())}
    query_list = queries.tolist()
    t_dict_lookup = timed(lambda: [table.get(x, -1) for x in query_list])
    print(f"IdIndex.add     {n:>11,} int ids : {t_add:7.2f} s  ({n / t_add / 1e6:5.1f} M ids/s; "
          f"python dict {t_dict_add:5.2f} s, ratio {t_dict_add / t_add:4.2f}x)")
    print(f"IdIndex.lookup  {n:>11,} int ids : {t_lookup:7.2f} s  ({n / t_lookup / 1e6:5.1f} M "
          f"ids/s; python dict {t_dict_lookup:5.2f} s, ratio {t_dict_lookup / t_lookup:4.2f}x)")

    sindex = IdIndex()
    t_sadd = timed(lambda: sindex.add(str_ids))
    t_slookup = timed(lambda: sindex.lookup(str_ids))
    m = str_ids.size
    print(f"IdIndex.add     {m:>11,} str ids : {t_sadd:7.2f} s  ({m / t_sadd / 1e6:5.1f} M ids/s)")
    print(f"IdIndex.lookup  {m:>11,} str ids : {t_slookup:7.2f} s  ({m / t_slookup / 1e6:5.1f} M "
          "ids/s)")

    small = IdIndex()
    chunks = np.array_split(np.arange(200_000), 20_000)
    t_small = timed(lambda: [small.add(c) for c in chunks])
    print(f"IdIndex.add     20,000 calls of 10 new ids: {t_small:5.2f} s "
          f"({t_small / 20_000 * 1e6:5.1f} us per call)")


def bench_recommend(n_users: int, n_items: int, k: int) -> None:
    rng = np.random.default_rng(1)
    n_events = 50 * n_users
    # every item once, then popularity-skewed events
    events = pd.DataFrame({
        "user": np.concatenate([rng.integers(0, n_users, n_items),
                                rng.integers(0, n_users, n_events)]),
        "item": np.concatenate([np.arange(n_items), (rng.zipf(1.3, n_events) - 1) % n_items]),
    })
    model = Popularity().fit(events)
    users = np.arange(n_users)
    t_rec = timed(lambda: model.recommend(users, k=k), repeat=3)
    t_noseen = timed(lambda: model.recommend(users, k=k, exclude_seen=False), repeat=3)
    scores = model.score_block(users)
    t_sort = timed(lambda: np.argsort(-scores, axis=1, kind="stable")[:, :k], repeat=3)
    print(f"recommend {n_users:,} users x {model.n_items:,} items, k={k}: {t_rec * 1e3:7.1f} ms "
          f"with seen-item masking ({model.seen_.tocsr().nnz:,} seen pairs), "
          f"{t_noseen * 1e3:7.1f} ms without; a full argsort alone takes {t_sort * 1e3:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=10_000_000)
    args = parser.parse_args()
    bench_ids(args.ids)
    bench_recommend(1_000, 10_000, 10)


if __name__ == "__main__":
    main()
