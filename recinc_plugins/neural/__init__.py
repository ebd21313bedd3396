"""The PyTorch recommender: growing embedding tables, a replay buffer and online training.

Importing this package imports torch; ``import recinc_plugins`` does not import it.
"""

from .model import NeuralRecommender
from .sequential import SequentialRecommender

__all__ = ["NeuralRecommender", "SequentialRecommender"]
