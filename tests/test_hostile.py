"""A hostile user's tries: crafted files that must not run code, damaged files, diverging
models, ambiguous timestamps, loose parameters, two runs on one folder. Each row of issue 15's
table is a test here; ``docs/security.md`` says what is safe to load."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins import IncrementalRecommender, ModelFileError, make
from recinc_plugins.baselines import Popularity
from recinc_plugins.persistence import MODEL_MAGIC, read_container
from recinc_plugins.registry import _REGISTRY

EVENTS = pd.DataFrame({"user": [1, 1, 2, 3, "u4", "u4"], "item": ["a", "b", "a", "c", "a", 7],
                       "rating": [4.0, 3.0, 5.0, 2.0, 1.0, 4.0]})


# -- crafting files: the format of docs/security.md, with a valid checksum ---------------------

def _write_format_2(path: Path, header: dict, arrays: dict[str, np.ndarray],
                    magic: bytes = MODEL_MAGIC) -> None:
    """A format-2 file: prefix, payload length, JSON header, .npz payload, SHA-256."""
    header_bytes = json.dumps(header).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    size = struct.pack("<Q", len(payload))
    digest = hashlib.sha256(header_bytes + payload + size).digest()
    path.write_bytes(struct.pack("<8sII", magic, 2, len(header_bytes)) + size + header_bytes
                     + payload + digest)


def _read_format_2(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    _, header, payload = read_container(path, MODEL_MAGIC)
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return header, {key: archive[key] for key in archive.files}


class _RunsCode:
    """Unpickling this touches the marker file: what an attacker's payload would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "popularity.recinc"
    Popularity().fit(EVENTS).save(path)
    return path


# -- model files that cannot run code ----------------------------------------------------------

def test_a_crafted_pickle_with_a_valid_checksum_does_not_run(saved, tmp_path):
    marker = tmp_path / "ran"
    header, arrays = _read_format_2(saved)
    arrays["pickle"] = np.frombuffer(pickle.dumps([_RunsCode(marker)]), dtype=np.uint8)
    header["content"]["s"]["state"] = {"$": "pickle", "@": 999, "i": 0}
    _write_format_2(saved, header, arrays)
    with pytest.raises(ModelFileError, match=r"holds posix:system, which is not among the "
                                             r"types a model file may hold.*trusted=True"):
        recinc_plugins.load(saved)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["os:system", "builtins:eval", "subprocess:Popen",
                                  "recinc_plugins.evaluation.comparison:_Live"])
def test_an_object_of_a_type_off_the_allow_list_is_refused_by_name(saved, name):
    header, arrays = _read_format_2(saved)
    header["content"]["s"]["state"] = {"$": "obj", "@": 999, "cls": name,
                                       "state": {"$": "dict", "@": 1000, "s": {}}}
    _write_format_2(saved, header, arrays)
    with pytest.raises(ModelFileError, match=f"holds {name}, which is not among the types"):
        recinc_plugins.load(saved)


@pytest.mark.parametrize("name", ["numpy.random._pcg64:PCG64", "functools:partial",
                                  "collections:defaultdict"])
def test_an_allowed_class_is_rebuilt_from_attributes_only_when_pickle_would(saved, name):
    """Classes the payload's pickle may call are not half-built from attributes."""
    header, arrays = _read_format_2(saved)
    header["content"]["s"]["state"] = {"$": "obj", "@": 999, "cls": name,
                                       "state": {"$": "dict", "@": 1000, "s": {}}}
    _write_format_2(saved, header, arrays)
    with pytest.raises(ModelFileError, match="is not rebuilt from its attributes"):
        recinc_plugins.load(saved)


def test_a_header_naming_another_module_imports_nothing(saved, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "recinc_hostile_module.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").close()
        class Model:
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    header, arrays = _read_format_2(saved)
    header["class"] = "recinc_hostile_module:Model"
    _write_format_2(saved, header, arrays)
    with pytest.raises(ModelFileError, match=r"holds a recinc_hostile_module:Model model, "
                                             r"which is neither registered .* nor imported"):
        recinc_plugins.load(saved)
    assert not marker.exists() and "recinc_hostile_module" not in sys.modules
    # trusted=True is the explicit opt-in: then the module is imported (and refused after)
    with pytest.raises(ModelFileError, match="not a IncrementalRecommender"):
        recinc_plugins.load(saved, trusted=True)
    assert marker.exists()
    monkeypatch.delitem(sys.modules, "recinc_hostile_module")


def test_a_format_1_file_is_a_pickle_loaded_only_when_trusted(tmp_path):
    """Files of the earlier format: refused with a message saying why, read with
    trusted=True (and a crafted one then runs, which is what trusted means)."""
    model = Popularity().fit(EVENTS)
    payload = pickle.dumps({"params": model.get_params(), "state": model._get_state()})
    header = json.dumps({"format": 1, "class": "recinc_plugins.baselines:Popularity",
                         "payload_bytes": len(payload),
                         "payload_sha256": hashlib.sha256(payload).hexdigest()}).encode()
    path = tmp_path / "old.recinc"
    path.write_bytes(struct.pack("<8sII", MODEL_MAGIC, 1, len(header)) + header + payload)
    with pytest.raises(ModelFileError, match=r"model format 1 .* a pickle, which can run any "
                                             r"code .* trusted=True only if you trust"):
        recinc_plugins.load(path)
    loaded = recinc_plugins.load(path, trusted=True)
    assert loaded.recommend([1, 9], k=2).items.tolist() == \
        model.recommend([1, 9], k=2).items.tolist()


def test_the_file_holds_arrays_and_json_only(saved):
    header, arrays = _read_format_2(saved)
    assert "pickle" not in arrays  # nothing of a baseline needs one
    assert all(a.dtype != object for a in arrays.values())
    assert header["class"] == "recinc_plugins.baselines:Popularity"


def _registered_names() -> list[str]:
    return sorted(name for name, spec in _REGISTRY.items()
                  if spec.source == "built-in" and spec.installed)


@pytest.mark.parametrize("name", _registered_names())
def test_every_registered_model_saves_and_loads_exactly_without_trust(name, tmp_path):
    """The same recommendations and scores after load, and after both learn the same events."""
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({
        "user": [f"u{u}" if u % 3 == 0 else int(u) for u in rng.integers(0, 40, n)],
        "item": rng.integers(0, 60, n),
        "rating": rng.integers(1, 6, n).astype(float),
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="min"),
    })
    names = type(make(name))._param_names()
    params = {key: value for key, value in (("seed", 0), ("num_threads", 1)) if key in names}
    model = make(name, **params).fit(frame.iloc[:400]).partial_fit(frame.iloc[400:500])
    model.save(tmp_path / "m.recinc")
    loaded = recinc_plugins.load(tmp_path / "m.recinc")
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    users = [*frame["user"].unique()[:20], "nobody"]
    for _ in range(2):
        a, b = model.recommend(users, k=5), loaded.recommend(users, k=5)
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(model.score(frame["user"][:50], frame["item"][:50]),
                                      loaded.score(frame["user"][:50], frame["item"][:50]))
        model.partial_fit(frame.iloc[500:])
        loaded.partial_fit(frame.iloc[500:])


def test_a_plugin_class_loads_once_imported_or_registered(tmp_path):
    class Plugin(Popularity):
        """A model defined outside the package."""

    Plugin.__module__, Plugin.__qualname__ = "recinc_hostile_plugin", "Plugin"
    Plugin().fit(EVENTS).save(tmp_path / "p.recinc")
    # already imported (it is a live subclass): loads without trust
    assert type(IncrementalRecommender.load(tmp_path / "p.recinc")) is Plugin


# -- checkpoints ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_stream():
    from recinc_plugins.data import synthetic_stream
    from recinc_plugins.evaluation import Stream

    return Stream(synthetic_stream(n_events=1500, n_users=80, n_items=120, seed=2), step=50,
                  warmup=100)


def _checkpointed(stream, folder: Path) -> Path:
    from recinc_plugins.evaluation import compare
    from recinc_plugins.evaluation.prequential import _safe_name

    compare({"pop": Popularity()}, stream, checkpoint_dir=folder, checkpoint_every=10)
    return folder / f"{_safe_name('pop')}.state"


def _resume(stream, folder: Path):
    from recinc_plugins.evaluation import compare

    return compare({"pop": Popularity()}, stream, checkpoint_dir=folder, resume=True)


def test_a_truncated_or_flipped_checkpoint_is_a_checkpoint_error_naming_it(small_stream,
                                                                            tmp_path):
    from recinc_plugins.evaluation.prequential import CheckpointError

    path = _checkpointed(small_stream, tmp_path)
    data = path.read_bytes()
    assert _resume(small_stream, tmp_path).records["pop"].resumed_from == small_stream.n_steps
    for cut in (len(data) - 1, len(data) // 2, 30, 3):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"{path}.* (truncated|not a recinc)"):
            _resume(small_stream, tmp_path)
    # one flipped bit anywhere: an error, never a resumed run with other numbers
    for position in np.linspace(0, len(data) - 1, 60).astype(int):
        flipped = bytearray(data)
        flipped[position] ^= 0x04
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=str(path)):
            _resume(small_stream, tmp_path)


def test_a_crafted_checkpoint_runs_no_code(small_stream, tmp_path):
    from recinc_plugins.evaluation.prequential import CheckpointError
    from recinc_plugins.persistence import CHECKPOINT_MAGIC

    marker = tmp_path / "ran"
    path = _checkpointed(small_stream, tmp_path / "run")
    _, header, payload = read_container(path, CHECKPOINT_MAGIC)
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["pickle"] = np.frombuffer(pickle.dumps([_RunsCode(marker)]), dtype=np.uint8)
    header["content"]["s"]["replay"] = {"$": "pickle", "@": 10**6, "i": 0}
    _write_format_2(path, header, arrays, magic=CHECKPOINT_MAGIC)
    with pytest.raises(CheckpointError, match=f"{path} holds posix:system"):
        _resume(small_stream, tmp_path / "run")
    assert not marker.exists()
    # a checkpoint of the earlier format was a bare pickle: refused unread
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(CheckpointError, match="as a pickle, which this version does not load"):
        _resume(small_stream, tmp_path / "run")
    assert not marker.exists()


# -- one absurd rating; models that diverge ------------------------------------------------------

@pytest.fixture(scope="module")
def ratings():
    from recinc_plugins.data import synthetic_stream

    return synthetic_stream(n_events=1500, n_users=60, n_items=100, seed=1)


def _with_rating(frame: pd.DataFrame, position: int, value: float) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[position, "rating"] = value
    return frame


def test_one_rating_of_1000_is_refused_naming_its_position_or_clipped_or_dropped(ratings):
    from recinc_plugins.data import InteractionsError
    from recinc_plugins.evaluation import Stream, compare

    bad = Stream(_with_rating(ratings, 700, 1000.0))  # the CLI's defaults: steps of 1000
    with pytest.raises(InteractionsError, match=r"1 rating\(s\) outside the rating scale "
                                                r"\[1, 5\] .*1000 looked like errors.* "
                                                r"positions .* 700 \(1000\)") as info:
        compare({"svd": make("surprise-svd")}, bad)
    assert info.value.rows.tolist() == [700]
    clean = compare({"svd": make("surprise-svd", seed=0)}, Stream(ratings))
    for policy in ("clip", "drop"):
        res = compare({"svd": make("surprise-svd", seed=0)}, bad, on_out_of_scale=policy)
        assert res.out_of_scale == {"policy": policy, "events": 1}
        assert res.rating_scale == (1.0, 5.0)
        assert res.summary["status"].tolist() == ["ok"]
        assert abs(res.summary["recall@10"][0] - clean.summary["recall@10"][0]) < 0.02
    with pytest.raises(InteractionsError, match=r"outside the rating scale \[1, 4\] \(as given"):
        compare({"svd": make("surprise-svd")}, Stream(ratings), rating_scale=(1, 4))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_model_that_diverges_is_reported_diverged_with_its_step(ratings, n_jobs):
    """The rating of 1000 learned in the warm-up (scale check off): Surprise's SVD turns to
    NaN; compare says so, at the first scored step, and the others finish."""
    from recinc_plugins.evaluation import Stream, compare

    stream = Stream(_with_rating(ratings, 100, 1000.0), step=50, warmup=200)
    res = compare({"svd": make("surprise-svd", seed=0), "pop": Popularity()}, stream,
                  rating_scale=None, n_jobs=n_jobs)
    rows = res.summary.set_index("model")
    assert rows.loc["svd", "status"] == "diverged" and rows.loc["svd", "diverged_step"] == 0
    assert "predicted ratings are not finite when step 0" in rows.loc["svd", "error"]
    assert rows.loc["pop", "status"] == "ok" and res.diverged == {"svd": 0}


class _Explodes(Popularity):
    """Popularity whose scores (and predicted ratings) turn NaN once it learns item "boom"."""

    def _partial_fit(self, batch) -> None:
        super()._partial_fit(batch)
        boom = self.item_index_.lookup(["boom"])[0]
        if boom >= 0 and (batch.items == boom).any():
            self.boom_ = True

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        scores = super()._score_users(users)
        return scores * np.nan if getattr(self, "boom_", False) else scores


@pytest.mark.parametrize("step", [1, 7])
def test_the_step_of_the_divergence_is_the_first_scored_after_it(step):
    from recinc_plugins.evaluation import Stream, compare

    users = np.arange(300) % 40
    items = (np.arange(300) * 7) % 90
    frame = pd.DataFrame({"user": users, "item": items.astype(object)})
    frame.loc[150, "item"] = "boom"
    stream = Stream(frame, step=step, warmup=20)
    res = compare({"x": _Explodes()}, stream)
    learned_at = int(np.searchsorted(stream.bounds, 150, side="right")) - 1
    assert res.diverged == {"x": learned_at + 1}
    assert res.summary["status"].tolist() == ["diverged"]


# -- output folders: one run at a time, files whole ----------------------------------------------

def _hold(folder: str, ready) -> None:
    from recinc_plugins.evaluation.report import folder_lock

    with folder_lock(folder):
        ready.set()
        import time

        time.sleep(60)


def test_a_second_run_on_the_same_out_folder_is_refused_at_once_and_a_dead_ones_lock_taken_over(
        tmp_path):
    import multiprocessing
    import signal

    from recinc_plugins.evaluation import compare
    from recinc_plugins.evaluation.report import LOCK_NAME, OutputFolderBusy

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(OutputFolderBusy, match=rf"being written by another run, process "
                                                   rf"{holder.pid} .*another folder"):
            compare({"pop": Popularity()}, EVENTS, out=tmp_path)
        assert not (tmp_path / "summary.csv").exists()  # nothing of ours was written
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    assert (tmp_path / LOCK_NAME).read_text().startswith(str(holder.pid))  # stale, left
    res = compare({"pop": Popularity()}, EVENTS, out=tmp_path)
    res.write(tmp_path, plots=False)
    assert (tmp_path / LOCK_NAME).read_text().startswith(str(os.getpid()))
    assert pd.read_csv(tmp_path / "summary.csv")["status"].tolist() == ["ok"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_a_log_file_gets_one_line_per_model_and_no_control_characters(capfd):
    from recinc_plugins.evaluation import compare

    compare({"pop": Popularity(), "random": make("random")}, EVENTS, k=2, progress=True,
            n_jobs=2)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert sorted(line.split(":")[0] for line in lines) == ["[1/2] pop", "[2/2] random"] or \
        sorted(line.split(":")[0] for line in lines) == ["[1/2] random", "[2/2] pop"]
    assert all(": ok, recall@2 " in line for line in lines)
    assert "\r" not in err and "\x1b" not in err


# -- timestamps: one format per column ---------------------------------------------------------

def _timestamps(values, **kwargs) -> pd.Series:
    from recinc_plugins.data import validate_interactions

    frame = pd.DataFrame({"user": np.arange(len(values)), "item": 1, "timestamp": values})
    return validate_interactions(frame, **kwargs)["timestamp"]


def test_timestamps_in_two_formats_are_an_error_listing_the_rows():
    from recinc_plugins.data import InteractionsError

    # the first values read either way (month first, as pandas would); one later does not
    values = ["01/02/2024"] * 1000 + ["13/02/2024", "02/03/2024", "14/03/2024"]
    with pytest.raises(InteractionsError, match=r"timestamps not in the column's format "
                                                r"'%m/%d/%Y' \(inferred .*--time-format.* "
                                                r"2 row\(s\) at positions 1000, 1002") as info:
        _timestamps(values)
    assert info.value.rows.tolist() == [1000, 1002]
    day_first = _timestamps(values, time_format="%d/%m/%Y")
    assert day_first[1000] == pd.Timestamp("2024-02-13") and day_first[0] == \
        pd.Timestamp("2024-02-01")  # every value read the same way
    # where the first values settle it, the whole column is read their way
    assert _timestamps(["01/02/2024", "13/02/2024"]).tolist() == [pd.Timestamp("2024-02-01"),
                                                                  pd.Timestamp("2024-02-13")]
    with pytest.raises(InteractionsError, match=r"given as time_format.* positions 1"):
        _timestamps(["01/02/2024", "13/02/2024"], time_format="%m/%d/%Y")
    # ISO 8601 is one format, with or without a time and an offset
    assert _timestamps(["2024-01-02", "2024-01-02T10:00:00+02:00"]).tolist() == [
        pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-02 08:00")]


def test_the_cli_reads_a_file_with_the_time_format_it_is_given(tmp_path, capsys):
    from recinc_plugins.cli import main

    path = tmp_path / "events.csv"
    days = [f"{d:02d}/01/2024" for d in range(1, 29)] * 10
    pd.DataFrame({"user": np.arange(280) % 30, "item": np.arange(280) % 17,
                  "timestamp": days}).to_csv(path, index=False)
    assert main(["compare", "--data", str(path), "--models", "popularity", "--quiet",
                 "--step", "50", "--time-format", "%m/%d/%Y"]) == 2
    assert "not in the column's format '%m/%d/%Y' (given as time_format" in \
        capsys.readouterr().err
    assert main(["compare", "--data", str(path), "--models", "popularity", "--quiet",
                 "--step", "50", "--time-format", "%d/%m/%Y"]) == 0


# -- parameters and flags ------------------------------------------------------------------------

def test_cli_values_are_python_literals_and_true_false_yes_no():
    from recinc_plugins.evaluation.cli import parse_params

    params = parse_params(["popularity.weighted=false", "random.seed=3",
                           "decayed-popularity.half_life='1h'", "popularity.cold_start=newcomer",
                           "decayed-popularity.weighted=Yes", "random.seed=None"],
                          ["popularity", "random", "decayed-popularity"])
    assert params == {"popularity": {"weighted": False, "cold_start": "newcomer"},
                      "random": {"seed": None},
                      "decayed-popularity": {"half_life": "1h", "weighted": True}}


@pytest.mark.parametrize(("name", "param"), [
    ("popularity", "weighted"), ("decayed-popularity", "weighted"),
    ("surprise-svd", "fold_in"), ("surprise-svd", "biased"), ("surprise-knn", "verbose"),
    ("lightfm", "use_weights"),
])
def test_boolean_parameters_refuse_anything_but_a_bool(name, param):
    extra = _REGISTRY[name].extra
    if extra is not None:
        pytest.importorskip({"surprise": "surprise"}.get(extra, extra))
    with pytest.raises(ValueError, match=f"{param} must be True or False, got 'maybe'"):
        make(name, **{param: "maybe"}).fit(EVENTS)


def test_the_cli_refuses_a_loose_parameter_and_takes_false_as_false(capsys):
    from recinc_plugins.cli import main

    assert main(["compare", "--models", "popularity", "--quiet",
                 "--param", "popularity.weighted=maybe"]) == 2
    assert "model 'popularity': weighted must be True or False, got 'maybe'" in \
        capsys.readouterr().err
    assert main(["compare", "--models", "popularity", "--quiet",
                 "--param", "popularity.weighted=false"]) == 0


@pytest.mark.parametrize(("flags", "message"), [
    (["--budget", "0"], "--budget must be a positive number of seconds, got 0"),
    (["--budget", "-5"], "--budget must be a positive number of seconds, got -5"),
    (["--budget", "abc"], "argument --budget: invalid float value: 'abc'"),
    (["--k", "abc"], "--k must be one or more positive integers such as 10 or 10,20, got 'abc'"),
    (["--k", "10,0"], "--k must be one or more positive integers"),
    (["--jobs", "0"], "--jobs must be a positive integer or -1 (every core), got 0"),
    (["--checkpoint-every", "-2"], "--checkpoint-every must be >= 0 steps, got -2"),
    (["--rating-scale", "5,1"], "--rating-scale must be LOW,HIGH with LOW < HIGH"),
])
def test_bad_flags_are_refused_naming_the_flag(flags, message, capsys):
    from recinc_plugins.cli import main

    try:
        code = main(["compare", "--models", "popularity", "--quiet", *flags])
    except SystemExit as exc:  # argparse's own errors (a value of the wrong type)
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_two_cli_runs_on_one_out_folder_the_second_refused_at_once(tmp_path):
    import subprocess
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "recinc_plugins.cli", "compare", "--models",
               "popularity,random", "--quiet", "--out", str(out), "--step", "1",
               "--no-plots"]
    # the first run replays slower models too: it holds the lock long after the second starts
    # (killed below; popularity and random alone took 3 s, too close to a slow start-up)
    slow = [*command, "--models", "popularity,random,item-knn,river-biasedmf,lightfm"]
    first = subprocess.Popen(slow, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock = out / ".recinc.lock"
        end = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().startswith(str(first.pid))):
            assert time.monotonic() < end and first.poll() is None
            time.sleep(0.05)
        t0 = time.monotonic()
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and time.monotonic() - t0 < 30
        assert f"being written by another run, process {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()
