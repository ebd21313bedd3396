"""What a model can learn from and do (:class:`Capabilities`): the harness and ``recinc
models`` read it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Capabilities"]


@dataclass(frozen=True)
class Capabilities:
    """What a model can learn from and do; the harness reads ``implicit``, ``recinc models``
    shows them all.

    Attributes
    ----------
    explicit
        Learns from ratings and predicts them (``score`` is a predicted rating).
    implicit
        Learns from implicit feedback (presence, or a ``weight``); ratings are then used as
        weights. A model that is not implicit needs a ``rating`` column.
    update
        Cost class of ``partial_fit``: ``"per-event"`` (work proportional to the new events),
        ``"touched"`` (work proportional to the touched users' and items' histories),
        ``"refit"`` (retrains on the history, possibly periodically).
    cold_start
        How unknown users can be answered: ``"popularity"`` (the shared, flagged fallback,
        which models with a ``cold_start`` parameter can switch to ``"newcomer"``) or
        ``"features"`` (through side features when given, else that fallback).
    side_features
        Accepts user/item side features.
    context
        Scores a user with its recent events given as context (``score_block(users,
        context)``), unknown users too; the others ignore context.
    """

    explicit: bool = False
    implicit: bool = True
    update: str = "per-event"
    cold_start: str = "popularity"
    side_features: bool = False
    context: bool = False
