"""Baselines: the floor every model is compared to."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Batch, Capabilities, IncrementalRecommender, Newcomer
from .forget import Removed
from .growth import grown
from .params import check_bool
from .sparse import GrowingCSR

__all__ = ["DecayedPopularity", "Popularity", "Random"]


def _scores_as(model: IncrementalRecommender, owner: type) -> bool:
    """``model`` scores known users with ``owner``'s own ``_score_users``."""
    return type(model)._score_users is owner._score_users


class Popularity(IncrementalRecommender):
    """Recommend the items with the most interactions so far (all-time counts).

    Parameters
    ----------
    weighted
        Count each event by its ``weight`` (or ``rating``) instead of once.
    cold_start
        How unknown users are answered: ``"popularity"`` (the same all-time counts as known
        users) or ``"newcomer"`` (what new users picked first lately, as the factor adapters
        do by default). ``Popularity(cold_start="newcomer")`` shows how much of a model's lead
        over popularity comes from its cold-start policy alone.

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins import Popularity
    >>> events = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["x", "y", "x", "z"]})
    >>> model = Popularity().fit(events)
    >>> model.recommend(["b", "new-user"], k=2).to_frame()
           user  rank item  score   cold
    0         b     1    y    1.0  False
    1         b     2    z    1.0  False
    2  new-user     1    x    2.0   True
    3  new-user     2    y    1.0   True
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="per-event")

    def __init__(self, weighted: bool = False, cold_start: str | Newcomer = "popularity") -> None:
        self.weighted = weighted
        self.cold_start = cold_start

    def _check_params(self) -> None:
        check_bool("weighted", self.weighted)

    def _init_model(self) -> None:
        self.popularity_ = np.zeros(0, dtype=np.float64)

    def _grow(self, n_users: int, n_items: int) -> None:
        self.popularity_ = grown(self.popularity_, n_items)

    def _partial_fit(self, batch: Batch) -> None:
        values = batch.values if self.weighted else None
        self.popularity_ += np.bincount(batch.items, weights=values,
                                        minlength=self.popularity_.size)

    forgets_exactly = True

    def _forget(self, removed: Removed) -> None:
        # the counts (or summed strengths) the forgotten events added, taken back out
        values = removed.values if self.weighted else removed.counts
        np.subtract.at(self.popularity_, removed.pair_items, values)
        self.popularity_[removed.items] = 0.0

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (users.size, self.popularity_.size)).copy()

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.popularity_[items]

    def shared_scores(self) -> np.ndarray | None:
        # a subclass that scores otherwise is not known to score every user alike
        return self.popularity_ if _scores_as(self, Popularity) else None

    def _fallback_scores(self, n_rows: int) -> np.ndarray:
        if self._newcomer_settings() is not None:
            return super()._fallback_scores(n_rows)
        return self._score_users(np.zeros(n_rows, dtype=np.int64))


class DecayedPopularity(IncrementalRecommender):
    """Popularity where each interaction's weight halves every ``half_life``.

    Parameters
    ----------
    half_life
        An int: the half-life in events (an interaction counts half after ``half_life`` more
        events). A string or ``pandas.Timedelta`` such as ``"7D"``: the half-life in time, which
        needs timestamps in the interactions. The default, 10,000 events, was chosen on the
        first half of MovieLens 100K at one event per step (recall@10 0.0765 against
        popularity's 0.0759; 1,000 events: 0.0697) and holds on its second half (0.0799
        against 0.0780) and on the synthetic stream (0.0788 against 0.0546), where tastes
        drift and shorter half-lives do better still (1,000 events: 0.157).
    weighted
        Weight each event by its ``weight`` (or ``rating``) instead of 1.

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins import DecayedPopularity
    >>> events = pd.DataFrame({"user": [1, 2, 3], "item": ["old", "old", "new"]})
    >>> model = DecayedPopularity(half_life=1).fit(events)
    >>> model.score(9, ["old", "new"]).round(3)
    array([0.75, 1.  ])
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="per-event")

    def __init__(self, half_life: int | str | pd.Timedelta = 10_000,
                 weighted: bool = False) -> None:
        self.half_life = half_life
        self.weighted = weighted

    def _check_params(self) -> None:
        check_bool("weighted", self.weighted)
        self._half_life_ns = None
        self._half_life_events = None
        if isinstance(self.half_life, (bool, np.bool_)):
            raise ValueError(
                f"half_life must be a number of events or a duration, got {self.half_life!r}"
            )
        if isinstance(self.half_life, (int, np.integer, float, np.floating)):
            if not self.half_life > 0:
                raise ValueError(f"half_life must be > 0 events, got {self.half_life!r}")
            self._half_life_events = float(self.half_life)
            return
        try:
            delta = pd.Timedelta(self.half_life)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"half_life must be a number of events or a duration like '7D', got "
                f"{self.half_life!r}"
            ) from exc
        if delta <= pd.Timedelta(0):
            raise ValueError(f"half_life must be a positive duration, got {self.half_life!r}")
        self._half_life_ns = float(delta.value)

    def _init_model(self) -> None:
        # scores are kept scaled by 2 ** (now / half_life) relative to a reference clock, so an
        # update touches only the new events' items; the reference moves when the scale grows
        self.scaled_ = np.zeros(0, dtype=np.float64)
        self.clock_ = 0.0  # now, in half-lives since the reference
        self._events_seen = 0.0
        self.origin_ns_: int | None = None
        # each (user, item) pair's share of ``scaled_``, for ``forget``
        self.pair_scaled_ = GrowingCSR(0, 0, combine="sum", dtype=np.float64)

    def _grow(self, n_users: int, n_items: int) -> None:
        self.scaled_ = grown(self.scaled_, n_items)

    def _check_batch(self, batch: Batch) -> None:
        if self._half_life_ns is not None and batch.timestamps is None and len(batch):
            raise ValueError(
                f"half_life={self.half_life!r} is a duration, so the interactions need a "
                "'timestamp' column"
            )

    def _partial_fit(self, batch: Batch) -> None:
        n = len(batch)
        if self._half_life_events is not None:
            ages = (self._events_seen + np.arange(1, n + 1)) / self._half_life_events
            self._events_seen += n
        else:
            if self.origin_ns_ is None:
                self.origin_ns_ = int(batch.timestamps.min())
            ages = (batch.timestamps - self.origin_ns_) / self._half_life_ns
        clock = max(self.clock_, float(ages.max()))
        if clock > 512:  # rebase before 2 ** clock overflows
            self.scaled_ *= 2.0 ** (-clock)
            self.pair_scaled_.scale(2.0 ** (-clock))
            ages = ages - clock
            self.clock_ = 0.0
            if self._half_life_events is not None:
                self._events_seen -= clock * self._half_life_events
            else:
                self.origin_ns_ += int(clock * self._half_life_ns)
            clock = 0.0
        values = batch.values if self.weighted else 1.0
        contributions = values * np.exp2(ages)
        self.scaled_ += np.bincount(batch.items, weights=contributions,
                                    minlength=self.scaled_.size)
        self.pair_scaled_.add(batch.users, batch.items, contributions)
        self.clock_ = clock

    @property
    def forgets_exactly(self) -> bool:  # type: ignore[override]
        # in time, each event's weight depends on its own timestamp only: taking out the
        # forgotten pairs' contributions gives the model trained without them. In events, a
        # retrained model would age the later events by fewer events: approximate.
        return getattr(self, "_half_life_ns", None) is not None

    def _forget(self, removed: Removed) -> None:
        # each pair's decayed contribution was kept (scaled like ``scaled_``): take it out
        if getattr(self, "pair_scaled_", None) is None:  # a file from before it was kept
            self._retrain_kept()
            return
        _, items, scaled = self.pair_scaled_.drop(removed.users, removed.items)
        np.subtract.at(self.scaled_, items, scaled)
        self.scaled_[removed.items] = 0.0
        np.maximum(self.scaled_, 0.0, out=self.scaled_)

    def _decayed(self) -> np.ndarray:
        return self.scaled_ * 2.0 ** (-self.clock_)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._decayed(), (users.size, self.scaled_.size)).copy()

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._decayed()[items]

    def shared_scores(self) -> np.ndarray | None:
        return self._decayed() if _scores_as(self, DecayedPopularity) else None

    def _fallback_scores(self, n_rows: int) -> np.ndarray:
        return self._score_users(np.zeros(n_rows, dtype=np.int64))


class Random(IncrementalRecommender):
    """Recommend items uniformly at random (seeded): the floor below the floor.

    Parameters
    ----------
    seed
        Seed of the generator; the same seed and calls give the same recommendations.
    """

    capabilities = Capabilities(explicit=False, implicit=True, update="per-event")

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def _init_model(self) -> None:
        self.rng_ = np.random.default_rng(self.seed)

    def _grow(self, n_users: int, n_items: int) -> None:
        pass

    def _partial_fit(self, batch: Batch) -> None:
        pass

    forgets_exactly = True

    def _forget(self, removed: Removed) -> None:
        pass  # it learns nothing: the forgotten ids are gone from the shared state

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self.rng_.random((users.size, self.n_items))
