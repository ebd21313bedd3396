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


def load(path: str | os.PathLike, *, trusted: bool = False) -> IncrementalRecommender:
    """Read any model written by ``model.save(path)``, whatever its class (the file names it).

    Loading runs no code from the file: its class must be registered or already imported,
    and it holds arrays and JSON (``docs/security.md``). Raises :class:`ModelFileError` if the
    file is not a model file, is truncated or corrupt, was written by a newer version of the
    format, or holds what only ``trusted=True`` reads (an unregistered class, a type off the
    allow-list, a format-1 file, which is a pickle). ``trusted=True`` is for files from a
    source you trust only: it may import modules and run code.
    """
    return IncrementalRecommender.load(path, trusted=trusted)


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
