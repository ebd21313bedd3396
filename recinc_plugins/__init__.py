"""recinc-plugins: one incremental interface over the recommenders people already use, and one
harness to compare them on replayed streams.

``import recinc_plugins`` imports none of the optional libraries (Surprise, LightFM, implicit,
River, PyTorch); each model imports its library when it is built.
"""

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
from .persistence import load
from .registry import list_models, make, register

__version__ = "0.1.0"

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
