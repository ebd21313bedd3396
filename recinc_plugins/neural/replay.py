"""Replay buffers: the sample of earlier events each online step trains on again."""

from __future__ import annotations

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
    """

    def __init__(self, capacity: int, strategy: str = "reservoir", width: int = 0) -> None:
        self.capacity = int(capacity)
        self.strategy = strategy
        self.users = np.zeros(self.capacity, dtype=np.int64)
        self.items = np.zeros(self.capacity, dtype=np.int64)
        self.values = np.zeros(self.capacity, dtype=np.float32)
        self.seqs = np.zeros((self.capacity, int(width)), dtype=np.int32) if width else None
        self.n_seen = 0

    def __len__(self) -> int:
        return min(self.n_seen, self.capacity)

    def add(self, users: np.ndarray, items: np.ndarray, values: np.ndarray,
            rng: np.random.Generator, seqs: np.ndarray | None = None) -> None:
        n = users.size
        if n == 0 or self.capacity == 0:
            return
        if n == 1:  # the one-event step of a stream, without the batch machinery
            t = self.n_seen
            slot = t % self.capacity if self.strategy == "recent" else (
                t if t < self.capacity else int(rng.integers(0, t + 1)))
            if slot < self.capacity:
                self.users[slot], self.items[slot] = users[0], items[0]
                self.values[slot] = values[0]
                if seqs is not None:
                    self.seqs[slot] = seqs[0]
            self.n_seen += 1
            return
        t = self.n_seen + np.arange(n, dtype=np.int64)
        if self.strategy == "recent":
            slots = t % self.capacity
            keep = np.arange(max(0, n - self.capacity), n)
        else:
            slots = np.where(t < self.capacity, t, rng.integers(0, t + 1))
            keep = np.flatnonzero(slots < self.capacity)
            if keep.size > 1:  # a slot drawn twice in one batch holds the later event
                keep = keep[keep.size - 1 - np.unique(slots[keep][::-1], return_index=True)[1]]
        slots = slots[keep]
        self.users[slots] = users[keep]
        self.items[slots] = items[keep]
        self.values[slots] = values[keep]
        if seqs is not None:
            self.seqs[slots] = seqs[keep]
        self.n_seen += n

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``n`` stored events drawn uniformly with replacement."""
        return rng.integers(0, len(self), size=n)
