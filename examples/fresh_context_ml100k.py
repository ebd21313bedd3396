"""The model is stale, the context is fresh: MovieLens 100K with learned and fresh context.

Replays ml-100k (all 100,000 events in timestamp order, top-10, the user's items excluded)
through the models at 1,000-event steps, with learned context (each event scored with what
the model learned before its step) and with fresh context (also with the user's earlier
events in the step, given as context and excluded from the candidates), then at one event per
step (where the two are the same), and prints one table of recall@10.

Every model is built with its defaults and compared with ``compare``'s (``cold_start=
"popularity"``, ``seed=0``): an unknown user without context gets the popularity fallback in
every model; with context, the models that use it (``recinc models``' context column) score
it from the context. The factor models fold the user in (implicit-als re-solves it; BPR, LMF
and LightFM take a few steps of their own loss; Surprise's SVD, SVD++ and NMF solve or step
their rating models), item-knn and the neural models read it directly.

    RECINC_DATA_HOME=/path/to/data python examples/fresh_context_ml100k.py
    python examples/fresh_context_ml100k.py --models popularity,item-knn --jobs 2
    python examples/fresh_context_ml100k.py --models surprise-svd,surprise-nmf --no-one-event
    python examples/fresh_context_ml100k.py --models surprise-svd --rmse 50000

``--rmse N`` does something else for rating models: over the first N events at 1,000-event
steps, the RMSE (clipped to 1..5) of each event's predicted rating with its user's earlier
in-step ratings as context, against without (the learned model; an unknown user gets the
model's answer for one), on the events that have such ratings.

Models whose library is missing are left out with a note. docs/knn.md, docs/implicit.md,
docs/lightfm.md and docs/surprise.md quote the table.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from tabulate import tabulate

from recinc_plugins import load_dataset, make
from recinc_plugins.context import Context
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.registry import get_spec

DEFAULT_MODELS = "popularity,item-knn,implicit-als,implicit-bpr,implicit-lmf,lightfm,neural"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated model names (default: {DEFAULT_MODELS})")
    parser.add_argument("--jobs", type=int, default=1, help="models replayed at once")
    parser.add_argument("--no-one-event", action="store_true",
                        help="skip the (slow) replay at one event per step")
    parser.add_argument("--eval-fraction", type=float, default=1.0,
                        help="at one event per step, rank this seeded fraction of the events "
                             "(all are learned; default: 1, every event)")
    parser.add_argument("--rmse", type=int, default=0, metavar="N",
                        help="instead: rating models' RMSE with and without context over the "
                             "first N events")
    args = parser.parse_args()

    names = []
    for name in (n.strip() for n in args.models.split(",") if n.strip()):
        spec = get_spec(name)
        if spec.installed:
            names.append(name)
        else:
            print(f"left out: {name} (needs the {spec.extra!r} extra)", file=sys.stderr)
    frame = load_dataset("ml-100k")
    if args.rmse:
        ordered = Stream(frame).frame.iloc[:args.rmse]
        for name in names:
            caps = get_spec(name).model_class().capabilities
            if not (caps.explicit and not caps.implicit):
                print(f"left out: {name} (--rmse is for rating models)", file=sys.stderr)
                continue
            with_context, without, n = rating_rmse(name, ordered)
            print(f"{name}: {n} events with in-step ratings before them: RMSE {with_context:.4f} "
                  f"with them as context, {without:.4f} without")
        return
    columns: dict[str, pd.Series] = {}
    runs = [("1,000 events, learned", 1000, "learned", 1.0),
            ("1,000 events, fresh", 1000, "fresh", 1.0)]
    if not args.no_one_event:
        label = "one event" + (f" ({args.eval_fraction:g} ranked)"
                               if args.eval_fraction < 1 else "")
        runs.append((label, 1, "learned", args.eval_fraction))
    for label, step, context, fraction in runs:
        models = {name: make(name) for name in names}
        result = compare(models, Stream(frame, step=step), k=10, context=context,
                         n_jobs=args.jobs, eval_fraction=fraction)
        summary = result.summary.set_index("model")
        columns[label] = summary["recall@10"]
        columns[f"{label}: score s"] = summary["score_s"] if "score_s" in summary else None
        for name, tb in result.failures.items():
            print(f"{name} failed ({label}): {tb.strip().splitlines()[-1]}", file=sys.stderr)
        print(f"done: {label}", file=sys.stderr, flush=True)
    table = pd.DataFrame({k: v for k, v in columns.items() if v is not None})
    recall = table[[c for c in table.columns if not c.endswith("score s")]]
    print("recall@10 on ml-100k (top-10, the user's items excluded, every event counted)\n")
    print(tabulate(recall, headers="keys", tablefmt="github", floatfmt=".4f"))
    print("\nscoring time (s, the model's own, summed over the replay; a shared machine)\n")
    print(tabulate(table[[c for c in table.columns if c.endswith("score s")]],
                   headers="keys", tablefmt="github", floatfmt=".2f"))


def rating_rmse(name: str, frame: pd.DataFrame, step: int = 1000) -> tuple[float, float, int]:
    """Test-then-learn at ``step``-event steps: each event that has earlier ratings of its user
    in its step (of items the model knows) is predicted with them as context and without;
    returns both RMSEs (clipped to 1..5) and the number of such events."""
    model = make(name, seed=0).fit(frame.iloc[:step])
    errors: list[np.ndarray] = []
    for start in range(step, len(frame), step):
        chunk = frame.iloc[start:start + step]
        users = model.user_index_.lookup(chunk["user"].to_numpy(dtype=object))
        items = model.item_index_.lookup(chunk["item"].to_numpy(dtype=object))
        earlier: dict = {}
        rows, lists, values, targets, target_items = [], [], [], [], []
        for raw, user, item, rating in zip(chunk["user"], users, items, chunk["rating"],
                                           strict=True):
            before = [(i, r) for i, r in earlier.setdefault(raw, []) if i >= 0][-50:]
            if before and item >= 0:
                rows.append(user)
                lists.append([i for i, _ in before])
                values.append([r for _, r in before])
                targets.append(rating)
                target_items.append(item)
            earlier[raw].append((item, rating))
        if rows:
            users_a, items_a = np.array(rows), np.array(target_items)
            scored = model.score_block(users_a, Context.from_lists(lists, values))
            fresh = scored[np.arange(users_a.size), items_a]
            learned = model.score_encoded(users_a, items_a)
            errors.append(np.stack([np.clip(fresh, 1, 5), np.clip(learned, 1, 5)])
                          - np.array(targets))
        model.partial_fit(chunk)
    squared = np.concatenate(errors, axis=1) ** 2
    return (float(np.sqrt(squared[0].mean())), float(np.sqrt(squared[1].mean())),
            squared.shape[1])


if __name__ == "__main__":
    main()
