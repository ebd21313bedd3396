"""implicit adapters on MovieLens 100K: incremental steps versus full refits, and our overhead.

Run: ``RECINC_DATA_HOME=/path/holding/ml-100k python benchmarks/bench_implicit.py`` (about a
minute on one core). The stream is ml-100k in timestamp order, every rating a positive event.
After the first 50,000 events, ``--steps`` steps of 1,000 events are replayed test-then-learn
two ways from the same starting model:

- incremental: ``partial_fit`` on each step (ALS: touched users and items re-solved; BPR:
  warm-started epochs);
- refit: a new model fitted from scratch on everything so far after each step.

It prints recall@10 of both (every event scored before its step is learned, unknown users
answered by the model's cold-start fallback, the same counts in both), the median time per
step of each, and the ratio.
It then times one step of our ``partial_fit`` against the same native implicit calls on the
same, prebuilt matrices (``partial_fit_users`` + ``partial_fit_items``; BPR's warm ``fit``),
so the difference is the adapter's overhead: validation, id maps, growth, matrix upkeep.
The encoded-batch figure leaves out validation and id mapping (the harness's fast path).
Last, it times top-10 recommendations for every known user: ours against implicit's batched
``recommend`` on the same factors and seen items.

``--references`` instead replays the whole of ml-100k through the evaluation harness in steps
of 1,000 events (as ``examples/implicit_lightfm_ml100k.py`` does) with strong non-incremental
references, each rebuilt from scratch on the whole history after every step: ALS refitted
from scratch (linear and BM25 confidences), item-item cosine kNN, kNN on the user's last five
items blended with popularity, EASE, and popularity with recency decay. It prints their
overall and warm-event recall@10 next to popularity's (about two minutes on one core):
the ceiling the incremental adapters can be held to on this protocol.

``--gpu`` instead replays ml-100k in 1,000-event steps through the harness with BPR and with ALS
refitted every 10,000 events, each once on the CPU and once with ``use_gpu=True`` (needs
implicit's CUDA build: ``pip install -e ".[implicit-gpu]"`` on a machine with an NVIDIA GPU), and
prints recall@10 and update time per event side by side, with the GPU/CPU ratio.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from _common import clocked, movielens, print_replay, print_step_overhead, replay

from recinc_plugins.adapters.implicit import ImplicitALS, ImplicitBPR, _blas_single_thread
from recinc_plugins.base import Capabilities, IncrementalRecommender
from recinc_plugins.baselines import DecayedPopularity, Popularity
from recinc_plugins.evaluation import Stream, compare


def native_step(model, chunk: pd.DataFrame) -> tuple[float, float, float]:
    """Times of one step: our ``partial_fit``, ours on a batch already encoded (the harness's
    path: no validation or id mapping), and the same native implicit calls."""
    ours = copy.deepcopy(model)
    t_ours = clocked(lambda: ours.partial_fit(chunk))
    encoded = copy.deepcopy(model)
    batch = encoded._encode(encoded._validate(chunk))
    t_encoded = clocked(lambda: encoded.learn_encoded(batch))

    # the native side gets everything prebuilt: grown factors, matrices, touched ids
    native = copy.deepcopy(ours.model_)
    before = copy.deepcopy(model)
    before.user_index_.add(chunk["user"].to_numpy())
    before.item_index_.add(chunk["item"].to_numpy())
    before._sync_size()
    native.user_factors = before.model_.user_factors
    native.item_factors = before.model_.item_factors
    users = np.unique(ours.user_index_.lookup(chunk["user"].to_numpy()))
    items = np.unique(ours.item_index_.lookup(chunk["item"].to_numpy()))
    user_items = ours._matrix()
    if isinstance(ours, ImplicitALS):
        rows, item_users = user_items[users], user_items.T.tocsr()[items]

        def call() -> None:
            with _blas_single_thread():
                native.partial_fit_users(users, rows)
                native.partial_fit_items(items, item_users)
    else:
        native.iterations = ours.update_iterations

        def call() -> None:
            with _blas_single_thread():
                native.fit(user_items, show_progress=False)
    return t_ours, t_encoded, clocked(call)


def recommend_times(model, repeat: int) -> tuple[float, float]:
    """Top-10 for every known user: our ``recommend`` vs implicit's batched ``recommend``
    (both leaving out seen items), best of ``repeat``."""
    users = model.user_index_.ids
    rows = np.arange(model.n_users)
    user_items = model.user_items_
    ours = min(clocked(lambda: model.recommend(users, k=10)) for _ in range(repeat))
    native = min(clocked(lambda: model.model_.recommend(rows, user_items, N=10))
                 for _ in range(repeat))
    return ours, native


# -- references: rebuilt from scratch on the whole (binary) history after every step -----------


class _Rebuilt(IncrementalRecommender):
    """Keeps the binary users x items history and popularity; ``_rebuild`` after each step."""

    capabilities = Capabilities(explicit=False, implicit=True, update="refit")

    def _init_model(self) -> None:
        self.history_ = sp.csr_matrix((0, 0), dtype=np.float32)
        self.popularity_ = np.zeros(0)
        self.sequences_: dict[int, list[int]] = {}

    def _grow(self, n_users: int, n_items: int) -> None:
        old = self.history_
        indptr = np.concatenate([old.indptr, np.full(n_users - old.shape[0], old.indptr[-1])])
        self.history_ = sp.csr_matrix((old.data, old.indices, indptr), shape=(n_users, n_items))
        self.popularity_ = np.concatenate([self.popularity_,
                                           np.zeros(n_items - self.popularity_.size)])

    def _partial_fit(self, batch) -> None:
        delta = sp.csr_matrix((np.ones(len(batch), dtype=np.float32),
                               (batch.users, batch.items)), shape=self.history_.shape)
        self.history_ = (self.history_ + delta).tocsr()
        self.history_.data[:] = 1.0
        self.popularity_ += np.bincount(batch.items, minlength=self.popularity_.size)
        for user, item in zip(batch.users.tolist(), batch.items.tolist(), strict=True):
            self.sequences_.setdefault(user, []).append(item)
        self._rebuild()

    def _fallback_scores(self, n_rows: int) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (n_rows, self.popularity_.size)).copy()


class ALSRefit(_Rebuilt):
    """implicit's ALS fitted from scratch after every step (``"linear"`` or ``"bm25"``)."""

    def __init__(self, factors: int = 16, regularization: float = 30.0, alpha: float = 1.0,
                 weighting: str = "linear", iterations: int = 15) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.weighting = weighting
        self.iterations = iterations

    def _rebuild(self) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import bm25_weight

        matrix = self.history_
        if self.weighting == "bm25":
            matrix = bm25_weight(matrix, K1=100, B=0.8).tocsr()
        matrix = (matrix * self.alpha).astype(np.float32).tocsr()
        matrix.data += 1.0 if self.weighting == "linear" else 0.0
        model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                        alpha=1.0, iterations=self.iterations, num_threads=1,
                                        random_state=0)
        with _blas_single_thread():
            model.fit(matrix, show_progress=False)
        self.user_factors_, self.item_factors_ = model.user_factors, model.item_factors

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return (self.user_factors_[users] @ self.item_factors_.T).astype(np.float64)


class ItemKNN(_Rebuilt):
    """Item-item cosine kNN (shrunk by ``shrink``) on the user's history or its last items.

    ``last`` > 0 scores from the user's ``last`` most recent items, weighted ``decay ** age``;
    ``popularity_mix`` adds that share of max-normalised popularity to max-normalised scores.
    """

    def __init__(self, shrink: float = 20.0, last: int = 0, decay: float = 1.0,
                 popularity_mix: float = 0.0) -> None:
        self.shrink = shrink
        self.last = last
        self.decay = decay
        self.popularity_mix = popularity_mix

    def _rebuild(self) -> None:
        x = self.history_
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()) + 1e-9
        sim = (x.T @ x).toarray().astype(np.float64)
        sim /= np.outer(norms, norms) + self.shrink
        np.fill_diagonal(sim, 0.0)
        self.similarity_ = sim

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        if self.last:
            profile = np.zeros((users.size, self.n_items))
            for row, user in enumerate(users.tolist()):
                recent = self.sequences_.get(user, [])[-self.last:]
                for age, item in enumerate(reversed(recent)):
                    profile[row, item] += self.decay ** age
        else:
            profile = self.history_[users]
        scores = np.asarray(profile @ self.similarity_)
        if self.popularity_mix:
            scores = scores / (scores.max(axis=1, keepdims=True) + 1e-9)
            scores += self.popularity_mix * self.popularity_ / self.popularity_.max()
        return scores


class EASE(_Rebuilt):
    """Steck's EASE: closed-form item-item ridge regression with a zero diagonal."""

    def __init__(self, l2: float = 2000.0) -> None:
        self.l2 = l2

    def _rebuild(self) -> None:
        gram = (self.history_.T @ self.history_).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        self.weights_ = weights

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.history_[users] @ self.weights_)


def references() -> None:
    frame = movielens()
    models = {
        "popularity": Popularity(),
        "decayed popularity (half-life 2,000 events)": DecayedPopularity(half_life=2000),
        "ALS refit each step (16 factors, reg 30, linear)": ALSRefit(),
        "ALS refit each step (32 factors, reg 1, bm25)": ALSRefit(32, 1.0, weighting="bm25"),
        "item kNN cosine (shrink 20)": ItemKNN(),
        "item kNN on last 5 items (decay 0.9) + 0.2 popularity": ItemKNN(
            last=5, decay=0.9, popularity_mix=0.2),
        "EASE (l2 2000)": EASE(),
    }
    stream = Stream(frame, step=1000)
    # what any model could reach on warm events: one top-10 list per (user, step)
    scored = np.arange(stream.n_warmup, stream.n_warmup + stream.n_scored)
    warm = ~stream.cold_user & ~stream.cold_item
    per_user_step = pd.Series(1, index=pd.MultiIndex.from_arrays([
        stream.users[scored][warm], np.searchsorted(stream.bounds, scored[warm], "right")])
    ).groupby(level=[0, 1]).size()
    print(f"{stream.n_scored:,} scored events: {int(stream.cold_user.sum()):,} of cold users, "
          f"{int(warm.sum()):,} warm in {per_user_step.size:,} (user, step) pairs (median "
          f"{per_user_step.median():.0f}, mean {per_user_step.mean():.1f} events each); "
          f"a perfect top-10 per pair would reach warm recall@10 "
          f"{np.minimum(per_user_step, 10).sum() / per_user_step.sum():.3f}\n")
    t0 = time.perf_counter()
    summary = compare(models, stream, k=10, n_jobs=1).summary
    columns = ["model", "recall@10", "warm_recall@10", "cold_user_recall@10", "warm_events"]
    print(summary[columns].to_markdown(index=False, floatfmt=".4f"))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


def gpu() -> None:
    import implicit.gpu

    if not implicit.gpu.HAS_CUDA:
        raise SystemExit("--gpu needs implicit's CUDA build and a CUDA device (see the warning "
                         "`import implicit.gpu` gives; pip install -e '.[implicit-gpu]')")
    common = {"num_threads": 1, "seed": 0}
    models = {"popularity": Popularity()}
    for device, flag in (("cpu", False), ("gpu", True)):
        models[f"bpr-{device}"] = ImplicitBPR(**common, use_gpu=flag)
        models[f"als-{device}"] = ImplicitALS(**common, refit_every=10_000, use_gpu=flag)
    summary = compare(models, Stream(movielens(), step=1000), k=10).summary.set_index("model")
    print(f"popularity recall@10 {summary.loc['popularity', 'recall@10']:.4f}")
    for name in ("bpr", "als"):
        cpu, gpu_ = summary.loc[f"{name}-cpu"], summary.loc[f"{name}-gpu"]
        ratio = gpu_["update_us_per_event"] / cpu["update_us_per_event"]
        print(f"{name}: recall@10 gpu {gpu_['recall@10']:.4f} cpu {cpu['recall@10']:.4f}; "
              f"update {gpu_['update_us_per_event']:.1f} vs {cpu['update_us_per_event']:.1f} "
              f"us/event (gpu/cpu {ratio:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=50_000)
    parser.add_argument("--step", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15, help="repeats of the overhead timing")
    parser.add_argument("--references", action="store_true",
                        help="replay ml-100k through the harness with the references instead")
    parser.add_argument("--gpu", action="store_true",
                        help="compare use_gpu=True with the CPU on ml-100k instead")
    args = parser.parse_args()
    if args.references:
        references()
        return
    if args.gpu:
        gpu()
        return
    warnings.simplefilter("ignore", RuntimeWarning)
    frame = movielens()
    print(f"ml-100k: {len(frame):,} events; first {args.start:,} learned, then "
          f"{args.steps} steps of {args.step:,} (num_threads=1)\n")
    makers = {
        "implicit-als": lambda: ImplicitALS(num_threads=1, seed=0),
        "implicit-bpr": lambda: ImplicitBPR(num_threads=1, seed=0),
    }
    for name, make in makers.items():
        recall, times = replay(make, frame, args.start, args.step, args.steps)
        print_replay(name, recall, times)

        model = make().fit(frame.iloc[:args.start])
        chunk = frame.iloc[args.start:args.start + args.step]
        pairs = [native_step(model, chunk) for _ in range(args.repeat)]
        print_step_overhead(name, "native implicit on the same prebuilt matrices", pairs)
        t_rec, t_rec_native = recommend_times(model, args.repeat)
        print(f"{name}: top-10 for all {model.n_users} known users: ours {t_rec * 1e3:6.2f} ms, "
              f"implicit's batched recommend {t_rec_native * 1e3:6.2f} ms "
              f"(ratio {t_rec / t_rec_native:4.2f}x)\n")


if __name__ == "__main__":
    main()
