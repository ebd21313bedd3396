"""Checkpoints: a replay killed mid-run and resumed ends with an uninterrupted run's numbers."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from recinc_plugins.base import Batch
from recinc_plugins.baselines import DecayedPopularity, Popularity, Random
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.evaluation.prequential import _safe_name


class SlowPopularity(Popularity):
    """Popularity that takes a few milliseconds per step, so a run can be killed midway."""

    def _partial_fit(self, batch: Batch) -> None:
        time.sleep(0.005)
        super()._partial_fit(batch)


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream(synthetic_stream(n_events=3000, n_users=120, n_items=200, seed=5), step=10,
                  warmup=200)


def _same_numbers(a, b) -> None:
    np.testing.assert_array_equal(a.rank, b.rank)
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_array_equal(a.recommended, b.recommended)


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def test_kill_a_worker_and_resume_gives_the_same_numbers(stream, tmp_path):
    models = {"slow": SlowPopularity(), "decayed": DecayedPopularity(half_life=300)}
    full = compare(models, stream, ks=(5, 10))

    box = {}
    run = threading.Thread(target=lambda: box.setdefault("res", compare(
        models, stream, ks=(5, 10), n_jobs=2, checkpoint_dir=tmp_path, checkpoint_every=40)))
    run.start()
    _wait_for(tmp_path / f"{_safe_name('slow')}.state")
    workers = [p for p in multiprocessing.active_children()
               if p.name == "recinc-compare-slow"]
    assert len(workers) == 1
    os.kill(workers[0].pid, signal.SIGKILL)
    run.join(timeout=60)
    killed = box["res"]
    assert "died" in killed.failures["slow"] and "-9" in killed.failures["slow"]
    assert list(killed.records) == ["decayed"]  # the other model finished
    _same_numbers(killed.records["decayed"], full.records["decayed"])

    resumed = compare(models, stream, ks=(5, 10), n_jobs=2, checkpoint_dir=tmp_path,
                      checkpoint_every=40, resume=True)
    assert not resumed.failures
    record = resumed.records["slow"]
    assert 0 < record.resumed_from < stream.n_steps  # it carried on from the middle
    _same_numbers(record, full.records["slow"])
    metrics = ["recall@5", "recall@10", "ndcg@10", "mrr@10", "coverage@10", "events"]
    assert resumed.summary[metrics].equals(full.summary[metrics])


class CrashingRandom(Random):
    """Seeded random model that raises on update number ``crash_at`` (a class-level switch,
    so a model reloaded from a checkpoint carries on)."""

    crash_at: int | None = None

    def _partial_fit(self, batch: Batch) -> None:
        self.calls_ = getattr(self, "calls_", 0) + 1
        if self.calls_ == CrashingRandom.crash_at:
            raise RuntimeError("crash")


def test_a_crashed_replay_resumes_from_its_last_checkpoint(stream, tmp_path):
    full = compare({"random": CrashingRandom(seed=3)}, stream, k=10)
    CrashingRandom.crash_at = 175
    try:
        crashed = compare({"random": CrashingRandom(seed=3)}, stream, k=10,
                          checkpoint_dir=tmp_path, checkpoint_every=50)
    finally:
        CrashingRandom.crash_at = None
    assert "RuntimeError: crash" in crashed.failures["random"]
    resumed = compare({"random": CrashingRandom(seed=3)}, stream, k=10,
                      checkpoint_dir=tmp_path, checkpoint_every=50, resume=True)
    assert resumed.records["random"].resumed_from == 150
    _same_numbers(resumed.records["random"], full.records["random"])
    assert resumed.summary["recall@10"].equals(full.summary["recall@10"])


def test_a_checkpoint_from_another_stream_is_refused(stream, tmp_path):
    compare({"pop": Popularity()}, stream, k=10, checkpoint_dir=tmp_path, checkpoint_every=100)
    other = Stream(stream.frame, step=20, warmup=200)
    with pytest.raises(ValueError, match="another stream or protocol"):
        compare({"pop": Popularity()}, other, k=10, checkpoint_dir=tmp_path, resume=True)


def test_models_whose_names_make_the_same_file_name_keep_their_own_checkpoints(stream,
                                                                                tmp_path):
    models = {"pop/a": Popularity(), "pop_a": DecayedPopularity(half_life=100)}
    full = compare(models, stream, k=10, checkpoint_dir=tmp_path, checkpoint_every=100)
    assert len(list(tmp_path.glob("*.state"))) == 2
    resumed = compare(models, stream, k=10, checkpoint_dir=tmp_path, resume=True)
    for name in models:
        assert resumed.records[name].resumed_from == stream.n_steps
        _same_numbers(resumed.records[name], full.records[name])
    # a state file copied under another model's name is refused, not loaded
    shutil.copy(tmp_path / f"{_safe_name('pop/a')}.state",
                tmp_path / f"{_safe_name('pop_a')}.state")
    with pytest.raises(ValueError, match="written for model 'pop/a', not 'pop_a'"):
        compare(models, stream, k=10, checkpoint_dir=tmp_path, resume=True)


def test_a_checkpoint_of_a_model_with_other_parameters_is_refused(stream, tmp_path):
    compare({"decayed": DecayedPopularity(half_life=100)}, stream, k=10,
            checkpoint_dir=tmp_path, checkpoint_every=100)
    with pytest.raises(ValueError, match=r"model 'decayed' was written with other parameters "
                                         r"\(half_life: 100 -> 200\)"):
        compare({"decayed": DecayedPopularity(half_life=200)}, stream, k=10,
                checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"model 'decayed' was written for a "
                                         r"recinc_plugins\.baselines.*DecayedPopularity"):
        compare({"decayed": Popularity()}, stream, k=10, checkpoint_dir=tmp_path, resume=True)
    resumed = compare({"decayed": DecayedPopularity(half_life=100)}, stream, k=10,
                      checkpoint_dir=tmp_path, resume=True)
    assert resumed.records["decayed"].resumed_from == stream.n_steps
