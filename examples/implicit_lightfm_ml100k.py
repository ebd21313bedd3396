"""implicit's ALS, BPR and LMF and LightFM against popularity on MovieLens 100K, prequentially.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python examples/implicit_lightfm_ml100k.py``
(about half a minute). Replays ml-100k in timestamp order in steps of 1,000 events through
every model with default parameters (plus a seed and one thread): each step is scored before
it is learned, the first model starting empty. Prints the harness's summary as Markdown, then
each model's paired test against both baselines: ``popularity`` (all-time counts for everyone)
and ``popularity+newcomer`` (the same, with the "newcomer" cold start the adapters use by
default), which separates what a model adds from what its cold-start policy adds.
"""

from __future__ import annotations

import os

from recinc_plugins.adapters.implicit import ImplicitALS, ImplicitBPR, ImplicitLMF
from recinc_plugins.adapters.lightfm import LightFMRecommender
from recinc_plugins.baselines import Popularity
from recinc_plugins.data import load_dataset
from recinc_plugins.evaluation import Stream, compare

COLUMNS = ["model", "recall@10", "ndcg@10", "warm_recall@10", "cold_user_recall@10",
           "coverage@10", "update_us_per_event", "rec_p50_ms"]


def main() -> None:
    frame = load_dataset("ml-100k", home=os.environ.get("RECINC_DATA_HOME"), download=False)
    models = {
        "popularity": Popularity(),
        "popularity+newcomer": Popularity(cold_start="newcomer"),
        "implicit-als": ImplicitALS(num_threads=1, random_state=0),
        "implicit-bpr": ImplicitBPR(num_threads=1, random_state=0),
        "implicit-lmf": ImplicitLMF(num_threads=1, random_state=0),
        "lightfm": LightFMRecommender(num_threads=1, random_state=0),
    }
    result = compare(models, Stream(frame, step=1000), k=10)
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
