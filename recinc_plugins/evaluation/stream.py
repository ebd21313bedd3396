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
    deletions
        Deletion requests the replay serves at their time (``docs/protocol.md``): a frame with
        a ``user`` and/or an ``item`` column (one id per row, the other empty) and a
        ``timestamp`` (the request follows the events up to that time, ties included) or a
        ``position`` (the number of the stream's events, in replay order, before it). The
        interactions may instead carry them as rows whose ``event`` column is ``"delete"``:
        the row's user (its item empty) or item (its user empty) is forgotten there, after
        the events before the row in replay order. At a request, the step it falls in is cut
        (requests inside the warm-up are served when it ends); every model forgets the ids,
        and a forgotten id that comes back later in the stream is a new user or item, with a
        code of its own.

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
    deletions : pandas.DataFrame or None
        The deletion requests, one row each in replay order: ``position`` (events before it),
        ``served_at`` (where the replay serves it: its position, or the warm-up's end),
        ``timestamp`` where the stream has times, ``user`` and ``item`` (None where not
        given); None when there are none.

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
                 warmup: int | float | str | pd.Timestamp = 0, deletions: Any = None) -> None:
        interactions, requests = _split_delete_rows(interactions)
        frame = validate_interactions(interactions)
        if len(frame) == 0:
            raise ValueError("the interactions are empty: a stream needs at least one event")
        if requests is not None and deletions is not None:
            raise ValueError("the interactions carry deletion requests (rows whose 'event' is "
                             "'delete') and deletions= gives more: give them one way")
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
        self.ratings = frame["rating"].to_numpy(np.float64) if "rating" in frame else None
        self.weights = frame["weight"].to_numpy(np.float64) if "weight" in frame else None
        self.timestamps = (frame["timestamp"].to_numpy("datetime64[ns]").view(np.int64)
                           if "timestamp" in frame else None)
        self.n_warmup = self._resolve_warmup(warmup, n)
        if self.n_warmup >= n:
            raise ValueError(f"warmup={warmup!r} covers all {n} events: nothing is left to "
                             "score (use a smaller warm-up)")
        self.deletions = (requests if requests is not None
                          else self._resolve_deletions(deletions, n))
        if self.deletions is not None:
            served = np.maximum(self.deletions["position"].to_numpy(np.int64), self.n_warmup)
            self.deletions["served_at"] = served
            # a forgotten id that comes back is a new user or item: a code of its own
            user_codes, user_ids, user_ended = _incarnations(
                user_codes, np.asarray(user_ids), self.deletions["user"].to_numpy(), served)
            item_codes, item_ids, item_ended = _incarnations(
                item_codes, np.asarray(item_ids), self.deletions["item"].to_numpy(), served)
            self.deletions["user_code"] = user_ended
            self.deletions["item_code"] = item_ended
        self.users = user_codes.astype(_code_dtype(len(user_ids)))
        self.items = item_codes.astype(_code_dtype(len(item_ids)))
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        self.bounds = self._resolve_bounds(step, n)
        if self.deletions is not None:
            # the step a request falls in is cut at it: served between two steps
            cuts = self.deletions["served_at"].to_numpy(np.int64)
            cuts = cuts[(cuts > self.n_warmup) & (cuts < n)]
            self.bounds = np.union1d(self.bounds, cuts).astype(np.int64)

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

    def _resolve_deletions(self, deletions: Any, n: int) -> pd.DataFrame | None:
        """The ``deletions=`` frame as requests in replay order (see the class docstring)."""
        if deletions is None:
            return None
        if isinstance(deletions, dict):
            deletions = pd.DataFrame(deletions)
        if not isinstance(deletions, pd.DataFrame):
            raise TypeError(f"deletions must be a DataFrame of (timestamp or position, user "
                            f"or item) requests, got {type(deletions).__name__}")
        unknown = [c for c in deletions.columns if c not in _REQUEST_COLUMNS]
        if unknown:
            raise ValueError(f"deletions has column(s) {unknown}, which mean nothing to it: it "
                             f"takes {list(_REQUEST_COLUMNS)}")
        if "position" in deletions.columns:
            position = pd.to_numeric(deletions["position"], errors="coerce").to_numpy()
            bad = ~np.isfinite(position) | (position % 1 != 0) | (position < 0) | (position > n)
            if bad.any():
                raise ValueError(f"deletions: 'position' must be a whole number of events from "
                                 f"0 to {n}; rows {np.flatnonzero(bad)[:10].tolist()} are not")
            position = position.astype(np.int64)
        elif "timestamp" in deletions.columns:
            if self.timestamps is None:
                raise ValueError("deletions are placed by 'timestamp', but the interactions "
                                 "have no 'timestamp' column: give each request a 'position' "
                                 "(events before it) instead")
            times = _request_times(deletions["timestamp"])
            position = np.searchsorted(self.timestamps, times, side="right").astype(np.int64)
        else:
            raise ValueError("deletions needs a 'timestamp' (or a 'position') column saying "
                             "when each request comes")
        frame = _request_frame(deletions, position, "deletions")
        if "timestamp" in deletions.columns:
            frame["timestamp"] = pd.to_datetime(_request_times(deletions["timestamp"]))
        order = np.argsort(position, kind="stable")
        return frame.iloc[order].reset_index(drop=True)

    @cached_property
    def deletion_groups(self) -> dict[int, dict[str, np.ndarray]]:
        """Where the replay serves deletion requests: position -> ``users``, ``items`` (the
        ids to forget, unique) and ``user_codes``, ``item_codes`` (the codes that end there:
        their ids were seen before it); empty without requests."""
        if self.deletions is None:
            return {}
        groups = {}
        for at, rows in self.deletions.groupby("served_at", sort=True):
            users = rows["user"].dropna().to_numpy()
            items = rows["item"].dropna().to_numpy()
            groups[int(at)] = {
                "users": pd.unique(users), "items": pd.unique(items),
                "user_codes": np.unique(rows["user_code"].to_numpy(np.int64)[
                    rows["user_code"].to_numpy() >= 0]),
                "item_codes": np.unique(rows["item_code"].to_numpy(np.int64)[
                    rows["item_code"].to_numpy() >= 0]),
            }
        return groups

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
        requests = ("" if self.deletions is None
                    else f", {len(self.deletions)} deletion requests")
        return (f"Stream({len(self)} events, {self.n_users} users, {self.n_items} items, "
                f"step={self.step!r}, warmup={self.n_warmup} events, {self.n_steps} steps"
                f"{requests})")

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
        if self.deletions is not None:  # (a stream without requests keeps its fingerprint)
            requests = self.deletions[["served_at", "user", "item"]]
            digest.update(requests.to_json(orient="values", default_handler=str).encode())
        return digest.hexdigest()[:16]

    def warmup_frame(self) -> pd.DataFrame:
        """The warm-up prefix of the canonical frame (what ``fit`` learns)."""
        return self.frame.iloc[: self.n_warmup]

    def __getstate__(self) -> dict:
        # the cached per-event facts are cheap to recompute; ship only the inputs
        keep = ("frame", "step", "warmup", "users", "items", "user_ids", "item_ids", "ratings",
                "weights", "timestamps", "n_warmup", "bounds", "deletions")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict) -> None:
        state.setdefault("deletions", None)
        self.__dict__.update(state)


#: the columns of a ``deletions=`` frame
_REQUEST_COLUMNS = ("timestamp", "position", "user", "item")


def _split_delete_rows(interactions: Any) -> tuple[Any, pd.DataFrame | None]:
    """The interactions without the rows whose ``event`` column says ``"delete"``, and those
    rows as requests (positions among the other rows in replay order), or None."""
    if isinstance(interactions, dict):
        interactions = pd.DataFrame(interactions)
    if not isinstance(interactions, pd.DataFrame) or "event" not in interactions.columns:
        return interactions, None
    event = interactions["event"]
    is_delete = (event.astype(str).str.strip().str.lower() == "delete").to_numpy() & \
        event.notna().to_numpy()
    if not is_delete.any():
        return interactions, None
    rest = interactions.loc[~is_delete]
    left = rest["event"]
    if left.isna().all() or (left.astype(str).str.strip() == "").all():
        rest = rest.drop(columns="event")  # the column said nothing else
    if "timestamp" in interactions.columns:
        # every row's time read at once, in one format, as the interactions' own will be
        times = validate_interactions(pd.DataFrame({
            "user": 0, "item": 0, "timestamp": interactions["timestamp"].to_numpy()}))
        times = times["timestamp"].to_numpy("datetime64[ns]").view(np.int64)
        order = np.argsort(times, kind="stable")
    else:
        order = np.arange(len(interactions))
    # a request's position: the events before it in replay order
    position = np.cumsum(~is_delete[order]) - (~is_delete[order])
    where = np.empty(order.size, dtype=np.int64)
    where[order] = position
    rows = interactions.loc[is_delete]
    frame = _request_frame(rows, where[is_delete], "interactions (rows whose event is "
                           "'delete')", positions=np.flatnonzero(is_delete))
    if "timestamp" in interactions.columns:
        frame["timestamp"] = pd.to_datetime(times[is_delete])
    sort = np.argsort(frame["position"].to_numpy(), kind="stable")
    return rest.reset_index(drop=True), frame.iloc[sort].reset_index(drop=True)


def _request_frame(rows: pd.DataFrame, position: np.ndarray, what: str,
                   positions: np.ndarray | None = None) -> pd.DataFrame:
    """``position``, ``user`` and ``item`` of deletion requests (each exactly one id)."""
    n = len(rows)
    users = _request_ids(rows["user"] if "user" in rows.columns else None, n)
    items = _request_ids(rows["item"] if "item" in rows.columns else None, n)
    has_user = np.array([u is not None for u in users], dtype=bool)
    has_item = np.array([i is not None for i in items], dtype=bool)
    rows_at = np.arange(n) if positions is None else positions
    both, neither = has_user & has_item, ~has_user & ~has_item
    if both.any() or neither.any():
        bad = rows_at[both | neither][:10].tolist()
        raise ValueError(f"{what}: each deletion request names a user (its item empty) or an "
                         f"item (its user empty), not both and not neither; rows {bad} do not")
    return pd.DataFrame({"position": position.astype(np.int64),
                         "user": pd.Series(users, dtype=object),
                         "item": pd.Series(items, dtype=object)})


def _request_ids(column: pd.Series | None, n: int) -> list[Any]:
    """A request column's ids (None where empty), as the stream's ids are read: whole floats
    (a column with empty cells) as ints."""
    if column is None:
        return [None] * n
    out: list[Any] = []
    for value in column.tolist():
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA \
                or (isinstance(value, str) and not value.strip()):
            out.append(None)
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            out.append(int(value))
        elif isinstance(value, (np.integer,)):
            out.append(int(value))
        else:
            out.append(value)
    return out


def _request_times(column: pd.Series) -> np.ndarray:
    times = validate_interactions(pd.DataFrame({"user": 0, "item": 0,
                                                "timestamp": column.to_numpy()}))
    return times["timestamp"].to_numpy("datetime64[ns]").view(np.int64)


def _incarnations(codes: np.ndarray, ids: np.ndarray, requested: np.ndarray,
                  served: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes in which an id's events after a deletion request for it are a new id (a code of
    its own, in first-appearance order): ``(codes, ids of the codes, the code each request
    ends, -1 where its id has no events before it)``."""
    n = codes.size
    wanted = np.array([v is not None for v in requested], dtype=bool)
    ended = np.full(requested.size, -1, dtype=np.int64)
    if not wanted.any():
        return codes, ids, ended
    index = pd.Index(ids)
    found = np.full(requested.size, -1, dtype=np.int64)
    values = requested[wanted]
    try:
        found[wanted] = index.get_indexer(pd.Index(list(values), dtype=object))
    except (TypeError, ValueError):  # ids of another type than the stream's: never seen
        pass
    live = found >= 0
    if not live.any():
        return codes, ids, ended
    span = n + 1
    keys = np.unique(found[live] * span + served[live])
    codes64 = codes.astype(np.int64)
    base = np.searchsorted(keys, codes64 * span, side="left")
    # an event's incarnation: the requests for its id served at or before it
    incarnation = np.searchsorted(keys, codes64 * span + np.arange(n), side="right") - base
    # the incarnation a request ends: the requests for its id served before it
    req = found[live]
    nth = (np.searchsorted(keys, req * span + served[live], side="left")
           - np.searchsorted(keys, req * span, side="left"))
    width = int(max(incarnation.max(), nth.max())) + 1
    combined = codes64 * width + incarnation
    new_codes, uniques = pd.factorize(combined, sort=False)
    new_ids = ids[uniques // width]
    ended[live] = pd.Index(uniques).get_indexer(req * width + nth)
    return new_codes, new_ids, ended
