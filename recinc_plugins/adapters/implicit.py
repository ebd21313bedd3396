"""implicit's ALS, BPR and logistic MF, grown with new users and items and updated per step.

implicit trains on a whole user x item matrix and has no way to add a user or an item to a
trained model. These adapters own the growing matrix of everything learned so far and keep
the wrapped model's factor matrices in step with the id maps:

- :class:`ImplicitALS` re-solves the users and items a step touched, each against its full
  history (``partial_fit_users`` / ``partial_fit_items``), with an optional warm-started full
  refit every ``refit_every`` events.
- :class:`ImplicitBPR` and :class:`ImplicitLMF` have no partial fit; their factor matrices
  carry bias columns (BPR +1, LMF +2), grown with the values implicit's own initialisation
  gives them, and training continues warm from the current factors for a few epochs per step:
  on the whole history, or, for steps of fewer than ``SMALL_STEP`` events, on the step and a
  bounded sample of earlier events.

Scoring with context (a user's recent events, not learned): ALS re-solves the user as
``recalculate_user`` would, for all rows in one batched solve; BPR and LMF fold the user in
with a few steps of their own loss, the items fixed (docs/implicit.md).

A step's work is proportional to the step at small steps (a one-event loop costs the same per
event late in a stream as early); from ``SMALL_STEP`` events up the adapters do what gave the
published 1,000-event numbers.

``forget(users, items)`` drops the ids' entries from the history, resets their factor rows (and
optimiser state) to what implicit gives a row without data, then re-trains the rows that lost
events from what remains: ALS re-solves them exactly (``forgets_exactly``); BPR and LMF train
them for ``update_iterations`` passes (approximate; the gap is measured in docs/implicit.md).

The wrapped model is ``adapter.model_`` (implicit's CPU class), usable with implicit's own API.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .._optional import require
from ..base import Batch, Capabilities, IncrementalRecommender, Newcomer
from ..context import Context
from ..forget import Removed
from ..growth import grown
from ..params import check_bool, check_choice, check_int, check_number, check_seed
from ..sparse import concat_ranges
from ._context import (
    check_context,
    hashed,
    inverse_cdf,
    positives,
    row_keys,
    running_grams,
    uniform,
    weighted_grams,
)
from ._history import History

__all__ = ["SMALL_STEP", "ImplicitALS", "ImplicitBPR", "ImplicitLMF"]

_CONFIDENCE = ("linear", "log", "binary")
_UPDATE_ON = ("auto", "sample", "touched", "all")
#: a step of fewer events is small: ``update_on="auto"`` trains BPR and LMF on a sample and
#: ``item_refresh="auto"`` puts ALS's items on a schedule (the defaults for larger steps,
#: those of the published 1,000-event numbers, are kept from there up)
SMALL_STEP = 1000
#: ALS's ``item_refresh`` at small steps (measured in docs/implicit.md)
_ITEM_REFRESH = 0.1
#: events per mini-batch when BPR re-trains the rows a ``forget`` touched
_FORGET_BATCH = 256
#: a fold-in handles at most about this many (row, item) cells at once
_FOLD_CELLS = 2**21


class _ImplicitMF(IncrementalRecommender):
    """Shared machinery: the history matrix, growth, seeding, scoring by dot products."""

    extra: ClassVar[str | None] = "implicit"
    persisted_types: ClassVar[tuple[type, ...]] = (History,)
    #: whether the item x user copy of the history is kept (ALS re-solves items from it)
    _keeps_item_users: ClassVar[bool] = False
    _renamed_params: ClassVar[dict[str, str]] = {"random_state": "seed"}

    # -- parameters and validation -------------------------------------------------------------

    #: what ``"auto"`` stands for, per parameter: (for fits and steps of at least
    #: ``SMALL_STEP`` events, for smaller steps)
    _AUTO: ClassVar[dict[str, tuple[float, float]]] = {}

    def _check_common(self) -> None:
        check_int("factors", self.factors)
        check_int("iterations", self.iterations)
        self._check_auto("regularization")
        check_int("num_threads", self.num_threads, 0)
        check_seed("seed", self.seed)

    def _check_auto(self, name: str, *, strict: bool = False) -> None:
        value = getattr(self, name)
        if name in self._AUTO and isinstance(value, str) and value == "auto":
            return
        try:
            check_number(name, value, strict=strict)
        except ValueError:
            if name not in self._AUTO:
                raise
            raise ValueError(f"{name} must be 'auto' or a finite number {'>' if strict else '>='}"
                             f" 0, got {value!r}") from None

    def _value(self, name: str, small: bool = False) -> float:
        """Parameter ``name``, with ``"auto"`` resolved for a small step or not."""
        value = getattr(self, name)
        if isinstance(value, str):
            return self._AUTO[name][small]
        return value

    def _check_gpu(self) -> None:
        check_bool("use_gpu", self.use_gpu)
        if self.use_gpu and not _implicit().gpu.HAS_CUDA:
            raise ValueError(
                "use_gpu=True, but implicit has no CUDA support here (it needs a CUDA device, "
                "implicit's CUDA build and a matching rmm-cu13: pip install "
                "'recinc-plugins[implicit-gpu]'; see the warning `import implicit.gpu` gives); "
                "use use_gpu=False"
            )

    # -- growth --------------------------------------------------------------------------------

    def _init_model(self) -> None:
        self.rng_ = np.random.default_rng(self.seed)
        self.history_ = History()
        self.item_history_ = History() if self._keeps_item_users else None
        self.model_ = self._new_model()
        self.dead_items_ = np.empty(0, dtype=np.int64)  # forgotten items' indices, sorted

    @property
    def user_items_(self) -> sp.csr_matrix:
        """Users x items CSR (float32) of the summed strengths learned so far."""
        return self.history_.tocsr()

    @property
    def item_users_(self) -> sp.csr_matrix | None:
        """Its items x users transpose (ALS only, else None)."""
        return None if self.item_history_ is None else self.item_history_.tocsr()

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "user_items_" in state:  # written before History: the matrices themselves
            state["history_"] = History.from_csr(state.pop("user_items_"))
            item_users = state.pop("item_users_", None)
            state["item_history_"] = None if item_users is None else History.from_csr(
                item_users)
        if self._keeps_item_users and "item_solved_" not in state:
            state["item_solved_"] = np.asarray(state["item_counts_"]).copy()
        super()._set_state(state)

    def _grow(self, n_users: int, n_items: int) -> None:
        self.history_.resize(n_users, n_items)
        if self.item_history_ is not None:
            self.item_history_.resize(n_items, n_users)
        if not self._trained:
            return
        # items before users: implicit's solvers index item factors without bounds checks
        model = self.model_
        model.item_factors = grown(model.item_factors, n_items, new_rows=self._new_items)
        model.user_factors = grown(model.user_factors, n_users, new_rows=self._new_users)
        model._user_norms = model._item_norms = None

    def _new_users(self, n: int, d: int) -> np.ndarray:
        return _zeros(n, d)

    def _new_items(self, n: int, d: int) -> np.ndarray:
        return _zeros(n, d)

    # a forgotten row is what implicit's fit leaves a row without data (for ALS, zeros)
    def _blank_users(self, n: int, d: int) -> np.ndarray:
        return _zeros(n, d)

    def _blank_items(self, n: int, d: int) -> np.ndarray:
        return _zeros(n, d)

    # -- learning ------------------------------------------------------------------------------

    @property
    def _trained(self) -> bool:
        """The wrapped model has factors (after the first non-empty batch)."""
        return getattr(self, "model_", None) is not None and self.model_.user_factors is not None

    def _check_batch(self, batch: Batch) -> None:
        # implicit stores each (user, item) strength as a positive entry of a sparse matrix:
        # a zero or negative one would vanish from it (scipy drops zero sums) or invert it
        values = batch.values
        bad = values <= 0
        if bad.any():
            column = "rating" if batch.ratings is not None else "weight"
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{type(self).__name__} learns from positive strengths; {rows.size} event(s) "
                f"have {column} <= 0 (positions {rows[:10].tolist()}): drop them or map them "
                "to a positive strength"
            )

    def _fit(self, batch: Batch) -> None:
        self._add_history(batch)
        if len(batch):  # an empty fit leaves the model untrained: the next batch trains fully
            self._train_full(warm=False)

    def _partial_fit(self, batch: Batch) -> None:
        self._add_history(batch)
        if not self._trained:
            self._train_full(warm=False)
        else:
            self._update(batch)

    def _add_history(self, batch: Batch) -> None:
        """Add a batch's strengths to the history (and its item x user copy, when kept):
        amortised O(1) per event (see :class:`~recinc_plugins.adapters._history.History`)."""
        values = batch.values.astype(np.float32)
        self.history_.add(batch.users, batch.items, values)
        if self.item_history_ is not None:
            self.item_history_.add(batch.items, batch.users, values)

    def _confidence(self, csr: sp.csr_matrix) -> sp.csr_matrix:
        return csr

    def _matrix(self) -> sp.csr_matrix:
        """Everything learned so far as implicit wants it: users x items, float32, confidences."""
        return self._confidence(self.history_.tocsr())

    def _next_seed(self) -> int:
        # a fresh seed per call: implicit re-seeds its samplers from random_state on every fit
        return int(self.rng_.integers(2**31 - 1))

    def _train_full(self, *, warm: bool) -> None:
        """Fit the wrapped model on the whole history, from its current factors if ``warm``."""
        model = self.model_
        if not warm:
            model.user_factors = model.item_factors = None
        model.random_state = self._next_seed()
        model.iterations = self.iterations
        matrix = self._matrix()
        with _blas_single_thread():
            if getattr(self, "use_gpu", False):
                self.model_ = self._fit_on_gpu(model, matrix)
            else:
                model.fit(matrix, show_progress=False)
        self._events_at_refit = self.n_events_

    def _fit_on_gpu(self, model: Any, matrix: sp.csr_matrix) -> Any:
        gpu_model = model.to_gpu()
        gpu_model.fit(matrix, show_progress=False)
        cpu_model = gpu_model.to_cpu()
        cpu_model.num_threads = model.num_threads
        return cpu_model

    def _update(self, batch: Batch) -> None:
        raise NotImplementedError

    def _negatives(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Items drawn uniformly from the catalogue, forgotten ones left out (so their rows
        stay blank); the same draws as ``rng_.integers(n_items)`` while none is forgotten."""
        n = self.model_.item_factors.shape[0]
        dead = getattr(self, "dead_items_", None)
        if dead is None or dead.size == 0:
            return self.rng_.integers(n, size=size)
        ranks = self.rng_.integers(max(n - dead.size, 1), size=size)
        # the rank-th live item: its rank plus the forgotten items before it
        return ranks + np.searchsorted(dead - np.arange(dead.size), ranks, side="right")

    # -- forgetting ----------------------------------------------------------------------------

    def _forget(self, removed: Removed) -> None:
        users, items = self._forget_rows(removed)
        if self._trained and (users.size or items.size):
            self._retrain_touched(users, items)

    def _forget_rows(self, removed: Removed) -> tuple[np.ndarray, np.ndarray]:
        """Drop the forgotten ids' entries from the history (and its item x user copy), reset
        their factor rows to blank rows and drop implicit's cached norms and Gram matrices
        (sums over every row); return the users and the items that lost events (sorted)."""
        rows, cols, _ = self.history_.drop(removed.users, removed.items)
        if self.item_history_ is not None:
            self.item_history_.drop(removed.items, removed.users)
        self.dead_items_ = np.flatnonzero(self.item_index_.dead)
        if self._trained:
            model = self.model_
            d = model.user_factors.shape[1]
            model.user_factors[removed.users] = self._blank_users(removed.users.size, d)
            model.item_factors[removed.items] = self._blank_items(removed.items.size, d)
            model._user_norms = model._item_norms = None
            for cache in ("_XtX", "_YtY"):  # ALS's Gram matrices
                if getattr(model, cache, None) is not None:
                    setattr(model, cache, None)
        return np.setdiff1d(rows, removed.users), np.setdiff1d(cols, removed.items)

    def _retrain_touched(self, users: np.ndarray, items: np.ndarray) -> None:
        """Re-train the rows of ``users`` and ``items`` (which lost events to a ``forget``)
        on the remaining history."""
        raise NotImplementedError

    def _entries_of(self, users: np.ndarray, items: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, values)`` of the history's entries in the rows of ``users`` or the
        columns of ``items``."""
        csr = self.history_.tocsr()
        entry_rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        keep = (_mask(users, csr.shape[0])[entry_rows]
                | _mask(items, csr.shape[1])[csr.indices])
        return entry_rows[keep], csr.indices[keep].astype(np.int64), csr.data[keep]

    # -- scoring -------------------------------------------------------------------------------

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        if not self._trained:
            return np.zeros((users.size, self.n_items))
        return self.model_.user_factors[users] @ self.model_.item_factors.T

    def item_vectors(self) -> np.ndarray | None:
        if not self._trained or type(self)._score_users is not _ImplicitMF._score_users:
            return None
        return self.model_.item_factors

    def user_vectors(self, users: np.ndarray, context: Context | None = None) -> np.ndarray:
        if context is None:
            return self.model_.user_factors[users]
        return self._fold_in(users, context)

    def _score_in_context(self, users: np.ndarray, context: Context) -> np.ndarray:
        """``user_vectors(users, context) @ item_factors.T``, except for an unknown user (-1)
        without context the model has learned about (:meth:`context_rows`), answered by the
        cold-start fallback."""
        users = np.asarray(users, dtype=np.int64)
        check_context(users, context, self.n_users, self.n_items)
        if not self._trained:
            return np.zeros((users.size, self.n_items))
        cold = (users < 0) & ~self.context_rows(users, context)
        if not cold.any():
            return self._fold_in(users, context) @ self.model_.item_factors.T
        scores = np.empty((users.size, self.n_items))
        scores[cold] = self._fallback_scores(int(cold.sum()))
        rows = np.flatnonzero(~cold)
        scores[rows] = self._fold_in(users[rows], context.take(rows)) @ \
            self.model_.item_factors.T
        return scores

    def _fold_in(self, users: np.ndarray, context: Context) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not use context")

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if not self._trained:
            return np.zeros(users.size)
        user_factors = self.model_.user_factors[users]
        item_factors = self.model_.item_factors[items]
        return np.einsum("ij,ij->i", user_factors, item_factors, dtype=np.float64)


class ImplicitALS(_ImplicitMF):
    """implicit's Alternating Least Squares, updated by re-solving the rows a step touched.

    ``partial_fit`` grows the factor matrices (items before users; new rows start at zero, as
    implicit's own ``partial_fit_users`` does), then re-solves every touched user against its
    full history and touched items against their full lists of users, exactly (Cholesky),
    with the other side fixed: every touched item at steps of ``SMALL_STEP`` (1,000) events
    or more; below, an item once its events grew by ``item_refresh`` since its last solve, so
    a one-event step costs the same late in a stream as early. Every ``refit_every`` events a
    full ALS run over the whole history, warm-started from the current factors, refreshes the
    rest.

    ``forget`` is exact in this sense: the forgotten ids' entries leave both histories, their
    factor rows become zero (implicit's solution for a row without data, so they drop out of
    the Gram matrices), and every user and item that lost events is re-solved from its
    remaining history (users first, then items), so each re-solved row is the least-squares
    solution it would have if the forgotten events had never been learned, given the other
    side's current factors. Rows that lost no events are not re-solved (see docs/implicit.md,
    "Forgetting", for how far the model then is from one refitted on the kept events).

    Parameters
    ----------
    factors
        Latent dimension.
    regularization
        L2 regularisation of the least-squares solves; ``"auto"``: 3 at every step size
        (chosen on the first half of ml-100k and the synthetic stream; 30, its value for fits
        and steps of ``SMALL_STEP`` events or more until 2026-11, pulled the factors towards
        popularity: ``docs/implicit.md``).
    alpha, confidence
        How an event's strength ``w`` (its ``weight`` or ``rating``, summed over repeats)
        becomes implicit's confidence: ``"linear"`` gives ``1 + alpha * w``, ``"log"`` gives
        ``1 + alpha * log1p(w)``, ``"binary"`` gives ``1 + alpha`` whatever ``w``.
    iterations
        ALS sweeps of a full fit (the first batch, ``fit``, and each periodic refit).
    refresh_passes
        Rounds of (touched users, then touched items) re-solving per ``partial_fit``.
    item_refresh
        Re-solve a touched item once its events since its last solve reach this fraction of
        the events it had then (at least one; 0: every touched item every step); ``"auto"``:
        0 at steps of at least ``SMALL_STEP`` events, 0.1 at smaller ones.
    refit_every
        Run a warm-started full refit once this many events have arrived since the last one;
        None never refits (touched rows only).
    context_weight
        Scoring with context (``compare(..., context="fresh")``): a user's factors are
        re-solved from its history plus its recent events, item factors fixed (implicit's
        ``recalculate_user``); each recent event's confidence counts this many times (4:
        chosen on the first half of ml-100k).
    use_gpu
        Run full fits on implicit's CUDA implementation (needs a CUDA build of implicit); the
        touched-row updates and scoring stay on the CPU model.
    cold_start
        How unknown users are answered (flagged ``cold``): ``"newcomer"`` (what new users
        picked first lately), ``"popularity"`` or ``Newcomer(...)``; see ``docs/interface.md``.
    num_threads
        Threads for implicit (0: all cores).
    seed
        Seed for the initial factors and refits (``random_state`` is a deprecated alias).

    Attributes
    ----------
    model_
        The wrapped ``implicit.cpu.als.AlternatingLeastSquares``; its ``user_factors`` and
        ``item_factors`` rows are this adapter's user and item indices.
    history_, item_history_
        The summed event strengths (float32), users x items and items x users, as
        :class:`~recinc_plugins.adapters._history.History`; ``user_items_`` and
        ``item_users_`` are them as CSR matrices.
    item_solved_
        Each item's event count when it was last solved.

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.adapters.implicit import ImplicitALS
    >>> events = pd.DataFrame({"user": ["a", "a", "b", "b", "c"],
    ...                        "item": ["x", "y", "x", "z", "y"]})
    >>> model = ImplicitALS(factors=4, seed=0, num_threads=1).fit(events)
    >>> model.partial_fit(pd.DataFrame({"user": ["d", "c"], "item": ["x", "w"]}))
    ImplicitALS(factors=4, num_threads=1, seed=0)
    >>> model.model_.user_factors.shape, model.model_.item_factors.shape
    ((4, 4), (4, 4))
    >>> model.recommend(["d"], k=2).items.shape
    (1, 2)
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="touched", context=True)
    _keeps_item_users = True
    _AUTO: ClassVar[dict[str, tuple[float, float]]] = {"regularization": (3.0, 3.0)}

    # -- parameters and validation -------------------------------------------------------------

    def __init__(
        self,
        factors: int = 16,
        regularization: float | str = "auto",
        alpha: float = 1.0,
        confidence: str = "binary",
        iterations: int = 15,
        refresh_passes: int = 1,
        item_refresh: float | str = "auto",
        refit_every: int | None = None,
        context_weight: float = 4.0,
        use_gpu: bool = False,
        cold_start: str | Newcomer = "newcomer",
        num_threads: int = 0,
        seed: int | None = None,
        **renamed: Any,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.confidence = confidence
        self.iterations = iterations
        self.refresh_passes = refresh_passes
        self.item_refresh = item_refresh
        self.refit_every = refit_every
        self.context_weight = context_weight
        self.use_gpu = use_gpu
        self.cold_start = cold_start
        self.num_threads = num_threads
        self.seed = seed
        self._accept_renamed(renamed)

    def _check_params(self) -> None:
        self._check_common()
        check_number("alpha", self.alpha)
        check_number("context_weight", self.context_weight)
        check_choice("confidence", self.confidence, _CONFIDENCE)
        check_int("refresh_passes", self.refresh_passes)
        if not (isinstance(self.item_refresh, str) and self.item_refresh == "auto"):
            try:
                check_number("item_refresh", self.item_refresh)
            except ValueError:
                raise ValueError("item_refresh must be 'auto' or a finite number >= 0, got "
                                 f"{self.item_refresh!r}") from None
        check_int("refit_every", self.refit_every, optional=True)
        self._check_gpu()

    # -- learning ------------------------------------------------------------------------------

    def _init_model(self) -> None:
        super()._init_model()
        self.item_solved_ = np.zeros(0)  # each item's event count at its last solve

    def _confidence(self, csr: sp.csr_matrix) -> sp.csr_matrix:
        return _apply_confidence(csr, self.confidence, self.alpha)

    def _fold_in(self, users: np.ndarray, context: Context) -> np.ndarray:
        """The users' factors re-solved from their history plus their context (unknown users,
        -1: from the context alone), item factors fixed: the least-squares solution of
        implicit's ``recalculate_user`` for the row "history confidences + ``context_weight``
        x context confidences", without building that row or calling implicit per row.

        implicit solves ``(YtY + reg I + sum_i (c_i - 1) y_i y_i^T) x = sum_{c_i > 0} c_i y_i``
        over a row's entries (a negative ``c`` adds ``(|c| - 1) y y^T`` and nothing to the
        right side; an entry summing to 0 is no entry; an empty row is 0). The history's part
        is summed once per distinct user; a row adds what its context items change (an item
        in both changes its history entry: one entry of the summed confidence), and rows of
        the same user, whose contexts mostly overlap, are summed as running differences from
        the user's previous row; then every row is solved at once (float64, one batched
        solve). Equal to ``recalculate_user`` to float32 precision; nothing is learned."""
        users = np.asarray(users, dtype=np.int64)
        check_context(users, context, self.n_users, self.n_items)
        model = self.model_
        factors = model.item_factors
        n, d, n_items = users.size, factors.shape[1], factors.shape[0]
        distinct, inverse = np.unique(users, return_inverse=True)
        inverse = inverse.reshape(-1)
        # the history's part, once per distinct user (none for -1)
        hist = self._confidence(self.history_.rows(np.maximum(distinct, 0)))
        h_rows = np.repeat(np.arange(distinct.size), np.diff(hist.indptr))
        mine = distinct[h_rows] >= 0
        h_rows, h_items = h_rows[mine], hist.indices[mine].astype(np.int64)
        h_conf = hist.data[mine].astype(np.float64)
        h_lhs = weighted_grams(h_rows, h_items, _lhs(h_conf), factors, distinct.size)
        h_rhs = sp.csr_matrix((_rhs(h_conf), (h_rows, h_items)),
                              shape=(distinct.size, n_items)) @ factors.astype(np.float64)
        h_count = np.bincount(h_rows, minlength=distinct.size)
        # the context's entries, summed per (row, item) as the sparse row would sum them,
        # and what each changes in the row's equations
        recent = sp.csr_matrix((context.values.astype(np.float32), context.items, context.ptr),
                               shape=(n, n_items))
        recent.sum_duplicates()
        c_rows = np.repeat(np.arange(n), np.diff(recent.indptr))
        c_items = recent.indices.astype(np.int64)
        c_conf = (float(self.context_weight)
                  * self._confidence(recent).data.astype(np.float32)).astype(np.float64)
        h_keys = h_rows * n_items + h_items  # sorted: canonical rows
        c_keys = inverse[c_rows] * n_items + c_items
        at = np.minimum(np.searchsorted(h_keys, c_keys), max(h_keys.size - 1, 0))
        in_hist = (h_keys[at] == c_keys) if h_keys.size else np.zeros(c_keys.size, bool)
        before = np.where(in_hist, h_conf[at] if h_keys.size else 0.0, 0.0)
        total = before + c_conf
        after = total != 0
        lhs_change = np.where(after, _lhs(total), 0.0) - np.where(in_hist, _lhs(before), 0.0)
        rhs_change = np.where(after, _rhs(total), 0.0) - np.where(in_hist, _rhs(before), 0.0)
        count = h_count[inverse] + np.bincount(c_rows, after.astype(np.int64) -
                                               in_hist.astype(np.int64), minlength=n)
        rhs = h_rhs[inverse] + sp.csr_matrix((rhs_change, (c_rows, c_items)),
                                             shape=(n, n_items)) @ factors.astype(np.float64)
        # implicit's own cached YtY (implicit drops it when the items move; forget does too):
        # computing it afresh here rounds differently after the factors grow, enough to move
        # ml-100k's fresh recall in the fourth digit (0.1458 -> 0.1455)
        h_lhs += (model.YtY.astype(np.float64) + float(model.regularization) * np.eye(d)).ravel()
        lhs = running_grams(users, c_rows, c_items, lhs_change, factors, h_lhs, inverse)
        # (a row without entries solves to 0, as implicit leaves it: its matrix is YtY + reg I)
        out = np.linalg.solve(lhs.reshape(n, d, d), rhs[:, :, None])[:, :, 0]
        out[count == 0] = 0.0
        return out.astype(factors.dtype)

    def _update(self, batch: Batch) -> None:
        if self.refit_every is not None and (
            self.n_events_ - self._events_at_refit >= self.refit_every
        ):
            self._train_full(warm=True)
            return
        users = np.unique(batch.users)
        items = self._due_items(batch)
        self.model_.regularization = self._value("regularization", len(batch) < SMALL_STEP)
        # confidences of the touched rows only: the whole matrix is not needed here
        rows = self._confidence(self.history_.rows(users))
        item_users = self._confidence(self.item_history_.rows(items)) if items.size else None
        with _blas_single_thread():
            for _ in range(self.refresh_passes):
                self.model_.partial_fit_users(users, rows)
                if item_users is not None:
                    self.model_.partial_fit_items(items, item_users)
        if items.size:
            self.item_solved_[items] = self.item_counts_[items]

    def _due_items(self, batch: Batch) -> np.ndarray:
        """The touched items to re-solve now: those whose events since their last solve reach
        ``item_refresh`` times the events they had then (at least one)."""
        items = np.unique(batch.items)
        fraction = self._item_refresh(len(batch))
        self.item_solved_ = grown(self.item_solved_, self.n_items)
        if fraction == 0:
            return items
        solved = self.item_solved_[items]
        due = self.item_counts_[items] - solved >= np.maximum(1.0, fraction * solved)
        return items[due]

    def _item_refresh(self, n_events: int) -> float:
        if self.item_refresh == "auto":
            return _ITEM_REFRESH if n_events < SMALL_STEP else 0.0
        return float(self.item_refresh)

    def _train_full(self, *, warm: bool) -> None:
        self.model_.regularization = self._value("regularization")
        super()._train_full(warm=warm)
        self.item_solved_ = self.item_counts_.copy()

    # -- forgetting ----------------------------------------------------------------------------

    forgets_exactly = True

    def _forget(self, removed: Removed) -> None:
        self.item_solved_ = grown(self.item_solved_, self.n_items)
        self.item_solved_[removed.items] = 0.0
        super()._forget(removed)

    def _retrain_touched(self, users: np.ndarray, items: np.ndarray) -> None:
        """Re-solve the users that lost events (forgotten items), then the items that did
        (forgotten users), each from its whole remaining history, exactly (Cholesky), the
        other side fixed, with the regularisation of the last update: each row ends up the
        least-squares solution it would have with the forgotten events never learned."""
        with _blas_single_thread():
            if users.size:
                self.model_.partial_fit_users(users, self._confidence(self.history_.rows(users)))
            if items.size:
                self.model_.partial_fit_items(
                    items, self._confidence(self.item_history_.rows(items)))
        self.item_solved_[items] = self.item_counts_[items]

    # -- the wrapped model ---------------------------------------------------------------------

    def _new_model(self) -> Any:
        implicit = _implicit()
        with _blas_single_thread():
            # alpha is applied by our confidence transform, so the model's own stays at 1
            return implicit.cpu.als.AlternatingLeastSquares(
                factors=self.factors, regularization=self._value("regularization"), alpha=1.0,
                iterations=self.iterations, num_threads=self.num_threads,
                random_state=self.seed,
            )


class _WarmStarted(_ImplicitMF):
    """BPR and LMF: grow the biased factor matrices, then keep training from them."""

    # -- parameters and validation -------------------------------------------------------------

    def _check_warm(self) -> None:
        check_int("update_iterations", self.update_iterations)
        check_choice("update_on", self.update_on, _UPDATE_ON)
        check_number("replay", self.replay)
        self._check_auto("learning_rate", strict=True)

    # -- learning ------------------------------------------------------------------------------

    def _update(self, batch: Batch) -> None:
        mode = self.update_on
        if mode == "auto":
            mode = "sample" if len(batch) < SMALL_STEP else "all"
        if mode == "sample":
            self._train_sample(*self._sample(batch))
            return
        if mode == "touched":
            matrix = self._touched_rows(np.unique(batch.users))
        else:
            matrix = self._matrix()
        self._train_warm(matrix)

    def _touched_rows(self, users: np.ndarray) -> sp.csr_matrix:
        """The full-shape matrix holding only the rows of ``users`` (sorted, unique)."""
        rows = self._confidence(self.history_.rows(users))
        counts = np.zeros(self.n_users, dtype=np.int64)
        counts[users] = np.diff(rows.indptr)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return sp.csr_matrix((rows.data, rows.indices, indptr),
                             shape=(self.n_users, self.n_items))

    def _sample(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, items, values)`` to train a small step on: its events, then ``replay``
        earlier events per event drawn uniformly from the history (so the negatives drawn
        from them follow the items' popularity, as in a fit on the whole history)."""
        users, items, values = self.history_.sample(round(self.replay * len(batch)), self.rng_)
        return (np.concatenate([batch.users, users]), np.concatenate([batch.items, items]),
                np.concatenate([batch.values.astype(np.float32), values]))

    def _train_sample(self, users: np.ndarray, items: np.ndarray, values: np.ndarray, *,
                      iterations: int | None = None,
                      movable: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Mini-batch epochs (``iterations``, default ``update_iterations``) over a sample;
        with ``movable`` (bool masks over users and items) only those rows change."""
        raise NotImplementedError

    # -- scoring with context ------------------------------------------------------------------

    def _check_context_params(self) -> None:
        check_int("context_steps", self.context_steps, 0)
        check_number("context_learning_rate", self.context_learning_rate, strict=True)
        check_number("history_weight", self.history_weight)

    def _fold_in(self, users: np.ndarray, context: Context) -> np.ndarray:
        """The users' factors fitted to their context (and, with ``history_weight``, their
        history), item factors fixed: ``context_steps`` Adagrad steps of the model's own loss
        (:meth:`_fold_gradient`) from the learned factors (an unknown user, -1, from implicit's
        blank row), the constant column kept. A row without positives keeps its start, so a
        known user without context gets its learned factors. Negatives are drawn from a hash
        of ``seed``, the user and its context: the same row gets the same answer in any call.
        An approximation of training on the events (the items do not move); nothing is
        learned and nothing of the model changes (its random generator included)."""
        users = np.asarray(users, dtype=np.int64)
        check_context(users, context, self.n_users, self.n_items)
        model = self.model_
        n, d = users.size, model.user_factors.shape[1]
        known = users >= 0
        vectors = self._blank_users(n, d)
        vectors[known] = model.user_factors[users[known]]
        if self.context_steps == 0 or n == 0:
            return vectors
        rows, items, weights, values = positives(self.history_, users, context,
                                                 self.history_weight)
        if rows.size == 0:
            return vectors
        factors = model.item_factors.astype(np.float64)
        n_items = factors.shape[0]
        keys = row_keys(self.seed, users, context)[rows]
        position = np.arange(rows.size) - np.searchsorted(rows, rows)
        steps, lr = int(self.context_steps), float(self.context_learning_rate)
        vectors = vectors.astype(np.float64)
        chunk = max(1, _FOLD_CELLS // max(n_items, 1))
        for start in range(0, n, chunk):  # rows apart: a chunk's matrices stay small
            stop = min(n, start + chunk)
            low, high = np.searchsorted(rows, [start, stop])
            if low == high:
                continue
            mine = slice(low, high)
            local = rows[mine] - start
            liked = np.zeros((stop - start) * n_items, dtype=bool)
            liked[local * n_items + items[mine]] = True
            part = vectors[start:stop]
            sums = np.zeros_like(part)
            for step in range(steps):
                grad = self._fold_gradient(part, factors, local, items[mine], weights[mine],
                                           values[mine], liked, keys[mine],
                                           position[mine] * steps + step)  # a row's own
                sums += grad * grad
                part += lr * grad / np.sqrt(1e-6 + sums)  # implicit's LMF step
        return vectors.astype(model.user_factors.dtype)

    def _fold_gradient(self, vectors: np.ndarray, factors: np.ndarray, rows: np.ndarray,
                       items: np.ndarray, weights: np.ndarray, values: np.ndarray,
                       liked: np.ndarray, keys: np.ndarray, counter: np.ndarray) -> np.ndarray:
        """The loss's ascent direction for each of the rows' ``vectors``, the item factors
        (float64) and the rows' positives ``(rows, items, weights, values)`` given (``liked``:
        the flat rows x items mask of positives), negatives drawn from ``hashed(keys,
        counter...)``: a weight per (row, item) pair, then one product with the factors."""
        raise NotImplementedError

    def _live_uniform(self, draws: np.ndarray) -> np.ndarray:
        """Uniform items from uint64 draws, forgotten items left out (as ``_negatives``)."""
        n = self.model_.item_factors.shape[0]
        dead = getattr(self, "dead_items_", None)
        if dead is None or dead.size == 0:
            return (draws % np.uint64(n)).astype(np.int64)
        ranks = (draws % np.uint64(max(n - dead.size, 1))).astype(np.int64)
        return ranks + np.searchsorted(dead - np.arange(dead.size), ranks, side="right")

    forgets_exactly = False

    def _train_warm(self, matrix: sp.csr_matrix) -> None:
        model = self.model_
        model.random_state = self._next_seed()
        model.iterations = self.update_iterations
        with _blas_single_thread():
            model.fit(matrix, show_progress=False)
        model.iterations = self.iterations


class ImplicitBPR(_WarmStarted):
    """implicit's Bayesian Personalised Ranking, grown and trained warm on each step.

    implicit's BPR keeps the item bias in an extra last column of ``item_factors`` and a
    constant 1.0 in the same column of ``user_factors``. New users get small random factors
    (implicit's own ``(rand - 0.5) / factors``) and the 1.0 column; new items get small random
    factors and a zero bias. ``partial_fit`` then continues SGD from the current factors for
    ``update_iterations`` epochs: with implicit's ``fit`` over the whole history
    (``update_on="all"``, what ``"auto"`` does from ``SMALL_STEP`` events) or the touched
    users' histories (``"touched"``), or, for smaller steps (``"sample"``), over the step's
    events and ``replay`` earlier events per event, as mini-batches with implicit's gradients
    and negatives drawn uniformly from the catalogue. BPR treats every stored entry as a
    positive: event strengths (``weight``/``rating``) do not weight it.

    Parameters
    ----------
    factors
        Latent dimension (the factor matrices have one more column).
    learning_rate, regularization
        SGD step and L2 penalty; ``learning_rate="auto"``: 0.01 for fits and steps of at least
        ``SMALL_STEP`` events, 0.05 for sampled steps.
    iterations
        Epochs of the first fit (and of ``fit``).
    update_iterations
        Epochs of warm-started training per ``partial_fit``.
    update_on
        ``"all"``: train on the whole history (BPR samples negatives from it, so this keeps
        them representative); ``"touched"``: only the rows of users in the new events;
        ``"sample"``: the new events and ``replay`` earlier ones per event (cost per event
        independent of the history); ``"auto"``: ``"sample"`` for steps of fewer than
        ``SMALL_STEP`` events, else ``"all"``.
    replay
        Earlier events drawn uniformly from the history per new event in a sampled step.
    verify_negative_samples
        Passed to implicit: resample negatives the user has liked (implicit's training
        only: a sampled step's uniform negatives are not checked).
    context_steps, context_learning_rate
        Scoring with context (``compare(..., context="fresh")``, ``score_block(users,
        context)``): Adagrad steps of the model's own loss that fold the user in on its recent
        events, items fixed, nothing learned (``_fold_in``), and their step size; tuned on the
        first 50,000 events of ml-100k (``docs/implicit.md``).
    history_weight
        Scoring with context: the user's history as positives of the fold-in too, at this
        weight against a context event's 1 (0: the context alone, from the learned factors).
    use_gpu
        Run fits on implicit's CUDA implementation (needs a CUDA build of implicit).
    cold_start
        How unknown users are answered (flagged ``cold``): ``"newcomer"`` (what new users
        picked first lately), ``"popularity"`` or ``Newcomer(...)``; see ``docs/interface.md``.
    num_threads
        Threads for implicit (0: all cores; more than one makes SGD non-deterministic).
    seed
        Seed for initialisation, growth and sampling (``random_state`` is a deprecated alias).

    Attributes
    ----------
    model_
        The wrapped ``implicit.cpu.bpr.BayesianPersonalizedRanking``.
    history_
        The summed event strengths, users x items (float32), a
        :class:`~recinc_plugins.adapters._history.History` (``user_items_``: as CSR).

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.adapters.implicit import ImplicitBPR
    >>> events = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["x", "y", "x", "z"]})
    >>> model = ImplicitBPR(factors=4, seed=0, num_threads=1).fit(events)
    >>> _ = model.partial_fit(pd.DataFrame({"user": ["new"], "item": ["new-item"]}))
    >>> model.model_.user_factors.shape, model.model_.item_factors.shape
    ((4, 5), (4, 5))
    >>> float(model.model_.user_factors[-1, -1])
    1.0
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="refit", context=True)
    _AUTO: ClassVar[dict[str, tuple[float, float]]] = {"learning_rate": (0.01, 0.05)}

    # -- parameters and validation -------------------------------------------------------------

    def __init__(
        self,
        factors: int = 16,
        learning_rate: float | str = "auto",
        regularization: float = 0.05,
        iterations: int = 200,
        update_iterations: int = 3,
        update_on: str = "auto",
        replay: float = 16.0,
        verify_negative_samples: bool = True,
        context_steps: int = 5,
        context_learning_rate: float = 0.1,
        history_weight: float = 0.0,
        use_gpu: bool = False,
        cold_start: str | Newcomer = "newcomer",
        num_threads: int = 0,
        seed: int | None = None,
        **renamed: Any,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.update_iterations = update_iterations
        self.update_on = update_on
        self.replay = replay
        self.verify_negative_samples = verify_negative_samples
        self.context_steps = context_steps
        self.context_learning_rate = context_learning_rate
        self.history_weight = history_weight
        self.use_gpu = use_gpu
        self.cold_start = cold_start
        self.num_threads = num_threads
        self.seed = seed
        self._accept_renamed(renamed)

    def _check_params(self) -> None:
        self._check_common()
        self._check_warm()
        self._check_context_params()
        self._check_gpu()

    # -- growth --------------------------------------------------------------------------------

    def _new_users(self, n: int, d: int) -> np.ndarray:
        rows = (self.rng_.random((n, d), dtype=np.float32) - 0.5) / self.factors
        rows[:, -1] = 1.0
        return rows

    def _new_items(self, n: int, d: int) -> np.ndarray:
        rows = (self.rng_.random((n, d), dtype=np.float32) - 0.5) / self.factors
        rows[:, -1] = 0.0
        return rows

    # implicit's fit zeroes rows without data, users keeping their constant 1.0 column
    def _blank_users(self, n: int, d: int) -> np.ndarray:
        rows = _zeros(n, d)
        rows[:, -1] = 1.0
        return rows

    def _train_sample(self, users: np.ndarray, items: np.ndarray, values: np.ndarray, *,
                      iterations: int | None = None,
                      movable: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``update_iterations`` epochs of BPR's SGD over the sample, each a mini-batch: the
        gradients of implicit's ``bpr_update`` (bias in the last column, L2 on the rows a
        sample moves), one negative per positive drawn uniformly from the catalogue (less
        forgotten items). With ``movable`` (bool masks over users and items) only those rows
        change."""
        model = self.model_
        users_f, items_f = model.user_factors, model.item_factors
        lr = float(self._value("learning_rate", small=True))
        reg = float(self.regularization)
        for _ in range(self.update_iterations if iterations is None else iterations):
            negatives = self._negatives(users.size)
            u, liked, disliked = users_f[users], items_f[items], items_f[negatives]
            diff = liked - disliked
            z = _sigmoid(-np.einsum("ij,ij->i", u, diff))[:, None]
            step_u = z * diff - reg * u
            step_u[:, -1] = 0.0  # the users' constant 1.0 column
            step_liked = z * u - reg * liked
            step_disliked = -z * u - reg * disliked
            step_liked[:, -1] = z[:, 0] - reg * liked[:, -1]  # the item bias
            step_disliked[:, -1] = -z[:, 0] - reg * disliked[:, -1]
            if movable is not None:
                step_u *= movable[0][users, None]
                step_liked *= movable[1][items, None]
                step_disliked *= movable[1][negatives, None]
            np.add.at(users_f, users, lr * step_u)
            np.add.at(items_f, items, lr * step_liked)
            np.add.at(items_f, negatives, lr * step_disliked)
        model._user_norms = model._item_norms = None

    def _fold_gradient(self, vectors: np.ndarray, factors: np.ndarray, rows: np.ndarray,
                       items: np.ndarray, weights: np.ndarray, values: np.ndarray,
                       liked: np.ndarray, keys: np.ndarray, counter: np.ndarray) -> np.ndarray:
        """BPR's: per positive, one uniform negative that is no positive of the row (as
        ``verify_negative_samples`` resamples: a positive drawn adds nothing), ``(1 -
        sigmoid(u . (y_i - y_j))) (y_i - y_j)`` times the positive's weight, less
        ``regularization * u``; the users' constant column stays."""
        n, n_items = vectors.shape[0], factors.shape[0]
        scores = (vectors @ factors.T).ravel()
        pos = rows * n_items + items
        neg = rows * n_items + self._live_uniform(hashed(keys, counter))
        z = (1.0 - _sigmoid64(scores[pos] - scores[neg])) * weights * ~liked[neg]
        pairs = np.bincount(np.concatenate([pos, neg]), np.concatenate([z, -z]),
                            minlength=n * n_items)
        grad = pairs.reshape(n, n_items) @ factors
        grad -= float(self.regularization) * vectors
        grad[:, -1] = 0.0
        return grad

    def _retrain_touched(self, users: np.ndarray, items: np.ndarray, *,
                         passes: int | None = None) -> None:
        """``passes`` (default ``update_iterations``) epochs of the sampled steps' SGD over
        the remaining events of ``users`` and ``items`` (those that lost events), shuffled,
        in mini-batches of ``_FORGET_BATCH`` events with uniform negatives; only the rows of
        ``users`` and ``items`` move (a negative outside them stays as it is)."""
        rows, cols, values = self._entries_of(users, items)
        if rows.size == 0:
            return
        movable = (_mask(users, self.n_users), _mask(items, self.n_items))
        for _ in range(self.update_iterations if passes is None else passes):
            order = self.rng_.permutation(rows.size)
            for start in range(0, rows.size, _FORGET_BATCH):
                chunk = order[start:start + _FORGET_BATCH]
                self._train_sample(rows[chunk], cols[chunk], values[chunk], iterations=1,
                                   movable=movable)

    # -- the wrapped model ---------------------------------------------------------------------

    def _new_model(self) -> Any:
        implicit = _implicit()
        return implicit.cpu.bpr.BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self._value("learning_rate"),
            regularization=self.regularization, iterations=self.iterations,
            num_threads=self.num_threads,
            verify_negative_samples=bool(self.verify_negative_samples),
            random_state=self.seed,
        )


class ImplicitLMF(_WarmStarted):
    """implicit's Logistic Matrix Factorisation, grown and trained warm on each step.

    implicit's LMF appends two columns to both factor matrices: users hold ``[..., 1.0,
    user bias]`` and items ``[..., item bias, 1.0]``, so a dot product adds both biases. New
    users and items start as implicit's ``fit`` leaves rows without data: zero factors and
    bias, and the constant 1.0 column. ``partial_fit`` continues training from the current
    factors for ``update_iterations`` epochs. implicit's ``fit`` restarts its Adagrad
    accumulators on every call, so the first epoch of every step would move each coordinate
    by about ``learning_rate`` and undo much of what was learned. The adapter therefore runs
    implicit's own epoch kernel (``implicit.cpu.lmf.lmf_update``, the loop inside ``fit``)
    and keeps the accumulators across steps (``user_adagrad_`` / ``item_adagrad_``, grown
    with zeros), so a step continues training where the last one stopped. Steps of fewer than
    ``SMALL_STEP`` events (``update_on="auto"``) train on a sample instead: the step's events
    and ``replay`` earlier ones per event, as mini-batches with the kernel's gradients, the
    same accumulators, and ``neg_prop`` negatives per positive drawn uniformly from the
    catalogue.

    Parameters
    ----------
    factors
        Latent dimension (the factor matrices have two more columns).
    learning_rate, regularization
        Adagrad step and L2 penalty (per row and epoch in implicit's kernel, per sample in a
        sampled step); ``regularization="auto"``: 10 for fits and steps of at least
        ``SMALL_STEP`` events, 0.1 for sampled steps.
    alpha, confidence
        Event strength to LMF's confidence weight ``c``: ``"linear"`` ``1 + alpha * w``,
        ``"log"`` ``1 + alpha * log1p(w)``, ``"binary"`` ``1 + alpha``.
    iterations
        Epochs of the first fit (and of ``fit``).
    update_iterations
        Epochs of warm-started training per ``partial_fit``.
    update_on
        ``"all"`` (the whole history), ``"touched"`` (rows of users in the new events),
        ``"sample"`` (the new events and ``replay`` earlier ones per event) or ``"auto"``
        (``"sample"`` for steps of fewer than ``SMALL_STEP`` events, else ``"all"``).
    replay
        Earlier events drawn uniformly from the history per new event in a sampled step.
    neg_prop
        Negative samples per positive; ``"auto"``: 30 in implicit's kernel, 8 in sampled
        steps.
    context_steps, context_learning_rate
        Scoring with context (``compare(..., context="fresh")``, ``score_block(users,
        context)``): Adagrad steps of the model's own loss that fold the user in on its recent
        events, items fixed, nothing learned (``_fold_in``), and their step size; tuned on the
        first 50,000 events of ml-100k (``docs/implicit.md``).
    history_weight
        Scoring with context: the user's history as positives of the fold-in too, at this
        weight against a context event's 1 (0: the context alone, from the learned factors).
    cold_start
        How unknown users are answered (flagged ``cold``): ``"newcomer"`` (what new users
        picked first lately), ``"popularity"`` or ``Newcomer(...)``; see ``docs/interface.md``.
    num_threads
        Threads for implicit (0: all cores).
    seed
        Seed for initialisation, growth and sampling (``random_state`` is a deprecated alias).

    Attributes
    ----------
    model_
        The wrapped ``implicit.cpu.lmf.LogisticMatrixFactorization``.
    history_
        The summed event strengths, users x items (float32), a
        :class:`~recinc_plugins.adapters._history.History` (``user_items_``: as CSR).
    user_adagrad_, item_adagrad_
        Adagrad's sums of squared gradients, one row per user / item, kept across steps.

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.adapters.implicit import ImplicitLMF
    >>> events = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["x", "y", "x", "z"]})
    >>> model = ImplicitLMF(factors=4, seed=0, num_threads=1).fit(events)
    >>> _ = model.partial_fit(pd.DataFrame({"user": ["new"], "item": ["new-item"]}))
    >>> model.model_.user_factors.shape, model.model_.item_factors.shape
    ((4, 6), (4, 6))
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="refit", context=True)
    _AUTO: ClassVar[dict[str, tuple[float, float]]] = {"regularization": (10.0, 0.1),
                                                       "neg_prop": (30, 8)}

    # -- parameters and validation -------------------------------------------------------------

    def __init__(
        self,
        factors: int = 16,
        learning_rate: float = 0.5,
        regularization: float | str = "auto",
        alpha: float = 1.0,
        confidence: str = "binary",
        iterations: int = 30,
        update_iterations: int = 2,
        update_on: str = "auto",
        replay: float = 16.0,
        neg_prop: int | str = "auto",
        context_steps: int = 5,
        context_learning_rate: float = 0.2,
        history_weight: float = 0.0,
        cold_start: str | Newcomer = "newcomer",
        num_threads: int = 0,
        seed: int | None = None,
        **renamed: Any,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.alpha = alpha
        self.confidence = confidence
        self.iterations = iterations
        self.update_iterations = update_iterations
        self.update_on = update_on
        self.replay = replay
        self.neg_prop = neg_prop
        self.context_steps = context_steps
        self.context_learning_rate = context_learning_rate
        self.history_weight = history_weight
        self.cold_start = cold_start
        self.num_threads = num_threads
        self.seed = seed
        self._accept_renamed(renamed)

    def _check_params(self) -> None:
        self._check_common()
        self._check_warm()
        self._check_context_params()
        check_number("alpha", self.alpha)
        check_choice("confidence", self.confidence, _CONFIDENCE)
        if not (isinstance(self.neg_prop, str) and self.neg_prop == "auto"):
            try:
                check_int("neg_prop", self.neg_prop)
            except ValueError:
                raise ValueError("neg_prop must be 'auto' or a positive integer, got "
                                 f"{self.neg_prop!r}") from None

    # -- growth --------------------------------------------------------------------------------

    # implicit's fit zeroes the factors of rows without any data (the constant columns are
    # set again after every epoch); a grown row has no data yet, so it starts the same way
    def _new_users(self, n: int, d: int) -> np.ndarray:
        rows = _zeros(n, d)
        rows[:, -2] = 1.0
        return rows

    def _new_items(self, n: int, d: int) -> np.ndarray:
        rows = _zeros(n, d)
        rows[:, -1] = 1.0
        return rows

    _blank_users = _new_users
    _blank_items = _new_items

    def _grow(self, n_users: int, n_items: int) -> None:
        super()._grow(n_users, n_items)
        if self._trained:
            self.user_adagrad_ = grown(self.user_adagrad_, n_users)
            self.item_adagrad_ = grown(self.item_adagrad_, n_items)

    # -- learning ------------------------------------------------------------------------------

    def _confidence(self, csr: sp.csr_matrix) -> sp.csr_matrix:
        return _apply_confidence(csr, self.confidence, self.alpha)

    def _train_full(self, *, warm: bool) -> None:
        # implicit's own initialisation (LogisticMatrixFactorization.fit), then our epochs
        matrix = self._matrix()
        n_users, n_items = matrix.shape
        d = self.factors + 2
        if not warm:
            init = np.random.default_rng(self._next_seed())
            users = init.standard_normal((n_users, d)).astype(np.float32)
            items = init.standard_normal((n_items, d)).astype(np.float32)
            users[:, -2] = 1.0
            items[:, -1] = 1.0
            users[np.diff(matrix.indptr) == 0] = 0.0
            items[np.bincount(matrix.indices, minlength=n_items) == 0] = 0.0
            self.model_.user_factors, self.model_.item_factors = users, items
            self.user_adagrad_ = np.zeros((n_users, d), dtype=np.float32)
            self.item_adagrad_ = np.zeros((n_items, d), dtype=np.float32)
        self._epochs(matrix, self.iterations)
        self._events_at_refit = self.n_events_

    def _train_warm(self, matrix: sp.csr_matrix) -> None:
        self._epochs(matrix, self.update_iterations)

    def _train_sample(self, users: np.ndarray, items: np.ndarray, values: np.ndarray, *,
                      iterations: int | None = None,
                      movable: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``update_iterations`` epochs of LMF's Adagrad over the sample, each a mini-batch:
        the log-likelihood gradients of implicit's ``lmf_update`` for each positive (its
        confidence) and ``neg_prop`` negatives drawn uniformly from the catalogue (less
        forgotten items), L2 on the rows a sample moves, Adagrad sums kept with the full
        fits'. With ``movable`` (bool masks over users and items) only those rows change."""
        confidence = _apply_confidence_values(values, self.confidence, self.alpha)[:, None]
        model = self.model_
        users_f, items_f = model.user_factors, model.item_factors
        lr = float(self.learning_rate)
        reg = float(self._value("regularization", small=True))
        k = int(self._value("neg_prop", small=True))
        for _ in range(self.update_iterations if iterations is None else iterations):
            negatives = self._negatives((users.size, k))
            u, liked, disliked = users_f[users], items_f[items], items_f[negatives]
            pos = _sigmoid(-np.einsum("ij,ij->i", u, liked))[:, None]  # 1 - sigma(score)
            neg = _sigmoid(np.einsum("ij,ikj->ik", u, disliked))[:, :, None]
            step_u = confidence * pos * liked - (neg * disliked).sum(axis=1) - reg * u
            step_liked = confidence * pos * u - reg * liked
            step_disliked = (-neg * u[:, None, :] - reg * disliked).reshape(-1, u.shape[1])
            step_u[:, -2] = step_liked[:, -1] = step_disliked[:, -1] = 0.0  # constant columns
            if movable is not None:
                step_u *= movable[0][users, None]
                step_liked *= movable[1][items, None]
                step_disliked *= movable[1][negatives.ravel(), None]
            _adagrad(users_f, self.user_adagrad_, users, step_u, lr)
            _adagrad(items_f, self.item_adagrad_, items, step_liked, lr)
            _adagrad(items_f, self.item_adagrad_, negatives.ravel(), step_disliked, lr)
        model._user_norms = model._item_norms = None

    def _epochs(self, user_items: sp.csr_matrix, epochs: int) -> None:
        """``epochs`` of LMF's alternating Adagrad updates, as in implicit's ``fit`` loop."""
        if user_items.nnz == 0:
            return
        lmf = _implicit().cpu.lmf
        user_items = user_items.astype(np.float32)
        user_items.sort_indices()
        item_users = user_items.T.tocsr()
        item_users.sort_indices()
        threads = self.num_threads or os.cpu_count() or 1
        sampler = lmf.RNGVector(threads, user_items.nnz - 1,
                                self.rng_.integers(0, 2**31, size=threads))
        model = self.model_
        users, items = model.user_factors, model.item_factors
        lr, reg = float(self.learning_rate), float(self._value("regularization"))
        neg_prop = int(self._value("neg_prop"))
        for _ in range(epochs):
            lmf.lmf_update(sampler, self.user_adagrad_, users, items, user_items.indices,
                           user_items.indptr, user_items.data, lr, reg, neg_prop, threads)
            users[:, -2] = 1.0
            lmf.lmf_update(sampler, self.item_adagrad_, items, users, item_users.indices,
                           item_users.indptr, item_users.data, lr, reg, neg_prop, threads)
            items[:, -1] = 1.0
        model._user_norms = model._item_norms = None
        model._check_fit_errors()

    # -- scoring with context ------------------------------------------------------------------

    def _fold_gradient(self, vectors: np.ndarray, factors: np.ndarray, rows: np.ndarray,
                       items: np.ndarray, weights: np.ndarray, values: np.ndarray,
                       liked: np.ndarray, keys: np.ndarray, counter: np.ndarray) -> np.ndarray:
        """LMF's (implicit's ``lmf_update`` for one user): each positive's confidence times
        ``(1 - sigmoid(u . y_i)) y_i`` and its weight, less ``sigmoid(u . y_j) y_j`` for
        ``neg_prop`` negatives per positive drawn by popularity (the kernel draws them from
        the training entries; a positive of the row adds nothing), less ``regularization *
        u``; the users' constant column stays, their bias moves."""
        n, n_items = vectors.shape[0], factors.shape[0]
        k = int(self._value("neg_prop", small=True))
        scores = (vectors @ factors.T).ravel()
        pos = rows * n_items + items
        confidence = _apply_confidence_values(values, self.confidence, self.alpha) * weights
        pull = confidence * (1.0 - _sigmoid64(scores[pos]))
        popular = np.cumsum(np.maximum(self.item_counts_[:n_items], 0.0))
        draws = hashed(keys[:, None], counter[:, None] * k + np.arange(k)).ravel()
        neg = np.repeat(rows * n_items, k) + inverse_cdf(popular, uniform(draws))
        push = _sigmoid64(scores[neg]) * ~liked[neg]
        pairs = np.bincount(np.concatenate([pos, neg]), np.concatenate([pull, -push]),
                            minlength=n * n_items)
        grad = pairs.reshape(n, n_items) @ factors
        grad -= float(self._value("regularization")) * vectors
        grad[:, -2] = 0.0
        return grad

    # -- forgetting ----------------------------------------------------------------------------

    def _forget(self, removed: Removed) -> None:
        if self._trained:  # Adagrad's sums restart with the rows
            self.user_adagrad_[removed.users] = 0.0
            self.item_adagrad_[removed.items] = 0.0
        super()._forget(removed)

    def _retrain_touched(self, users: np.ndarray, items: np.ndarray, *,
                         passes: int | None = None) -> None:
        """``passes`` (default ``update_iterations``) epochs of implicit's own LMF epoch
        (``lmf_update``, as in a fit: each row's full gradient over its remaining events,
        ``neg_prop`` negatives per event drawn from the whole remaining history, Adagrad
        with the kept sums) restricted to the rows of ``users``, then of ``items``: only
        those rows move."""
        matrix = self._matrix().astype(np.float32)
        if matrix.nnz == 0:
            return
        matrix.sort_indices()
        item_users = matrix.T.tocsr()
        item_users.sort_indices()
        lmf = _implicit().cpu.lmf
        threads = self.num_threads or os.cpu_count() or 1
        sampler = lmf.RNGVector(threads, matrix.nnz - 1,
                                self.rng_.integers(0, 2**31, size=threads))
        model = self.model_
        lr, reg = float(self.learning_rate), float(self._value("regularization"))
        neg_prop = int(self._value("neg_prop"))
        halves = [(self.user_adagrad_, model.user_factors, model.item_factors,
                   _rows_after_pool(matrix, users), -2),
                  (self.item_adagrad_, model.item_factors, model.user_factors,
                   _rows_after_pool(item_users, items), -1)]
        for _ in range(self.update_iterations if passes is None else passes):
            for sums, rows, others, (indices, indptr, data), constant in halves:
                if indptr[-1] == indptr[0]:
                    continue
                lmf.lmf_update(sampler, sums, rows, others, indices, indptr, data, lr, reg,
                               neg_prop, threads)
                rows[:, constant] = 1.0
        model._user_norms = model._item_norms = None
        model._check_fit_errors()

    # -- the wrapped model ---------------------------------------------------------------------

    def _new_model(self) -> Any:
        implicit = _implicit()
        return implicit.cpu.lmf.LogisticMatrixFactorization(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self._value("regularization"), iterations=self.iterations,
            neg_prop=self._value("neg_prop"), num_threads=self.num_threads,
            random_state=self.seed,
        )


# -- the wrapped model -------------------------------------------------------------------------


def _implicit() -> Any:
    require("implicit", "implicit")
    import implicit.cpu.als
    import implicit.cpu.bpr
    import implicit.cpu.lmf
    import implicit.gpu

    return implicit


_THREADPOOLS: list[Any] = []


def _blas_single_thread() -> Any:
    """Keep BLAS single-threaded while implicit's own threads run (implicit warns otherwise)."""
    if not _THREADPOOLS:
        # scanning the loaded libraries costs milliseconds: do it once, not on every step
        _THREADPOOLS.append(require("threadpoolctl", "implicit").ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="blas")


def _apply_confidence(csr: sp.csr_matrix, confidence: str, alpha: float) -> sp.csr_matrix:
    """Event strengths to implicit's confidences, float32, same sparsity."""
    data = _apply_confidence_values(csr.data, confidence, alpha)
    return sp.csr_matrix((data, csr.indices, csr.indptr), shape=csr.shape)


def _apply_confidence_values(values: np.ndarray, confidence: str, alpha: float) -> np.ndarray:
    if confidence == "linear":
        data = 1.0 + alpha * values
    elif confidence == "log":
        data = 1.0 + alpha * np.log1p(np.maximum(values, 0.0))
    else:
        data = np.full_like(values, 1.0 + alpha)
    return data.astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32, without overflow warnings."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32, copy=False)


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    """Logistic function, float64."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _adagrad(rows: np.ndarray, sums: np.ndarray, index: np.ndarray, step: np.ndarray,
             lr: float) -> None:
    """Adagrad ascent on ``rows[index]`` (repeats add up), as implicit's LMF kernel steps."""
    np.add.at(sums, index, step * step)
    np.add.at(rows, index, lr * step / np.sqrt(1e-6 + sums[index]))


def _lhs(confidence: np.ndarray) -> np.ndarray:
    """What an entry of confidence ``c`` adds to ALS's ``y y^T`` sum: ``|c| - 1``."""
    return np.abs(confidence) - 1.0


def _rhs(confidence: np.ndarray) -> np.ndarray:
    """What it adds to the right side's ``y`` sum: ``c`` where positive, else nothing."""
    return np.maximum(confidence, 0.0)


def _zeros(n: int, d: int) -> np.ndarray:
    return np.zeros((n, d), dtype=np.float32)


def _mask(indices: np.ndarray, n: int) -> np.ndarray:
    """Bool mask of length ``n``, True at ``indices``."""
    mask = np.zeros(n, dtype=bool)
    mask[indices] = True
    return mask


def _rows_after_pool(csr: sp.csr_matrix, rows: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices, indptr, data)`` for implicit's LMF kernel: every entry of ``csr`` first
    (the pool its sampler draws negatives from, entries ``0..nnz-1``), then the entries of
    ``rows`` (sorted) again, the only rows the indptr gives entries to (so the kernel, which
    skips empty rows, updates only them)."""
    indptr = csr.indptr.astype(np.int64)
    lengths = np.zeros(csr.shape[0], dtype=np.int64)
    lengths[rows] = indptr[rows + 1] - indptr[rows]
    span = concat_ranges(indptr[rows], lengths[rows])
    dtype = csr.indices.dtype
    indices = np.concatenate([csr.indices, csr.indices[span]]).astype(dtype, copy=False)
    data = np.concatenate([csr.data, csr.data[span]]).astype(np.float32, copy=False)
    new_indptr = (csr.nnz + np.concatenate([[0], np.cumsum(lengths)])).astype(dtype)
    return indices, new_indptr, data
