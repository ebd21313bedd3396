"""A River streaming loop with a LightFM-backed model, through ``recinc_plugins.compat.river``.

Run: ``python examples/river_loop.py`` (MovieLens 100K when ``RECINC_DATA_HOME`` points to a
folder holding ``ml-100k/``, its first 10,000 ratings; else the synthetic stream; about half a
minute either way).

Two River idioms, unchanged:

1. The loop of River's own reco docs: for each event, ``rank`` the catalogue for the user,
   check whether the item the user picked is in the top 10, then ``learn_one``. The models
   learn the events 500 at a time: ``learn_one`` buffers, and every 500th event flushes the
   buffer into one ``partial_fit`` (``batch_size=500``). With ``flush_before_predict=False``
   ``rank`` answers from what was learned up to the last flush (mini-batch updates); the
   default ``True`` would flush before every ``rank``, i.e. learn event by event.
2. ``evaluate.progressive_val_score`` with ``PredClipper``, the way River's MovieLens tutorial
   evaluates its rating models, here with River's BiasedMF behind the recinc interface.
"""

from __future__ import annotations

import os

from river import evaluate, metrics, optim, preprocessing

import recinc_plugins as rp
from recinc_plugins.compat.river import RecincRanker


def load():
    home = os.environ.get("RECINC_DATA_HOME")
    if home and os.path.exists(os.path.join(home, "ml-100k", "u.data")):
        frame = rp.load_dataset("ml-100k", home=home, download=False)
        frame = frame.sort_values("timestamp", kind="stable").iloc[:10_000]
        return frame.reset_index(drop=True), "ml-100k (first 10,000 ratings)"
    return rp.synthetic_stream(n_events=3_000, n_users=200, n_items=400), "synthetic"


def hit_rate(ranker: RecincRanker, frame, k: int = 10) -> float:
    catalogue: list = []
    known: set = set()
    hits = 0
    for user, item in zip(frame["user"].tolist(), frame["item"].tolist(), strict=True):
        if catalogue:
            hits += item in ranker.rank(user, catalogue)[:k]
        ranker.learn_one(user, item, 1.0)  # implicit feedback: the user picked the item
        if item not in known:
            known.add(item)
            catalogue.append(item)
    return hits / len(frame)


def main() -> None:
    frame, name = load()
    print(f"{name}: {len(frame):,} events")
    for model, params in [("lightfm", {"no_components": 16, "epochs": 5, "seed": 0}),
                          ("popularity", None)]:
        ranker = RecincRanker(model, model_params=params, batch_size=500,
                              flush_before_predict=False)
        print(f"  {model:<11} hit rate@10, rank then learn each event: "
              f"{hit_rate(ranker, frame):.3f}")

    dataset = [({}, y, {"user": u, "item": i}) for u, i, y in
               zip(frame["user"].tolist(), frame["item"].tolist(), frame["rating"].tolist(),
                   strict=True)]
    tutorial = {"n_factors": 10, "bias_optimizer": optim.SGD(0.025),
                "latent_optimizer": optim.SGD(0.05),
                "latent_initializer": optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73)}
    model = preprocessing.PredClipper(
        RecincRanker("river-biasedmf", model_params=tutorial), y_min=1, y_max=5)
    score = evaluate.progressive_val_score(dataset, model, metrics.MAE() + metrics.RMSE())
    print(f"  river-biasedmf through RecincRanker, progressive_val_score: {score}")


if __name__ == "__main__":
    main()
