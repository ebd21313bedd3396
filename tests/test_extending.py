"""docs/extending.md's model, as written there: installed as a third-party package, registered
through the entry point, replayed, saved and loaded, and its documented numbers reproduced."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins.evaluation import Stream, compare

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"


@pytest.fixture
def next_item(install_plugin):
    """The docs' first Python block as the module ``next_item``, with the docs' entry point."""
    source = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]
    install_plugin("next_item", source, {"next-item": "next_item:NextItem"})
    table = recinc_plugins.list_models(capabilities=True).set_index("name")
    assert table.loc["next-item", "source"] == "entry point (next-item)"
    assert table.loc["next-item", "update"] == "per-event"
    return type(recinc_plugins.make("next-item"))


def _stream(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Users who tend to pick the item after their last one, new users and items all along."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 80, n)
    items = np.minimum(rng.geometric(0.05, n), 30 + np.arange(n) // 40)
    follow = rng.random(n) < 0.5
    last: dict[int, int] = {}
    for e in range(n):
        if follow[e] and users[e] in last:
            items[e] = last[users[e]] + 1
        last[users[e]] = items[e]
    return pd.DataFrame({"user": users, "item": items, "timestamp": np.arange(n) // 2})


@pytest.mark.parametrize("step", [1, 50])
def test_the_documented_model_replays_through_the_entry_point(next_item, step):
    stream = Stream(_stream(), step=step, warmup=100)
    result = compare({"popularity": recinc_plugins.make("popularity"),
                      "next-item": recinc_plugins.make("next-item")}, stream, k=10)
    assert not result.failures
    recall = result.summary.set_index("model")["recall@10"]
    assert recall["next-item"] > recall["popularity"]


def test_learning_in_batches_equals_learning_at_once(next_item):
    events = _stream(seed=1)
    whole = next_item().fit(events)
    parts = next_item().fit(events.iloc[:1])
    for start in range(1, len(events), 37):
        parts.partial_fit(events.iloc[start:start + 37])
    n = whole.n_items
    np.testing.assert_array_equal(parts.follows_[:n, :n], whole.follows_[:n, :n])
    np.testing.assert_array_equal(parts.last_item_[:whole.n_users],
                                  whole.last_item_[:whole.n_users])
    users = events["user"].unique()
    np.testing.assert_array_equal(parts.recommend(users, k=5).items,
                                  whole.recommend(users, k=5).items)


def test_it_saves_loads_clones_and_checks_its_parameter(next_item, tmp_path):
    model = next_item(popularity=0.5).fit(_stream())
    model.save(tmp_path / "next.recinc")
    loaded = recinc_plugins.load(tmp_path / "next.recinc")
    users = [0, 1, 2, "someone new"]
    np.testing.assert_array_equal(loaded.recommend(users, k=5).items,
                                  model.recommend(users, k=5).items)
    assert loaded.recommend(users, k=5).cold.tolist() == [False, False, False, True]
    assert repr(model.clone()) == "NextItem(popularity=0.5)"
    with pytest.raises(ValueError, match="popularity must be a finite number >= 0, got -1"):
        next_item(popularity=-1).fit(_stream())


@pytest.mark.data
@pytest.mark.slow
def test_the_documented_ml100k_numbers(next_item, ml100k):
    for step, expected in ((1, (0.119, 0.077)), (1_000, (0.051, 0.054))):
        result = compare({"next-item": recinc_plugins.make("next-item"),
                          "popularity": recinc_plugins.make("popularity")},
                         Stream(ml100k, step=step), k=10)
        recall = result.summary.set_index("model")["recall@10"]
        assert (round(recall["next-item"], 3), round(recall["popularity"], 3)) == expected
