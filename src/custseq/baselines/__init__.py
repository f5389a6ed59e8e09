"""Baselines custseq is measured against, reading the same windows, features and sequences."""
