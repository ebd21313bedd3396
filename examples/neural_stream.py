"""Replay MovieLens 100K through the neural recommenders and the other models, with plots.

Run::

    RECINC_DATA_HOME=/path/to/data python examples/neural_stream.py --step 1
    RECINC_DATA_HOME=/path/to/data python examples/neural_stream.py --step 1000 --all
    RECINC_DATA_HOME=/path/to/data python examples/neural_stream.py --step 1000 --context fresh
    RECINC_DATA_HOME=/path/to/data python examples/neural_stream.py --step 1 --target rating

Every event is scored against the models as they were before its step, then learned
(timestamp order, top-10 among the items seen so far, the user's items excluded). With
``--target rating`` every event's rating is predicted (clipped to 1..5) before it is learned,
and the rating models are compared on MAE. ``--all`` adds every installed adapter at its
defaults. Ranking compares ``neural``, ``neural-seq`` (the sequential model) and popularity.
``--context fresh`` scores every event with its user's earlier events of the same step as
context (learned only at the end of the step); it adds ``neural-batch256``, ``neural`` with
``batch_size=256`` (its default until 2026-11, now 4), and replays the neural models with
learned context too, to print what fresh context costs in scoring time (``score_s``, the
models' own scoring) and in the whole replay (``cpu_s``, the process's CPU seconds).
Prints the summary and writes the harness's report and plots (recall@10 over time among them)
to ``--out`` (a fresh temporary folder by default: the outputs derive from ml-100k,
whose licence forbids redistributing it, so keep them out of version control).
"""

from __future__ import annotations

import argparse
import tempfile

import pandas as pd

from recinc_plugins import Popularity, list_models, load_dataset, make
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.neural import NeuralRecommender, SequentialRecommender

RANKING_ADAPTERS = ("implicit-als", "implicit-bpr", "lightfm", "river-biasedmf",
                    "surprise-svd")
RATING_ADAPTERS = ("river-biasedmf",)


def models_for(target: str, include_all: bool, device: str = "cpu",
               context: str = "learned") -> dict:
    if target == "rating":
        # the rating settings tried best on ml-100k (docs/neural.md): squared loss, and the
        # same model with its ratings moved to the online median per prediction bin
        rating = dict(loss="mse", n_factors=32, history_decay=1.0, device=device, num_threads=1,
                      seed=0)
        models = {"neural-mse-median": NeuralRecommender(**rating, calibration="median"),
                  "neural-mse": NeuralRecommender(**rating)}
        names = RATING_ADAPTERS
    else:
        common = dict(device=device, num_threads=1, seed=0)
        models = {"neural": NeuralRecommender(**common),
                  "neural-seq": SequentialRecommender(**common),
                  "popularity": Popularity()}
        if context == "fresh":
            # neural's default chunk size until 2026-11: a step's events train as blocks of
            # 256 whose users' recent items are those from before the block; the default, 4,
            # trains them almost one after another (docs/neural.md)
            models["neural-batch256"] = NeuralRecommender(**common, batch_size=256)
        names = RANKING_ADAPTERS
    if include_all:
        installed = set(list_models().query("installed")["name"])
        for name in names:
            if name in installed:
                models[name] = make(name)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=1, help="events per step")
    parser.add_argument("--target", choices=("ranking", "rating"), default="ranking")
    parser.add_argument("--all", action="store_true", help="add the installed adapters")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--context", choices=("learned", "fresh"), default="learned",
                        help="fresh: a step's earlier events of the user are scoring context")
    parser.add_argument("--device", default="cpu",
                        help="where the neural model runs: cpu, cuda or cuda:N")
    parser.add_argument("--out", default=None, help="report folder (default: a temp folder)")
    args = parser.parse_args()

    frame = load_dataset("ml-100k", download=False)
    models = models_for(args.target, args.all, args.device, args.context)
    stream = Stream(frame, step=args.step)
    result = compare(models, stream, k=10, target=args.target,
                     clip=(1, 5) if args.target == "rating" else None, n_jobs=args.jobs,
                     progress=True, cold_start=None,  # each model's own policy, as published
                     context=args.context)
    columns = (["model", "mae", "rmse", "update_us_per_event", "events_per_s"]
               if args.target == "rating" else
               ["model", "recall@10", "ndcg@10", "warm_recall@10", "cold_user_recall@10",
                "update_us_per_event", "events_per_s"])
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(result.summary[[c for c in columns if c in result.summary]].round(4)
              .to_string(index=False))
    for name, error in result.failures.items():
        print(f"{name} failed:\n{error}")
    if args.context == "fresh" and args.target == "ranking":
        print_context_cost(result, stream, args)
    out = args.out or tempfile.mkdtemp(prefix="recinc-neural-")
    result.write(out)
    print(f"report and plots written to {out}")


def print_context_cost(fresh, stream: Stream, args: argparse.Namespace) -> None:
    """Replay the neural models again with learned context: the cost of fresh context. With
    it, every event that has earlier events of its user in the step is its own scored row."""
    names = [name for name in fresh.summary["model"] if name.startswith("neural")]
    models = models_for("ranking", False, args.device, "fresh")
    learned = compare({name: models[name] for name in names}, stream, k=10, n_jobs=args.jobs,
                      cold_start=None, context="learned")
    rows = []
    for name in names:
        a = learned.summary.set_index("model").loc[name]
        b = fresh.summary.set_index("model").loc[name]
        rows_a = int(learned.records[name].scored_users.sum())
        rows_b = int(fresh.records[name].scored_users.sum())
        rows.append({"model": name, "recall learned": a["recall@10"],
                     "recall fresh": b["recall@10"], "rows learned": rows_a,
                     "rows fresh": rows_b, "score_s learned": a["score_s"],
                     "score_s fresh": b["score_s"], "score ratio": b["score_s"] / a["score_s"],
                     "us/row learned": 1e6 * a["score_s"] / rows_a,
                     "us/row fresh": 1e6 * b["score_s"] / rows_b,
                     "cpu_s learned": a["cpu_s"], "cpu_s fresh": b["cpu_s"],
                     "cpu ratio": b["cpu_s"] / a["cpu_s"]})
    print("\nfresh vs learned context (score_s: the model's scoring; cpu_s: the whole replay):")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
