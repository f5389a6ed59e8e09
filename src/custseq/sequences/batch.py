"""Tensors for the model: the padded ``EventBatch``, a vectorised collate, and a streaming dataset.

Sequences are read shard by shard from the Parquet files ``prepare`` wrote, so no stage holds every
customer in memory. Within a buffer of customers, batches are formed from customers of similar length
(length bucketing), so short sequences are not padded to L.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from custseq.io.blocks import exact_blocks
from custseq.sequences.vocab import SequenceVocab

TIME_CATEGORIES = {"dow": 7, "month": 12, "hour": 24}


@dataclass
class EventBatch:
    """A padded batch of customer sequences; real tokens sit at positions ``0 … length-1``."""

    categorical: dict[str, torch.Tensor]  # field -> (B, T) int64 ids, 0 = padding / no value
    numeric: torch.Tensor  # (B, T, F) float32, standardised numeric fields in vocab order
    log_dt_prev: torch.Tensor  # (B, T) float32
    log_t_to_cutoff: torch.Tensor  # (B, T) float32
    calendar: dict[str, torch.Tensor]  # dow / month / hour -> (B, T) int64
    token_type: torch.Tensor  # (B, T) int64
    mask: torch.Tensor  # (B, T) bool, True on real tokens
    lengths: torch.Tensor  # (B,) int64
    customer_ids: list[str]

    @property
    def size(self) -> int:
        return len(self.customer_ids)

    def __len__(self) -> int:
        return self.size

    def to(self, device: torch.device | str) -> EventBatch:
        """The same batch on ``device``."""
        moved: dict[str, Any] = {}  # field name -> tensor or dict of tensors
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device, non_blocking=True)
            elif isinstance(value, dict):
                moved[f.name] = {k: v.to(device, non_blocking=True) for k, v in value.items()}
        return replace(self, **moved)

    def select(self, rows: torch.Tensor) -> EventBatch:
        """The customers at ``rows`` (B',) int64, in that order; a row may repeat (resampling)."""
        picked: dict[str, Any] = {}  # field name -> tensor or dict of tensors
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                picked[f.name] = value[rows]
            elif isinstance(value, dict):
                picked[f.name] = {k: v[rows] for k, v in value.items()}
        return replace(self, **picked, customer_ids=[self.customer_ids[i] for i in rows.tolist()])


def collate(table: pa.Table, vocab: SequenceVocab, max_events: int) -> EventBatch:
    """Turn rows of a sequences table into an ``EventBatch``, keeping each customer's last ``max_events`` tokens."""
    lengths_full = table.column("length").to_numpy().astype(np.int64)
    lengths = np.minimum(lengths_full, max_events)
    width = max(int(lengths.max(initial=1)), 1)
    rows, cols, take = _gather_index(table.column("token_type"), lengths_full, lengths)
    shape = (table.num_rows, width)

    def padded(name: str, dtype: type[np.generic], fill: float | int = 0) -> np.ndarray:
        out = np.full(shape, fill, dtype=dtype)
        out[rows, cols] = _flat_values(table.column(name))[take]
        return out

    layout = vocab.layout
    numeric_names = [f.name for f in layout.numeric()]
    numeric = np.zeros((*shape, len(numeric_names)), dtype=np.float32)
    for i, name in enumerate(numeric_names):
        numeric[..., i] = padded(name, np.float32)
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return EventBatch(
        categorical={f.name: torch.from_numpy(padded(f.name, np.int64)) for f in layout.categorical()},
        numeric=torch.from_numpy(numeric),
        log_dt_prev=torch.from_numpy(padded("log_dt_prev", np.float32)),
        log_t_to_cutoff=torch.from_numpy(padded("log_t_to_cutoff", np.float32)),
        calendar={name: torch.from_numpy(padded(name, np.int64)) for name in TIME_CATEGORIES},
        token_type=torch.from_numpy(padded("token_type", np.int64)),
        mask=torch.from_numpy(mask),
        lengths=torch.from_numpy(lengths),
        customer_ids=table.column("customer_id").to_pylist(),
    )


def _flat_values(column: pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks()
    return arr.flatten().to_numpy(zero_copy_only=False)


def _gather_index(column: pa.ChunkedArray, full: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, ...]:
    """Row, column and flat-value indices of the last ``kept[i]`` of each row's ``full[i]`` values."""
    arr = column.combine_chunks()
    offsets = arr.offsets.to_numpy().astype(np.int64)
    starts = offsets[:-1] - offsets[0] + (full - kept)  # first kept value of each row in the flat values
    rows = np.repeat(np.arange(len(kept)), kept)
    cols = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    return rows, cols, starts[rows] + cols


def shard_files(folder: Path) -> list[Path]:
    """The Parquet files of a window's sequences, in a stable order."""
    return sorted(Path(folder).glob("**/*.parquet"))


@dataclass(frozen=True)
class SequenceStream:
    """Batches of customers streamed from sequence shards; deterministic given the epoch and seed.

    Parameters
    ----------
    files
        Parquet shards (one or several windows).
    vocab
        How the fields were encoded.
    max_events
        Tokens kept per customer (the last ones).
    batch_size
        Customers per batch.
    shuffle
        Shuffle files, customers within a buffer, and batch order, from ``seed`` and the epoch.
    bucket_batches
        Batches per length-bucketing buffer.
    max_batches
        At most this many batches per epoch (over all ranks): the first ones of the epoch's shuffled order, so
        each epoch sees another share of the customers. None: every customer, every epoch.
    """

    files: tuple[Path, ...]
    vocab: SequenceVocab
    max_events: int
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    bucket_batches: int = 50
    holdout: str = "all"  # "train" / "validation" / "test": a stable split of customers by id hash (split_mask)
    holdout_fraction: float = 0.1
    test_fraction: float = 0.0
    label_fraction: float = 1.0
    max_batches: int | None = None

    @functools.cached_property
    def customers_per_file(self) -> tuple[int, ...]:
        """Customers each file contributes (after the holdout), read once: footers only without a holdout."""
        if self.holdout == "all":
            return tuple(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        return tuple(int(self._kept(pq.read_table(f, columns=["customer_id"])).sum()) for f in self.files)

    def n_batches(self, world_size: int = 1) -> int:
        """Batches each rank receives per epoch (equal on every rank, as DDP requires)."""
        size = self.batch_size * self.bucket_batches
        total = sum((n // size) * self.bucket_batches + math.ceil((n % size) / self.batch_size)
                    for n in self.customers_per_file)  # fmt: skip
        if self.max_batches is not None:
            total = min(total, self.max_batches)
        return total // world_size

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[EventBatch]:
        """Yield this rank's batches of an epoch: every ``world_size``-th batch, the same count on every rank."""
        rng = np.random.default_rng([self.seed, epoch])
        limit = self.n_batches(world_size)
        order = rng.permutation(len(self.files)) if self.shuffle else np.arange(len(self.files))
        produced = 0
        index = 0
        for i in order:
            for table in self._buffers(self.files[i], rng):
                for batch_rows in self._bucketed(table, rng):
                    if produced >= limit:
                        return
                    if index % world_size == rank:
                        yield collate(table.take(batch_rows), self.vocab, self.max_events)
                        produced += 1
                    index += 1

    def table_batches(self, table: pa.Table) -> Iterator[EventBatch]:
        """The batches of one shard held in memory, formed as :meth:`batches` forms them from that shard's file
        (one rank, no holdout, no batch limit): the same customers together, so the same numbers."""
        rng = np.random.default_rng([self.seed, 0])
        size = self.batch_size * self.bucket_batches
        for start in range(0, table.num_rows, size):
            buffer = table.slice(start, size)
            for batch_rows in self._bucketed(buffer, rng):
                yield collate(buffer.take(batch_rows), self.vocab, self.max_events)

    def _buffers(self, path: Path, rng: np.random.Generator) -> Iterator[pa.Table]:
        """Buffers of exactly ``batch_size * bucket_batches`` customers (the last one of a file may be short)."""
        size = self.batch_size * self.bucket_batches
        batches = pq.ParquetFile(path).iter_batches(batch_size=size)
        if self.holdout != "all":
            batches = (b.filter(pa.array(self._kept(b))) for b in batches)
        yield from exact_blocks(batches, size)

    def _kept(self, table: pa.Table | pa.RecordBatch) -> np.ndarray:
        ids = table.column("customer_id").to_pylist()
        return split_mask(ids, self.holdout, self.holdout_fraction, self.test_fraction, self.label_fraction)

    def _bucketed(self, table: pa.Table, rng: np.random.Generator) -> list[np.ndarray]:
        n = table.num_rows
        lengths = np.minimum(table.column("length").to_numpy(), self.max_events)
        jitter = rng.random(n) if self.shuffle else np.zeros(n)
        by_length = np.lexsort((jitter, lengths))  # similar lengths together, ties in random order
        batches = [by_length[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches


SPLIT_PARTS = ("train", "validation", "test")


def split_mask(
    ids: list[str], part: str, validation_fraction: float, test_fraction: float = 0.0, label_fraction: float = 1.0
) -> np.ndarray:
    """Which customers belong to ``part`` of a stable split by id hash (the same in every window and run).

    The hash's first ``validation_fraction`` is validation, the next ``test_fraction`` test, the rest train;
    ``label_fraction`` < 1 keeps that share of the train customers, chosen by a second, independent hash.
    """
    if part not in SPLIT_PARTS:
        raise ValueError(f"part must be one of {SPLIT_PARTS}, got {part!r}")
    band = np.array([zlib.crc32(i.encode()) % 10_000 for i in ids], dtype=np.int64) / 10_000
    if part == "validation":
        return band < validation_fraction
    if part == "test":
        return (band >= validation_fraction) & (band < validation_fraction + test_fraction)
    train = band >= validation_fraction + test_fraction
    if label_fraction < 1:
        second = np.array([zlib.crc32(b"labels:" + i.encode()) % 10_000 for i in ids], dtype=np.int64) / 10_000
        train &= second < label_fraction
    return train


def sample_mask(ids: list[str], fraction: float) -> np.ndarray:
    """A stable sample of about ``fraction`` of the customers (the same in every window and run).

    Its id hash is its own, independent of :func:`split_mask`'s, so every part of the split is sampled alike.
    """
    if fraction >= 1:
        return np.ones(len(ids), dtype=bool)
    band = np.array([zlib.crc32(b"sample:" + i.encode()) for i in ids], dtype=np.int64) / 2**32
    return band < fraction
