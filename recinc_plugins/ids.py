"""Append-only maps between a caller's ids and dense integer indices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .growth import grown

__all__ = ["IdIndex"]


def _one_id(ids: Any) -> bool:
    """Whether ``ids`` is one id (a scalar or a string), not a collection of them."""
    return isinstance(ids, (str, bytes)) or not isinstance(ids, (Iterable, pd.Series,
                                                                 pd.Index, np.ndarray))


def _first_of_each(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, codes)``: the position of each distinct id's first occurrence, and for every
    id the number of its distinct id (``ids[first][codes]`` is ``ids``). A None or NaN id is
    an id of its own, as in the id maps' lookups."""
    codes = pd.factorize(ids, use_na_sentinel=False)[0]  # numbered in order of appearance
    return np.unique(codes, return_index=True)[1], codes


def _as_id_array(ids: Any) -> np.ndarray:
    """One-dimensional array of ids; integers become int64, anything else object."""
    if isinstance(ids, (pd.Series, pd.Index)):
        values = ids.to_numpy()
    elif isinstance(ids, np.ndarray):
        values = ids
    elif _one_id(ids):
        values = np.array([ids], dtype=object)
    else:
        items = ids if isinstance(ids, (list, tuple)) else list(ids)
        values = np.fromiter(items, dtype=object, count=len(items))
    if values.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got an array of shape {values.shape}")
    if values.dtype.kind in "iub":  # bools are the ints 0 and 1, as in a dict
        return values.astype(np.int64, copy=False)
    if values.dtype != object:
        values = values.astype(object)
    if values.size and pd.api.types.infer_dtype(values, skipna=False) in ("integer", "boolean"):
        return values.astype(np.int64)
    return values


def _get_indexer(index: pd.Index, values: np.ndarray) -> np.ndarray:
    """``index.get_indexer(values)``, through the hash engine directly when the dtypes match:
    pandas' wrapper costs ~40 us per call, which dominates the small lookups of a stream."""
    if index.dtype == values.dtype or index.dtype == object:
        engine = getattr(index, "_engine", None)
        if engine is not None and hasattr(engine, "get_indexer"):
            try:
                return np.asarray(engine.get_indexer(values.astype(index.dtype, copy=False)))
            except (TypeError, ValueError):
                pass
    return index.get_indexer(values)


class IdIndex:
    """Append-only map from hashable ids (str, int or a mix) to dense indices ``0..n-1``.

    Indices are given in first-seen order and never change, so arrays indexed by them (factor
    matrices, counts) only ever grow at the end. ``add`` and ``lookup`` work on whole arrays:
    the hashing runs inside pandas' hash tables, with no per-id Python loop. The ids are kept
    in a few hash tables over contiguous runs of indices, merged like a binary counter (a new run
    merges with the previous one while it is at least as large), so adding ids a few at a time
    costs amortised O(log n) per id and a lookup probes O(log n) tables.

    ``1`` and ``"1"`` are different ids; ``1``, ``1.0`` and ``True`` are the same one, as in a
    Python dict. ``None`` and NaN are not ids.

    Examples
    --------
    >>> from recinc_plugins.ids import IdIndex
    >>> index = IdIndex()
    >>> index.add(["alice", "bob", 7, "alice"])
    array([0, 1, 2, 0])
    >>> index.lookup(["bob", "carol", 7])
    array([ 1, -1,  2])
    >>> index.ids_of([2, 0]).tolist()
    [7, 'alice']
    >>> len(index)
    3
    """

    def __init__(self, ids: Any = None) -> None:
        self._ids = np.empty(0, dtype=np.int64)
        self._n = 0
        self._levels: list[tuple[int, pd.Index]] = []  # (first index, table), largest first
        # forgotten slots (``forget``): a bool mask over indices, or None while there are none
        self._dead: np.ndarray | None = None
        if ids is not None:
            self.add(ids)

    # -- size and contents -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def ids(self) -> np.ndarray:
        """All ids, in index order (a read-only view)."""
        view = self._ids[: self._n]
        view.flags.writeable = False
        return view

    def __contains__(self, id_: Any) -> bool:
        return bool(self.lookup([id_])[0] >= 0)

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[: min(self._n, 5)])
        more = ", ..." if self._n > 5 else ""
        return f"IdIndex(n={self._n}, ids=[{head}{more}])"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdIndex):
            return NotImplemented
        return self._n == other._n and bool(
            np.all(pd.Index(self.ids).equals(pd.Index(other.ids)))
        ) and bool(np.array_equal(self.dead, other.dead))

    __hash__ = None  # mutable

    # -- lookups -----------------------------------------------------------------------------

    def lookup(self, ids: Any) -> np.ndarray:
        """Indices of ``ids`` (int64), -1 where an id is unknown. Never adds anything."""
        values = _as_id_array(ids)
        if values.size == 0 or self._n == 0:
            return np.full(values.size, -1, dtype=np.int64)
        out = np.full(values.size, -1, dtype=np.int64)
        pending = np.arange(values.size)
        for offset, table in self._levels:
            found = _get_indexer(table, values[pending])
            hit = found >= 0
            if isinstance(offset, np.ndarray):  # a table of live slots only: their indices
                out[pending[hit]] = offset[found[hit]]
            else:
                out[pending[hit]] = found[hit] + offset
            pending = pending[~hit]
            if pending.size == 0:
                break
        return out

    def ids_of(self, indices: Any) -> np.ndarray:
        """The ids at ``indices``; raises IndexError naming any index out of range or
        forgotten."""
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        bad = (idx < 0) | (idx >= self._n)
        if bad.any():
            raise IndexError(
                f"indices out of range for an IdIndex of {self._n} ids: "
                f"{np.unique(idx[bad])[:10].tolist()}"
            )
        if self._dead is not None and self._dead[idx].any():
            raise IndexError(
                f"indices of forgotten ids: {np.unique(idx[self._dead[idx]])[:10].tolist()}")
        return self._ids[idx]

    # -- forgetting --------------------------------------------------------------------------

    @property
    def dead(self) -> np.ndarray:
        """Bool mask over indices: True where the id was forgotten (a read-only copy)."""
        if self._dead is None:
            return np.zeros(self._n, dtype=bool)
        return self._dead[: self._n].copy()

    @property
    def n_live(self) -> int:
        """Ids known now: ``len(self)`` less the forgotten slots."""
        return self._n - (int(self._dead[: self._n].sum()) if self._dead is not None else 0)

    def forget(self, indices: Any) -> None:
        """Forget the ids at ``indices``: they are looked up as unknown from now on (adding one
        again gives it a new index), and their slots keep their index but hold no id (a filler,
        0 or None, marked in :attr:`dead`), so arrays indexed by the map keep their layout.
        The id itself is dropped from the storage and the hash tables; ``ids_of`` refuses a
        forgotten index."""
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        if idx.size == 0:
            return
        if idx[0] < 0 or idx[-1] >= self._n:
            raise IndexError(f"indices out of range for an IdIndex of {self._n} ids")
        if self._dead is None:
            self._dead = np.zeros(self._n, dtype=bool)
        elif self._dead.size < self._n:
            self._dead = np.concatenate([self._dead, np.zeros(self._n - self._dead.size, bool)])
        self._dead[idx] = True
        self._ids[idx] = None if self._ids.dtype == object else 0
        self._levels = [self._live_level(0, self._n)] if self._n else []

    def _live_level(self, start: int, end: int) -> tuple[Any, pd.Index]:
        """One hash table over indices ``start..end-1``: ``(start, table)``, or, where some of
        them are forgotten, ``(indices of the live ones, table of their ids)``."""
        if self._dead is None or not self._dead[start:end].any():
            return (start, self._make_index(self._ids[start:end]))
        live = start + np.flatnonzero(~self._dead[start:end])
        if not live.size:  # every id forgotten: an empty table that still knows its start
            return (start, self._make_index(self._ids[start:start]))
        return (live, self._make_index(self._ids[live]))

    # -- growth ------------------------------------------------------------------------------

    def add(self, ids: Any) -> np.ndarray:
        """Add the unknown ids among ``ids`` (in first-seen order); return every id's index."""
        values = _as_id_array(ids)
        if values.size == 0:
            return np.empty(0, dtype=np.int64)
        out = self.lookup(values)
        missing = out < 0
        if not missing.any():
            return out
        new_values = values[missing]
        if new_values.dtype == object:
            nulls = pd.isna(new_values)
            if nulls.any():
                pos = np.flatnonzero(missing)[nulls]
                raise ValueError(f"ids must not be None or NaN (positions {pos[:10].tolist()})")
        codes, uniques = pd.factorize(new_values, sort=False)
        uniques = np.asarray(uniques, dtype=new_values.dtype)
        start = self._n
        self._append(uniques)
        out[missing] = codes + start
        return out

    def _append(self, new_ids: np.ndarray) -> None:
        n_new = len(new_ids)
        if self._ids.dtype != object and new_ids.dtype == object:
            # the first non-integer id: from now on ids are stored as Python objects
            storage = np.empty(max(len(self._ids), 1), dtype=object)
            storage[: self._n] = self._ids[: self._n]
            if self._dead is not None:  # forgotten slots: the object filler, None
                storage[: self._n][self._dead[: self._n]] = None
            self._ids = storage
            self._levels = [self._live_level(0, self._n)] if self._n else []
        end = self._n + n_new
        if end > len(self._ids):
            capacity = max(end, 2 * len(self._ids), 16)
            storage = np.empty(capacity, dtype=self._ids.dtype)
            storage[: self._n] = self._ids[: self._n]
            self._ids = storage
        self._ids[self._n : end] = new_ids
        start = self._n
        self._n = end
        if self._dead is not None:
            self._dead = grown(self._dead, end, spare=True)
        while self._levels and self._levels[-1][1].size <= end - start:
            first = self._levels.pop()[0]
            start = int(first[0]) if isinstance(first, np.ndarray) else first
        self._levels.append(self._live_level(start, end))

    def _truncate(self, n: int) -> None:
        """Forget the ids added after the first ``n``: only to undo a refused batch (so the
        storage goes back to int64 when the forgotten ids were the first non-integer ones)."""
        if n < self._n:
            self._n = n
            kept = self._ids[:n]
            if kept.dtype == object and all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                    for v in kept):
                self._ids = np.array(kept, dtype=np.int64) if n else np.empty(0, np.int64)
            if self._dead is not None:
                self._dead = self._dead[:n].copy()
            self._levels = [self._live_level(0, n)] if n else []

    def _make_index(self, values: np.ndarray) -> pd.Index:
        return pd.Index(values.copy(), dtype=values.dtype)

    # -- pickling ----------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        state = {"ids": self._ids[: self._n].copy()}
        if self._dead is not None and self._dead[: self._n].any():
            state["dead"] = self._dead[: self._n].copy()
        return state

    def __setstate__(self, state: dict) -> None:
        ids = state["ids"]
        self._ids = ids
        self._n = len(ids)
        dead = state.get("dead")
        self._dead = None if dead is None else np.array(dead, dtype=bool)
        if self._dead is not None and self._dead.size != self._n:
            raise ValueError(f"an IdIndex's forgotten mask holds {self._dead.size} entries for "
                             f"{self._n} ids")
        self._levels = [self._live_level(0, self._n)] if len(ids) else []

    def copy(self) -> IdIndex:
        new = IdIndex.__new__(IdIndex)
        new.__setstate__(self.__getstate__())
        return new
