"""A user x item sparse matrix that grows with new rows, columns and entries."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .growth import grown, resized

__all__ = ["GrowingCSR", "concat_ranges"]


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    nonzero = lengths > 0
    starts, lengths = starts[nonzero], lengths[nonzero]
    offsets = np.cumsum(lengths) - lengths
    out = np.ones(total, dtype=np.int64)
    out[0] = starts[0]
    out[offsets[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(out)


def _bounds(values: np.ndarray) -> tuple[int, int]:
    """(min, max) of an int array; plain Python for the tiny arrays of one-event steps, where
    two numpy reductions cost more than the rest of an update."""
    if values.size <= 16:
        as_list = values.tolist()
        return min(as_list), max(as_list)
    return int(values.min()), int(values.max())


def drop_entries(holder: Any, rows: np.ndarray | None, cols: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove the entries of ``rows`` or ``cols`` from ``holder`` (anything with ``tocsr()``
    and a ``csr``-valued attribute named by ``holder._csr_attr``), returning them as
    ``(rows, cols, values)``."""
    csr = holder.tocsr()
    n_rows, n_cols = csr.shape
    gone = np.zeros(csr.nnz, dtype=bool)
    entry_rows = np.repeat(np.arange(n_rows), np.diff(csr.indptr))
    if rows is not None and np.size(rows):
        mask = np.zeros(n_rows, dtype=bool)
        mask[np.asarray(rows, dtype=np.int64)[np.asarray(rows) < n_rows]] = True
        gone |= mask[entry_rows]
    if cols is not None and np.size(cols):
        mask = np.zeros(n_cols, dtype=bool)
        mask[np.asarray(cols, dtype=np.int64)[np.asarray(cols) < n_cols]] = True
        gone |= mask[csr.indices]
    removed = (entry_rows[gone], csr.indices[gone].astype(np.int64), csr.data[gone].copy())
    if gone.any():
        keep = ~gone
        kept = sp.csr_matrix((csr.data[keep], csr.indices[keep],
                              np.concatenate([[0], np.cumsum(np.bincount(
                                  entry_rows[keep], minlength=n_rows))])),
                             shape=csr.shape, dtype=csr.dtype)
        setattr(holder, holder._csr_attr, kept)
    return removed


class GrowingCSR:
    """Sparse ``rows x cols`` matrix for a stream: append entries cheaply, read rows quickly.

    Entries go to an append buffer and are merged into a compact CSR once the buffer holds more
    than an eighth of the matrix, so appending is amortised O(1) per entry whatever the step
    size. Repeated ``(row, col)`` entries are combined by ``combine``: ``"sum"`` (counts,
    implicit weights) or ``"last"`` (a re-rating replaces the old rating).
    """

    _MIN_BUFFER = 4096
    _csr_attr = "_csr"

    def __init__(self, n_rows: int = 0, n_cols: int = 0, *, combine: str = "sum",
                 dtype: type = np.float64) -> None:
        if combine not in ("sum", "last"):
            raise ValueError(f"combine must be 'sum' or 'last', got {combine!r}")
        self.combine = combine
        self.dtype = np.dtype(dtype)
        self.n_rows = int(n_rows)
        self.n_cols = int(n_cols)
        self._csr = sp.csr_matrix((self.n_rows, self.n_cols), dtype=self.dtype)
        self._buf_rows = np.empty(self._MIN_BUFFER, dtype=np.int64)
        self._buf_cols = np.empty(self._MIN_BUFFER, dtype=np.int64)
        self._buf_vals = np.empty(self._MIN_BUFFER, dtype=self.dtype)
        self._n_buf = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)

    @property
    def nnz_upper(self) -> int:
        """Stored entries before merging duplicates (an upper bound on nnz)."""
        return self._csr.nnz + self._n_buf

    def resize(self, n_rows: int, n_cols: int) -> None:
        """Grow to at least ``n_rows x n_cols`` (never shrinks)."""
        self.n_rows = max(self.n_rows, int(n_rows))
        self.n_cols = max(self.n_cols, int(n_cols))

    def add(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray | float = 1.0) -> None:
        """Append entries; the matrix grows to fit the largest row and column given."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        n = rows.size
        if n == 0:
            return
        if cols.size != n:
            raise ValueError(f"rows and cols differ in length ({n} != {cols.size})")
        row_lo, row_hi = _bounds(rows)
        col_lo, col_hi = _bounds(cols)
        if row_lo < 0 or col_lo < 0:
            raise ValueError("row and column indices must be non-negative")
        if row_hi >= self.n_rows or col_hi >= self.n_cols:
            self.resize(row_hi + 1, col_hi + 1)
        end = self._n_buf + n
        if end > self._buf_rows.size:
            capacity = max(end, 2 * self._buf_rows.size)
            for name in ("_buf_rows", "_buf_cols", "_buf_vals"):
                setattr(self, name, grown(getattr(self, name)[: self._n_buf], capacity))
        self._buf_rows[self._n_buf : end] = rows
        self._buf_cols[self._n_buf : end] = cols
        self._buf_vals[self._n_buf : end] = values
        self._n_buf = end
        if self._n_buf > max(self._MIN_BUFFER, self._csr.nnz // 8):
            self._merge()

    def add_one(self, row: int, col: int, value: float = 1.0) -> None:
        """``add`` for one entry, in scalars (the one-event path of a stream)."""
        if row < 0 or col < 0:
            raise ValueError("row and column indices must be non-negative")
        if row >= self.n_rows:
            self.n_rows = row + 1
        if col >= self.n_cols:
            self.n_cols = col + 1
        n = self._n_buf
        if n >= self._buf_rows.size:
            capacity = 2 * self._buf_rows.size
            for name in ("_buf_rows", "_buf_cols", "_buf_vals"):
                setattr(self, name, grown(getattr(self, name)[:n], capacity))
        self._buf_rows[n] = row
        self._buf_cols[n] = col
        self._buf_vals[n] = value
        self._n_buf = n + 1
        if n + 1 > self._MIN_BUFFER and n + 1 > self._csr.nnz // 8:
            self._merge()

    def _merge(self) -> None:
        csr = self._csr
        csr = resized(csr, self.shape)
        if self._n_buf:
            n = self._n_buf
            rows = np.concatenate([np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr)),
                                   self._buf_rows[:n]])
            cols = np.concatenate([csr.indices.astype(np.int64), self._buf_cols[:n]])
            vals = np.concatenate([csr.data, self._buf_vals[:n]])
            if self.combine == "last":
                order = np.lexsort((np.arange(rows.size), cols, rows))
                rows, cols, vals = rows[order], cols[order], vals[order]
                last = np.ones(rows.size, dtype=bool)
                last[:-1] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
                rows, cols, vals = rows[last], cols[last], vals[last]
            csr = sp.csr_matrix((vals, (rows, cols)), shape=self.shape, dtype=self.dtype)
            csr.sum_duplicates()
            self._n_buf = 0
        self._csr = csr

    def tocsr(self) -> sp.csr_matrix:
        """The whole matrix as a canonical CSR (duplicates combined, indices sorted)."""
        if self._n_buf or self._csr.shape != self.shape:
            self._merge()
        return self._csr

    def row_entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, cols)`` of the stored entries of ``rows``; ``positions`` index ``rows``.

        Cheap for a few rows: the compact part is sliced through ``indptr`` and the append
        buffer is scanned, so nothing is merged. Columns may repeat within a row.
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        csr = self._csr
        in_csr = rows < csr.shape[0]
        starts = csr.indptr[np.where(in_csr, rows, 0)]
        lengths = csr.indptr[np.where(in_csr, rows + 1, 0)] - starts
        lengths[~in_csr] = 0
        positions = np.repeat(np.arange(rows.size), lengths)
        cols = csr.indices[concat_ranges(starts, lengths)].astype(np.int64)
        if self._n_buf:
            buf_rows = self._buf_rows[: self._n_buf]
            if rows.size == 1:
                hit = np.flatnonzero(buf_rows == rows[0])
                buf_pos = np.zeros(hit.size, dtype=np.int64)
            else:
                order = np.argsort(rows, kind="stable")
                sorted_rows = rows[order]
                loc = np.searchsorted(sorted_rows, buf_rows)
                loc_ok = np.minimum(loc, rows.size - 1)
                found = sorted_rows[loc_ok] == buf_rows
                hit = np.flatnonzero(found)
                # every position holding that row gets the entry, not only the first
                counts = np.searchsorted(sorted_rows, buf_rows[hit], side="right") - loc[hit]
                buf_pos = order[concat_ranges(loc[hit], counts)]
                hit = np.repeat(hit, counts)
            positions = np.concatenate([positions, buf_pos])
            cols = np.concatenate([cols, self._buf_cols[hit]])
        return positions, cols

    def drop(self, rows: np.ndarray | None = None, cols: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove every entry in ``rows`` or in ``cols``; return the removed ``(rows, cols,
        values)`` (duplicates combined). The shape stays: the rows and columns become empty."""
        removed = drop_entries(self, rows, cols)
        # the spare buffer space still holds the merged entries' old copies: clear it
        self._buf_rows[:] = 0
        self._buf_cols[:] = 0
        self._buf_vals[:] = 0
        return removed

    def scale(self, factor: float) -> None:
        """Multiply every entry by ``factor``."""
        self._csr.data *= factor
        self._buf_vals[: self._n_buf] *= factor

    def row_counts(self) -> np.ndarray:
        """Number of stored entries per row (duplicates combined)."""
        return np.diff(self.tocsr().indptr)

    def __getstate__(self) -> dict:
        self.tocsr()
        state = self.__dict__.copy()
        for name in ("_buf_rows", "_buf_cols", "_buf_vals"):
            state[name] = state[name][:1].copy()
        return state
