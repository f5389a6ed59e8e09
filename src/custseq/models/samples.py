"""Training samples for the multi-task model: (customer, cutoff) pairs from one or several windows.

Each window's sequences are streamed shard by shard (:class:`custseq.sequences.batch.SequenceStream`); the
same customers' tabular features and labels are looked up in that window's feature and label tables, so
every batch carries the sequence, the features and the labels of the same customers at the same cutoff.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from custseq.config import FinetuneConfig
from custseq.errors import ArtifactError
from custseq.features.matrix import TabularSpec, transform_tabular
from custseq.io.engine import machine_memory_bytes
from custseq.io.prepared import WindowFolder
from custseq.models.distributed import local_world_size_from_env
from custseq.models.multitask import CustomerBatch
from custseq.sequences.batch import EventBatch, SequenceStream, shard_files
from custseq.sequences.vocab import SequenceVocab


@dataclass(frozen=True)
class SampleWeights:
    """Per-customer weights of training samples: churn class balance and SeqPreMT's log-value emphasis.

    ``weight = class weight × (1 + log1p(value⁺) / value_scale)`` (the second factor only with a
    ``value_scale``). With ``oversample`` the weights are used to redraw each batch (with replacement)
    rather than to weight the losses: the minority class and high-value customers are seen more often.
    """

    churned: float = 1.0
    retained: float = 1.0
    value_scale: float | None = None
    oversample: bool = False

    @property
    def active(self) -> bool:
        return self.churned != 1.0 or self.retained != 1.0 or self.value_scale is not None

    def of(self, churned: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        w = torch.where(churned > 0.5, self.churned, self.retained).to(torch.float32)
        if self.value_scale is not None:
            w = w * (1 + torch.log1p(value.clamp(min=0)) / self.value_scale)
        return w


def fit_sample_weights(labels: list[pa.Table], cfg: FinetuneConfig) -> SampleWeights:
    """Weights from the training windows' labels, as ``cfg.imbalance`` and ``cfg.value_reweight`` ask."""
    churned = np.concatenate([t.column("churned").to_numpy(zero_copy_only=False).astype(float) for t in labels])
    value = np.concatenate([t.column("value").to_numpy().astype(float) for t in labels])
    weights = SampleWeights(oversample=cfg.imbalance == "oversample")
    rate = churned.mean() if len(churned) else 0.0
    if cfg.imbalance != "none" and 0 < rate < 1:
        weights = dataclasses.replace(weights, churned=0.5 / rate, retained=0.5 / (1 - rate))
    positive = value[value > 0]
    if cfg.value_reweight and len(positive):
        weights = dataclasses.replace(weights, value_scale=float(np.log1p(positive).mean()))
    return weights


@dataclass(frozen=True)
class SampleStream:
    """Batches of (sequence, tabular features, labels) for the customers of several windows.

    Deterministic given the epoch and seed; windows are visited in a seeded order, and within a window the
    sequence stream decides the customers and their order (length bucketing included).
    """

    windows: tuple[WindowFolder, ...]
    vocab: SequenceVocab
    tabular: TabularSpec
    max_events: int
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    holdout: str = "all"  # or a part of sequences.batch.split_mask: train / validation / test
    holdout_fraction: float = 0.1
    test_fraction: float = 0.0
    label_fraction: float = 1.0
    weights: SampleWeights | None = None  # training only; needs labelled windows
    # per epoch, shared among the windows by their sizes, at least one batch each (see SequenceStream)
    max_batches: int | None = None
    # each window's features and labels kept between epochs (and streams); None: read for every pass
    lookups: WindowLookups | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.lookups is not None and self.lookups.spec != self.tabular:
            raise ValueError("the stream's lookups were made with another tabular spec")

    def n_batches(self, world_size: int = 1) -> int:
        return sum(stream.n_batches(world_size) for stream in self._streams)

    def customers(self) -> int:
        """Customers of every window after the holdout (a customer in several windows counts in each)."""
        return sum(sum(stream.customers_per_file) for stream in self._streams)

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[CustomerBatch]:
        order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.windows))
        for i in order if self.shuffle else range(len(self.windows)):
            window = self.windows[i]
            lookup = _WindowLookup(window, self.tabular) if self.lookups is None else self.lookups.of(window)
            rng = torch.Generator().manual_seed(
                int(np.random.default_rng([self.seed, epoch, 2, int(i)]).integers(2**62))
            )
            for events in self._streams[i].batches(epoch, rank, world_size):
                yield self._weighted(lookup.batch(events), rng)

    def _weighted(self, batch: CustomerBatch, rng: torch.Generator) -> CustomerBatch:
        if self.weights is None or not self.weights.active or batch.churned is None:
            return batch
        value = cast(torch.Tensor, batch.value)  # a labelled batch has both labels
        w = self.weights.of(batch.churned, value)
        if not self.weights.oversample:
            return dataclasses.replace(batch, weight=w)
        rows = torch.multinomial(w, batch.size, replacement=True, generator=rng)
        return CustomerBatch(
            batch.events.select(rows), batch.tabular[rows], {k: v[rows] for k, v in batch.categories.items()},
            batch.churned[rows], value[rows],
        )  # fmt: skip

    @functools.cached_property
    def _streams(self) -> tuple[SequenceStream, ...]:
        streams = self._all_streams()
        if self.max_batches is None:
            return streams
        sizes = np.array([s.n_batches() for s in streams], dtype=float)
        if sizes.sum() <= self.max_batches:
            return streams
        shares = np.maximum(1, np.floor(self.max_batches * sizes / sizes.sum())).astype(int)
        return tuple(dataclasses.replace(s, max_batches=int(k)) for s, k in zip(streams, shares, strict=True))

    def _all_streams(self) -> tuple[SequenceStream, ...]:
        return tuple(
            SequenceStream(
                tuple(shard_files(w.sequences)),
                self.vocab,
                self.max_events,
                self.batch_size,
                shuffle=self.shuffle,
                seed=self.seed,
                holdout=self.holdout,
                holdout_fraction=self.holdout_fraction,
                test_fraction=self.test_fraction,
                label_fraction=self.label_fraction,
            )
            for w in self.windows
        )


LOOKUP_MEMORY_SHARE = 0.25  # of the machine's memory, for the features fine-tuning keeps between epochs


def default_lookup_bytes() -> int:
    """:data:`LOOKUP_MEMORY_SHARE` of the machine's memory, shared by the ``torchrun`` processes on it."""
    return int(machine_memory_bytes() * LOOKUP_MEMORY_SHARE) // max(local_world_size_from_env(), 1)


INDEX_BYTES_PER_CUSTOMER = 125  # a short text id, its dict entry and its int, as measured (tracemalloc) at 1M


class WindowLookups:
    """Each window's tabular inputs and labels, read and transformed once, then kept.

    Training reads every window each epoch, a few thousand customers of each: without this, each epoch read
    and transformed every window's whole feature table again (half of fine-tuning's time at a million
    customers). Kept for the streams that share it, for as long as they live, up to ``max_bytes`` in all
    (about ``4 × width`` bytes per customer and window, plus the id index); a window that would go over it is
    read again each time, as before, so memory stays bounded at any number of customers.
    """

    def __init__(self, spec: TabularSpec, max_bytes: int | None = None) -> None:
        self.spec = spec
        self.max_bytes = default_lookup_bytes() if max_bytes is None else max_bytes
        self._built: dict[Path, _WindowLookup] = {}
        self._kept_bytes = 0

    def of(self, window: WindowFolder) -> _WindowLookup:
        key = window.folder.resolve()
        if key in self._built:
            return self._built[key]
        lookup = _WindowLookup(window, self.spec)
        size = lookup.nbytes
        if self._kept_bytes + size <= self.max_bytes:
            self._built[key] = lookup
            self._kept_bytes += size
        return lookup


class _WindowLookup:
    """A window's tabular inputs and labels, indexed by customer id."""

    def __init__(self, window: WindowFolder, spec: TabularSpec) -> None:
        features = pq.read_table(window.features)
        inputs = transform_tabular(spec, features)
        self.index = {cid: i for i, cid in enumerate(inputs.customer_ids)}
        self.values = torch.from_numpy(inputs.values)
        self.categories = {k: torch.from_numpy(v) for k, v in inputs.categories.items()}
        self.has_labels = window.has_labels
        if self.has_labels:
            labels = pq.read_table(window.labels)
            if labels.column("customer_id").to_pylist() != inputs.customer_ids:
                raise ArtifactError(
                    f"{window.folder}: features.parquet and labels.parquet list different customers; run prepare again"
                )
            self.churned = torch.tensor(labels.column("churned").to_numpy(zero_copy_only=False), dtype=torch.float32)
            self.value = torch.tensor(labels.column("value").to_numpy(), dtype=torch.float32)

    @property
    def nbytes(self) -> int:
        """About what the lookup holds: its arrays, and the id index."""
        arrays = [self.values, *self.categories.values()]
        if self.has_labels:
            arrays += [self.churned, self.value]
        return sum(a.element_size() * a.nelement() for a in arrays) + INDEX_BYTES_PER_CUSTOMER * len(self.index)

    def batch(self, events: EventBatch) -> CustomerBatch:
        rows = torch.tensor([self.index[c] for c in events.customer_ids], dtype=torch.long)
        churned = self.churned[rows] if self.has_labels else None
        value = self.value[rows] if self.has_labels else None
        return CustomerBatch(
            events, self.values[rows], {k: v[rows] for k, v in self.categories.items()}, churned, value
        )
