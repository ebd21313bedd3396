"""SequentialRecommender: each event learned from its own past, attention pooling, context."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import recinc_plugins  # noqa: E402
from recinc_plugins.context import Context  # noqa: E402
from recinc_plugins.neural import NeuralRecommender, SequentialRecommender  # noqa: E402

SMALL = dict(n_factors=8, history=5, n_negatives=4, replay_size=500, n_replay=2, device="cpu")


def cycles(n_users: int = 60, n_items: int = 30, per_user: int = 12, seed: int = 0
           ) -> pd.DataFrame:
    """Every user walks the items in one fixed cyclic order from a random start, users taking
    turns: the next item is a function of the last one, and no user's taste tells it apart."""
    starts = np.random.default_rng(seed).integers(0, n_items, n_users)
    rows = [(f"u{u}", f"i{(starts[u] + t) % n_items}")
            for t in range(per_user) for u in range(n_users)]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame["timestamp"] = np.arange(len(frame))
    return frame


def learned_items(model, user: int) -> list[int]:
    count, length = int(model.hist_count_[user]), model.hist_.shape[1]
    return [int(model.hist_[user, t % length]) - 1 for t in range(max(0, count - length), count)]


def reference_pool(model: SequentialRecommender, y: np.ndarray, h_w: np.ndarray, n_new: int):
    """The attention pooling written from its definition, in float64 with autograd; the
    replayed rows' (after ``n_new``) logits do not carry gradients."""
    yt = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    w = {k: v.detach().double().clone().requires_grad_()
         for k, v in model.attention_.views().items()}
    weights = torch.tensor(h_w, dtype=torch.float64)
    present = weights > 0
    content = ((yt[:, 0] @ w["w_q"]).unsqueeze(1) * (yt @ w["w_k"])).sum(2)
    logits = torch.log(weights) + w["age_bias"] + content / math.sqrt(y.shape[2])
    logits = torch.cat([logits[:n_new], logits[n_new:].detach()]).masked_fill(~present, -1e30)
    att = torch.softmax(logits, 1) * present
    att = att / att.sum(1, keepdim=True).clamp_min(1e-30)
    return (att.unsqueeze(2) * yt).sum(1) * weights.sum(1, keepdim=True), yt, w


@pytest.fixture(scope="module")
def fitted(implicit_stream):
    return SequentialRecommender(**SMALL, seed=0).fit(implicit_stream.iloc[:1500])


# -- the attention's gradients ------------------------------------------------------------------


def test_hand_written_attention_gradients_match_autograd(fitted):
    rng = np.random.default_rng(0)
    rows, h_w = fitted._hist_rows(rng.integers(0, fitted.n_users, 7))
    rows[2], h_w[2] = 0, 0.0  # a row without recent items
    y = fitted.arena_.weight.numpy()[rows] * 1.0
    y[..., :-1] += rng.normal(0, 0.3, y[..., :-1].shape).astype(np.float32) * (h_w[..., None] > 0)
    upstream = rng.normal(size=(7, y.shape[2])).astype(np.float32)
    upstream[:, -1] = 0.0
    n_new = 3
    expected, yt, w = reference_pool(fitted, y, h_w, n_new)
    (expected * torch.tensor(upstream, dtype=torch.float64)).sum().backward()
    dy_expected = yt.grad.numpy().copy()
    dy_expected[..., -1] = 0.0
    pooled, cache = fitted._pool_numpy(y, h_w, n_new)
    dy, grads = fitted._attention_backward_numpy(upstream, y, cache)
    np.testing.assert_allclose(pooled, expected.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(dy, dy_expected, atol=2e-6)
    pooled_t, cache_t = fitted._pool_torch(torch.from_numpy(y), torch.from_numpy(h_w), n_new)
    dy_t = torch.empty_like(torch.from_numpy(y))
    grads_t = fitted._attention_backward_torch(torch.from_numpy(upstream), torch.from_numpy(y),
                                               cache_t, dy_t)
    np.testing.assert_allclose(pooled_t.numpy(), pooled, atol=1e-6)
    np.testing.assert_allclose(dy_t.numpy(), dy, atol=2e-6)
    for name in ("w_q", "w_k", "age_bias"):
        reference = w[name].grad.numpy()
        assert np.abs(reference).max() > 1e-4  # the new rows do move the attention
        np.testing.assert_allclose(grads[name], reference, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(grads_t[name].numpy(), reference, atol=1e-6, err_msg=name)


def test_the_attention_starts_at_the_two_tower_pooling(implicit_stream):
    seq = SequentialRecommender(**SMALL, seed=0).fit(implicit_stream.iloc[:10])
    seq.attention_.flat.zero_()  # no content term, no learned age bias: only the prior
    rng = np.random.default_rng(1)
    rows, h_w = seq._hist_rows(rng.integers(0, seq.n_users, 5))
    y = rng.normal(size=(*rows.shape, 9)).astype(np.float32)
    np.testing.assert_allclose(seq._pool_numpy(y, h_w, 0)[0],
                               np.matmul(h_w[:, None, :], y)[:, 0], rtol=1e-5, atol=1e-6)


# -- each event's own past ----------------------------------------------------------------------


def test_every_event_is_learned_with_the_items_its_user_had_just_before_it(implicit_stream):
    events = implicit_stream.iloc[:700]
    capacity = dict(replay_size=1_000)  # every event stays in the buffer, in arrival order
    one_by_one = SequentialRecommender(**{**SMALL, **capacity}, batch_size=1, seed=0)
    chunked = SequentialRecommender(**{**SMALL, **capacity}, batch_size=300, seed=0)
    one_by_one.fit(events.iloc[:100])
    chunked.fit(events.iloc[:100])
    for model in (one_by_one, chunked):
        model.partial_fit(events.iloc[100:])
    users = one_by_one.user_index_.lookup(events["user"].to_numpy())
    items = one_by_one.item_index_.lookup(events["item"].to_numpy())
    expected = np.zeros((len(events), 5), dtype=np.int32)
    for e in range(len(events)):
        before = items[:e][users[:e] == users[e]][-5:][::-1]  # latest first
        expected[e, :before.size] = before + 1
    np.testing.assert_array_equal(one_by_one.buffer_.seqs[:len(events)], expected)
    np.testing.assert_array_equal(chunked.buffer_.seqs[:len(events)], expected)


def test_it_learns_what_comes_next_better_than_from_stale_pasts():
    # four events per user and step: the two-tower model trains a step's events with their
    # users' recent items as they were before the step, this one with each event's own past
    from recinc_plugins.evaluation import Stream, compare

    models = {"seq": SequentialRecommender(**SMALL, seed=0),
              # the same chunks for both (one per step): two-tower's default of 4 events
              # would train each event with a past at most 3 events stale
              "two-tower": NeuralRecommender(**SMALL, batch_size=256, seed=0)}
    result = compare(models, Stream(cycles(per_user=20), step=240, warmup=240), k=3,
                     context="fresh")
    recall = result.summary.set_index("model")["recall@3"]
    assert recall["seq"] > 0.5 and recall["seq"] > 1.4 * recall["two-tower"]


# -- context -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_users", [3, 40])  # numpy scoring of small blocks, then torch
def test_an_empty_context_scores_exactly_as_no_context(fitted, n_users):
    users = np.arange(n_users)
    empty = Context.from_lists([[] for _ in range(n_users)])
    np.testing.assert_array_equal(fitted.score_block(users, empty), fitted.score_block(users))


@pytest.mark.parametrize("n_users", [4, 40])
def test_a_context_scores_as_if_appended_to_the_recent_items(fitted, n_users):
    rng = np.random.default_rng(n_users)
    users = rng.choice(fitted.n_users, n_users, replace=False)
    users[0] = -1  # never learned: its context alone
    rows = [rng.integers(0, fitted.n_items, rng.integers(0, 9)).tolist() for _ in users]
    rows[0] = rows[0] or [3]
    context = Context.from_lists(rows)
    weight = fitted.arena_.weight.numpy()
    items = weight[fitted.arena_.offset["items"]:][:fitted.n_items].astype(np.float64)
    expected = []
    for r, user in enumerate(users):
        recent = (learned_items(fitted, user) if user >= 0 else []) + rows[r]
        recent = recent[-5:][::-1]  # the last five, latest first
        if not recent:
            expected.append(fitted.score_block(np.array([user]))[0])
            continue
        y = np.zeros((1, 5, weight.shape[1]), dtype=np.float32)
        h_w = np.zeros((1, 5), dtype=np.float32)
        for age, item in enumerate(recent):
            y[0, age] = weight[fitted.arena_.offset["history"] + item]
            h_w[0, age] = 0.8 ** age / np.sqrt(len(recent))
        z = reference_pool(fitted, y, h_w, 0)[0].detach().numpy()[0]
        if user >= 0:
            z += weight[fitted.arena_.offset["users"] + user]
        expected.append(items[:, :-1] @ z[:-1] + items[:, -1])
    np.testing.assert_allclose(fitted.score_block(users, context), np.array(expected),
                               rtol=1e-5, atol=1e-5)


# -- determinism, persistence, paths ------------------------------------------------------------


def test_same_seed_gives_identical_models_and_save_load_resumes_exactly(tmp_path,
                                                                        implicit_stream):
    first, second = implicit_stream.iloc[:800], implicit_stream.iloc[800:1200]
    whole = SequentialRecommender(**SMALL, seed=5).fit(first)
    again = SequentialRecommender(**SMALL, seed=5).fit(first)
    assert torch.equal(whole.arena_.weight, again.arena_.weight)
    assert torch.equal(whole.attention_.flat, again.attention_.flat)
    assert not torch.equal(SequentialRecommender(**SMALL, seed=6).fit(first).attention_.flat,
                           whole.attention_.flat)
    whole.save(tmp_path / "model.bin")
    resumed = recinc_plugins.load(tmp_path / "model.bin")
    assert isinstance(resumed, SequentialRecommender)
    for idx in np.array_split(np.arange(len(second)), 10):
        whole.partial_fit(second.iloc[idx])
        resumed.partial_fit(second.iloc[idx])
    assert torch.equal(whole.arena_.weight, resumed.arena_.weight)
    assert torch.equal(whole.attention_.flat, resumed.attention_.flat)
    np.testing.assert_array_equal(whole.buffer_.seqs, resumed.buffer_.seqs)


def test_numpy_path_of_small_cpu_steps_matches_the_torch_path(implicit_stream):
    threads = torch.get_num_threads()  # one thread: torch's tiny reductions wait on others
    try:
        fast = SequentialRecommender(**SMALL, num_threads=1, seed=0).fit(implicit_stream[:300])
        slow = SequentialRecommender(**SMALL, num_threads=1, seed=0).fit(implicit_stream[:300])
        slow._numpy_max_rows = slow._numpy_max_users = 0
        for e in range(300, 500):
            fast.partial_fit(implicit_stream.iloc[e:e + 1])
            slow.partial_fit(implicit_stream.iloc[e:e + 1])
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(fast.arena_.weight.numpy(), slow.arena_.weight.numpy(),
                               atol=2e-5)
    np.testing.assert_allclose(fast.attention_.flat.numpy(), slow.attention_.flat.numpy(),
                               atol=2e-5)
    users = np.arange(10)
    np.testing.assert_allclose(fast.score_block(users), slow.score_block(users), atol=1e-4)


@pytest.mark.parametrize(("params", "message"), [
    ({"history": 0}, "history must be an integer >= 1"),
    ({"attention": "yes"}, "attention must be True or False"),
    ({"attention_learning_rate": 0}, "attention_learning_rate must be a finite number > 0"),
    ({"n_negatives": 0}, "n_negatives must be an integer >= 1"),
    ({"loss": "hinge"}, "loss must be one of"),
])
def test_bad_parameters_are_rejected_by_name(implicit_stream, params, message):
    with pytest.raises(ValueError, match=message):
        SequentialRecommender(**{**SMALL, **params}).fit(implicit_stream.iloc[:50])


# the parameters saved files hold, by name, with their defaults (issue 13: one definition)
NEURAL_DEFAULTS = {
    "n_factors": 64, "loss": "bpr", "history": 20, "history_decay": 0.8, "n_negatives": 16,
    "negatives": "uniform", "replay_size": 20_000, "n_replay": 4, "replay": "reservoir",
    "n_passes": 1, "forget_passes": 1, "batch_size": None, "learning_rate": None,
    "optimizer": "auto", "reg": None, "bias_learning_rate": None, "bias_reg": None,
    "calibration": None, "calibration_rate": 0.003, "calibration_width": 0.1, "init_std": 0.1,
    "hash_buckets": None, "cold_start": "newcomer", "device": "auto", "num_threads": None,
    "seed": None}


def test_it_takes_the_two_tower_models_parameters_from_one_definition():
    neural, seq = NeuralRecommender(), SequentialRecommender()
    assert neural.get_params() == NEURAL_DEFAULTS
    assert list(neural.get_params()) == list(NEURAL_DEFAULTS)  # positional order kept
    assert seq.get_params() == {**NEURAL_DEFAULTS, "n_negatives": 32, "batch_size": 256,
                                "attention": True,
                                "attention_learning_rate": 3e-4}
    assert repr(seq) == "SequentialRecommender()"
    tuned = SequentialRecommender(n_factors=8, history=3, attention=False, device="cpu")
    assert repr(tuned) == ("SequentialRecommender(n_factors=8, history=3, device='cpu', "
                           "attention=False)")
    assert tuned.clone().get_params() == tuned.get_params()
    with pytest.raises(TypeError, match="positional"):  # the attention's are keyword only
        SequentialRecommender(*NEURAL_DEFAULTS.values(), False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'atention'"):
        SequentialRecommender(atention=False)


def test_registered_as_neural_seq_and_attention_can_be_switched_off(implicit_stream):
    model = recinc_plugins.make("neural-seq", **SMALL, attention=False, seed=0)
    assert isinstance(model, SequentialRecommender) and model.capabilities.context
    model.fit(implicit_stream.iloc[:400])
    before = model.attention_.flat.clone()
    model.partial_fit(implicit_stream.iloc[400:500])
    assert torch.equal(model.attention_.flat, before)  # nothing learned there


def test_predicts_ratings_with_the_mse_loss_as_the_two_tower_model_does(explicit_stream):
    model = SequentialRecommender(**SMALL, loss="mse", seed=0).fit(explicit_stream.iloc[:600])
    assert model.predicts_ratings()
    pred = model.score(explicit_stream["user"].iloc[:50], explicit_stream["item"].iloc[:50])
    assert np.isfinite(pred).all() and 1.5 < pred.mean() < 5.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_matches_the_cpu_path(implicit_stream):
    cpu = SequentialRecommender(**SMALL, seed=2).fit(implicit_stream)
    gpu = SequentialRecommender(**{**SMALL, "device": "cuda"}, seed=2).fit(implicit_stream)
    np.testing.assert_allclose(gpu.arena_.weight.cpu().numpy(), cpu.arena_.weight.numpy(),
                               atol=1e-3)
    np.testing.assert_allclose(gpu.attention_.flat.cpu().numpy(), cpu.attention_.flat.numpy(),
                               atol=1e-3)


# -- ml-100k ------------------------------------------------------------------------------------


@pytest.mark.data
def test_fresh_context_lifts_it_far_above_popularity_on_the_start_of_ml100k(ml100k):
    from recinc_plugins import Popularity
    from recinc_plugins.evaluation import Stream, compare

    models = {"seq": SequentialRecommender(device="cpu", seed=0), "pop": Popularity()}
    result = compare(models, Stream(ml100k.iloc[:20_000], step=1000), k=10, context="fresh")
    recall = result.summary.set_index("model")["recall@10"]
    assert recall["seq"] > 1.6 * recall["pop"]  # 0.143 against 0.074
