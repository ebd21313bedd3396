"""The replay engine's fast paths give the numbers of the plain public interface, exactly.

A model written outside the package, against the public interface only and registered through
the entry point, is the reference: the engine scores it through ``score_block`` alone. The
built-in models that say more about their scores (``shared_scores``: popularity;
``item_vectors``: implicit's factor models) must give the same ranks and coverage.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins.base import top_k
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.evaluation.prequential import ReplayConfig, replay

PLUGIN = textwrap.dedent('''
    """A third-party package: models written against recinc-plugins' public interface."""
    import numpy as np

    from recinc_plugins import IncrementalRecommender


    class PlainPopularity(IncrementalRecommender):
        """All-time counts, scored through the documented hooks only."""

        def _init_model(self):
            self.counts_ = np.zeros(0)

        def _grow(self, n_users, n_items):
            grown = np.zeros(n_items)
            grown[: self.counts_.size] = self.counts_
            self.counts_ = grown

        def _partial_fit(self, batch):
            np.add.at(self.counts_, batch.items, 1.0)

        def _score_users(self, users):
            return np.tile(self.counts_, (len(users), 1))


    def plain_als(**params):
        """implicit's ALS through our adapter, with its GEMM fast path switched off."""
        from recinc_plugins.adapters.implicit import ImplicitALS

        class PlainALS(ImplicitALS):
            def item_vectors(self):
                return None

        return PlainALS(**params)
''')


@pytest.fixture
def plugins(install_plugin):
    """Install the plugin package above as a distribution with entry points."""
    install_plugin("thirdparty_engine", PLUGIN, {
        "plain-popularity": "thirdparty_engine:PlainPopularity",
        "plain-als": "thirdparty_engine:plain_als"})
    table = recinc_plugins.list_models().set_index("name")
    assert table.loc["plain-popularity", "source"] == "entry point (thirdparty-engine)"


def _same(result):
    """The fast and the plain model of ``result`` ranked every event alike, and covered the
    same items."""
    assert not result.failures
    fast, plain = result.records["fast"], result.records["plain"]
    np.testing.assert_array_equal(fast.rank, plain.rank)
    np.testing.assert_array_equal(fast.recommended, plain.recommended)


def tricky_stream(seed: int = 0, n: int = 3_000) -> pd.DataFrame:
    """Repeats (a user's item again), ties (few distinct counts), new items late, new users
    all along, and timestamps with ties."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 120, n)
    items = np.minimum(rng.geometric(0.02, n), 40 + np.arange(n) // 20)
    repeat = rng.random(n) < 0.1
    items[1:][repeat[1:]] = items[:-1][repeat[1:]]
    users[1:][repeat[1:]] = users[:-1][repeat[1:]]
    return pd.DataFrame({"user": users, "item": items, "timestamp": np.arange(n) // 3})


@pytest.mark.parametrize("step, warmup", [(1, 0), (1, 200), (7, 0), (250, 100), (1_000, 500)])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_shared_scores_rank_exactly_like_score_block(plugins, step, warmup, exclude_seen):
    stream = Stream(tricky_stream(), step=step, warmup=warmup)
    assert stream.repeat.any()
    models = {"fast": recinc_plugins.make("popularity"),
              "plain": recinc_plugins.make("plain-popularity")}
    _same(compare(models, stream, ks=(3, 10), exclude_seen=exclude_seen))


def test_the_cold_start_row_is_shared_by_a_step_unknown_users(plugins):
    # the newcomer fallback differs from the known users' counts: both orders are exercised
    stream = Stream(tricky_stream(seed=1), step=100)
    models = {"fast": recinc_plugins.make("popularity", cold_start="newcomer"),
              "plain": recinc_plugins.make("plain-popularity")}
    res = compare(models, stream, ks=(10,))
    cold = stream.cold_user
    fast, plain = res.records["fast"].rank, res.records["plain"].rank
    np.testing.assert_array_equal(fast[~cold], plain[~cold])
    assert (fast[cold] != plain[cold]).any()  # the newcomer policy answered the unknown users


@pytest.mark.parametrize("step", [1, 500])
def test_factor_models_rank_exactly_like_score_block(plugins, explicit_stream, step):
    params = {"factors": 16, "seed": 0, "num_threads": 1}
    stream = Stream(explicit_stream.iloc[:1_500], step=step, warmup=300)
    models = {"fast": recinc_plugins.make("implicit-als", **params),
              "plain": recinc_plugins.make("plain-als", **params)}
    assert models["fast"].fit(explicit_stream.iloc[:300]).item_vectors() is not None
    _same(compare(models, stream, ks=(5, 10)))


@pytest.mark.data
@pytest.mark.slow
def test_on_ml100k_every_fast_path_gives_the_plain_numbers(plugins, ml100k):
    for step in (1, 1_000):
        stream = Stream(ml100k, step=step)
        pop = compare({"fast": recinc_plugins.make("popularity"),
                       "plain": recinc_plugins.make("plain-popularity")}, stream, k=10)
        _same(pop)
        if step == 1:
            assert pop.summary.loc[0, "recall@10"] == pytest.approx(0.07695, abs=1e-9)
        else:
            assert pop.summary.loc[0, "recall@10"] == pytest.approx(0.0536, abs=1e-9)
    params = {"seed": 0, "num_threads": 1}
    stream = Stream(ml100k, step=1_000)
    als = compare({"fast": recinc_plugins.make("implicit-als", **params),
                   "plain": recinc_plugins.make("plain-als", **params)}, stream, k=10,
                  cold_start="newcomer")
    _same(als)  # the exact check: fast and plain agree on every hit
    # the published figure, to within what float32 BLAS kernels change between CPUs
    # (OpenBLAS's SkylakeX / Sandybridge / Prescott kernels give 0.05678 / 0.05693 / 0.05673)
    assert als.summary.loc[0, "recall@10"] == pytest.approx(0.05691, abs=5e-4)


def test_an_eval_fraction_ranks_a_seeded_sample_and_learns_everything(explicit_stream):
    stream = Stream(explicit_stream, step=100, warmup=200)
    full = replay("m", recinc_plugins.make("popularity"), stream, ReplayConfig())
    config = ReplayConfig(eval_fraction=0.3, eval_seed=5)
    model = recinc_plugins.make("popularity")
    part = replay("m", model, stream, config)
    mask = part.scored
    assert mask is not None and mask.shape == (stream.n_scored,)
    assert 0.25 < mask.mean() < 0.35
    np.testing.assert_array_equal(mask, config.sample(stream.n_scored))  # same for every model
    np.testing.assert_array_equal(part.rank[mask], full.rank[mask])
    assert np.isinf(part.rank[~mask]).all()
    # every event was learned all the same
    assert model.n_events_ == len(stream)
    assert part.scored_users.sum() < full.scored_users.sum()


def test_an_eval_fraction_predicts_ratings_for_the_sample_only(explicit_stream):
    stream = Stream(explicit_stream, step=100, warmup=200)
    # (not River's models: River draws random numbers for every prediction of an unseen id,
    # so what is predicted changes what they learn)
    make = lambda: recinc_plugins.make("surprise-svd", seed=0)  # noqa: E731
    full = replay("m", make(), stream, ReplayConfig())
    part = replay("m", make(), stream, ReplayConfig(eval_fraction=0.5))
    mask = part.scored
    np.testing.assert_allclose(part.pred[mask], full.pred[mask])
    assert np.isnan(part.pred[~mask]).all()


def test_float32_scores_rank_as_their_float64_values():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, (40, 3_000)).astype(np.float32) / np.float32(7)
    scores[:, ::11] = -np.inf
    scores[3, :] = np.nan
    idx32, val32 = top_k(scores, 12)
    idx64, val64 = top_k(scores.astype(np.float64), 12)
    assert val32.dtype == np.float32
    np.testing.assert_array_equal(idx32, idx64)
    np.testing.assert_array_equal(val32.astype(np.float64), val64)


def test_the_public_encoded_interface_round_trips(explicit_stream):
    model = recinc_plugins.make("popularity")
    users, items = model.add_ids(users=["a", "b"], items=["x", "y", "z"])
    np.testing.assert_array_equal(users, [0, 1])
    np.testing.assert_array_equal(items, [0, 1, 2])
    from recinc_plugins.base import Batch

    model.learn_encoded(Batch(users=np.array([0, 1, 1]), items=np.array([2, 2, 0])))
    np.testing.assert_array_equal(model.shared_scores(), [1.0, 0.0, 2.0])
    np.testing.assert_array_equal(model.score_block(np.array([1])), [[1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(model.score_encoded(np.array([0, -1]), np.array([2, 0])),
                                  [2.0, 1.0])
    np.testing.assert_array_equal(model.cold_scores(), [1.0, 0.0, 2.0])
    assert model.item_vectors() is None and not model.predicts_ratings()
    assert model.reset().n_items == 0


def _torch():
    return pytest.importorskip("torch", reason="the torch scoring path needs torch")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_torch_scoring_path_ranks_like_numpy(explicit_stream, device):
    torch = _torch()
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the CUDA scoring path is tested where there is one")
    stream = Stream(explicit_stream, step=300, warmup=300)
    params = {"factors": 16, "seed": 0, "num_threads": 1}
    records = {}
    for name in ("numpy", device):
        model = recinc_plugins.make("implicit-als", **params)
        records[name] = replay("m", model, stream, ReplayConfig(ks=(5, 10), device=name))
    a, b = records["numpy"], records[device]
    # another BLAS can round a score differently, and so order a near-tie otherwise: the
    # ranks agree but for such events, and the numbers to well within their noise
    assert (a.rank == b.rank).mean() > 0.99
    assert (a.rank < 10).mean() == pytest.approx((b.rank < 10).mean(), abs=2e-3)
    assert a.extra["gemm_flops"] == b.extra["gemm_flops"] > 0


def test_a_device_that_is_not_one_is_a_clear_error(explicit_stream):
    stream = Stream(explicit_stream.iloc[:500], step=100)
    with pytest.raises(ValueError, match="device must be"):
        replay("m", recinc_plugins.make("popularity"), stream, ReplayConfig(device="gpu!"))


def test_small_steps_replay_with_one_thread_and_large_ones_with_the_cores(explicit_stream):
    from threadpoolctl import threadpool_info

    from recinc_plugins.evaluation.prequential import SMALL_STEP

    seen = []

    from recinc_plugins.baselines import Popularity

    class Probe(Popularity):
        def _partial_fit(self, batch):
            seen.append(max((lib["num_threads"] for lib in threadpool_info()), default=1))
            super()._partial_fit(batch)

    before = max((lib["num_threads"] for lib in threadpool_info()), default=1)
    small = compare({"m": Probe()}, Stream(explicit_stream, step=100))
    assert small.records["m"].extra["threads"] == 1 and set(seen) == {1}
    seen.clear()
    big = compare({"m": Probe()}, Stream(explicit_stream, step=SMALL_STEP), threads=2)
    assert big.records["m"].extra["threads"] == 2 and set(seen) == {2}
    assert max((lib["num_threads"] for lib in threadpool_info()), default=1) == before
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        compare({"m": Probe()}, Stream(explicit_stream, step=100), threads=0)


def test_a_comparison_gives_every_model_the_same_cold_start_and_a_seed(explicit_stream):
    from recinc_plugins import Newcomer

    stream = Stream(explicit_stream, step=300, warmup=300)
    models = {"pop": recinc_plugins.make("popularity"),
              "als": recinc_plugins.make("implicit-als", factors=8, num_threads=1),
              "own": recinc_plugins.make("popularity", cold_start=Newcomer(first_events=3)),
              "svd": recinc_plugins.make("surprise-svd", seed=7)}
    res = compare(models, stream, k=10)
    settings = res.summary.set_index("model")[["cold_start", "seed"]]
    assert settings.loc["pop", "cold_start"] == settings.loc["als", "cold_start"] == "popularity"
    assert settings.loc["svd", "cold_start"] == "popularity"
    assert settings.loc["own", "cold_start"].startswith("Newcomer(first_events=3")
    assert settings.loc["als", "seed"] == 0 and settings.loc["svd", "seed"] == 7
    assert models["als"].seed is None and models["als"].cold_start == "newcomer"  # untouched
    again = compare(models, stream, k=10)
    pd.testing.assert_frame_equal(res.summary.filter(regex="@"), again.summary.filter(regex="@"))
    newcomer = compare(models, stream, k=10, cold_start="newcomer").summary.set_index("model")
    assert newcomer.loc["pop", "cold_start"] == "newcomer"
    with pytest.raises(ValueError, match="cold_start must be"):
        compare(models, stream, cold_start="zero")
    with pytest.raises(ValueError, match="seed must be"):
        compare(models, stream, seed=-1)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="the per-model peak reads Linux's /proc")
def test_peak_memory_is_each_model_own_not_hidden_by_an_earlier_one(explicit_stream):
    from recinc_plugins.baselines import Popularity

    try:  # what the harness writes to reset the peak between models
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError as exc:
        pytest.skip(f"this kernel does not let a process reset its peak size ({exc}): the "
                    "harness then reports the process's peak, not each model's")

    class Hog(Popularity):
        """Popularity that holds 80 MB while it learns a step."""

        def _partial_fit(self, batch):
            self.junk_ = np.ones(10_000_000)
            super()._partial_fit(batch)
            del self.junk_

    stream = Stream(explicit_stream, step=1_000)
    peaks = compare({"hog": Hog(), "pop": Popularity(), "hog again": Hog()},
                    stream).summary.set_index("model")["peak_mem_mb"]
    assert peaks["hog"] > 70 and peaks["hog again"] > 70  # the second is not hidden
    assert peaks["pop"] < 30
