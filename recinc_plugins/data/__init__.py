"""Interactions: the canonical schema, its validator, loaders and synthetic streams."""

from .interactions import (
    CANONICAL_COLUMNS,
    InteractionsError,
    feedback_kind,
    validate_interactions,
)
from .loaders import (
    DATASETS,
    DatasetNotFoundError,
    data_home,
    list_datasets,
    load_dataset,
    read_interactions_file,
)
from .synthetic import synthetic_stream

__all__ = [
    "CANONICAL_COLUMNS",
    "DATASETS",
    "DatasetNotFoundError",
    "InteractionsError",
    "data_home",
    "feedback_kind",
    "list_datasets",
    "load_dataset",
    "read_interactions_file",
    "synthetic_stream",
    "validate_interactions",
]
