"""NeuralRecommender: growth, determinism, persistence, learning, parameters, devices."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from recinc_plugins.baselines import Popularity  # noqa: E402
from recinc_plugins.neural import NeuralRecommender  # noqa: E402

SMALL = dict(n_factors=8, history=5, n_negatives=4, replay_size=500, n_replay=2, device="cpu")


def block_stream(n_users: int = 60, n_items: int = 40, per_user: int = 12,
                 seed: int = 0) -> pd.DataFrame:
    """Users in two groups, each interacting only with its own half of the items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        half = u % 2
        items = rng.choice(n_items // 2, size=per_user, replace=False) * 2 + half
        rows += [(f"u{u}", f"i{i}") for i in items]
    order = rng.permutation(len(rows))
    frame = pd.DataFrame(rows, columns=["user", "item"]).iloc[order].reset_index(drop=True)
    frame["timestamp"] = pd.date_range("2024-01-01", periods=len(frame), freq="min")
    return frame


def bpr_loss(model: NeuralRecommender, n_users: int = 60, n_items: int = 40) -> float:
    """Mean -log sigmoid(score(own-group item) - score(other-group item)) over all users."""
    users, pos, neg = [], [], []
    for u in range(n_users):
        for i in range(0, n_items, 2):
            users.append(f"u{u}")
            pos.append(f"i{i + u % 2}")
            neg.append(f"i{i + 1 - u % 2}")
    diff = model.score(users, pos) - model.score(users, neg)
    return float(np.logaddexp(0.0, -diff).mean())


def arena_rows(model: NeuralRecommender, region: str, n: int) -> np.ndarray:
    return model.arena_.region(region)[:n].numpy().copy()


# -- growth -------------------------------------------------------------------------------------


def test_growth_keeps_existing_embeddings_and_doubles_capacity(implicit_stream):
    model = NeuralRecommender(**SMALL, seed=1).fit(implicit_stream.iloc[:500])
    n_users, n_items = model.n_users, model.n_items
    users_before = arena_rows(model, "users", n_users)
    items_before = arena_rows(model, "items", n_items)
    history_before = arena_rows(model, "history", n_items)
    capacities = set()
    for k in range(300):  # one new user and item at a time: no copy per id
        model.user_index_.add([f"new-user-{k}"])
        model.item_index_.add([f"new-item-{k}"])
        model._sync_size()
        capacities.add(model.arena_.capacity["users"])
    assert model.arena_.size["users"] == n_users + 300
    assert len(capacities) <= 3  # 1 + log2(growth factor) reallocations, not 300
    np.testing.assert_array_equal(arena_rows(model, "users", n_users), users_before)
    np.testing.assert_array_equal(arena_rows(model, "items", n_items), items_before)
    np.testing.assert_array_equal(arena_rows(model, "history", n_items), history_before)
    # new ids are usable at once, and learning them leaves the padding row at zero
    model.partial_fit(pd.DataFrame({"user": ["new-user-7"], "item": ["new-item-299"]}))
    assert model.recommend("new-user-7", k=3).cold.tolist() == [False]
    assert not model.arena_.weight[0].any()


def test_hashed_ids_bound_the_tables(implicit_stream):
    model = NeuralRecommender(**SMALL, hash_buckets=32, seed=0).fit(implicit_stream)
    assert model.n_users > 32 and model.n_items > 32
    assert model.arena_.size == {"items": 32, "history": 32, "users": 32}
    recs = model.recommend(implicit_stream["user"].iloc[:5], k=4)
    assert recs.items.shape == (5, 4) and not recs.cold.any()


# -- determinism and persistence ----------------------------------------------------------------


def test_same_seed_gives_identical_models_and_another_seed_differs(implicit_stream):
    a = NeuralRecommender(**SMALL, seed=3).fit(implicit_stream)
    b = NeuralRecommender(**SMALL, seed=3).fit(implicit_stream)
    c = NeuralRecommender(**SMALL, seed=4).fit(implicit_stream)
    assert torch.equal(a.arena_.weight, b.arena_.weight)
    assert torch.equal(a.arena_.accum, b.arena_.accum)
    assert not torch.equal(a.arena_.weight, c.arena_.weight)


@pytest.mark.parametrize("loss", ["bpr", "mse"])
def test_save_load_resume_continues_exactly(tmp_path, explicit_stream, loss):
    first, second = explicit_stream.iloc[:1500], explicit_stream.iloc[1500:]
    steps = np.array_split(np.arange(len(second)), 40)
    whole = NeuralRecommender(**SMALL, loss=loss, seed=5).fit(first)
    resumed = NeuralRecommender(**SMALL, loss=loss, seed=5).fit(first)
    resumed.save(tmp_path / "model.bin")
    resumed = NeuralRecommender.load(tmp_path / "model.bin")
    for idx in steps:
        whole.partial_fit(second.iloc[idx])
        resumed.partial_fit(second.iloc[idx])
    assert torch.equal(whole.arena_.weight, resumed.arena_.weight)
    assert torch.equal(whole.arena_.accum, resumed.arena_.accum)
    np.testing.assert_array_equal(whole.hist_, resumed.hist_)
    np.testing.assert_array_equal(whole.buffer_.items, resumed.buffer_.items)
    users = explicit_stream["user"].unique()[:20]
    np.testing.assert_array_equal(whole.recommend(users, k=5).items,
                                  resumed.recommend(users, k=5).items)


@pytest.mark.parametrize(("loss", "optimizer"), [("bpr", "auto"), ("bce", "rmsprop"),
                                                 ("mse", "auto"), ("mse", "adagrad")])
def test_numpy_path_of_small_cpu_steps_matches_the_torch_path(explicit_stream, loss, optimizer):
    # one- and few-event steps on a CPU run on numpy views of the tensors; the same math
    params = dict(SMALL, loss=loss, optimizer=optimizer, seed=6, bias_reg=0.01)
    fast, slow = NeuralRecommender(**params), NeuralRecommender(**params)
    slow._numpy_max_rows = slow._numpy_max_users = 0  # always torch
    steps = np.array_split(np.arange(1200), 600)
    for model in (fast, slow):
        for idx in steps:
            model.partial_fit(explicit_stream.iloc[idx])
    assert fast._uses_numpy(100, fast._numpy_max_rows)
    assert not slow._uses_numpy(1, slow._numpy_max_rows)
    np.testing.assert_allclose(fast.arena_.weight.numpy(), slow.arena_.weight.numpy(),
                               atol=2e-5)
    np.testing.assert_allclose(fast.arena_.accum.numpy(), slow.arena_.accum.numpy(),
                               rtol=1e-4, atol=1e-6)
    users, items = explicit_stream["user"].iloc[:50], explicit_stream["item"].iloc[:50]
    np.testing.assert_allclose(fast.score(users, items), slow.score(users, items), atol=1e-4)
    np.testing.assert_allclose(fast._score_users(np.arange(3)), slow._score_users(np.arange(3)),
                               atol=1e-4)


# -- learning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["bpr", "bce"])
def test_learning_reduces_ranking_loss_on_a_stream_with_known_structure(loss):
    stream = block_stream()
    model = NeuralRecommender(**SMALL, loss=loss, seed=0).fit(stream.iloc[:40])
    before = bpr_loss(model)
    for chunk in np.array_split(np.arange(40, len(stream)), 60):
        model.partial_fit(stream.iloc[chunk])
    after = bpr_loss(model)
    assert np.isfinite(model.last_loss_)
    assert after < 0.5 * before
    assert after < 0.35  # own-group items ranked above the other group's for most pairs


def test_learning_reduces_rating_error_on_a_stream_with_known_structure():
    # each group rates its own half of the items 4-5 and the other half 1-2
    rng = np.random.default_rng(0)
    users = rng.integers(0, 60, size=4000)
    items = rng.integers(0, 40, size=4000)
    ratings = np.where(users % 2 == items % 2, 4.5, 1.5) + rng.choice([-0.5, 0.5], size=4000)
    frame = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    train, test = frame.iloc[:3500], frame.iloc[3500:]
    model = NeuralRecommender(**SMALL, loss="mse", seed=0).fit(train.iloc[:100])
    assert model.optimizer_ == "sgd"
    mean_mae = np.abs(train["rating"].mean() - test["rating"]).mean()
    for chunk in np.array_split(np.arange(100, len(train)), 50):
        model.partial_fit(train.iloc[chunk])
    mae = np.abs(model.score(test["user"], test["item"]) - test["rating"]).mean()
    assert mean_mae > 1.4
    assert mae < 0.7


def test_median_calibration_lowers_the_absolute_error_of_skewed_ratings(tmp_path):
    # each group rates its own items 5 (85%) or 2 (15%) and the others 2 (85%) or 5 (15%):
    # squared loss learns the means (4.55, 2.45), absolute error is smallest at the medians
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 20, size=3000), rng.integers(0, 10, size=3000)
    own = (users % 2) == (items % 2)
    ratings = np.where(own == (rng.random(3000) < 0.85), 5.0, 2.0)
    frame = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    errors = {}
    for calibration in (None, "median"):
        model = NeuralRecommender(**SMALL, loss="mse", calibration=calibration, seed=0,
                                  calibration_rate=0.01, calibration_width=0.5)
        model.fit(frame.iloc[:1])
        pred = []
        for idx in np.array_split(np.arange(1, len(frame)), 1000):  # predict, then learn
            pred.append(np.clip(model.score(users[idx], items[idx]), 1, 5))
            model.partial_fit(frame.iloc[idx])
        errors[calibration] = np.abs(np.concatenate(pred) - ratings[1:])[1000:].mean()
    assert errors[None] > 0.85  # the means: 0.85 * 0.45 + 0.15 * 2.55 = 0.765 at best
    assert errors["median"] < errors[None] - 0.15
    assert errors["median"] < 0.7
    assert np.abs(model.calibration_).max() > 0.5
    # the offsets are saved; an unknown user's rating is calibrated as well
    model.save(tmp_path / "model.bin")
    loaded = NeuralRecommender.load(tmp_path / "model.bin")
    np.testing.assert_array_equal(loaded.calibration_, model.calibration_)
    np.testing.assert_array_equal(loaded.score(users[:50], items[:50]),
                                  model.score(users[:50], items[:50]))
    row = model._rows("items", model.item_index_.lookup([0]))[0]
    raw = model.global_mean_ + float(model.arena_.weight[row, -1])
    assert model.score("nobody", 0) == pytest.approx(float(model._calibrate(np.array([raw]))[0]))


def test_predicts_ratings_exactly_for_the_mse_loss(explicit_stream):
    ratings = NeuralRecommender(**SMALL, loss="mse", seed=0).fit(explicit_stream.iloc[:300])
    ranking = NeuralRecommender(**SMALL, loss="bpr", seed=0).fit(explicit_stream.iloc[:300])
    assert ratings.predicts_ratings() and not ranking.predicts_ratings()
    # an unknown user with a known item: the global mean plus the item's bias
    item = explicit_stream["item"].iloc[0]
    row = ratings._rows("items", ratings.item_index_.lookup([item]))
    expected = ratings.global_mean_ + float(ratings.arena_.weight[row[0], -1])
    assert ratings.score("nobody", item) == pytest.approx(expected, rel=1e-6)


def test_mse_loss_needs_a_rating_column(implicit_stream):
    with pytest.raises(ValueError, match=r"loss='mse' learns ratings.*'rating' column"):
        NeuralRecommender(**SMALL, loss="mse").fit(implicit_stream)


def test_negative_samplers_and_replay_strategies_all_learn():
    stream = block_stream(seed=1)
    for negatives in ("uniform", "popularity", "in-batch"):
        for replay in ("reservoir", "recent"):
            model = NeuralRecommender(**SMALL, negatives=negatives, replay=replay, seed=0,
                                      batch_size=32, n_passes=2)
            model.fit(stream)
            assert bpr_loss(model) < 0.6, (negatives, replay)


def test_unknown_users_get_what_newcomers_took_lately():
    # a veteran piles onto "old-hit" (only its first 50 events count as a newcomer's); every
    # newcomer's first event is "starter"
    veteran = pd.DataFrame({"user": ["vet"] * 200, "item": ["old-hit"] * 200})
    newcomers = pd.DataFrame({"user": [f"n{k}" for k in range(60)], "item": ["starter"] * 60})
    frame = pd.concat([veteran, newcomers], ignore_index=True)
    newcomer = NeuralRecommender(**SMALL, seed=0).fit(frame)
    popularity = NeuralRecommender(**SMALL, cold_start="popularity", seed=0).fit(frame)
    recs = newcomer.recommend("someone-new", k=1)
    assert recs.cold.tolist() == [True] and recs.items[0, 0] == "starter"
    assert popularity.recommend("someone-new", k=1).items[0, 0] == "old-hit"


# -- ml-100k ------------------------------------------------------------------------------------


@pytest.mark.data
def test_beats_popularity_on_the_start_of_ml100k(ml100k):
    from recinc_plugins.evaluation import Stream, compare

    models = {"neural": NeuralRecommender(device="cpu", seed=0), "pop": Popularity()}
    result = compare(models, Stream(ml100k.iloc[:10_000], step=10), k=10, target="ranking")
    recall = result.summary.set_index("model")["recall@10"]
    assert recall["neural"] > 1.15 * recall["pop"]


# -- parameters and devices ---------------------------------------------------------------------


@pytest.mark.parametrize(("params", "message"), [
    ({"n_factors": 0}, "n_factors must be an integer >= 1, got 0"),
    ({"n_factors": 8.5}, "n_factors must be an integer"),
    ({"history": -1}, "history must be an integer >= 0"),
    ({"history_decay": 1.5}, r"history_decay must be in \(0, 1\]"),
    ({"n_negatives": True}, "n_negatives must be an integer"),
    ({"learning_rate": 0}, "learning_rate must be a finite number > 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"reg": -0.1}, "reg must be a finite number >= 0"),
    ({"bias_learning_rate": 0}, "bias_learning_rate must be a finite number > 0"),
    ({"bias_reg": -1}, "bias_reg must be a finite number >= 0"),
    ({"loss": "hinge"}, "loss must be one of 'bpr', 'bce', 'mse', got 'hinge'"),
    ({"negatives": "hard"}, "negatives must be one of 'uniform', 'popularity', 'in-batch'"),
    ({"replay": "fifo"}, "replay must be one of 'reservoir', 'recent'"),
    ({"optimizer": "adam"}, "optimizer must be one of"),
    ({"calibration": "mean"}, "calibration must be one of 'median'"),
    ({"calibration": "median"}, "calibration='median' calibrates predicted ratings"),
    ({"calibration_rate": 0}, "calibration_rate must be a finite number > 0"),
    ({"cold_start": "random"}, r"cold_start must be one of \['popularity', 'newcomer'\]"),
    ({"hash_buckets": 0}, "hash_buckets must be an integer >= 1"),
    ({"num_threads": 0}, "num_threads must be an integer >= 1"),
    ({"seed": "x"}, "seed must be an integer or None"),
    ({"device": "tpu:x"}, "device must be 'auto', 'cpu' or a torch device"),
])
def test_bad_parameters_are_rejected_by_name(implicit_stream, params, message):
    with pytest.raises(ValueError, match=message):
        NeuralRecommender(**{**SMALL, **params}).fit(implicit_stream.iloc[:50])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_device_without_cuda_is_a_clear_error(implicit_stream):
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        NeuralRecommender(**{**SMALL, "device": "cuda"}).fit(implicit_stream.iloc[:50])
    model = NeuralRecommender(**{**SMALL, "device": "auto"}).fit(implicit_stream.iloc[:50])
    assert model.device_.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_matches_the_cpu_path(implicit_stream, tmp_path):
    cpu = NeuralRecommender(**{**SMALL, "device": "cpu"}, seed=2).fit(implicit_stream)
    gpu = NeuralRecommender(**{**SMALL, "device": "cuda"}, seed=2).fit(implicit_stream)
    assert gpu.arena_.weight.is_cuda
    np.testing.assert_allclose(gpu.arena_.weight.cpu().numpy(), cpu.arena_.weight.numpy(),
                               atol=1e-3)
    users = implicit_stream["user"].unique()[:10]
    gpu.save(tmp_path / "gpu.bin")
    loaded = NeuralRecommender.load(tmp_path / "gpu.bin")
    np.testing.assert_array_equal(loaded.recommend(users, k=5).items,
                                  gpu.recommend(users, k=5).items)


def test_num_threads_is_applied_to_torch(implicit_stream):
    before = torch.get_num_threads()
    try:
        NeuralRecommender(**SMALL, num_threads=1).fit(implicit_stream.iloc[:50])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, recinc_plugins; recinc_plugins.list_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("n", "high"), [(0, 1), (1, 1), (10, 5), (5_000, 300), (500, 10**6)])
def test_row_deduplication_equals_numpy_unique(n, high):
    from recinc_plugins.neural.model import _unique_inverse

    rows = np.random.default_rng(n).integers(0, high, n)
    uniq, inverse = _unique_inverse(rows)
    expected_uniq, expected_inverse = np.unique(rows, return_inverse=True)
    np.testing.assert_array_equal(uniq, expected_uniq)
    np.testing.assert_array_equal(inverse, expected_inverse)
    np.testing.assert_array_equal(uniq[inverse], rows)


@pytest.mark.parametrize(("loss", "default"), [("bpr", 4), ("mse", 256)])
def test_batch_size_none_resolves_by_loss_and_follows_set_params(monkeypatch, explicit_stream,
                                                                  loss, default):
    model = NeuralRecommender(loss=loss, device="cpu", seed=0).fit(explicit_stream.iloc[:300])
    assert model.batch_size is None and model.batch_size_ == default
    steps = []
    real = model._train_step
    monkeypatch.setattr(model, "_train_step", lambda *a: steps.append(a[0].size) or real(*a))
    model.partial_fit(explicit_stream.iloc[300:316])
    assert len(steps) == -(-16 // default)  # chunks of the resolved size
    steps.clear()
    model.set_params(batch_size=8)  # takes effect at the next step, not only the next fit
    model.partial_fit(explicit_stream.iloc[316:332])
    assert len(steps) == 2
    # a model from a file written before batch_size could be None (no resolved size kept)
    model.__dict__.pop("batch_size_", None)
    model.set_params(batch_size=None)
    steps.clear()
    model.partial_fit(explicit_stream.iloc[332:348])
    assert len(steps) == -(-16 // default)
