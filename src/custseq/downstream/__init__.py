"""Downstream tasks on custseq's customer representation: a head for any per-customer label (``fit-head``),
applied by ``score --head`` (seed 003, CASPR: one representation, many tasks)."""
