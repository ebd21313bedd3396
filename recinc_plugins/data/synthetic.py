"""Seeded synthetic interaction streams with drifting tastes and a moving catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..sparse import GrowingCSR

__all__ = ["synthetic_stream"]


def synthetic_stream(
    n_events: int = 20_000,
    n_users: int = 500,
    n_items: int = 1_000,
    *,
    feedback: str = "explicit",
    n_factors: int = 8,
    drift: float = 0.05,
    item_lifetime: float = 0.4,
    popularity_shift: float = 1.0,
    start: str = "2024-01-01",
    seed: int | None = 0,
) -> pd.DataFrame:
    """A timestamped stream of interactions with known structure, in the canonical schema.

    Users have latent tastes that drift as a random walk; items arrive over the stream's life
    and fade after ``item_lifetime`` (a fraction of the stream); item popularity has a
    component that shifts between regimes. Each event picks a user (heavy-tailed activity) and
    an item the user has not had before, with probability rising with taste match, popularity
    and item freshness. The same arguments always give the same frame.

    Parameters
    ----------
    n_events, n_users, n_items
        Size of the stream. ``n_events`` must be possible without repeats
        (at most ``n_users * n_items / 2``).
    feedback
        ``"explicit"`` adds a 1..5 ``rating`` driven by taste match; ``"implicit"`` adds a
        positive ``weight`` (a play count).
    n_factors
        Dimension of the latent tastes.
    drift
        Per-block standard deviation of the taste random walk (0 freezes tastes).
    item_lifetime
        How long an item stays attractive after it arrives, as a fraction of the stream.
    popularity_shift
        Strength of the shifting popularity component (0 turns it off).
    start
        Timestamp of the first event; events are seconds to minutes apart, with some ties.
    seed
        Seed for everything random.

    Examples
    --------
    >>> from recinc_plugins.data import synthetic_stream
    >>> df = synthetic_stream(n_events=1000, n_users=50, n_items=80, seed=1)
    >>> list(df.columns), len(df)
    (['user', 'item', 'rating', 'timestamp'], 1000)
    >>> df.equals(synthetic_stream(n_events=1000, n_users=50, n_items=80, seed=1))
    True
    """
    if feedback not in ("explicit", "implicit"):
        raise ValueError(f"feedback must be 'explicit' or 'implicit', got {feedback!r}")
    for name, value in (("n_events", n_events), ("n_users", n_users), ("n_items", n_items),
                        ("n_factors", n_factors)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_events > n_users * n_items // 2:
        raise ValueError(
            f"n_events={n_events} is too many for {n_users} users x {n_items} items without "
            f"repeats (at most {n_users * n_items // 2})"
        )
    if drift < 0 or item_lifetime <= 0 or popularity_shift < 0:
        raise ValueError("drift and popularity_shift must be >= 0 and item_lifetime > 0")

    rng = np.random.default_rng(seed)
    tastes = rng.normal(0, 1, (n_users, n_factors))
    traits = rng.normal(0, 1, (n_items, n_factors)) / np.sqrt(n_factors)
    activity = rng.pareto(1.2, n_users) + 0.2
    activity /= activity.sum()
    # items arrive along the stream: 30% at the start, the rest uniformly later
    arrival = np.where(rng.random(n_items) < 0.3, 0.0, rng.random(n_items))
    arrival[np.argmin(arrival)] = 0.0  # something is on offer from the first event
    base_pop = rng.normal(0, 0.7, n_items)
    n_regimes = 4
    regime_pop = rng.normal(0, 1, (n_regimes, n_items)) * popularity_shift

    block = max(64, n_events // 200)
    seen = GrowingCSR(n_users, n_items, dtype=np.int8)
    users_out: list[np.ndarray] = []
    items_out: list[np.ndarray] = []
    affinity_out: list[np.ndarray] = []
    produced = 0
    stalled = 0  # blocks in a row that produced nothing: let time (and new items) move on
    while produced < n_events:
        if stalled > 10_000:
            raise RuntimeError(
                f"synthetic_stream stalled after {produced} events: the active users have had "
                "every item on offer (try more items or fewer events)"
            )
        frac = min(1.0, produced / n_events + stalled / 100)
        age = frac - arrival
        alive = age >= 0
        freshness = np.where(alive, -np.maximum(age, 0) / item_lifetime, -np.inf)
        regime = min(int(frac * n_regimes), n_regimes - 1)
        logits_item = base_pop + regime_pop[regime] + 2.0 * freshness
        users = rng.choice(n_users, size=block, p=activity)
        match = tastes[users] @ traits.T
        logits = 1.5 * match + logits_item
        rows, cols = seen.row_entries(users)
        logits[rows, cols] = -np.inf
        gumbel = rng.gumbel(size=logits.shape)
        items = np.argmax(logits + gumbel, axis=1)
        ok = np.isfinite(logits[np.arange(block), items])
        users, items = users[ok], items[ok]
        keys = users * n_items + items
        _, first = np.unique(keys, return_index=True)
        first.sort()
        users, items = users[first], items[first]
        seen.add(users, items)
        take = min(users.size, n_events - produced)
        users_out.append(users[:take])
        items_out.append(items[:take])
        affinity_out.append(np.einsum("ij,ij->i", tastes[users[:take]], traits[items[:take]]))
        produced += take
        stalled = 0 if take else stalled + 1
        tastes += rng.normal(0, drift, tastes.shape)

    users = np.concatenate(users_out)
    items = np.concatenate(items_out)
    affinity = np.concatenate(affinity_out)
    gaps = rng.choice([0, 1, 5, 30, 60, 300], size=n_events, p=[0.05, 0.25, 0.3, 0.2, 0.15, 0.05])
    seconds = np.cumsum(gaps)
    frame = pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64)})
    if feedback == "explicit":
        noisy = 2.3 + 0.9 * affinity + rng.normal(0, 0.6, n_events)
        frame["rating"] = np.clip(np.rint(noisy), 1, 5).astype(np.float64)
    else:
        frame["weight"] = (1 + rng.poisson(np.exp(np.clip(affinity, -3, 2)))).astype(np.float64)
    frame["timestamp"] = pd.Timestamp(start).to_datetime64() + seconds.astype("timedelta64[s]")
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame
