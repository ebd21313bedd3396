"""Arrays and sparse matrices that grow with the id maps: the helpers behind every ``_grow``.

Indices only ever grow at the end (see :class:`~recinc_plugins.ids.IdIndex`), so a model's
per-user and per-item state grows by appending rows. These two helpers are the only places
that do it: a model's ``_grow`` calls them for each array it owns.

Examples
--------
>>> import numpy as np
>>> from recinc_plugins.growth import grown
>>> grown(np.array([3.0, 1.0]), 4)
array([3., 1., 0., 0.])
>>> grown(np.array([7]), 3, fill=-1)
array([ 7, -1, -1])
>>> grown(np.ones((1, 2)), 2, new_rows=lambda n, d: np.full((n, d), 5.0))
array([[1., 1.],
       [5., 5.]])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

__all__ = ["grown", "grown_view", "resized"]


def grown(
    array: np.ndarray,
    n: int,
    fill: float = 0,
    *,
    new_rows: Callable[[int, int], np.ndarray] | None = None,
    spare: bool = False,
) -> np.ndarray:
    """``array`` with rows appended up to ``n`` rows; ``array`` itself when it has as many.

    New rows are ``fill``, or ``new_rows(count, n_columns)`` for a 2-D array whose new rows
    are drawn (say, random initial factors). With ``spare=True`` the capacity at least
    doubles, so growing one row at a time costs amortised O(1); the caller then keeps its own
    count of the rows in use. The result is C-contiguous and keeps ``array``'s dtype.
    """
    old = array.shape[0]
    if n <= old:
        return array
    rows = max(n, 2 * old) if spare else n
    out = np.empty((rows, *array.shape[1:]), dtype=array.dtype)
    out[:old] = array
    if new_rows is None:
        out[old:] = fill
    else:
        out[old:] = new_rows(rows - old, array.shape[1])
    return out


def grown_view(array: np.ndarray, n: int, fill: float = 0) -> np.ndarray:
    """``array`` grown to ``n`` rows as a view of the first ``n`` rows of a buffer with spare
    capacity, so growing one row at a time costs amortised O(1) while the caller keeps using
    an array of exactly ``n`` rows (writes go to the buffer). ``array`` is such a view (or any
    array: it is then copied once into a new buffer); new rows are ``fill``."""
    old = array.shape[0]
    if n <= old:
        return array
    base = array.base
    if (isinstance(base, np.ndarray) and base.ndim == array.ndim and base.shape[1:] ==
            array.shape[1:] and base.dtype == array.dtype and base.flags.c_contiguous and
            base.shape[0] >= n and array.ctypes.data == base.ctypes.data):
        base[old:n] = fill
        return base[:n]
    return grown(array, n, fill, spare=True)[:n]


def resized(csr: sp.csr_matrix, shape: tuple[int, int]) -> sp.csr_matrix:
    """``csr`` with empty rows and columns appended up to ``shape`` (the entries are not
    copied); ``csr`` itself when it has that shape already."""
    if csr.shape == tuple(shape):
        return csr
    extra = np.full(shape[0] - csr.shape[0], csr.indptr[-1], dtype=csr.indptr.dtype)
    return sp.csr_matrix((csr.data, csr.indices, np.concatenate([csr.indptr, extra])),
                         shape=shape)
