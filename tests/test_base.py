import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recinc_plugins import IncrementalRecommender, ModelFileError, make
from recinc_plugins.base import Batch, top_k
from recinc_plugins.baselines import DecayedPopularity, Popularity, Random

BASELINES = [Popularity(), DecayedPopularity(half_life=200), DecayedPopularity(half_life="1h"),
             Random(seed=0)]


@pytest.mark.parametrize("model", BASELINES, ids=repr)
def test_baselines_never_recommend_seen_items(model, implicit_stream):
    model = model.clone().fit(implicit_stream.iloc[:2000])
    model.partial_fit(implicit_stream.iloc[2000:])
    users = implicit_stream["user"].unique()[:50]
    recs = model.recommend(users, k=20).to_frame()
    seen = set(zip(implicit_stream["user"], implicit_stream["item"], strict=True))
    assert len(recs) == 50 * 20
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"], strict=True))


@pytest.mark.parametrize("model", BASELINES, ids=repr)
def test_unknown_users_get_the_flagged_popularity_fallback(model, implicit_stream):
    model = model.clone().fit(implicit_stream)
    recs = model.recommend(["nobody", implicit_stream["user"].iloc[0]], k=5)
    assert recs.cold.tolist() == [True, False]
    counts = implicit_stream["item"].value_counts(sort=False)
    if isinstance(model, Random):  # its fallback is all-time popularity, never random
        top = counts.sort_values(ascending=False, kind="stable").index[:5].tolist()
        assert recs.items[0].tolist() == top
    assert np.all(np.diff(recs.scores[0]) <= 0)


@pytest.mark.parametrize("model", BASELINES, ids=repr)
def test_save_then_load_gives_identical_recommendations(model, implicit_stream, tmp_path):
    model = model.clone().fit(implicit_stream)
    path = tmp_path / "model.recinc"
    model.save(path)
    loaded = IncrementalRecommender.load(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    users = np.append(implicit_stream["user"].unique()[:30], "unknown")
    a, b = model.recommend(users, k=10), loaded.recommend(users, k=10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    # and both keep learning the same way
    more = implicit_stream.sample(200, random_state=1)
    np.testing.assert_array_equal(model.partial_fit(more).recommend(users).items,
                                  loaded.partial_fit(more).recommend(users).items)


def test_truncated_save_file_gives_a_clear_error(implicit_stream, tmp_path):
    path = tmp_path / "m.recinc"
    Popularity().fit(implicit_stream).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ModelFileError, match=r"truncated .* header says \d+ payload bytes, the "
                                             r"file has \d+"):
        Popularity.load(path)
    path.write_bytes(data[:20])
    with pytest.raises(ModelFileError, match="truncated: its header is cut short"):
        Popularity.load(path)


def test_corrupt_save_file_gives_a_clear_error(implicit_stream, tmp_path):
    path = tmp_path / "m.recinc"
    Popularity().fit(implicit_stream).save(path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt: payload checksum does not match"):
        Popularity.load(path)


def test_other_files_and_other_formats_are_refused(implicit_stream, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelFileError, match="not a recinc-plugins model file"):
        Popularity.load(junk)
    path = tmp_path / "m.recinc"
    Popularity().fit(implicit_stream).save(path)
    data = bytearray(path.read_bytes())
    data[8] = 99  # format version written by a future release
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"model format 99; this recinc-plugins reads up to"):
        Popularity.load(path)


def test_loading_through_another_class_is_refused(implicit_stream, tmp_path):
    path = tmp_path / "m.recinc"
    Popularity().fit(implicit_stream).save(path)
    with pytest.raises(ModelFileError, match=r"holds a recinc_plugins\.baselines:Popularity, not a "
                                             r"Random"):
        Random.load(path)


def test_partial_fit_adds_new_users_and_items_mid_stream():
    model = Popularity().fit(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}))
    model.partial_fit(pd.DataFrame({"user": ["c", "c"], "item": ["z", "z"]}))
    assert (model.n_users, model.n_items) == (3, 3)
    recs = model.recommend(["a"], k=5)
    assert recs.items[0].tolist()[:2] == ["z", "y"]
    assert model.score("a", ["z", "x", "new"]).tolist() == [2.0, 1.0, 0.0]


def test_fit_forgets_and_partial_fit_on_a_fresh_model_just_learns():
    events = pd.DataFrame({"user": [1, 2], "item": [5, 6]})
    model = Popularity().partial_fit(events)
    assert model.n_items == 2
    model.fit(pd.DataFrame({"user": [1], "item": [7]}))
    assert model.item_index_.ids.tolist() == [7] and model.n_events_ == 1


def test_candidates_restrict_recommendations():
    events = pd.DataFrame({"user": [1, 2, 3, 3], "item": ["a", "b", "c", "a"]})
    model = Popularity().fit(events)
    recs = model.recommend([9], k=5, candidates=["b", "c"])
    assert recs.items[0].tolist() == ["b", "c", None, None, None]
    with pytest.raises(ValueError, match=r"1 candidate item\(s\) are unknown to the model: "
                                         r"\['zz'\]"):
        model.recommend([9], candidates=["b", "zz"])


def test_rows_with_fewer_than_k_items_are_padded_not_invented():
    model = Popularity().fit(pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "c"]}))
    recs = model.recommend([1], k=3)
    assert recs.items[0].tolist() == ["c", None, None]
    assert np.isnan(recs.scores[0, 1:]).all()
    assert recs.to_frame()["item"].tolist() == ["c"]
    assert model.recommend([1], k=3, exclude_seen=False).items[0].tolist() == ["a", "b", "c"]


def test_bad_k_is_refused():
    model = Popularity().fit(pd.DataFrame({"user": [1], "item": [1]}))
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            model.recommend([1], k=k)


def test_score_broadcasts_one_user_and_checks_lengths():
    model = Popularity().fit(pd.DataFrame({"user": [1, 2], "item": ["a", "a"]}))
    assert model.score(1, ["a", "a"]).tolist() == [2.0, 2.0]
    scores, cold = model.score([1, 99], ["a", "a"], return_cold=True)
    assert cold.tolist() == [False, True] and scores.tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="same length, got 2 users and 3 items"):
        model.score([1, 2], ["a", "a", "a"])


def test_decayed_popularity_follows_the_half_life_in_time():
    day = pd.Timestamp("2024-01-01")
    events = pd.DataFrame({"user": [1, 2, 3], "item": ["old", "old", "new"],
                           "timestamp": [day, day, day + pd.Timedelta("2D")]})
    model = DecayedPopularity(half_life="1D").fit(events)
    np.testing.assert_allclose(model.score(9, ["old", "new"]), [0.5, 1.0])


def test_decayed_popularity_stays_finite_over_many_half_lives():
    model = DecayedPopularity(half_life=2)
    for step in range(300):
        model.partial_fit(pd.DataFrame({"user": [step] * 5, "item": [step % 3] * 5}))
    scores = model.score(0, [0, 1, 2])
    assert np.isfinite(scores).all() and scores.max() > 0


def test_decayed_popularity_in_time_needs_timestamps():
    with pytest.raises(ValueError, match="interactions need a 'timestamp' column"):
        DecayedPopularity(half_life="7D").fit(pd.DataFrame({"user": [1], "item": [1]}))


@pytest.mark.parametrize("half_life", [0, -3, "soon", True, "-1D"])
def test_decayed_popularity_rejects_bad_half_lives(half_life):
    with pytest.raises(ValueError, match="half_life must be"):
        DecayedPopularity(half_life=half_life).fit(pd.DataFrame({"user": [1], "item": [1]}))


def test_random_is_deterministic_for_a_seed(implicit_stream):
    a = Random(seed=3).fit(implicit_stream).recommend([0, 1, 2]).items
    b = Random(seed=3).fit(implicit_stream).recommend([0, 1, 2]).items
    np.testing.assert_array_equal(a, b)


def test_parameters_follow_scikit_learn_conventions():
    model = make("decayed-popularity", half_life=50)
    assert model.get_params() == {"half_life": 50, "weighted": False}
    assert repr(model) == "DecayedPopularity(half_life=50)"
    twin = model.clone()
    assert twin is not model and twin.get_params() == model.get_params()
    with pytest.raises(ValueError, match="has no parameter 'halflife'"):
        model.set_params(halflife=3)


def test_explicit_only_models_refuse_data_without_ratings():
    class RatingsOnly(Popularity):
        capabilities = Popularity.capabilities.__class__(explicit=True, implicit=False)

    with pytest.raises(ValueError, match="learns from explicit ratings, but the interactions "
                                         "have no 'rating' column"):
        RatingsOnly().fit(pd.DataFrame({"user": [1], "item": [2]}))


def test_recommend_is_batched_over_many_users(implicit_stream):
    model = Popularity().fit(implicit_stream)
    users = implicit_stream["user"].unique()
    recs = model.recommend(users, k=10)
    assert recs.items.shape == (users.size, 10) and not recs.cold.any()
    single = [model.recommend([u], k=10).items[0].tolist() for u in users[:20]]
    assert recs.items[:20].tolist() == single


def test_a_refused_partial_fit_changes_nothing():
    day = pd.Timestamp("2024-01-01")
    model = DecayedPopularity(half_life="1D").fit(
        pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "timestamp": [day, day]}))
    before = model.recommend(["a", "ghost"], k=3)
    with pytest.raises(ValueError, match="need a 'timestamp' column"):
        model.partial_fit(pd.DataFrame({"user": ["ghost"], "item": ["new-item"]}))
    assert (model.n_users, model.n_items) == (2, 2)
    after = model.recommend(["a", "ghost"], k=3)
    np.testing.assert_array_equal(before.items, after.items)


def test_a_failed_fit_keeps_the_previous_model():
    day = pd.Timestamp("2024-01-01")
    model = DecayedPopularity(half_life="1D").fit(
        pd.DataFrame({"user": ["a"], "item": ["x"], "timestamp": [day]}))
    with pytest.raises(ValueError, match="need a 'timestamp' column"):
        model.fit(pd.DataFrame({"user": ["b"], "item": ["y"]}))
    assert model.n_events_ == 1 and model.item_index_.ids.tolist() == ["x"]


def test_bad_parameters_leave_no_half_built_state():
    events = pd.DataFrame({"user": [1, 2], "item": [3, 4]})
    model = DecayedPopularity(half_life=-1)
    with pytest.raises(ValueError, match="half_life must be > 0"):
        model.partial_fit(events)
    model.set_params(half_life=10).partial_fit(events)
    assert model.n_events_ == 2


def test_refitting_on_earlier_data_resets_the_time_origin():
    early = pd.DataFrame({"user": [1, 2, 3], "item": ["a", "a", "b"],
                          "timestamp": pd.to_datetime(["2010-01-01", "2010-01-01",
                                                       "2010-01-02"])})
    late = early.assign(timestamp=early["timestamp"] + pd.Timedelta(days=5000))
    model = DecayedPopularity(half_life="1D").fit(late).fit(early)
    np.testing.assert_allclose(model.score(9, ["a", "b"]), [1.0, 1.0])


@pytest.mark.parametrize("model", BASELINES, ids=repr)
def test_fit_on_an_empty_frame_gives_an_empty_model(model):
    empty = pd.DataFrame({"user": [], "item": [], "timestamp": pd.to_datetime([])})
    fitted = model.clone().fit(empty)
    assert fitted.n_items == 0
    assert fitted.recommend(["u"], k=2).items.tolist() == [[None, None]]


def test_recommendations_are_padded_to_k():
    model = Popularity().fit(pd.DataFrame({"user": ["a"], "item": ["x"]}))
    recs = model.recommend(["a", "zz"], k=3)
    assert recs.items.shape == recs.scores.shape == (2, 3)
    assert recs.items.tolist() == [[None, None, None], ["x", None, None]]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 600), st.integers(1, 25), st.integers(2, 40),
       st.integers(0, 2**32 - 1))
def test_top_k_matches_a_full_sort_with_ties_to_the_lower_column(rows, cols, k, levels, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (rows, cols)).astype(float)
    scores[scores == 0] = -np.inf  # never returned
    idx, vals = top_k(scores, k)
    for r in range(rows):
        expected = sorted(range(cols), key=lambda j: (-scores[r, j], j))[:k]
        expected = [j if np.isfinite(scores[r, j]) else -1 for j in expected]
        assert idx[r].tolist() == expected
        finite = [scores[r, j] for j in expected if j >= 0]
        assert vals[r][: len(finite)].tolist() == finite


class _FailsToPrepare(Popularity):
    """Popularity whose preparation step fails on any batch holding the item "boom"."""

    def _prepare(self, batch):
        if (self.item_index_.ids[batch.items] == "boom").any():
            raise RuntimeError("preparation failed")


@pytest.mark.parametrize("path", ["public", "encoded"])
def test_a_failed_prepare_leaves_ids_and_state_unchanged(path):
    model = _FailsToPrepare(cold_start="newcomer").fit(
        pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}))
    before = (model.n_events_, model.item_counts_.copy(), model._fallback_scores(1).copy())
    bad = pd.DataFrame({"user": ["new-user"], "item": ["boom"]})
    with pytest.raises(RuntimeError, match="preparation failed"):
        if path == "public":
            model.partial_fit(bad)
        else:  # the harness's path: ids are added first, then the encoded batch is learned
            users, items = model.user_index_.add(bad["user"]), model.item_index_.add(bad["item"])
            model._partial_fit_encoded(Batch(users=users, items=items))
    assert (model.n_users, model.n_items) == (2, 2)
    assert model.n_events_ == before[0]
    np.testing.assert_array_equal(model.item_counts_, before[1])
    np.testing.assert_array_equal(model._fallback_scores(1), before[2])
    model.partial_fit(pd.DataFrame({"user": ["c"], "item": ["z"]}))  # and it learns on
    assert (model.n_users, model.n_items) == (3, 3)


def test_a_refused_batch_of_new_string_ids_leaves_integer_ids_as_they_were():
    day = pd.Timestamp("2024-01-01")
    model = DecayedPopularity(half_life="1D").fit(
        pd.DataFrame({"user": [1, 2], "item": [10, 11], "timestamp": [day, day]}))
    with pytest.raises(ValueError, match="need a 'timestamp' column"):
        model.partial_fit(pd.DataFrame({"user": ["ghost"], "item": ["x"]}))
    assert model.user_index_.ids.dtype == np.int64 and model.item_index_.ids.dtype == np.int64
    assert model.recommend([1, 99], k=1).items.dtype == np.int64
