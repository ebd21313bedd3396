"""A Surprise script whose algorithm is swapped in one line for LightFM-, River- or torch-backed
models, through ``recinc_plugins.compat.surprise``.

Run: ``python examples/surprise_swap.py [model-name]`` (default ``surprise-svd``; try
``lightfm``, ``river-biasedmf``, ``implicit-als`` or ``native`` for Surprise's own SVD). It uses
MovieLens 100K when ``RECINC_DATA_HOME`` points to a folder holding ``ml-100k/`` (about 10 s
per model), else the built-in synthetic stream (a second or two).

Everything below the data loading is a plain Surprise script: ``cross_validate`` and
``accuracy`` are Surprise's own. Implicit-feedback models (LightFM, implicit, popularity) score
items for ranking, not ratings: their RMSE shows the script runs, not that they predict ratings.
"""

from __future__ import annotations

import os
import sys

from surprise import SVD, Dataset, Reader, accuracy
from surprise.model_selection import cross_validate, train_test_split

import recinc_plugins as rp
from recinc_plugins.compat.surprise import SurpriseAlgo


def load() -> tuple[Dataset, str]:
    home = os.environ.get("RECINC_DATA_HOME")
    if home and os.path.exists(os.path.join(home, "ml-100k", "u.data")):
        frame, name = rp.load_dataset("ml-100k", home=home, download=False), "ml-100k"
    else:
        frame, name = rp.synthetic_stream(n_events=5_000, n_users=300, n_items=400), "synthetic"
    data = Dataset.load_from_df(frame[["user", "item", "rating"]], Reader(rating_scale=(1, 5)))
    return data, name


def main(model: str = "surprise-svd") -> None:
    data, name = load()

    # the one line that changes: Surprise's own algorithm, or any recinc model
    algo = SVD() if model == "native" else SurpriseAlgo(model)

    results = cross_validate(algo, data, measures=["RMSE", "MAE"], cv=3)
    print(f"{name}, {model}: RMSE {results['test_rmse'].mean():.4f}, "
          f"MAE {results['test_mae'].mean():.4f} (3-fold cross_validate)")

    trainset, testset = train_test_split(data, test_size=0.2, random_state=0)
    predictions = algo.fit(trainset).test(testset)
    accuracy.rmse(predictions)
    print(predictions[0])


if __name__ == "__main__":
    main(*sys.argv[1:2])
