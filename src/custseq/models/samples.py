"""Training samples for the multi-task model: (customer, cutoff) pairs from one or several windows.

Each window's sequences are streamed shard by shard (:class:`custseq.sequences.batch.SequenceStream`); the
same customers' tabular features and labels are looked up in that window's feature and label tables, so
every batch carries the sequence, the features and the labels of the same customers at the same cutoff.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from custseq.errors import ArtifactError
from custseq.features.matrix import TabularSpec, transform_tabular
from custseq.models.finetune import CustomerBatch
from custseq.sequences.batch import EventBatch, SequenceStream, shard_files
from custseq.sequences.vocab import SequenceVocab


@dataclass(frozen=True)
class WindowData:
    """Where one window's outputs of ``prepare`` are."""

    folder: Path  # windows/<as-of>/ with features.parquet, labels.parquet (if labelled) and sequences/

    @property
    def has_labels(self) -> bool:
        return (self.folder / "labels.parquet").exists()


@dataclass(frozen=True)
class SampleStream:
    """Batches of (sequence, tabular features, labels) for the customers of several windows.

    Deterministic given the epoch and seed; windows are visited in a seeded order, and within a window the
    sequence stream decides the customers and their order (length bucketing included).
    """

    windows: tuple[WindowData, ...]
    vocab: SequenceVocab
    tabular: TabularSpec
    max_events: int
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    holdout: str = "all"
    holdout_fraction: float = 0.1

    def n_batches(self, world_size: int = 1) -> int:
        return sum(stream.n_batches(world_size) for stream in self._streams)

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[CustomerBatch]:
        order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.windows))
        for i in order if self.shuffle else range(len(self.windows)):
            lookup = _WindowLookup(self.windows[i], self.tabular)
            for events in self._streams[i].batches(epoch, rank, world_size):
                yield lookup.batch(events)

    @functools.cached_property
    def _streams(self) -> tuple[SequenceStream, ...]:
        return tuple(
            SequenceStream(
                tuple(shard_files(w.folder / "sequences")),
                self.vocab,
                self.max_events,
                self.batch_size,
                shuffle=self.shuffle,
                seed=self.seed,
                holdout=self.holdout,
                holdout_fraction=self.holdout_fraction,
            )
            for w in self.windows
        )


class _WindowLookup:
    """A window's tabular inputs and labels, indexed by customer id."""

    def __init__(self, window: WindowData, spec: TabularSpec) -> None:
        features = pq.read_table(window.folder / "features.parquet")
        inputs = transform_tabular(spec, features)
        self.index = {cid: i for i, cid in enumerate(inputs.customer_ids)}
        self.values = torch.from_numpy(inputs.values)
        self.categories = {k: torch.from_numpy(v) for k, v in inputs.categories.items()}
        self.has_labels = window.has_labels
        if self.has_labels:
            labels = pq.read_table(window.folder / "labels.parquet")
            if labels.column("customer_id").to_pylist() != inputs.customer_ids:
                raise ArtifactError(
                    f"{window.folder}: features.parquet and labels.parquet list different customers; run prepare again"
                )
            self.churned = torch.tensor(labels.column("churned").to_numpy(zero_copy_only=False), dtype=torch.float32)
            self.value = torch.tensor(labels.column("value").to_numpy(), dtype=torch.float32)

    def batch(self, events: EventBatch) -> CustomerBatch:
        rows = torch.tensor([self.index[c] for c in events.customer_ids], dtype=torch.long)
        churned = self.churned[rows] if self.has_labels else None
        value = self.value[rows] if self.has_labels else None
        return CustomerBatch(
            events, self.values[rows], {k: v[rows] for k, v in self.categories.items()}, churned, value
        )
