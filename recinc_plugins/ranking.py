"""Ranking: the top-k of a score array, and ``recommend``'s batched answer built on it.

One top-k serves the whole package: ``recommend`` and the replay harness both rank with
:func:`top_k`, so ties break the same way everywhere (to the earlier-seen item).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .context import context_for
from .ids import _as_id_array, _one_id

__all__ = ["Recommendations", "recommend", "top_k"]


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


#: narrower blocks than this and numpy's reduction over each block costs more than the one
#: partition it saves (measured: 1,000 x 1,682 float32 scores, k=10, 15 ms by blocks of 5
#: against 5 ms by partition; 400 x 20,000, blocks of 62: 31 against 23 ms; 400 x 50,000,
#: blocks of 156: 18 against 59 ms)
_MIN_WIDTH = 100


def _top_k_by_blocks(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Columns of each row's k best scores (ties to the lower column) and the rows left to
    the caller (a sea of ties at the row's k-th score), or None to fall back for the whole
    array (a NaN, a catalogue too small to cut).

    The row is cut into ``32k`` blocks. The k-th largest block maximum is a score that at least
    k entries reach, so only the entries at or above it can be among the k best, and they all
    sit in the blocks whose maximum reaches it: usually about k blocks. So one vectorised pass
    (the block maxima) reads the whole row, and only those blocks are read again and sorted.
    A row where many blocks reach it (ties: say a user whose scores are all 0) is left out.
    """
    n_rows, n_cols = scores.shape
    n_blocks = 32 * k
    width = n_cols // n_blocks
    if width < _MIN_WIDTH:
        return None
    body = n_blocks * width
    block_max = scores[:, :body].reshape(n_rows, n_blocks, width).max(axis=2)
    if body < n_cols:
        block_max = np.hstack([block_max, scores[:, body:].max(axis=1, keepdims=True)])
    if np.isnan(block_max).any():  # (a block's maximum is NaN where the block has one)
        return None
    threshold = np.partition(block_max, block_max.shape[1] - k, axis=1)[:, -k]
    reached = block_max[:, :n_blocks] >= threshold[:, None]
    tied = reached.sum(axis=1) > 8 * k  # a sea of ties: the caller partitions these rows
    if tied.any():
        reached[tied] = False
    sel_rows, sel_blocks = np.nonzero(reached)
    cols = sel_blocks[:, None] * width + np.arange(width)
    vals = scores[sel_rows[:, None], cols]
    keep = vals >= threshold[sel_rows, None]
    rows = np.broadcast_to(sel_rows[:, None], cols.shape)[keep]
    cols, vals = cols[keep], vals[keep]
    if body < n_cols:  # the last, narrower block: compared whole
        tail = scores[:, body:]
        tail_rows, tail_cols = np.nonzero((tail >= threshold[:, None]) & ~tied[:, None])
        rows = np.concatenate([rows, tail_rows])
        vals = np.concatenate([vals, tail[tail_rows, tail_cols]])
        cols = np.concatenate([cols, tail_cols + body])
    found = np.bincount(rows, minlength=n_rows)
    crowded = found > 64 * k  # many ties at the threshold inside the blocks: partition
    if crowded.any():
        tied |= crowded
        inside = ~crowded[rows]
        rows, cols, vals = rows[inside], cols[inside], vals[inside]
    order = np.lexsort((cols, -vals, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    out = np.zeros((n_rows, k), dtype=np.int64)
    ok = ~tied
    out[ok] = cols[starts[ok, None] + np.arange(k)]
    return out, np.flatnonzero(tied)


def _top_k_partition(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of each row's k best scores, unordered, ties to the lower columns (no NaN)."""
    n_rows, n_cols = scores.shape
    kth = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k][:, None]
    selected = scores >= kth
    excess = np.flatnonzero(selected.sum(axis=1) > k)
    if excess.size:  # more ties at the k-th score than slots: keep the lowest columns
        sub, sub_kth = scores[excess], kth[excess]
        need = k - (sub > sub_kth).sum(axis=1, keepdims=True)
        tied = sub == sub_kth
        selected[excess] = (sub > sub_kth) | (tied & (np.cumsum(tied, axis=1) <= need))
    return np.nonzero(selected)[1].reshape(n_rows, k)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a 2-D score array, best first; ties go to the lower column index.

    float32 scores are ranked as they are; anything else as float64.

    Entries equal to -inf (or NaN) are never returned: their slots hold index -1 and score NaN.
    Runs in O(n_cols) per row (a partition and a few passes), sorting only the k winners.

    Examples
    --------
    >>> import numpy as np
    >>> from recinc_plugins.ranking import top_k
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
    found = _top_k_by_blocks(scores, k) if k < n_cols else None
    if found is None:
        nan = np.isnan(scores)
        if nan.any():
            scores = np.where(nan, -np.inf, scores)
        if k < n_cols:
            part = _top_k_partition(scores, k)
        else:
            part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    else:
        part, rest = found
        if rest.size:  # rows of ties the blocks left: partitioned (no NaN: checked there)
            part[rest] = _top_k_partition(scores[rest], k)
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1)
    invalid = np.isneginf(vals)
    if invalid.any():
        idx[invalid] = -1
        vals[invalid] = np.nan
    return idx, vals


def recommend(
    model: Any,
    users: Any,
    k: int,
    exclude_seen: bool,
    candidates: Sequence[Any] | np.ndarray | None,
    context: Any = None,
) -> Recommendations:
    """:meth:`IncrementalRecommender.recommend <recinc_plugins.base.IncrementalRecommender.
    recommend>`: score the catalogue for known users (``_score_users``), users with a context
    (``score_block`` with it, where the model uses context) and unknown ones (the cold-start
    fallback) in one array, mask seen items (and the context's), restrict to the candidates,
    take the top k, and map indices back to item ids."""
    model._ensure_state()
    model._sync_size()  # ids given by add_ids since the model last learned get their rows
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    user_ids = _as_id_array(users)
    u = model.user_index_.lookup(user_ids)
    ctx = None if context is None else context_for(model, user_ids, context,
                                                   single=_one_id(users))
    with_context = np.zeros(u.size, dtype=bool)
    if ctx is not None:
        with_context = model.context_rows(u, ctx)
    cold = (u < 0) & ~with_context
    n_items = model.n_items
    if candidates is not None:
        cand_ids = _as_id_array(candidates)
        cand = model.item_index_.lookup(cand_ids)
        if (cand < 0).any():
            unknown = cand_ids[cand < 0][:10].tolist()
            raise ValueError(
                f"{int((cand < 0).sum())} candidate item(s) are unknown to the model: "
                f"{unknown}"
            )
        cand = np.unique(cand)
    scores = np.empty((u.size, n_items), dtype=np.float64)
    plain = ~cold & ~with_context
    if plain.any():
        scores[plain] = model._score_users(u[plain])
    if cold.any():
        scores[cold] = model._fallback_scores(int(cold.sum()))
    if with_context.any():
        rows = np.flatnonzero(with_context)
        scores[rows] = model.score_block(u[rows], ctx.take(rows))
    known = u >= 0
    if exclude_seen and known.any():
        rows = np.flatnonzero(known)
        pos, cols = model.seen_.row_entries(u[rows])
        scores[rows[pos], cols] = -np.inf
    if exclude_seen and ctx is not None and ctx.items.size:
        scores[np.repeat(np.arange(u.size), ctx.lengths), ctx.items] = -np.inf
    dead = model.item_index_._dead
    if dead is not None and dead[:n_items].any():  # forgotten items are never recommended
        scores[:, dead[:n_items]] = -np.inf
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
        items[valid] = model.item_index_.ids_of(idx[valid])
    if items.dtype == object and valid.all() and model.item_index_.ids.dtype != object:
        items = items.astype(model.item_index_.ids.dtype)
    return Recommendations(users=user_ids, items=items, scores=vals, cold=cold)
