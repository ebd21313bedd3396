"""Replay MovieLens 100K through the neural recommender and the other models, with plots.

Run::

    RECINC_DATA_HOME=/path/to/data python examples/neural_stream.py --step 1
    RECINC_DATA_HOME=/path/to/data python examples/neural_stream.py --step 1000 --all
    RECINC_DATA_HOME=/path/to/data python examples/neural_stream.py --step 1 --target rating

Every event is scored against the models as they were before its step, then learned
(timestamp order, top-10 among the items seen so far, the user's items excluded). With
``--target rating`` every event's rating is predicted (clipped to 1..5) before it is learned,
and the rating models are compared on MAE. ``--all`` adds every installed adapter at its
defaults. Prints the summary and writes the harness's report and plots (recall@10 over time
among them) to ``--out`` (a fresh temporary folder by default: the outputs derive from ml-100k,
whose licence forbids redistributing it, so keep them out of version control).
"""

from __future__ import annotations

import argparse
import tempfile

import pandas as pd

from recinc_plugins import Popularity, list_models, load_dataset, make
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.neural import NeuralRecommender

RANKING_ADAPTERS = ("implicit-als", "implicit-bpr", "lightfm", "river-biasedmf",
                    "surprise-svd")
RATING_ADAPTERS = ("river-biasedmf",)


def models_for(target: str, include_all: bool, device: str = "cpu") -> dict:
    if target == "rating":
        # the rating settings tried best on ml-100k (docs/neural.md): squared loss, and the
        # same model with its ratings moved to the online median per prediction bin
        rating = dict(loss="mse", n_factors=32, history_decay=1.0, device=device, num_threads=1,
                      seed=0)
        models = {"neural-mse-median": NeuralRecommender(**rating, calibration="median"),
                  "neural-mse": NeuralRecommender(**rating)}
        names = RATING_ADAPTERS
    else:
        models = {"neural": NeuralRecommender(device=device, num_threads=1, seed=0),
                  "popularity": Popularity()}
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
    parser.add_argument("--device", default="cpu",
                        help="where the neural model runs: cpu, cuda or cuda:N")
    parser.add_argument("--out", default=None, help="report folder (default: a temp folder)")
    args = parser.parse_args()

    frame = load_dataset("ml-100k", download=False)
    models = models_for(args.target, args.all, args.device)
    result = compare(models, Stream(frame, step=args.step), k=10, target=args.target,
                     clip=(1, 5) if args.target == "rating" else None, n_jobs=args.jobs,
                     progress=True, cold_start=None)  # each model's own policy, as published
    columns = (["model", "mae", "rmse", "update_us_per_event", "events_per_s"]
               if args.target == "rating" else
               ["model", "recall@10", "ndcg@10", "warm_recall@10", "cold_user_recall@10",
                "update_us_per_event", "events_per_s"])
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(result.summary[[c for c in columns if c in result.summary]].round(4)
              .to_string(index=False))
    for name, error in result.failures.items():
        print(f"{name} failed:\n{error}")
    out = args.out or tempfile.mkdtemp(prefix="recinc-neural-")
    result.write(out)
    print(f"report and plots written to {out}")


if __name__ == "__main__":
    main()
