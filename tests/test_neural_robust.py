"""The neural models' rating mode on streams whose ratings arrive together: a user's events one
after another (a stream grouped by user, a Surprise trainset's order, a rating session) must
not make plain SGD diverge to NaN (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from recinc_plugins.neural import NeuralRecommender, SequentialRecommender  # noqa: E402


def grouped_by_user(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stream sorted by user then time, each user's last fifth held out."""
    frame = frame.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
    size = frame.groupby("user")["item"].transform("size")
    last = frame.groupby("user").cumcount(ascending=False) < 0.2 * size
    return frame[~last], frame[last]


def learn(model, frame: pd.DataFrame, chunk: int):
    for start in range(0, len(frame), chunk):
        model.partial_fit(frame.iloc[start:start + chunk])
    return model


def rmse(model, test: pd.DataFrame) -> float:
    pred = model.score(test["user"], test["item"])
    assert np.isfinite(pred).all()
    return float(np.sqrt(np.mean((pred - test["rating"].to_numpy()) ** 2)))


# steps of 1,000 events (the torch path) and of 128 events with one recent item (small enough
# for the numpy path); both gave NaN before the step bound, in either order of the stream
@pytest.mark.parametrize("cls", [NeuralRecommender, SequentialRecommender])
@pytest.mark.parametrize(("params", "chunk"), [({"batch_size": 256}, 1000),
                                               ({"history": 1, "batch_size": 128}, 128)])
def test_the_rating_mode_stays_finite_on_a_stream_grouped_by_user(explicit_stream, cls,
                                                                   params, chunk):
    train, test = grouped_by_user(explicit_stream)
    model = learn(cls(loss="mse", device="cpu", seed=0, **params), train, chunk)
    rows = 5 * min(chunk, model.batch_size) * (2 + model.history)  # a step's, with replay
    assert model._uses_numpy(rows, model._numpy_max_rows) == (chunk == 128)
    assert np.isfinite(model.arena_.weight.numpy()).all()
    assert np.isfinite(model.last_loss_)
    grouped = rmse(model, test)
    shuffled = rmse(learn(cls(loss="mse", device="cpu", seed=0, **params),
                          train.sample(frac=1.0, random_state=0), chunk), test)
    mean = float(np.sqrt(np.mean((train["rating"].mean() - test["rating"]) ** 2)))
    assert grouped < 1.1
    assert grouped < mean - 0.05  # it learned something
    assert abs(grouped - shuffled) < 0.03  # the order of the stream barely matters


def test_a_step_does_not_overshoot_the_ratings_of_a_heavy_user(explicit_stream):
    # one step of 200 ratings by one user: plain SGD moved the user's row by 200 events'
    # gradients at once (10 times what fits them at learning rate 0.05) and the error grew
    model = NeuralRecommender(loss="mse", history=0, n_replay=0, batch_size=256, device="cpu",
                              seed=0)
    model.fit(explicit_stream.iloc[:1500])
    items = explicit_stream["item"].drop_duplicates().to_numpy()[:200]
    heavy = pd.DataFrame({"user": "heavy", "item": items,
                          "rating": np.random.default_rng(0).choice([4.0, 5.0], items.size)})
    model.partial_fit(heavy.iloc[:1])  # known from here on: scored by its own row
    before = np.mean((model.score(heavy["user"], heavy["item"]) - heavy["rating"]) ** 2)
    model.partial_fit(heavy)  # one step (batch_size 256)
    after = np.mean((model.score(heavy["user"], heavy["item"]) - heavy["rating"]) ** 2)
    assert before > 0.5
    assert after < 0.5 * before


@pytest.mark.parametrize("learning_rate", [None, 0.5])
def test_the_bound_is_the_same_on_the_numpy_and_the_torch_path(explicit_stream, learning_rate):
    # steps of 20 ratings of one user or two: the bound binds for every user row at 0.5
    train, _ = grouped_by_user(explicit_stream)
    params = dict(loss="mse", history=5, n_replay=1, learning_rate=learning_rate, device="cpu",
                  seed=3, bias_learning_rate=0.1, bias_reg=0.01)
    fast, slow = NeuralRecommender(**params), NeuralRecommender(**params)
    slow._numpy_max_rows = slow._numpy_max_users = 0  # always torch
    for model in (fast, slow):
        learn(model, train.iloc[:1200], 20)
    assert fast._uses_numpy(20 * 2 * 7, fast._numpy_max_rows)
    assert np.isfinite(fast.arena_.weight.numpy()).all()
    np.testing.assert_allclose(fast.arena_.weight.numpy(), slow.arena_.weight.numpy(),
                               atol=2e-5)


def test_adaptive_optimisers_and_ranking_losses_stay_finite_without_the_bound(explicit_stream):
    # the bound is for the squared loss under plain SGD: Adagrad and RMSprop already scale a
    # row's step by its own gradients, and the ranking losses' gradients saturate
    train, test = grouped_by_user(explicit_stream)
    for params in ({"loss": "bpr", "optimizer": "sgd"}, {"loss": "mse", "optimizer": "adagrad"},
                   {"loss": "mse", "optimizer": "rmsprop"}):
        model = learn(NeuralRecommender(device="cpu", seed=0, **params), train, 1000)
        assert np.isfinite(model.arena_.weight.numpy()).all(), params
        if params["loss"] == "mse":
            assert rmse(model, test) < 1.1, params
