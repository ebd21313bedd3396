"""Surprise adapters on MovieLens 100K: native accuracy through compat, our overhead, fold-in.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_surprise.py`` (about a
minute on one core). It prints:

1. Surprise's own ``cross_validate`` (5 folds, ``KFold(random_state=0)``) of native ``SVD`` and
   of our SVD adapter wrapped back as a Surprise algorithm (``SurpriseAlgo("surprise-svd")``),
   on the same folds with the same ``random_state``: RMSE/MAE per run and the time ratio (the
   adapter rebuilds the trainset from the ratings and answers ``test`` in one vectorised call).
2. Fold-in on ml-100k in timestamp order: fit on the first N events, learn the next 5,000 with
   ``partial_fit`` (no refit), then predict the ratings the users new in that step give in the
   10,000 events after it. RMSE of fold-in, of no fold-in (Surprise's own answer for unknown
   users: the global mean plus the item bias where the model has one), and of the global mean.
"""

from __future__ import annotations

import time

import numpy as np
import surprise
from _common import movielens
from surprise.model_selection import KFold, cross_validate

from recinc_plugins.adapters.surprise import SurpriseBaselineOnly, SurpriseNMF, SurpriseSVD
from recinc_plugins.compat.surprise import SurpriseAlgo


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.clip(pred, 1, 5) - truth) ** 2)))


def main() -> None:
    frame = movielens()
    data = surprise.Dataset.load_from_df(frame[["user", "item", "rating"]],
                                         surprise.Reader(rating_scale=(1, 5)))
    print("cross_validate, 5 folds, KFold(random_state=0), SVD(random_state=0)")
    results = {}
    for name, algo in [("native surprise.SVD", surprise.SVD(random_state=0)),
                       ("SurpriseAlgo('surprise-svd')",
                        SurpriseAlgo("surprise-svd", seed=0, refit_every=None))]:
        t0 = time.perf_counter()
        out = cross_validate(algo, data, measures=["rmse", "mae"],
                             cv=KFold(n_splits=5, random_state=0))
        results[name] = (out, time.perf_counter() - t0)
    native_out, native_t = results["native surprise.SVD"]
    for name, (out, t) in results.items():
        print(f"{name:<30} RMSE {out['test_rmse'].mean():.4f} "
              f"(folds {np.round(out['test_rmse'], 4).tolist()})  MAE {out['test_mae'].mean():.4f}"
              f"  {t:6.1f} s  {t / native_t:.2f}x")
    ours = results["SurpriseAlgo('surprise-svd')"][0]
    print(f"|RMSE difference| {abs(ours['test_rmse'].mean() - native_out['test_rmse'].mean()):.4f}"
          " (must be < 0.005)")

    print("\nfold-in: new users' ratings after one 5,000-event step, no refit (RMSE)")
    print(f"{'model':<22}{'start':>7}{'new users':>10}{'ratings':>9}{'fold-in':>9}"
          f"{'no fold':>9}{'mean':>8}")
    for start in (30000, 60000):
        train, step = frame[:start], frame[start:start + 5000]
        future = frame[start + 5000:start + 15000]
        new_users = set(step["user"]) - set(train["user"])
        later = future[future["user"].isin(new_users)]
        truth = later["rating"].to_numpy()
        for cls, params in [(SurpriseSVD, {"seed": 0}), (SurpriseNMF, {"seed": 0}),
                            (SurpriseBaselineOnly, {})]:
            scores = []
            for fold_in in (True, False):
                model = cls(refit_every=None, fold_in=fold_in, **params).fit(train)
                model.partial_fit(step)
                scores.append(rmse(model.score(later["user"], later["item"]), truth))
            mean = rmse(np.full(truth.size, model.mu_), truth)
            print(f"{cls.__name__:<22}{start:>7}{len(new_users):>10}{truth.size:>9}"
                  f"{scores[0]:>9.3f}{scores[1]:>9.3f}{mean:>8.3f}")


if __name__ == "__main__":
    main()
