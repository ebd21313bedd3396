"""Context: the recent events of a user that a model has not learned yet, given when scoring.

In a live service the model is updated every so often, while a user's latest clicks are known at
once. A :class:`Context` carries them to ``score_block`` (and ``recommend(..., context=...)``):
one row per scored user, the items oldest first, with their strengths. Models that use it say so
(``capabilities.context``); the others ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .data.interactions import _check_values
from .ids import _as_id_array

__all__ = ["Context", "context_for", "score_with_context"]


@dataclass(frozen=True)
class Context:
    """Recent items per row, in the model's item indices, oldest first.

    Row ``r``'s items are ``items[ptr[r]:ptr[r + 1]]`` and their strengths (ratings or weights,
    1 where the events had none) ``values[ptr[r]:ptr[r + 1]]``.

    Examples
    --------
    >>> from recinc_plugins.context import Context
    >>> context = Context.from_lists([[3, 1], [], [2]])
    >>> len(context), context.row(0)
    (3, (array([3, 1]), array([1., 1.])))
    """

    ptr: np.ndarray
    items: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.ptr.size - 1)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.ptr)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = int(self.ptr[r]), int(self.ptr[r + 1])
        return self.items[start:end], self.values[start:end]

    def take(self, rows: np.ndarray) -> Context:
        """The context of ``rows`` (indices into this one), in that order."""
        from .sparse import concat_ranges

        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        idx = concat_ranges(self.ptr[rows], lengths)
        return Context(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                       self.items[idx], self.values[idx])

    @classmethod
    def from_lists(cls, items: Sequence[Sequence[int]],
                   values: Sequence[Sequence[float]] | None = None) -> Context:
        lengths = np.array([len(row) for row in items], dtype=np.int64)
        flat = np.array([i for row in items for i in row], dtype=np.int64)
        if values is None:
            vals = np.ones(flat.size)
        else:
            vals = np.array([v for row in values for v in row], dtype=np.float64)
            if vals.size != flat.size:
                raise ValueError("context values must match its items, row by row")
        return cls(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), flat, vals)


def score_with_context(model: Any, users: np.ndarray, context: Context, has: np.ndarray,
                       score_rows: Callable[[np.ndarray, Context], np.ndarray]) -> np.ndarray:
    """A block of score rows for ``users`` (dense indices, -1 unknown) where the rows in
    ``has`` are scored with their context by ``score_rows(users, context)``, a known user
    without context as by the model's ``_score_users`` and an unknown one by its cold-start
    fallback: what a context-aware model's ``_score_in_context`` does around its own part.
    float64 where a row is cold (the fallback's ties are broken in the sixth digit), else
    float32."""
    plain, cold = (users >= 0) & ~has, (users < 0) & ~has
    scores = np.empty((users.size, model.n_items),
                      dtype=np.float64 if cold.any() else np.float32)
    if plain.any():
        scores[plain] = model._score_users(users[plain])
    if cold.any():
        scores[cold] = model._fallback_scores(int(cold.sum()))
    if has.any():
        rows = np.flatnonzero(has)
        scores[rows] = score_rows(users[rows], context.take(rows))
    return scores


def context_for(model: Any, user_ids: np.ndarray, context: Any, *, single: bool) -> Context:
    """The ``context`` argument of ``recommend`` and ``score``, as a :class:`Context` with a row
    per id of ``user_ids`` (in the model's item indices, oldest first).

    ``context`` is a DataFrame of events not learned yet (``user`` and ``item`` columns, the
    strength in ``rating`` or else ``weight``, 1 without either; rows in time order; rows of
    users not asked for are not used), a mapping ``{user id: item ids, oldest first}``, or,
    when one user is asked for (``single``), that user's item ids. Items the model does not
    know are left out of the rows: the model has nothing to score them with, and they are no
    candidates either; ids no item can have (None, NaN, tuples) are refused. A model that
    predicts ratings and reads its context's ratings (``context_reads_ratings``) needs them: a
    frame with a ``rating`` column (1 would read as the lowest rating)."""
    users: list[Any] = user_ids.tolist()
    rated = isinstance(context, pd.DataFrame) and "rating" in context.columns
    if isinstance(context, pd.Series):
        context = _series_context(context, single)
    if isinstance(context, pd.DataFrame):
        missing = [c for c in ("user", "item") if c not in context.columns]
        if missing:
            raise ValueError(f"context: a frame of recent events needs 'user' and 'item' "
                             f"columns; missing {missing} (columns: {list(context.columns)})")
        repeated = sorted({c for c in context.columns[context.columns.duplicated()]
                           if c in ("user", "item", "rating", "weight")})
        if repeated:
            raise ValueError(f"context: the frame has more than one column named {repeated}")
        asked = context["user"].isin(user_ids).to_numpy()  # other users' rows are not used
        frame = context[asked]
        column = next((c for c in ("rating", "weight") if c in frame.columns), None)
        values = np.ones(len(frame)) if column is None else \
            _check_values(context, column, among=asked)[asked]
        rows: dict[Any, tuple[list[Any], list[float]]] = {}
        for user, item, value in zip(frame["user"].tolist(), frame["item"].tolist(),
                                      values.tolist(), strict=True):
            entry = rows.setdefault(user, ([], []))
            entry[0].append(item)
            entry[1].append(value)
        per_user = [rows.get(user, ([], [])) for user in users]
    elif isinstance(context, Mapping):
        per_user = []
        for user in users:
            items = _item_list(context.get(user, ()), f"context[{user!r}]")
            per_user.append((items, [1.0] * len(items)))
    elif single:
        items = _item_list(context, "context")
        per_user = [(items, [1.0] * len(items))]
    else:
        raise TypeError("context must be a DataFrame of recent events (user, item, optional "
                        "rating or weight), a mapping {user id: item ids}, or, for one user, "
                        f"a list of item ids; got {type(context).__name__}")
    lengths = np.array([len(items) for items, _ in per_user], dtype=np.int64)
    if not rated and lengths.any() and model.capabilities.context and \
            model.predicts_ratings() and model.context_reads_ratings:
        raise ValueError(f"{type(model).__name__} predicts ratings, so its context needs "
                         "them: pass a DataFrame of recent events with a 'rating' column")
    flat = _as_id_array([item for items, _ in per_user for item in items])
    _check_item_ids(flat, lengths, users)
    vals = np.array([v for _, values in per_user for v in values], dtype=np.float64)
    try:
        index = model.item_index_.lookup(flat) if flat.size else np.zeros(0, dtype=np.int64)
    except TypeError as error:  # an unhashable "id": a list, an array, a dict
        bad = next((v for v in flat.tolist() if not _hashable(v)), None)
        raise TypeError(f"context: items must be item ids (hashable scalars), got "
                        f"{type(bad).__name__} {bad!r:.60}") from error
    known = index >= 0
    owner = np.repeat(np.arange(len(per_user)), lengths)
    kept = np.bincount(owner[known], minlength=len(per_user))
    return Context(np.concatenate([[0], np.cumsum(kept)]).astype(np.int64),
                   index[known].astype(np.int64), vals[known])


def _series_context(context: pd.Series, single: bool) -> Any:
    """A Series as context: item lists by user (``groupby("user")["item"].apply(list)``; a
    missing list, NaN, is no recent event) is a mapping; for one user, a Series of item ids is
    its list, unless its index says it holds several users' items."""
    values = context.tolist()
    lists = [pd.api.types.is_list_like(v) and not isinstance(v, (str, bytes)) for v in values]
    if any(lists):
        if all(is_list or _missing(v) for is_list, v in zip(lists, values, strict=True)):
            return {user: (items if is_list else [])
                    for user, items, is_list in zip(context.index.tolist(), values, lists,
                                                    strict=True)}
        return context  # refused below, naming what it holds
    if not len(context):
        return {}  # no recent events for anyone
    if single and context.index.name == "user":
        raise TypeError("context: a Series of item ids indexed by 'user' holds several users' "
                        "events; for one user pass that user's item ids, or pass the frame "
                        "of events (user, item) or a mapping {user id: item ids}")
    return context


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _check_item_ids(flat: np.ndarray, lengths: np.ndarray, users: list[Any]) -> None:
    """Refuse what no item id can be (None, NaN, a tuple: ``partial_fit`` would refuse them
    too) instead of leaving it out as an unknown item; names the user and position."""
    if flat.dtype != object or not flat.size:
        return
    bad = pd.isna(flat) | np.fromiter((isinstance(v, tuple) for v in flat.tolist()),
                                      dtype=bool, count=flat.size)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(np.cumsum(lengths), first, side="right"))
        position = first - int(lengths[:row].sum())
        value = flat[first]
        what = "a tuple" if isinstance(value, tuple) else "None or NaN"
        raise ValueError(f"context: item ids must not be {what}: {int(bad.sum())} found, the "
                         f"first for user {users[row]!r} at position {position} ({value!r})")


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _item_list(items: Any, name: str) -> list[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, np.ndarray,
                                                                  pd.Series, pd.Index)):
        raise TypeError(f"{name} must be a list of item ids, oldest first; got "
                        f"{type(items).__name__} {items!r:.60}")
    if isinstance(items, np.ndarray) and items.ndim != 1:
        raise TypeError(f"{name} must be a one-dimensional list of item ids, got an array "
                        f"of shape {items.shape}")
    return items.tolist() if isinstance(items, (np.ndarray, pd.Series, pd.Index)) else \
        list(items)
