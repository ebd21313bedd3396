"""The model is stale, the context is fresh: MovieLens 100K with learned and fresh context.

Replays ml-100k (all 100,000 events in timestamp order, top-10, the user's items excluded)
through the models at 1,000-event steps, with learned context (each event scored with what
the model learned before its step) and with fresh context (also with the user's earlier
events in the step, given as context and excluded from the candidates), then at one event per
step (where the two are the same), and prints one table of recall@10.

    RECINC_DATA_HOME=/path/to/data python examples/fresh_context_ml100k.py
    python examples/fresh_context_ml100k.py --models popularity,item-knn --jobs 2

Models whose library is missing are left out with a note. docs/knn.md quotes the table.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from tabulate import tabulate

from recinc_plugins import load_dataset, make
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.registry import get_spec

DEFAULT_MODELS = "popularity,item-knn,implicit-als,lightfm,neural"


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
    args = parser.parse_args()

    names = []
    for name in (n.strip() for n in args.models.split(",") if n.strip()):
        spec = get_spec(name)
        if spec.installed:
            names.append(name)
        else:
            print(f"left out: {name} (needs the {spec.extra!r} extra)", file=sys.stderr)
    frame = load_dataset("ml-100k")
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


if __name__ == "__main__":
    main()
