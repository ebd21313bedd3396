"""recinc-plugins: one incremental interface over the recommenders people already use, and one
harness to compare them on replayed streams.

``import recinc_plugins`` imports none of the optional libraries (Surprise, LightFM, implicit,
River, PyTorch); each model imports its library when it is built.
"""

import os

from .base import (
    Batch,
    Capabilities,
    IncrementalRecommender,
    ModelFileError,
    Newcomer,
    Recommendations,
)
from .baselines import DecayedPopularity, Popularity, Random
from .data import load_dataset, synthetic_stream, validate_interactions
from .ids import IdIndex
from .registry import list_models, make, register

__version__ = "0.1.0"


def load(path: str | os.PathLike) -> IncrementalRecommender:
    """Read any model written by ``model.save(path)``, whatever its class (the file names it).

    Raises :class:`ModelFileError` if the file is not a model file, is truncated or corrupt,
    or was written by a newer version of the format. The payload is a pickle: load only files
    you trust.
    """
    return IncrementalRecommender.load(path)


__all__ = [
    "Batch",
    "Capabilities",
    "DecayedPopularity",
    "IdIndex",
    "IncrementalRecommender",
    "ModelFileError",
    "Newcomer",
    "Popularity",
    "Random",
    "Recommendations",
    "__version__",
    "list_models",
    "load",
    "load_dataset",
    "make",
    "register",
    "synthetic_stream",
    "validate_interactions",
]
