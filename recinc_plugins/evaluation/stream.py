"""Stream: a timestamped interactions frame, encoded once, cut into prequential steps."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..data.interactions import CANONICAL_COLUMNS, validate_interactions

__all__ = ["Stream"]


def _code_dtype(n: int) -> type:
    """The smallest of int32 and int64 that holds ``0..n``."""
    return np.int32 if n < 2**31 - 1 else np.int64


class Stream:
    """Replay an interactions frame in timestamp order, in steps, after an optional warm-up.

    The frame is validated, sorted by timestamp with a stable sort (so file order breaks ties;
    a frame without timestamps is replayed in file order) and encoded once: users and items get
    dense codes in order of first appearance, and everything the protocol needs per event (is
    the user or item new before its step, how much of the user's history precedes the step) is
    computed here, vectorised, and shared by every model of a comparison.

    Parameters
    ----------
    interactions
        Anything :func:`~recinc_plugins.data.validate_interactions` accepts.
    step
        ``int`` (or a whole-number ``float`` such as ``2.0``): events per step (1 scores every
        event against a model that has learned every earlier event). A duration (``"1D"``,
        ``"6h"``, a ``pandas.Timedelta``): one step per time window, windows aligned on the Unix
        epoch (``"1D"`` steps are UTC days); needs timestamps. Empty windows are skipped.
    warmup
        What is learned with ``fit`` before the replay and never scored: an ``int`` number of
        events, a ``float`` fraction of the events in ``[0, 1)``, or a time (``str`` or
        ``pandas.Timestamp``): every event before it.

    Attributes
    ----------
    frame : pandas.DataFrame
        The canonical frame in replay order.
    users, items : numpy.ndarray
        Per-event codes in first-appearance order: int32 where the ids fit (a 10M-event
        stream's codes take 80 MB, not 160), else int64.
    user_ids, item_ids : numpy.ndarray
        The external id of each code.
    n_warmup : int
        Events in the warm-up.
    bounds : numpy.ndarray
        Start of each scored step, then the end of the stream: step ``j`` is
        ``bounds[j]:bounds[j + 1]``.

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.evaluation import Stream
    >>> events = pd.DataFrame({"user": ["a", "b", "a", "c", "b"],
    ...                        "item": ["x", "x", "y", "y", "z"],
    ...                        "timestamp": [1, 2, 2, 3, 4]})
    >>> stream = Stream(events, step=2, warmup=1)
    >>> stream.n_warmup, stream.bounds.tolist(), stream.n_steps
    (1, [1, 3, 5], 2)
    >>> stream.item_ids.tolist(), stream.items.tolist()
    (['x', 'y', 'z'], [0, 0, 1, 1, 2])
    """

    def __init__(self, interactions: Any, step: int | str | pd.Timedelta = 1000,
                 warmup: int | float | str | pd.Timestamp = 0) -> None:
        frame = validate_interactions(interactions)
        if len(frame) == 0:
            raise ValueError("the interactions are empty: a stream needs at least one event")
        if "timestamp" in frame.columns:
            order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
            if (order != np.arange(order.size)).any():
                frame = frame.iloc[order].reset_index(drop=True)
        self.frame = frame
        self.step = step
        self.warmup = warmup
        n = len(frame)
        user_codes, user_ids = pd.factorize(frame["user"].to_numpy(), sort=False)
        item_codes, item_ids = pd.factorize(frame["item"].to_numpy(), sort=False)
        self.users = user_codes.astype(_code_dtype(len(user_ids)))
        self.items = item_codes.astype(_code_dtype(len(item_ids)))
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        self.ratings = frame["rating"].to_numpy(np.float64) if "rating" in frame else None
        self.weights = frame["weight"].to_numpy(np.float64) if "weight" in frame else None
        self.timestamps = (frame["timestamp"].to_numpy("datetime64[ns]").view(np.int64)
                           if "timestamp" in frame else None)
        self.n_warmup = self._resolve_warmup(warmup, n)
        if self.n_warmup >= n:
            raise ValueError(f"warmup={warmup!r} covers all {n} events: nothing is left to "
                             "score (use a smaller warm-up)")
        self.bounds = self._resolve_bounds(step, n)

    # -- construction ------------------------------------------------------------------------

    def _resolve_warmup(self, warmup: Any, n: int) -> int:
        if isinstance(warmup, (bool, np.bool_)):
            raise ValueError(f"warmup must be a number of events, a fraction or a time, got "
                             f"{warmup!r}")
        if isinstance(warmup, (int, np.integer)):
            if not 0 <= warmup < n:
                raise ValueError(f"warmup={warmup} events must be >= 0 and below the stream's "
                                 f"{n} events")
            return int(warmup)
        if isinstance(warmup, (float, np.floating)):
            if not 0.0 <= warmup < 1.0:
                raise ValueError(f"warmup={warmup} as a fraction must be in [0, 1)")
            return round(warmup * n)
        if self.timestamps is None:
            raise ValueError(f"warmup={warmup!r} is a time, but the interactions have no "
                             "'timestamp' column")
        try:
            until = pd.Timestamp(warmup)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"warmup must be a number of events, a fraction in [0, 1) or a time "
                             f"like '2024-01-05', got {warmup!r}") from exc
        if until.tzinfo is not None:
            until = until.tz_convert("UTC").tz_localize(None)
        count = int(np.searchsorted(self.timestamps, until.value, side="left"))
        if count >= n:
            raise ValueError(f"warmup={warmup!r} covers all {n} events: nothing is left to score")
        return count

    def _resolve_bounds(self, step: Any, n: int) -> np.ndarray:
        start = self.n_warmup
        if isinstance(step, (bool, np.bool_)):
            raise ValueError(f"step must be a number of events or a duration, got {step!r}")
        if isinstance(step, (float, np.floating)):
            # 2.0 or 1e3 (a CLI "--step 1e3") means events; anything else is not a step size
            if not np.isfinite(step) or not float(step).is_integer():
                raise ValueError(f"step must be a whole number of events or a duration like "
                                 f"'1D', got {step!r}")
            step = int(step)
        if isinstance(step, (int, np.integer)):
            if step < 1:
                raise ValueError(f"step must be >= 1 event, got {step}")
            return np.append(np.arange(start, n, int(step), dtype=np.int64), n)
        if self.timestamps is None:
            raise ValueError(f"step={step!r} is a duration, but the interactions have no "
                             "'timestamp' column")
        try:
            delta = pd.Timedelta(step)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"step must be a number of events or a duration like '1D', got "
                             f"{step!r}") from exc
        if delta <= pd.Timedelta(0):
            raise ValueError(f"step must be a positive duration, got {step!r}")
        window = self.timestamps[start:] // delta.value
        change = np.flatnonzero(window[1:] != window[:-1]) + 1
        return np.concatenate([[start], start + change, [n]]).astype(np.int64)

    # -- sizes -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.users.size)

    @property
    def n_steps(self) -> int:
        return int(self.bounds.size - 1)

    @property
    def n_scored(self) -> int:
        """Events that are scored (everything after the warm-up)."""
        return len(self) - self.n_warmup

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    @property
    def has_ratings(self) -> bool:
        return self.ratings is not None

    @cached_property
    def has_extra_columns(self) -> bool:
        """The frame has columns beyond the canonical ones (side information): models then
        get each step's frame slice in ``Batch.frame``."""
        return any(c not in CANONICAL_COLUMNS for c in self.frame.columns)

    def __repr__(self) -> str:
        return (f"Stream({len(self)} events, {self.n_users} users, {self.n_items} items, "
                f"step={self.step!r}, warmup={self.n_warmup} events, {self.n_steps} steps)")

    # -- per-event protocol facts (computed once, shared by every model) ---------------------

    @cached_property
    def step_start(self) -> np.ndarray:
        """For each scored event, the position where its step starts."""
        lengths = np.diff(self.bounds)
        return np.repeat(self.bounds[:-1], lengths)

    @cached_property
    def n_users_before(self) -> np.ndarray:
        """For each step boundary, how many distinct users appear before it."""
        return self._distinct_before(self.users)

    @cached_property
    def n_items_before(self) -> np.ndarray:
        """For each step boundary, how many distinct items appear before it."""
        return self._distinct_before(self.items)

    def _distinct_before(self, codes: np.ndarray) -> np.ndarray:
        # codes are in first-appearance order, so the distinct count of a prefix is its max + 1
        seen = np.concatenate([[0], np.maximum.accumulate(codes) + 1])
        return seen[self.bounds]

    @cached_property
    def cold_user(self) -> np.ndarray:
        """Scored events whose user has no event before the event's step."""
        steps = np.repeat(np.arange(self.n_steps), np.diff(self.bounds))
        return self.users[self.n_warmup:] >= self.n_users_before[steps]

    @cached_property
    def cold_item(self) -> np.ndarray:
        """Scored events whose item has no event before the event's step."""
        steps = np.repeat(np.arange(self.n_steps), np.diff(self.bounds))
        return self.items[self.n_warmup:] >= self.n_items_before[steps]

    @cached_property
    def repeat(self) -> np.ndarray:
        """Scored events whose (user, item) pair already occurred before the event's step."""
        keys = self.users.astype(np.int64) * max(self.n_items, 1) + self.items
        _, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
        first = first_index[inverse.reshape(-1)]
        return first[self.n_warmup:] < self.step_start

    @cached_property
    def history(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(user_ptr, user_items, n_before)``: every user's items in stream order
        (``user_items[user_ptr[u]:user_ptr[u + 1]]``), and for each scored event how many of
        its user's events come before the event's step (the items excluded for it)."""
        order = self.user_events
        counts = np.bincount(self.users, minlength=self.n_users)
        user_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n = len(self)
        # in user order (stream order within a user), an event's ordinal among its user's
        # events; the events of one user in one step all exclude what came before the first
        # of them: its ordinal (linear in the stream, no search)
        sorted_users = self.users[order]
        ordinal = np.arange(n, dtype=np.int64) - user_ptr[sorted_users]
        step_of = np.full(n, -1, dtype=np.int64)  # the warm-up is one group per user
        step_of[self.n_warmup:] = np.repeat(np.arange(self.n_steps), np.diff(self.bounds))
        sorted_steps = step_of[order]
        first = np.ones(n, dtype=bool)
        first[1:] = ((sorted_users[1:] != sorted_users[:-1])
                     | (sorted_steps[1:] != sorted_steps[:-1]))
        group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        n_before = np.empty(n, dtype=_code_dtype(n))
        n_before[order] = ordinal[group_start]
        return user_ptr, self.items[order], n_before[self.n_warmup:]

    @cached_property
    def user_events(self) -> np.ndarray:
        """The stream's event positions grouped by user, in stream order within a user:
        ``history``'s ``user_items`` are the items of these events."""
        return np.argsort(self.users, kind="stable")

    @cached_property
    def seen_before(self) -> np.ndarray:
        """Scored events whose (user, item) pair occurred earlier in the stream, in the same
        step or before it (a repeat once the user's in-step events are visible as context)."""
        keys = self.users.astype(np.int64) * max(self.n_items, 1) + self.items
        _, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
        first = first_index[inverse.reshape(-1)]
        return first[self.n_warmup:] < np.arange(self.n_warmup, len(self))

    @cached_property
    def history_first(self) -> np.ndarray:
        """Aligned with ``history``'s ``user_items``: True where the entry is the first event
        of its (user, item) pair, so a user's distinct items before a step are its flagged
        entries there."""
        user_ptr, user_items, _ = self.history
        owner = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(user_ptr))
        keys = owner * max(self.n_items, 1) + user_items
        _, first_index = np.unique(keys, return_index=True)
        first = np.zeros(keys.size, dtype=bool)
        first[first_index] = True
        return first

    @cached_property
    def fingerprint(self) -> str:
        """A digest of the encoded stream and its steps (checkpoints are tied to it)."""
        digest = hashlib.sha256()
        for array in (self.users, self.items, self.bounds, self.ratings, self.weights,
                      self.timestamps):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(str(self.n_warmup).encode())
        return digest.hexdigest()[:16]

    def warmup_frame(self) -> pd.DataFrame:
        """The warm-up prefix of the canonical frame (what ``fit`` learns)."""
        return self.frame.iloc[: self.n_warmup]

    def __getstate__(self) -> dict:
        # the cached per-event facts are cheap to recompute; ship only the inputs
        keep = ("frame", "step", "warmup", "users", "items", "user_ids", "item_ids", "ratings",
                "weights", "timestamps", "n_warmup", "bounds")
        return {k: self.__dict__[k] for k in keep}
