"""`recinc compare`: the command line over the evaluation harness."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recinc_plugins.cli import main
from recinc_plugins.evaluation.cli import DEFAULT_MODELS, parse_params


def test_compare_writes_the_summary_report_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["compare", "--models", "popularity,decayed-popularity,random", "--step", "500",
                 "--k", "10,20", "--warmup", "0.1", "--param", "random.seed=7",
                 "--param", "decayed-popularity.half_life=300", "--window", "500",
                 "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "decayed-popularity" in printed and "recall@10" in printed
    summary = pd.read_csv(out / "summary.csv")
    assert summary["model"].tolist() == ["popularity", "decayed-popularity", "random"]
    for column in ("model", "events", "recall@10", "ndcg@10", "mrr@10", "recall@20", "update_s",
                   "events_per_s", "peak_mem_mb", "rmse", "mae"):
        assert column in summary.columns, column
    assert (summary["events"] == 18_000).all()
    assert (summary["recall@20"] >= summary["recall@10"]).all()
    for name in ("report.md", "summary.json", "curves.csv", "paired.csv",
                 "metrics_over_time.png", "cost.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "test-then-learn" in report and "![cost.png](cost.png)" in report
    data = json.loads((out / "summary.json").read_text())
    assert [m["model"] for m in data["models"]] == summary["model"].tolist()
    assert len(data["paired"]) == 3
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["model"]) == set(summary["model"])


def test_compare_with_no_arguments_runs_the_baselines_and_installed_models(capsys):
    assert main(["compare", "--quiet"]) == 0
    table = capsys.readouterr().out
    for name in ("popularity", "newcomer-popularity", "decayed-popularity", "random"):
        assert name in table
    assert "recall@10" in table


def test_the_default_models_are_built_ins():
    from recinc_plugins.registry import list_models

    assert set(DEFAULT_MODELS) <= set(list_models()["name"])


def test_compare_reports_bad_arguments(capsys):
    assert main(["compare", "--models", "popularty", "--quiet"]) == 2
    assert "did you mean popularity" in capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--param", "random.seed=1"]) == 2
    assert "not among the compared models" in capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--param", "half_life=3"]) == 2
    assert "expected NAME.KEY=VALUE" in capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--step", "0"]) == 2
    assert "step must be >= 1" in capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--data", "no-such-data"]) == 2
    assert "neither a known dataset" in capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--param", "popularity.colour=1"]) == 2
    assert "popularity" in capsys.readouterr().err


def test_param_values_are_literals_or_strings():
    assert parse_params(["a.x=1.5", "a.y=text", "b.z=[1, 2]"], ["a", "b"]) == \
        {"a": {"x": 1.5, "y": "text"}, "b": {"z": [1, 2]}}
    with pytest.raises(ValueError, match=r"expected NAME\.KEY=VALUE"):
        parse_params(["a.x"], ["a"])


def test_compare_reads_a_csv_path_and_steps_by_time(tmp_path, capsys, explicit_stream):
    path = tmp_path / "events.csv"
    explicit_stream.to_csv(path, index=False)
    code = main(["compare", "--data", str(path), "--models", "popularity", "--step", "1h",
                 "--quiet"])
    assert code == 0
    assert "popularity" in capsys.readouterr().out


def test_compare_reads_a_step_written_as_a_float_and_refuses_bad_options(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compare", "--models", "popularity", "--step", "1e3", "--out", str(out),
                 "--no-plots", "--quiet"]) == 0
    assert pd.read_csv(out / "summary.csv").loc[0, "events"] == 20_000
    capsys.readouterr()
    assert main(["compare", "--models", "popularity", "--step", "2.5", "--quiet"]) == 2
    assert "step must be a whole number of events" in capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--window", "0", "--quiet"]) == 2
    assert "--window must be >= 1" in capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--resume", "--quiet"]) == 2
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err
