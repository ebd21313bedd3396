"""Ratings or a clear word: what the rating APIs of the compat layers say about a model whose
scores are not ratings, and the parameters that give ratings where a model has them."""

from __future__ import annotations

from typing import Any

from ..base import IncrementalRecommender

__all__ = ["RATING_MODES", "NotRatingsWarning", "not_ratings_message", "rating_mode"]

#: the parameters that make a model which learns both kinds of feedback predict ratings, by
#: model class name: a rating script builds a named model with them unless it sets them itself
#: (the first parameter is the switch: a script that sets it to another value chose another mode)
RATING_MODES: dict[str, dict[str, Any]] = {"NeuralRecommender": {"loss": "mse"}}


def rating_mode(model: IncrementalRecommender, given: dict[str, Any]) -> dict[str, Any]:
    """The rating-mode parameters to set on ``model`` built with the parameters ``given``: its
    mode's, less those given, or none if ``given`` sets the switch to another value."""
    mode = RATING_MODES.get(type(model).__name__)
    if not mode:
        return {}
    switch, value = next(iter(mode.items()))
    if switch in given and given[switch] != value:
        return {}
    return {k: v for k, v in mode.items() if k not in given}


class NotRatingsWarning(UserWarning):
    """A rating API (Surprise's ``predict``, River's ``predict_one``) answers with a model whose
    scores rank items and are not ratings."""


def not_ratings_message(model: IncrementalRecommender, where: str) -> str:
    """What :class:`NotRatingsWarning` says: the model, why its numbers are not ratings, and
    how to get ratings from it or instead of it."""
    name = type(model).__name__
    mode = RATING_MODES.get(name)
    if mode is not None:
        settings = ", ".join(f"{k}={v!r}" for k, v in mode.items())
        how = (f"for predicted ratings use its rating mode, {name}({settings}), which learns "
               "the rating column (SurpriseAlgo builds a named model in it unless given "
               f"{next(iter(mode))})")
    else:
        how = ("it has no rating mode: for predicted ratings use a rating model "
               "(surprise-svd, river-biasedmf, or neural with loss='mse')")
    return (f"{where}: {model!r} returns ranking scores, not ratings (clipped to a rating scale "
            f"they look like ratings and are not; RMSE and MAE on them measure nothing "
            f"useful); {how}")
