import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recinc_plugins.ids import IdIndex

mixed_ids = st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=5))


def test_mixed_id_types_get_dense_indices_in_first_seen_order():
    index = IdIndex()
    assert index.add([10, "10", "a", 10, 3]).tolist() == [0, 1, 2, 0, 3]
    assert index.ids.tolist() == [10, "10", "a", 3]
    assert index.lookup(["a", 10, "zz", 11, "3"]).tolist() == [2, 0, -1, -1, -1]
    assert 10 in index and "10" in index and "x" not in index


def test_ints_then_strings_keep_working_after_the_switch_to_object_storage():
    index = IdIndex(np.arange(5))
    assert index.ids.dtype == np.int64
    index.add(["s"])
    index.add(np.array([7, 2]))
    assert index.lookup([4, "s", 7, 2]).tolist() == [4, 5, 6, 2]


def test_many_small_additions_stay_consistent_across_tail_merges():
    index = IdIndex()
    for start in range(0, 5000, 7):
        index.add([f"u{j}" for j in range(start, start + 7)])
    assert len(index) == 5005
    probe = ["u0", "u4999", "u2500", "missing"]
    assert index.lookup(probe).tolist() == [0, 4999, 2500, -1]


def test_lookup_never_adds():
    index = IdIndex(["a"])
    index.lookup(["b", "c"])
    assert len(index) == 1


def test_null_ids_are_rejected_with_their_positions():
    index = IdIndex(["a"])
    with pytest.raises(ValueError, match=r"None or NaN \(positions \[1, 3\]\)"):
        index.add(["a", None, "b", float("nan")])
    assert len(index) == 1


def test_ids_of_rejects_out_of_range_indices():
    index = IdIndex(["a", "b"])
    assert index.ids_of([1, 0]).tolist() == ["b", "a"]
    with pytest.raises(IndexError, match=r"out of range for an IdIndex of 2 ids: \[2, 5\]"):
        index.ids_of([0, 2, 5])


def test_two_dimensional_ids_are_rejected():
    with pytest.raises(ValueError, match="one-dimensional"):
        IdIndex().add(np.zeros((2, 2), dtype=np.int64))


def test_pickle_round_trip_keeps_ids_and_growth():
    index = IdIndex([3, "x", 5.5, ("tuple", 1)])
    clone = pickle.loads(pickle.dumps(index))
    assert clone == index
    assert clone.lookup([("tuple", 1), "x"]).tolist() == [3, 1]
    assert clone.add(["new"]).tolist() == [4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(mixed_ids, max_size=20), max_size=12))
def test_behaves_like_an_append_only_dict(batches):
    index = IdIndex()
    reference: dict = {}
    for batch in batches:
        got = index.add(batch)
        expected = [reference.setdefault(x, len(reference)) for x in batch]
        assert got.tolist() == expected
    assert len(index) == len(reference)
    everything = list(reference)
    assert index.lookup(everything).tolist() == list(range(len(reference)))


def test_bools_are_the_ints_zero_and_one_as_in_a_dict():
    index = IdIndex([0, 1, 2])
    assert index.lookup([True, False]).tolist() == [1, 0]
    assert index.add(np.array([True])).tolist() == [1]
    assert len(index) == 3 and index.ids.dtype == np.int64


def test_truncate_undoes_the_last_additions():
    index = IdIndex(["a", "b"])
    index.add(["c", "d"])
    index._truncate(2)
    assert index.lookup(["a", "c"]).tolist() == [0, -1]
    assert index.add(["d"]).tolist() == [2]


def test_forgotten_slots_stay_unknown_when_the_storage_turns_to_objects():
    # int ids keep 0 as the filler of a forgotten slot; the first non-integer id turns the
    # storage to objects, and the filler must not become a findable id 0 (nor a duplicate)
    index = IdIndex([5, 0, 7, 9])
    index.forget([0, 2])
    assert index.lookup([5, 0, 7, 9]).tolist() == [-1, 1, -1, 3]
    index.add(["s"])
    assert index.lookup([5, 0, 7, 9, "s"]).tolist() == [-1, 1, -1, 3, 4]
    assert index.ids.tolist() == [None, 0, None, 9, "s"]
    assert index.add([5]).tolist() == [5]
    again = IdIndex()
    again.__setstate__(index.__getstate__())
    assert again.lookup([5, 0, 7, 9, "s"]).tolist() == [5, 1, -1, 3, 4]
    assert again.dead.tolist() == [True, False, True, False, False, False]
