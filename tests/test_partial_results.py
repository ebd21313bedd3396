"""Partial results survive: rows written as each model ends, Ctrl-C, a budget, a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recinc_plugins.base import Batch
from recinc_plugins.baselines import Popularity, Random
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.evaluation.comparison import CompareInterrupted


class Failing(Popularity):
    """Popularity that raises on its third update."""

    def _partial_fit(self, batch: Batch) -> None:
        self.calls_ = getattr(self, "calls_", 0) + 1
        if self.calls_ == 3:
            raise RuntimeError("boom on the third step")
        super()._partial_fit(batch)


class Sleepy(Popularity):
    """Popularity that sleeps 20 ms per step: over a 0.15 s budget after a few steps."""

    def _partial_fit(self, batch: Batch) -> None:
        time.sleep(0.02)
        super()._partial_fit(batch)


class Slower(Popularity):
    """Popularity that sleeps 0.1 s per step (about 1.2 s over the stream below)."""

    def _partial_fit(self, batch: Batch) -> None:
        time.sleep(0.1)
        super()._partial_fit(batch)


class Interrupting(Popularity):
    """Popularity that, on its fourth update, does what Ctrl-C does: a KeyboardInterrupt in the
    process that runs the comparison (n_jobs=1)."""

    def _partial_fit(self, batch: Batch) -> None:
        self.calls_ = getattr(self, "calls_", 0) + 1
        if self.calls_ == 4:
            raise KeyboardInterrupt
        super()._partial_fit(batch)


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream(synthetic_stream(n_events=600, n_users=30, n_items=60, seed=2), step=50)


def _rows(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "summary.csv")


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_failure_a_budget_overrun_and_a_finished_model_each_leave_a_row(stream, tmp_path,
                                                                          n_jobs):
    out = tmp_path / "run"
    res = compare({"pop": Popularity(), "bad": Failing(), "sleepy": Sleepy()}, stream,
                  time_budget_s=0.15, n_jobs=n_jobs, out=out)
    rows = _rows(out).set_index("model")
    assert list(rows.index) == ["pop", "bad", "sleepy"]
    assert rows.loc["pop", "status"] == "ok"
    assert rows.loc["pop", "recall@10"] == pytest.approx(res.summary["recall@10"].iloc[0])
    assert rows.loc["bad", "status"] == "failed"
    assert "boom on the third step" in rows.loc["bad", "error"]
    assert rows.loc["sleepy", "status"] == "failed"
    assert "time budget" in rows.loc["sleepy", "error"]
    status = _status(out)
    assert status["state"] == "finished"
    assert {m: s["status"] for m, s in status["models"].items()} == \
        {"pop": "ok", "bad": "failed", "sleepy": "failed"}
    assert "boom" in status["models"]["bad"]["error"]
    # the live summary is the final one, as CompareResult.write would write it
    pd.testing.assert_frame_equal(_rows(out), pd.read_csv(_written(res, tmp_path / "final")))
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


def _written(res, folder: Path) -> Path:
    return res.write(folder, plots=False)["summary.csv"]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_model_row_is_written_as_soon_as_it_ends(stream, tmp_path, n_jobs):
    out = tmp_path / "run"
    box: dict = {}
    run = threading.Thread(target=lambda: box.setdefault("res", compare(
        {"pop": Popularity(), "slower": Slower()}, stream, n_jobs=n_jobs, out=out)))
    run.start()
    try:
        end = time.monotonic() + 20
        while True:
            assert time.monotonic() < end, "no row for 'pop' while 'slower' ran"
            # status.json is rewritten after summary.csv: once it says "ok", the row is there
            if (out / "status.json").exists() and _status(out)["models"] == \
                    {"pop": {"status": "ok"}, "slower": {"status": "running"}}:
                break
            time.sleep(0.01)
        assert run.is_alive()  # the comparison is still going: slower has not ended
        assert _rows(out)["model"].tolist() == ["pop"]
    finally:
        run.join(timeout=60)
    assert _rows(out)["model"].tolist() == ["pop", "slower"]
    assert _status(out)["state"] == "finished"


def test_ctrl_c_keeps_the_models_that_finished(stream, tmp_path):
    out = tmp_path / "run"
    models = {"pop": Popularity(), "stopper": Interrupting(), "random": Random(seed=0)}
    with pytest.raises(KeyboardInterrupt) as info:  # code that does not catch it stops
        compare(models, stream, out=out)
    assert isinstance(info.value, CompareInterrupted)
    res = info.value.result
    assert list(res.records) == ["pop"] and res.unfinished == ["stopper", "random"]
    assert not res.failures
    status = res.summary.set_index("model")["status"]
    assert status.to_dict() == {"pop": "ok", "stopper": "not finished",
                                "random": "not finished"}
    assert _rows(out).set_index("model")["status"].to_dict() == status.to_dict()
    assert _status(out)["state"] == "interrupted"
    assert {m: s["status"] for m, s in _status(out)["models"].items()} == status.to_dict()
    written = res.write(out, plots=False)  # the report of the finished models
    report = written["report.md"].read_text()
    assert "Interrupted" in report and "stopper, random did not finish" in report
    assert json.loads(written["summary.json"].read_text())["not_finished"] == \
        ["stopper", "random"]


def test_an_unwritable_out_folder_fails_before_any_work(stream, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        compare({"pop": Popularity()}, stream, out=blocker / "run")


# -- the command line, killed and interrupted ---------------------------------------------

_SCRIPT = textwrap.dedent('''
    """`recinc compare` with one more model: popularity that sleeps 0.2 s per step."""
    import sys
    import time

    from recinc_plugins.baselines import Popularity
    from recinc_plugins.cli import main
    from recinc_plugins.registry import register


    class SlowPopularity(Popularity):
        """Popularity that sleeps 0.2 s per step."""

        def _partial_fit(self, batch):
            time.sleep(0.2)
            super()._partial_fit(batch)


    register("slow-popularity", SlowPopularity)

    if __name__ == "__main__":
        sys.exit(main(["compare", *sys.argv[1:]]))
''')


def _start(tmp_path: Path, out: Path, models: str, jobs: int) -> subprocess.Popen:
    script = tmp_path / "recinc_slow.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # 20,000 synthetic events in 500-event steps: popularity ends in a blink, the slow model
    # would take 8 s
    return subprocess.Popen(
        [sys.executable, str(script), "--quiet", "--out", str(out), "--models", models,
         "--step", "500", "--jobs", str(jobs), "--no-plots"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_row(proc: subprocess.Popen, out: Path, name: str, timeout: float = 30) -> None:
    """Wait until status.json says model ``name`` ended "ok" (summary.csv, written just
    before, then has its row)."""
    end = time.monotonic() + timeout
    while True:
        if (out / "status.json").exists() and \
                _status(out)["models"].get(name, {}).get("status") == "ok":
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"no row for {name!r} within {timeout} s")
        time.sleep(0.02)


def _processes_running(script: str) -> list[int]:
    """Processes whose command line names ``script`` (the run and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if script.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _no_process_left(script: str, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while _processes_running(script):
        if time.monotonic() > end:
            raise AssertionError(f"still running: {_processes_running(script)}")
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_killed_quiet_run_leaves_the_rows_of_the_models_that_finished(tmp_path, jobs):
    out = tmp_path / "run"
    proc = _start(tmp_path, out, "popularity,slow-popularity", jobs)
    _wait_for_row(proc, out, "popularity")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    rows = _rows(out).set_index("model")
    assert rows.index.tolist() == ["popularity"]
    assert rows.loc["popularity", "status"] == "ok"
    assert rows.loc["popularity", "events"] == 20_000
    assert 0 < rows.loc["popularity", "recall@10"] < 1
    status = _status(out)
    assert status["state"] == "running" and status["pid"] == proc.pid  # and it is gone
    assert status["models"]["popularity"]["status"] == "ok"
    assert status["models"]["slow-popularity"]["status"] in ("waiting", "running")
    # a worker whose parent was killed is killed with it
    _no_process_left(str(tmp_path / "recinc_slow.py"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_on_the_command_line_says_which_models_did_not_finish(tmp_path, jobs):
    out = tmp_path / "run"
    proc = _start(tmp_path, out, "popularity,slow-popularity", jobs)
    _wait_for_row(proc, out, "popularity")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 5  # it stopped, rather than finishing the slow model
    assert proc.returncode == 130, stderr
    assert "slow-popularity did not finish" in stderr
    assert "popularity" in stdout  # the summary table of what finished
    rows = _rows(out).set_index("model")
    assert rows["status"].to_dict() == {"popularity": "ok", "slow-popularity": "not finished"}
    assert np.isfinite(rows.loc["popularity", "recall@10"])
    status = _status(out)
    assert status["state"] == "interrupted"
    assert status["models"]["slow-popularity"]["status"] == "not finished"
    assert "Interrupted" in (out / "report.md").read_text()
    _no_process_left(str(tmp_path / "recinc_slow.py"))
