"""Surprise's algorithms behind the incremental interface: periodic refits, fold-in between them.

Surprise has no incremental learning (``AlgoBase.fit`` only; its maintainer says so in issue
#263), so every algorithm gets the same honest strategies:

- **refit** on all history or on a sliding window of the last ``window`` events, every
  ``refit_every`` events or steps (``partial_fit`` calls);
- **fold-in** between refits for the factor and baseline models (SVD, SVD++, NMF, BaselineOnly):
  each user and item with new events gets its bias and factors solved against its ratings with
  everything else held fixed, so a new user is not stuck on the global mean until the next refit.

Scoring with context (a user's recent ratings, not learned): SVD, SVD++ and NMF fold the user
in on them, the items fixed (``_fold_context``).

``forget`` refits the deterministic algorithms on the kept history (exact) and cuts SVD, SVD++
and NMF (their trainset, raw-id maps and factor rows), then re-trains the rows the forgotten
events touched (approximate); see docs/surprise.md.

Scores are the algorithm's ``estimate`` (unclipped, as Surprise computes before ``predict``
clips). Where the model has ``pu``, ``qi``, ``bu``, ``bi`` they are computed in one vectorised
pass from arrays indexed like this model's ids; other algorithms call ``estimate`` per pair.
"""

from __future__ import annotations

import copy
import inspect
from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .._optional import require
from ..base import Batch, Capabilities, IncrementalRecommender
from ..context import Context
from ..forget import Removed
from ..growth import grown
from ..params import check_bool, check_choice, check_int, check_number, check_seed
from ._context import check_context, row_sums, running_grams

__all__ = [
    "SurpriseAdapter",
    "SurpriseBaselineOnly",
    "SurpriseCoClustering",
    "SurpriseKNNBaseline",
    "SurpriseKNNBasic",
    "SurpriseKNNWithMeans",
    "SurpriseKNNWithZScore",
    "SurpriseNMF",
    "SurpriseSVD",
    "SurpriseSVDpp",
    "SurpriseSlopeOne",
]

_REFIT_UNITS = ("events", "steps")
#: the fold kinds that score with a context
_CONTEXT_KINDS = ("svd", "svdpp", "nmf")
#: a block of context rows solved at once holds at most about this many bytes of matrices
_CONTEXT_BYTES = 32 * 2**20
# the options Surprise reads (it ignores any other key silently, so a typo would go unnoticed)
_SIM_OPTIONS = ("name", "user_based", "min_support", "shrinkage")
_SIM_NAMES = ("cosine", "msd", "pearson", "pearson_baseline")
_BSL_OPTIONS = ("method", "n_epochs", "reg_u", "reg_i", "reg", "learning_rate")
_BSL_METHODS = ("als", "sgd")
# forgetting: the algorithms whose model is cut and re-solved (a refit would retrain all of
# it by SGD), their fold kinds, and those a refit gives again exactly (no random draws)
_CUT_ALGORITHMS = ("SVD", "SVDpp", "NMF")
_CUT_KINDS = ("svd", "svdpp", "nmf")
_DETERMINISTIC = ("BaselineOnly", "KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline",
                  "SlopeOne")


class SurpriseAdapter(IncrementalRecommender):
    """Any Surprise algorithm (an ``AlgoBase``) as an incremental recommender.

    Parameters
    ----------
    algo
        A Surprise algorithm, e.g. ``surprise.KNNBasic(k=20)``; it is deep-copied for each
        refit, so the object passed in is never trained.
    refit_every
        Refit after this many new events (``refit_unit="events"``) or ``partial_fit`` calls
        (``refit_unit="steps"``). ``None`` refits only on ``fit``. The first ``partial_fit`` of
        an unfitted model always fits.
    refit_unit
        ``"events"`` or ``"steps"``.
    window
        Refit on the last ``window`` events only; ``None`` refits on all history.
    fold_in
        Between refits, solve the bias and factors of every user and item with new events,
        holding the rest fixed (SVD, SVD++, NMF, BaselineOnly; ignored for other algorithms).
    fold_in_reg
        L2 penalty per rating for the folded-in factors. ``None``: NMF's own ``reg_pu`` /
        ``reg_qi``, and for SVD and SVD++ the larger of theirs and 0.5 (a vector solved from a
        few ratings overfits at their default 0.02). Biases use the algorithm's bias penalties;
        for BaselineOnly those of its ``bsl_options`` method: ALS's ``reg_u`` / ``reg_i``
        (added once), SGD's ``reg`` (per rating). SGD fold-in gives the fixed point SGD
        converges to, which a refit with few ``n_epochs`` (Surprise's default: 20 at
        ``learning_rate`` 0.005) may not reach for a user or item with few ratings.
    rating_scale
        ``(low, high)`` given to Surprise's trainset; ``None`` uses the range of the ratings.
    context_weight, context_steps
        Scoring with context (``compare(..., context="fresh")``, ``score_block(users,
        context)``; SVD, SVD++ and NMF): how many times a context rating counts in the fold-in
        of the user, and NMF's multiplicative steps (``_fold_context``; docs/surprise.md).

    Attributes
    ----------
    model_
        The Surprise algorithm from the last refit (fold-ins live in this adapter's arrays).
    n_refits_
        How many refits have run.

    Examples
    --------
    >>> import surprise
    >>> from recinc_plugins.data import synthetic_stream
    >>> from recinc_plugins.adapters.surprise import SurpriseAdapter
    >>> events = synthetic_stream(n_events=400, n_users=30, n_items=40, seed=0)
    >>> model = SurpriseAdapter(surprise.KNNBasic(k=5, verbose=False), refit_every=100)
    >>> model = model.fit(events[:300]).partial_fit(events[300:])
    >>> model.n_refits_
    2
    """

    capabilities = Capabilities(explicit=True, implicit=False, update="refit")
    extra = "surprise"

    # -- parameters and validation -------------------------------------------------------------

    def __init__(self, algo: Any = None, refit_every: int | None = 5000,
                 refit_unit: str = "events", window: int | None = None, fold_in: bool = True,
                 fold_in_reg: float | None = None,
                 rating_scale: tuple[float, float] | None = None,
                 context_weight: float = 1.0, context_steps: int = 10) -> None:
        self.algo = algo
        self.refit_every = refit_every
        self.refit_unit = refit_unit
        self.window = window
        self.fold_in = fold_in
        self.fold_in_reg = fold_in_reg
        self.rating_scale = rating_scale
        self.context_weight = context_weight
        self.context_steps = context_steps

    def _check_params(self) -> None:
        check_int("refit_every", self.refit_every, optional=True)
        check_choice("refit_unit", self.refit_unit, _REFIT_UNITS)
        check_int("window", self.window, optional=True)
        check_bool("fold_in", self.fold_in)
        check_number("fold_in_reg", self.fold_in_reg, optional=True)
        check_number("context_weight", self.context_weight)
        check_int("context_steps", self.context_steps, 0)
        if self.rating_scale is not None:
            low, high = self.rating_scale
            if not low < high:
                raise ValueError(
                    f"rating_scale must be (low, high) with low < high, got {self.rating_scale}"
                )
        algo = self._make_algo()
        if not isinstance(algo, _surprise().AlgoBase):
            raise TypeError(
                "algo must be a Surprise algorithm (an AlgoBase such as surprise.SVD()), got "
                f"{type(self.algo).__name__}"
            )
        _check_options(algo)

    def _reset(self) -> None:
        self._check_params()  # before any state is built
        super()._reset()

    # -- growth --------------------------------------------------------------------------------

    def _init_model(self) -> None:
        self.model_ = None
        self._pending = None
        self.kind_ = None
        self.n_refits_ = 0
        self.events_since_refit_ = 0
        self.steps_since_refit_ = 0
        self.mu_ = float("nan")
        self._hist_u = np.empty(0, dtype=np.int64)
        self._hist_i = np.empty(0, dtype=np.int64)
        self._hist_r = np.empty(0, dtype=np.float64)
        self._n_hist = 0
        self.user_inner_ = np.zeros(0, dtype=np.int64)  # dense index -> inner id (or -1)
        self.item_inner_ = np.zeros(0, dtype=np.int64)
        self.has_user_ = np.zeros(0, dtype=bool)  # has parameters (refit or folded in)
        self.has_item_ = np.zeros(0, dtype=bool)
        self.user_bias_ = np.zeros(0)
        self.item_bias_ = np.zeros(0)
        self.user_factors_ = np.zeros((0, 0))  # SVD++: p_u plus the implicit-feedback term
        self.item_factors_ = np.zeros((0, 0))
        self.item_implicit_ = np.zeros((0, 0))  # SVD++'s y_j

    def _grow(self, n_users: int, n_items: int) -> None:
        self.user_inner_ = grown(self.user_inner_, n_users, -1)
        self.item_inner_ = grown(self.item_inner_, n_items, -1)
        self.has_user_ = grown(self.has_user_, n_users)
        self.has_item_ = grown(self.has_item_, n_items)
        self.user_bias_ = grown(self.user_bias_, n_users)
        self.item_bias_ = grown(self.item_bias_, n_items)
        self.user_factors_ = grown(self.user_factors_, n_users)
        self.item_factors_ = grown(self.item_factors_, n_items)
        self.item_implicit_ = grown(self.item_implicit_, n_items)

    # -- learning ------------------------------------------------------------------------------

    def _prepare(self, batch: Batch) -> None:
        # Surprise's fit is where a refit fails (a bad option, a library error), so it runs
        # here, before the base class ingests the batch: a failure then changes nothing (the
        # base forgets the batch's new ids), and retrying the same batch does not count it twice
        self._pending = None
        if not len(batch):
            return
        self._check_params()  # parameters may have been set since the last fit
        if self._refit_due(len(batch)):
            self._pending = (batch, self._train(*self._history(batch)))

    def _take_pending(self, batch: Batch) -> tuple | None:
        """The refit ``_prepare`` trained for ``batch``, if any (taken only once)."""
        pending, self._pending = getattr(self, "_pending", None), None
        return pending[1] if pending is not None and pending[0] is batch else None

    def _fit(self, batch: Batch) -> None:
        trained = self._take_pending(batch) or self._train(*self._history(batch))
        self._record(batch)
        self._install(*trained)

    def _partial_fit(self, batch: Batch) -> None:
        trained = self._take_pending(batch)
        if trained is None and self._refit_due(len(batch)):
            trained = self._train(*self._history(batch))  # before any state changes
        self._record(batch)
        self.events_since_refit_ += len(batch)
        self.steps_since_refit_ += 1
        if trained is not None:
            self._install(*trained)
        elif self.fold_in and self.kind_ is not None:
            self._fold_in(np.unique(batch.users), np.unique(batch.items))

    def refit(self) -> IncrementalRecommender:
        """Refit the Surprise algorithm now, on all history or the window."""
        self._ensure_state()
        if self._n_hist:
            self._install(*self._train(*self._history()))
        return self

    def _refit_due(self, n_events: int) -> bool:
        """Whether learning ``n_events`` more events in one step triggers a refit."""
        if getattr(self, "model_", None) is None:
            return True
        if self.refit_every is None:
            return False
        since = self.events_since_refit_ + n_events if self.refit_unit == "events" else \
            self.steps_since_refit_ + 1
        return since >= self.refit_every

    def _record(self, batch: Batch) -> None:
        end = self._n_hist + len(batch)
        if end > self._hist_u.size:
            capacity = max(end, 1024)
            self._hist_u = grown(self._hist_u, capacity, spare=True)
            self._hist_i = grown(self._hist_i, capacity, spare=True)
            self._hist_r = grown(self._hist_r, capacity, spare=True)
        self._hist_u[self._n_hist:end] = batch.users
        self._hist_i[self._n_hist:end] = batch.items
        self._hist_r[self._n_hist:end] = batch.values
        self._n_hist = end

    def _history(self, extra: Batch | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The events a refit learns from (all history or the window), ``extra`` appended."""
        users, items = self._hist_u[:self._n_hist], self._hist_i[:self._n_hist]
        ratings = self._hist_r[:self._n_hist]
        if extra is not None:
            users = np.concatenate([users, extra.users])
            items = np.concatenate([items, extra.items])
            ratings = np.concatenate([ratings, extra.values])
        start = 0 if self.window is None else max(0, users.size - self.window)
        return users[start:], items[start:], ratings[start:]

    def _train(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> tuple:
        """A fresh Surprise algorithm fitted on these events; changes no state of this model."""
        trainset, user_uniques, item_uniques = self._trainset(users, items, ratings)
        algo = self._make_algo()
        algo.fit(trainset)
        return algo, trainset, user_uniques, item_uniques

    def _install(self, algo: Any, trainset: Any, user_uniques: np.ndarray,
                 item_uniques: np.ndarray) -> None:
        """Make a fitted algorithm the model (all its inner ids are known here)."""
        self.model_ = algo
        self.kind_ = _fold_kind(algo)
        self.n_refits_ += 1
        self.events_since_refit_ = 0
        self.steps_since_refit_ = 0
        self.mu_ = float(trainset.global_mean)
        self.user_inner_[:] = -1
        self.item_inner_[:] = -1
        self.user_inner_[user_uniques] = np.arange(user_uniques.size)
        self.item_inner_[item_uniques] = np.arange(item_uniques.size)
        self.has_user_[:] = False
        self.has_item_[:] = False
        self.has_user_[user_uniques] = True
        self.has_item_[item_uniques] = True
        if self.kind_ is not None:
            self._read_parameters(algo, trainset, user_uniques, item_uniques)

    def _trainset(self, users: np.ndarray, items: np.ndarray,
                  ratings: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
        """A Surprise Trainset with inner ids in first-seen order, as ``Dataset`` builds it."""
        u_codes, user_uniques = pd.factorize(users, sort=False)
        i_codes, item_uniques = pd.factorize(items, sort=False)
        ur: defaultdict = defaultdict(list)
        ir: defaultdict = defaultdict(list)
        for u, i, r in zip(u_codes.tolist(), i_codes.tolist(), ratings.tolist(), strict=True):
            ur[u].append((i, r))
            ir[i].append((u, r))
        scale = self.rating_scale
        if scale is None:
            scale = (float(ratings.min()), float(ratings.max()))
        user_uniques = np.asarray(user_uniques, dtype=np.int64)
        item_uniques = np.asarray(item_uniques, dtype=np.int64)
        raw_users = self.user_index_.ids_of(user_uniques).tolist()
        raw_items = self.item_index_.ids_of(item_uniques).tolist()
        trainset = _surprise().Trainset(
            ur, ir, len(raw_users), len(raw_items), len(ratings), tuple(scale),
            dict(zip(raw_users, range(len(raw_users)), strict=True)),
            dict(zip(raw_items, range(len(raw_items)), strict=True)),
        )
        return trainset, user_uniques, item_uniques

    def _read_parameters(self, algo: Any, trainset: Any, users: np.ndarray,
                         items: np.ndarray) -> None:
        kind = self.kind_
        biased = kind in ("baseline", "svdpp") or getattr(algo, "biased", False)
        self.user_bias_[:] = 0.0
        self.item_bias_[:] = 0.0
        if biased:
            bu, bi = (algo.compute_baselines() if kind == "baseline" else (algo.bu, algo.bi))
            self.user_bias_[users] = np.asarray(bu)
            self.item_bias_[items] = np.asarray(bi)
        if kind == "baseline":
            return
        pu, qi = np.asarray(algo.pu), np.asarray(algo.qi)
        n_factors = pu.shape[1]
        self.user_factors_ = np.zeros((self.n_users, n_factors))
        self.item_factors_ = np.zeros((self.n_items, n_factors))
        self.item_factors_[items] = qi
        if kind == "svdpp":
            yj = np.asarray(algo.yj)
            self.item_implicit_ = np.zeros((self.n_items, n_factors))
            self.item_implicit_[items] = yj
            implicit = np.zeros_like(pu)
            for u in range(trainset.n_users):
                rated = [j for (j, _) in trainset.ur[u]]
                implicit[u] = yj[rated].sum(axis=0) / np.sqrt(len(rated))
            pu = pu + implicit
        self.user_factors_[users] = pu

    # -- learning: fold-in between refits ------------------------------------------------------

    def _fold_in(self, users: np.ndarray, items: np.ndarray) -> None:
        hist_u, hist_i, hist_r = self._history()
        reg_bu, reg_bi, reg_pu, reg_qi = self._penalties()
        for u, rows in _rows_of(hist_u, users):
            self._solve_user(u, hist_i[rows], hist_r[rows], reg_bu, reg_pu)
        for i, rows in _rows_of(hist_i, items):
            self._solve_item(i, hist_u[rows], hist_r[rows], reg_bi, reg_qi)

    def _penalties(self) -> tuple[float, float, float, float]:
        """L2 penalties: user bias, item bias, user factors, item factors.

        Per rating (multiplied by the number of ratings solved against), as Surprise's SGD
        applies them, except for BaselineOnly's ALS, whose ``reg_u`` / ``reg_i`` are added
        once (see :meth:`_bias_per_rating`).
        """
        algo, kind = self.model_, self.kind_
        if kind == "baseline":
            options = algo.bsl_options
            if self._bias_per_rating():
                # Surprise's baseline SGD: b += lr * (err - reg * b) for every rating, so its
                # fixed point is the ridge solution with penalty reg per rating (lr and
                # n_epochs only set how close SGD gets to it)
                reg = options.get("reg", 0.02)
                return (reg, reg, 0, 0)
            # ALS: b = sum(residuals) / (reg + n ratings), Surprise's defaults 15 and 10
            return (options.get("reg_u", 15), options.get("reg_i", 10), 0, 0)
        if self.fold_in_reg is not None:
            reg_pu = reg_qi = self.fold_in_reg
        elif kind == "nmf":
            reg_pu, reg_qi = algo.reg_pu, algo.reg_qi
        else:
            # a vector solved from a handful of ratings overfits at SVD's own 0.02 (on ml-100k
            # new users then did worse than the item-bias fallback); 0.5 did not
            reg_pu = reg_qi = max(algo.reg_pu, 0.5)
        return (getattr(algo, "reg_bu", 0.0), getattr(algo, "reg_bi", 0.0), reg_pu, reg_qi)

    def _bias_per_rating(self) -> bool:
        """True when BaselineOnly's biases are penalised per rating (its SGD method)."""
        return self.kind_ == "baseline" and self.model_.bsl_options.get("method", "als") == "sgd"

    def _bias_only(self, target: np.ndarray, reg: float) -> float:
        """BaselineOnly's bias of one user or item, the other side's biases held fixed."""
        penalty = reg * target.size if self._bias_per_rating() else reg
        return float(target.sum() / (penalty + target.size))

    def _biased(self) -> bool:
        return self.kind_ in ("baseline", "svdpp") or bool(getattr(self.model_, "biased", False))

    def _solve_user(self, u: int, items: np.ndarray, ratings: np.ndarray, reg_b: float,
                    reg_f: float) -> None:
        known = self.has_item_[items]
        if self.kind_ == "svdpp":
            # SVD++ also learns from which items were rated, whatever the rating
            rated = items[known]
            implicit = self.item_implicit_[rated].sum(axis=0) / np.sqrt(max(rated.size, 1))
        items, ratings = items[known], ratings[known]
        if not items.size:
            return
        self.has_user_[u] = True
        target = ratings - (self.mu_ + self.item_bias_[items]) * self._biased()
        if self.kind_ == "baseline":
            self.user_bias_[u] = self._bias_only(target, reg_b)
            return
        q = self.item_factors_[items]
        if self.kind_ == "svdpp":
            target = target - q @ implicit
        if self.kind_ == "nmf":
            bias, factors = _nmf_fold(q, target, reg_f, self._biased(), reg_b,
                                      self.model_.init_low, self.model_.init_high)
        else:
            bias, factors = _ridge(q, target, reg_b, reg_f, self._biased())
        self.user_bias_[u] = bias
        self.user_factors_[u] = factors + (implicit if self.kind_ == "svdpp" else 0.0)

    def _solve_item(self, i: int, users: np.ndarray, ratings: np.ndarray, reg_b: float,
                    reg_f: float) -> None:
        known = self.has_user_[users]
        users, ratings = users[known], ratings[known]
        if not users.size:
            return
        self.has_item_[i] = True
        target = ratings - (self.mu_ + self.user_bias_[users]) * self._biased()
        if self.kind_ == "baseline":
            self.item_bias_[i] = self._bias_only(target, reg_b)
            return
        p = self.user_factors_[users]
        if self.kind_ == "nmf":
            bias, factors = _nmf_fold(p, target, reg_f, self._biased(), reg_b,
                                      self.model_.init_low, self.model_.init_high)
        else:
            bias, factors = _ridge(p, target, reg_b, reg_f, self._biased())
        self.item_bias_[i] = bias
        self.item_factors_[i] = factors
        # a folded-in SVD++ item has no y_j of its own: it adds nothing to users' implicit term

    # -- forgetting ----------------------------------------------------------------------------

    @property
    def forgets_exactly(self) -> bool:  # type: ignore[override]
        # a refit on the kept history is the model trained without the events wherever the
        # algorithm is deterministic; SVD, SVD++ and NMF are cut and re-solved instead
        cls = self._algo_class_of()
        if cls is None or cls.__name__ in _CUT_ALGORITHMS:
            return False
        if cls.__name__ in _DETERMINISTIC:
            return cls.__module__.startswith("surprise.")
        return cls.__name__ == "CoClustering" and self._seeded()

    def _forget(self, removed: Removed, *, epochs: int = 1) -> None:
        """Drop the forgotten events from the history; then, for SVD, SVD++ and NMF, cut the
        forgotten users and items out of the Surprise model (its trainset, raw-id maps and
        factors) and out of the adapter's arrays, and re-train the rows their events touched
        on the kept history for ``epochs`` passes of the algorithm's own update, the other
        side held fixed (:meth:`_retrain_rows`); for every other algorithm, refit on the
        kept history (exact where the algorithm is deterministic: ``forgets_exactly``)."""
        check_int("epochs", epochs, minimum=0)
        self._pending = None
        self._drop_history(removed)
        if not self._n_hist or getattr(self, "model_", None) is None:
            self._init_model()  # nothing left to learn from: an unfitted model
            self._grow(self.n_users, self.n_items)
        elif self.kind_ not in _CUT_KINDS or not self._cut(removed):
            self._install(*self._train(*self._history()))
        else:
            self._retrain_rows(np.setdiff1d(removed.pair_users, removed.users),
                               np.setdiff1d(removed.pair_items, removed.items), epochs)

    def _retrain_kept(self) -> None:
        # the kept history in stream order with its own ratings (``kept_events`` gives the
        # pairs in index order, which a window or an SGD refit would learn differently)
        n = self._n_hist
        users, items = self._hist_u[:n], self._hist_i[:n]
        live = ~(self.user_index_.dead[users] | self.item_index_.dead[items])
        self.fit(pd.DataFrame({"user": self.user_index_.ids_of(users[live]),
                               "item": self.item_index_.ids_of(items[live]),
                               "rating": self._hist_r[:n][live]}))

    def _drop_history(self, removed: Removed) -> None:
        """Take the events of the forgotten users and items out of the history (the arrays'
        spare capacity included) and out of the count of events since the last refit."""
        n = self._n_hist
        gone = np.isin(self._hist_u[:n], removed.users) | np.isin(self._hist_i[:n],
                                                                   removed.items)
        if not gone.any():
            return
        since = self.events_since_refit_
        if since:
            self.events_since_refit_ -= int(gone[n - since:].sum())
        keep = ~gone
        for name in ("_hist_u", "_hist_i", "_hist_r"):
            old = getattr(self, name)
            kept = old[:n][keep]
            new = np.zeros_like(old)
            new[:kept.size] = kept
            setattr(self, name, new)
        self._n_hist = int(keep.sum())

    def _cut(self, removed: Removed) -> bool:
        """SVD, SVD++, NMF: the Surprise model loses the forgotten users' and items' rows and
        ratings (and any user or item left with no rating), the adapter's arrays lose their
        rows, and the global mean becomes the kept ratings' mean. False, changing nothing, where
        no rating of the refit's trainset is left (then refit instead)."""
        algo = self.model_
        old_users = self.user_inner_[removed.users]
        old_items = self.item_inner_[removed.items]
        trainset, new_u, new_i = _cut_trainset(
            algo.trainset, old_users[old_users >= 0], old_items[old_items >= 0],
            self.rating_scale)
        if not trainset.n_ratings:
            return False
        keep_u, keep_i = new_u >= 0, new_i >= 0
        algo.trainset = trainset
        algo.bu, algo.bi = np.asarray(algo.bu)[keep_u], np.asarray(algo.bi)[keep_i]
        algo.pu, algo.qi = np.asarray(algo.pu)[keep_u], np.asarray(algo.qi)[keep_i]
        if self.kind_ == "svdpp":
            algo.yj = np.asarray(algo.yj)[keep_i]
        self.mu_ = float(trainset.global_mean)
        users = np.union1d(removed.users, self._renumber(self.user_inner_, new_u))
        items = np.union1d(removed.items, self._renumber(self.item_inner_, new_i))
        self.has_user_[users] = False
        self.user_bias_[users] = 0.0
        self.user_factors_[users] = 0.0
        self.has_item_[items] = False
        self.item_bias_[items] = 0.0
        self.item_factors_[items] = 0.0
        self.item_implicit_[items[items < self.item_implicit_.shape[0]]] = 0.0
        return True

    def _retrain_rows(self, users: np.ndarray, items: np.ndarray, epochs: int) -> None:
        """Re-train the rows a forget touched (users who rated a forgotten item, items rated by
        a forgotten user) on their kept ratings, the other side held fixed: ``epochs`` passes
        of the algorithm's own update (SVD, SVD++: its SGD step per rating, in the order of
        the history; NMF: its multiplicative update, biases by SGD), with its learning rates
        and penalties. Rows left with no parameters (all their refit's ratings forgotten) are
        folded in instead, as new rows are; so are SVD++'s touched users, whose implicit
        term sums over the items they rated."""
        if self.kind_ == "svdpp":
            self._fold_in(users, items[:0])
            users = users[:0]
        fresh_u, fresh_i = users[~self.has_user_[users]], items[~self.has_item_[items]]
        if fresh_u.size or fresh_i.size:
            self._fold_in(fresh_u, fresh_i)
        users, items = users[self.has_user_[users]], items[self.has_item_[items]]
        if not epochs or not (users.size or items.size):
            return
        hist_u, hist_i, hist_r = self._history()
        algo, biased = self.model_, self._biased()
        mu = self.mu_ if biased else 0.0
        update = _nmf_epoch if self.kind_ == "nmf" else _sgd_epoch
        for _ in range(epochs):
            if users.size:
                rows = np.isin(hist_u, users) & self.has_item_[hist_i]
                update(hist_u[rows], hist_i[rows], hist_r[rows], mu, biased,
                       (self.user_bias_, self.user_factors_),
                       (self.item_bias_, self.item_factors_),
                       (algo.lr_bu, getattr(algo, "lr_pu", 0.0), algo.reg_bu, algo.reg_pu))
            if items.size:
                rows = np.isin(hist_i, items) & self.has_user_[hist_u]
                update(hist_i[rows], hist_u[rows], hist_r[rows], mu, biased,
                       (self.item_bias_, self.item_factors_),
                       (self.user_bias_, self.user_factors_),
                       (algo.lr_bi, getattr(algo, "lr_qi", 0.0), algo.reg_bi, algo.reg_qi))

    @staticmethod
    def _renumber(inner: np.ndarray, new: np.ndarray) -> np.ndarray:
        """Map ``inner`` (dense index -> inner id) through ``new`` (old -> new inner id, -1:
        gone) in place; return the dense indices whose inner id went."""
        dense = np.flatnonzero(inner >= 0)
        mapped = new[inner[dense]]
        inner[dense] = mapped
        return dense[mapped < 0]

    # -- scoring -------------------------------------------------------------------------------

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        if self.model_ is None:  # nothing fitted yet: the global mean, as for unknown ids
            return np.full((users.size, self.n_items), self.global_mean_)
        if self.kind_ is None:
            items = np.arange(self.n_items)
            return np.stack([self._estimate_pairs(np.full(items.size, u), items)
                             for u in users.tolist()]) if users.size else \
                np.empty((0, self.n_items))
        has_u, has_i = self.has_user_[users], self.has_item_
        if self.kind_ == "baseline" or self._biased():
            scores = (self.mu_ + self.user_bias_[users])[:, None] + self.item_bias_[None, :]
            if self.kind_ != "baseline":
                scores += self.user_factors_[users] @ self.item_factors_.T
            return scores
        scores = self.user_factors_[users] @ self.item_factors_.T
        scores[~(has_u[:, None] & has_i[None, :])] = self.mu_
        return scores

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            return np.full(users.size, self.global_mean_)
        if self.kind_ is None:
            return self._estimate_pairs(users, items)
        if self.kind_ == "baseline" or self._biased():
            out = self.mu_ + self.user_bias_[users] + self.item_bias_[items]
            if self.kind_ != "baseline":
                out += np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items])
            return out
        out = np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items])
        return np.where(self.has_user_[users] & self.has_item_[items], out, self.mu_)

    def _fallback_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Pairs with an unknown user or item (-1): what Surprise's ``estimate`` gives them."""
        if getattr(self, "model_", None) is None:
            return np.full(users.size, self.global_mean_)
        if self.kind_ is None:
            return self._estimate_pairs(users, items)
        out = np.full(users.size, self.mu_)
        if self.kind_ == "baseline" or self._biased():
            known_u, known_i = users >= 0, items >= 0
            out[known_u] += self.user_bias_[users[known_u]]
            out[known_i] += self.item_bias_[items[known_i]]
        return out

    def _estimate_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Surprise's own ``estimate`` per pair, with its fallback when it is impossible."""
        algo = self.model_
        impossible = _surprise().PredictionImpossible
        inner_u = np.where(users >= 0, self.user_inner_[np.maximum(users, 0)], -1).tolist() \
            if self.n_users else [-1] * users.size
        inner_i = np.where(items >= 0, self.item_inner_[np.maximum(items, 0)], -1).tolist() \
            if self.n_items else [-1] * items.size
        out = np.empty(users.size, dtype=np.float64)
        for n, (u, i) in enumerate(zip(inner_u, inner_i, strict=True)):
            try:
                est = algo.estimate(u if u >= 0 else f"UKN__{n}", i if i >= 0 else f"UKN__{n}")
                out[n] = est[0] if isinstance(est, tuple) else est
            except impossible:
                out[n] = algo.default_prediction()
        return out

    # -- scoring with context -----------------------------------------------------------------

    def context_rows(self, users: np.ndarray, context: Context) -> np.ndarray:
        """Rows with a context rating of an item the model has parameters for (SVD, SVD++ and
        NMF; the other algorithms use no context)."""
        n = np.asarray(users).size
        usable = np.zeros(n, dtype=bool)
        if getattr(self, "model_", None) is not None and self.kind_ in _CONTEXT_KINDS:
            owner = np.repeat(np.arange(n), context.lengths)
            usable[owner[self.has_item_[context.items]]] = True
        return usable

    def _score_in_context(self, users: np.ndarray, context: Context) -> np.ndarray:
        """Scores (predicted ratings) with each row's context: for SVD, SVD++ and NMF, a row
        with context ratings of items the model has parameters for is scored with its user's
        bias and factors folded in on them (:meth:`_fold_context`); every other row as without
        context (an unknown user, -1: the cold-start fallback). Nothing is learned."""
        users = np.asarray(users, dtype=np.int64)
        check_context(users, context, self.n_users, self.n_items)
        n = users.size
        usable = self.context_rows(users, context)
        scores = np.empty((n, self.n_items))
        plain = np.flatnonzero(~usable)
        if plain.size:
            known = users[plain] >= 0
            if known.any():
                scores[plain[known]] = self._score_users(users[plain[known]])
            if (~known).any():
                scores[plain[~known]] = self._fallback_scores(int((~known).sum()))
        if usable.any():
            rows = np.flatnonzero(usable)
            bias, factors = self._fold_context(users[rows], context.take(rows))
            scores[rows] = factors @ self.item_factors_.T
            if self._biased():
                scores[rows] += (self.mu_ + bias)[:, None] + self.item_bias_[None, :]
            else:
                scores[np.ix_(rows, ~self.has_item_)] = self.mu_
        return scores

    def _fold_context(self, users: np.ndarray, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """The users' bias and factors given their context ratings (dense user indices, -1 for
        an unknown user; items fixed; context ratings of items the model has no parameters for
        are left out), as SVD, SVD++ and NMF score them; nothing is learned.

        - SVD, SVD++: the regularised least squares of the fold-in between refits
          (``_solve_user``: the residual ``r - mu - b_i`` on ``[1, q_i]``, the penalties per
          rating), with the user's learned ``(b_u, p_u)`` standing for its history: a prior
          of mean the learned values and precision the history's own normal matrix
          ``X_h^T X_h + penalty * n_h`` (for a user folded in from its history that is exactly
          the least squares on history plus context; for one trained by SGD at the last
          refit, its SGD values take the place of the solution). Each context rating counts
          ``context_weight`` times. An unknown user: the least squares on its context alone.
          SVD++'s factors hold ``p_u`` plus its implicit-feedback term: the context's items
          add their ``y_j / sqrt(|N(u)| + |context|)`` to them before the solve (the
          history's part is not rescaled: an approximation).
        - NMF: ``context_steps`` of NMF's multiplicative update of the user's factors on
          its history plus its context (each context rating ``context_weight`` times), from
          its learned factors (an unknown user: from the middle of NMF's initial range); the
          bias stays as learned (an unknown biased user: the mean residual, shrunk).

        A user without usable context gets its learned values. Returns ``(bias, factors)``,
        ``(n,)`` and ``(n, n_factors)``."""
        users = np.asarray(users, dtype=np.int64)
        check_context(users, context, self.n_users, self.n_items)
        if getattr(self, "model_", None) is None or self.kind_ not in _CONTEXT_KINDS:
            raise ValueError(f"{type(self).__name__} folds in context for SVD, SVD++ and NMF "
                             f"models; this one wraps {type(self.model_).__name__}")
        n, d = users.size, self.item_factors_.shape[1]
        learned = (users >= 0) & self.has_user_[np.maximum(users, 0)] if self.n_users else \
            np.zeros(n, dtype=bool)
        bias = np.where(learned, self.user_bias_[np.maximum(users, 0)], 0.0) \
            if self.n_users else np.zeros(n)
        factors = np.zeros((n, d))
        factors[learned] = self.user_factors_[users[learned]]
        owner = np.repeat(np.arange(n), context.lengths)
        keep = self.has_item_[context.items]
        rows, items, ratings = owner[keep], context.items[keep].astype(np.int64), \
            context.values[keep]
        if not rows.size:
            return bias, factors
        # each distinct user's history: the rated items the model has parameters for
        distinct, inverse = np.unique(np.where(learned, users, -1), return_inverse=True)
        inverse = inverse.reshape(-1)
        hist_u, hist_i, hist_r = self._history()
        history = {u: (hist_i[at][self.has_item_[hist_i[at]]],
                       hist_r[at][self.has_item_[hist_i[at]]])
                   for u, at in _rows_of(hist_u, distinct[distinct >= 0])}
        empty = (np.empty(0, dtype=np.int64), np.empty(0))
        hist = [history.get(u, empty) if u >= 0 else empty for u in distinct.tolist()]
        if self.kind_ == "nmf":
            return self._fold_nmf(users, learned, bias, factors, rows, items, ratings, hist,
                                  inverse)
        if self.kind_ == "svdpp":
            # the context's items join the implicit-feedback term
            n_rated = np.array([h[0].size for h in hist])[inverse] + np.bincount(rows,
                                                                                minlength=n)
            added = row_sums(self.item_implicit_[items], rows, n)
            factors += added / np.sqrt(np.maximum(n_rated, 1))[:, None]
        return self._fold_ridge(users, bias, factors, rows, items, ratings, hist, inverse)

    def _fold_ridge(self, users: np.ndarray, bias: np.ndarray, factors: np.ndarray,
                    rows: np.ndarray, items: np.ndarray, ratings: np.ndarray, hist: list,
                    inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SVD's and SVD++'s fold-in (see :meth:`_fold_context`): one batched solve, the rows of a
        user summed as running differences (``running_grams``), in blocks of rows."""
        biased = self._biased()
        reg_b, _, reg_f, _ = self._penalties()
        weight = float(self.context_weight)
        n, d = factors.shape
        size = d + biased
        penalty = np.full(size, float(reg_f))
        if biased:
            penalty[0] = reg_b
        # the design rows [1, q_i] (or q_i) of the items involved, by local index
        involved = np.unique(np.concatenate([items] + [h[0] for h in hist]))
        local = np.searchsorted(involved, items)
        design = self.item_factors_[involved]
        if biased:
            design = np.hstack([np.ones((involved.size, 1)), design])
        offset = (self.mu_ + self.item_bias_[involved]) if biased else np.zeros(involved.size)
        # the history's normal matrix per distinct user (none for a user without parameters)
        base = np.zeros((len(hist), size * size))
        for k, (h_items, _) in enumerate(hist):
            if h_items.size:
                x = design[np.searchsorted(involved, h_items)]
                base[k] = (x.T @ x + np.diag(penalty * h_items.size)).ravel()
        theta = np.hstack([bias[:, None], factors]) if biased else factors.copy()
        target = ratings - offset[local]
        rhs = row_sums((weight * target)[:, None] * design[local], rows, n)
        counts = np.bincount(rows, minlength=n).astype(np.float64)
        diagonal = np.arange(size) * (size + 1)
        block = max(1, _CONTEXT_BYTES // (8 * size * size))
        for start in range(0, n, block):
            stop = min(n, start + block)
            inside = (rows >= start) & (rows < stop)
            lhs = running_grams(users[start:stop], rows[inside] - start, local[inside],
                                np.full(int(inside.sum()), weight), design, base,
                                inverse[start:stop])
            prior = np.einsum("rij,rj->ri", base[inverse[start:stop]].reshape(-1, size, size),
                              theta[start:stop])
            lhs[:, diagonal] += weight * counts[start:stop, None] * penalty
            theta[start:stop] = np.linalg.solve(
                lhs.reshape(-1, size, size), (prior + rhs[start:stop])[:, :, None])[:, :, 0]
        if biased:
            return theta[:, 0], theta[:, 1:]
        return bias, theta

    def _fold_nmf(self, users: np.ndarray, learned: np.ndarray, bias: np.ndarray,
                  factors: np.ndarray, rows: np.ndarray, items: np.ndarray,
                  ratings: np.ndarray, hist: list, inverse: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """NMF's fold-in (see :meth:`_fold_context`): its multiplicative update on the normal
        equations of history plus context, all rows at once."""
        algo, biased = self.model_, self._biased()
        reg_b, _, reg_f, _ = self._penalties()
        weight = float(self.context_weight)
        n, d = factors.shape
        factors[~learned] = (algo.init_low + algo.init_high) / 2
        base = np.zeros((len(hist), d * d))
        base_rhs = np.zeros((len(hist), d))
        base_count = np.zeros(len(hist))
        base_sum = np.zeros(len(hist))
        base_items = np.zeros((len(hist), d))
        residual = self.mu_ + self.item_bias_ if biased else np.zeros(self.n_items)
        for k, (h_items, h_ratings) in enumerate(hist):
            if h_items.size:
                q = self.item_factors_[h_items]
                target = h_ratings - residual[h_items]
                base[k] = (q.T @ q).ravel()
                base_rhs[k] = q.T @ target
                base_count[k] = h_items.size
                base_sum[k] = target.sum()
                base_items[k] = q.sum(axis=0)
        target = ratings - residual[items]
        counts = base_count[inverse] + weight * np.bincount(rows, minlength=n)
        if biased:
            unknown = ~learned
            total = base_sum[inverse] + weight * np.bincount(rows, target, minlength=n)
            bias[unknown] = (total / np.maximum(counts, 1) / (1 + reg_b))[unknown]
            target = target - bias[rows]
        rhs = base_rhs[inverse] + row_sums((weight * target)[:, None] *
                                           self.item_factors_[items], rows, n)
        if biased:  # the history's residuals less the user's bias too
            rhs -= bias[:, None] * base_items[inverse]
        gram = running_grams(users, rows, items, np.full(rows.size, weight),
                             self.item_factors_, base, inverse).reshape(n, d, d)
        numerator = np.maximum(rhs, 0.0)
        for _ in range(int(self.context_steps)):
            denominator = np.einsum("rij,rj->ri", gram, factors) + reg_f * counts[:, None] * \
                factors
            safe = denominator > 0
            factors = np.where(safe, factors * numerator / np.where(safe, denominator, 1.0),
                               0.0)
        return bias, factors

    # -- persistence ---------------------------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        # a refit trained for a batch not yet learned is not part of the model
        return {k: v for k, v in super()._get_state().items() if k != "_pending"}

    # -- the wrapped model ---------------------------------------------------------------------

    def _make_algo(self) -> Any:
        return copy.deepcopy(self.algo)

    def _algo_class_of(self) -> type | None:
        return None if self.algo is None else type(self.algo)

    def _seeded(self) -> bool:
        """The algorithm draws the same numbers on every fit (an integer random_state)."""
        seed = getattr(self.algo, "random_state", None)
        return isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)


class _NamedSurprise(SurpriseAdapter):
    """A Surprise algorithm named by its class; its own parameters are keyword arguments,
    except its ``random_state``, which is this model's ``seed``."""

    _algo_class = ""
    _renamed_params: ClassVar[dict[str, str]] = {"random_state": "seed"}

    # -- parameters and validation -------------------------------------------------------------

    def __init__(self, refit_every: int | None = 5000, refit_unit: str = "events",
                 window: int | None = None, fold_in: bool = True,
                 fold_in_reg: float | None = None,
                 rating_scale: tuple[float, float] | None = None, seed: int | None = None,
                 context_weight: float = 1.0, context_steps: int = 10,
                 **params: Any) -> None:
        super().__init__(None, refit_every, refit_unit, window, fold_in, fold_in_reg,
                         rating_scale, context_weight, context_steps)
        self.seed = seed
        self.params = params
        self._accept_renamed({old: params.pop(old) for old in self._renamed_params
                              if old in params})

    def _check_params(self) -> None:
        check_seed("seed", self.seed)
        # the algorithm's own switches (biased, verbose, cache_ratings): Surprise tests them
        # for truth, so "false" from a command line would silently mean True
        defaults = inspect.signature(getattr(_surprise(), self._algo_class)).parameters
        for key, value in self.params.items():
            if key in defaults and isinstance(defaults[key].default, bool):
                check_bool(key, value)
        super()._check_params()

    @classmethod
    def _param_names(cls) -> list[str]:
        return [n for n in super()._param_names() if n != "algo"]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {**super().get_params(deep), **self.params}

    def set_params(self, **params: Any) -> _NamedSurprise:
        own = set(self._param_names())
        for key, value in params.items():
            key = self._renamed_params.get(key, key)
            if key in own:
                setattr(self, key, value)
            else:
                self.params[key] = value
        return self

    def __repr__(self) -> str:
        base = super().__repr__()
        extra = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        if not extra:
            return base
        return base[:-1] + (", " if not base.endswith("()") else "") + extra + ")"

    # -- persistence ---------------------------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        return {k: v for k, v in super()._get_state().items() if k != "params"}

    # -- the wrapped model ---------------------------------------------------------------------

    def _make_algo(self) -> Any:
        cls = getattr(_surprise(), self._algo_class)
        # a deep copy: Surprise adds keys to the option dicts it is given (sim_options'
        # user_based), which would change the caller's dicts and this model's get_params()
        params = copy.deepcopy(self.params)
        if self.seed is not None and "random_state" in inspect.signature(cls).parameters:
            params["random_state"] = self.seed  # (BaselineOnly, SlopeOne, the KNNs draw nothing)
        if self._algo_class.startswith("KNN") or self._algo_class == "BaselineOnly":
            params.setdefault("verbose", False)  # their default prints on every refit
        try:
            return cls(**params)
        except TypeError as exc:
            raise ValueError(f"invalid parameters for surprise.{self._algo_class}: {exc}") \
                from exc

    def _algo_class_of(self) -> type | None:
        return getattr(_surprise(), self._algo_class)

    def _seeded(self) -> bool:
        return self.seed is not None


class SurpriseSVD(_NamedSurprise):
    """Surprise's SVD, refit periodically, with new users and items folded in between refits.

    Keyword arguments other than the strategy parameters of :class:`SurpriseAdapter` go to
    ``surprise.SVD`` (``n_factors``, ``n_epochs``, ``lr_all``, ``reg_all``...); ``seed`` is
    passed as its ``random_state``.

    Examples
    --------
    >>> from recinc_plugins.data import synthetic_stream
    >>> from recinc_plugins.adapters.surprise import SurpriseSVD
    >>> events = synthetic_stream(n_events=500, n_users=40, n_items=60, seed=0)
    >>> model = SurpriseSVD(n_factors=5, seed=0, refit_every=None).fit(events[:400])
    >>> model = model.partial_fit(events[400:])  # folded in, not refit
    >>> model.n_refits_, model.score(events["user"][450], events["item"][450]).shape
    (1, (1,))
    """

    capabilities = Capabilities(explicit=True, implicit=False, update="refit", context=True)
    _algo_class = "SVD"


class SurpriseSVDpp(_NamedSurprise):
    """Surprise's SVD++, refit periodically, with fold-in between refits."""

    capabilities = Capabilities(explicit=True, implicit=False, update="refit", context=True)
    _algo_class = "SVDpp"


class SurpriseNMF(_NamedSurprise):
    """Surprise's NMF, refit periodically, with (non-negative) fold-in between refits."""

    capabilities = Capabilities(explicit=True, implicit=False, update="refit", context=True)
    _algo_class = "NMF"


class SurpriseBaselineOnly(_NamedSurprise):
    """Surprise's BaselineOnly, refit periodically, with biases folded in between refits."""

    _algo_class = "BaselineOnly"


class SurpriseKNNBasic(_NamedSurprise):
    """Surprise's KNNBasic, refit periodically (no fold-in: new users get the fallback)."""

    _algo_class = "KNNBasic"


class SurpriseKNNWithMeans(_NamedSurprise):
    """Surprise's KNNWithMeans, refit periodically."""

    _algo_class = "KNNWithMeans"


class SurpriseKNNWithZScore(_NamedSurprise):
    """Surprise's KNNWithZScore, refit periodically."""

    _algo_class = "KNNWithZScore"


class SurpriseKNNBaseline(_NamedSurprise):
    """Surprise's KNNBaseline, refit periodically."""

    _algo_class = "KNNBaseline"


class SurpriseSlopeOne(_NamedSurprise):
    """Surprise's SlopeOne, refit periodically."""

    _algo_class = "SlopeOne"


class SurpriseCoClustering(_NamedSurprise):
    """Surprise's CoClustering, refit periodically."""

    _algo_class = "CoClustering"


# -- fold-in solvers ---------------------------------------------------------------------------


def _rows_of(column: np.ndarray, keys: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(key, positions of key in column)`` for each of ``keys`` present, in one pass."""
    rows = np.flatnonzero(np.isin(column, keys))
    if not rows.size:
        return []
    rows = rows[np.argsort(column[rows], kind="stable")]
    found, starts = np.unique(column[rows], return_index=True)
    return list(zip(found.tolist(), np.split(rows, starts[1:]), strict=True))


def _ridge(x: np.ndarray, target: np.ndarray, reg_b: float, reg_f: float,
           biased: bool) -> tuple[float, np.ndarray]:
    """Least squares for ``target ~ b + x @ f``, each parameter penalised by reg * n ratings.

    The penalty scales with the number of ratings because Surprise's SGD penalises every
    parameter once per rating it sees.
    """
    n = x.shape[0]
    design = np.hstack([np.ones((n, 1)), x]) if biased else x
    penalty = np.full(design.shape[1], reg_f * n)
    if biased:
        penalty[0] = reg_b * n
    gram = design.T @ design + np.diag(penalty)
    try:
        solution = np.linalg.solve(gram, design.T @ target)
    except np.linalg.LinAlgError:  # no penalty and too few ratings: the minimum-norm solution
        solution = np.linalg.lstsq(gram, design.T @ target, rcond=None)[0]
    return (float(solution[0]), solution[1:]) if biased else (0.0, solution)


def _nmf_fold(x: np.ndarray, target: np.ndarray, reg_f: float, biased: bool, reg_b: float,
              low: float, high: float, n_iter: int = 50) -> tuple[float, np.ndarray]:
    """NMF's multiplicative update for one side's factors, the other side fixed.

    Starts from the middle of NMF's initialisation range, so factors stay non-negative.
    """
    n = x.shape[0]
    bias = float(target.mean() / (1 + reg_b)) if biased else 0.0
    target = target - bias
    factors = np.full(x.shape[1], (low + high) / 2)
    numerator = x.T @ target
    for _ in range(n_iter):
        denominator = x.T @ (x @ factors) + reg_f * n * factors
        factors = np.where(denominator > 0, factors * np.maximum(numerator, 0) /
                           np.where(denominator > 0, denominator, 1), 0.0)
    return bias, factors


# -- the wrapped model -------------------------------------------------------------------------


def _surprise() -> Any:
    return require("surprise", "surprise")


def _fold_kind(algo: Any) -> str | None:
    """Which fold-in and vectorised scoring ``algo`` supports (exact class), or None."""
    surprise = _surprise()
    return {
        surprise.SVD: "svd",
        surprise.SVDpp: "svdpp",
        surprise.NMF: "nmf",
        surprise.BaselineOnly: "baseline",
    }.get(type(algo))


def _by_rank(rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The positions of ``rows`` grouped by row (stable), and for each k the positions holding
    each row's k-th entry: a row appears at most once per group, so a sequential pass over
    every row's entries runs as one vectorised step per k."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    lengths = np.diff(np.r_[starts, rows.size])
    rank = np.arange(rows.size) - np.repeat(starts, lengths)
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(lengths.max()) + 1))
    return order, np.split(by_rank, bounds[1:])


def _sgd_epoch(rows: np.ndarray, others: np.ndarray, ratings: np.ndarray, mu: float,
               biased: bool, own: tuple, other: tuple, rates: tuple) -> None:
    """One pass of Surprise's SVD step over each row's ratings in order, updating only the
    rows' bias and factors (``own``, in place); ``other`` is held fixed. ``rates``: learning
    rates and penalties of the bias and the factors."""
    if not rows.size:
        return
    bias, factors = own
    other_bias, other_factors = other
    lr_b, lr_f, reg_b, reg_f = rates
    order, groups = _by_rank(rows)
    rows, others, ratings = rows[order], others[order], ratings[order]
    for group in groups:
        r, o = rows[group], others[group]
        f, g = factors[r], other_factors[o]
        err = ratings[group] - np.einsum("ij,ij->i", f, g)
        if biased:
            b = bias[r]
            err -= mu + b + other_bias[o]
            bias[r] = b + lr_b * (err - reg_b * b)
        factors[r] = f + lr_f * (err[:, None] * g - reg_f * f)


def _nmf_epoch(rows: np.ndarray, others: np.ndarray, ratings: np.ndarray, mu: float,
               biased: bool, own: tuple, other: tuple, rates: tuple) -> None:
    """One pass of Surprise's NMF update for the rows' factors (multiplicative, from the
    estimates at the start of the pass) and, when biased, SGD steps for their biases;
    ``other`` is held fixed. ``rates``: bias learning rate, (unused), bias and factor
    penalties."""
    if not rows.size:
        return
    bias, factors = own
    other_bias, other_factors = other
    lr_b, _, reg_b, reg_f = rates
    g = other_factors[others]
    est = np.einsum("ij,ij->i", factors[rows], g)
    if biased:
        est += mu + bias[rows] + other_bias[others]
    touched = np.unique(rows)
    num = np.zeros((factors.shape[0], factors.shape[1]))
    den = np.zeros_like(num)
    np.add.at(num, rows, g * ratings[:, None])
    np.add.at(den, rows, g * est[:, None])
    den[touched] += np.bincount(rows, minlength=factors.shape[0])[touched, None] * reg_f * \
        factors[touched]
    f = factors[touched]
    safe = (f != 0) & (den[touched] != 0)
    factors[touched] = np.where(safe, f * num[touched] / np.where(safe, den[touched], 1.0), f)
    if biased:
        _sgd_epoch(rows, others, ratings, mu, True, (bias, np.zeros((bias.size, 0))),
                   (other_bias, np.zeros((other_bias.size, 0))), (lr_b, 0.0, reg_b, 0.0))


def _cut_trainset(trainset: Any, users: np.ndarray, items: np.ndarray,
                  rating_scale: tuple[float, float] | None) -> tuple[Any, np.ndarray, np.ndarray]:
    """``trainset`` without ``users`` and ``items`` (inner ids), their ratings, and any user or
    item left with no rating: a new Trainset, inner ids renumbered in their old order, the
    raw-id maps holding the kept ids only, the global mean and (unless ``rating_scale`` is
    given) the rating scale those of the kept ratings. Returns it with the old -> new inner
    id maps (-1: gone) of users and items."""
    drop_u = np.zeros(trainset.n_users, dtype=bool)
    drop_u[users] = True
    drop_i = np.zeros(trainset.n_items, dtype=bool)
    drop_i[items] = True
    gone_i = drop_i.tolist()
    ur = {u: [(i, r) for (i, r) in ratings if not gone_i[i]]
          for u, ratings in trainset.ur.items() if not drop_u[u]}
    keep_u = np.zeros(trainset.n_users, dtype=bool)
    keep_u[[u for u, ratings in ur.items() if ratings]] = True
    keep_i = np.zeros(trainset.n_items, dtype=bool)
    for ratings in ur.values():
        keep_i[[i for (i, _) in ratings]] = True
    new_u = np.where(keep_u, np.cumsum(keep_u) - 1, -1)
    new_i = np.where(keep_i, np.cumsum(keep_i) - 1, -1)
    to_u, to_i = new_u.tolist(), new_i.tolist()
    new_ur: defaultdict = defaultdict(list)
    new_ir: defaultdict = defaultdict(list)
    for u, ratings in ur.items():
        if ratings:
            new_ur[to_u[u]] = [(to_i[i], r) for (i, r) in ratings]
    for i, ratings in trainset.ir.items():
        if keep_i[i]:
            new_ir[to_i[i]] = [(to_u[u], r) for (u, r) in ratings if not drop_u[u]]
    n_ratings = sum(len(ratings) for ratings in new_ur.values())
    scale = rating_scale
    if scale is None and n_ratings:
        values = [r for ratings in new_ur.values() for (_, r) in ratings]
        scale = (float(min(values)), float(max(values)))
    raw_users = {raw: to_u[inner] for raw, inner in trainset._raw2inner_id_users.items()
                 if keep_u[inner]}
    raw_items = {raw: to_i[inner] for raw, inner in trainset._raw2inner_id_items.items()
                 if keep_i[inner]}
    cut = _surprise().Trainset(new_ur, new_ir, int(keep_u.sum()), int(keep_i.sum()), n_ratings,
                               tuple(scale) if scale is not None else trainset.rating_scale,
                               raw_users, raw_items)
    return cut, new_u, new_i


def _check_options(algo: Any) -> None:
    """Refuse ``sim_options`` / ``bsl_options`` that Surprise would fail on (or ignore) at fit
    time, naming the bad option; Surprise itself only notices inside ``fit``. Only Surprise's
    own algorithms are checked: a user's subclass may read options of its own."""
    if not type(algo).__module__.startswith("surprise."):
        return
    for attr, known in (("sim_options", _SIM_OPTIONS), ("bsl_options", _BSL_OPTIONS)):
        options = getattr(algo, attr, None)
        if options is None:
            continue
        if not isinstance(options, dict):
            raise ValueError(f"{attr} must be a dict, got {type(options).__name__}")
        unknown = sorted(str(key) for key in options if key not in known)
        if unknown:
            raise ValueError(f"{attr} has unknown option(s) {unknown}; Surprise reads {known}")
    user_based = (getattr(algo, "sim_options", None) or {}).get("user_based", True)
    if not isinstance(user_based, (bool, np.bool_)):
        raise ValueError(f"sim_options['user_based'] must be True or False, got {user_based!r}")
    name = (getattr(algo, "sim_options", None) or {}).get("name", "msd")
    if not isinstance(name, str) or name.lower() not in _SIM_NAMES:
        raise ValueError(f"sim_options['name'] must be one of {_SIM_NAMES}, got {name!r}")
    method = (getattr(algo, "bsl_options", None) or {}).get("method", "als")
    if method not in _BSL_METHODS:
        raise ValueError(f"bsl_options['method'] must be one of {_BSL_METHODS}, got {method!r}")
