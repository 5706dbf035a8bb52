"""What the network learners share: the MeLU-style rating network (``model``), per-task adaptation
on the support set (``adaptation``), the masked losses (``losses``), the mixed-support episode
shaping (``support``), the one training loop (``trainer``) and the learner bases built on it
(``base`` for every network learner, ``episodic`` for the meta-learners)."""

from learners.network.adaptation import Adapt, adapt_and_predict, adapted_predictions, check_adapt
from learners.network.losses import masked_mse, mean_over_tasks
from learners.network.model import NetworkConfig, RatingNetwork
from learners.network.support import mixed_support, training_support_sizes

__all__ = [
    "Adapt",
    "NetworkConfig",
    "RatingNetwork",
    "adapt_and_predict",
    "adapted_predictions",
    "check_adapt",
    "masked_mse",
    "mean_over_tasks",
    "mixed_support",
    "training_support_sizes",
]
