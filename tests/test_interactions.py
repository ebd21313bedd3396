import numpy as np
import pandas as pd
import pytest

from recinc_plugins.data import InteractionsError, validate_interactions


def frame(**columns):
    base = {"user": ["a", "b", "c", "d"], "item": [1, 2, 3, 4]}
    base.update(columns)
    return pd.DataFrame(base)


def test_canonical_columns_come_first_and_extras_are_kept():
    raw = pd.DataFrame({"ts": [0, 60], "who": [1, 2], "what": ["x", "y"], "r": [3, 4],
                        "genre": ["g1", "g2"]})
    out = validate_interactions(raw, columns={"who": "user", "what": "item", "r": "rating",
                                              "ts": "timestamp"})
    assert list(out.columns) == ["user", "item", "rating", "timestamp", "genre"]
    assert out["rating"].dtype == np.float64
    assert out["timestamp"].tolist() == [pd.Timestamp("1970-01-01"),
                                         pd.Timestamp("1970-01-01 00:01")]
    assert out["genre"].tolist() == ["g1", "g2"]


def test_missing_columns_name_what_the_data_has():
    with pytest.raises(InteractionsError, match=r"missing required column\(s\) \['item'\]; "
                                                r"the data has \['user', 'rating'\]") as err:
        validate_interactions(pd.DataFrame({"user": [1], "rating": [3]}))
    assert err.value.column == "item"


def test_mapping_an_absent_column_is_an_error():
    with pytest.raises(InteractionsError, match=r"columns mapping names \['uid'\]"):
        validate_interactions(frame(), columns={"uid": "user"})


def test_null_ids_give_column_and_row_positions():
    with pytest.raises(InteractionsError, match=r"column 'item': null ids in 2 row\(s\) at "
                                                r"positions 1, 3") as err:
        validate_interactions(frame(item=[1, None, 3, None]))
    assert err.value.rows.tolist() == [1, 3]


def test_non_finite_ratings_are_rejected():
    with pytest.raises(InteractionsError, match=r"column 'rating': non-numeric, missing or "
                                                r"non-finite values in 3 row\(s\) at positions "
                                                r"0, 2, 3"):
        validate_interactions(frame(rating=[np.inf, 4, np.nan, "five"]))


def test_non_finite_weights_are_rejected():
    with pytest.raises(InteractionsError, match=r"column 'weight'.*positions 1"):
        validate_interactions(frame(weight=[1.0, -np.inf, 2.0, 3.0]))


def test_unparseable_timestamps_are_rejected():
    with pytest.raises(InteractionsError, match=r"column 'timestamp': unparseable timestamps "
                                                r"in 1 row\(s\) at positions 2"):
        validate_interactions(frame(timestamp=["2024-01-01", "2024-01-02", "not a date",
                                               "2024-01-03 10:00"]))


def test_missing_numeric_timestamps_are_rejected():
    with pytest.raises(InteractionsError, match=r"column 'timestamp'.*positions 0"):
        validate_interactions(frame(timestamp=[np.nan, 1.0, 2.0, 3.0]))


def test_ratings_outside_the_declared_scale_are_rejected():
    with pytest.raises(InteractionsError, match=r"outside the rating scale \[1, 5\] in 2 "
                                                r"row\(s\) at positions 0, 3"):
        validate_interactions(frame(rating=[0, 1, 5, 6]), rating_scale=(1, 5))


def test_long_lists_of_bad_rows_are_summarised_but_kept_whole():
    bad = pd.DataFrame({"user": [None] * 25, "item": range(25)})
    with pytest.raises(InteractionsError, match="and 15 more") as err:
        validate_interactions(bad)
    assert err.value.rows.tolist() == list(range(25))


def test_rating_and_weight_together_are_ambiguous():
    with pytest.raises(InteractionsError, match="both 'rating' and 'weight'"):
        validate_interactions(frame(rating=[1] * 4, weight=[1] * 4))


def test_non_integer_float_ids_are_rejected_and_integer_floats_become_ints():
    out = validate_interactions(pd.DataFrame({"user": [1.0, 2.0], "item": [3, 4]}))
    assert out["user"].dtype == np.int64
    with pytest.raises(InteractionsError, match="non-integer float ids"):
        validate_interactions(pd.DataFrame({"user": [1.5, 2.0], "item": [3, 4]}))


def test_repeated_events_stay_events_by_default():
    raw = pd.DataFrame({"user": [1, 1, 1], "item": [7, 7, 8], "weight": [1.0, 2.0, 5.0]})
    assert len(validate_interactions(raw)) == 3
    summed = validate_interactions(raw, duplicates="sum")
    assert summed[["user", "item", "weight"]].values.tolist() == [[1, 7, 3.0], [1, 8, 5.0]]
    last = validate_interactions(raw, duplicates="last")
    assert last["weight"].tolist() == [2.0, 5.0]


def test_summing_ratings_is_refused():
    with pytest.raises(InteractionsError, match="duplicates='sum' adds up implicit weights"):
        validate_interactions(frame(rating=[1] * 4), duplicates="sum")


def test_unknown_duplicate_policy_is_refused():
    with pytest.raises(ValueError, match="duplicates must be one of"):
        validate_interactions(frame(), duplicates="merge")


def test_non_frames_are_refused_with_a_hint():
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        validate_interactions([(1, 2)])


def test_timezone_aware_timestamps_become_naive_utc():
    ts = pd.to_datetime(["2024-01-01 12:00+02:00", "2024-01-01 12:00+00:00"], utc=True)
    out = validate_interactions(pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": ts}))
    assert out["timestamp"].tolist() == [pd.Timestamp("2024-01-01 10:00"),
                                         pd.Timestamp("2024-01-01 12:00")]


def test_ids_beyond_int64_are_refused_not_wrapped():
    with pytest.raises(InteractionsError, match=r"column 'user': integer ids beyond the int64 "
                                                r"range .* positions 0, 1"):
        validate_interactions({"user": [1e20, 1e20 + 2**40, 3.0], "item": [1, 2, 3]})
    big = np.array([2**63 + 5, 7], dtype=np.uint64)
    with pytest.raises(InteractionsError, match=r"column 'item'.*positions 0"):
        validate_interactions({"user": [1, 2], "item": big})


def test_millisecond_timestamps_are_named_as_out_of_range_seconds():
    with pytest.raises(InteractionsError, match=r"out of range as Unix seconds \(milliseconds"):
        validate_interactions(frame(timestamp=[1.7e18, 1.0, 2.0, 3.0]))
