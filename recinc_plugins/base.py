"""IncrementalRecommender: the one interface every model implements, and its shared machinery."""

from __future__ import annotations

import abc
import hashlib
import importlib
import inspect
import io
import json
import math
import os
import pickle
import platform
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from .data.interactions import validate_interactions
from .ids import IdIndex, _as_id_array
from .sparse import GrowingCSR

__all__ = [
    "Batch",
    "Capabilities",
    "IncrementalRecommender",
    "ModelFileError",
    "Newcomer",
    "Recommendations",
    "top_k",
]

Self = TypeVar("Self", bound="IncrementalRecommender")

FORMAT_VERSION = 1
_MAGIC = b"RECINC\x00M"
_PREFIX = struct.Struct("<8sII")  # magic, format version, header length

#: cold-start policies for unknown users (the ``cold_start`` parameter of the models that take it)
COLD_STARTS = ("popularity", "newcomer")
#: "newcomer" counts an event when it is among its user's first ``NEWCOMER_EVENTS`` events...
NEWCOMER_EVENTS = 50
#: ...and halves each count every ``NEWCOMER_HALF_LIFE`` events learned after it
NEWCOMER_HALF_LIFE = 10_000.0


class ModelFileError(ValueError):
    """A saved model file is not one, is truncated or corrupt, or is incompatible."""


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
    >>> from recinc_plugins import Newcomer
    >>> from recinc_plugins.baselines import Popularity
    >>> events = pd.DataFrame({"user": ["vet", "vet", "vet", "a", "b"],
    ...                        "item": ["old", "old", "old", "new", "new"]})
    >>> Popularity(cold_start=Newcomer(first_events=1)).fit(events).recommend("x", k=1).items
    array([['new']], dtype=object)
    """

    first_events: int = NEWCOMER_EVENTS
    half_life: float = NEWCOMER_HALF_LIFE


@dataclass(frozen=True)
class Capabilities:
    """What a model can learn from and do; the harness and the CLI read these.

    Attributes
    ----------
    explicit
        Learns from ratings and predicts them (``score`` is a predicted rating).
    implicit
        Learns from implicit feedback (presence, or a ``weight``); ratings are then used as
        weights.
    update
        Cost class of ``partial_fit``: ``"per-event"`` (work proportional to the new events),
        ``"touched"`` (work proportional to the touched users' and items' histories),
        ``"refit"`` (retrains on the history, possibly periodically).
    cold_start
        How unknown users can be answered: ``"popularity"`` (the shared, flagged fallback,
        which models with a ``cold_start`` parameter can switch to ``"newcomer"``) or
        ``"features"`` (through side features when given, else that fallback).
    side_features
        Accepts user/item side features.
    """

    explicit: bool = False
    implicit: bool = True
    update: str = "per-event"
    cold_start: str = "popularity"
    side_features: bool = False


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


@dataclass
class Recommendations:
    """Top-k items for a batch of users.

    ``items`` and ``scores`` have one row per user and ``k`` columns, best first. Where fewer
    than ``k`` items could be recommended (a small catalogue, everything seen) the row is padded
    with ``None`` items and NaN scores. ``cold[i]`` is True where user ``i`` was unknown and was
    answered by the model's cold-start fallback (item popularity, or what new users pick first
    under ``cold_start="newcomer"``).
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    cold: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame with columns ``user, rank, item, score, cold`` (rank starts at 1)."""
        n, k = self.scores.shape
        frame = pd.DataFrame({
            "user": np.repeat(self.users, k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "item": self.items.reshape(-1),
            "score": self.scores.reshape(-1),
            "cold": np.repeat(self.cold, k),
        })
        return frame[~np.isnan(frame["score"].to_numpy())].reset_index(drop=True)


def _top_k_by_blocks(scores: np.ndarray, k: int) -> np.ndarray | None:
    """Columns of each row's k best scores (ties to the lower column), or None to fall back.

    The k-th largest of ``8k`` block maxima is a score that at least k entries reach, so only
    the entries at or above it are sorted. Block maxima and one comparison are vectorised
    passes, several times cheaper than a partition of every row (numpy's partition is scalar).
    """
    n_rows, n_cols = scores.shape
    n_blocks = 8 * k
    width = n_cols // n_blocks
    if width < 4:
        return None
    body = n_blocks * width
    block_max = scores[:, :body].reshape(n_rows, n_blocks, width).max(axis=2)
    if body < n_cols:
        block_max = np.hstack([block_max, scores[:, body:].max(axis=1, keepdims=True)])
    threshold = np.partition(block_max, block_max.shape[1] - k, axis=1)[:, -k]
    rows, cols = np.nonzero(scores >= threshold[:, None])
    if rows.size > n_rows * 64 * k:  # a sea of ties at the threshold: partition instead
        return None
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    return cols[starts[:, None] + np.arange(k)]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a 2-D score array, best first; ties go to the lower column index.

    float32 scores are ranked as they are; anything else as float64.

    Entries equal to -inf (or NaN) are never returned: their slots hold index -1 and score NaN.
    Runs in O(n_cols) per row (a partition and a few passes), sorting only the k winners.

    Examples
    --------
    >>> import numpy as np
    >>> from recinc_plugins.base import top_k
    >>> top_k(np.array([[1.0, 3.0, 3.0, -np.inf, 2.0]]), 3)
    (array([[1, 2, 4]]), array([[3., 3., 2.]]))
    """
    scores = np.asarray(scores)
    if scores.dtype != np.float32:  # float32 stays float32 (a factor model's own precision)
        scores = scores.astype(np.float64, copy=False)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {scores.shape}")
    n_rows, n_cols = scores.shape
    k = min(int(k), n_cols)
    if k <= 0 or n_rows == 0:
        return (np.empty((n_rows, max(k, 0)), dtype=np.int64),
                np.empty((n_rows, max(k, 0)), dtype=scores.dtype))
    nan = np.isnan(scores)
    if nan.any():
        scores = np.where(nan, -np.inf, scores)
    part = _top_k_by_blocks(scores, k) if k < n_cols else None
    if part is not None:
        pass
    elif k < n_cols:
        kth = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k][:, None]
        selected = scores >= kth
        excess = np.flatnonzero(selected.sum(axis=1) > k)
        if excess.size:  # more ties at the k-th score than slots: keep the lowest columns
            sub, sub_kth = scores[excess], kth[excess]
            need = k - (sub > sub_kth).sum(axis=1, keepdims=True)
            tied = sub == sub_kth
            selected[excess] = (sub > sub_kth) | (tied & (np.cumsum(tied, axis=1) <= need))
        part = np.nonzero(selected)[1].reshape(n_rows, k)
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1)
    invalid = np.isneginf(vals)
    if invalid.any():
        idx[invalid] = -1
        vals[invalid] = np.nan
    return idx, vals


class IncrementalRecommender(abc.ABC):
    """A recommender that learns from scratch (``fit``) and from new events (``partial_fit``).

    Users and items are the caller's own ids (str, int or mixed). The base class owns what
    every model needs once: the id maps (:class:`~recinc_plugins.ids.IdIndex`), the growing
    user x item matrix of seen items, input validation, batched top-k with seen-item masking and
    candidate sets, the flagged cold-start fallback for unknown users, persistence, and
    scikit-learn style parameters. A subclass implements a few hooks:

    ``_grow(n_users, n_items)``
        Make room for new users and items (indices only ever grow at the end).
    ``_fit(batch)`` / ``_partial_fit(batch)``
        Learn from a :class:`Batch`; ``_fit`` starts from scratch and defaults to
        ``_partial_fit``. The shared state (seen matrix, counts) already includes the batch.
    ``_score_users(users)``
        Scores of every known item for known users: an ``(len(users), n_items)`` array.
    ``_score_pairs(users, items)`` (optional)
        One score per pair; defaults to gathering from ``_score_users``.

    Learned state ends with an underscore; ``__init__`` only stores parameters.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    #: the optional extra the model needs (for ``recinc models`` and import errors)
    extra: ClassVar[str | None] = None

    # -- parameters (scikit-learn conventions) -----------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor parameters, read back from the attributes of the same names."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: Self, **params: Any) -> Self:
        names = self._param_names()
        for key in params:
            if key not in names:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {key!r}; its parameters are {names}"
                )
        if "cold_start" in params:  # checked now: a fitted model uses it at once
            _check_cold_start_value(params["cold_start"], "cold_start")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def clone(self: Self) -> Self:
        """A new, unfitted model with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        shown = []
        for name in self._param_names():
            value = getattr(self, name, None)
            default = sig.parameters[name].default
            try:
                same = value is default or bool(value == default)
            except Exception:
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # -- state -------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "n_events_", 0) > 0

    @property
    def n_users(self) -> int:
        return len(self.user_index_) if hasattr(self, "user_index_") else 0

    @property
    def n_items(self) -> int:
        return len(self.item_index_) if hasattr(self, "item_index_") else 0

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
        self._init_newcomer()
        self._grown = (0, 0)
        self._init_model()

    def _ensure_state(self) -> None:
        if not hasattr(self, "user_index_"):
            self._reset()

    def _check_params(self) -> None:
        """Validate parameters; raise ValueError naming the bad one. Called before any state is
        built (by ``fit`` and on first use)."""

    def _init_model(self) -> None:
        """Create the model's own (empty) learned state. Called on ``fit`` and first use."""

    @property
    def global_mean_(self) -> float:
        """Mean of all ratings learned so far (NaN before any)."""
        return self.rating_sum_ / self.n_ratings_ if self.n_ratings_ else float("nan")

    def _sync_size(self) -> None:
        n_users, n_items = len(self.user_index_), len(self.item_index_)
        if (n_users, n_items) != self._grown:
            if n_items > self.item_counts_.size:
                counts = np.zeros(n_items, dtype=np.float64)
                counts[: self.item_counts_.size] = self.item_counts_
                self.item_counts_ = counts
            self.seen_.resize(n_users, n_items)
            self._grow(n_users, n_items)
            self._grown = (n_users, n_items)

    # -- learning ----------------------------------------------------------------------------

    def _validate(self, interactions: Any) -> pd.DataFrame:
        frame = validate_interactions(interactions)
        if (not self.capabilities.implicit and "rating" not in frame.columns):
            raise ValueError(
                f"{type(self).__name__} learns from explicit ratings, but the interactions have "
                f"no 'rating' column (columns: {list(frame.columns)})"
            )
        return frame

    def _encode(self, frame: pd.DataFrame) -> Batch:
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

    def _ingest(self, batch: Batch) -> None:
        """Update the shared state with a batch (indices already in the id maps)."""
        self._sync_size()
        if len(batch) == 0:
            return
        settings = self._newcomer_settings()
        if settings is not None and not self._newcomer_synced():
            self._restart_newcomer()  # switched on after learning without it
        self.seen_.add(batch.users, batch.items, 1.0)
        if len(batch) * 16 < self.item_counts_.size:  # small step: touch only its items
            np.add.at(self.item_counts_, batch.items, 1.0)
        else:
            self.item_counts_ += np.bincount(batch.items, minlength=self.item_counts_.size)
        self.n_events_ += len(batch)
        if batch.ratings is not None:
            self.rating_sum_ += float(batch.ratings.sum())
            self.n_ratings_ += len(batch)
        if settings is not None:
            self._count_newcomers(batch.users, batch.items, settings)
            self.newcomer_synced_ = self.n_events_

    def fit(self: Self, interactions: Any) -> Self:
        """Learn from ``interactions`` from scratch, forgetting everything learned before.

        ``interactions`` is anything :func:`~recinc_plugins.data.validate_interactions`
        accepts: a frame with ``user``, ``item`` and optionally ``rating`` or ``weight`` and
        ``timestamp``.
        """
        frame = self._validate(interactions)
        previous = dict(self.__dict__)
        try:
            self._reset()
            batch = self._encode(frame)
            self._check_batch(batch)
            self._prepare(batch)
            self._ingest(batch)
            if len(batch):
                self._fit(batch)
        except BaseException:
            # a failed fit leaves the model as it was: _reset builds new state objects, so the
            # old ones are untouched
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise
        return self

    def partial_fit(self: Self, interactions: Any) -> Self:
        """Learn new events, adding any new users and items; earlier learning is kept.

        A batch the model refuses (say, no timestamps for a time-based model) raises before
        anything changes. An error inside the wrapped library's update can leave that update
        half-applied; refit with ``fit`` if that happens.
        """
        frame = self._validate(interactions)
        self._ensure_state()
        n_users, n_items = len(self.user_index_), len(self.item_index_)
        batch = self._encode(frame)
        self._check_and_prepare(batch, n_users, n_items)
        self._ingest_and_learn(batch)
        return self

    # -- the encoded interface: what the evaluation harness uses -----------------------------
    #
    # Ids in, dense indices out (``add_ids``), then everything in those indices: learn a batch
    # (``learn_encoded``), score blocks of users (``score_block``), pairs (``score_encoded``)
    # and unknown users (``cold_scores``), and say what the scores do not depend on
    # (``shared_scores``: not on the user; ``item_vectors``/``user_vectors``: a dot product).
    # A model written outside this package gets all of it from the hooks above; overriding
    # the optional ones only makes the harness faster, never changes a number.

    def reset(self: Self) -> Self:
        """Forget everything learned: the model is as after ``fit`` on no events."""
        self._reset()
        return self

    def add_ids(self, users: Any = None, items: Any = None
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Add user and item ids to the model's id maps (new ones get the next indices) and
        return the dense index of each (``None`` for a side not given). The model makes room
        for them when it next learns."""
        self._ensure_state()
        return (None if users is None else self.user_index_.add(_as_id_array(users)),
                None if items is None else self.item_index_.add(_as_id_array(items)))

    def learn_encoded(self: Self, batch: Batch) -> Self:
        """``partial_fit`` for a :class:`Batch` already in this model's indices (from
        ``add_ids``): no frame is validated or encoded. A refused batch raises before anything
        changes, as ``partial_fit``'s does."""
        self._ensure_state()
        self._check_and_prepare(batch, *self._grown)
        self._ingest_and_learn(batch)
        return self

    def score_block(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item (``n_items`` columns, in index order) for known users given as
        dense indices: float32 or float64, higher is better; NaN and -inf are never
        recommended. The array may be the model's own: read it, do not write to it."""
        return self._score_users(np.asarray(users, dtype=np.int64))

    def score_encoded(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """One score (a predicted rating for rating models) per pair of dense indices; -1
        marks an unknown user or item, answered by the cold-start fallback as ``score`` does."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        known = (users >= 0) & (items >= 0)
        if known.all():
            return np.asarray(self._score_pairs(users, items), dtype=np.float64)
        out = np.empty(users.size, dtype=np.float64)
        if known.any():
            out[known] = self._score_pairs(users[known], items[known])
        out[~known] = self._fallback_pairs(users[~known], items[~known])
        return out

    def cold_scores(self) -> np.ndarray:
        """The scores of every item for a user the model does not know (the cold-start
        fallback), the same for every such user."""
        return self._fallback_scores(1)[0]

    def shared_scores(self) -> np.ndarray | None:
        """The scores of every item when they are the same for every known user (popularity),
        else None. The harness then ranks from one sorted order per step: O(history) per
        event instead of O(catalogue)."""
        return None

    def item_vectors(self) -> np.ndarray | None:
        """Item vectors ``V`` (``n_items`` rows) when the scores of known users are exactly
        ``user_vectors(users) @ V.T``, else None. The harness then computes the product
        itself, in float32 blocks under a memory budget, on a GPU where there is one."""
        return None

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """The vectors of known users (dense indices) that ``item_vectors`` pairs with."""
        raise NotImplementedError(f"{type(self).__name__} has no item_vectors")

    def predicts_ratings(self) -> bool:
        """True when ``score`` returns predicted ratings rather than ranking scores."""
        return bool(self._predicts_ratings())

    def _partial_fit_encoded(self, batch: Batch) -> None:
        self.learn_encoded(batch)

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

    def _ingest_and_learn(self, batch: Batch) -> None:
        self._ingest(batch)
        if len(batch):
            self._partial_fit(batch)

    def _check_batch(self, batch: Batch) -> None:
        """Refuse a batch the model cannot learn, before any state changes (raise ValueError)."""

    def _prepare(self, batch: Batch) -> None:
        """Do the part of learning ``batch`` that can fail, before any state changes (say, train
        a replacement model and keep it for ``_fit``/``_partial_fit`` to install). Called after
        ``_check_batch`` with the same guarantee: if it raises, the model is unchanged."""

    @abc.abstractmethod
    def _grow(self, n_users: int, n_items: int) -> None:
        """Make room for ``n_users`` users and ``n_items`` items (never fewer than before)."""

    def _fit(self, batch: Batch) -> None:
        self._partial_fit(batch)

    @abc.abstractmethod
    def _partial_fit(self, batch: Batch) -> None:
        """Learn the events of ``batch``."""

    # -- scoring -----------------------------------------------------------------------------

    @abc.abstractmethod
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores of all ``n_items`` known items for known users (dense indices)."""

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(users, return_inverse=True)
        return self._score_users(uniq)[inverse, items]

    def _predicts_ratings(self) -> bool:
        """True when ``score`` returns predicted ratings rather than ranking scores."""
        caps = self.capabilities
        return caps.explicit and not caps.implicit and self.n_ratings_ > 0

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
            newcomer = _grown_to(self.newcomer_, n_items)[:n_items]
            top = newcomer.max(initial=0.0)
            scores = newcomer / top if top > 0 else np.zeros(n_items)
            scores += 1e-6 * self.item_counts_ / max(self.n_events_, 1)
            scores.flags.writeable = False
            cached = self._newcomer_row = (key, scores)
        return np.broadcast_to(cached[1], (n_rows, n_items))

    # -- cold start -------------------------------------------------------------------------

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
        _check_cold_start_value(self._cold_start_policy(), name)

    def _init_newcomer(self) -> None:
        #: events learned per user (kept while the newcomer policy is on), and the decayed count
        #: of each item among users' first events, stored scaled by 2 ** newcomer_clock_
        self.user_events_ = np.zeros(0, dtype=np.int64)
        self.newcomer_ = np.zeros(0, dtype=np.float64)
        self.newcomer_clock_ = 0.0
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

    def _count_newcomers(self, users: np.ndarray, items: np.ndarray,
                         settings: Newcomer) -> None:
        """Update the newcomer counts with events in the order given (each event decays the
        counts before it by one event's worth of the half-life)."""
        n = users.size
        half_life = float(settings.half_life)
        if self.user_events_.size < self.n_users:
            self.user_events_ = _grown_to(self.user_events_, self.n_users)
        if self.newcomer_.size < self.n_items:
            self.newcomer_ = _grown_to(self.newcomer_, self.n_items)
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

    def _fallback_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores for pairs with an unknown user or item (index -1)."""
        if self._predicts_ratings():
            return np.full(users.size, self.global_mean_)
        out = np.zeros(users.size, dtype=np.float64)
        known = items >= 0
        if known.any():
            out[known] = self._fallback_scores(1)[0][items[known]]
        return out

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

    def score(self, users: Any, items: Any, *, return_cold: bool = False) -> Any:
        """One score per ``(user, item)`` pair: a predicted rating for explicit models.

        ``users`` may be a single id, broadcast to every item. Pairs with an unknown user or
        item get the cold-start fallback (the global mean for rating models, item popularity
        otherwise); ``return_cold=True`` also returns a boolean array flagging them.
        """
        _, _, u, i = self._lookup_pairs(users, items)
        cold = (u < 0) | (i < 0)
        out = np.empty(u.size, dtype=np.float64)
        if (~cold).any():
            out[~cold] = self._score_pairs(u[~cold], i[~cold])
        if cold.any():
            out[cold] = self._fallback_pairs(u[cold], i[cold])
        return (out, cold) if return_cold else out

    def recommend(
        self,
        users: Any,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: Sequence[Any] | np.ndarray | None = None,
    ) -> Recommendations:
        """Top-``k`` items for each of ``users``, best first, in one batched call.

        Parameters
        ----------
        users
            One id or an array of ids; unknown users get the cold-start fallback and are
            flagged in ``Recommendations.cold``.
        k
            How many items per user.
        exclude_seen
            Leave out items the user has interacted with.
        candidates
            Restrict recommendations to these item ids (all must be known to the model).
        """
        self._ensure_state()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        user_ids = _as_id_array(users)
        u = self.user_index_.lookup(user_ids)
        cold = u < 0
        n_items = self.n_items
        if candidates is not None:
            cand_ids = _as_id_array(candidates)
            cand = self.item_index_.lookup(cand_ids)
            if (cand < 0).any():
                unknown = cand_ids[cand < 0][:10].tolist()
                raise ValueError(
                    f"{int((cand < 0).sum())} candidate item(s) are unknown to the model: "
                    f"{unknown}"
                )
            cand = np.unique(cand)
        scores = np.empty((u.size, n_items), dtype=np.float64)
        if (~cold).any():
            scores[~cold] = self._score_users(u[~cold])
        if cold.any():
            scores[cold] = self._fallback_scores(int(cold.sum()))
        if exclude_seen and (~cold).any():
            rows = np.flatnonzero(~cold)
            pos, cols = self.seen_.row_entries(u[rows])
            scores[rows[pos], cols] = -np.inf
        if candidates is not None:
            scores = scores[:, cand]
        idx, vals = top_k(scores, k)
        if idx.shape[1] < k:  # fewer items than k: pad, never invent
            pad = k - idx.shape[1]
            idx = np.hstack([idx, np.full((idx.shape[0], pad), -1, dtype=np.int64)])
            vals = np.hstack([vals, np.full((vals.shape[0], pad), np.nan)])
        if candidates is not None:
            idx = np.where(idx >= 0, cand[np.maximum(idx, 0)], -1)
        items = np.full(idx.shape, None, dtype=object)
        valid = idx >= 0
        if n_items:
            items[valid] = self.item_index_.ids_of(idx[valid])
        if items.dtype == object and valid.all() and self.item_index_.ids.dtype != object:
            items = items.astype(self.item_index_.ids.dtype)
        return Recommendations(users=user_ids, items=items, scores=vals, cold=cold)

    # -- persistence -------------------------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        """Learned state to persist; by default every attribute that is not a parameter."""
        params = set(self._param_names())
        return {k: v for k, v in self.__dict__.items()
                if k not in params and k != "_newcomer_row"}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
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

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (parameters, learned state, id maps) to one versioned file.

        The file is a small header (format version, class, library versions, payload length
        and SHA-256) followed by a pickle payload: load only files you trust.
        """
        payload = pickle.dumps(
            {"params": self.get_params(), "state": self._get_state()},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        header = json.dumps({
            "format": FORMAT_VERSION,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "python": platform.python_version(),
            "versions": _library_versions(),
        }).encode()
        tmp = f"{os.fspath(path)}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(_PREFIX.pack(_MAGIC, FORMAT_VERSION, len(header)))
                fh.write(header)
                fh.write(payload)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls: type[Self], path: str | os.PathLike) -> Self:
        """Read a model written by :meth:`save`; raise :class:`ModelFileError` if the file is
        not a model file, is truncated or corrupt, or holds a model of another class."""
        with open(path, "rb") as fh:
            data = fh.read()
        where = os.fspath(path)
        if len(data) < _PREFIX.size or data[:8] != _MAGIC:
            raise ModelFileError(f"{where} is not a recinc-plugins model file (no header)")
        _, version, header_len = _PREFIX.unpack_from(data)
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{where} was written in model format {version}; this recinc-plugins reads up "
                f"to format {FORMAT_VERSION} (upgrade recinc-plugins)"
            )
        start = _PREFIX.size + header_len
        if len(data) < start:
            raise ModelFileError(f"{where} is truncated: its header is cut short")
        try:
            header = json.loads(data[_PREFIX.size:start])
        except ValueError as exc:
            raise ModelFileError(f"{where} is corrupt: unreadable header ({exc})") from exc
        payload = data[start:]
        expected = header.get("payload_bytes", -1)
        if len(payload) != expected:
            raise ModelFileError(
                f"{where} is truncated or has trailing bytes: header says {expected} payload "
                f"bytes, the file has {len(payload)}"
            )
        if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
            raise ModelFileError(f"{where} is corrupt: payload checksum does not match")
        if not isinstance(header, dict) or not isinstance(header.get("class"), str):
            raise ModelFileError(f"{where} is corrupt: its header names no model class")
        module_name, _, qualname = header["class"].partition(":")
        try:
            target = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ModelFileError(
                f"{where} holds a {header['class']} model, which cannot be imported here ({exc})"
            ) from exc
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise ModelFileError(f"{where} holds a {header['class']}, not a {cls.__name__}")
        try:
            content = pickle.load(io.BytesIO(payload))
        except Exception as exc:
            raise ModelFileError(
                f"{where} could not be unpickled ({type(exc).__name__}: {exc}); it was written "
                f"with {header.get('versions')}"
            ) from exc
        params = dict(content["params"])
        for old, new in getattr(target, "_renamed_params", {}).items():
            if old in params and new not in params:
                params[new] = params.pop(old)
        if "cold_start" in target._param_names() and "cold_start" not in params:
            # written before the shared cold-start policies: it answered with popularity
            params["cold_start"] = "popularity"
        try:
            model = target(**params)
        except TypeError as exc:
            raise ModelFileError(
                f"{where} holds a {header['class']} with parameters this version does not "
                f"take ({exc}); it was written with {header.get('versions')}"
            ) from exc
        model._set_state(content["state"])
        return model


_DEFAULT_NEWCOMER = Newcomer()


def _check_cold_start_value(policy: Any, name: str) -> None:
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


def _grown_to(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` zero-padded to at least ``size`` (capacity doubles, so growing one at a time
    costs amortised O(1)); returned as is when already that long."""
    if values.size >= size:
        return values
    grown = np.zeros(max(size, 2 * values.size), dtype=values.dtype)
    grown[: values.size] = values
    return grown


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in ("recinc_plugins", "numpy", "scipy", "pandas", "lightfm", "implicit", "surprise",
                 "river", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "?"))
    return versions
