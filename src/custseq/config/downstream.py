"""Settings of a downstream head (``custseq fit-head``): a model of a user's own label on custseq's embeddings.

Not part of :class:`~custseq.config.RunConfig`: a head is fitted after a model exists, on labels the run never
saw, and its settings are saved in the head's own ``head.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from custseq.errors import ConfigError

HEAD_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class HeadConfig:
    """How ``fit-head`` learns a per-customer label from the embeddings (and, optionally, the rich features)."""

    task: Literal["classification", "regression"] = "classification"
    with_features: bool = False  # the head reads the rich features next to the embeddings
    folds: int = 5  # customer-level K-fold of the cross-validated metrics (stratified for classification)
    seed: int = 0
    min_labels: int = 20  # labelled customers with history before the as-of date needed at all
    min_per_class: int = 5  # customers of each class needed (at least one per fold)
    max_classes: int = 20  # more distinct values than this is not a classification label
    linear_below: int = 200  # fewer labelled customers: logistic / ridge regression instead of LightGBM
    # LightGBM (a fixed number of rounds: early stopping on the folds would flatter the metrics)
    rounds: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 10
    feature_fraction: float = 0.8
    n_jobs: int = 0  # LightGBM threads; 0 = its default (all cores)
    # logistic / ridge regression: inverse L2 strength (logistic C; ridge alpha = 1 / C)
    linear_c: float = 1.0

    def __post_init__(self) -> None:
        if self.task not in HEAD_TASKS:
            raise ConfigError(f"--task must be classification or regression, got {self.task!r}")
        if self.folds < 2:
            raise ConfigError(f"folds must be at least 2 for cross-validation, got {self.folds}")
        if self.min_per_class < self.folds:
            raise ConfigError(
                f"min_per_class ({self.min_per_class}) must be at least folds ({self.folds}): every fold needs "
                "each class"
            )
        if self.max_classes < 2 or self.min_labels < self.folds:
            raise ConfigError("max_classes must be >= 2 and min_labels >= folds")
        if min(self.rounds, self.num_leaves, self.min_child_samples) < 1 or self.learning_rate <= 0:
            raise ConfigError("rounds, num_leaves and min_child_samples must be >= 1 and learning_rate > 0")
        if not 0 < self.feature_fraction <= 1 or self.linear_c <= 0:
            raise ConfigError("feature_fraction must be in (0, 1] and linear_c > 0")
