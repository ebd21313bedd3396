"""What the adapters' context fold-ins share: checking a context, each row's positives, and
the seeded draws a sampled fold-in makes.

A fold-in scores a user with its recent events (a :class:`~recinc_plugins.context.Context`)
by fitting that user's vector to its history plus the context, the items fixed, without
learning anything. The sampled ones (BPR, LMF, LightFM) draw their negatives from a hash of
the seed, the row's user and its context (:func:`row_keys`, :func:`hashed`): a row's scores are
a function of the model, the user and its context alone, whatever other rows share the call and
however the caller cuts them into blocks, and nothing of the model (its random generator
included) changes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..context import Context
from ._history import History

__all__ = ["check_context", "hashed", "inverse_cdf", "positives", "row_keys", "row_sums",
           "running_grams", "uniform", "weighted_grams"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def check_context(users: np.ndarray, context: Context, n_users: int, n_items: int) -> None:
    """Refuse a context that does not fit ``users`` and the model's catalogue, naming why."""
    if not isinstance(context, Context):
        raise TypeError(f"context must be a recinc_plugins.context.Context, got "
                        f"{type(context).__name__}")
    if len(context) != users.size:
        raise ValueError(f"the context has {len(context)} rows for {users.size} users")
    if users.size and (users.min() < -1 or users.max() >= n_users):
        bad = users[(users < -1) | (users >= n_users)]
        raise ValueError(f"users must be dense indices below {n_users} or -1 (unknown), got "
                         f"{bad[:5].tolist()}")
    items = context.items
    if items.size and (items.min() < 0 or items.max() >= n_items):
        bad = items[(items < 0) | (items >= n_items)]
        raise ValueError(f"context items must be dense item indices below {n_items}, got "
                         f"{bad[:5].tolist()}")
    if not np.isfinite(context.values).all():
        raise ValueError("context values (ratings or weights) must be finite")


def positives(history: History, users: np.ndarray, context: Context, history_weight: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's positives, row by row: its context items (weight 1 each, repeats kept),
    then, with ``history_weight > 0``, its user's history (none for -1; each item once,
    weight ``history_weight``).

    Returns ``(row, item, weight, value)``: the row of each positive, its item, its weight in
    the fold-in's loss and its stored strength (the context's own, the history's summed
    value). Reading the history changes nothing in it."""
    rows = np.repeat(np.arange(users.size), context.lengths)
    items = context.items.astype(np.int64)
    weights = np.ones(items.size)
    values = context.values.astype(np.float64)
    if history_weight > 0 and (users >= 0).any():
        known = users >= 0
        hist = history.rows(np.where(known, users, 0))
        local = np.repeat(np.arange(users.size), np.diff(hist.indptr))
        keep = known[local]
        rows = np.concatenate([rows, local[keep]])
        items = np.concatenate([items, hist.indices[keep].astype(np.int64)])
        weights = np.concatenate([weights, np.full(int(keep.sum()), float(history_weight))])
        values = np.concatenate([values, hist.data[keep].astype(np.float64)])
        order = np.argsort(rows, kind="stable")
        rows, items, weights, values = rows[order], items[order], weights[order], values[order]
    return rows, items, weights, values


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scatters every bit."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def row_keys(seed: int | None, users: np.ndarray, context: Context) -> np.ndarray:
    """One uint64 per row, a hash of the seed, the row's user and its context (items, their
    order and values): equal rows get equal keys, whatever else is in the call."""
    with np.errstate(over="ignore"):
        position = np.arange(context.items.size) - np.repeat(context.ptr[:-1], context.lengths)
        entry = _mix(context.items.astype(np.uint64) * _GOLDEN
                     + position.astype(np.uint64)
                     + _mix(context.values.astype(np.float64).view(np.uint64)))
        sums = np.concatenate([[np.uint64(0)], np.cumsum(entry, dtype=np.uint64)])
        per_row = sums[context.ptr[1:]] - sums[context.ptr[:-1]]
        base = _mix(np.uint64(0 if seed is None else int(seed) & (2**64 - 1)) + _GOLDEN)
        return _mix(_mix(users.astype(np.int64).astype(np.uint64) + base) ^ per_row)


def hashed(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """uint64 draws: one per ``(key, counter)`` pair (broadcast)."""
    with np.errstate(over="ignore"):
        return _mix(keys.astype(np.uint64) ^ _mix(counters.astype(np.uint64) * _GOLDEN
                                                  + _GOLDEN))


def uniform(draws: np.ndarray) -> np.ndarray:
    """uint64 draws to floats in [0, 1)."""
    return (draws >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def weighted_grams(rows: np.ndarray, items: np.ndarray, coef: np.ndarray, vectors: np.ndarray,
                   n: int) -> np.ndarray:
    """``out[r] = sum of coef * y y^T`` over the entries ``(rows, items, coef)``, ``y =
    vectors[item]``, flattened: ``(n, d * d)`` float64. One sparse product with the outer
    products of the items involved (in chunks of items that bound the memory)."""
    d = vectors.shape[1]
    present, local = np.unique(items, return_inverse=True)
    weights = sp.csr_matrix((coef, (rows, local.reshape(-1))), shape=(n, present.size))
    chunk = max(1, 2**22 // max(d * d, 1))
    out = None
    for start in range(0, present.size, chunk):
        y = vectors[present[start:start + chunk]].astype(np.float64)
        outer = (y[:, :, None] * y[:, None, :]).reshape(y.shape[0], d * d)
        part = weights[:, start:start + chunk] @ outer
        out = part if out is None else out + part
    return np.zeros((n, d * d)) if out is None else np.ascontiguousarray(out)


def row_sums(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Sums of ``values``' rows grouped by ``rows`` (sorted): ``(n, values.shape[1])``."""
    out = np.zeros((n, values.shape[1]), dtype=values.dtype)
    if rows.size:
        present, first = np.unique(rows, return_index=True)
        out[present] = np.add.reduceat(values, first, axis=0)
    return out


def running_grams(owners: np.ndarray, rows: np.ndarray, items: np.ndarray, coef: np.ndarray,
                  factors: np.ndarray, base: np.ndarray, base_of: np.ndarray) -> np.ndarray:
    """Per row, ``base[base_of[row]]`` plus the ``weighted_grams`` of its entries ``(rows,
    items, coef)``, flattened: each row computed as the row before it, where that has the same
    owner (``owners``, whose rows share a base), plus the difference. Successive rows whose
    entries mostly repeat (one user's growing context, as the harness passes them) cost the
    entries that change, not all of them."""
    n, n_items = owners.size, factors.shape[0]
    entries = sp.csr_matrix((coef, (rows, items)), shape=(n, n_items))
    chained = np.zeros(n, dtype=bool)
    chained[1:] = owners[1:] == owners[:-1]
    # the previous row's entries moved down one row, where the two are chained
    previous = sp.csr_matrix((np.ones(int(chained.sum())), (np.flatnonzero(chained),
                                                             np.flatnonzero(chained) - 1)),
                             shape=(n, n)) @ entries
    change = (entries - previous).tocsr()
    change.eliminate_zeros()
    steps = weighted_grams(np.repeat(np.arange(n), np.diff(change.indptr)),
                           change.indices.astype(np.int64), change.data, factors, n)
    starts = np.flatnonzero(~chained)
    steps[starts] += base[base_of[starts]]
    # a running sum along each run of chained rows gives every row its whole sum, row by row
    # (a cumulative sum down the columns of the whole block reads memory far slower)
    for row in np.flatnonzero(chained).tolist():
        steps[row] += steps[row - 1]
    return steps


def inverse_cdf(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``np.searchsorted(cumulative, u * cumulative[-1], side="right")`` (the item a uniform
    ``u`` draws by weight, ``cumulative`` the running sum of the weights), through a table of
    buckets: a binary search per draw mispredicts its way to ~100 ns, this costs a few."""
    total = float(cumulative[-1])
    n_buckets = 4 * cumulative.size
    x = u * total
    bucket = np.minimum((u * n_buckets).astype(np.int64), n_buckets - 1)
    # the first index past each bucket's lower edge (sorted queries: one cheap pass)
    first = np.searchsorted(cumulative, np.arange(n_buckets) * (total / n_buckets),
                            side="right")
    found = np.minimum(first[bucket], cumulative.size - 1)
    todo = np.flatnonzero(cumulative[found] <= x)
    while todo.size:  # a bucket holding item edges: step past them
        found[todo] += 1
        found[todo] = np.minimum(found[todo], cumulative.size - 1)
        todo = todo[(cumulative[found[todo]] <= x[todo]) & (found[todo] < cumulative.size - 1)]
    return found
