"""Grid specs, cells, the local executor and the output folder: no Ray needed."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recinc_plugins import list_models, make
from recinc_plugins.data import synthetic_stream
from recinc_plugins.grid import GridSpec, SpecError, load_spec, read_cells, run_grid

TINY = {"synthetic": {"n_events": 1500, "n_users": 80, "n_items": 150, "seed": 5}}


def _spec(**overrides):
    data = {"datasets": {"tiny": TINY}, "steps": [100], "seeds": [0, 1],
            "protocol": {"warmup": 200}, "models": {"popularity": {}, "random": {}}}
    data.update(overrides)
    return GridSpec.from_dict(data, source="test.toml")


@pytest.mark.parametrize("data, key", [
    ({"models": {"popularity": {}}}, "datasets"),
    ({"datasets": ["synthetic"], "model": {}}, "model"),
    ({"datasets": ["synthetic"], "models": {"implicit-alz": {}}}, "models.implicit-alz"),
    ({"datasets": ["synthetic"], "models": {"implicit-als": {"factor": [8]}}},
     "models.implicit-als.factor"),
    ({"datasets": ["synthetic"], "models": {"random": {"seed": [1, 2]}}}, "models.random.seed"),
    ({"datasets": ["synthetic"], "steps": [0], "models": {"random": {}}}, "steps"),
    ({"datasets": ["synthetic"], "seeds": [1, 1], "models": {"random": {}}}, "seeds"),
    ({"datasets": ["synthetic"], "protocol": {"kk": 10}, "models": {"random": {}}},
     "protocol.kk"),
    ({"datasets": ["synthetic"], "protocol": {"warmup": 1.5}, "models": {"random": {}}},
     "protocol.warmup"),
    ({"datasets": {"d": {"synthetic": {"n_event": 10}}}, "models": {"random": {}}},
     "datasets.d.synthetic.n_event"),
    ({"datasets": {"d": {"path": "/no/such/file.csv"}}, "models": {"random": {}}},
     "datasets.d.path"),
    ({"datasets": ["ml-100kk"], "models": {"random": {}}}, "datasets.ml-100kk"),
])
def test_a_bad_spec_is_refused_naming_the_file_and_the_key(data, key):
    with pytest.raises(SpecError, match=rf"^test\.toml: {key}: "):
        GridSpec.from_dict(data, source="test.toml")


def test_a_toml_file_is_read_and_bad_toml_named(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('seeds = [0]\nsteps = [100, "1D"]\n[datasets]\ntiny = "synthetic"\n'
                    '[models.implicit-als]\nfactors = [8, 16]\niterations = 3\n')
    spec = load_spec(path)
    assert spec.steps == (100, "1D")
    assert [dict(c.params) for c in spec.cells()][:2] == [{"factors": 8, "iterations": 3},
                                                          {"factors": 16, "iterations": 3}]
    path.write_text("seeds = [0\n")
    with pytest.raises(SpecError, match=r"g\.toml: not valid TOML"):
        load_spec(path)


def test_every_combination_is_one_cell_and_a_model_without_a_seed_runs_once():
    spec = _spec(steps=[100, 300], models={"popularity": {}, "random": {},
                                           "decayed-popularity": {"half_life": [50, 500]}})
    cells = spec.cells()
    # 2 steps x (popularity once + random x 2 seeds + 2 half-lives once)
    assert len(cells) == 2 * (1 + 2 + 2)
    assert len({c.key for c in cells}) == len(cells)
    assert {c.seed for c in cells if c.model == "random"} == {0, 1}
    assert {c.seed for c in cells if c.model != "random"} == {None}
    # the key follows everything that defines a cell's numbers, the protocol included
    other = _spec(steps=[100, 300], protocol={"warmup": 100},
                  models={"popularity": {}, "random": {},
                          "decayed-popularity": {"half_life": [50, 500]}})
    assert not {c.key for c in cells} & {c.key for c in other.cells()}


@pytest.mark.parametrize("name", [n for n, ok in
                                  list_models()[["name", "installed"]].itertuples(index=False)
                                  if ok])
def test_every_registered_model_pickles_for_a_worker(name):
    events = synthetic_stream(n_events=400, n_users=40, n_items=60, seed=2)
    model = make(name)
    pickle.loads(pickle.dumps(model))  # as a cell's factory builds it
    model.fit(events.iloc[:300]).partial_fit(events.iloc[300:])
    copy = pickle.loads(pickle.dumps(model))
    users, items = events["user"][:50], events["item"][:50]
    np.testing.assert_array_equal(copy.score(users, items), model.score(users, items))


def test_without_ray_the_grid_runs_in_local_processes_and_names_the_extra(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an absent package looks like
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = run_grid(_spec(), tmp_path / "out", jobs=2)
    err = capsys.readouterr().err
    assert "Ray is not installed" in err and "recinc-plugins[ray]" in err
    assert "local worker processes, 2 at a time" in result.where
    assert (result.cells["status"] == "ok").all() and len(result.cells) == 3
    with pytest.raises(ImportError, match=r"recinc-plugins\[ray\]"):
        run_grid(_spec(), tmp_path / "other", address="127.0.0.1:1")


def test_an_existing_output_is_kept_unless_resumed_or_overwritten(tmp_path):
    run_grid(_spec(), tmp_path, local=True, jobs=1, progress=False)
    with pytest.raises(ValueError, match="--resume"):
        run_grid(_spec(), tmp_path, local=True, jobs=1, progress=False)
    again = run_grid(_spec(), tmp_path, local=True, jobs=1, progress=False, overwrite=True)
    assert len(again.ran) == 3


def test_the_report_gives_means_intervals_best_settings_and_paired_tests(tmp_path):
    spec = _spec(seeds=[0, 1, 2], models={
        "popularity": {}, "random": {},
        "decayed-popularity": {"half_life": [30, 3000]}})
    result = run_grid(spec, tmp_path, local=True, jobs=1, progress=False)
    table = pd.read_csv(tmp_path / "table.csv")
    rand = table[table["model"] == "random"].iloc[0]
    recalls = result.cells.loc[result.cells["model"] == "random", "recall@10"]
    assert rand["seeds"] == 3 and rand["recall@10"] == pytest.approx(recalls.mean())
    assert rand["recall@10_lo"] < rand["recall@10"] < rand["recall@10_hi"]
    for column in ("ndcg@10", "update_us_per_event", "events_per_s", "peak_mem_mb"):
        assert f"{column}_hi" in table.columns
    best = pd.read_csv(tmp_path / "best.csv")
    assert sorted(best["model"]) == ["decayed-popularity", "popularity", "random"]
    paired = pd.read_csv(tmp_path / "paired.csv")
    assert set(paired["seed"]) == {0, 1, 2} and len(paired) == 3 * 3  # 3 pairs per seed
    report = (tmp_path / "report.md").read_text()
    assert "Best setting per model" in report and "Paired tests" in report
    assert (tmp_path / "recall_vs_cost.png").exists()
    assert len(list((tmp_path / "curves").glob("*.csv"))) == len(result.cells)


def test_a_killed_grid_leaves_a_parseable_cells_csv_and_resume_finishes_it(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text('seeds = [0, 1, 2, 3]\nsteps = [1]\n[datasets.tiny.synthetic]\n'
                    'n_events = 8000\nn_users = 400\nn_items = 150\n'
                    "[protocol]\nwarmup = 500\n[models.river-biasedmf]\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "recinc_plugins.cli", "grid", str(spec), "--out", str(out),
           "--local", "--jobs", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len(read_cells(out)) >= 1:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rows = pd.read_csv(out / "cells.csv")  # whole lines only: pandas reads it as it is
    assert 1 <= len(rows) < 4 and (rows["status"] == "ok").all()
    result = run_grid(spec, out, local=True, jobs=1, resume=True, progress=False)
    assert len(result.ran) == 4 - len(rows)
    assert sorted(result.cells["seed"].astype(int)) == [0, 1, 2, 3]


def test_a_cell_whose_dataset_cannot_be_made_fails_alone(tmp_path):
    spec = _spec(datasets={"tiny": TINY, "short": {"synthetic": {
        "n_events": 150, "n_users": 20, "n_items": 30}}})
    result = run_grid(spec, tmp_path, local=True, jobs=1, progress=False)
    bad = result.cells[result.cells["dataset"] == "short"]
    assert (bad["status"] == "failed").all() and bad["error"].str.contains("warmup").all()
    assert (result.cells.loc[result.cells["dataset"] == "tiny", "status"] == "ok").all()
    assert Path(tmp_path / "errors").exists()


def test_cells_files_rows_are_the_cells_values(tmp_path):
    result = run_grid(_spec(), tmp_path, local=True, jobs=1, progress=False)
    frame = synthetic_stream(**TINY["synthetic"])
    from recinc_plugins.evaluation import Stream, compare

    direct = compare({"pop": make("popularity")}, Stream(frame, step=100, warmup=200))
    row = result.cells[result.cells["model"] == "popularity"].iloc[0]
    assert row["recall@10"] == pytest.approx(direct.summary["recall@10"][0], rel=1e-12)


def test_a_killed_local_worker_fails_its_cell_and_the_others_finish(tmp_path):
    import multiprocessing
    import threading

    spec = _spec(steps=[1], seeds=[0, 1, 2, 3], models={"river-biasedmf": {}}, datasets={
        "tiny": {"synthetic": {"n_events": 40_000, "n_users": 1000, "n_items": 300}}})
    box: dict = {}
    runner = threading.Thread(target=lambda: box.update(
        result=run_grid(spec, tmp_path, local=True, jobs=2, progress=False)))
    runner.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and runner.is_alive():
        workers = [p for p in multiprocessing.active_children()
                   if p.name == "recinc-grid-worker"]
        if workers:
            time.sleep(0.5)  # inside its first cell (each replays for about two seconds)
            os.kill(workers[0].pid, signal.SIGKILL)
            killed = workers[0].pid
        time.sleep(0.02)
    runner.join(120)
    assert killed is not None
    cells = box["result"].cells
    assert len(cells) == 4
    failed = cells[cells["status"] == "failed"]
    assert len(failed) == 1 and "died without a result" in failed["error"].iloc[0]
    assert (cells["status"] == "ok").sum() == 3
    assert not [p for p in multiprocessing.active_children() if p.name == "recinc-grid-worker"]


def test_the_example_spec_is_valid():
    spec = load_spec(Path(__file__).resolve().parent.parent / "examples" / "grid.toml")
    assert len(spec.cells()) == 42 and spec.protocol.ks == (10, 20)


def test_tuning_refuses_a_stream_with_deletion_requests_instead_of_dropping_them():
    pytest.importorskip("ray")
    from recinc_plugins.grid.tune import tune_model

    frame = synthetic_stream(n_events=600, n_users=40, n_items=60, feedback="implicit", seed=3)
    frame = frame.assign(event="view")
    request = frame.iloc[[300]].assign(event="delete", item=None)
    with_request = pd.concat([frame.iloc[:300], request, frame.iloc[300:]], ignore_index=True)
    with pytest.raises(ValueError, match="1 deletion request"):
        tune_model("decayed-popularity", {"half_life": "randint(10, 100)"}, with_request,
                   progress=False)
