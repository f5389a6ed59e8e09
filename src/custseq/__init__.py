"""custseq: churn and lifetime value, customer by customer, learned from raw event sequences."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("custseq")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from custseq.prepare import PrepareResult, prepare, validate

__all__ = ["PrepareResult", "__version__", "embed", "prepare", "pretrain", "validate"]

# The model API needs torch; it is imported on first use, so the data tools start fast.
_LAZY = {"pretrain": "pretrain", "embed": "embed_with_model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from custseq.models import pretrain as module

        return getattr(module, _LAZY[name])
    raise AttributeError(f"module 'custseq' has no attribute {name!r}")
