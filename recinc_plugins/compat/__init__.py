"""The other direction: recinc models inside Surprise scripts and River pipelines.

- :mod:`recinc_plugins.compat.surprise`: any model as a Surprise algorithm (``AlgoBase``).
- :mod:`recinc_plugins.compat.river`: any model as a ``river.reco`` Ranker.

Each submodule imports its library when it is imported; this package imports neither.
Both warn (:class:`NotRatingsWarning`) when their rating API answers with a model whose scores
rank items and are not ratings.
"""

from ._ratings import NotRatingsWarning

__all__ = ["NotRatingsWarning"]
