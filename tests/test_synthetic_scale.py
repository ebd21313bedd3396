"""The synthetic stream at scale (method="sampled"), its named datasets, and Parquet by columns."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from recinc_plugins.cli import main
from recinc_plugins.data import (
    DATASETS,
    InteractionsError,
    list_datasets,
    read_interactions_file,
    synthetic_stream,
)
from recinc_plugins.data import synthetic as synthetic_module


def digest(frame: pd.DataFrame) -> str:
    """The frame's column names, dtypes and raw values, hashed."""
    h = hashlib.sha256()
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.kind == "M":
            values = values.view(np.int64)
        h.update(f"{name}:{values.dtype.str};".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()[:16]


# computed with the generator as it was before method= existed (commit d1536ef); the default
# method ("auto") and "exact" must both give them
BEFORE = [
    ({}, "f6a29d40cc6c2ea3"),
    ({"feedback": "implicit", "method": "exact"}, "a7796b9bb8606f43"),
    ({"n_events": 1000, "n_users": 50, "n_items": 80, "seed": 1}, "cf387dc5f820bdee"),
    ({"n_events": 3000, "n_users": 150, "n_items": 300, "seed": 7, "method": "exact"},
     "44100c91465347ab"),
]


@pytest.mark.parametrize(("kwargs", "expected"), BEFORE)
def test_exact_streams_are_bit_identical_to_before(kwargs, expected):
    assert digest(synthetic_stream(**kwargs)) == expected


def test_auto_picks_exact_for_small_worlds_and_sampled_for_large_ones():
    small = {"n_events": 500, "n_users": 2000, "n_items": 2000}  # 4,000,000 cells: exact
    assert synthetic_stream(**small).equals(synthetic_stream(**small, method="exact"))
    large = {"n_events": 500, "n_users": 2001, "n_items": 2000}
    assert synthetic_stream(**large).equals(synthetic_stream(**large, method="sampled"))
    assert not synthetic_stream(**large).equals(synthetic_stream(**large, method="exact"))
    with pytest.raises(ValueError, match="method must be one of"):
        synthetic_stream(method="fast")


SHAPE = {"n_events": 200_000, "n_users": 50_000, "n_items": 20_000}


@pytest.fixture(scope="module")
def sampled():
    return synthetic_stream(**SHAPE, seed=3, method="sampled")


def test_sampled_is_deterministic_for_a_seed(sampled):
    pd.testing.assert_frame_equal(sampled, synthetic_stream(**SHAPE, seed=3, method="sampled"))
    other = synthetic_stream(n_events=5000, n_users=4000, n_items=3000, seed=4, method="sampled")
    again = synthetic_stream(n_events=5000, n_users=4000, n_items=3000, seed=4, method="sampled")
    pd.testing.assert_frame_equal(other, again)
    assert not other.equals(
        synthetic_stream(n_events=5000, n_users=4000, n_items=3000, seed=5, method="sampled"))


def test_sampled_has_the_canonical_schema_and_no_repeats(sampled):
    assert list(sampled.columns) == ["user", "item", "rating", "timestamp"]
    assert len(sampled) == SHAPE["n_events"]
    assert sampled["user"].dtype == np.int64 and sampled["item"].dtype == np.int64
    assert sampled["user"].between(0, SHAPE["n_users"] - 1).all()
    assert sampled["item"].between(0, SHAPE["n_items"] - 1).all()
    assert not sampled.duplicated(["user", "item"]).any()
    assert sampled["rating"].isin([1, 2, 3, 4, 5]).all()
    times = sampled["timestamp"]
    assert times.is_monotonic_increasing and times.duplicated().any()  # seconds apart, ties
    implicit = synthetic_stream(n_events=20_000, n_users=10_000, n_items=5_000,
                                feedback="implicit", method="sampled")
    assert list(implicit.columns) == ["user", "item", "weight", "timestamp"]
    assert (implicit["weight"] >= 1).all() and implicit["weight"].nunique() > 3


def test_sampled_items_appear_only_after_they_arrive(sampled):
    # the world is drawn first, in the same order for both samplers: redraw it to read arrivals
    rng = np.random.default_rng(3)
    world = synthetic_module._World.draw(rng, SHAPE["n_users"], SHAPE["n_items"], 8, 1.0)
    position = np.arange(len(sampled)) / len(sampled)
    first = sampled.groupby("item").cumcount().to_numpy() == 0
    items = sampled["item"].to_numpy()[first]
    assert (position[first] >= world.arrival[items]).all()
    # and they keep arriving: a good part of the catalogue first shows up late
    assert (position[first] > 0.5).sum() > 0.2 * SHAPE["n_items"]
    early = sampled["item"].iloc[: len(sampled) // 20].nunique()
    assert early < 0.45 * SHAPE["n_items"]  # about 30% on offer at the start


def test_sampled_popularity_shifts_and_is_heavy_tailed(sampled):
    part = len(sampled) // 10
    head = sampled["item"].iloc[:part].value_counts().head(20).index
    tail = sampled["item"].iloc[-part:].value_counts().head(20).index
    assert len(set(head) & set(tail)) < 5
    counts = sampled["item"].value_counts()
    top = counts.iloc[: SHAPE["n_items"] // 100].sum() / len(sampled)
    assert top > 0.05  # the top 1% of items: over 5 times their share under uniform picks


def test_sampled_user_activity_is_heavy_tailed(sampled):
    counts = sampled["user"].value_counts()
    top = counts.iloc[: counts.size // 100].sum() / len(sampled)
    assert top > 0.15
    assert counts.iloc[0] > 50 * counts.median()


def test_sampled_follows_taste_like_exact():
    """Same world, same model: the two samplers agree on what the world looks like."""
    shape = {"n_events": 10_000, "n_users": 1000, "n_items": 800, "seed": 0}
    exact = synthetic_stream(**shape, method="exact")
    sampled = synthetic_stream(**shape, method="sampled")
    # ratings come from taste match: picking by taste lifts them well above the 2.3 baseline
    assert sampled["rating"].mean() > 3.0
    assert abs(sampled["rating"].mean() - exact["rating"].mean()) < 0.25
    for frame in (exact, sampled):
        assert frame["item"].nunique() > 0.9 * shape["n_items"]
    tops = [f["item"].value_counts().iloc[:15].sum() / len(f) for f in (exact, sampled)]
    assert 0.5 < tops[1] / tops[0] < 2


def test_drift_moves_tastes():
    shape = {"n_events": 20_000, "n_users": 3000, "n_items": 2000, "method": "sampled"}
    still = synthetic_stream(**shape, drift=0.0)
    moving = synthetic_stream(**shape, drift=0.2)
    assert not still.equals(moving)
    assert not still.duplicated(["user", "item"]).any()


@pytest.mark.parametrize("lifetime", [0.02, 5.0])
def test_short_and_long_item_lifetimes(lifetime):
    # under 1/30 of the stream the proposals are recomputed per part (no float underflow)
    frame = synthetic_stream(n_events=30_000, n_users=5000, n_items=2000, item_lifetime=lifetime,
                             method="sampled")
    assert len(frame) == 30_000 and not frame.duplicated(["user", "item"]).any()
    assert frame["rating"].notna().all()
    if lifetime < 1:  # items fade fast: the catalogue's head turns over completely
        part = len(frame) // 10
        head = set(frame["item"].iloc[:part].value_counts().head(50).index)
        tail = set(frame["item"].iloc[-part:].value_counts().head(50).index)
        assert len(head & tail) < 5


@pytest.mark.parametrize("sizes", [(1, 1, 2), (2, 2, 2), (1, 6, 3), (2, 10, 10), (50, 10, 10),
                                   (1000, 50, 80)])
def test_tiny_sampled_streams_terminate(sizes):
    n_events, n_users, n_items = sizes
    frame = synthetic_stream(n_events, n_users, n_items, method="sampled")
    assert len(frame) == n_events and not frame.duplicated(["user", "item"]).any()


def test_a_million_events_generate(tmp_path):
    frame = synthetic_stream(n_events=1_000_000, n_users=100_000, n_items=50_000,
                             feedback="implicit")
    assert len(frame) == 1_000_000
    assert not frame.duplicated(["user", "item"]).any()
    assert frame["item"].nunique() > 40_000


def test_large_named_datasets_are_registered(capsys):
    shapes = {"synthetic-1m": (1_000_000, 500_000, 190_000),
              "synthetic-10m": (10_000_000, 1_000_000, 200_000)}
    table = list_datasets().set_index("name")
    for name, (n_events, n_users, n_items) in shapes.items():
        spec = DATASETS[name]
        assert spec.generate is not None
        assert spec.generate.keywords == {"n_events": n_events, "n_users": n_users,
                                          "n_items": n_items, "feedback": "implicit",
                                          "seed": 0, "method": "sampled"}
        assert table.loc[name, "present"] and table.loc[name, "path"] == "(generated)"
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "synthetic-1m" in out and "synthetic-10m" in out


# -- Parquet (and CSV) read by columns ----------------------------------------------------------

@pytest.fixture
def wide_parquet(tmp_path):
    frame = synthetic_stream(n_events=300, n_users=20, n_items=40, feedback="implicit", seed=3)
    wide = frame.rename(columns={"user": "uid"})
    for j in range(40):
        wide[f"unused_{j}"] = np.arange(len(wide)) * j
    wide["country"] = "fr"
    path = tmp_path / "wide.parquet"
    wide.to_parquet(path)
    return path, frame, wide


def test_parquet_reads_only_the_columns_it_keeps(wide_parquet, monkeypatch):
    path, frame, _ = wide_parquet
    asked = []
    real = pd.read_parquet

    def spy(*args, **kwargs):
        asked.append(kwargs.get("columns"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", spy)
    lean = read_interactions_file(path, columns={"uid": "user"}, extra_columns=False)
    pd.testing.assert_frame_equal(lean, frame)
    assert asked[-1] == ["uid", "item", "weight", "timestamp"]
    some = read_interactions_file(path, columns={"uid": "user"}, extra_columns=["country"])
    assert list(some.columns) == ["user", "item", "weight", "timestamp", "country"]
    assert asked[-1] == ["uid", "item", "weight", "timestamp", "country"]
    # the default keeps every extra column: they pass through as side information
    full = read_interactions_file(path, columns={"uid": "user"})
    assert list(full.columns) == ["user", "item", "weight", "timestamp",
                                  *[f"unused_{j}" for j in range(40)], "country"]
    assert asked[-1] is None
    pd.testing.assert_frame_equal(full[lean.columns], lean)


def test_parquet_errors_still_name_every_column_of_the_file(wide_parquet):
    path, _, _ = wide_parquet
    with pytest.raises(InteractionsError, match=r"missing required column\(s\) \['user'\].*"
                                                 r"unused_39"):
        read_interactions_file(path, extra_columns=False)
    with pytest.raises(InteractionsError, match=r"columns mapping names \['userId'\].*country"):
        read_interactions_file(path, columns={"userId": "user"}, extra_columns=False)


def test_csv_reads_only_the_columns_it_keeps(tmp_path):
    frame = synthetic_stream(n_events=200, n_users=20, n_items=40, seed=3)
    csv = tmp_path / "events.csv"
    frame.rename(columns={"user": "userId", "item": "movieId"}).assign(
        timestamp=frame["timestamp"].astype("int64") // 10**9, note="x", other=1.5
    ).to_csv(csv, index=False)
    assert list(read_interactions_file(csv).columns) == [*frame.columns, "note", "other"]
    pd.testing.assert_frame_equal(read_interactions_file(csv, extra_columns=False), frame)
    assert list(read_interactions_file(csv, extra_columns={"other"}).columns) == [
        *frame.columns, "other"]
    with pytest.raises(TypeError, match="extra_columns must be"):
        read_interactions_file(csv, extra_columns="other")
