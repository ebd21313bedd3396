"""The cold-start fallback: how every model answers a user (or pair) it does not know.

Two policies, chosen with the ``cold_start`` parameter of the models that take it (models
without one use ``"popularity"``): ``"popularity"`` ranks by all-time item counts;
``"newcomer"`` (or :class:`Newcomer` with explicit settings) ranks by how often each item was
among a user's first events lately. The base class keeps the counts up to date as it learns;
a model changes the answer by overriding ``_fallback_scores`` (unknown users) or
``_fallback_pairs`` (``score``'s pairs with an unknown user or item).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .growth import grown
from .sparse import GrowingCSR

__all__ = ["COLD_STARTS", "NEWCOMER_EVENTS", "NEWCOMER_HALF_LIFE", "ColdStart", "Newcomer",
           "check_cold_start"]

#: cold-start policies for unknown users (the ``cold_start`` parameter of the models that take it)
COLD_STARTS = ("popularity", "newcomer")
#: "newcomer" counts an event when it is among its user's first ``NEWCOMER_EVENTS`` events...
NEWCOMER_EVENTS = 50
#: ...and halves each count every ``NEWCOMER_HALF_LIFE`` events learned after it
NEWCOMER_HALF_LIFE = 10_000.0


@dataclass(frozen=True)
class Newcomer:
    """The "newcomer" cold-start policy with explicit settings (``cold_start=Newcomer(...)``).

    Unknown users are ranked by how often each item was among a user's first ``first_events``
    events, each count halving every ``half_life`` events learned after it; ties are broken by
    all-time counts. ``cold_start="newcomer"`` is ``Newcomer()``. The defaults suit a stream of
    about 100,000 events (tuned on MovieLens 100K); for a busier stream scale ``half_life``
    with its traffic (say, a day's worth of events).

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins import Newcomer, Popularity
    >>> events = pd.DataFrame({"user": ["vet", "vet", "vet", "a", "b"],
    ...                        "item": ["old", "old", "old", "new", "new"]})
    >>> Popularity(cold_start=Newcomer(first_events=1)).fit(events).recommend("x", k=1).items
    array([['new']], dtype=object)
    """

    first_events: int = NEWCOMER_EVENTS
    half_life: float = NEWCOMER_HALF_LIFE


_DEFAULT_NEWCOMER = Newcomer()


def check_cold_start(policy: Any, name: str) -> None:
    """Raise ValueError unless ``policy`` is a cold-start policy (a name or a valid Newcomer)."""
    if isinstance(policy, Newcomer):
        first, half_life = policy.first_events, policy.half_life
        if isinstance(first, (bool, np.bool_)) or not isinstance(first, (int, np.integer)) \
                or first < 1:
            raise ValueError(f"{name}: Newcomer.first_events must be an integer >= 1, got "
                             f"{first!r}")
        try:
            value = float(half_life)
        except (TypeError, ValueError, OverflowError):
            value = float("nan")
        if isinstance(half_life, (bool, np.bool_, str)) or not math.isfinite(value) or \
                value < 1e-3:
            raise ValueError(f"{name}: Newcomer.half_life must be a finite number of events "
                             f">= 0.001, got {half_life!r}")
    elif not isinstance(policy, str) or policy not in COLD_STARTS:
        raise ValueError(f"{name} must be one of {list(COLD_STARTS)} or a "
                         f"recinc_plugins.Newcomer(...), got {policy!r}")


class ColdStart:
    """The fallback for unknown users and pairs, and the newcomer counts behind it.

    Reads the shared state (``item_counts_``, ``n_events_``, ``seen_``, ``global_mean_``);
    :class:`~recinc_plugins.state.SharedState` calls ``_init_newcomer`` on reset and
    ``_count_newcomers`` for every batch it ingests.
    """

    def _fallback_scores(self, n_rows: int) -> np.ndarray:
        """Cold-start scores for unknown users, one row per unknown user: item popularity, or
        under the newcomer policy the newcomer counts relative to the largest (1 for the top
        item), ties broken by popularity (a millionth of an item's share of all events)."""
        if self._newcomer_settings() is None or not self._newcomer_synced():
            return np.broadcast_to(self.item_counts_, (n_rows, self.item_counts_.size))
        n_items = self.item_counts_.size
        key = (self.n_events_, n_items, self.newcomer_clock_)
        cached = getattr(self, "_newcomer_row", None)
        if cached is None or cached[0] != key:  # one row per state: the harness asks per event
            newcomer = grown(self.newcomer_, n_items)[:n_items]
            top = newcomer.max(initial=0.0)
            scores = newcomer / top if top > 0 else np.zeros(n_items)
            scores += 1e-6 * self.item_counts_ / max(self.n_events_, 1)
            scores.flags.writeable = False
            cached = self._newcomer_row = (key, scores)
        return np.broadcast_to(cached[1], (n_rows, n_items))

    def _fallback_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores for pairs with an unknown user or item (index -1): the global mean for
        models that predict ratings, else the unknown users' score of the item (0 for an
        unknown item)."""
        if self.predicts_ratings():
            return np.full(users.size, self.global_mean_)
        out = np.zeros(users.size, dtype=np.float64)
        known = items >= 0
        if known.any():
            out[known] = self._fallback_scores(1)[0][items[known]]
        return out

    # -- the policy --------------------------------------------------------------------------

    def _cold_start_policy(self) -> str | Newcomer:
        """How unknown users are answered: the ``cold_start`` parameter where the model has one."""
        return getattr(self, "cold_start", "popularity")

    def _newcomer_settings(self) -> Newcomer | None:
        """The newcomer policy's settings, or None under the popularity fallback."""
        policy = self._cold_start_policy()
        if isinstance(policy, Newcomer):
            return policy
        return _DEFAULT_NEWCOMER if policy == "newcomer" else None

    def _check_cold_start(self) -> None:
        name = "cold_start" if hasattr(self, "cold_start") else "the cold-start policy"
        check_cold_start(self._cold_start_policy(), name)

    # -- the newcomer counts -----------------------------------------------------------------

    def _init_newcomer(self) -> None:
        #: events learned per user (kept while the newcomer policy is on), and the decayed count
        #: of each item among users' first events, stored scaled by 2 ** newcomer_clock_
        self.user_events_ = np.zeros(0, dtype=np.int64)
        self.newcomer_ = np.zeros(0, dtype=np.float64)
        self.newcomer_clock_ = 0.0
        self.newcomer_pairs_ = GrowingCSR(0, 0, combine="sum", dtype=np.float64)
        #: n_events_ when the counts were last brought up to date: they describe the stream
        #: only while this equals n_events_ (the policy can be switched on mid-stream)
        self.newcomer_synced_ = getattr(self, "n_events_", 0)
        self._newcomer_row = None  # the fallback row, cached per state

    def _newcomer_synced(self) -> bool:
        return getattr(self, "newcomer_synced_", -1) == self.n_events_

    def _restart_newcomer(self) -> None:
        """Start the newcomer counts afresh on a model that has learned without them: each
        user's event count is rebuilt from the seen-items matrix (which sums one per event)."""
        self._init_newcomer()
        if self.n_users:
            self.user_events_ = np.rint(
                np.asarray(self.seen_.tocsr().sum(axis=1)).ravel()).astype(np.int64)
        self.newcomer_synced_ = self.n_events_

    def _restore_newcomer(self, state: dict[str, Any]) -> None:
        """Bring the counts of a loaded model (its ``state``) up to this version's rules."""
        if "user_index_" in state and "user_events_" not in state:
            # a file from before the shared cold-start policies: counts start from here
            self._restart_newcomer()
            for key in ("newcomer_", "newcomer_clock_"):  # a neural model kept its own
                if key in state:
                    setattr(self, key, state[key])
        elif "user_index_" in state and "newcomer_synced_" not in state:
            # written before the counts carried their own marker: trust them only if the policy
            # was on (otherwise they restart at the next batch)
            on = self._newcomer_settings() is not None
            self.newcomer_synced_ = self.n_events_ if on else -1
        self._newcomer_row = None

    def _count_newcomers(self, users: np.ndarray, items: np.ndarray,
                         settings: Newcomer) -> None:
        """Update the newcomer counts with events in the order given (each event decays the
        counts before it by one event's worth of the half-life)."""
        n = users.size
        half_life = float(settings.half_life)
        self.user_events_ = grown(self.user_events_, self.n_users, spare=True)
        self.newcomer_ = grown(self.newcomer_, self.n_items, spare=True)
        if n == 1:  # the one-event path in scalars (the harness's per-event replay)
            u = int(users[0])
            ordinal = int(self.user_events_[u])
            self.user_events_[u] = ordinal + 1
            end = self.newcomer_clock_ + 1.0 / half_life
            if end > 500:
                self._rescale_newcomer(end)
                end = 0.0
            if ordinal < settings.first_events:
                self.newcomer_[int(items[0])] += 2.0 ** end
                self._newcomer_pairs().add(users, items, 2.0 ** end)
            self.newcomer_clock_ = end
            return
        order = np.argsort(users, kind="stable")
        sorted_users = users[order]
        starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
        counts = np.diff(np.r_[starts, n])
        ordinal = np.empty(n, dtype=np.int64)
        ordinal[order] = self.user_events_[sorted_users] + (
            np.arange(n) - np.repeat(starts, counts))
        self.user_events_[sorted_users[starts]] += counts
        # the counts are stored scaled by 2 ** clock; before the scale could overflow, move the
        # frame so that the end of this batch is at 0 (old counts then shrink, possibly to 0)
        start, end = self.newcomer_clock_, self.newcomer_clock_ + n / half_life
        if end > 500:
            self._rescale_newcomer(end)
            start, end = start - end, 0.0
        early = np.flatnonzero(ordinal < settings.first_events)
        if early.size:
            weights = 2.0 ** (start + (early + 1) / half_life)
            np.add.at(self.newcomer_, items[early], weights)
            self._newcomer_pairs().add(users[early], items[early], weights)
        self.newcomer_clock_ = end

    def _rescale_newcomer(self, end: float) -> None:
        """Divide the stored counts by ``2 ** end`` (the frame moves to ``end``), but never push
        the largest below ``2 ** -500``: counts that have decayed for over 500 half-lives keep
        their order (and stay below any new event's) instead of underflowing to zero."""
        top = self.newcomer_.max(initial=0.0)
        if top <= 0:
            return
        shift = -end if np.log2(top) - end >= -500 else -500 - np.log2(top)
        self.newcomer_ *= 2.0 ** shift
        self._newcomer_pairs().scale(2.0 ** shift)

    def _newcomer_pairs(self) -> GrowingCSR:
        """Each (user, item) pair's share of ``newcomer_`` (scaled alike): what ``forget``
        takes out when it forgets the user or the item."""
        pairs = getattr(self, "newcomer_pairs_", None)
        if pairs is None:
            pairs = self.newcomer_pairs_ = GrowingCSR(0, 0, combine="sum", dtype=np.float64)
        return pairs
