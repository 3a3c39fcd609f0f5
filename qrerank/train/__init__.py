"""Training heads on frozen, cached encoder embeddings (extra ``train``; metrics via ir-measures)."""

from __future__ import annotations

from qrerank.train.data import Example, TrainingData, load_training_data, mine_negatives
from qrerank.train.losses import HardNegativeLoss
from qrerank.train.trainer import TrainConfig, TrainResult, build_head, train, train_head

__all__ = [
    "Example",
    "HardNegativeLoss",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "build_head",
    "load_training_data",
    "mine_negatives",
    "train",
    "train_head",
]
