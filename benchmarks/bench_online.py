"""One event at a time: every ranking model replayed on MovieLens 100K at one event per step.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_online.py`` (about an
hour on one core, 20 minutes of it the previous defaults of BPR and LMF, stopped after
``--budget`` seconds each; ``--events 20000`` replays a prefix, ``--models lightfm,implicit-als``
a few models, ``--only after`` skips the previous defaults). The table it printed is in
``docs/implicit.md`` (One event at a time). Each model is replayed through the
harness as ``recinc compare --step 1`` does: ``compare(..., Stream(frame, step=1), threads=1)``,
every event ranked (top 10 of every item seen so far, the user's items excluded) before it is
learned. It prints, per model and setting (``before``: the defaults before per-event updates,
passed explicitly, and for LightFM its steps through LightFM's own ``fit_partial`` on
full-shape matrices, as before issue 16, ``bench_lightfm.FitPartialSteps``: the same numbers;
``after``: today's defaults):

- recall@10;
- events per second of CPU time (the replay's process time: the machine is shared, so wall
  time would measure the other jobs too);
- the second half of the replay's CPU time per event over the first half's (1.00: the cost
  per event does not grow with the stream; the catalogue and the users still grow). Other jobs
  on a shared machine move this by 10-20%, so it is also measured under the same conditions:
  the model as it was a quarter and three quarters into the replay, each copied and given the
  next 1,000 events the way the harness gives them (score the user's row of every item, take
  the top 10, learn the event), alternately, best of three.

Rating-only models are shown for reference and are not held to the ranking targets; Surprise's
(a refit or fold-in per step) are left out unless named with ``--models``: at one event per step
they take minutes to hours.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
from _common import movielens
from bench_lightfm import FitPartialSteps

from recinc_plugins import list_models, make
from recinc_plugins.base import Batch
from recinc_plugins.evaluation import Stream, compare

#: the defaults before per-event updates, for the models whose defaults changed
BEFORE: dict[str, dict[str, Any]] = {
    "implicit-als": {"item_refresh": 0, "regularization": 30.0},
    "implicit-bpr": {"update_on": "all", "learning_rate": 0.01},
    "implicit-lmf": {"update_on": "all", "regularization": 10.0, "neg_prop": 30},
}
try:  # River's own FunkMF step, which diverges on ml-100k (the adapter's default is 0.02)
    from river import optim as _river_optim
except ImportError:  # without River its models are not installed, and not replayed
    pass
else:
    BEFORE["river-funkmf"] = {"optimizer": _river_optim.SGD(0.1)}
#: LightFM's learning changed, not its parameters: before is its previous code path
BEFORE["lightfm"] = {}
BEFORE_CLASS = {"lightfm": FitPartialSteps}
#: models not replayed by default, and why
LEFT_OUT = {"surprise-": "Surprise's models refit or fold in per step: too slow per event"}
#: targets (events/s of CPU time, recall@10) for ranking models, beyond popularity's recall
TARGET_RATE = 1000
STRONG = ("implicit-als", "implicit-bpr", "lightfm")
STRONG_RECALL = 0.10


def _stamped(model: Any, stamps: list[float], snapshots: dict[int, Any] | None = None) -> Any:
    """``model`` with a CPU-time stamp taken after every step it learns (the harness learns
    each step with ``learn_encoded``, after ranking its events), and a copy of itself kept
    after the steps named in ``snapshots``."""
    cls = type(model)

    def learn_encoded(self: Any, batch: Any) -> Any:
        out = cls.learn_encoded(self, batch)
        stamps.append(time.process_time())
        if snapshots is not None and len(stamps) in snapshots:
            snapshots[len(stamps)] = copy.deepcopy(self)
        return out

    stamped = type(cls.__name__, (cls,), {"learn_encoded": learn_encoded,
                                          "__module__": cls.__module__})
    model.__class__ = stamped
    return model


def steps_cost(model: Any, frame: Any, start: int, count: int) -> float:
    """CPU seconds for ``count`` one-event steps from event ``start`` on a copy of ``model``,
    each as the harness does it: add the ids, score the user's row, take the top 10 of the
    items it had not seen, learn the event."""
    model = copy.deepcopy(model)
    users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    ratings = frame["rating"].to_numpy(np.float64) if "rating" in frame.columns else None
    t0 = time.process_time()
    for j in range(start, start + count):
        known = model.user_index_.lookup(users[j:j + 1])
        u, i = model.add_ids(users[j:j + 1], items[j:j + 1])
        scores = (model.score_block(known) if known[0] >= 0 else model.cold_scores()[None])
        np.argpartition(-np.asarray(scores[0], dtype=np.float64), 10)
        model.learn_encoded(Batch(u, i, ratings=None if ratings is None else ratings[j:j + 1]))
    return time.process_time() - t0


def run(name: str, params: dict[str, Any], stream: Stream, budget: float,
        cls: type | None = None) -> dict[str, Any]:
    stamps: list[float] = []
    n = stream.n_scored
    snapshots: dict[int, Any] = {n // 4: None, 3 * n // 4: None}
    model = make(name, **params)
    if cls is not None:
        model.__class__ = cls
    model = _stamped(model, stamps, snapshots)
    t0 = time.process_time()
    result = compare({name: model}, stream, threads=1, time_budget_s=budget)
    cpu = time.process_time() - t0
    row = result.summary.iloc[0]
    if row["status"] == "diverged":  # River's FunkMF at River's step
        return {"status": f"diverged: NaN at event {int(row['diverged_step']):,}"}
    if row["status"] != "ok" or len(stamps) < n:
        return {"status": f"did not finish in {budget:.0f} s ({len(stamps):,} events)"}
    half = n // 2
    first, second = stamps[half - 1] - stamps[0], stamps[-1] - stamps[half - 1]
    count = min(1000, n // 8)
    early, late = [], []
    for _ in range(3):
        early.append(steps_cost(snapshots[n // 4], stream.frame, n // 4, count))
        late.append(steps_cost(snapshots[3 * n // 4], stream.frame, 3 * n // 4, count))
    return {"status": "ok", "recall": float(row["recall@10"]), "rate": n / cpu,
            "ratio": (second / (n - half)) / (first / (half - 1)),
            "steady": min(late) / min(early)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="replay this prefix")
    parser.add_argument("--models", default=None, help="comma-separated registry names")
    parser.add_argument("--only", choices=("before", "after"), default=None)
    parser.add_argument("--budget", type=float, default=900.0,
                        help="CPU seconds a replay may take before it is stopped")
    args = parser.parse_args()
    frame = movielens()
    if args.events:
        frame = frame.iloc[: args.events]
    stream = Stream(frame, step=1)
    table = list_models(capabilities=True)
    table = table[table["installed"]]
    if args.models:
        names = args.models.split(",")
    else:
        names = [n for n in table["name"] if not any(n.startswith(p) for p in LEFT_OUT)]
        for prefix, why in LEFT_OUT.items():
            print(f"left out: {prefix}* ({why}); name them with --models to run them")
    feedback = dict(zip(table["name"], table["feedback"], strict=True))
    print(f"ml-100k, {stream.n_scored:,} events, one per step, top-10, seen items excluded, "
          "one thread; events/s of CPU time")
    print("| model | setting | recall@10 | events/s | per event, 2nd half / 1st half | "
          "per event, at 3/4 / at 1/4 (best of 3) |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = {}
    for name in names:
        settings = [("after", {})]
        if name in BEFORE:
            settings = [("before", BEFORE[name]), ("after", {})]
        for label, params in settings:
            if args.only and name in BEFORE and label != args.only:
                continue
            got = run(name, params, stream, args.budget,
                      BEFORE_CLASS.get(name) if label == "before" else None)
            rows[name, label] = got
            kind = "" if feedback.get(name) != "ratings" else " (ratings)"
            shown = label if name in BEFORE else "unchanged"
            if got["status"] != "ok":
                print(f"| {name}{kind} | {shown} | {got['status']} | | | |", flush=True)
                continue
            print(f"| {name}{kind} | {shown} | {got['recall']:.4f} | {got['rate']:,.0f} | "
                  f"{got['ratio']:.2f} | {got['steady']:.2f} |", flush=True)
    floor = rows.get(("popularity", "after"), {}).get("recall")
    if floor is None:
        return
    print(f"\ntargets (ranking models after: >= {TARGET_RATE:,} events/s, recall@10 >= "
          f"popularity's {floor:.4f}, {', '.join(STRONG)} >= {STRONG_RECALL}, no slower at 3/4 "
          "than at 1/4 beyond 5% noise):")
    for (name, label), got in rows.items():
        if label != "after" or feedback.get(name) == "ratings" or got["status"] != "ok":
            continue
        misses = []
        if got["rate"] < TARGET_RATE:
            misses.append("speed")
        if got["recall"] < floor and name not in ("random",):
            misses.append("recall")
        if name in STRONG and got["recall"] < STRONG_RECALL:
            misses.append(f"recall < {STRONG_RECALL}")
        if got["steady"] > 1.05:
            misses.append("slower later in the stream")
        print(f"  {name}: {'met' if not misses else 'missed: ' + ', '.join(misses)}")


if __name__ == "__main__":
    main()
