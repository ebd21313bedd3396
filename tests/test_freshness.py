"""freshness() and `recinc freshness`: recall against the update interval, learned and fresh."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recinc_plugins.cli import main
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.evaluation.freshness import freshness
from recinc_plugins.knn import ItemKNN


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    """1,500 implicit events over 13 hours."""
    return synthetic_stream(n_events=1500, n_users=60, n_items=150, feedback="implicit", seed=3)


@pytest.fixture(scope="module")
def result(events):
    return freshness(["popularity", "item-knn"], events,
                     intervals=(1, 10, 100, "1h", "6h", "1D", 5000))


def test_one_row_per_model_context_and_interval_and_the_pointless_intervals_noted(result):
    table = result.table
    assert (table["status"] == "ok").all()
    assert list(table["interval"].unique()) == [1, 10, 100, "1h", "6h"]
    assert len(table) == 5 * 2 * 2
    assert set(table["context"]) == {"learned", "fresh"}
    assert result.notes == [
        "interval 1: every step holds one event, so fresh context is learned context "
        "(replayed once, reported for both)"] + [
        f"interval {interval} left out: one step holds all 1,500 scored events, so nothing "
        "is learned before it is scored" for interval in ("1D", "5,000")]
    steps = table.drop_duplicates("interval").set_index("interval")["steps"]
    assert steps[1] == 1500 and steps[10] == 150 and steps[100] == 15
    assert steps["6h"] == 3 and steps["1h"] == 14


def test_every_cell_is_the_harness_own_number(events, result):
    cell = result.table.set_index(["model", "context", "interval"])
    direct = compare({"item-knn": ItemKNN()}, Stream(events, step=100), k=10, context="fresh")
    assert cell.loc[("item-knn", "fresh", 100), "recall@10"] == \
        direct.summary.loc[0, "recall@10"]
    # one event per step: nothing earlier in the step, so fresh and learned agree (and the
    # cell is replayed once): check it against a fresh replay
    one = compare({"item-knn": ItemKNN()}, Stream(events, step=1), k=10, context="fresh")
    for context in ("learned", "fresh"):
        assert cell.loc[("item-knn", context, 1), "recall@10"] == \
            one.summary.loc[0, "recall@10"]
    # a stale model loses, and fresh context gives item-knn some of it back
    knn = result.pivot()[("item-knn", "learned")]
    assert knn[1] > knn[100]
    assert cell.loc[("item-knn", "fresh", 100), "recall@10"] > \
        cell.loc[("item-knn", "learned", 100), "recall@10"]


def test_durations_are_left_out_with_a_note_when_there_are_no_timestamps(events):
    res = freshness({"pop": ItemKNN(history=1)}, events.drop(columns="timestamp"),
                    intervals=(100, "1h"), contexts=("fresh",))
    assert res.table["interval"].tolist() == [100]
    assert res.notes == ["interval 1h left out: a duration needs timestamps, and the data "
                         "have none"]


def test_the_table_csv_and_plot_are_written(result, tmp_path):
    written = result.write(tmp_path)
    assert sorted(written) == ["freshness.csv", "freshness.md", "freshness.png"]
    back = pd.read_csv(tmp_path / "freshness.csv")
    assert len(back) == len(result.table)
    np.testing.assert_allclose(back["recall@10"], result.table["recall@10"])
    assert (tmp_path / "freshness.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "freshness.md").read_text()
    assert "item-knn fresh" in text and "note: interval 5,000" in text


@pytest.mark.parametrize("kwargs, message", [
    ({"intervals": (0,)}, "must be >= 1"),
    ({"intervals": ("soon",)}, "positive duration"),
    ({"intervals": (True,)}, "number of events or a duration"),
    ({"intervals": ()}, "intervals is empty"),
    ({"contexts": ("stale",)}, "contexts must be among"),
])
def test_bad_intervals_and_contexts_are_refused(events, kwargs, message):
    with pytest.raises(ValueError, match=message):
        freshness(["popularity"], events, **kwargs)


def test_the_command_prints_the_table_and_writes_the_files(events, tmp_path, capsys):
    data = tmp_path / "events.csv"
    events.to_csv(data, index=False)
    out = tmp_path / "out"
    code = main(["freshness", "--data", str(data), "--models", "popularity,item-knn",
                 "--intervals", "10,100,6h", "--param", "item-knn.history=5", "--out",
                 str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "item-knn fresh" in printed and "6h" in printed
    assert (out / "freshness.csv").exists() and (out / "freshness.png").exists()
    assert main(["freshness", "--data", str(data), "--models", "popularity",
                 "--intervals", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
    assert main(["freshness", "--data", str(data), "--models", "item-knn", "--param",
                 "item-knn.window=0"]) == 2
    assert "model 'item-knn': window must be an integer >= 1" in capsys.readouterr().err
