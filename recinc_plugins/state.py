"""The state every model shares, and the steps that turn interactions into a :class:`Batch`.

Every model keeps, besides its own learned state: the id maps (``user_index_``,
``item_index_``), the growing user x item matrix of seen items (``seen_``, one per event),
per-item event counts (``item_counts_``), the event count (``n_events_``) and the running
rating mean (``global_mean_``). :class:`SharedState` builds them (``_reset``), grows them with
the id maps and calls the model's ``_grow`` (``_sync_size``), validates and encodes
interactions into a :class:`Batch`, and adds each batch to them before the model learns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .data.interactions import validate_interactions
from .growth import grown
from .ids import IdIndex, _as_id_array
from .sparse import GrowingCSR

__all__ = ["Batch", "SharedState"]


@dataclass
class Batch:
    """Validated events in a model's own dense indices: what ``_fit``/``_partial_fit`` receive.

    ``timestamps`` are int64 nanoseconds since the Unix epoch. ``frame`` is the canonical frame
    the batch came from (None on the harness's fast path); extra columns live there.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    weights: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return int(self.users.size)

    @property
    def values(self) -> np.ndarray:
        """Ratings if given, else weights, else ones: the strength of each event."""
        if self.ratings is not None:
            return self.ratings
        if self.weights is not None:
            return self.weights
        return np.ones(self.users.size, dtype=np.float64)


class SharedState:
    """Id maps, seen items, counts and rating mean, kept in step with every batch learned."""

    @property
    def is_fitted(self) -> bool:
        """True once the model has learned at least one event."""
        return getattr(self, "n_events_", 0) > 0

    @property
    def n_users(self) -> int:
        return len(self.user_index_) if hasattr(self, "user_index_") else 0

    @property
    def n_items(self) -> int:
        return len(self.item_index_) if hasattr(self, "item_index_") else 0

    @property
    def global_mean_(self) -> float:
        """Mean of all ratings learned so far (NaN before any)."""
        return self.rating_sum_ / self.n_ratings_ if self.n_ratings_ else float("nan")

    def _reset(self) -> None:
        self._check_params()  # first: a bad parameter must leave no half-built state
        self._check_cold_start()
        self.user_index_ = IdIndex()
        self.item_index_ = IdIndex()
        self.seen_ = GrowingCSR(0, 0, combine="sum", dtype=np.float32)
        self.item_counts_ = np.zeros(0, dtype=np.float64)
        self.n_events_ = 0
        self.rating_sum_ = 0.0
        self.n_ratings_ = 0
        #: summed strength (rating or weight) per (user, item) pair: kept once a batch carries
        #: ratings or weights (before that every strength was 1: ``seen_`` holds the sums);
        #: what ``forget`` takes out of the rating totals and what an exact refit relearns
        self.pair_values_: GrowingCSR | None = None
        self._init_newcomer()
        self._grown = (0, 0)
        self._init_model()

    def _ensure_state(self) -> None:
        if not hasattr(self, "user_index_"):
            self._reset()

    def _sync_size(self) -> None:
        """Grow the shared state, then the model (``_grow``), to the id maps' sizes."""
        n_users, n_items = len(self.user_index_), len(self.item_index_)
        if (n_users, n_items) != self._grown:
            self.item_counts_ = grown(self.item_counts_, n_items)
            self.seen_.resize(n_users, n_items)
            self._grow(n_users, n_items)
            self._grown = (n_users, n_items)

    # -- interactions in, a batch out --------------------------------------------------------

    def _validate(self, interactions: Any) -> pd.DataFrame:
        """The canonical frame of ``interactions``, or a ValueError naming what is wrong."""
        frame = validate_interactions(interactions)
        if (not self.capabilities.implicit and "rating" not in frame.columns):
            raise ValueError(
                f"{type(self).__name__} learns from explicit ratings, but the interactions have "
                f"no 'rating' column (columns: {list(frame.columns)})"
            )
        return frame

    def _encode(self, frame: pd.DataFrame) -> Batch:
        """A batch of ``frame``'s events; new ids are added to the id maps."""
        users = self.user_index_.add(frame["user"].to_numpy())
        items = self.item_index_.add(frame["item"].to_numpy())
        timestamps = None
        if "timestamp" in frame.columns:
            timestamps = frame["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        return Batch(
            users=users,
            items=items,
            ratings=frame["rating"].to_numpy(np.float64) if "rating" in frame.columns else None,
            weights=frame["weight"].to_numpy(np.float64) if "weight" in frame.columns else None,
            timestamps=timestamps,
            frame=frame,
        )

    def _lookup_pairs(
        self, users: Any, items: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(user_ids, item_ids, user_indices, item_indices)`` for ``score``'s pairs, a single
        user broadcast to every item; indices are -1 for unknown ids."""
        self._ensure_state()
        user_ids = _as_id_array(users)
        item_ids = _as_id_array(items)
        if user_ids.size == 1 and item_ids.size != 1:
            user_ids = np.repeat(user_ids, item_ids.size)
        if user_ids.size != item_ids.size:
            raise ValueError(
                f"users and items must have the same length, got {user_ids.size} users and "
                f"{item_ids.size} items"
            )
        return user_ids, item_ids, self.user_index_.lookup(user_ids), self.item_index_.lookup(
            item_ids)

    # -- learning a batch --------------------------------------------------------------------

    def _check_and_prepare(self, batch: Batch, n_users: int, n_items: int) -> None:
        """``_check_batch`` then ``_prepare``; if either raises, the ids the batch added to the
        id maps (beyond ``n_users``/``n_items``) are forgotten, so nothing has changed."""
        try:
            self._check_batch(batch)
            self._prepare(batch)
        except BaseException:
            self.user_index_._truncate(n_users)
            self.item_index_._truncate(n_items)
            raise

    def _ingest(self, batch: Batch) -> None:
        """Update the shared state with a batch (indices already in the id maps)."""
        if (len(self.user_index_), len(self.item_index_)) != self._grown:
            self._sync_size()
        n = batch.users.size
        if n == 0:
            return
        settings = self._newcomer_settings()
        if settings is not None and not self._newcomer_synced():
            self._restart_newcomer()  # switched on after learning without it
        values = getattr(self, "pair_values_", None)
        strengths = batch.ratings if batch.ratings is not None else batch.weights
        if values is None and strengths is not None:
            # started from seen_ before this batch: its events count by their own strength
            values = self.pair_values_ = self._start_pair_values()
        if n == 1:  # one event (a River loop, the harness at one event per step): scalars
            u, i = int(batch.users[0]), int(batch.items[0])
            self.seen_.add_one(u, i, 1.0)
            self.item_counts_[i] += 1.0
            if strengths is not None:
                values.add_one(u, i, float(strengths[0]))
            elif values is not None:
                values.add_one(u, i, 1.0)
        else:
            self.seen_.add(batch.users, batch.items, 1.0)
            if strengths is not None:
                values.add(batch.users, batch.items, strengths)
            elif values is not None:
                values.add(batch.users, batch.items, 1.0)
            if n * 16 < self.item_counts_.size:  # small step: touch only its items
                np.add.at(self.item_counts_, batch.items, 1.0)
            else:
                self.item_counts_ += np.bincount(batch.items, minlength=self.item_counts_.size)
        self.n_events_ += n
        if batch.ratings is not None:
            self.rating_sum_ += float(batch.ratings.sum()) if n > 1 else float(batch.ratings[0])
            self.n_ratings_ += n
        if settings is not None:
            self._count_newcomers(batch.users, batch.items, settings)
            self.newcomer_synced_ = self.n_events_

    def _start_pair_values(self) -> GrowingCSR:
        """The per-pair strength sums, started from ``seen_`` (every strength so far was 1)."""
        values = GrowingCSR(*self.seen_.shape, combine="sum", dtype=np.float64)
        csr = self.seen_.tocsr()
        if csr.nnz:
            rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
            values.add(rows, csr.indices, csr.data.astype(np.float64))
        return values

    def _ingest_and_learn(self, batch: Batch) -> None:
        self._ingest(batch)
        if len(batch):
            self._partial_fit(batch)

    def _partial_fit_encoded(self, batch: Batch) -> None:
        self.learn_encoded(batch)

    # -- what a model file holds -------------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        """Learned state to persist; by default every attribute that is not a parameter."""
        params = set(self._param_names())
        return {k: v for k, v in self.__dict__.items()
                if k not in params and k != "_newcomer_row"}

    def _set_state(self, state: dict[str, Any]) -> None:
        """Install ``state`` (from ``_get_state``) on a freshly constructed model."""
        self.__dict__.update(state)
        self._restore_newcomer(state)
