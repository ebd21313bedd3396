"""Item-to-item nearest neighbours from sequences: what users pick soon after what they picked.

:class:`ItemKNN` counts, in each user's events in the order they are learned, how often an item
``i`` came within ``window`` events after an item ``j`` (closer pairs count more, and the
reverse order counts too, less), and scores a user's candidates by those counts from its last
few items, the latest weighing most. Its only learned state is sparse (the pair counts and the
last items of each user), and a step's update costs in proportion to its events times the
window, never to the history. Context (a user's events not learned yet) is used at once: it is
appended to the user's last items, so a user the model has never learned is scored from its
context alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .base import Batch, Capabilities, IncrementalRecommender, Newcomer
from .context import Context
from .eventlog import EventLog
from .forget import Removed
from .growth import grown, resized
from .params import check_int, check_number
from .sparse import concat_ranges

__all__ = ["ItemKNN"]

#: queries of up to this many (row, item) entries read the rows directly; larger ones go
#: through scipy's sparse product
_GATHER_MAX = 64
#: larger queries read their rows once each into a dense array of at most this many bytes
#: (then one sparse x dense product); beyond it, a sparse x sparse product per level
_DENSE_BYTES = 64 * 2**20
#: ``forget`` recounts the pairs of at most this many events at a time (its memory: about
#: 50 bytes per event and window position)
_FORGET_CHUNK = 20_000
#: after ``forget`` a count within this fraction of what was taken out (and put back) of it is
#: a rounding residue of zero and is removed
_RESIDUE = 1e-9


class _PairCounts:
    """Square sparse counts that grow by appended entries, log-structured.

    New entries wait in a small buffer; a full buffer becomes a CSR level, and a level is added
    into the one before it once it holds at least ``1 / _RATIO`` as many entries. Levels thus
    shrink geometrically from the first (O(log) of them) and each entry is copied O(log)
    times, whatever the step size: a step costs amortised O(its entries x log), never
    O(everything stored). Reads never merge; they read each level and scan the buffer.
    """

    _BUFFER = 4096
    _RATIO = 8

    def __init__(self) -> None:
        self.size = 0
        self.levels: list[sp.csr_matrix] = []
        self._empty_buffer()

    def _empty_buffer(self) -> None:
        self.rows = np.empty(self._BUFFER, dtype=np.int64)
        self.cols = np.empty(self._BUFFER, dtype=np.int64)
        self.vals = np.empty(self._BUFFER, dtype=np.float64)
        self.n_buffered = 0

    @property
    def nnz(self) -> int:
        """Stored entries (a pair stored in two levels, or buffered, counts more than once)."""
        return sum(level.nnz for level in self.levels) + self.n_buffered

    def resize(self, size: int) -> None:
        self.size = max(self.size, int(size))

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        n, end = self.n_buffered, self.n_buffered + rows.size
        if end <= self._BUFFER:
            self.rows[n:end], self.cols[n:end], self.vals[n:end] = rows, cols, vals
            self.n_buffered = end
            return
        level = self._level(np.concatenate([self.rows[:n], rows]),
                            np.concatenate([self.cols[:n], cols]),
                            np.concatenate([self.vals[:n], vals]))
        self.n_buffered = 0
        self.levels.append(level)
        while len(self.levels) > 1 and \
                self.levels[-1].nnz * self._RATIO >= self.levels[-2].nnz:
            newer = self.levels.pop()
            self.levels[-1] = self._square(self.levels[-1]) + self._square(newer)

    def _level(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> sp.csr_matrix:
        level = sp.csr_matrix((vals, (rows, cols)), shape=(self.size, self.size))
        level.sum_duplicates()
        return level

    def _square(self, csr: sp.csr_matrix) -> sp.csr_matrix:
        return resized(csr, (self.size, self.size))

    def tocsr(self) -> sp.csr_matrix:
        """Every count in one ``size x size`` CSR (this becomes the only level)."""
        n = self.n_buffered
        total = self._level(self.rows[:n], self.cols[:n], self.vals[:n])
        for level in self.levels:
            total = total + self._square(level)
        self.levels = [total]
        self.n_buffered = 0
        return total

    def product(self, n_rows: int, n_cols: int, rows: np.ndarray, items: np.ndarray,
                weights: np.ndarray) -> np.ndarray:
        """``Q @ counts`` as a dense ``(n_rows, n_cols)`` float64 array, where ``Q`` holds
        ``weights`` at ``(rows, items)`` (repeats add up); items without pairs add nothing."""
        inside = items < self.size
        if not inside.all():
            rows, items, weights = rows[inside], items[inside], weights[inside]
        width = max(n_cols, self.size)
        if items.size <= _GATHER_MAX:  # a few rows: read them, no sparse product
            out = np.zeros((n_rows, width))
            if items.size:
                self._gather(out.ravel(), rows * width, items, weights)
            return out[:, :n_cols]
        uniq, inverse = np.unique(items, return_inverse=True)
        query = sp.csr_matrix((weights, (rows, inverse.reshape(-1))),
                              shape=(n_rows, uniq.size))
        if uniq.size * self.size * 8 <= _DENSE_BYTES:
            # the rows the query reads, dense, once each; then a sparse x dense product
            out = query @ self.dense_rows(uniq)
        else:
            out = np.zeros((n_rows, self.size))
            for level in self.levels:
                out += (query @ self._square(level)[uniq]).toarray()
            self._gather(out.ravel(), rows * self.size, items, weights, levels=False)
        if n_cols > self.size:
            out = np.pad(out, ((0, 0), (0, n_cols - self.size)))
        return out

    def dense_rows(self, items: np.ndarray) -> np.ndarray:
        """The counts of ``items`` (distinct, all below ``size``) as a dense array."""
        out = None
        for level in self.levels:
            part = self._square(level)[items].toarray()
            out = part if out is None else np.add(out, part, out=out)
        if out is None:
            out = np.zeros((items.size, self.size))
        self._gather(out.ravel(), np.arange(items.size) * self.size, items,
                     np.ones(items.size), levels=False)
        return out

    def _gather(self, out: np.ndarray, offsets: np.ndarray, items: np.ndarray,
                weights: np.ndarray, *, levels: bool = True) -> None:
        """Add ``weights[e] * counts[items[e], c]`` at ``out[offsets[e] + c]`` (``out``: flat),
        for the rows read one by one from each level (unless ``levels`` is False) and for
        the buffered entries of those rows."""
        flat, values = [], []
        for level in self.levels if levels else ():
            ptr = level.indptr
            ok = items < level.shape[0]
            starts = ptr[items[ok]]
            lengths = ptr[items[ok] + 1] - starts
            idx = concat_ranges(starts, lengths)
            flat.append(np.repeat(offsets[ok], lengths) + level.indices[idx])
            values.append(level.data[idx] * np.repeat(weights[ok], lengths))
        n = self.n_buffered
        if n:
            slot = np.full(self.size, -1, dtype=np.int64)
            slot[items] = np.arange(items.size)
            if np.array_equal(slot[items], np.arange(items.size)):  # no item twice
                hit = np.flatnonzero(slot[self.rows[:n]] >= 0)
                which = slot[self.rows[hit]]
            else:  # each buffered entry of a wanted row, once per query entry of that row
                order = np.argsort(items, kind="stable")
                sorted_items = items[order]
                lo = np.searchsorted(sorted_items, self.rows[:n])
                many = np.searchsorted(sorted_items, self.rows[:n], side="right") - lo
                which = order[concat_ranges(lo, many)]
                hit = np.repeat(np.arange(n), many)
            flat.append(offsets[which] + self.cols[hit])
            values.append(self.vals[hit] * weights[which])
        if not flat:
            return
        flat, values = np.concatenate(flat), np.concatenate(values)
        if 16 * flat.size < out.size:  # a few entries: no pass over the whole output
            np.add.at(out, flat, values)
        else:
            out += np.bincount(flat, values, minlength=out.size)

    def __getstate__(self) -> dict[str, Any]:
        self.tocsr()  # a saved model holds its counts once, compactly
        state = self.__dict__.copy()
        for name in ("rows", "cols", "vals"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._empty_buffer()


class ItemKNN(IncrementalRecommender):
    """Sequence-aware item-to-item neighbours: counts of "``j``, then ``i`` soon after".

    Learning walks each user's events in the order they arrive. An event of item ``i`` that
    comes ``d`` events after an event of item ``j`` (``1 <= d <= window``) adds
    ``distance_decay ** (d - 1)`` to the count ``C[j, i]`` and ``reverse`` times that to
    ``C[i, j]``. A user is scored from its latest ``history`` items ``j_0`` (the latest),
    ``j_1``, ... (its context first, when scored with one, then what was learned): item ``i``
    scores

        sum_r recency ** r * C[j_r, i] / (n[j_r] ** alpha * n[i] ** beta)
        + popularity * n[i] / N

    where ``n`` counts each item's events and ``N`` all events. ``alpha`` evens out what the
    recent items contribute (0: a popular recent item speaks loudest; 1: each speaks as one);
    ``beta`` discounts popular candidates (0.5 with ``alpha=0.5``: cosine similarity). The
    popularity term ranks what the counts leave tied, and answers users whose recent items
    have no neighbours.

    The counts are a sparse matrix that grows by appended pairs, so ``partial_fit`` costs
    amortised O(events x window); scoring a user reads the rows of its ``history`` items.
    Event strengths (ratings, weights) are not used: every event counts once. The defaults
    were chosen on the first half of MovieLens 100K (``docs/knn.md``).

    Parameters
    ----------
    window
        How many of a user's later events each event is paired with.
    distance_decay
        Weight of a pair ``d`` events apart, relative to adjacent events: ``distance_decay **
        (d - 1)``.
    reverse
        Weight of the pair counted backwards (``i`` then ``j``) relative to forwards; 0 for a
        strictly sequential model, 1 for a symmetric one.
    history
        How many of the user's latest items (context included) it is scored from.
    recency
        Weight of the ``r``-th latest of those items: ``recency ** r`` (the latest: 1).
    alpha, beta
        Normalisation exponents of the counts: the recent item's (``alpha``) and the
        candidate's (``beta``) event counts.
    popularity
        Weight of the candidates' share of all events, added to every score.
    cold_start
        How unknown users without context are answered (flagged ``cold``): ``"newcomer"``
        (what new users picked first lately), ``"popularity"`` or ``Newcomer(...)``; see
        ``docs/interface.md``. With context they are scored from it.

    Attributes
    ----------
    pairs_
        The pair counts ``C`` (``pairs_.tocsr()`` gives them as an items x items CSR).
    recent_
        ``(n_users, max(window, history))`` int array: each user's latest learned items,
        latest last, -1 before a user's first.
    log_ : EventLog
        Every learned event in order (8 bytes an event): what ``forget`` recounts the pairs
        from, exactly (``docs/knn.md``, "Forgetting").

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.knn import ItemKNN
    >>> events = pd.DataFrame({"user": ["a", "a", "a", "b", "b", "c"],
    ...                        "item": ["x", "y", "z", "x", "y", "x"]})
    >>> model = ItemKNN().fit(events)
    >>> model.recommend(["b", "c"], k=1).items
    array([['z'],
           ['y']], dtype=object)
    >>> model.recent_[:3, -3:]  # the users' latest items (-1: none), as item indices
    array([[ 0,  1,  2],
           [-1,  0,  1],
           [-1, -1,  0]])

    ``C`` as a dense array (x, y, z): y came right after x twice, z right after y once and
    two after x once (``distance_decay``: 0.95); with ``reverse=1`` the counts are symmetric:

    >>> model.pairs_.tocsr().toarray()
    array([[0.  , 2.  , 0.95],
           [2.  , 0.  , 1.  ],
           [0.95, 1.  , 0.  ]])

    Context reaches the model through ``score_block`` (dense indices; -1: a user it has never
    learned, scored from the context alone): after "y", x (twice beside it) scores above z.

    >>> from recinc_plugins.context import Context
    >>> _, (y,) = model.add_ids(items=["y"])
    >>> model.score_block([-1], Context.from_lists([[y]])).round(3)
    array([[0.976, 0.003, 0.843]])

    References
    ----------
    Ludewig and Jannach, "Evaluation of Session-based Recommendation Algorithms" (User Modeling
    and User-Adapted Interaction, 2018): nearest-neighbour methods over item sequences hold
    their own against neural session models.
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="per-event", context=True)
    _renamed_params: ClassVar[dict[str, str]] = {}
    persisted_types: ClassVar[tuple[type, ...]] = (EventLog,)

    # -- parameters and validation -----------------------------------------------------------

    def __init__(
        self,
        window: int = 50,
        distance_decay: float = 0.95,
        reverse: float = 1.0,
        history: int = 20,
        recency: float = 0.8,
        alpha: float = 0.25,
        beta: float = 0.5,
        popularity: float = 0.01,
        cold_start: str | Newcomer = "newcomer",
    ) -> None:
        self.window = window
        self.distance_decay = distance_decay
        self.reverse = reverse
        self.history = history
        self.recency = recency
        self.alpha = alpha
        self.beta = beta
        self.popularity = popularity
        self.cold_start = cold_start

    def _check_params(self) -> None:
        check_int("window", self.window)
        check_int("history", self.history)
        for name in ("distance_decay", "recency"):
            value = getattr(self, name)
            check_number(name, value)
            if value > 1:
                raise ValueError(f"{name} must be a finite number in [0, 1], got {value!r}")
        check_number("reverse", self.reverse)
        check_number("alpha", self.alpha)
        check_number("beta", self.beta)
        check_number("popularity", self.popularity)

    # -- growth ------------------------------------------------------------------------------

    def _init_model(self) -> None:
        self.pairs_ = _PairCounts()
        self.recent_ = np.full((0, max(self.window, self.history)), -1, dtype=np.int64)
        self.log_: EventLog | None = EventLog()
        # per item: max(events, 1) ** -beta, kept up to date for the items a batch touches
        self.discount_ = np.ones(0)
        # the weight of a pair d events apart (index d - 1), and of the r-th latest item
        self._pair_weight = float(self.distance_decay) ** np.arange(self.window, dtype=float)
        self._item_weight = float(self.recency) ** np.arange(self.history, dtype=float)

    def _grow(self, n_users: int, n_items: int) -> None:
        self.recent_ = grown(self.recent_, n_users, fill=-1, spare=True)
        self.pairs_.resize(n_items)
        self.discount_ = grown(self.discount_, n_items, fill=1.0)

    # -- learning ----------------------------------------------------------------------------

    def _partial_fit(self, batch: Batch) -> None:
        if self.log_ is not None:
            self.log_.add(batch.users, batch.items)
        if len(batch) == 1:
            self._learn_one(int(batch.users[0]), int(batch.items[0]))
        elif len(batch):
            self._learn_many(batch.users, batch.items)
        touched = np.unique(batch.items) if len(batch) > 1 else batch.items
        self.discount_[touched] = np.maximum(self.item_counts_[touched], 1.0) ** -float(
            self.beta)

    def _learn_one(self, user: int, item: int) -> None:
        """``_learn_many`` for one event, in fewer numpy calls (one-event steps)."""
        row = self.recent_[user]
        earlier = row[: -self.window - 1: -1]  # distance 1, 2, ..., window
        ok = (earlier >= 0) & (earlier != item)
        if ok.any():
            earlier = earlier[ok]
            weight = self._pair_weight[ok]
            target = np.full(earlier.size, item)
            if self.reverse > 0:
                self.pairs_.add(np.concatenate([earlier, target]),
                                np.concatenate([target, earlier]),
                                np.concatenate([weight, float(self.reverse) * weight]))
            else:
                self.pairs_.add(earlier, target, weight)
        row[:-1] = row[1:]
        row[-1] = item

    def _learn_many(self, users: np.ndarray, items: np.ndarray) -> None:
        order = np.argsort(users, kind="stable")  # each user's events, in stream order
        users, items = users[order], items[order]
        first = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        uniq = users[first]
        counts = np.diff(np.r_[first, users.size])
        rows, cols, weight, last = self._sequence_pairs(self.recent_[uniq], counts, items)
        self.pairs_.add(rows, cols, weight)
        self.recent_[uniq] = last

    def _sequence_pairs(self, before: np.ndarray, lengths: np.ndarray, items: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The pairs (``rows``, ``cols``, ``weights``) that the events ``items`` make with the
        events up to ``window`` before each: ``items`` holds sequences of ``lengths`` laid end
        to end, and ``before`` (a row per sequence, at least ``window`` wide, latest last, -1
        for none) the items each sequence follows. Also each sequence's last
        ``before.shape[1]`` items once its events are appended."""
        n_seq, width = before.shape
        # per sequence: its earlier items, then its new ones, laid end to end
        spans = width + lengths
        offsets = np.cumsum(spans) - spans
        sequence = np.empty(int(spans.sum()), dtype=np.int64)
        sequence[concat_ranges(offsets, np.full(n_seq, width))] = before.ravel()
        new = concat_ranges(offsets + width, lengths)
        sequence[new] = items
        # each new event paired with the `window` events before it (its own sequence's: the
        # earlier part is at least `window` long, so the positions never leave the run)
        later = np.tile(new, self.window)
        distance = np.repeat(np.arange(1, self.window + 1), new.size)
        earlier = sequence[later - distance]
        target = sequence[later]
        ok = (earlier >= 0) & (earlier != target)
        earlier, target = earlier[ok], target[ok]
        weight = self._pair_weight[distance[ok] - 1]
        if self.reverse > 0:
            rows = np.concatenate([earlier, target])
            cols = np.concatenate([target, earlier])
            weight = np.concatenate([weight, float(self.reverse) * weight])
        else:
            rows, cols = earlier, target
        keep = weight > 0
        ends = offsets + spans
        last = sequence[concat_ranges(ends - width, np.full(n_seq, width))].reshape(n_seq, width)
        return rows[keep], cols[keep], weight[keep], last

    # -- forgetting --------------------------------------------------------------------------

    @property
    def forgets_exactly(self) -> bool:  # type: ignore[override]
        # with the event log: the counts, windows and discounts of a model trained without
        # the events (to float rounding). A file from before the log was kept is retrained
        # from the kept events, whose order within a user is lost: approximate
        return getattr(self, "log_", None) is not None

    def _forget(self, removed: Removed) -> None:
        """Recount the pairs of every user whose sequence loses events (to the end of the
        part that changes), take the old counts out and put the new ones in; the windows
        (``recent_``) and the discounts of the touched items follow, the log drops the
        events. Equal to a model that never learned them, to float rounding."""
        if getattr(self, "log_", None) is None:  # a file from before the log was kept
            # retrained from the kept events in index order: not the order learned, so not
            # exact, and the model stays without a log (each forget retrains) until a fit
            self._retrain_kept()
            self.log_ = None
            return
        n_users, n_items = len(self.user_index_), len(self.item_index_)
        gone_user = np.zeros(n_users, dtype=bool)
        gone_user[removed.users] = True
        gone_item = np.zeros(n_items, dtype=bool)
        gone_item[removed.items] = True
        involved = np.union1d(removed.users, removed.pair_users)
        owners, items = self.log_.sequences(involved, n_users)
        if owners.size:
            gone = gone_user[owners] | gone_item[items]
            self._recount(owners, items, gone, gone_item)
            kept_owners, kept_items = owners[~gone], items[~gone]
            self.recent_[involved] = -1
            if kept_owners.size:
                self._set_recent(kept_owners, kept_items)
        self.recent_[removed.users] = -1
        self.log_.drop(removed.users, removed.items, n_users, n_items)
        touched = np.union1d(removed.pair_items, removed.items)
        self.discount_[touched] = np.maximum(self.item_counts_[touched], 1.0) ** -float(
            self.beta)

    def _recount(self, owners: np.ndarray, items: np.ndarray, gone: np.ndarray,
                 gone_item: np.ndarray) -> None:
        """Take out of ``pairs_`` the pairs of each user's sequence (``items`` grouped by
        ``owners``) from its first ``gone`` event to ``window`` events after its last (the
        pairs that change: before it nothing does, and beyond it the windows are as they
        were), and put in those of the same stretch without the ``gone`` events."""
        n = owners.size
        first = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        start = first
        length = np.diff(np.r_[first, n])
        position = np.arange(n) - np.repeat(start, length)
        # each user's first and last gone event (-1: none, the user is untouched)
        hit = np.flatnonzero(gone)  # grouped by user, in order
        if hit.size == 0:
            return
        hit_user = np.repeat(np.arange(first.size), length)[hit]
        change = np.flatnonzero(np.r_[True, hit_user[1:] != hit_user[:-1]])
        users = hit_user[change]
        lo = np.full(first.size, -1, dtype=np.int64)
        hi = np.full(first.size, -1, dtype=np.int64)
        lo[users] = position[hit[change]]
        hi[users] = position[hit[np.r_[change[1:], hit.size] - 1]]
        start, length, lo, hi = start[users], length[users], lo[users], hi[users]
        end = np.minimum(length, hi + self.window + 1)
        # the stretch each user's pairs change in, and the `window` items before it
        before_pos = lo[:, None] - self.window + np.arange(self.window)[None, :]
        before = np.where(before_pos >= 0, items[start[:, None] + np.maximum(before_pos, 0)],
                          -1)
        size = self.pairs_.size
        # the change of each count (real part) and the sum of the magnitudes of what was taken
        # out and put in (imaginary part), on one pattern
        delta = sp.csr_matrix((size, size), dtype=np.complex128)
        bounds = np.r_[0, np.cumsum(end - lo)]
        chunk_start = 0
        while chunk_start < users.size:
            # users whose stretches hold at most _FORGET_CHUNK events (at least one user)
            stop = int(np.searchsorted(bounds, bounds[chunk_start] + _FORGET_CHUNK,
                                       side="right")) - 1
            stop = min(max(stop, chunk_start + 1), users.size)
            part = slice(chunk_start, stop)
            lengths = end[part] - lo[part]
            span = concat_ranges(start[part] + lo[part], lengths)
            kept = ~gone[span]
            n_kept = np.add.reduceat(kept.astype(np.int64), np.cumsum(lengths) - lengths)
            old = self._sequence_pairs(before[part], lengths, items[span])
            new = self._sequence_pairs(before[part], n_kept, items[span][kept])
            signed = np.concatenate([-old[2], new[2]])
            delta = delta + sp.csr_matrix(
                (signed + 1j * np.abs(signed),
                 (np.concatenate([old[0], new[0]]), np.concatenate([old[1], new[1]]))),
                shape=(size, size))
            chunk_start = stop
        delta.sum_duplicates()
        counts = self.pairs_.tocsr() + delta.real
        counts.sort_indices()
        # a count the events alone made is now a rounding residue: zero, gone
        entry_rows = np.repeat(np.arange(size), np.diff(counts.indptr))
        stored = entry_rows * size + counts.indices
        keys = np.repeat(np.arange(size), np.diff(delta.indptr)) * size + delta.indices
        if stored.size:
            at = np.minimum(np.searchsorted(stored, keys), stored.size - 1)
            residue = (stored[at] == keys) & (np.abs(counts.data[at])
                                              <= _RESIDUE * delta.data.imag)
            counts.data[at[residue]] = 0.0
            counts.data[gone_item[entry_rows] | gone_item[counts.indices]] = 0.0
            counts.eliminate_zeros()
        self.pairs_.levels = [counts]

    def _set_recent(self, owners: np.ndarray, items: np.ndarray) -> None:
        """``recent_`` of the users ``owners`` from their whole sequences (``items``, grouped
        by user, in order)."""
        width = self.recent_.shape[1]
        first = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        length = np.diff(np.r_[first, owners.size])
        take = np.minimum(length, width)
        rows = np.repeat(owners[first], take)
        cols = width - np.repeat(take, take) + (np.arange(take.sum()) - np.repeat(
            np.cumsum(take) - take, take))
        self.recent_[rows, cols] = items[concat_ranges(first + length - take, take)]

    def kept_events(self) -> pd.DataFrame:
        """The events the model keeps, in the order it learned them (its windows follow each
        user's order), as a frame ``fit`` accepts: refitting on it gives this model again.
        Strengths as :meth:`Forgetting.kept_events` gives them (each pair's mean)."""
        if getattr(self, "log_", None) is None:
            return super().kept_events()
        return self.log_.frame(self)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        if "pairs_" in state and "log_" not in state:  # a file from before the log was kept
            self.log_ = None

    # -- scoring -----------------------------------------------------------------------------

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        recent = self._recent(users)
        rows = np.broadcast_to(np.arange(users.size)[:, None], recent.shape)
        ages = np.broadcast_to(np.arange(recent.shape[1] - 1, -1, -1), recent.shape)
        ok = recent >= 0
        return self._scores(users.size, rows[ok], recent[ok], ages[ok])

    def _score_in_context(self, users: np.ndarray, context: Context) -> np.ndarray:
        n = users.size
        if len(context) != n:
            raise ValueError(f"the context has {len(context)} rows for {n} users")
        # the latest `history` items of each row: its context's last ones (age 0: the
        # latest), then its learned ones
        take = np.minimum(context.lengths, self.history)
        idx = concat_ranges(context.ptr[1:] - take, take)
        ctx_rows = np.repeat(np.arange(n), take)
        ctx_ages = np.repeat(context.ptr[1:], take) - 1 - idx
        recent = self._recent(users)
        rows = np.broadcast_to(np.arange(n)[:, None], recent.shape)
        ages = np.arange(recent.shape[1] - 1, -1, -1)[None, :] + take[:, None]
        ok = (recent >= 0) & (ages < self.history)
        scores = self._scores(n, np.concatenate([ctx_rows, rows[ok]]),
                              np.concatenate([context.items[idx].astype(np.int64), recent[ok]]),
                              np.concatenate([ctx_ages, ages[ok]]))
        # an unknown user without context the model learned about: the cold-start fallback
        cold = (users < 0) & ~self.context_rows(users, context)
        if cold.any():
            scores = scores.astype(np.float64, copy=False)
            scores[cold] = self._fallback_scores(int(cold.sum()))
        return scores

    def _recent(self, users: np.ndarray) -> np.ndarray:
        """The latest ``history`` learned items of ``users`` (latest last, -1 for none); -1
        rows for unknown users (-1) and users known by id only."""
        users = np.asarray(users, dtype=np.int64)
        learned = (users >= 0) & (users < self.recent_.shape[0])
        out = np.full((users.size, self.history), -1, dtype=np.int64)
        if learned.any():
            out[learned] = self.recent_[users[learned], -self.history:]
        return out

    def _scores(self, n_rows: int, rows: np.ndarray, items: np.ndarray,
                ages: np.ndarray) -> np.ndarray:
        """Scores of every item for ``n_rows`` rows, row ``rows[e]`` having item ``items[e]``
        as its ``ages[e]``-th latest (0: the latest)."""
        m = self.discount_.size  # the items learned so far; any others have no pairs
        inside = items < m
        if not inside.all():
            rows, items, ages = rows[inside], items[inside], ages[inside]
        weight = self._item_weight[ages]
        if self.alpha:
            weight = weight * np.maximum(self.item_counts_[items], 1.0) ** -float(self.alpha)
        scores = self.pairs_.product(n_rows, self.n_items, rows, items, weight)
        if self.beta:
            scores[:, :m] *= self.discount_
        if self.popularity:
            scores[:, :m] += float(self.popularity) / max(self.n_events_, 1) * \
                self.item_counts_[:m]
        return scores
