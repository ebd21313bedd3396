"""An event log: every learned event's (user, item), in the order learned."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .growth import grown

if TYPE_CHECKING:
    from .base import IncrementalRecommender

__all__ = ["EventLog"]


class EventLog:
    """Every learned event's ``(user, item)`` in the order learned (dense indices): what
    ``forget`` needs to take a user's pairs out of item-knn exactly, and to recount the
    windows an item's removal closes up, and what ``kept_events`` gives back in that order, so
    that ``forget(exact=True)`` refits on the kept stream as it came (the neural models).

    Two int32 per event (8 bytes), appended with doubling capacity (amortised O(1)); reading
    the sequences of some users, or dropping events, is one vectorised pass over the log.
    """

    def __init__(self) -> None:
        self.users = np.empty(0, dtype=np.int32)
        self.items = np.empty(0, dtype=np.int32)
        self.n = 0

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        end = self.n + users.size
        if end > self.users.size:
            capacity = max(end, 2 * self.users.size, 1024)
            self.users = grown(self.users[: self.n], capacity)
            self.items = grown(self.items[: self.n], capacity)
        self.users[self.n:end] = users
        self.items[self.n:end] = items
        self.n = end

    def sequences(self, users: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
        """``(owners, items)``: the events of ``users`` grouped by user (ascending), each
        user's in the order learned."""
        wanted = np.zeros(n_users, dtype=bool)
        wanted[users] = True
        positions = np.flatnonzero(wanted[self.users[: self.n]])
        owners = self.users[positions].astype(np.int64)
        order = np.argsort(owners, kind="stable")
        return owners[order], self.items[positions[order]].astype(np.int64)

    def drop(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> None:
        """Remove every event of ``users`` or of ``items``; the spare capacity is cleared, so
        no copy of them is left behind."""
        gone_user = np.zeros(n_users, dtype=bool)
        gone_user[users] = True
        gone_item = np.zeros(n_items, dtype=bool)
        gone_item[items] = True
        n = self.n
        keep = np.flatnonzero(~(gone_user[self.users[:n]] | gone_item[self.items[:n]]))
        self.n = keep.size
        self.users[: self.n] = self.users[keep]
        self.items[: self.n] = self.items[keep]
        self.users[self.n:] = 0
        self.items[self.n:] = 0

    def frame(self, model: IncrementalRecommender) -> pd.DataFrame:
        """``model``'s kept events in the order learned, as
        :meth:`~recinc_plugins.forget.Forgetting.kept_events` gives them otherwise (ids, and
        each pair's mean strength); events of ids forgotten already are left out
        (``forget(exact=True)`` asks before the log drops them)."""
        users = self.users[: self.n].astype(np.int64)
        items = self.items[: self.n].astype(np.int64)
        live = ~(model.user_index_.dead[users] | model.item_index_.dead[items])
        users, items = users[live], items[live]
        frame = {"user": model.user_index_.ids_of(users), "item": model.item_index_.ids_of(items),
                 **model._mean_strengths(users, items)}
        return pd.DataFrame(frame)

    def __getstate__(self) -> dict[str, Any]:
        return {"users": self.users[: self.n].copy(), "items": self.items[: self.n].copy(),
                "n": self.n}
