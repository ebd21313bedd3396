"""Quick start: one model, learning a stream step by step, recommending (also from a user's
latest events, not learned), saving and loading.

Run: ``python examples/quickstart.py`` (a few seconds, on the built-in synthetic stream).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import recinc_plugins as rp


def main() -> None:
    events = rp.load_dataset("synthetic")  # 20,000 ratings; user, item, rating, timestamp
    model = rp.make("decayed-popularity", half_life="12h")
    model.fit(events.iloc[:5_000])
    for start in range(5_000, 20_000, 5_000):  # new users and items arrive in every step
        model.partial_fit(events.iloc[start:start + 5_000])
        print(f"after {start + 5_000:>6,} events: {model.n_users} users, {model.n_items} items")

    some_users = [events["user"].iloc[-1], "a-user-never-seen"]
    recs = model.recommend(some_users, k=5)
    print(recs.to_frame())  # the unknown user is answered by popularity and flagged cold

    # a live service knows a user's latest clicks before the model learns them: give them as
    # context (not learned); a model that uses context (`recinc models`) scores from them
    knn = rp.make("item-knn").fit(events)
    latest = events["item"].iloc[-3:].tolist()
    fresh = knn.recommend("a-user-never-seen", k=5, context=latest)
    print(f"item-knn for someone new who just picked {latest}: {fresh.items[0].tolist()} "
          f"(cold: {bool(fresh.cold[0])})")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.recinc"
        model.save(path)
        again = rp.IncrementalRecommender.load(path)
        assert (again.recommend(some_users, k=5).items == recs.items).all()
        print(f"saved and loaded {again!r}: identical recommendations")


if __name__ == "__main__":
    main()
