"""implicit's ALS, BPR and LMF and LightFM against popularity on MovieLens 100K, prequentially.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python examples/implicit_lightfm_ml100k.py``
(about half a minute). Replays ml-100k in timestamp order in steps of 1,000 events through
every model with default parameters (plus a seed and one thread): each step is scored before
it is learned, the first model starting empty. Prints the harness's summary as Markdown, then
each model's paired test against both baselines: ``popularity`` (all-time counts for everyone)
and ``popularity+newcomer`` (the same, with the "newcomer" cold start the adapters use by
default), which separates what a model adds from what its cold-start policy adds.
``--seeds 0,1,2,3`` instead replays ALS, BPR and LightFM once per seed (two processes) and
prints each model's range of recall@10 against both baselines (about a minute).
"""

from __future__ import annotations

import argparse
import os

from recinc_plugins import Popularity, load_dataset
from recinc_plugins.adapters.implicit import ImplicitALS, ImplicitBPR, ImplicitLMF
from recinc_plugins.adapters.lightfm import LightFMRecommender
from recinc_plugins.evaluation import Stream, compare

COLUMNS = ["model", "recall@10", "ndcg@10", "warm_recall@10", "cold_user_recall@10",
           "coverage@10", "update_us_per_event", "rec_p50_ms"]


def seeds(frame, seed_list: list[int]) -> None:
    models = {"popularity": Popularity(), "popularity+newcomer": Popularity(cold_start="newcomer")}
    makers = {"implicit-als": ImplicitALS, "implicit-bpr": ImplicitBPR,
              "lightfm": LightFMRecommender}
    for name, cls in makers.items():
        for seed in seed_list:
            models[f"{name} seed {seed}"] = cls(num_threads=1, seed=seed)
    # each model with its own cold-start policy: the comparison of policies is the point here
    summary = compare(models, Stream(frame, step=1000), k=10, n_jobs=2, cold_start=None).summary
    recall = summary.set_index("model")["recall@10"]
    warm = summary.set_index("model")["warm_recall@10"]
    pop, same = recall["popularity"], recall["popularity+newcomer"]
    print(f"popularity {pop:.4f}, popularity+newcomer {same:.4f}; seeds {seed_list}")
    for name in makers:
        values = recall[[f"{name} seed {s}" for s in seed_list]]
        warms = warm[[f"{name} seed {s}" for s in seed_list]]
        print(f"{name:>13}: recall@10 {values.min():.4f}-{values.max():.4f} "
              f"({values.min() / pop - 1:+.1%} to {values.max() / pop - 1:+.1%} over popularity, "
              f"{values.min() / same - 1:+.1%} to {values.max() / same - 1:+.1%} over "
              f"popularity+newcomer); warm {warms.min():.4f}-{warms.max():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2,3")
    args = parser.parse_args()
    seed_list = None
    if args.seeds:
        try:
            seed_list = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    frame = load_dataset("ml-100k", home=os.environ.get("RECINC_DATA_HOME"), download=False)
    if seed_list:
        seeds(frame, seed_list)
        return
    models = {
        "popularity": Popularity(),
        "popularity+newcomer": Popularity(cold_start="newcomer"),
        "implicit-als": ImplicitALS(num_threads=1, seed=0),
        "implicit-bpr": ImplicitBPR(num_threads=1, seed=0),
        "implicit-lmf": ImplicitLMF(num_threads=1, seed=0),
        "lightfm": LightFMRecommender(num_threads=1, seed=0),
    }
    result = compare(models, Stream(frame, step=1000), k=10, cold_start=None)
    summary = result.summary[COLUMNS]
    print(summary.to_markdown(index=False, floatfmt=".4f"))
    paired = result.paired()
    paired = paired[paired["model_a"].str.startswith("popularity")
                    & ~paired["model_b"].str.startswith("popularity")]
    print()
    print(paired[["model_a", "model_b", "recall_a", "recall_b", "ci_low", "ci_high",
                  "mcnemar_p"]].to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
