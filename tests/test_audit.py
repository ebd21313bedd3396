"""``audit_model`` and ``recinc audit-forget``: a saved model still holding an id is not clean
(and the audit says where), a model saved after ``forget`` is, and a hostile or damaged file is
an error (exit status 2) that runs no code."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins import Popularity
from recinc_plugins.audit import audit_model
from recinc_plugins.cli import main
from recinc_plugins.data import synthetic_stream
from recinc_plugins.persistence import (
    MODEL_MAGIC,
    ModelFileError,
    model_content,
    write_container,
)

USER = "gone-user-5b1d"
ITEM = "gone-item-77c0"


def _events(explicit: bool = False) -> pd.DataFrame:
    frame = synthetic_stream(n_events=500, n_users=30, n_items=40, seed=2,
                             feedback="explicit" if explicit else "implicit")
    frame["user"] = "user-" + frame["user"].astype(str)
    frame["item"] = "item-" + frame["item"].astype(str)
    frame["user"] = frame["user"].replace(frame["user"].iloc[0], USER)
    frame["item"] = frame["item"].replace(frame["item"].iloc[1], ITEM)
    return frame


def _saved(model, frame, path):
    model.fit(frame.iloc[:300])
    model.partial_fit(frame.iloc[300:])
    model.save(path)
    return model


def test_a_model_saved_before_forget_is_not_clean_and_after_it_is(tmp_path, capsys):
    path = tmp_path / "pop.recinc"
    model = _saved(Popularity(), _events(), path)
    found = audit_model(path, users=[USER], items=[ITEM])
    assert not found.clean
    assert found.by_id[f"user {USER!r}"] == [
        "the user id map (state.user_index_) still knows it, at index 0"]
    assert any("the item id map (state.item_index_) still knows it" in t
               for t in found.by_id[f"item {ITEM!r}"])
    assert main(["audit-forget", str(path), "--user", USER, "--item", "item-3"]) == 1
    out = capsys.readouterr().out
    assert f"user {USER}: 1 trace(s)" in out and "NOT CLEAN" in out

    model.forget(users=[USER], items=[ITEM])
    model.save(path)
    found = audit_model(path, users=[USER], items=[ITEM])
    assert found.clean, found.traces
    assert found.by_id == {f"user {USER!r}": [], f"item {ITEM!r}": []}
    assert main(["audit-forget", str(path), "--user", USER, "--item", ITEM]) == 0
    out = capsys.readouterr().out
    assert f"user {USER}: no trace" in out and f"item {ITEM}: no trace" in out
    # the others are still there: an audit of a live id finds it
    assert not audit_model(path, users=["user-3"]).clean


def test_the_audit_finds_ids_in_river_dicts_and_surprise_id_maps(tmp_path):
    pytest.importorskip("river")
    pytest.importorskip("surprise")
    frame = _events(explicit=True)
    for name, places in (("river-biasedmf", ("state.model_.u_biases, a key",
                                             "state.model_.u_latents, a key",
                                             "state._user_keys[0]")),
                         ("surprise-svd", ("state.model_.trainset._raw2inner_id_users, a key",))):
        path = tmp_path / f"{name}.recinc"
        model = _saved(recinc_plugins.make(name), frame, path)
        found = audit_model(path, users=[USER])
        for place in places:  # the pickled part (River's dicts) and the tree (Surprise's map)
            assert any(t.startswith(place) for t in found.by_id[f"user {USER!r}"]), (
                name, found.traces)
        model.forget(users=[USER])
        model.save(path)
        assert audit_model(path, users=[USER]).clean, name


def test_integer_ids_are_compared_in_id_places_only(tmp_path):
    frame = synthetic_stream(n_events=300, n_users=20, n_items=30, seed=1)
    path = tmp_path / "pop.recinc"
    model = _saved(Popularity(), frame, path)
    user = int(frame["user"].iloc[0])
    found = audit_model(path, users=[user])
    assert found.by_id[f"user {user}"] == [
        "the user id map (state.user_index_) still knows it, at index 0"]
    # 1 is a count, an index and a shape all over the file: only an id map may say it; and
    # the item with the forgotten user's id is that item, not a trace of the user
    assert {user, 1} <= set(model.item_index_.ids.tolist())
    model.forget(users=[user, 1])
    model.save(path)
    assert audit_model(path, users=[user, 1]).clean
    assert not audit_model(path, items=[user]).clean


def test_the_other_kind_of_the_same_string_is_not_a_trace(tmp_path):
    frame = pd.DataFrame({"user": ["x", "y", "z", "y"], "item": ["x", "x", "w", "z"]})
    path = tmp_path / "pop.recinc"
    model = Popularity().fit(frame)
    model.forget(users=["x"])
    model.save(path)
    assert audit_model(path, users=["x"]).clean  # "x" the item remains, rightly
    assert not audit_model(path, items=["x"]).clean


def _crafted(tmp_path, name, extra_state):
    """A popularity file with more in its state than the model wrote (as a model of a
    third party might keep a cache), written in the model file format."""
    model = Popularity().fit(pd.DataFrame({"user": ["a", "b"], "item": ["p", "q"]}))
    content = model_content(model)
    content["state"].update(extra_state)
    header = {"format": 2, "class": "recinc_plugins.baselines:Popularity", "versions": {}}
    path = tmp_path / name
    write_container(path, MODEL_MAGIC, header, content)
    return path


def test_ids_hidden_in_a_string_in_bytes_or_in_a_byte_array_are_found(tmp_path):
    path = _crafted(tmp_path, "cache.recinc", {
        "cache_": {"pairs": [f"{USER}|p"], "blob": USER.encode()},
        "raw_": np.frombuffer(ITEM.encode("utf-32-le"), dtype=np.uint8).copy(),
        "names_": np.array([ITEM, "other"]),
    })
    found = audit_model(path, users=[USER], items=[ITEM])
    user, item = found.by_id[f"user {USER!r}"], found.by_id[f"item {ITEM!r}"]
    assert any("inside the string" in t and "|p" in t for t in user), user
    assert any("inside a bytes value" in t for t in user), user
    assert any("UTF-32-LE bytes" in t and "not a string table" in t for t in item), item
    assert any("names_" in t and f"the string {ITEM!r}" in t for t in item), item


def test_a_hostile_file_is_refused_and_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = _crafted(tmp_path, "hostile.recinc", {"cache_": Payload()})
    with pytest.raises(ModelFileError, match="system, which is not among the types"):
        audit_model(path, users=["a"])
    assert main(["audit-forget", str(path), "--user", "a"]) == 2
    assert "not among the types a model file may hold" in capsys.readouterr().err
    assert not marker.exists()


def test_a_damaged_or_foreign_file_is_exit_status_2(tmp_path, capsys):
    path = tmp_path / "pop.recinc"
    _saved(Popularity(), _events(), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.recinc"
    damaged.write_bytes(bytes(data))
    other = tmp_path / "notes.txt"
    other.write_text("not a model\n")
    for bad, says in ((damaged, "corrupt"), (other, "not a recinc-plugins model file"),
                      (tmp_path / "missing.recinc", "No such file")):
        assert main(["audit-forget", str(bad), "--user", USER]) == 2
        assert says in capsys.readouterr().err
    assert main(["audit-forget", str(path)]) == 2
    assert "at least one --user" in capsys.readouterr().err
