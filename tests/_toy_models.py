"""Small models the evaluation tests share (not a test module: pytest collects nothing here)."""

from __future__ import annotations

import numpy as np

from recinc_plugins.base import Batch, Capabilities, IncrementalRecommender


class UserMean(IncrementalRecommender):
    """Explicit-rating model: predicts the user's mean rating (the global mean for new users)."""

    capabilities = Capabilities(explicit=True, implicit=False)

    def _init_model(self) -> None:
        self.sums_ = np.zeros(0)
        self.counts_ = np.zeros(0)

    def _grow(self, n_users: int, n_items: int) -> None:
        for name in ("sums_", "counts_"):
            grown = np.zeros(n_users)
            grown[: getattr(self, name).size] = getattr(self, name)
            setattr(self, name, grown)

    def _partial_fit(self, batch: Batch) -> None:
        self.sums_ += np.bincount(batch.users, batch.ratings, minlength=self.sums_.size)
        self.counts_ += np.bincount(batch.users, minlength=self.counts_.size)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        means = self.sums_[users] / np.maximum(self.counts_[users], 1)
        return np.repeat(means[:, None], self.n_items, axis=1) + 1e-3 * self.item_counts_
