"""The contract: what every model offers (the public verbs) and the hooks a model implements.

A model subclasses :class:`IncrementalRecommender`, stores its parameters and implements three
hooks, optionally a few more (``docs/extending.md`` writes one in a page). The machinery behind
the verbs has its own modules: ``state`` (id maps, seen items, counts, :class:`Batch`),
``ranking`` (:func:`top_k`), ``coldstart``, ``persistence``, ``params`` and ``growth``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from .capabilities import Capabilities
from .coldstart import COLD_STARTS, NEWCOMER_EVENTS, NEWCOMER_HALF_LIFE, ColdStart, Newcomer
from .context import Context, context_for
from .forget import Forgetting
from .ids import _as_id_array, _first_of_each, _one_id
from .params import Parameters
from .persistence import FORMAT_VERSION, ModelFileError, load_model, save_model
from .ranking import Recommendations, recommend, top_k
from .state import Batch, SharedState

__all__ = ["COLD_STARTS", "FORMAT_VERSION", "NEWCOMER_EVENTS", "NEWCOMER_HALF_LIFE", "Batch",
           "Capabilities", "IncrementalRecommender", "ModelFileError", "Newcomer",
           "Recommendations", "top_k"]

Self = TypeVar("Self", bound="IncrementalRecommender")


class IncrementalRecommender(Parameters, SharedState, ColdStart, Forgetting, abc.ABC):
    """A recommender that learns from scratch (``fit``) and from new events (``partial_fit``).

    Users and items are the caller's own ids (str, int or mixed); the model maps them to dense
    indices that only grow (``user_index_``, ``item_index_``), and its hooks only ever see
    those indices. Public verbs: ``fit``, ``partial_fit``, ``score``, ``recommend``,
    ``save``/``load``; ``get_params``/``set_params``/``clone``; ``is_fitted``, ``n_users``,
    ``n_items``, ``capabilities``; and the encoded interface the replay harness uses.

    Hooks, in the order the model meets them (learned state ends with an underscore;
    ``__init__`` only stores parameters):

    ``_check_params()``
        Optional: raise ValueError naming a bad parameter, before any state is built.
    ``_init_model()``
        Optional: create the model's own empty learned state (on ``fit`` and first use).
    ``_grow(n_users, n_items)``
        Make room for new users and items (indices only ever grow at the end).
    ``_check_batch(batch)`` / ``_prepare(batch)``
        Optional: refuse a batch, or do the part of learning that can fail, before any state
        changes; if either raises, the model is as it was.
    ``_fit(batch)`` / ``_partial_fit(batch)``
        Learn a :class:`Batch`; ``_fit`` starts from scratch and defaults to ``_partial_fit``.
        The shared state (seen items, counts) already includes the batch.
    ``_score_users(users)``
        Scores of every known item for known users: an ``(len(users), n_items)`` array.
    ``_score_pairs(users, items)``
        Optional: one score per pair; defaults to gathering from ``_score_users``.
    ``_forget(removed)``
        Optional: take forgotten users' and items' events and rows out of the model's own
        state (see :mod:`recinc_plugins.forget`); without it ``forget`` retrains from the kept
        events.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    #: the optional extra the model needs (for ``recinc models`` and import errors)
    extra: ClassVar[str | None] = None

    # -- the public verbs --------------------------------------------------------------------

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

    def score(self, users: Any, items: Any, *, context: Any = None,
              return_cold: bool = False) -> Any:
        """One score per ``(user, item)`` pair: a predicted rating for explicit models.

        ``users`` may be a single id, broadcast to every item. Pairs with an unknown user or
        item get the cold-start fallback (the global mean for rating models, item popularity
        otherwise); ``return_cold=True`` also returns a boolean array flagging them.
        ``context`` gives users' recent events that the model has not learned, as
        ``recommend``'s does: a model that uses it (``capabilities.context``) scores the
        pairs of those users with it, an unknown user included (then not flagged cold), and
        learns nothing; the others ignore it.
        """
        user_ids, _, u, i = self._lookup_pairs(users, items)
        self._sync_size()  # ids given by add_ids since the model last learned get their rows
        cold = (u < 0) | (i < 0)
        out = np.empty(u.size, dtype=np.float64)
        with_context = np.zeros(u.size, dtype=bool)
        if context is not None:
            # one context row per distinct user id (unknown ids told apart by their id)
            first, codes = _first_of_each(user_ids)
            ctx = context_for(self, user_ids[first], context, single=_one_id(users))
            has = self.context_rows(u[first], ctx)
            with_context = has[codes] & (i >= 0)
            if with_context.any():
                rows = np.flatnonzero(has)
                block = np.asarray(self.score_block(u[first][rows], ctx.take(rows)))
                row_of = np.full(first.size, -1, dtype=np.int64)
                row_of[rows] = np.arange(rows.size)
                out[with_context] = block[row_of[codes[with_context]], i[with_context]]
        cold &= ~with_context
        plain = ~cold & ~with_context
        if plain.any():
            out[plain] = self._score_pairs(u[plain], i[plain])
        if cold.any():
            out[cold] = self._fallback_pairs(u[cold], i[cold])
        return (out, cold) if return_cold else out

    def recommend(self, users: Any, k: int = 10, *, exclude_seen: bool = True,
                  candidates: Sequence[Any] | np.ndarray | None = None,
                  context: Any = None) -> Recommendations:
        """Top-``k`` items for each of ``users``, best first, in one batched call.

        Parameters
        ----------
        users
            One id or an array of ids; unknown users get the cold-start fallback and are
            flagged in ``Recommendations.cold``.
        k
            How many items per user.
        exclude_seen
            Leave out items the user has interacted with (with a context, its items too).
        candidates
            Restrict recommendations to these item ids (all must be known to the model).
        context
            The users' recent events that the model has not learned yet (a live service's
            clicks since the last update), oldest first: a DataFrame with ``user`` and
            ``item`` columns (strengths in ``rating`` or ``weight``; rows of other users are
            not used), a mapping ``{user id: item ids}``, or, for one user, its item ids. A
            model that uses context (``capabilities.context``; ``recinc models``) scores a
            user with a non-empty one from it, an unknown user included (then not flagged
            cold), and learns nothing; the others ignore it for scoring. Items the model
            does not know are left out (nothing to score them with; no candidates either).
        """
        return recommend(self, users, k, exclude_seen, candidates, context)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (parameters, learned state, id maps) to one versioned file: its
        arrays in a NumPy archive, the rest as JSON, under a SHA-256 checksum. Loading it
        runs no code from it (``docs/security.md``)."""
        save_model(self, path)

    @classmethod
    def load(cls: type[Self], path: str | os.PathLike, *, trusted: bool = False) -> Self:
        """Read a model written by :meth:`save`; raise :class:`ModelFileError` if the file is
        not a model file, is truncated or corrupt, holds a model of another class, or holds
        what only ``trusted=True`` reads: a class neither registered nor imported, a type off
        the allow-list, or a file of format 1 (a pickle). Pass ``trusted=True`` only for a
        file from a source you trust: it may then import modules and run code."""
        return load_model(path, cls, trusted=trusted)

    # -- the encoded interface: what the evaluation harness uses -----------------------------
    # Ids in, dense indices out (``add_ids``), then everything in indices. Every model gets it
    # from the hooks below; overriding ``shared_scores``, ``item_vectors``/``user_vectors`` or
    # ``score_then_learn_encoded`` only makes the harness faster, never changes a number.

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
        # called once per step by the replay (every event, at one event per step): the
        # steps of _ensure_state and _ingest_and_learn inline
        if not hasattr(self, "user_index_"):
            self._reset()
        self._check_and_prepare(batch, *self._grown)
        self._ingest(batch)
        if batch.users.size:
            self._partial_fit(batch)
        return self

    def score_then_learn_encoded(self, batch: Batch) -> np.ndarray | None:
        """``score_encoded`` of each event of ``batch`` just before it is learned, one event at
        a time (an id not learned before its event scored as unknown, -1), the model ending as
        ``learn_encoded(batch)`` leaves it; or None, changing nothing, where the model has no
        such fast path (the default; an empty batch asks). The harness replays runs of
        one-event steps whose only measure is the rating through it: one call, not two per step."""
        return None

    def score_block(self, users: np.ndarray, context: Context | None = None) -> np.ndarray:
        """Scores of every item (``n_items`` columns, in index order) for known users given as
        dense indices: float32 or float64, higher is better; NaN and -inf are never
        recommended. The array may be the model's own: read it, do not write to it. A
        :class:`~recinc_plugins.context.Context` (a row per user: events not learned yet)
        reaches models with ``capabilities.context``, where -1 is a user scored from it alone."""
        users = np.asarray(users, dtype=np.int64)
        if context is None or not self.capabilities.context:
            return self._score_users(users)
        return self._score_in_context(users, context)

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

    def user_vectors(self, users: np.ndarray, context: Context | None = None) -> np.ndarray:
        """The vectors of known users (dense indices) that ``item_vectors`` pairs with; with a
        context, as ``score_block``'s."""
        raise NotImplementedError(f"{type(self).__name__} has no item_vectors")

    def predicts_ratings(self) -> bool:
        """True when ``score`` returns predicted ratings rather than ranking scores."""
        caps = self.capabilities
        return bool(caps.explicit and not caps.implicit and self.n_ratings_ > 0)

    # -- the hooks a model implements, in order ----------------------------------------------

    def _check_params(self) -> None:
        """Validate parameters (the ``check_*`` helpers of :mod:`recinc_plugins.params`);
        raise ValueError naming the bad one. Called before any state is built."""

    def _init_model(self) -> None:
        """Create the model's own (empty) learned state. Called on ``fit`` and first use."""

    @abc.abstractmethod
    def _grow(self, n_users: int, n_items: int) -> None:
        """Make room for ``n_users`` users and ``n_items`` items (never fewer than before);
        :func:`recinc_plugins.growth.grown` appends rows to an array."""

    def _check_batch(self, batch: Batch) -> None:
        """Refuse a batch the model cannot learn, before any state changes (raise ValueError)."""

    def _prepare(self, batch: Batch) -> None:
        """Do the part of learning ``batch`` that can fail, before any state changes (say, train
        a replacement model and keep it for ``_fit``/``_partial_fit`` to install). Called after
        ``_check_batch`` with the same guarantee: if it raises, the model is unchanged."""

    def _fit(self, batch: Batch) -> None:
        """Learn ``batch`` from scratch (after ``_init_model``); by default ``_partial_fit``."""
        self._partial_fit(batch)

    @abc.abstractmethod
    def _partial_fit(self, batch: Batch) -> None:
        """Learn the events of ``batch``, in their order."""

    @abc.abstractmethod
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores of all ``n_items`` known items for known users (dense indices)."""

    #: whether the strengths of a context (ratings) change the scores; a rating model whose
    #: context reads them needs a frame with a ``rating`` column (``context_for``)
    context_reads_ratings: ClassVar[bool] = True

    def context_rows(self, users: np.ndarray, context: Context) -> np.ndarray:
        """Which rows of ``score_block(users, context)`` are scored with their context (bool):
        a row with context items, where the model uses context, except an unknown user's (-1)
        whose context items the model has learned nothing about (an item known by id only,
        or forgotten: no factors, no neighbours), answered by the cold-start fallback instead.
        The other rows are scored as without context; ``recommend`` and ``score`` flag an
        unknown user's row cold unless it is one of these."""
        users = np.asarray(users, dtype=np.int64)
        if not self.capabilities.context:
            return np.zeros(users.size, dtype=bool)
        has = context.lengths > 0
        unknown = has & (users < 0)
        if unknown.any():
            counts, items = self.item_counts_, context.items
            learned = np.zeros(items.size, dtype=bool)
            inside = items < counts.size
            learned[inside] = counts[items[inside]] > 0
            owner = np.repeat(np.arange(users.size), context.lengths)
            usable = np.zeros(users.size, dtype=bool)
            usable[owner[learned]] = True
            has &= (users >= 0) | usable
        return has

    def _score_in_context(self, users: np.ndarray, context: Context) -> np.ndarray:
        """Models with ``capabilities.context``: ``_score_users`` with each user's context
        (users may be -1: unknown, scored from the context alone; the rows
        :meth:`context_rows` leaves out as without context)."""
        raise NotImplementedError(f"{type(self).__name__} says it uses context but has no "
                                  "_score_in_context")

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """One score per pair of known users and items (dense indices)."""
        uniq, inverse = np.unique(users, return_inverse=True)
        return self._score_users(uniq)[inverse, items]
