"""Any recinc model as a Surprise algorithm, so Surprise's own tools work with it.

``SurpriseAlgo`` is an ``AlgoBase``: ``fit(trainset)``, ``predict(uid, iid, r_ui)`` returning a
``Prediction``, ``test(testset)``, so ``surprise.model_selection.cross_validate``,
``GridSearchCV`` (through :func:`as_surprise`) and ``surprise.accuracy`` run unchanged, and a
Surprise script swaps its algorithm for a LightFM-, implicit-, River- or torch-backed model in
one line.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .._optional import require
from ..base import IncrementalRecommender
from ..registry import make
from ._ratings import NotRatingsWarning, not_ratings_message, rating_mode

_surprise = require("surprise", "surprise")

__all__ = ["NotRatingsWarning", "SurpriseAlgo", "as_surprise"]

class SurpriseAlgo(_surprise.AlgoBase):
    """A recinc model (by registry name or as an instance) as a Surprise algorithm.

    ``fit(trainset)`` trains a fresh model on the trainset's ratings (by raw id), so fitting
    the same object on every fold, as ``cross_validate`` does, starts from scratch each time.
    A model that learns event by event (``capabilities.update == "per-event"``) gets them in a
    random order seeded by its ``seed`` (0 without one): a trainset lists each user's ratings
    together, which is no stream.
    Predictions are the model's ``score``: a predicted rating for models that predict ratings,
    a ranking score for the others (implicit feedback only, or a ranking loss): the script runs,
    but RMSE then measures nothing useful, so fitting one warns once per instance
    (:class:`~recinc_plugins.compat.NotRatingsWarning`, saying how to get ratings). A model
    named here that learns both kinds of feedback is built in its rating mode (the neural
    model with ``loss="mse"``) unless ``params`` choose otherwise.
    ``test`` scores the whole testset in one vectorised call. Pairs the model cannot score
    (an unknown user or item) get its cold-start fallback and ``details["was_impossible"]``.

    Parameters
    ----------
    model
        A registered model name (``"surprise-svd"``, ``"lightfm"``, ``"river-biasedmf"``...)
        or an :class:`~recinc_plugins.base.IncrementalRecommender` (cloned on each ``fit``).
    **params
        Parameters of the model (with a name) or overrides of the instance's parameters.

    Examples
    --------
    >>> import pandas as pd
    >>> from surprise import Dataset, Reader
    >>> from recinc_plugins.compat.surprise import SurpriseAlgo
    >>> frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"],
    ...                       "rating": [4.0, 2.0, 5.0]})
    >>> data = Dataset.load_from_df(frame, Reader(rating_scale=(1, 5)))
    >>> algo = SurpriseAlgo("river-baseline").fit(data.build_full_trainset())
    >>> round(algo.predict("b", "y").est, 4)
    3.6335
    """

    def __init__(self, model: str | IncrementalRecommender = "popularity", **params: Any) -> None:
        super().__init__()
        self.model = model
        self.params = params
        self._warned = False

    def _new_model(self) -> IncrementalRecommender:
        if isinstance(self.model, str):
            model = make(self.model, **self.params)
            mode = rating_mode(model, self.params)
            return model.set_params(**mode) if mode else model
        if isinstance(self.model, IncrementalRecommender):
            return self.model.clone().set_params(**self.params)
        raise TypeError(
            "model must be a registered model name or an IncrementalRecommender, got "
            f"{type(self.model).__name__}"
        )

    def fit(self, trainset: Any) -> SurpriseAlgo:
        super().fit(trainset)
        to_user, to_item = trainset.to_raw_uid, trainset.to_raw_iid
        rows = [(to_user(u), to_item(i), r) for u, i, r in trainset.all_ratings()]
        frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
        model = self._new_model()
        caps = model.capabilities
        if caps.implicit and not caps.explicit:
            frame = frame.rename(columns={"rating": "weight"})
        if caps.update == "per-event":
            # a trainset lists each user's ratings together, which a model learning in order
            # would take as a stream of one user after another (the neural model's rating SGD
            # diverged on it); it is a set: learn it in a seeded random order
            seed = getattr(model, "seed", None)
            order = np.random.default_rng(seed if isinstance(seed, int) else 0).permutation(
                len(frame))
            frame = frame.iloc[order].reset_index(drop=True)
        self.model_ = model.fit(frame)
        if not self.model_.predicts_ratings() and not getattr(self, "_warned", False):
            self._warned = True
            warnings.warn(not_ratings_message(self.model_, "SurpriseAlgo"), NotRatingsWarning,
                          stacklevel=2)
        return self

    def _scores(self, users: list, items: list) -> tuple[np.ndarray, np.ndarray]:
        return self.model_.score(_ids(users), _ids(items), return_cold=True)

    def estimate(self, u: Any, i: Any) -> float:
        """Score of inner ids ``u``, ``i``; anything the trainset does not know as an inner id
        (Surprise's ``"UKN__<raw id>"`` strings included) is an unknown user or item and gets
        the model's cold-start fallback.

        The raw id is not parsed back out of ``"UKN__<raw id>"``: ``"UKN__14"`` may have been
        the string ``"14"`` or the int ``14``, and parsing it could name a known user.
        """
        model = self.model_
        known_u, known_i = self.trainset.knows_user(u), self.trainset.knows_item(i)
        if known_u and known_i:
            user, item = self.trainset.to_raw_uid(u), self.trainset.to_raw_iid(i)
            return float(self._scores([user], [item])[0][0])
        # every raw id of the trainset was learned by the model, so its index exists
        user_idx = model.user_index_.lookup(_ids([self.trainset.to_raw_uid(u)]))[0] \
            if known_u else -1
        item_idx = model.item_index_.lookup(_ids([self.trainset.to_raw_iid(i)]))[0] \
            if known_i else -1
        pairs = np.array([user_idx], dtype=np.int64), np.array([item_idx], dtype=np.int64)
        return float(model._fallback_pairs(*pairs)[0])

    def predict(self, uid: Any, iid: Any, r_ui: float | None = None, clip: bool = True,
                verbose: bool = False) -> Any:
        return self._predictions([(uid, iid, r_ui)], clip, verbose)[0]

    def test(self, testset: Any, verbose: bool = False) -> list:
        return self._predictions(list(testset), True, verbose)

    def _predictions(self, testset: list, clip: bool, verbose: bool) -> list:
        if not testset:
            return []
        users, items, truths = zip(*testset, strict=True)
        est, cold = self._scores(list(users), list(items))
        if clip:
            low, high = self.trainset.rating_scale
            est = np.clip(est, low, high)
        predictions = []
        rows = zip(users, items, truths, est.tolist(), cold.tolist(), strict=True)
        for uid, iid, r_ui, e, c in rows:
            details: dict[str, Any] = {"was_impossible": c}
            if c:
                details["reason"] = "User and/or item is unknown."
            pred = _surprise.Prediction(uid, iid, r_ui, e, details)
            if verbose:
                print(pred)
            predictions.append(pred)
        return predictions


def _ids(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _rebuild_bound(model: str | IncrementalRecommender, params: dict) -> SurpriseAlgo:
    """Unpickling helper: an instance of ``as_surprise(model)`` (its state is set after)."""
    return as_surprise(model)(**params)


def as_surprise(model: str | IncrementalRecommender) -> type[SurpriseAlgo]:
    """A ``SurpriseAlgo`` subclass bound to ``model``, built with the model's parameters.

    ``GridSearchCV`` builds ``algo_class(**params)``; pass ``as_surprise("surprise-svd")`` as
    ``algo_class`` and the grid's parameters go to the model. ``n_jobs > 1`` works: joblib sends
    the class to its workers by value, and instances also pickle with plain ``pickle`` (they
    rebuild their bound class on loading).

    Examples
    --------
    >>> from recinc_plugins.compat.surprise import as_surprise
    >>> SVD = as_surprise("surprise-svd")
    >>> SVD(n_factors=5).params
    {'n_factors': 5}
    """

    name = model if isinstance(model, str) else type(model).__name__

    class BoundAlgo(SurpriseAlgo):
        def __init__(self, **params: Any) -> None:
            super().__init__(model, **params)

        def __reduce__(self) -> tuple:
            # the class is made at run time, so plain pickle cannot find it by name: rebuild it
            return (_rebuild_bound, (model, self.params), self.__dict__)

    BoundAlgo.__name__ = BoundAlgo.__qualname__ = f"SurpriseAlgo[{name}]"
    BoundAlgo.__doc__ = f"{name} as a Surprise algorithm (see SurpriseAlgo)."
    return BoundAlgo
