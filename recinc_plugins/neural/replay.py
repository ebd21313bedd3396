"""Replay buffers: the sample of earlier events each online step trains on again."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """A fixed-capacity store of past ``(user, item, value)`` events in dense indices, and with
    ``width`` > 0 a row of ``width`` ints per event (``seqs``: a sequential model's input as it
    was when the event happened, so that a replayed event is learned in its own context).

    ``strategy="reservoir"`` keeps a uniform sample of the whole stream (Vitter's algorithm R,
    vectorised over a batch), so old tastes are not forgotten; ``"recent"`` keeps the last
    ``capacity`` events (a ring buffer), which follows drift faster. Items drawn from a
    reservoir are distributed like item popularity over the stream, which is what
    popularity-based negative sampling uses.

    :meth:`drop` removes events (``forget``): the events held move to the front
    (``n_held`` of them). A reservoir then keeps its count of the stream's events less the
    dropped ones, and an event it keeps goes to a free slot while there is one, so it fills
    up again at the rate algorithm R admits events; a ring restarts at its oldest kept event.
    """

    def __init__(self, capacity: int, strategy: str = "reservoir", width: int = 0) -> None:
        self.capacity = int(capacity)
        self.strategy = strategy
        self.users = np.zeros(self.capacity, dtype=np.int64)
        self.items = np.zeros(self.capacity, dtype=np.int64)
        self.values = np.zeros(self.capacity, dtype=np.float32)
        self.seqs = np.zeros((self.capacity, int(width)), dtype=np.int32) if width else None
        self.n_seen = 0
        self.n_held = 0

    def __len__(self) -> int:
        return self.n_held

    def add(self, users: np.ndarray, items: np.ndarray, values: np.ndarray,
            rng: np.random.Generator, seqs: np.ndarray | None = None) -> None:
        n = users.size
        if n == 0 or self.capacity == 0:
            return
        recent = self.strategy == "recent"
        if n == 1:  # the one-event step of a stream, without the batch machinery
            t = self.n_seen
            slot = t % self.capacity if recent else (
                t if t < self.capacity else int(rng.integers(0, t + 1)))
            if slot < self.capacity:
                if slot >= self.n_held:  # a free slot: the next one
                    slot = self.n_held
                    self.n_held += 1
                self.users[slot], self.items[slot] = users[0], items[0]
                self.values[slot] = values[0]
                if seqs is not None:
                    self.seqs[slot] = seqs[0]
            self.n_seen += 1
            return
        t = self.n_seen + np.arange(n, dtype=np.int64)
        if recent:
            slots = t % self.capacity
            keep = np.arange(max(0, n - self.capacity), n)
            slots = slots[keep]
            self.n_held = min(self.n_seen + n, self.capacity)
        else:
            slots = np.where(t < self.capacity, t, rng.integers(0, t + 1))
            keep = np.flatnonzero(slots < self.capacity)
            slots = slots[keep]
            # events kept in free slots take the next ones, in order (without a drop these
            # are the first events, whose slots already are the next ones)
            free = np.flatnonzero(slots >= self.n_held)
            if free.size:
                filled = min(free.size, self.capacity - self.n_held)
                slots[free[:filled]] = self.n_held + np.arange(filled)
                self.n_held += filled
            if keep.size > 1:  # a slot drawn twice in one batch holds the later event
                last = keep.size - 1 - np.unique(slots[::-1], return_index=True)[1]
                keep, slots = keep[last], slots[last]
        self.users[slots] = users[keep]
        self.items[slots] = items[keep]
        self.values[slots] = values[keep]
        if seqs is not None:
            self.seqs[slots] = seqs[keep]
        self.n_seen += n

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``n`` stored events drawn uniformly with replacement."""
        return rng.integers(0, len(self), size=n)

    def drop(self, gone_users: np.ndarray, gone_items: np.ndarray, n_events: int) -> int:
        """Remove the events of users and items marked in the boolean masks ``gone_users``
        and ``gone_items``, and the marked items from every ``seqs`` row (the later ones move
        up, 0 fills the end); ``n_events`` is how many events of the stream the removal takes
        out (a reservoir's count of the stream drops by as many). Nothing of the removed
        events stays in the arrays. Returns the number of events removed from the buffer."""
        n = self.n_held
        if n == 0:
            return 0
        order = np.arange(n)
        if self.strategy == "recent" and self.n_seen > self.capacity:
            order = (self.n_seen + order) % self.capacity  # oldest first
        users, items = self.users[order], self.items[order]
        inside = (users < gone_users.size) & (items < gone_items.size)
        dead = np.zeros(n, dtype=bool)
        dead[inside] = gone_users[users[inside]] | gone_items[items[inside]]
        keep = order[~dead]
        k = keep.size
        for name in ("users", "items", "values", "seqs"):
            array = getattr(self, name)
            if array is not None:
                array[:k] = array[keep]
                array[k:] = 0
        if self.seqs is not None and self.seqs.shape[1]:
            self._drop_from_seqs(gone_items, k)
        self.n_held = k
        if self.strategy == "recent":
            self.n_seen = k
        else:
            self.n_seen = max(self.n_seen - int(n_events), k)
        return n - k

    def _drop_from_seqs(self, gone_items: np.ndarray, n: int) -> None:
        """Take the marked items (``seqs`` hold item index + 1; 0 is none) out of the first
        ``n`` rows, keeping the others in order at the front."""
        seqs = self.seqs[:n]
        marked = np.concatenate([[False], gone_items])
        inside = seqs <= gone_items.size
        gone = np.zeros(seqs.shape, dtype=bool)
        gone[inside] = marked[seqs[inside]]
        rows = np.flatnonzero(gone.any(axis=1))
        if rows.size:
            part = np.where(gone[rows], 0, seqs[rows])
            order = np.argsort(gone[rows], axis=1, kind="stable")
            seqs[rows] = np.take_along_axis(part, order, axis=1)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "n_held" not in state:  # a file from before ``drop``: the buffer is full up to
            self.n_held = min(self.n_seen, self.capacity)
