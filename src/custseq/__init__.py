"""custseq: churn and lifetime value, customer by customer, learned from raw event sequences."""

from __future__ import annotations

import importlib
from typing import Any

from custseq.version import __version__

__all__ = [
    "ChurnValueEstimator", "__version__", "columns", "embed", "evaluate", "fit_head", "predict", "prepare", "pretrain",
    "score", "validate_tables",
]  # fmt: skip

# The API is imported on first use, so that `import custseq` is fast and the data tools need no torch.
_LAZY = {
    "validate_tables": ("custseq.api", "validate_tables"),
    "columns": ("custseq.api", "columns"),
    "prepare": ("custseq.api", "prepare"),
    "pretrain": ("custseq.api", "pretrain"),
    "embed": ("custseq.api", "embed"),
    "predict": ("custseq.api", "predict"),
    "score": ("custseq.api", "score"),
    "evaluate": ("custseq.api", "evaluate"),
    "fit_head": ("custseq.api", "fit_head"),
    "ChurnValueEstimator": ("custseq.estimator", "ChurnValueEstimator"),
    "PrepareResult": ("custseq.pipelines.prepare", "PrepareResult"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'custseq' has no attribute {name!r}")
