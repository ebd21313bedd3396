"""Grids and tuning on a real local Ray (``ray.init(num_cpus=2)``, one per module)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip(
    "ray", reason="Ray is not installed: pip install 'recinc-plugins[ray]' to run the grid "
                  "and tuning tests on Ray")

from recinc_plugins import make  # noqa: E402
from recinc_plugins.cli import main  # noqa: E402
from recinc_plugins.data import synthetic_stream  # noqa: E402
from recinc_plugins.evaluation import Stream, compare  # noqa: E402
from recinc_plugins.grid import GridSpec, read_cells, run_grid  # noqa: E402

TINY = {"n_events": 3000, "n_users": 150, "n_items": 300, "seed": 7}
METRICS = ["recall@10", "precision@10", "f1@10", "ndcg@10", "mrr@10", "coverage@10",
           "warm_recall@10", "cold_user_recall@10", "rmse", "mae"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # a Ray of its own even where RAY_ADDRESS names a cluster
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning",
             log_to_driver=False)
    yield
    ray.shutdown()


def _spec(models, steps=(100, 250), seeds=(0, 1), **protocol):
    return GridSpec.from_dict({
        "datasets": {"tiny": {"synthetic": TINY}}, "steps": list(steps),
        "seeds": list(seeds), "protocol": {"warmup": 300, **protocol}, "models": models})


def test_a_3x2x2_grid_on_ray_gives_the_numbers_of_compare_cell_by_cell(tmp_path):
    spec = _spec({"random": {}, "implicit-als": {"factors": 8, "iterations": 3},
                  "lightfm": {"no_components": 8}})
    result = run_grid(spec, tmp_path, progress=False)
    assert "Ray" in result.where and len(result.ran) == 12
    cells = result.cells
    assert len(cells) == 12 and (cells["status"] == "ok").all()
    assert cells["node"].notna().all() and cells["pid"].nunique() >= 1
    frame = synthetic_stream(**TINY)
    for cell in spec.cells():
        row = cells[cells["cell"] == cell.key].iloc[0]
        model = make(cell.name, **cell.model_params())
        direct = compare({"m": model}, Stream(frame, step=cell.step, warmup=300),
                         k=10).summary.iloc[0]
        for metric in METRICS:
            np.testing.assert_allclose(row[metric], direct[metric], rtol=1e-12,
                                       err_msg=f"{cell.label}: {metric}")
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 6 and (table["seeds"] == 2).all()


def test_a_cell_that_raises_is_a_failure_row_and_the_others_finish(tmp_path):
    spec = _spec({"decayed-popularity": {"half_life": [-5, 100]}, "random": {}}, steps=[100],
                 seeds=[0])
    result = run_grid(spec, tmp_path, progress=False)
    cells = result.cells.set_index("params")
    bad = cells.loc['{"half_life": -5}']
    assert bad["status"] == "failed" and "half_life must be > 0" in bad["error"]
    assert "half_life must be > 0" in (tmp_path / "errors" / f"{bad['cell']}.txt").read_text()
    assert (result.cells["status"] == "ok").sum() == 2
    assert "Failed cells" in (tmp_path / "report.md").read_text()


def _running_cells() -> dict[int, str]:
    """Ray worker pid -> key of the grid cell it runs now (Ray titles a busy worker
    ``ray::<task name>`` and an idle one ``ray::IDLE``)."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if cmd.startswith(b"ray::recinc-grid-cell-"):
            title = cmd.split(b"\0")[0].split(b" ")[0].decode()
            found[int(pid)] = title[len("ray::recinc-grid-cell-"):]
    return found


def test_killing_a_worker_mid_cell_still_completes_the_grid(tmp_path):
    # one event per step on 60,000 events: each cell replays for about three seconds
    spec = GridSpec.from_dict({
        "datasets": {"long": {"synthetic": {**TINY, "n_events": 60_000, "n_users": 1000}}},
        "steps": [1], "seeds": [0, 1], "protocol": {"warmup": 300},
        "models": {"river-biasedmf": {}}})
    box: dict = {}
    runner = threading.Thread(target=lambda: box.update(
        result=run_grid(spec, tmp_path, progress=False)))
    runner.start()
    killed = killed_cell = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and runner.is_alive():
        if _running_cells():
            time.sleep(0.2)  # inside the cell
            # read the title again right before the kill: the worker must still be in the cell
            for pid, key in _running_cells().items():
                os.kill(pid, signal.SIGKILL)
                killed, killed_cell = pid, key
                break
        time.sleep(0.02)
    runner.join(300)
    assert "result" in box, "run_grid raised: see the thread's traceback above"
    assert killed is not None, "no cell process was seen running"
    cells = box["result"].cells.set_index("cell")
    assert len(cells) == 2 and (cells["status"] == "ok").all()  # Ray reran the killed cell
    assert killed_cell in cells.index
    # the killed cell's numbers come from the rerun, in another worker
    assert cells.loc[killed_cell, "pid"] != killed


def test_resume_runs_only_the_missing_cells(tmp_path):
    spec = _spec({"random": {}, "decayed-popularity": {"half_life": [100, 1000]}},
                 steps=[250])
    first = run_grid(spec, tmp_path, progress=False)
    assert len(first.ran) == 4
    lines = (tmp_path / "cells.csv").read_text().splitlines(keepends=True)
    kept, dropped = lines[:3], lines[3:]  # the header and two cells
    (tmp_path / "cells.csv").write_text("".join(kept))
    dropped_keys = sorted(line.split(",")[0] for line in dropped)
    again = run_grid(spec, tmp_path, progress=False, resume=True)
    assert sorted(again.ran) == dropped_keys and len(again.skipped) == 2
    assert len(read_cells(tmp_path)) == 4
    np.testing.assert_allclose(
        again.cells.sort_values("cell")["recall@10"].to_numpy(),
        first.cells.sort_values("cell")["recall@10"].to_numpy(), rtol=1e-12)


def test_recinc_tune_beats_the_defaults_and_asha_stops_trials_early(tmp_path, capsys):
    # the built-in synthetic stream: tastes drift and items fade, so a half-life below the
    # default 10,000 events does better
    code = main(["tune", "decayed-popularity", "--space", "half_life=lograndint(100, 10001)",
                 "--step", "1000", "--samples", "8", "--rungs", "3", "--quiet",
                 "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "tuned on events 1-10,000 (the first 50%)" in out
    assert "reported on events 10,001-20,000 (the rest)" in out
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 8 and (trials["status"] == "stopped early").sum() >= 1
    assert trials.loc[0, "half_life"] == 10_000  # the defaults are the first trial
    # the defaults on the tuning part, replayed here: a completed trial beat them
    frame = Stream(synthetic_stream(), step=1000).frame.iloc[:10_000]
    defaults = compare({"d": make("decayed-popularity")}, Stream(frame, step=1000),
                       k=10).summary["recall@10"][0]
    tuning = pd.read_csv(tmp_path / "tuning.csv").set_index("setting")
    assert tuning.loc["defaults", "recall@10"] == pytest.approx(defaults, rel=1e-12)
    completed = trials[trials["status"] == "completed"]
    assert completed["recall@10"].max() > defaults
    assert tuning.loc["best", "recall@10"] == pytest.approx(completed["recall@10"].max())
    holdout = pd.read_csv(tmp_path / "holdout.csv").set_index("model")
    assert list(holdout.index) == ["defaults", "tuned"] and (holdout["events"] == 10_000).all()


TWO_NODES = textwrap.dedent("""
    import sys
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    print(cluster.address, flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.shutdown()
""")


@pytest.mark.slow
def test_a_grid_runs_on_a_two_node_cluster_through_address(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text(textwrap.dedent("""
        seeds = [0, 1]
        steps = [100]
        [datasets.tiny.synthetic]
        n_events = 3000
        n_users = 150
        n_items = 300
        [protocol]
        warmup = 300
        [models.implicit-als]
        factors = [8, 16]
        iterations = 3
    """))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    head = subprocess.Popen([sys.executable, "-c", TWO_NODES], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        address = head.stdout.readline().strip()
        assert address, "the two-node cluster did not start"
        out = tmp_path / "out"
        run = subprocess.run([sys.executable, "-m", "recinc_plugins.cli", "grid", str(spec),
                              "--out", str(out), "--address", address, "--quiet"],
                             capture_output=True, text=True, timeout=240, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"on the Ray cluster at {address} (2 nodes, 2 CPUs)" in run.stderr
        cells = pd.read_csv(out / "cells.csv")
        assert len(cells) == 4 and (cells["status"] == "ok").all()
        assert cells["node"].nunique() == 2  # each node ran cells
    finally:
        head.stdin.close()
        head.wait(60)


def test_an_address_where_no_cluster_listens_is_a_clear_error_in_seconds(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = tmp_path / "g.toml"
    spec.write_text('datasets = ["synthetic"]\n[models.popularity]\n')
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, "-m", "recinc_plugins.cli", "grid", str(spec),
                          "--out", str(tmp_path / "out"), "--address", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2
    assert f"could not reach the Ray cluster at 127.0.0.1:{port}" in run.stderr
    assert "ray start --head" in run.stderr
