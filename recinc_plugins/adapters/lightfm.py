"""LightFM, grown with new users, items and side features, and trained on each step's events.

LightFM's ``fit_partial`` continues training but cannot add a user, an item or a feature: its
twelve state arrays (embeddings, biases and their Adagrad/Adadelta accumulators) have one row
per feature column, fixed at the first call (LightFM issues #322, #347). This adapter appends
rows to all twelve, initialised exactly as LightFM's ``_initialize`` does, whenever the id maps
or the side-feature vocabulary grow, then trains on the new events and, optionally, a replayed
sample of earlier ones: the first time with ``fit_partial``, afterwards with the epoch routine
``fit_partial`` runs, called on the rows the step reaches (``_fit_rows``): the same numbers, at
a cost that does not grow with the users and items.

Scoring with context (a user's recent events, not learned) folds the user in: a few steps of
LightFM's own loss on its representation, the items fixed (``_fold_in``, docs/lightfm.md).

``forget(users, items)`` drops the ids' events from the history and their side-feature values,
resets their rows in all twelve arrays (embeddings and biases to zero, accumulators to their
initial values), then re-trains the rows that lost events on their remaining events for
``epochs`` passes, the other rows kept as they were: approximate (the gap to a model refitted
without the events is measured in docs/lightfm.md).
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._optional import require
from ..base import Batch, Capabilities, IncrementalRecommender, Newcomer
from ..context import Context, score_with_context
from ..forget import Removed
from ..ids import _as_id_array
from ..params import check_bool, check_choice, check_int, check_number, check_seed
from ..sparse import GrowingCSR, concat_ranges
from ._context import check_context, hashed, inverse_cdf, positives, row_keys, uniform
from ._history import History

__all__ = ["LightFMRecommender"]

_LOSSES = ("warp", "bpr", "logistic", "warp-kos")
_SCHEDULES = ("adagrad", "adadelta")
# LightFM's state arrays, per side: (suffix, is an embedding matrix)
_STATE = (
    ("embeddings", True), ("embedding_gradients", True), ("embedding_momentum", True),
    ("biases", False), ("bias_gradients", False), ("bias_momentum", False),
)
#: LightFM's clip of a WARP loss
_MAX_LOSS = 10.0
#: a fold-in handles at most about this many (row, item) cells at once
_FOLD_CELLS = 2**21
#: LightFM's errors (``_check_input_finite``, ``_check_finite``), raised in the same cases
_INPUT_NOT_FINITE = "Not all input values are finite. Check the input for NaNs and infinite values."
_NOT_FINITE = ("Not all estimated parameters are finite, your model may have diverged. Try "
               "decreasing the learning rate or normalising feature values and sample weights")
#: the upper bound of LightFM's draw of per-thread seeds (``np.iinfo(np.int32).max``)
_INT32_MAX = 2**31 - 1
#: a step copies the rows of a side it reaches when they are fewer than this fraction of the
#: side, else works on LightFM's own arrays (passing over all rows then costs about as much as
#: copying the reached ones in and out: at ml-100k's 1,000-event steps a little less)
_COPY_BELOW = 0.5


class LightFMRecommender(IncrementalRecommender):
    """LightFM (warp, bpr, logistic or warp-kos) with growing state and side features.

    New users, items and side-feature names append rows to all twelve of LightFM's state
    arrays, initialised as LightFM's ``_initialize`` does: embeddings ``(rand - 0.5) /
    no_components`` from the model's own ``random_state``, biases zero, Adagrad accumulators
    at 1 (Adadelta at 0), float32 and C-contiguous. ``partial_fit`` trains for ``epochs`` on
    the new events plus ``replay`` times as many earlier events sampled from the history
    (LightFM forgets old events otherwise): bit for bit what ``fit_partial`` on their
    full-shape matrix computes, LightFM's random state included, at the cost of the rows the
    events reach (``_fit_rows``).

    Side features are optional: :meth:`set_user_features` / :meth:`set_item_features` take a
    frame indexed by id with one numeric column per feature. Each id also keeps its identity
    feature (as ``lightfm.data.Dataset`` does by default), and rows are normalised to sum 1.
    Ids given features before any interaction become known: they are scored through their
    features (cold start), never through the cold-start fallback. ``fit`` starts over and
    forgets features too: set them after ``fit``, or on a fresh model before ``partial_fit``.

    ``forget`` resets a forgotten id's identity row in all twelve arrays and drops its
    side-feature values (they describe it); a named feature's row is shared by every id that
    has the feature and stays (re-trained where a touched id has it), unless no remaining id
    has that feature, when it is reset too. The users and items that lost events are then
    re-trained on their remaining events for ``epochs`` passes of ``fit_partial``; rows of
    other ids keep their values (LightFM moves whatever a sample reaches: they are put back).
    A forgotten item's row is kept blank afterwards (LightFM samples WARP negatives from
    every column, forgotten ones included).

    Parameters
    ----------
    no_components
        Latent dimension.
    loss
        ``"warp"``, ``"bpr"``, ``"logistic"`` or ``"warp-kos"``.
    learning_schedule, learning_rate, rho, epsilon
        LightFM's optimiser (``"adagrad"`` or ``"adadelta"``) and its settings.
    item_alpha, user_alpha
        L2 penalties on item and user features.
    max_sampled
        Negatives tried per positive by the WARP losses.
    k, n
        warp-kos settings.
    epochs
        Passes over each ``partial_fit``'s events (new plus replayed).
    fit_epochs
        Passes of the first fit (``fit``, or the first ``partial_fit`` of a fresh model).
    replay
        Earlier events replayed per new event (sampled uniformly from the history; 0: none).
    use_weights
        Pass event strengths (``weight`` / ``rating``) to LightFM as ``sample_weight``
        (not possible with warp-kos); otherwise every event counts once.
    context_steps, context_learning_rate
        Scoring with context (``compare(..., context="fresh")``, ``score_block(users,
        context)``): Adagrad steps of the model's own loss that fold the user in on its recent
        events, items fixed, nothing learned (``_fold_in``), and their step size; tuned on the
        first 50,000 events of ml-100k (``docs/lightfm.md``).
    context_inertia
        Scoring with context: how firmly a user's learned history holds it against a short
        context; each fold-in step is scaled by ``c / (c + context_inertia * h)``, ``c`` the
        context's events and ``h`` the user's distinct learned items (0: every context moves
        a user as far, whatever its length). 0.1: chosen on the first 50,000 events of
        ml-100k and the synthetic stream (``docs/lightfm.md``).
    history_weight
        Scoring with context: the user's history as positives of the fold-in too, at this
        weight against a context event's 1 (0: the context alone, from the learned representation).
    cold_start
        How unknown users are answered when no side features place them (flagged ``cold``):
        ``"newcomer"`` (what new users picked first lately), ``"popularity"`` or
        ``Newcomer(...)``; see ``docs/interface.md``.
    num_threads
        Threads for LightFM's training (OpenMP).
    seed
        Seed for initialisation, growth, shuffling and replay sampling (``random_state`` is a
        deprecated alias).

    Attributes
    ----------
    model_
        The wrapped ``lightfm.LightFM``; embedding rows are feature columns (with no side
        features, user and item indices).
    history_
        The summed event strengths, users x items: the replay pool
        (:class:`~recinc_plugins.adapters._history.History`; ``history_.tocsr()`` is the
        CSR matrix).

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.adapters.lightfm import LightFMRecommender
    >>> events = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["x", "y", "x", "z"]})
    >>> model = LightFMRecommender(no_components=4, seed=0, num_threads=1).fit(events)
    >>> _ = model.partial_fit(pd.DataFrame({"user": ["d"], "item": ["w"]}))
    >>> model.model_.user_embeddings.shape, model.model_.item_embeddings.shape
    ((4, 4), (4, 4))
    >>> model.set_item_features(pd.DataFrame({"comedy": [1.0, 0.0]}, index=["x", "new"]))
    >>> model.recommend("a", k=2).items.shape
    (1, 2)
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="per-event",
                                cold_start="features", side_features=True, context=True)
    extra: ClassVar[str | None] = "lightfm"
    persisted_types: ClassVar[tuple[type, ...]] = (History,)
    _renamed_params: ClassVar[dict[str, str]] = {"random_state": "seed"}

    # -- parameters and validation -------------------------------------------------------------

    def __init__(
        self,
        no_components: int = 32,
        loss: str = "warp",
        learning_schedule: str = "adagrad",
        learning_rate: float = 0.05,
        rho: float = 0.95,
        epsilon: float = 1e-6,
        item_alpha: float = 0.0,
        user_alpha: float = 0.0,
        max_sampled: int = 30,
        k: int = 5,
        n: int = 10,
        epochs: int = 3,
        fit_epochs: int = 10,
        replay: float = 1.0,
        use_weights: bool = False,
        history_weight: float = 0.0,
        context_steps: int = 5,
        context_learning_rate: float = 0.2,
        context_inertia: float = 0.1,
        cold_start: str | Newcomer = "newcomer",
        num_threads: int = 1,
        seed: int | None = None,
        **renamed: Any,
    ) -> None:
        self.no_components = no_components
        self.loss = loss
        self.learning_schedule = learning_schedule
        self.learning_rate = learning_rate
        self.rho = rho
        self.epsilon = epsilon
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.max_sampled = max_sampled
        self.k = k
        self.n = n
        self.epochs = epochs
        self.fit_epochs = fit_epochs
        self.replay = replay
        self.use_weights = use_weights
        self.history_weight = history_weight
        self.context_steps = context_steps
        self.context_learning_rate = context_learning_rate
        self.context_inertia = context_inertia
        self.cold_start = cold_start
        self.num_threads = num_threads
        self.seed = seed
        self._accept_renamed(renamed)

    def _check_params(self) -> None:
        for name in ("no_components", "max_sampled", "k", "n", "epochs", "fit_epochs",
                     "num_threads"):
            check_int(name, getattr(self, name))
        check_choice("loss", self.loss, _LOSSES)
        check_choice("learning_schedule", self.learning_schedule, _SCHEDULES)
        check_bool("use_weights", self.use_weights)
        check_number("learning_rate", self.learning_rate, strict=True)
        check_int("context_steps", self.context_steps, 0)
        check_number("context_learning_rate", self.context_learning_rate, strict=True)
        for name in ("item_alpha", "user_alpha", "epsilon", "replay", "history_weight",
                     "context_inertia"):
            check_number(name, getattr(self, name))
        if not (isinstance(self.rho, (int, float, np.number)) and 0 < self.rho < 1):
            raise ValueError(f"rho must be strictly between 0 and 1, got {self.rho!r}")
        if self.use_weights and self.loss == "warp-kos":
            raise ValueError("use_weights=True is not possible with loss='warp-kos' "
                             "(LightFM has no sample weights for it)")
        check_seed("seed", self.seed)

    # -- growth --------------------------------------------------------------------------------

    def _init_model(self) -> None:
        self.model_ = self._new_model()
        self.rng_ = np.random.default_rng(self.seed)
        self.history_ = History()
        self.user_features_ = _Features()
        self.item_features_ = _Features()
        self.dead_item_rows_ = np.empty(0, dtype=np.int64)  # forgotten items' identity rows

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if isinstance(state.get("history_"), sp.spmatrix):  # written before History
            state["history_"] = History.from_csr(state["history_"])
        super()._set_state(state)

    def _grow(self, n_users: int, n_items: int) -> None:
        self.history_.resize(n_users, n_items)
        self.user_features_.grow(n_users)
        self.item_features_.grow(n_items)
        self._grow_state()

    def _grow_state(self) -> None:
        """Append rows to LightFM's twelve arrays up to the current feature columns."""
        if not self._trained:
            return
        model = self.model_
        d = self.no_components
        accumulator = 1.0 if self.learning_schedule == "adagrad" else 0.0
        for side, features in (("item", self.item_features_), ("user", self.user_features_)):
            new = features.n_columns - getattr(model, f"{side}_embeddings").shape[0]
            if new <= 0:
                continue
            # the same draw and scaling as LightFM's _initialize, from its own random state
            fresh = ((model.random_state.rand(new, d) - 0.5) / d).astype(np.float32)
            for suffix, is_embedding in _STATE:
                name = f"{side}_{suffix}"
                old = getattr(model, name)
                if suffix == "embeddings":
                    extra = fresh
                else:
                    fill = accumulator if suffix.endswith("gradients") else 0.0
                    extra = np.full((new, d) if is_embedding else new, fill, dtype=np.float32)
                setattr(model, name, np.ascontiguousarray(np.concatenate([old, extra])))

    def set_user_features(self, features: pd.DataFrame) -> None:
        """Set side features of users: a frame indexed by user id, one numeric column each.

        Unknown users become known (scored through their features); new column names add
        features. Values given replace earlier values of the same (user, feature).
        """
        self._set_features(features, "user")

    def set_item_features(self, features: pd.DataFrame) -> None:
        """Set side features of items: a frame indexed by item id, one numeric column each.

        Unknown items become known and recommendable through their features; new column
        names add features. Values given replace earlier values of the same (item, feature).
        """
        self._set_features(features, "item")

    def _set_features(self, features: Any, side: str) -> None:
        self._ensure_state()
        where = f"{side}_features"
        if not isinstance(features, pd.DataFrame):
            raise TypeError(
                f"{where} must be a pandas DataFrame indexed by {side} id with one numeric "
                f"column per feature, got {type(features).__name__}"
            )
        if features.index.has_duplicates:
            dup = features.index[features.index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"{where} has duplicated {side} ids in its index: {dup}")
        if features.columns.has_duplicates:
            dup = features.columns[features.columns.duplicated()].unique()[:5].tolist()
            raise ValueError(f"{where} has duplicated feature columns: {dup}")
        bad = [c for c in features.columns
               if not (pd.api.types.is_numeric_dtype(features[c])
                       and not pd.api.types.is_bool_dtype(features[c]))]
        if bad:
            raise ValueError(f"{where} columns must be numeric; not numeric: {bad[:5]}")
        values = features.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            rows = features.index[~np.isfinite(values).all(axis=1)][:5].tolist()
            raise ValueError(f"{where} has missing or non-finite values for {side}s {rows}")
        if features.index.hasnans:
            raise ValueError(f"{where} index has missing {side} ids")
        index = self.user_index_ if side == "user" else self.item_index_
        rows = index.add(_as_id_array(features.index))
        self._sync_size()
        target = self.user_features_ if side == "user" else self.item_features_
        target.set(rows, list(features.columns), values.astype(np.float32))
        self._grow_state()

    def _feature_matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        # identity features only: the identity LightFM would build on every call, built once
        # per size (at one event per step that build was a tenth of the step)
        users = (self.user_features_.matrix() if self.user_features_.has_side
                 else _identity(self.n_users))
        items = (self.item_features_.matrix() if self.item_features_.has_side
                 else _identity(self.n_items))
        return users, items

    # -- learning ------------------------------------------------------------------------------

    @property
    def _trained(self) -> bool:
        """LightFM's state arrays exist (after the first non-empty batch)."""
        return getattr(self, "model_", None) is not None and self.model_.item_embeddings is not None

    def _check_batch(self, batch: Batch) -> None:
        # LightFM drops zero sample weights and the history matrix drops zero sums: refuse them
        # rather than learn less than the caller gave
        if self.use_weights:
            bad = batch.values <= 0
            if bad.any():
                rows = np.flatnonzero(bad)
                raise ValueError(
                    f"use_weights=True needs positive strengths; {rows.size} event(s) have a "
                    f"weight or rating <= 0 (positions {rows[:10].tolist()})"
                )

    def _fit(self, batch: Batch) -> None:
        if len(batch):  # an empty fit leaves the model untrained: the next batch trains fully
            self._learn(batch, epochs=self.fit_epochs, replay=False)

    def _partial_fit(self, batch: Batch) -> None:
        if not self._trained:
            self._learn(batch, epochs=self.fit_epochs, replay=False)
        else:
            self._learn(batch, epochs=self.epochs, replay=True)

    def _learn(self, batch: Batch, *, epochs: int, replay: bool) -> None:
        users, items, values = self._step_events(batch, replay=replay)
        self.history_.add(batch.users, batch.items, batch.values)  # amortised O(1) per event
        if self._trained:
            self._fit_rows(users, items, values, epochs)
        else:  # the first training initialises LightFM's state
            self._fit_partial(users, items, values, epochs)
        self._blank_dead_items()

    def _step_events(self, batch: Batch, *, replay: bool) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
        """``(users, items, strengths)``: the batch's events, then ``replay`` times as many
        earlier ones sampled from the history."""
        users, items = batch.users, batch.items
        values = batch.values.astype(np.float32)
        if replay and self.replay > 0 and self.history_.n_stored:
            rows, cols, picked = self.history_.sample(round(self.replay * len(batch)), self.rng_)
            users = np.concatenate([users, rows])
            items = np.concatenate([items, cols])
            values = np.concatenate([values, picked])
        return users, items, values

    def _full_matrices(self, users: np.ndarray, items: np.ndarray, values: np.ndarray
                       ) -> tuple[sp.coo_matrix, sp.coo_matrix | None]:
        """The events as ``fit_partial`` takes them: a full-shape COO (all users x all items,
        one entry per event, in order) and, with ``use_weights``, their sample weights."""
        shape = (self.n_users, self.n_items)
        interactions = sp.coo_matrix(
            (np.ones(users.size, dtype=np.float32),
             (users.astype(np.int32), items.astype(np.int32))),
            shape=shape,
        )
        weights = None
        if self.use_weights:
            weights = sp.coo_matrix((values, (interactions.row, interactions.col)), shape=shape)
        return interactions, weights

    def _fit_partial(self, users: np.ndarray, items: np.ndarray, values: np.ndarray,
                     epochs: int) -> None:
        """LightFM's own ``fit_partial`` for ``epochs`` on the events' full-shape matrix."""
        interactions, weights = self._full_matrices(users, items, values)
        user_features, item_features = self._feature_matrices()
        self.model_.fit_partial(
            interactions, user_features=user_features, item_features=item_features,
            sample_weight=weights, epochs=epochs, num_threads=self.num_threads,
        )

    def _fit_rows(self, users: np.ndarray, items: np.ndarray, values: np.ndarray,
                  epochs: int) -> None:
        """What :meth:`_fit_partial` computes, bit for bit, at the cost of the rows the events
        reach rather than of every user and item.

        ``fit_partial`` runs LightFM's Cython epoch routine (``fit_warp``, ``fit_bpr``,
        ``fit_logistic``, ``fit_warp_kos``) ``epochs`` times, and around it does work in
        proportion to the users and items: the full-shape matrices, a finiteness check of
        every embedding after each epoch, and, inside the routine, a pass over every row
        dividing it by the L2 penalty's accumulated scale (1 when the penalty is 0). Here the
        same routine runs with the same arguments and the same random draws, on:

        - the step's users renumbered ``0..k-1`` (a user id only selects its feature row and
          its row of the positives lookup), the lookup built for those rows alone;
        - the items at their own ids (WARP draws negatives as ``rand % n_items``), with
          feature rows only for the items the call can reach: the events' items and, for
          WARP / k-OS, every item the call's random streams can draw before running out of
          draws (:func:`_reachable_items`; BPR draws its negatives among the events' items);
        - copies of the state rows those features reach, written back after the last epoch
          (with an L2 penalty on a side, every row of that side moves each call: that side
          works on LightFM's own arrays, as ``fit_partial`` does, and so does the item side
          when the reachable items are not fewer than all of them).

        Finiteness is checked after each epoch on the rows the routine could write, raising
        LightFM's own error. LightFM's random state is drawn from in the same order as
        ``fit_partial`` draws it (each epoch's shuffle, then the routine's per-thread seeds),
        all epochs up front; on that error it has thus moved past the epochs not run.
        """
        fast = _kernels()
        model = self.model_
        loss, threads, n_items = self.loss, int(self.num_threads), self.n_items
        step_users, user_ids = np.unique(users, return_inverse=True)
        user_ids = user_ids.astype(np.int32)
        item_ids = items.astype(np.int32)
        ones = np.ones(users.size, dtype=np.float32)
        weights = values.astype(np.float32) if self.use_weights else ones
        if self.use_weights and not np.isfinite(np.sum(weights)):
            raise ValueError(_INPUT_NOT_FINITE)
        rng = model.random_state
        shuffles, seeds = [], []
        for _ in range(epochs):
            order = np.arange(users.size, dtype=np.int32)
            rng.shuffle(order)
            shuffles.append(order)
            if loss != "logistic":
                seeds.append(rng.randint(0, _INT32_MAX, size=threads))

        positives = _sorted_unique(items)
        reach: np.ndarray | None = None  # None: every item
        if self.item_alpha == 0:
            if loss in ("bpr", "logistic"):
                reach = positives
            else:
                per_event = self.max_sampled + (self.n if loss == "warp-kos" else 0)
                reach = _reachable_items(np.concatenate(seeds), users.size * per_event,
                                         positives, n_items, int(n_items * _COPY_BELOW))
        if reach is not None and reach.size >= n_items * _COPY_BELOW:
            reach = None
        user_block = _Block(model, "user", self.user_features_, step_users,
                            copy=self.user_alpha == 0
                            and step_users.size < self.n_users * _COPY_BELOW)
        item_block = _Block(model, "item", self.item_features_, reach, n_ids=n_items,
                            copy=reach is not None)
        lookup = None
        if loss != "logistic":  # each renumbered user's items, sorted, once each
            keys = _sorted_unique(user_ids.astype(np.int64) * n_items + items)
            lookup = fast.CSRMatrix(_Rows(
                np.searchsorted(keys, np.arange(step_users.size + 1) * n_items),
                keys % n_items, np.ones(keys.size, dtype=np.float32),
                (step_users.size, n_items)))
        item_rows = fast.CSRMatrix(item_block.features)
        user_rows = fast.CSRMatrix(user_block.features)
        args = (model.learning_rate, model.item_alpha, model.user_alpha)
        # one for every epoch: each routine call ends resetting its L2 scales to 1, as new
        state = fast.FastLightFM(
            *item_block.arrays, *user_block.arrays, model.no_components,
            int(model.learning_schedule == "adadelta"), model.learning_rate, model.rho,
            model.epsilon, model.max_sampled)
        try:
            for epoch in range(epochs):
                order = shuffles[epoch]
                if loss == "warp":
                    fast.fit_warp(item_rows, user_rows, lookup, user_ids, item_ids, ones,
                                  weights, order, state, *args, threads,
                                  _Seeds(seeds[epoch]))
                elif loss == "bpr":
                    fast.fit_bpr(item_rows, user_rows, lookup, user_ids, item_ids, ones,
                                 weights, order, state, *args, threads, _Seeds(seeds[epoch]))
                elif loss == "warp-kos":
                    fast.fit_warp_kos(item_rows, user_rows, lookup, user_ids, order, state,
                                      *args, model.k, model.n, threads, _Seeds(seeds[epoch]))
                else:
                    fast.fit_logistic(item_rows, user_rows, user_ids, item_ids, ones, weights,
                                      order, state, *args, threads)
                if not (item_block.finite() and user_block.finite()):
                    raise ValueError(_NOT_FINITE)
        finally:
            item_block.store()
            user_block.store()

    # -- forgetting ----------------------------------------------------------------------------

    forgets_exactly = False

    def _forget(self, removed: Removed) -> None:
        rows, cols, _ = self.history_.drop(removed.users, removed.items)
        user_rows = self.user_features_.forget(removed.users)
        item_rows = self.item_features_.forget(removed.items)
        dead = np.flatnonzero(self.item_index_.dead)
        self.dead_item_rows_ = self.item_features_.identity[dead]
        if not self._trained:
            return
        self._reset_rows("user", user_rows)
        self._reset_rows("item", item_rows)
        self._retrain_touched(np.setdiff1d(rows, removed.users),
                              np.setdiff1d(cols, removed.items))

    def _reset_rows(self, side: str, rows: np.ndarray) -> None:
        """``rows`` of one side's six arrays as LightFM's ``_initialize`` leaves them, less
        the random embedding draw: embeddings, biases and momenta zero, the gradient
        accumulators at their start (1 with Adagrad, 0 with Adadelta)."""
        if rows.size == 0:
            return
        start = 1.0 if self.learning_schedule == "adagrad" else 0.0
        for suffix, _ in _STATE:
            getattr(self.model_, f"{side}_{suffix}")[rows] = (
                start if suffix.endswith("gradients") else 0.0)

    def _blank_dead_items(self) -> None:
        """Forgotten items' rows back to blank after training (WARP and BPR draw negatives
        from every item column, so training moves them)."""
        rows = getattr(self, "dead_item_rows_", None)
        if rows is not None and rows.size:
            self._reset_rows("item", rows)

    def _retrain_touched(self, users: np.ndarray, items: np.ndarray, *,
                         passes: int | None = None) -> None:
        """``passes`` (default ``epochs``) of ``fit_partial`` over the remaining events of
        ``users`` and ``items`` (those that lost events); afterwards only their feature rows
        keep what the training changed, every other row gets its values back."""
        if users.size == 0 and items.size == 0:
            return
        csr = self.history_.tocsr()
        entry_rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        user_mask = np.zeros(csr.shape[0], dtype=bool)
        user_mask[users] = True
        item_mask = np.zeros(csr.shape[1], dtype=bool)
        item_mask[items] = True
        keep = user_mask[entry_rows] | item_mask[csr.indices]
        if not keep.any():
            return
        interactions, weights = self._full_matrices(entry_rows[keep], csr.indices[keep],
                                                    csr.data[keep])
        user_features, item_features = self._feature_matrices()
        model = self.model_
        kept = {}
        for side, matrix, touched in (("user", user_features, users),
                                      ("item", item_features, items)):
            still = np.ones(matrix.shape[1], dtype=bool)
            still[matrix[touched].indices] = False  # the touched ids' feature rows move
            kept[side] = (still, {suffix: getattr(model, f"{side}_{suffix}")[still]
                                  for suffix, _ in _STATE})
        model.fit_partial(
            interactions, user_features=user_features, item_features=item_features,
            sample_weight=weights, epochs=self.epochs if passes is None else passes,
            num_threads=self.num_threads,
        )
        for side, (still, saved) in kept.items():
            for suffix, values in saved.items():
                getattr(model, f"{side}_{suffix}")[still] = values
        self._blank_dead_items()

    # -- scoring -------------------------------------------------------------------------------

    def _representations(self, side: str, rows: np.ndarray | None) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        """(embeddings, biases) of ``rows`` (all when None) through their feature rows."""
        model = self.model_
        features = self.user_features_ if side == "user" else self.item_features_
        embeddings = getattr(model, f"{side}_embeddings")
        biases = getattr(model, f"{side}_biases")
        if not features.has_side:
            if rows is None:
                return embeddings, biases
            return embeddings[rows], biases[rows]
        matrix = features.matrix()
        if rows is not None:
            matrix = matrix[rows]
        return matrix @ embeddings, matrix @ biases

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        if not self._trained:
            return np.zeros((users.size, self.n_items))
        user_emb, user_bias = self._representations("user", users)
        item_emb, item_bias = self._representations("item", None)
        scores = user_emb @ item_emb.T
        scores += user_bias[:, None]
        scores += item_bias[None, :]
        return scores

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if not self._trained:
            return np.zeros(users.size)
        user_emb, user_bias = self._representations("user", users)
        item_emb, item_bias = self._representations("item", items)
        scores = np.einsum("ij,ij->i", user_emb, item_emb) + user_bias + item_bias
        return scores.astype(np.float64)

    def _score_in_context(self, users: np.ndarray, context: Context) -> np.ndarray:
        """Scores with each row's context: rows with context items are scored with their
        user's representation folded in on its history plus the context (:meth:`_fold_in`);
        a known user without context as by ``_score_users``, an unknown one (-1) by the
        cold-start fallback, as is one whose context the model learned nothing about.
        Nothing is learned."""
        users = np.asarray(users, dtype=np.int64)
        check_context(users, context, self.n_users, self.n_items)
        if not self._trained:
            return np.zeros((users.size, self.n_items))
        return score_with_context(self, users, context, self.context_rows(users, context),
                                  self._score_folded)

    def _score_folded(self, users: np.ndarray, context: Context) -> np.ndarray:
        user_emb, user_bias = self._fold_in(users, context)
        item_emb, item_bias = self._representations("item", None)
        folded = user_emb @ item_emb.T
        folded += user_bias[:, None]
        folded += item_bias[None, :]
        return folded

    def _fold_in(self, users: np.ndarray, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """The users' representations (embedding, bias) fitted to their history plus their
        context, item representations fixed: ``context_steps`` full-batch Adagrad steps of
        the model's own loss on the user's own embedding (the representation of a user with
        side features moves as its identity embedding does), from its learned representation
        (zero for an unknown user, -1), each context event counting ``context_weight`` times
        a history event.

        - ``"warp"`` / ``"warp-kos"``: LightFM's WARP step per positive: up to
          ``max_sampled`` uniform draws for the first item scored above the positive less 1
          (the user's positives skipped), the loss ``log(floor((n_items - 1) / draws))``
          (at most 10) times the gap between the two item embeddings;
        - ``"bpr"``: one negative per positive, drawn by popularity as LightFM draws it from
          the training events, the loss ``1 - sigmoid(positive - negative)``;
        - ``"logistic"``: the positives' ``1 - sigmoid(score)``, the user's bias moving too.

        An approximation of what training on the events would give (the items do not move;
        each step averages the row's positives instead of stepping per event). The draws
        are a hash of ``seed``, the user and its context: the same row gets the same answer
        in any call. Nothing of the model changes."""
        users = np.asarray(users, dtype=np.int64)
        check_context(users, context, self.n_users, self.n_items)
        n, d = users.size, self.no_components
        known = users >= 0
        user_emb = np.zeros((n, d), dtype=np.float32)
        user_bias = np.zeros(n, dtype=np.float32)
        if known.any():
            emb, bias = self._representations("user", users[known])
            user_emb[known], user_bias[known] = emb, bias
        if self.context_steps == 0 or n == 0:
            return user_emb, user_bias
        item_emb, item_bias = self._representations("item", None)
        n_items = item_emb.shape[0]
        rows, items, weights, _ = positives(self.history_, users, context,
                                            self.history_weight)
        total = np.bincount(rows, weights, minlength=n)
        share = weights / np.where(total > 0, total, 1.0)[rows]
        position = np.arange(rows.size) - np.searchsorted(rows, rows)
        keys = row_keys(self.seed, users, context)[rows]
        vectors, bias = user_emb.astype(np.float64), user_bias.astype(np.float64)
        scale = self._context_scale(users, context)
        chunk = max(1, _FOLD_CELLS // max(n_items, 1))
        for start in range(0, n, chunk):  # rows apart: a chunk's matrices stay small
            stop = min(n, start + chunk)
            low, high = np.searchsorted(rows, [start, stop])
            if low < high:
                mine = slice(low, high)
                self._fold_rows(vectors[start:stop], bias[start:stop], item_emb, item_bias,
                                rows[mine] - start, items[mine], share[mine], keys[mine],
                                position[mine], scale[start:stop])
        return vectors.astype(np.float32), bias.astype(np.float32)

    def _context_scale(self, users: np.ndarray, context: Context) -> np.ndarray:
        """Each row's fold-in step size as a fraction of ``context_learning_rate``:
        ``c / (c + context_inertia * h)``, ``c`` the row's context events and ``h`` its user's
        distinct learned items (0 for an unknown user), so a long history holds the user
        against a short context. (The steps are Adagrad's on a gradient averaged over the
        positives: without it one context event moved a user as far as twenty.)"""
        inertia = float(self.context_inertia)
        if inertia == 0:
            return np.ones(users.size)
        counts = self.seen_.row_counts()
        known = (users >= 0) & (users < counts.size)
        learned = np.where(known, counts[np.where(known, users, 0)], 0).astype(np.float64)
        c = context.lengths.astype(np.float64)
        return c / np.maximum(c + inertia * learned, 1e-12)

    def _fold_rows(self, vectors: np.ndarray, bias: np.ndarray, item_emb: np.ndarray,
                   item_bias: np.ndarray, rows: np.ndarray, items: np.ndarray,
                   share: np.ndarray, keys: np.ndarray, position: np.ndarray,
                   scale: np.ndarray) -> None:
        """:meth:`_fold_in`'s steps for a block of rows (``vectors`` and ``bias`` updated in
        place): each step scores the rows' whole catalogue once, reads the positives' and
        the draws' scores from it, and gathers the loss's weights per (row, item) into one
        product with the item embeddings."""
        n, n_items = vectors.shape[0], item_emb.shape[0]
        pos = rows * n_items + items
        liked = np.zeros(n * n_items, dtype=bool)
        liked[pos] = True
        steps = int(self.context_steps)
        draws = self.max_sampled if self.loss in ("warp", "warp-kos") else 1
        lr, alpha = float(self.context_learning_rate), float(self.user_alpha)
        if self.loss == "bpr":
            popular = np.cumsum(np.maximum(self.item_counts_[:n_items], 0.0))
        sums = np.ones_like(vectors)  # Adagrad's accumulators, at LightFM's start
        bias_sums = np.ones_like(bias)
        for step in range(steps):
            scores = (vectors.astype(np.float32) @ item_emb.T + item_bias).ravel()
            positive = scores[pos]
            counter = (position * steps + step) * draws  # a row's own: no other row shifts it
            if self.loss == "bpr":
                neg = rows * n_items + inverse_cdf(popular, uniform(hashed(keys, counter)))
                z = share * (1.0 - _sigmoid(positive - scores[neg]))
            elif self.loss == "logistic":
                z = share * (1.0 - _sigmoid(positive + bias[rows]))
                neg = pos[:0]
                bias_grad = np.bincount(rows, z, minlength=n)
                bias += lr / np.sqrt(bias_sums) * bias_grad
                bias_sums += bias_grad ** 2
            else:
                neg, tries = _warp_negatives(scores, liked, rows, positive, keys, counter,
                                             draws, n_items)
                loss = np.log(np.maximum(1.0, np.floor((n_items - 1) / np.maximum(tries, 1))))
                z = share * np.minimum(loss, _MAX_LOSS) * (tries > 0)
            if neg.size:
                pairs = np.bincount(np.concatenate([pos, neg]), np.concatenate([z, -z]),
                                    minlength=n * n_items)
            else:
                pairs = np.bincount(pos, z, minlength=n * n_items)
            grad = pairs.reshape(n, n_items) @ item_emb - alpha * vectors
            vectors += (lr * scale)[:, None] / np.sqrt(sums) * grad
            sums += grad ** 2

    # -- the wrapped model ---------------------------------------------------------------------

    def _new_model(self) -> Any:
        return _lightfm().LightFM(
            no_components=self.no_components, k=self.k, n=self.n,
            learning_schedule=self.learning_schedule, loss=self.loss,
            learning_rate=self.learning_rate, rho=self.rho, epsilon=self.epsilon,
            item_alpha=self.item_alpha, user_alpha=self.user_alpha,
            max_sampled=self.max_sampled, random_state=self.seed,
        )


class _Features:
    """One side's feature columns: an identity column per id plus named side features.

    Columns are numbered in order of first appearance, so LightFM's embedding rows (one per
    column) only ever grow at the end, whatever mix of new ids and new feature names arrives.
    """

    def __init__(self) -> None:
        self.identity = np.zeros(0, dtype=np.int64)  # column of each id's identity feature
        self.names: dict[Any, int] = {}  # feature name -> its column
        self.n_columns = 0
        self.side = GrowingCSR(0, 0, combine="last", dtype=np.float32)  # ids x named features
        self.side_names: list[Any] = []  # named features, in the order of `side`'s columns
        self.side_position: dict[Any, int] = {}
        self._matrix: sp.csr_matrix | None = None

    @property
    def has_side(self) -> bool:
        return bool(self.names)

    def grow(self, n_ids: int) -> None:
        new = n_ids - self.identity.size
        if new > 0:
            cols = np.arange(self.n_columns, self.n_columns + new)
            self.identity = np.concatenate([self.identity, cols])
            self.n_columns += new
            self.side.resize(n_ids, len(self.side_names))
            self._matrix = None

    def forget(self, rows: np.ndarray) -> np.ndarray:
        """Drop the named-feature values of ``rows`` (they describe those ids); return the
        feature columns to reset: the rows' identity columns, and the named features no
        remaining id has a non-zero value for (learned from the forgotten ids only)."""
        rows = np.asarray(rows, dtype=np.int64)
        columns = self.identity[rows[rows < self.identity.size]]
        if self.side_names and rows.size:
            _, dropped, values = self.side.drop(rows, None)
            dropped = np.unique(dropped[values != 0])
            if dropped.size:
                side = self.side.tocsr()
                held = np.bincount(side.indices[side.data != 0], minlength=len(self.side_names))
                orphans = dropped[held[dropped] == 0]
                named = np.array([self.names[self.side_names[j]] for j in orphans.tolist()],
                                 dtype=np.int64)
                columns = np.concatenate([columns, named])
        self._matrix = None
        return np.unique(columns)

    def set(self, rows: np.ndarray, names: list[Any], values: np.ndarray) -> None:
        """Set (replace) the named features of ``rows``; unknown names get new columns."""
        cols = np.empty(len(names), dtype=np.int64)
        for j, name in enumerate(names):
            if name not in self.names:
                self.names[name] = self.n_columns
                self.n_columns += 1
                self.side_position[name] = len(self.side_names)
                self.side_names.append(name)
            cols[j] = self.side_position[name]
        self.side.resize(self.identity.size, len(self.side_names))
        r, c = np.nonzero(np.ones_like(values, dtype=bool))
        self.side.add(rows[r], cols[c], values[r, c])
        self._matrix = None

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indptr, columns, values)`` of the rows of :meth:`matrix` for ``ids``, in order;
        without named features built from the identity columns alone (no matrix)."""
        if not self.has_side:
            return (np.arange(ids.size + 1), self.identity[ids],
                    np.ones(ids.size, dtype=np.float32))
        matrix = self.matrix()
        starts = matrix.indptr[ids]
        lengths = matrix.indptr[ids + 1] - starts
        span = concat_ranges(starts, lengths)
        return (np.concatenate([[0], np.cumsum(lengths)]), matrix.indices[span],
                matrix.data[span])

    def matrix(self) -> sp.csr_matrix:
        """ids x columns, float32 CSR, rows normalised to sum 1 (as lightfm.data.Dataset)."""
        if self._matrix is None:
            n = self.identity.size
            ident = sp.csr_matrix(
                (np.ones(n, dtype=np.float32), self.identity, np.arange(n + 1)),
                shape=(n, self.n_columns),
            )
            side = self.side.tocsr()
            side_cols = np.array([self.names[name] for name in self.side_names], dtype=np.int64)
            named = sp.csr_matrix(
                (side.data, side_cols[side.indices] if side.nnz else side.indices, side.indptr),
                shape=(n, self.n_columns),
            )
            full = (ident + named).tocsr()
            full.eliminate_zeros()
            sums = np.asarray(np.abs(full).sum(axis=1)).ravel()
            sums[sums == 0] = 1.0
            full = sp.diags((1.0 / sums).astype(np.float32)) @ full
            self._matrix = full.astype(np.float32).tocsr()
        return self._matrix


# -- the wrapped model -------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _warp_negatives(scores: np.ndarray, liked: np.ndarray, rows: np.ndarray,
                    positive: np.ndarray, keys: np.ndarray, counter: np.ndarray, draws: int,
                    n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """LightFM's WARP sampling for each positive of row ``rows`` scored ``positive``
    (``scores``, ``liked``: the rows' flat scores and positives mask): uniform draws (the
    hashes of ``keys`` at ``counter``, ``counter + 1``...) until one scores above ``positive -
    1`` and is no positive of the row, at most ``draws``. Returns that negative's flat index
    and the draws it took (0: none found). Drawn in rounds, each over the positives still
    without one: most find one in the first draws."""
    negative = np.zeros(rows.size, dtype=np.int64)
    tries = np.zeros(rows.size, dtype=np.int64)
    todo = np.arange(rows.size)
    low = 0
    for high in sorted({min(b, draws) for b in (1, 4, 16, draws)}):
        if not todo.size:
            break
        candidates = (rows[todo, None] * n_items + (hashed(
            keys[todo, None], counter[todo, None] + np.arange(low, high))
            % np.uint64(n_items)).astype(np.int64))
        violating = scores[candidates] > positive[todo, None] - 1.0
        violating &= ~liked[candidates]
        hit = violating.any(axis=1)
        first = violating.argmax(axis=1)[hit]
        negative[todo[hit]] = candidates[hit, first]
        tries[todo[hit]] = low + first + 1
        todo = todo[~hit]
        low = high
    return negative, tries


class _Rows:
    """The parts of a CSR matrix LightFM's ``CSRMatrix`` reads (int32 ``indptr`` and
    ``indices``, float32 ``data``, ``shape``), for rows built here."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 shape: tuple[int, int]) -> None:
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int32)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.shape = shape


class _Seeds:
    """LightFM's random state as one call of its epoch routine uses it: a single ``randint``
    for the per-thread seeds, drawn beforehand from the real one (so that what the call can
    draw is known before it runs)."""

    def __init__(self, seeds: np.ndarray) -> None:
        self.seeds = seeds

    def randint(self, low: int, high: int, size: int) -> np.ndarray:
        return self.seeds


class _Block:
    """One side of a :meth:`LightFMRecommender._fit_rows` call: the feature rows LightFM's
    routine reads and the six state arrays it writes.

    ``ids`` (sorted) are the ids the routine can reach, or None for all. Their feature rows
    are numbered ``0..len(ids)-1`` or, given ``n_ids``, kept at their own ids among
    ``n_ids`` rows, the others empty and never read (zeros: a page the allocator hands out
    zeroed costs nothing until written). With ``copy`` the arrays are copies of the rows the
    features reach (columns renumbered to match), written back by :meth:`store`; otherwise
    LightFM's own arrays.
    """

    def __init__(self, model: Any, side: str, features: _Features, ids: np.ndarray | None,
                 *, n_ids: int | None = None, copy: bool) -> None:
        self.model, self.side = model, side
        self.columns: np.ndarray | None = None
        own = [getattr(model, f"{side}_{suffix}") for suffix, _ in _STATE]
        n_columns = own[0].shape[0]
        if ids is None:
            matrix = features.matrix() if features.has_side else _identity(n_ids)
            self.features = _Rows(matrix.indptr, matrix.indices, matrix.data, matrix.shape)
            self.arrays = own
            return
        indptr, columns, data = features.rows(ids)
        if copy:
            if features.has_side:
                self.columns, columns = np.unique(columns, return_inverse=True)
            else:  # the identity columns of sorted ids: sorted, one each
                self.columns, columns = columns, np.arange(columns.size)
            self.arrays = [array.take(self.columns, axis=0) for array in own]
            n_columns = self.columns.size
        else:
            self.arrays = own
        if n_ids is None:
            self.features = _Rows(indptr, columns, data, (ids.size, n_columns))
        else:
            at = np.zeros(n_ids + 1, dtype=np.int32)
            at[ids + 1] = indptr[1:]  # consecutive ids: the next row's start, the same value
            at[ids] = indptr[:-1]
            self.features = _Rows(at, columns, data, (n_ids, n_columns))

    def finite(self) -> bool:
        """The embeddings and biases the routine could write are all finite (their sums,
        as LightFM's ``_check_finite`` tests them)."""
        return math.isfinite(float(self.arrays[0].sum()) + float(self.arrays[3].sum()))

    def store(self) -> None:
        """Copies back into LightFM's arrays."""
        if self.columns is not None:
            for (suffix, _), array in zip(_STATE, self.arrays, strict=True):
                getattr(self.model, f"{self.side}_{suffix}")[self.columns] = array


#: LightFM's ``rand_r`` (musl's): ``seed = seed * A + C`` (mod 2**32), tempered, halved
_RAND_A, _RAND_C = 1103515245, 12345
_RAND_STEPS: list[np.ndarray] = []  # [A**k, C * (1 + A + ... + A**(k-1))] for k = 1, 2, ...


def _rand_r(seeds: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` values of LightFM's ``rand_r`` from each of ``seeds`` (one row
    per seed), as its epoch routines draw them."""
    if not _RAND_STEPS or _RAND_STEPS[0].size < count:
        size = max(count, 1024, 2 * (_RAND_STEPS[0].size if _RAND_STEPS else 0))
        power = np.cumprod(np.full(size, _RAND_A, dtype=np.uint32), dtype=np.uint32)
        total = np.cumsum(np.concatenate([np.ones(1, dtype=np.uint32), power[:-1]]),
                          dtype=np.uint32) * np.uint32(_RAND_C)
        _RAND_STEPS[:] = [power, total]
    power, total = _RAND_STEPS
    x = power[:count] * seeds.astype(np.uint32)[:, None] + total[:count]
    x ^= x >> np.uint32(11)
    x ^= (x << np.uint32(7)) & np.uint32(0x9D2C5680)
    x ^= (x << np.uint32(15)) & np.uint32(0xEFC60000)
    x ^= x >> np.uint32(18)
    return x >> np.uint32(1)


def _reachable_items(seeds: np.ndarray, budget: int, positives: np.ndarray, n_items: int,
                     limit: int) -> np.ndarray | None:
    """Every item a WARP / k-OS routine call can draw from the thread ``seeds``, plus the
    events' items ``positives`` (sorted); None when that would be ``limit`` items or more.

    Each thread draws ``rand_r % n_items`` from its own stream, in order. A draw of an item
    outside ``positives`` is accepted by any event (drawing one of its user's positives is
    what makes an event draw again), and the events accept at most ``budget`` draws in all
    (``max_sampled`` per event, plus k-OS's ``n`` draws of positives). So a thread never
    reads past its ``budget``-th draw outside ``positives``, and any later draw it makes is
    one of ``positives``: its first draws up to one with ``budget`` outside ``positives``
    before it, with ``positives``, hold every item it reaches."""
    if seeds.size * budget >= limit:
        return None
    count = budget + 16
    while count <= 64 * budget + 1024:
        drawn = _rand_r(seeds, count) % np.uint32(n_items)
        at = np.searchsorted(positives, drawn)
        np.minimum(at, positives.size - 1, out=at)
        if count - np.count_nonzero(positives[at] == drawn) >= budget:  # in every stream
            reached = _sorted_unique(np.concatenate([drawn.ravel(), positives]))
            return reached if reached.size < limit else None
        count *= 2
    return None  # nearly every draw is a positive: the events cover nearly every item


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by sorting (numpy's hashing unique costs several times more on
    a step's few hundred integers)."""
    values = np.sort(values)
    keep = np.empty(values.size, dtype=bool)
    keep[:1] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


@functools.lru_cache(maxsize=4)
def _identity(n: int) -> sp.csr_matrix:
    """The ``n x n`` identity features, as LightFM builds them (float32 CSR); shared, read only."""
    return sp.identity(n, dtype=np.float32, format="csr")


def _lightfm() -> Any:
    require("lightfm", "lightfm")
    import lightfm

    return lightfm


def _kernels() -> Any:
    """LightFM's Cython module: its epoch routines, ``CSRMatrix`` and ``FastLightFM``."""
    _lightfm()
    from lightfm import _lightfm_fast

    return _lightfm_fast
