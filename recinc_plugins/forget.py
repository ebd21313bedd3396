"""Forgetting on request: ``model.forget(users=..., items=...)`` for every model.

After ``forget`` the ids are unknown (scored by the cold-start policy, as if never seen), their
events are gone from the shared state (seen items, item counts, event and rating totals,
newcomer counts) and from everything the model keeps, and a saved file holds no trace of them:
their slots in the id maps keep their index but hold no id (see
:meth:`~recinc_plugins.ids.IdIndex.forget`), and their rows in every table are zeroed.

Each model says how it forgets through one hook, ``_forget(users, items, removed)``, called
after the shared state has dropped the events (``removed``: the ``(users, items, counts)`` of
the pairs dropped, in dense indices):

- exact models (popularity, item-knn, implicit-als) remove the events' contributions so the
  model equals one trained without them (to float tolerance);
- SGD-trained models zero the rows and re-train the rows the events touched on the remaining
  history for a budget; ``forget(..., exact=True)`` retrains any model from the kept events
  instead (:meth:`Forgetting.kept_events`), which equals a model fitted on them in one call.

A model without its own ``_forget`` is forgotten exactly, by retraining.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .ids import _as_id_array

__all__ = ["ForgetReport", "Forgetting"]


@dataclass
class ForgetReport:
    """What one ``forget`` call did: ids forgotten, events removed, how, and its cost."""

    users: int
    items: int
    events: int
    exact: bool
    seconds: float


@dataclass
class Removed:
    """The pairs a ``forget`` dropped from the shared state (dense indices) and their event
    counts: what a model's ``_forget`` hook takes out of its own tables."""

    users: np.ndarray  # the forgotten users (sorted, unique)
    items: np.ndarray  # the forgotten items
    pair_users: np.ndarray  # every dropped (user, item) pair ...
    pair_items: np.ndarray
    counts: np.ndarray  # ... and its number of events
    values: np.ndarray  # ... and their summed strength (rating or weight; 1 per event)


class Forgetting:
    """The ``forget`` verb of :class:`~recinc_plugins.base.IncrementalRecommender`."""

    #: True where ``forget`` (``exact=False``) gives a model equal to one trained without the
    #: events; False where it is an approximation (the measured gap is in docs/forget.md)
    forgets_exactly: bool = False

    def forget(self, users: Any = None, items: Any = None, *, exact: bool = False,
               missing: str = "raise") -> ForgetReport:
        """Forget users and/or items: their ids, their events, their rows, everywhere.

        Parameters
        ----------
        users, items
            Ids to forget (one id or a sequence); either may be omitted.
        exact
            Retrain the model from the events it keeps (:meth:`kept_events`) instead of its
            own removal: exact for every model, at the cost of a ``fit``. Models whose own
            removal is exact (``forgets_exactly``) need not ask.
        missing
            ``"raise"`` (default): an unknown id (never seen, or already forgotten) is a
            ValueError and nothing changes; ``"ignore"``: unknown ids are skipped.

        Returns
        -------
        ForgetReport
            The ids and events removed, whether the removal was exact, and its wall time.
        """
        if missing not in ("raise", "ignore"):
            raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
        if not isinstance(exact, (bool, np.bool_)):
            raise TypeError(f"exact must be True or False, got {exact!r}")
        self._ensure_state()
        t0 = time.perf_counter()
        u = self._forget_indices(users, self.user_index_, "user", missing)
        i = self._forget_indices(items, self.item_index_, "item", missing)
        if u.size == 0 and i.size == 0:
            return ForgetReport(0, 0, 0, True, time.perf_counter() - t0)
        self._sync_size()
        retrain = bool(exact) or type(self)._forget is Forgetting._forget
        removed = self._forget_shared(u, i)
        if retrain:
            self._retrain_kept()
        else:
            self._forget(removed)
        self._newcomer_row = None
        events = round(float(removed.counts.sum()))
        return ForgetReport(int(u.size), int(i.size), events,
                            retrain or self.forgets_exactly, time.perf_counter() - t0)

    @staticmethod
    def _forget_indices(ids: Any, index: Any, what: str, missing: str) -> np.ndarray:
        if ids is None:
            return np.empty(0, dtype=np.int64)
        values = _as_id_array(ids)
        found = index.lookup(values)
        if missing == "raise" and (found < 0).any():
            unknown = values[found < 0]
            raise ValueError(
                f"cannot forget {unknown.size} unknown {what} id(s) (never seen, or forgotten "
                f"already): {unknown[:10].tolist()}; pass missing='ignore' to skip them")
        return np.unique(found[found >= 0])

    # -- the shared state ----------------------------------------------------------------------

    def _forget_shared(self, users: np.ndarray, items: np.ndarray) -> Removed:
        """Drop the events of ``users`` and ``items`` from the shared state and forget the
        ids in the id maps; return what was dropped."""
        pair_users, pair_items, counts = self.seen_.drop(users, items)
        counts = counts.astype(np.float64)
        n_removed = float(counts.sum())
        if counts.size:
            np.subtract.at(self.item_counts_, pair_items, counts)
        self.item_counts_[items] = 0.0
        np.maximum(self.item_counts_, 0.0, out=self.item_counts_)  # (float rounding)
        all_rated = self.n_ratings_ == self.n_events_
        self.n_events_ -= round(n_removed)
        values = getattr(self, "pair_values_", None)
        dropped = values.drop(users, items)[2] if values is not None else counts
        if self.n_ratings_ and values is not None and all_rated:
            self.rating_sum_ -= float(dropped.sum())
            self.n_ratings_ -= round(n_removed)
        elif self.n_ratings_:  # a file from before rating sums were kept: keep the mean
            mean = self.rating_sum_ / self.n_ratings_
            self.n_ratings_ = max(0, self.n_ratings_ - round(n_removed))
            self.rating_sum_ = mean * self.n_ratings_
        if self.n_ratings_ <= 0:
            self.rating_sum_, self.n_ratings_ = 0.0, 0
        self._forget_newcomer(users, items)
        self.user_index_.forget(users)
        self.item_index_.forget(items)
        return Removed(users, items, pair_users, pair_items, counts,
                       np.asarray(dropped, dtype=np.float64))

    def _forget_newcomer(self, users: np.ndarray, items: np.ndarray) -> None:
        """The newcomer counts (what new users pick first) lose each forgotten pair's share, as
        it was counted (``newcomer_pairs_``); the forgotten users' event counts go to 0.
        A file from before the shares were kept restarts the counts from the remaining
        events instead (no trace is left, at the cost of the statistics gathered so far)."""
        if not self.newcomer_.size and not self.user_events_.size:
            return
        pairs = getattr(self, "newcomer_pairs_", None)
        if pairs is None:
            if users.size or items.size:
                self._restart_newcomer()
            return
        _, pair_items, shares = pairs.drop(users, items)
        if shares.size:
            np.subtract.at(self.newcomer_, pair_items, shares)
        self.newcomer_[items[items < self.newcomer_.size]] = 0.0
        np.maximum(self.newcomer_, 0.0, out=self.newcomer_)
        self.user_events_[users[users < self.user_events_.size]] = 0
        if getattr(self, "newcomer_synced_", -1) >= 0:
            self.newcomer_synced_ = self.n_events_

    # -- exact forgetting by retraining ------------------------------------------------------

    def kept_events(self) -> pd.DataFrame:
        """The events the model keeps, as a frame ``fit`` accepts: each kept (user, item) pair
        repeated once per event, with its mean ``rating`` (rating models) or ``weight`` (where
        the events carried weights). Users and items
        come in index order, so a refit keeps the id maps' order (less forgotten ids).
        A pair's strength is spread evenly over its events: sums (implicit strengths,
        counts) are kept exactly, a re-rated pair gets its mean rating."""
        csr = self.seen_.tocsr()
        counts = np.rint(csr.data).astype(np.int64)
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        cols = csr.indices.astype(np.int64)
        keep = counts > 0
        rows, cols, counts = rows[keep], cols[keep], counts[keep]
        frame = {"user": self.user_index_.ids_of(np.repeat(rows, counts)),
                 "item": self.item_index_.ids_of(np.repeat(cols, counts))}
        for column, mean in self._mean_strengths(rows, cols, counts).items():
            frame[column] = np.repeat(mean, counts)
        return pd.DataFrame(frame)

    def _mean_strengths(self, users: np.ndarray, items: np.ndarray,
                        counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``{"rating" or "weight": each (user, item) pair's mean strength}`` (``counts``: its
        events, read from ``seen_`` when not given); empty where every strength was 1."""
        values = getattr(self, "pair_values_", None)
        if values is None:
            return {}
        if counts is None:
            counts = np.asarray(self.seen_.tocsr()[users, items]).ravel()
        sums = np.asarray(values.tocsr()[users, items]).ravel()
        rated = self.n_ratings_ or not type(self).capabilities.implicit
        return {"rating" if rated else "weight": sums / np.maximum(counts, 1)}

    def _retrain_kept(self) -> None:
        """Refit on :meth:`kept_events`, from scratch (the forgotten slots go with the old
        id maps)."""
        frame = self.kept_events()
        self.fit(frame)

    # -- the hook ------------------------------------------------------------------------------

    def _forget(self, removed: Removed) -> None:
        """Take ``removed``'s events and the forgotten users' and items' rows out of the
        model's own state (the shared state has dropped them already). Without an override,
        ``forget`` retrains from :meth:`kept_events`."""
        raise NotImplementedError
