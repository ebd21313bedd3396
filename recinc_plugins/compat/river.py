"""Any recinc model as a River Ranker, for River pipelines and progressive validation.

``RecincRanker`` is a ``river.reco.base.Ranker``: ``learn_one(user, item, y, x)``,
``predict_one(user, item, x)`` and a vectorised ``rank``. Events given to ``learn_one`` are
collected in a buffer and learned by the model's ``partial_fit`` ``batch_size`` at a time;
events waiting in the buffer are never lost: they are learned before any prediction when
``flush_before_predict`` is set, by :meth:`RecincRanker.flush`, and they are pickled with the
ranker. ``learn_one`` refuses a bad event (a missing id, a non-finite ``y``) before buffering
it; if the model's ``partial_fit`` still fails on the buffered events, ``flush`` raises
:class:`FlushError`, which carries them: the buffer is emptied either way, so one bad batch
cannot block the ranker.

What ``y`` means depends on the model. A model that learns ratings (River's and Surprise's
models, the neural model with ``loss="mse"``) learns ``y`` as the rating, ``False``/``True``
as 0/1, as River's own reco models do. A model that learns implicit feedback (popularity,
implicit, LightFM, the neural model with a ranking loss) learns ``y`` as the strength of a
positive event, and a ``y <= 0`` (River's non-click, ``learn_one(user, item, False)``) is not
one: it is not given to the model at all (no learning, no new id, no count) and is counted in
:attr:`RecincRanker.n_skipped`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from .._optional import require
from ..base import IncrementalRecommender
from ..registry import make
from ._ratings import NotRatingsWarning, not_ratings_message

_reco = require("river.reco", "river")

__all__ = ["FlushError", "RecincRanker"]

_SHOWN = 10  # events listed in a FlushError's message


class FlushError(RuntimeError):
    """The model failed to learn the buffered events; they are no longer buffered.

    ``events`` holds them as ``(user, item, y)`` tuples, in the order given, so they can be
    given to ``learn_one`` again once the cause is fixed. The model's own exception is the
    ``__cause__``.
    """

    def __init__(self, message: str, events: list[tuple[Any, Any, float]]) -> None:
        super().__init__(message)
        self.events = events


class RecincRanker(_reco.base.Ranker):
    """A recinc model (by registry name or as an instance) as a ``river.reco`` Ranker.

    Parameters
    ----------
    model
        A registered model name (``"popularity"``, ``"lightfm"``, ``"river-biasedmf"``...) or
        an :class:`~recinc_plugins.base.IncrementalRecommender`. An instance is used as is
        (learned state included); ``clone`` gives the ranker an unfitted copy.
    model_params
        Parameters for the named model.
    batch_size
        Learn the buffered ``learn_one`` events with one ``partial_fit`` every ``batch_size``
        events (1: learn each event at once).
    flush_before_predict
        Learn the buffered events before ``predict_one`` and ``rank`` answer, so predictions
        always reflect every event given so far.

    Attributes
    ----------
    model_
        The recinc model learning the events.
    n_skipped
        Events with ``y <= 0`` (non-clicks) not given to a model that learns implicit
        feedback, where they are not positive events; a model that learns ratings learns
        every event.

    Examples
    --------
    The way River's MovieLens tutorial feeds its reco models (the ids travel as keyword
    arguments, predictions are clipped to the rating scale):

    >>> from river import evaluate, metrics, preprocessing
    >>> from recinc_plugins.compat.river import RecincRanker
    >>> dataset = [({}, 4.0, {"user": "a", "item": "x"}), ({}, 2.0, {"user": "a", "item": "y"}),
    ...            ({}, 5.0, {"user": "b", "item": "x"}), ({}, 3.0, {"user": "b", "item": "y"})]
    >>> model = preprocessing.PredClipper(RecincRanker("river-baseline"), y_min=1, y_max=5)
    >>> evaluate.progressive_val_score(dataset, model, metrics.MAE())
    MAE: 1.918333

    Clicks and non-clicks, the way River's reco checks send them: a non-click is not a
    positive event for an implicit-feedback model, so it is skipped, and the stream goes on.

    >>> ranker = RecincRanker("popularity")
    >>> for user, item, clicked in [("a", "x", True), ("b", "y", False), ("c", "y", False)]:
    ...     ranker.learn_one(user, item, clicked)
    >>> ranker.n_skipped, ranker.model_.n_events_, ranker.rank("d", ["y", "x"])
    (2, 1, ['x', 'y'])
    """

    def __init__(self, model: str | IncrementalRecommender = "popularity",
                 model_params: dict | None = None, batch_size: int = 1,
                 flush_before_predict: bool = True) -> None:
        self.model = model
        self.model_params = model_params
        self.batch_size = batch_size
        self.flush_before_predict = flush_before_predict
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(model, str):
            self.model_ = make(model, **(model_params or {}))
        elif isinstance(model, IncrementalRecommender):
            if model_params:
                raise ValueError("model_params applies to a model given by name; set the "
                                 "parameters on the instance instead")
            self.model_ = model
        else:
            raise TypeError(
                "model must be a registered model name or an IncrementalRecommender, got "
                f"{type(model).__name__}"
            )
        self._target: str | None = None  # "rating" or "weight": settled on the first event
        self._n_skipped = 0
        self._warned = False  # predict_one said once that the model's scores are not ratings
        self._users: list = []
        self._items: list = []
        self._ys: list = []

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"model": "popularity"}

    def clone(self, new_params: dict | None = None, include_attributes: bool = False) -> Any:
        """A ranker with the same parameters and an unfitted model (River's ``clone``)."""
        params = dict(new_params or {})
        model = params.get("model", self.model)
        if isinstance(model, IncrementalRecommender):
            params["model"] = model.clone()
        return super().clone(params, include_attributes)

    # -- learning ----------------------------------------------------------------------------

    @property
    def n_pending(self) -> int:
        """Events given to ``learn_one`` and not yet learned by the model."""
        return len(self._users)

    @property
    def n_skipped(self) -> int:
        """Events with ``y <= 0`` not given to a model that learns implicit feedback."""
        return self._n_skipped

    def learn_one(self, user: Any, item: Any, y: Any, x: dict | None = None) -> None:
        """Buffer one event (learned at once when ``batch_size`` is 1).

        A missing id or a ``y`` that is not a finite number raises ValueError and buffers
        nothing. For a model that learns implicit feedback, an event with ``y <= 0`` (a
        non-click) is not a positive event: it is counted in ``n_skipped`` and not buffered.
        """
        for name, value in (("user", user), ("item", item)):
            if _is_missing(value):
                raise ValueError(f"learn_one: {name} must not be None or NaN, got {value!r}")
        try:
            value = float(y)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"learn_one: y must be a finite number, got {y!r} (user {user!r}, "
                             f"item {item!r}); nothing was buffered")
        if self._target is None:
            self._target = "rating" if _learns_ratings(self.model_) else "weight"
        if value <= 0 and self._target == "weight":
            self._n_skipped += 1
            return
        self._users.append(user)
        self._items.append(item)
        self._ys.append(value)
        if len(self._users) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Learn the buffered events now (in the order they were given).

        The buffer is emptied before the model learns, so a failure does not leave the events
        to fail again on every later call: it raises :class:`FlushError` listing them.
        """
        if not self._users:
            return
        users, items, ys = self._users, self._items, self._ys
        self._users, self._items, self._ys = [], [], []
        frame = pd.DataFrame({"user": _ids(users), "item": _ids(items), self._target: ys})
        try:
            self.model_.partial_fit(frame)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # an interrupt: keep the events buffered
                self._users, self._items, self._ys = users + self._users, \
                    items + self._items, ys + self._ys
                raise
            events = list(zip(users, items, ys, strict=True))
            shown = ", ".join(repr(event) for event in events[:_SHOWN])
            more = f" and {len(events) - _SHOWN} more" if len(events) > _SHOWN else ""
            raise FlushError(
                f"{type(self.model_).__name__}.partial_fit failed on {len(events)} buffered "
                f"event(s), which were taken out of the buffer and not learned (the model may "
                f"have learned part of them if it failed midway): {shown}{more} "
                f"({type(exc).__name__}: {exc})", events,
            ) from exc

    # -- prediction --------------------------------------------------------------------------

    def predict_one(self, user: Any, item: Any, x: dict | None = None) -> float:
        """The model's score of ``(user, item)``: a predicted rating where the model predicts
        ratings; otherwise a ranking score, and the first such answer warns
        (:class:`~recinc_plugins.compat.NotRatingsWarning`, saying how to get
        ratings). ``rank`` is the way to use a ranking model."""
        if self.flush_before_predict:
            self.flush()
        model = self.model_
        if not getattr(self, "_warned", False) and model.is_fitted \
                and not model.predicts_ratings():
            self._warned = True
            warnings.warn(not_ratings_message(model, "RecincRanker.predict_one"),
                          NotRatingsWarning, stacklevel=2)
        return float(model.score(_ids([user]), _ids([item]))[0])

    def rank(self, user: Any, items: Any, x: dict | None = None) -> list:
        """``items`` by decreasing score for ``user``, scored in one vectorised call."""
        if self.flush_before_predict:
            self.flush()
        items = list(items)
        if not items:
            return []
        scores = self.model_.score(_ids([user] * len(items)), _ids(items))
        order = np.argsort(-scores, kind="stable")
        return [items[j] for j in order.tolist()]


def _learns_ratings(model: IncrementalRecommender) -> bool:
    """Whether ``model`` learns ``y`` as a rating, else as the strength of a positive event."""
    caps = model.capabilities
    if caps.explicit != caps.implicit:
        return bool(caps.explicit)
    # a model for both kinds of feedback (the neural model) learns ratings when, given ratings,
    # it predicts ratings: ask an unfitted copy, so the model itself learns nothing
    probe = model.clone().partial_fit(pd.DataFrame({"user": [0], "item": [0], "rating": [1.0]}))
    return bool(probe.predicts_ratings())


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pd.NA raises
    except (TypeError, ValueError):
        return True


def _ids(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
