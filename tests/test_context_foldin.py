"""Scoring with context by folding the user in (issue 12): implicit's BPR and LMF, LightFM and
Surprise's SVD, SVD++ and NMF fit the user's vector to its recent events with the items fixed;
ALS re-solves it as implicit's ``recalculate_user`` does, in one batched solve. Real libraries,
a stream of two taste clusters: a context in the other cluster pulls the scores toward it,
nothing of the model changes, unknown users get finite scores, the answers are deterministic,
and an empty context gives the learned scores."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("implicit")
pytest.importorskip("lightfm")
pytest.importorskip("surprise")

from recinc_plugins.adapters.implicit import ImplicitALS, ImplicitBPR, ImplicitLMF
from recinc_plugins.adapters.lightfm import LightFMRecommender
from recinc_plugins.adapters.surprise import (
    SurpriseKNNBasic,
    SurpriseNMF,
    SurpriseSVD,
    SurpriseSVDpp,
)
from recinc_plugins.context import Context
from recinc_plugins.evaluation import Stream, compare

N_USERS, N_ITEMS = 80, 40  # users and items 0..half-1 are cluster A, the rest cluster B
HALF_U, HALF_I = N_USERS // 2, N_ITEMS // 2

SMALL = {"seed": 0}
MODELS = {
    "bpr": (ImplicitBPR, {**SMALL, "factors": 8, "iterations": 60, "num_threads": 1}),
    "lmf": (ImplicitLMF, {**SMALL, "factors": 8, "iterations": 20, "num_threads": 1}),
    "lightfm-warp": (LightFMRecommender, {**SMALL, "no_components": 8, "fit_epochs": 20}),
    "lightfm-bpr": (LightFMRecommender, {**SMALL, "no_components": 8, "fit_epochs": 20,
                                         "loss": "bpr"}),
    "lightfm-logistic": (LightFMRecommender, {**SMALL, "no_components": 8, "fit_epochs": 20,
                                              "loss": "logistic"}),
    "svd": (SurpriseSVD, {**SMALL, "n_factors": 4, "n_epochs": 60, "lr_all": 0.01,
                          "refit_every": None}),
    "svdpp": (SurpriseSVDpp, {**SMALL, "n_factors": 4, "n_epochs": 30, "lr_all": 0.01,
                              "refit_every": None}),
    "nmf": (SurpriseNMF, {**SMALL, "n_factors": 4, "n_epochs": 60, "refit_every": None}),
}
NAMES = list(MODELS)
RATING = {"svd", "svdpp", "nmf"}


def _clusters(seed: int = 0) -> pd.DataFrame:
    """Each user takes 10 items of its own cluster (rated 4-5) and 4 of the other (rated 1),
    in a random order; ids are strings so that dense indices and ids differ."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        own = np.arange(HALF_I) + (0 if u < HALF_U else HALF_I)
        other = np.arange(HALF_I) + (HALF_I if u < HALF_U else 0)
        for i in rng.choice(own, 10, replace=False):
            rows.append((u, i, float(rng.integers(4, 6))))
        for i in rng.choice(other, 4, replace=False):
            rows.append((u, i, 1.0))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"]).sample(frac=1.0,
                                                                          random_state=seed)
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    return frame.reset_index(drop=True)


STREAM = _clusters()


def _events(name: str) -> pd.DataFrame:
    if name in RATING:
        return STREAM
    # implicit models learn the liked items only
    return STREAM[STREAM["rating"] >= 4].drop(columns="rating").reset_index(drop=True)


_FITTED: dict = {}


def _model(name: str, **params):
    """A model fitted on the cluster stream (cached per name and parameters: the tests only
    score it, and one test checks that scoring changes nothing)."""
    key = (name, tuple(sorted(params.items())))
    if key not in _FITTED:
        cls, defaults = MODELS[name]
        _FITTED[key] = cls(**{**defaults, **params}).fit(_events(name))
    return _FITTED[key]


def _index(model, users=(), items=()):
    return (model.user_index_.lookup(np.array(users, dtype=object)),
            model.item_index_.lookup(np.array(items, dtype=object)))


def _context(model, rows: list[list[str]], values: list[list[float]] | None = None) -> Context:
    return Context.from_lists([_index(model, items=row)[1].tolist() for row in rows], values)


def _cluster_b(model) -> np.ndarray:
    """Dense indices of cluster B's items."""
    return _index(model, items=[f"i{i}" for i in range(HALF_I, N_ITEMS)])[1]


def _gap(scores: np.ndarray, b_items: np.ndarray, leave_out: np.ndarray) -> np.ndarray:
    """Per row: mean score of cluster B's items (less ``leave_out``) minus cluster A's."""
    is_b = np.zeros(scores.shape[1], dtype=bool)
    is_b[b_items] = True
    is_a = ~is_b
    is_b[leave_out] = False
    return scores[:, is_b].mean(axis=1) - scores[:, is_a].mean(axis=1)


B_CONTEXT = ["i25", "i31", "i22"]  # three items of cluster B, rated 5


@pytest.mark.parametrize("name", NAMES)
def test_a_context_in_the_other_cluster_pulls_the_scores_toward_it(name):
    model = _model(name)
    users, _ = _index(model, users=["u3", "u7"])  # cluster A users
    assert model.capabilities.context
    context = _context(model, [B_CONTEXT, B_CONTEXT[:1]], [[5.0] * 3, [5.0]])
    b_items = _cluster_b(model)
    leave = context.items
    before = _gap(model.score_block(users), b_items, leave)
    after = _gap(model.score_block(users, context), b_items, leave)
    assert (before < 0).all()  # the model learned the clusters
    assert (after > before).all()  # item X's neighbours gain on the others
    # an unknown user whose only events are cluster B's ranks B's other items higher
    unknown = model.score_block(np.array([-1]), _context(model, [B_CONTEXT], [[5.0] * 3]))
    assert np.isfinite(unknown).all()
    assert _gap(unknown, b_items, leave)[0] > 0


def _fingerprint(model) -> bytes:
    """Every attribute's bytes (arrays, the wrapped model, random generators)."""
    buffer = io.BytesIO()
    pickle.dump({k: v for k, v in sorted(vars(model).items())
                 if not k.startswith("_newcomer")}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", [*NAMES, "als"])
def test_scoring_with_context_learns_nothing(name):
    model = (ImplicitALS(factors=8, seed=0, num_threads=1).fit(_events("bpr"))
             if name == "als" else _model(name))
    users, _ = _index(model, users=["u3", "u50", "u3"])
    users = np.concatenate([users, [-1]])
    context = _context(model, [B_CONTEXT, ["i1"], [], ["i2", "i2"]],
                       [[5.0, 4.0, 1.0], [3.0], [], [4.0, 2.0]])
    if name == "als":
        _ = model.model_.YtY  # implicit's cached Gram matrix, which recalculate_user fills too
    arrays = _arrays(model)
    before = _fingerprint(model)
    model.score_block(users, context)
    if model.item_vectors() is not None:
        model.user_vectors(users, context)
    assert _fingerprint(model) == before
    for key, value in _arrays(model).items():
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)


def _arrays(model) -> dict[str, np.ndarray]:
    """Copies of the factor (and optimiser) arrays the fold-ins read."""
    out = {}
    inner = getattr(model, "model_", None)
    for holder, names in ((inner, ("user_factors", "item_factors", "user_embeddings",
                                   "item_embeddings", "user_biases", "item_biases",
                                   "user_embedding_gradients", "pu", "qi", "bu", "bi")),
                          (model, ("user_adagrad_", "item_adagrad_", "user_factors_",
                                   "item_factors_", "user_bias_", "item_bias_",
                                   "item_implicit_"))):
        for attr in names:
            value = getattr(holder, attr, None)
            if isinstance(value, np.ndarray):
                out[attr] = value.copy()
    return out


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_scores_whatever_else_is_scored(name):
    cls, defaults = MODELS[name]
    first, second = _model(name), cls(**defaults).fit(_events(name))
    users, _ = _index(first, users=["u3", "u60"])
    users = np.concatenate([users, [-1]])
    context = _context(first, [B_CONTEXT, ["i4", "i9"], ["i30"]],
                       [[5.0, 4.0, 5.0], [4.0, 5.0], [5.0]])
    scores = first.score_block(users, context)
    np.testing.assert_array_equal(scores, first.score_block(users, context))
    np.testing.assert_array_equal(scores, second.score_block(users, context))
    # a row's answer does not depend on the rows scored beside it
    alone = first.score_block(users[1:2], context.take(np.array([1])))
    np.testing.assert_allclose(alone[0], scores[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_context_gives_the_learned_scores(name):
    model = _model(name)
    users, _ = _index(model, users=["u3", "u45"])
    empty = Context.from_lists([[], []])
    np.testing.assert_array_equal(model.score_block(users, empty), model.score_block(users))
    # zero fold-in steps leave a known user where it was, context or not (the closed-form
    # ridge of SVD and SVD++ has no steps)
    if name not in {"svd", "svdpp"}:
        still = _model(name, context_steps=0)
        context = _context(still, [B_CONTEXT, ["i1"]], [[5.0] * 3, [4.0]])
        np.testing.assert_allclose(still.score_block(users, context), still.score_block(users),
                                   rtol=1e-6)


@pytest.mark.parametrize("name", ["bpr", "lmf"])
def test_implicit_gemm_path_gives_score_block_numbers(name):
    """The harness multiplies ``user_vectors(users, context)`` by ``item_vectors()`` itself."""
    model = _model(name)
    users, _ = _index(model, users=["u3", "u60"])
    context = _context(model, [B_CONTEXT, ["i4"]], [[5.0] * 3, [4.0]])
    np.testing.assert_allclose(model.user_vectors(users, context) @ model.item_vectors().T,
                               model.score_block(users, context), rtol=1e-6, atol=1e-6)


def test_an_unknown_user_without_context_gets_the_cold_start_answer():
    for name in ("bpr", "lightfm-warp", "svd"):
        model = _model(name)
        scores = model.score_block(np.array([-1]), Context.from_lists([[]]))
        np.testing.assert_allclose(scores[0], model.cold_scores())


def test_a_folded_in_svd_user_is_the_least_squares_fold_in_on_history_plus_context():
    """For a user whose learned values are the ridge solution on its history (the fold-in
    between refits), scoring with context equals that ridge solved on history plus context."""
    from recinc_plugins.adapters.surprise import _ridge

    model = SurpriseSVD(**{**MODELS["svd"][1], "context_weight": 2.0}).fit(STREAM.iloc[:900])
    model.partial_fit(STREAM.iloc[900:])
    user = int(_index(model, users=["u5"])[0][0])
    hist_u, hist_i, hist_r = model._history()
    reg_b, _, reg_f, _ = model._penalties()
    mine = (hist_u == user) & model.has_item_[hist_i]
    model._solve_user(user, hist_i[mine], hist_r[mine], reg_b, reg_f)
    items = _index(model, items=[*B_CONTEXT, "i25"])[1]
    ratings = np.array([5.0, 4.0, 2.0, 3.0])
    got = model.score_block(np.array([user]), Context.from_lists([items.tolist()],
                                                                 [ratings.tolist()]))
    # the reference: each context rating twice (context_weight 2)
    all_items = np.concatenate([hist_i[mine], items, items])
    all_ratings = np.concatenate([hist_r[mine], ratings, ratings])
    bias, factors = _ridge(model.item_factors_[all_items],
                           all_ratings - model.mu_ - model.item_bias_[all_items], reg_b, reg_f,
                           True)
    expected = model.mu_ + bias + model.item_bias_ + model.item_factors_ @ factors
    np.testing.assert_allclose(got[0], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("confidence,alpha,weight", [("binary", 1.0, 1.0), ("linear", 0.5, 2.5),
                                                     ("log", 2.0, 0.3)])
def test_als_batched_fold_in_equals_recalculate_user(confidence, alpha, weight):
    """Users repeated side by side and apart (the running sums), contexts that repeat items,
    share items with the history and grow row by row, unknown users, empty rows."""
    model = ImplicitALS(factors=8, seed=0, num_threads=1, confidence=confidence, alpha=alpha,
                        context_weight=weight).fit(_events("bpr"))
    rng = np.random.default_rng(1)
    users = rng.integers(-1, model.n_users, 120)
    users[10:30] = users[10]  # one user's growing context, as the harness passes it
    lists, values = [], []
    for r, user in enumerate(users.tolist()):
        if 10 <= r < 30:
            items = list(range(r - 10))
        else:
            items = rng.integers(0, model.n_items, rng.integers(0, 8)).tolist()
            own = model.user_items_[max(user, 0)].indices
            if items and user >= 0 and own.size:
                items[0] = int(own[0])  # an item of its history too
        lists.append(items)
        values.append(rng.uniform(0.5, 5.0, len(items)).tolist())
    context = Context.from_lists(lists, values)
    got = model.user_vectors(users, context)
    history = sp.vstack([model.user_items_[u] if u >= 0 else
                         sp.csr_matrix((1, model.n_items), dtype=np.float32)
                         for u in users.tolist()]).tocsr()
    recent = sp.csr_matrix((context.values.astype(np.float32), context.items, context.ptr),
                           shape=(users.size, model.n_items))
    recent.sum_duplicates()
    rows = (model._confidence(history) + weight * model._confidence(recent)).tocsr()
    expected = model.model_.recalculate_user(np.arange(users.size), rows)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["bpr", "lightfm-warp", "svd"])
def test_a_context_that_does_not_fit_is_refused_naming_the_problem(name):
    model = _model(name)
    users, _ = _index(model, users=["u3", "u4"])
    with pytest.raises(ValueError, match="1 rows for 2 users"):
        model.score_block(users, Context.from_lists([[1]]))
    with pytest.raises(ValueError, match="context items must be dense item indices below"):
        model.score_block(users, Context.from_lists([[1], [model.n_items + 3]]))
    with pytest.raises(ValueError, match="finite"):
        model.score_block(users, Context.from_lists([[1], [2]], [[np.nan], [1.0]]))


@pytest.mark.parametrize("params,match", [
    ({"context_steps": -1}, "context_steps"),
    ({"context_learning_rate": 0}, "context_learning_rate"),
    ({"history_weight": -1.0}, "history_weight"),
])
def test_bad_fold_in_parameters_raise_clear_errors(params, match):
    for cls in (ImplicitBPR, ImplicitLMF, LightFMRecommender):
        with pytest.raises(ValueError, match=match):
            cls(**params).fit(_events("bpr"))
    with pytest.raises(ValueError, match="context_weight"):
        SurpriseSVD(context_weight=-1.0).fit(STREAM)


def test_knn_surprise_ignores_context():
    model = SurpriseKNNBasic(k=5, refit_every=None).fit(STREAM)
    assert not model.capabilities.context
    users, _ = _index(model, users=["u3"])
    np.testing.assert_array_equal(model.score_block(users, Context.from_lists([[1]])),
                                  model.score_block(users))


@pytest.mark.parametrize("name", ["bpr", "lightfm-warp", "nmf"])
def test_fresh_context_in_the_harness(name):
    """A replay with fresh context scores the in-step rows through the fold-in, learns as
    with learned context, and gains on this clustered stream."""
    cls, defaults = MODELS[name]
    frame = _events(name).copy()
    frame["timestamp"] = np.arange(len(frame))
    stream = Stream(frame, step=200, warmup=400)
    fresh = compare({"m": cls(**defaults)}, stream, k=10, context="fresh")
    learned = compare({"m": cls(**defaults)}, stream, k=10, context="learned")
    assert not fresh.failures and not learned.failures
    assert fresh.summary.loc[0, "recall@10"] > learned.summary.loc[0, "recall@10"]


def test_lightfm_context_inertia_holds_a_long_history_against_a_short_context():
    """With ``context_inertia`` a fold-in step is scaled by c / (c + inertia * h): one context
    item moves a user with 10 learned items less than with inertia 0, and a user the model
    never learned (h = 0) exactly as far."""
    plain = _model("lightfm-warp", context_inertia=0.0)
    held = _model("lightfm-warp", context_inertia=0.5)
    users, _ = _index(plain, users=["u3"])  # a cluster-A user with 10 learned items
    one = _context(plain, [["i25"]])
    b_items = _cluster_b(plain)
    learned = _gap(plain.score_block(users), b_items, one.items)
    moved_plain = _gap(plain.score_block(users, one), b_items, one.items) - learned
    moved_held = _gap(held.score_block(users, one), b_items, one.items) - learned
    assert moved_plain[0] > 0 and 0 < moved_held[0] < 0.5 * moved_plain[0]
    # scale: 1 / (1 + 0.5 * 10) for this user, 1 for an unknown one
    assert held._context_scale(users, one)[0] == pytest.approx(1 / 6)
    stranger = np.array([-1])
    np.testing.assert_array_equal(held.score_block(stranger, one),
                                  plain.score_block(stranger, one))
    with pytest.raises(ValueError, match="context_inertia"):
        LightFMRecommender(context_inertia=-1.0).fit(_events("lightfm-warp"))
