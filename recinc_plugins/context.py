"""Context: the recent events of a user that a model has not learned yet, given when scoring.

In a live service the model is updated every so often, while a user's latest clicks are known at
once. A :class:`Context` carries them to ``score_block`` (and ``recommend(..., context=...)``):
one row per scored user, the items oldest first, with their strengths. Models that use it say so
(``capabilities.context``); the others ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Context", "score_with_context"]


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
