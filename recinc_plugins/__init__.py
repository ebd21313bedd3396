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
from .data import load_dataset, synthetic_stream, validate_interactions
from .ids import IdIndex
from .registry import list_models, make, register

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Capabilities",
    "IdIndex",
    "IncrementalRecommender",
    "ModelFileError",
    "Newcomer",
    "Recommendations",
    "__version__",
    "list_models",
    "load_dataset",
    "make",
    "register",
    "synthetic_stream",
    "validate_interactions",
]
