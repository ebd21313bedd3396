"""Fresh context's cost: scoring with the user's in-step events against scoring without them.

Run: ``RECINC_DATA_HOME=/path/to/data python benchmarks/bench_context.py`` (a few minutes on a
shared machine; a synthetic stream of the same size stands in where ml-100k is absent).
Replays the stream at 1,000-event steps through each model (default: item-knn and
implicit-als, where installed), each with ``context="learned"`` and ``context="fresh"``, and
prints per model and context:

- ``model cpu_s``: the CPU time spent inside the model's own scoring calls (``score_block``,
  ``user_vectors``: for implicit-als the fold-in; not the product with the item vectors, which
  the harness does), measured with ``time.process_time`` around them, so other jobs on the
  machine do not inflate it as they do wall-clock times;
- ``score_s``: the harness's timing of the model's scoring (wall clock; with the factor
  product for a model with item vectors);
- ``rank_s``: the harness's whole ranking (scoring, masking, top-K; wall clock);
- the rows scored (learned: one per user and step; fresh: one per user and earlier in-step
  events, so many more) and the model's CPU time per row;
- the whole replay's CPU time (``replay cpu_s``);
- the ratios fresh / learned, per list ranked and for the whole replay, and recall@10 for both.

The target (issue 12: fresh-context scoring at most 3x the cost of learned-context scoring for
item-knn and implicit-als) is read **per list ranked**. The two protocols rank different
numbers of lists: with learned context a user's events in a step share one list (nothing
about the user changes until the model learns), with fresh context each event has its own
(its context differs), 41x the lists on ml-100k at 1,000-event steps. A service pays per
recommendation it serves, so the cost of a list is what fresh context changes; the totals are
printed too, and no implementation brings them within 3x while it ranks 41x the lists: for
implicit-als the product of fresh context's 99,000 user rows with the item factors alone (no
fold-in, no top-K) takes about 0.18 s of CPU, 3x learned context's whole ranking (0.06 s).

``--serve`` measures the public call instead: ``recommend(users, k=10)`` against
``recommend(users, k=10, context=recent)`` (each user's last ``--context-events`` events of the
stream, not learned) for ``--users`` users, on a model fitted on ml-100k and on the 1M-event
synthetic stream (154,786 items), and prints the time per user of both, their ratio, and how
each grows with the catalogue.

``--als-before`` adds implicit-als as its fresh scoring was before the batched fold-in: one
``recalculate_user`` row per scored row, each rebuilt from the user's whole history plus its
context (the same factors, to float32 precision), for a before/after on the same machine at
the same time. Each figure is the best of ``--repeat`` replays (by model CPU time); the load
average is printed before and after, as timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import pandas as pd
from _common import movielens_or_synthetic

from recinc_plugins import make
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.registry import get_spec

ALS_BEFORE = "implicit-als-per-row"
#: issue 12's target: fresh-context scoring at most this many times learned-context scoring,
#: per list ranked (see the module's docstring)
TARGET = 3.0


def timed(cls: type) -> type:
    """``cls`` with its scoring calls' CPU time summed in ``spent`` (a class attribute: the
    harness scores a deep copy of the model it is given)."""

    class Timed(cls):
        spent = 0.0

        def score_block(self, users: Any, context: Any = None) -> np.ndarray:
            start = time.process_time()
            try:
                return super().score_block(users, context)
            finally:
                Timed.spent += time.process_time() - start

        def user_vectors(self, users: Any, context: Any = None) -> np.ndarray:
            start = time.process_time()
            try:
                return super().user_vectors(users, context)
            finally:
                Timed.spent += time.process_time() - start

    Timed.__name__ = Timed.__qualname__ = cls.__name__
    return Timed


def per_row_als() -> type:
    """implicit-als as its fresh scoring was before the batched fold-in: a row per scored
    row, the user's whole history plus its context, solved by implicit's
    ``recalculate_user``."""
    import scipy.sparse as sp

    from recinc_plugins.adapters.implicit import ImplicitALS, _blas_single_thread

    class PerRowALS(ImplicitALS):
        def _fold_in(self, users: np.ndarray, context: Any) -> np.ndarray:
            n = users.size
            known = users >= 0
            history = self.history_.rows(np.where(known, users, 0))
            history = (sp.diags(known.astype(np.float32)) @ history).tocsr()
            recent = sp.csr_matrix((context.values.astype(np.float32), context.items,
                                    context.ptr), shape=(n, self.n_items))
            recent.sum_duplicates()
            rows = self._confidence(history) + float(self.context_weight) * \
                self._confidence(recent)
            with _blas_single_thread():
                return self.model_.recalculate_user(np.arange(n), rows.tocsr())

    return PerRowALS


def build(name: str) -> Any:
    if name == ALS_BEFORE:
        model = make("implicit-als")
        return timed(per_row_als())(**model.get_params())
    model = make(name)
    return timed(type(model))(**model.get_params())


def measure(name: str, stream: Stream, context: str, repeat: int) -> dict:
    best: dict = {}
    for _ in range(repeat):
        model = build(name)
        type(model).spent = 0.0
        result = compare({name: model}, stream, k=10, context=context)
        if result.failures:
            raise RuntimeError(result.failures[name])
        record = result.records[name]
        row = {"model_cpu_s": float(type(model).spent),
               "score_s": float(record.score_s.sum()),
               "rank_s": float(record.extra["rank_s"]),
               "cpu_s": float(record.extra["cpu_s"]),
               "rows": int(record.scored_users.sum()),
               "recall@10": float(result.summary.loc[0, "recall@10"])}
        if not best or row["model_cpu_s"] < best["model_cpu_s"]:
            best = row
    return best


def serve(names: list[str], n_users: int, n_context: int) -> None:
    """``recommend`` with and without ``context=`` per user, on ml-100k and synthetic-1m."""
    from recinc_plugins import load_dataset

    _, small = movielens_or_synthetic()
    rows = []
    for data, frame in (("ml-100k", small), ("synthetic-1m", load_dataset("synthetic-1m"))):
        frame = Stream(frame).frame
        # the users with the most events; their last n_context events are the context
        users = frame["user"].value_counts().index[:n_users].to_numpy()
        recent = frame[frame["user"].isin(users)].groupby("user").tail(n_context)
        for name in names:
            if not get_spec(name).installed:
                continue
            model = make(name)
            start = time.process_time()
            model.fit(frame)
            fit_s = time.process_time() - start
            model.recommend(users[:10], k=10)  # warm caches
            times = {}
            for label, kwargs in (("plain", {}), ("context", {"context": recent})):
                best = float("inf")
                for _ in range(3):
                    start = time.process_time()
                    model.recommend(users, k=10, **kwargs)
                    best = min(best, time.process_time() - start)
                times[label] = best
            rows.append({"data": data, "items": model.n_items, "model": name,
                         "fit cpu_s": fit_s,
                         "us/user plain": 1e6 * times["plain"] / users.size,
                         "us/user context": 1e6 * times["context"] / users.size,
                         "context / plain": times["context"] / times["plain"]})
            print(f"{data} {name}: done", flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for name in table["model"].unique():
        mine = table[table["model"] == name].set_index("data")
        if len(mine) == 2:
            grow = mine["items"].iloc[1] / mine["items"].iloc[0]
            plain, ctx = mine["us/user plain"], mine["us/user context"]
            print(f"{name}: catalogue x{grow:.0f}: per user plain x"
                  f"{plain.iloc[1] / plain.iloc[0]:.1f}, with context x"
                  f"{ctx.iloc[1] / ctx.iloc[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="item-knn,implicit-als")
    parser.add_argument("--als-before", action="store_true",
                        help="also implicit-als's per-row recalculate_user fold-in (before)")
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--serve", action="store_true",
                        help="time recommend() with and without context= instead")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--context-events", type=int, default=5)
    args = parser.parse_args()
    if args.serve:
        serve([n.strip() for n in args.models.split(",") if n.strip()], args.users,
              args.context_events)
        return
    data, frame = movielens_or_synthetic()
    stream = Stream(frame, step=args.step)
    print(f"{data}: {stream!r}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores (best of {args.repeat})\n")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.als_before:
        names.append(ALS_BEFORE)
    rows = []
    for name in names:
        spec = get_spec("implicit-als" if name == ALS_BEFORE else name)
        if not spec.installed:
            print(f"left out: {name} (needs the {spec.extra!r} extra)")
            continue
        uses = bool(spec.model_class().capabilities.context)
        learned = measure(name, stream, "learned", args.repeat)
        fresh = measure(name, stream, "fresh", args.repeat)
        for context, row in (("learned", learned), ("fresh", fresh)):
            rows.append({"model": name, "context": context, "recall@10": row["recall@10"],
                         "rows scored": row["rows"], "model cpu_s": row["model_cpu_s"],
                         "us per row": 1e6 * row["model_cpu_s"] / max(row["rows"], 1),
                         "score_s": row["score_s"], "rank_s": row["rank_s"],
                         "replay cpu_s": row["cpu_s"]})

        def ratio(key: str, fresh: dict = fresh, learned: dict = learned) -> str:
            return f"{fresh[key] / max(learned[key], 1e-9):.1f}x"

        def per_list(key: str, fresh: dict = fresh, learned: dict = learned) -> float:
            return (fresh[key] / max(fresh["rows"], 1)) / \
                max(learned[key] / max(learned["rows"], 1), 1e-12)

        verdict = "PASS" if max(per_list("score_s"), per_list("rank_s")) <= TARGET else "FAIL"
        print(f"{name}{'' if uses else ' (does not use context)'}: fresh / learned\n"
              f"  per list ranked (the target, <= {TARGET:g}x): score_s "
              f"{per_list('score_s'):.2f}x, rank_s {per_list('rank_s'):.2f}x: {verdict}\n"
              f"  whole replay ({ratio('rows')} the lists): model cpu_s "
              f"{ratio('model_cpu_s')}, score_s {ratio('score_s')}, rank_s {ratio('rank_s')}, "
              f"replay cpu_s {ratio('cpu_s')}", flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
