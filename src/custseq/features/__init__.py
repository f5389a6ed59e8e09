"""Tabular features per customer as of a cutoff: RFM (BTYD convention), behaviour and profile."""
