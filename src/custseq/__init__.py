"""custseq: churn and lifetime value, customer by customer, learned from raw event sequences."""

from __future__ import annotations

import importlib
from typing import Any

from custseq.prepare import PrepareResult, prepare, validate
from custseq.version import __version__

__all__ = [
    "ChurnValueEstimator", "PrepareResult", "__version__", "embed", "predict", "prepare", "pretrain", "score",
    "validate",
]  # fmt: skip

# The model API needs torch; it is imported on first use, so the data tools start fast.
_LAZY = {
    "pretrain": ("custseq.models.pretrain", "pretrain"),
    "embed": ("custseq.models.pretrain", "embed_with_model"),
    "predict": ("custseq.scoring.predict", "predict"),
    "score": ("custseq.scoring.predict", "score"),
    "ChurnValueEstimator": ("custseq.scoring.estimator", "ChurnValueEstimator"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'custseq' has no attribute {name!r}")
