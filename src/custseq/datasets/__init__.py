"""Data sets shipped with custseq (CDNOW) and a synthetic transaction-log generator."""

from custseq.datasets.cdnow import cdnow_path, load_cdnow

__all__ = ["cdnow_path", "load_cdnow"]
