"""The implicit adapters (ALS, BPR, LMF) against the real library."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("implicit")

from recinc_plugins.adapters.implicit import ImplicitALS, ImplicitBPR, ImplicitLMF

SMALL = {"factors": 8, "num_threads": 1, "seed": 0}
MODELS = [
    pytest.param(ImplicitALS, {**SMALL, "iterations": 5}, id="als"),
    pytest.param(ImplicitBPR, {**SMALL, "iterations": 20}, id="bpr"),
    pytest.param(ImplicitLMF, {**SMALL, "iterations": 5}, id="lmf"),
]
BIAS_COLUMNS = {ImplicitALS: 0, ImplicitBPR: 1, ImplicitLMF: 2}


def _recall_at_k(model, events: pd.DataFrame, k: int = 10) -> float:
    users = events["user"].to_numpy()
    uniq, inverse = np.unique(users, return_inverse=True)
    recs = model.recommend(uniq, k=k)
    return float((recs.items[inverse] == events["item"].to_numpy()[:, None]).any(axis=1).mean())


@pytest.mark.parametrize(("cls", "params"), MODELS)
def test_growth_alone_keeps_old_scores_and_grows_factor_shapes(cls, params, implicit_stream):
    model = cls(**params).fit(implicit_stream.iloc[:1500])
    users = implicit_stream["user"].iloc[:200].to_numpy()
    items = implicit_stream["item"].iloc[:200].to_numpy()
    before = model.score(users, items)
    n_users, n_items = model.n_users, model.n_items

    model.user_index_.add(np.array(["grown-u1", "grown-u2"], dtype=object))
    model.item_index_.add(np.array(["grown-i1", "grown-i2", "grown-i3"], dtype=object))
    model._sync_size()

    np.testing.assert_array_equal(model.score(users, items), before)
    width = params["factors"] + BIAS_COLUMNS[cls]
    for factors, rows in ((model.model_.user_factors, n_users + 2),
                          (model.model_.item_factors, n_items + 3)):
        assert factors.shape == (rows, width)
        assert factors.dtype == np.float32
        assert factors.flags.c_contiguous


def test_bpr_grown_rows_carry_the_bias_columns(implicit_stream):
    model = ImplicitBPR(**SMALL, iterations=5).fit(implicit_stream.iloc[:500])
    model.partial_fit(pd.DataFrame({"user": ["new-user"], "item": ["new-item"]}))
    assert model.model_.user_factors[-1, -1] == 1.0
    assert np.all(model.model_.user_factors[:, -1] == 1.0)


def test_lmf_grown_rows_carry_both_bias_columns(implicit_stream):
    model = ImplicitLMF(**SMALL, iterations=3).fit(implicit_stream.iloc[:500])
    model.user_index_.add(np.array(["new-user"], dtype=object))
    model.item_index_.add(np.array(["new-item"], dtype=object))
    model._sync_size()
    assert model.model_.user_factors[-1, -2] == 1.0 and model.model_.user_factors[-1, -1] == 0.0
    assert model.model_.item_factors[-1, -2] == 0.0 and model.model_.item_factors[-1, -1] == 1.0


@pytest.mark.parametrize(("cls", "params"), MODELS)
def test_new_users_and_items_are_recommendable_after_one_partial_fit(cls, params,
                                                                     implicit_stream):
    model = cls(**params).fit(implicit_stream.iloc[:1500])
    old_user = implicit_stream["user"].iloc[0]
    new = pd.DataFrame({
        "user": ["fresh"] * 3 + [old_user],
        "item": ["fresh-item", *implicit_stream["item"].iloc[:2], "fresh-item"],
    })
    model.partial_fit(new)

    recs = model.recommend(["fresh"], k=5)
    assert not recs.cold[0]
    assert np.isfinite(recs.scores).all()
    # the new item has learned factors and can be recommended to another user
    row = model.item_index_.lookup(["fresh-item"])[0]
    assert np.abs(model.model_.item_factors[row, : params["factors"]]).sum() > 0
    other = implicit_stream["user"].iloc[5]
    offered = model.recommend([other], k=1, candidates=["fresh-item"], exclude_seen=False)
    assert offered.items[0, 0] == "fresh-item" and np.isfinite(offered.scores[0, 0])


def test_incremental_als_step_matches_a_full_refit_on_recall(implicit_stream):
    """Tolerance: recall@10 within 0.03 (absolute) of refitting on the same data."""
    first, step, test = (implicit_stream.iloc[:2000], implicit_stream.iloc[2000:2500],
                         implicit_stream.iloc[2500:])
    params = {"factors": 16, "regularization": 1.0, "num_threads": 1, "seed": 0}
    incremental = ImplicitALS(**params).fit(first).partial_fit(step)
    refit = ImplicitALS(**params).fit(pd.concat([first, step]))
    rec_inc, rec_refit = _recall_at_k(incremental, test), _recall_at_k(refit, test)
    assert rec_refit > 0.05  # the comparison means something: well above chance
    assert abs(rec_inc - rec_refit) <= 0.03, (rec_inc, rec_refit)


def test_als_refresh_solves_touched_items_against_their_full_user_lists(implicit_stream):
    model = ImplicitALS(**SMALL, item_refresh=0).fit(implicit_stream.iloc[:1500])
    step = implicit_stream.iloc[1500:1600]
    model.partial_fit(step)
    items = np.unique(model.item_index_.lookup(step["item"].to_numpy()))
    # item x user orientation (implicit #700): one row per item, its full column of users
    item_users = model._matrix().T.tocsr()[items]
    assert item_users.shape == (items.size, model.n_users)
    expected = model.model_.recalculate_item(items, item_users)
    np.testing.assert_allclose(model.model_.item_factors[items], expected, rtol=1e-4, atol=1e-5)


def test_als_periodic_refit_runs_every_n_events(implicit_stream):
    model = ImplicitALS(**SMALL, refit_every=400).fit(implicit_stream.iloc[:1000])
    model.partial_fit(implicit_stream.iloc[1000:1300])
    assert model._events_at_refit == 1000
    model.partial_fit(implicit_stream.iloc[1300:1500])
    assert model._events_at_refit == 1500


def test_bpr_continues_warm_from_its_factors(implicit_stream):
    model = ImplicitBPR(**SMALL, iterations=30, learning_rate=0.02).fit(
        implicit_stream.iloc[:2000])
    before = model.model_.item_factors.copy()
    model.partial_fit(implicit_stream.iloc[2000:2200])
    after = model.model_.item_factors[: before.shape[0]]
    assert not np.array_equal(before, after)
    corr = np.corrcoef(before.ravel(), after.ravel())[0, 1]
    assert corr > 0.8  # moved, but from where it was: not re-initialised


@pytest.mark.parametrize(("cls", "params"), MODELS)
def test_save_load_round_trips_recommendations(cls, params, implicit_stream, tmp_path):
    model = cls(**params).fit(implicit_stream.iloc[:1000]).partial_fit(
        implicit_stream.iloc[1000:1300])
    path = tmp_path / "model.recinc"
    model.save(path)
    loaded = cls.load(path)
    users = implicit_stream["user"].unique()[:20]
    a, b = model.recommend(users, k=10), loaded.recommend(users, k=10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert type(loaded.model_) is type(model.model_)
    # and it keeps learning the same way
    model.partial_fit(implicit_stream.iloc[1300:1400])
    loaded.partial_fit(implicit_stream.iloc[1300:1400])
    np.testing.assert_allclose(loaded.model_.user_factors, model.model_.user_factors,
                               rtol=1e-5, atol=1e-6)


def test_num_threads_is_passed_to_the_wrapped_model(implicit_stream):
    model = ImplicitALS(factors=4, num_threads=2, seed=0).fit(implicit_stream.iloc[:200])
    assert model.model_.num_threads == 2


def test_confidence_transforms_follow_alpha():
    events = pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"], "weight": [1.0, 3.0]})
    for confidence, expected in (("linear", [3.0, 7.0]), ("log", 1 + 2 * np.log1p([1.0, 3.0])),
                                 ("binary", [3.0, 3.0])):
        model = ImplicitALS(factors=2, alpha=2.0, confidence=confidence, num_threads=1,
                            seed=0).fit(events)
        np.testing.assert_allclose(model._matrix().toarray()[0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("cls", "params", "match"),
    [
        (ImplicitALS, {"factors": 0}, "factors must be an integer >= 1"),
        (ImplicitALS, {"regularization": -1.0},
         "regularization must be 'auto' or a finite number >= 0"),
        (ImplicitALS, {"item_refresh": "often"}, "item_refresh must be 'auto' or a finite"),
        (ImplicitALS, {"confidence": "square"}, "confidence must be one of"),
        (ImplicitALS, {"refit_every": 0}, "refit_every must be an integer >= 1"),
        (ImplicitALS, {"alpha": float("nan")}, "alpha must be a finite number"),
        (ImplicitALS, {"num_threads": -1}, "num_threads must be an integer >= 0"),
        (ImplicitBPR, {"update_on": "some"}, "update_on must be one of"),
        (ImplicitBPR, {"learning_rate": 0.0},
         "learning_rate must be 'auto' or a finite number > 0"),
        (ImplicitBPR, {"replay": -1}, "replay must be a finite number >= 0"),
        (ImplicitBPR, {"iterations": 2.5}, "iterations must be an integer >= 1"),
        (ImplicitLMF, {"neg_prop": 0}, "neg_prop must be 'auto' or a positive integer"),
        (ImplicitLMF, {"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
        (ImplicitLMF, {"update_iterations": 0}, "update_iterations must be an integer >= 1"),
    ],
)
def test_bad_parameters_raise_clear_errors(cls, params, match, implicit_stream):
    with pytest.raises(ValueError, match=match):
        cls(**params).fit(implicit_stream.iloc[:50])


def test_use_gpu_without_cuda_says_so(implicit_stream):
    import implicit.gpu

    if implicit.gpu.HAS_CUDA:
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="use_gpu=True, but implicit has no CUDA support"):
        ImplicitALS(use_gpu=True).fit(implicit_stream.iloc[:50])


def _implicit_has_cuda() -> bool:
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


needs_cuda = pytest.mark.skipif(not _implicit_has_cuda(),
                                reason="implicit has no CUDA support here (CUDA build + rmm)")


@needs_cuda
@pytest.mark.parametrize(("cls", "params", "quality"), [
    pytest.param(ImplicitALS, {"regularization": 1.0}, True, id="als"),
    # implicit's CUDA BPR fits this small stream no better than popularity (0.022 vs the CPU's
    # 0.040); on ml-100k it matches the CPU (test below)
    pytest.param(ImplicitBPR, {}, False, id="bpr"),
])
def test_gpu_fits_come_back_as_cpu_models(cls, params, quality, implicit_stream):
    """Full fits on implicit's CUDA classes, copied back to the CPU model: same shapes and dtype,
    and for ALS recall@10 above popularity and within 0.03 (absolute) of the CPU fit."""
    from recinc_plugins.baselines import Popularity

    first, step, test = (implicit_stream.iloc[:2000], implicit_stream.iloc[2000:2500],
                         implicit_stream.iloc[2500:])
    common = {"factors": 16, "num_threads": 1, "seed": 0, **params}
    cpu = cls(**common).fit(first).partial_fit(step)
    gpu = cls(**common, use_gpu=True).fit(first).partial_fit(step)
    for name in ("user_factors", "item_factors"):
        ours, theirs = getattr(gpu.model_, name), getattr(cpu.model_, name)
        assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
        assert ours.shape == theirs.shape and np.isfinite(ours).all()
    popularity = _recall_at_k(Popularity().fit(pd.concat([first, step])), test)
    rec_cpu, rec_gpu = _recall_at_k(cpu, test), _recall_at_k(gpu, test)
    print(f"{cls.__name__}: recall@10 gpu {rec_gpu:.4f} cpu {rec_cpu:.4f} pop {popularity:.4f}")
    if quality:
        assert rec_gpu > popularity and abs(rec_gpu - rec_cpu) <= 0.03, (rec_gpu, rec_cpu)


@needs_cuda
@pytest.mark.data
def test_gpu_fits_match_the_cpu_on_ml100k(ml100k):
    """1,000-event steps: BPR (first fit on the GPU) and ALS (refits every 10,000 events on the
    GPU) within 0.002 recall@10 of the same models on the CPU, and above popularity."""
    from recinc_plugins.baselines import Popularity
    from recinc_plugins.evaluation import Stream, compare

    common = {"num_threads": 1, "seed": 0}
    models = {"pop": Popularity()}
    for device, flag in (("cpu", False), ("gpu", True)):
        models[f"bpr-{device}"] = ImplicitBPR(**common, use_gpu=flag)
        models[f"als-{device}"] = ImplicitALS(**common, refit_every=10_000, use_gpu=flag)
    recall = compare(models, Stream(ml100k, step=1000), k=10).summary.set_index("model")
    recall = recall["recall@10"]
    print(recall.to_dict())
    for name in ("bpr", "als"):
        assert abs(recall[f"{name}-gpu"] - recall[f"{name}-cpu"]) <= 0.002
        assert recall[f"{name}-gpu"] > recall["pop"] * 1.05


@needs_cuda
def test_als_periodic_refits_run_on_the_gpu(implicit_stream, tmp_path):
    model = ImplicitALS(factors=8, num_threads=1, seed=0, use_gpu=True, refit_every=400)
    model.fit(implicit_stream.iloc[:1000])
    model.partial_fit(implicit_stream.iloc[1000:1500])  # 500 events: a GPU refit
    assert model._events_at_refit == 1500
    model.save(tmp_path / "als.recinc")
    loaded = ImplicitALS.load(tmp_path / "als.recinc")
    users = implicit_stream["user"].unique()[:20]
    np.testing.assert_array_equal(loaded.recommend(users, k=5).items,
                                  model.recommend(users, k=5).items)


def test_partial_fit_on_a_fresh_model_trains_from_scratch(implicit_stream):
    model = ImplicitALS(**SMALL).partial_fit(implicit_stream.iloc[:500])
    assert model.is_fitted
    assert model.model_.user_factors.shape == (model.n_users, 8)


@pytest.mark.data
def test_incremental_als_on_ml100k_matches_refit_within_tolerance(ml100k):
    """After 40,000 events and a 1,000-event step: known users' recall@10 on the next 2,000
    events within 0.015 (absolute; about 800 events, so about one standard error) of a refit."""
    first, step = ml100k.iloc[:40_000], ml100k.iloc[40_000:41_000]
    test = ml100k.iloc[41_000:43_000]
    test = test[test["user"].isin(pd.concat([first, step])["user"])]
    incremental = ImplicitALS(num_threads=1, seed=0).fit(first).partial_fit(step)
    refit = ImplicitALS(num_threads=1, seed=0).fit(pd.concat([first, step]))
    rec_inc, rec_refit = _recall_at_k(incremental, test), _recall_at_k(refit, test)
    assert rec_refit > 0.03
    assert abs(rec_inc - rec_refit) <= 0.015, (rec_inc, rec_refit)


def test_missing_implicit_raises_an_import_error_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "implicit", None)  # what an absent package looks like
    with pytest.raises(ImportError, match=r"recinc-plugins\[implicit\]"):
        ImplicitALS().fit(pd.DataFrame({"user": [1], "item": [2]}))


def test_importing_the_package_does_not_import_implicit():
    import subprocess
    import sys

    code = ("import sys, recinc_plugins, recinc_plugins.adapters.implicit; "
            "print('implicit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_an_empty_fit_leaves_the_model_to_train_fully_on_the_next_batch(implicit_stream):
    empty = implicit_stream.iloc[:0]
    model = ImplicitALS(**SMALL).fit(empty)
    assert not model.is_fitted
    assert model.recommend([1], k=3).cold.tolist() == [True]
    model.partial_fit(implicit_stream.iloc[:500])
    assert model.is_fitted and model.model_.user_factors.shape == (model.n_users, 8)


def test_lmf_keeps_its_adagrad_accumulators_across_steps(implicit_stream):
    model = ImplicitLMF(**SMALL, iterations=3).fit(implicit_stream.iloc[:1000])
    before = model.user_adagrad_.copy()
    assert before.shape == model.model_.user_factors.shape and before.sum() > 0
    step = implicit_stream.iloc[1000:1100].copy()
    step.iloc[-1, step.columns.get_indexer(["user", "item"])] = [10_000, 10_000]  # new ids
    model.partial_fit(step)
    after = model.user_adagrad_
    assert after.shape == model.model_.user_factors.shape
    assert after.dtype == np.float32 and after.flags.c_contiguous
    # sums of squared gradients only grow: the step continued from them, not from zero
    assert np.all(after[: before.shape[0]] >= before)
    assert model.item_adagrad_.shape == model.model_.item_factors.shape


@pytest.mark.parametrize("cls", [ImplicitALS, ImplicitBPR])
def test_non_positive_strengths_are_refused_before_anything_changes(cls, implicit_stream):
    model = cls(factors=4, iterations=2, seed=0, num_threads=1).fit(implicit_stream)
    n_events, n_users = model.n_events_, model.n_users
    bad = pd.DataFrame({"user": ["new", 0], "item": [1, 2], "weight": [1.0, 0.0]})
    with pytest.raises(ValueError, match=r"learns from positive strengths; 1 event\(s\) have "
                                         r"weight <= 0 \(positions \[1\]\)"):
        model.partial_fit(bad)
    assert (model.n_events_, model.n_users) == (n_events, n_users)


@pytest.mark.parametrize("cls", [ImplicitALS, ImplicitBPR, ImplicitLMF])
def test_random_state_is_a_deprecated_name_of_seed(cls, implicit_stream, tmp_path):
    with pytest.warns(DeprecationWarning, match=rf"{cls.__name__}\(random_state=...\) is "
                                                 "deprecated: use seed="):
        old = cls(factors=8, num_threads=1, random_state=3)
    assert old.get_params() == cls(factors=8, num_threads=1, seed=3).get_params()
    with pytest.raises(TypeError, match="got both 'random_state' and 'seed'"):
        cls(seed=1, random_state=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'random_seed'"):
        cls(random_seed=2)


def test_a_file_saved_with_random_state_loads_it_as_seed(implicit_stream, tmp_path,
                                                         monkeypatch):
    import warnings

    model = ImplicitALS(**SMALL).fit(implicit_stream.iloc[:300])
    params = model.get_params()
    params["random_state"] = params.pop("seed")
    with monkeypatch.context() as patch:  # what an earlier version saved
        patch.setattr(ImplicitALS, "get_params", lambda self, deep=False: params)
        model.save(tmp_path / "old.recinc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = ImplicitALS.load(tmp_path / "old.recinc")
    assert loaded.seed == 0 and "random_state" not in loaded.get_params()
    users = implicit_stream["user"].unique()[:10]
    np.testing.assert_array_equal(loaded.recommend(users, k=5).items,
                                  model.recommend(users, k=5).items)
