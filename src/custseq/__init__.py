"""custseq: churn and lifetime value, customer by customer, learned from raw event sequences."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("custseq")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from custseq.models.pretrain import embed_with_model as embed
from custseq.models.pretrain import pretrain
from custseq.prepare import PrepareResult, prepare, validate

__all__ = ["PrepareResult", "__version__", "embed", "prepare", "pretrain", "validate"]
