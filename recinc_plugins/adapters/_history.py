"""The event history the implicit and LightFM adapters learn from, at a cost per step that does
not grow with the stream.

Adding a step's events to a CSR matrix copies every stored entry (O(history) per step: at one
event per step that is the whole cost of a model). :class:`History` keeps a compact CSR plus
the entries added since its last merge, found by row through a dict, and merges them once they
are an eighth of the matrix: adding is amortised O(1) per event, reading a few rows costs their
length, and sampling stored entries costs the sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..growth import grown, resized
from ..sparse import concat_ranges, drop_entries

__all__ = ["History"]

#: a batch of more events than this is merged at once (vectorised), not indexed row by row
_DIRECT = 64
#: pending entries kept before a merge, at least
_MIN_PENDING = 4096


class History:
    """Summed event strengths, ``n_rows x n_cols`` (float32), for a stream read by row.

    Parameters
    ----------
    n_rows, n_cols
        Initial shape; :meth:`resize` and :meth:`add` grow it.

    Examples
    --------
    >>> import numpy as np
    >>> from recinc_plugins.adapters._history import History
    >>> history = History()
    >>> history.add(np.array([0, 1, 0]), np.array([2, 0, 2]), np.array([1.0, 1.0, 2.0]))
    >>> history.rows(np.array([0])).toarray()
    array([[0., 0., 3.]], dtype=float32)
    >>> history.tocsr().nnz
    2
    """

    _csr_attr = "csr"

    def __init__(self, n_rows: int = 0, n_cols: int = 0) -> None:
        self.csr = sp.csr_matrix((int(n_rows), int(n_cols)), dtype=np.float32)
        self.n_rows, self.n_cols = int(n_rows), int(n_cols)
        self.pending_rows = np.empty(0, dtype=np.int64)
        self.pending_cols = np.empty(0, dtype=np.int64)
        self.pending_values = np.empty(0, dtype=np.float32)
        self.n_pending = 0
        self.by_row: dict[int, list[int]] = {}  # row -> its positions among the pending

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)

    @property
    def n_stored(self) -> int:
        """Entries stored: the CSR's plus the pending ones (a repeated pair may count twice)."""
        return int(self.csr.nnz) + self.n_pending

    def resize(self, n_rows: int, n_cols: int) -> None:
        """Grow to at least ``n_rows x n_cols`` (new rows and columns are empty)."""
        self.n_rows = max(self.n_rows, int(n_rows))
        self.n_cols = max(self.n_cols, int(n_cols))

    def add(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        """Add strengths; a repeated ``(row, col)`` adds to the stored value."""
        rows = np.asarray(rows, dtype=np.int64)
        n = rows.size
        if n == 0:
            return
        cols = np.asarray(cols, dtype=np.int64)
        values = np.asarray(values, dtype=np.float32)
        self.resize(int(rows.max()) + 1, int(cols.max()) + 1)
        start, end = self.n_pending, self.n_pending + n
        if end > self.pending_rows.size:
            capacity = max(end, 2 * self.pending_rows.size, 64)
            self.pending_rows = grown(self.pending_rows[:start], capacity)
            self.pending_cols = grown(self.pending_cols[:start], capacity)
            self.pending_values = grown(self.pending_values[:start], capacity)
        self.pending_rows[start:end] = rows
        self.pending_cols[start:end] = cols
        self.pending_values[start:end] = values
        self.n_pending = end
        if n > _DIRECT or end > max(_MIN_PENDING, self.csr.nnz // 8):
            self.merge()
            return
        by_row = self.by_row
        for position, row in enumerate(rows.tolist(), start):
            found = by_row.get(row)
            if found is None:
                by_row[row] = [position]
            else:
                found.append(position)

    def merge(self) -> None:
        """Fold the pending entries into the CSR (one vectorised pass over the history)."""
        csr = resized(self.csr, self.shape)
        n = self.n_pending
        if n:
            delta = sp.csr_matrix(
                (self.pending_values[:n], (self.pending_rows[:n], self.pending_cols[:n])),
                shape=self.shape, dtype=np.float32)
            csr = csr + delta
            csr.sort_indices()
            self.n_pending = 0
            self.by_row = {}
        self.csr = csr

    def tocsr(self) -> sp.csr_matrix:
        """Everything as a canonical float32 CSR (duplicates summed, indices sorted)."""
        if self.n_pending or self.csr.shape != self.shape:
            self.merge()
        return self.csr

    def drop(self, rows: np.ndarray | None = None, cols: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove every entry in ``rows`` or in ``cols`` (pending ones included); return the
        removed ``(rows, cols, values)``, summed per pair. The shape stays.

        The pending entries are merged first, and their buffers, whose spare capacity still
        held copies of merged entries, are released: no copy of a removed entry stays in
        memory (``forget``)."""
        removed = drop_entries(self, rows, cols)
        self.pending_rows = np.empty(0, dtype=np.int64)
        self.pending_cols = np.empty(0, dtype=np.int64)
        self.pending_values = np.empty(0, dtype=np.float32)
        return removed

    def rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """The full rows ``rows`` (any order, repeats allowed), ``len(rows) x n_cols``,
        canonical (duplicates summed, indices sorted)."""
        rows = np.asarray(rows, dtype=np.int64)
        csr = self.csr
        if not self._any_pending(rows):
            # every entry is in the CSR: its row slices, in order, are the answer when they are
            # canonical (they are, unless a file said otherwise: checked, it costs little)
            # -- no COO round trip: half the cost at a 1,000-event step's touched rows
            span, lengths = self._stored(rows)
            indptr = np.zeros(rows.size + 1, dtype=np.int64)
            np.cumsum(lengths, out=indptr[1:])
            indices = csr.indices[span]
            step = np.diff(indices)  # must rise within each row; across rows it may fall
            starts = indptr[1:-1]
            step[starts[(starts > 0) & (starts < span.size)] - 1] = 1
            if not indices.size or (step.min(initial=1) > 0 and indices.min() >= 0
                                    and indices.max() < self.n_cols):
                if span.size <= np.iinfo(np.int32).max:
                    indptr = indptr.astype(indices.dtype)
                out = sp.csr_matrix((csr.data[span].astype(np.float32, copy=False), indices,
                                     indptr), shape=(rows.size, self.n_cols))
                out.has_sorted_indices = out.has_canonical_format = True
                return out
        local, cols, values = self._entries(rows)
        out = sp.csr_matrix((values, (local, cols)), shape=(rows.size, self.n_cols),
                            dtype=np.float32)
        out.sum_duplicates()
        return out

    def _any_pending(self, rows: np.ndarray) -> bool:
        """Whether any of ``rows`` has entries not merged into the CSR yet."""
        if not self.n_pending:
            return False
        by_row = self.by_row
        return not by_row or any(r in by_row for r in rows.tolist())

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
        """``(rows, cols, values)`` of ``n`` stored entries drawn uniformly, with repeats."""
        total = self.n_stored
        if n <= 0 or total == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0, dtype=np.float32)
        picks = rng.integers(total, size=n)
        csr = self.csr
        in_csr = picks < csr.nnz
        rows = np.empty(n, dtype=np.int64)
        cols = np.empty(n, dtype=np.int64)
        values = np.empty(n, dtype=np.float32)
        p = picks[in_csr]
        rows[in_csr] = np.searchsorted(csr.indptr, p, "right") - 1
        cols[in_csr] = csr.indices[p]
        values[in_csr] = csr.data[p]
        q = picks[~in_csr] - csr.nnz
        rows[~in_csr] = self.pending_rows[q]
        cols[~in_csr] = self.pending_cols[q]
        values[~in_csr] = self.pending_values[q]
        return rows, cols, values

    def _stored(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(span, lengths)``: the positions in the CSR of ``rows``' merged entries, row after
        row, and each row's count of them (0 for a row past the CSR)."""
        csr = self.csr
        inside = rows < csr.shape[0]
        starts = csr.indptr[np.where(inside, rows, 0)]
        lengths = np.where(inside, csr.indptr[np.where(inside, rows + 1, 0)] - starts, 0)
        return concat_ranges(starts, lengths), lengths

    def _entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(position in rows, col, value)`` of every stored entry of ``rows``."""
        csr = self.csr
        span, lengths = self._stored(rows)
        local = np.repeat(np.arange(rows.size), lengths)
        cols = csr.indices[span].astype(np.int64)
        values = csr.data[span]
        if self.by_row:
            found = [(j, self.by_row[r]) for j, r in enumerate(rows.tolist()) if r in self.by_row]
            if found:
                positions = np.concatenate([p for _, p in found])
                local = np.concatenate([local, np.repeat([j for j, _ in found],
                                                         [len(p) for _, p in found])])
                cols = np.concatenate([cols, self.pending_cols[positions]])
                values = np.concatenate([values, self.pending_values[positions]])
        return local, cols, values

    def __getstate__(self) -> dict[str, Any]:
        # the pending entries as they are (a copy or a file samples and merges exactly as the
        # original would), without the spare capacity and the row index, rebuilt on loading
        state = self.__dict__.copy()
        n = self.n_pending
        for name in ("pending_rows", "pending_cols", "pending_values"):
            state[name] = state[name][:n].copy()
        del state["by_row"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.by_row = {}
        for position, row in enumerate(self.pending_rows[: self.n_pending].tolist()):
            self.by_row.setdefault(row, []).append(position)

    @classmethod
    def from_csr(cls, csr: sp.csr_matrix) -> History:
        """A history holding ``csr`` (say, from a file written before this class existed)."""
        history = cls(*csr.shape)
        history.csr = sp.csr_matrix(csr, dtype=np.float32)
        history.csr.sum_duplicates()
        return history
