"""Context: the recent events of a user that a model has not learned yet, given when scoring.

In a live service the model is updated every so often, while a user's latest clicks are known at
once. A :class:`Context` carries them to ``score_block`` (and ``recommend(..., context=...)``):
one row per scored user, the items oldest first, with their strengths. Models that use it say so
(``capabilities.context``); the others ignore it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Context"]


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
