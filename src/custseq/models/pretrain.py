"""Self-supervised pre-training of the sequence encoder, and customer embeddings from a trained encoder.

Objectives (switchable in :class:`custseq.config.PretrainConfig`): masked-event reconstruction (15%
SeqPreMT, or CASPR's 30% with zero-vector masks), λ1 · next-event prediction (the held-out last event,
predicted from the customer embedding), and an optional CoLES-style contrastive objective (two random
slices of the same customer are positives).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from custseq.config import EncoderConfig, PretrainConfig, TrainConfig
from custseq.errors import ArtifactError
from custseq.io.prepared import PreparedWindows
from custseq.models.artifacts import (
    VOCAB_FILE,
    Manifest,
    configs_from_json,
    data_fingerprint,
    load_model,
    save_model,
)
from custseq.models.distributed import is_main_process
from custseq.models.encoder import SequenceEncoder
from custseq.models.heads import EventHead, ProjectionHead
from custseq.models.losses import event_loss, info_nce
from custseq.models.lstm import build_encoder
from custseq.models.train import TrainResult, train
from custseq.progress import RunProgress
from custseq.sequences.batch import EventBatch, SequenceStream, shard_files
from custseq.sequences.masking import random_slices, sample_mask, split_last, targets_at
from custseq.sequences.vocab import SequenceVocab

MODEL_TYPE = "custseq-pretrain"
CONFIG_CLASSES = {"encoder": EncoderConfig, "pretrain": PretrainConfig, "train": TrainConfig}
log = logging.getLogger(__name__)


@dataclass
class PretrainOutput:
    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class PretrainModel(nn.Module):
    """The encoder with the heads of the enabled objectives."""

    def __init__(self, encoder: EncoderConfig, pretrain: PretrainConfig, vocab: SequenceVocab) -> None:
        super().__init__()
        self.pretrain_cfg = pretrain
        sizes = {f.name: vocab.size(f.name) for f in vocab.layout.categorical()}
        n_numeric = len(vocab.layout.numeric())
        self.encoder = build_encoder(encoder, sizes, n_numeric)  # the Transformer, or the LSTM baseline's
        d = encoder.d_model
        self.masked_head = EventHead(d, sizes, n_numeric) if "masked" in pretrain.objectives else None
        self.next_head = EventHead(d, sizes, n_numeric) if "next" in pretrain.objectives else None
        self.projection = ProjectionHead(d) if "contrastive" in pretrain.objectives else None

    def forward(self, batch: EventBatch) -> PretrainOutput:
        cfg = self.pretrain_cfg
        inputs, next_targets, has_next = split_last(batch) if self.next_head is not None else (batch, None, None)
        masked = sample_mask(inputs.mask, cfg.mask_rate) if self.masked_head is not None else None
        out = self.encoder(inputs, masked, cfg.mask_style)  # hidden (B, T, D), embedding (B, D)
        losses: list[torch.Tensor] = []
        metrics: dict[str, float] = {}
        # A mask is drawn only for a masked head, and next-event targets held out only for a next head.
        if masked is not None and self.masked_head is not None:
            rows, cols = torch.nonzero(masked, as_tuple=True)
            loss, m = event_loss(self.masked_head(out.hidden[rows, cols]), targets_at(inputs, rows, cols))
            losses.append(loss)
            metrics.update({f"masked_{k}": v for k, v in m.items()} | {"masked_loss": float(loss.detach())})
        if next_targets is not None and has_next is not None and self.next_head is not None and has_next.any():
            keep = has_next
            targets = type(next_targets)(
                {k: v[keep] for k, v in next_targets.categorical.items()},
                next_targets.numeric[keep],
                next_targets.log_dt_prev[keep],
            )
            loss, m = event_loss(self.next_head(out.embedding[keep]), targets)
            losses.append(cfg.next_weight * loss)
            metrics.update({f"next_{k}": v for k, v in m.items()} | {"next_loss": float(loss.detach())})
        if self.projection is not None:
            views = [random_slices(batch, cfg.contrastive_min_fraction) for _ in range(2)]
            z = [self.projection(self.encoder(v).embedding) for v in views]
            loss = info_nce(z[0], z[1], cfg.contrastive_temperature)
            losses.append(cfg.contrastive_weight * loss)
            metrics["contrastive_loss"] = float(loss.detach())
        return PretrainOutput(torch.stack(losses).sum(), metrics)


@torch.no_grad()
def embed(encoder: SequenceEncoder, stream: SequenceStream, device: str | torch.device = "cpu") -> pa.Table:
    """Customer embeddings (``customer_id``, ``e0 … e{D-1}``) for every customer of a stream, in stream order."""
    encoder.eval().to(device)
    ids: list[str] = []
    chunks: list[np.ndarray] = []
    for batch in stream.batches():
        ids.extend(batch.customer_ids)
        chunks.append(encoder(batch.to(device)).embedding.float().cpu().numpy().copy())  # not a view of the batch's
    matrix = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    columns = {"customer_id": pa.array(ids, pa.string())}
    columns |= {f"e{j}": pa.array(matrix[:, j], pa.float32()) for j in range(matrix.shape[1])}
    return pa.table(columns).sort_by("customer_id")


@dataclass(frozen=True)
class PretrainRun:
    """What ``pretrain`` produced: the saved model's manifest and where the outputs are."""

    model_dir: Path
    manifest: Manifest | None  # None on ranks other than 0
    result: TrainResult | None  # None on ranks other than 0 and in the launching process of a distributed run


def build_pretrain_model(config: dict[str, Any], vocab: SequenceVocab | None) -> PretrainModel:
    """Rebuild a :class:`PretrainModel` from a saved ``config.json`` (for :func:`load_model`)."""
    if vocab is None:
        raise ArtifactError("a pre-trained custseq model needs its vocab.json")
    cfgs = configs_from_json(config, CONFIG_CLASSES)
    return PretrainModel(cfgs["encoder"], cfgs["pretrain"], vocab)


def load_pretrained(model_dir: Path | str) -> tuple[PretrainModel, Manifest]:
    """Load a model written by :func:`pretrain` (checked: format, hashes, strict weights)."""
    model, _, _, manifest = load_model(Path(model_dir), build_pretrain_model, expected_type=MODEL_TYPE)
    return cast(PretrainModel, model), manifest  # built by build_pretrain_model; load_model returns an nn.Module


def training_streams(
    prepared: PreparedWindows, vocab: SequenceVocab, encoder: EncoderConfig, training: TrainConfig
) -> tuple[SequenceStream, SequenceStream, list[str]]:
    """Train/validation streams over the sequences of the training windows of a ``prepare`` output.

    Only training windows are used (not the scoring window): pre-training on rows up to the scoring date
    scrambled the value ranking at scoring time (MODEL-NOTES). Customers are held out by a stable hash.
    """
    keys = [w.key for w in prepared.training]
    files = tuple(f for w in prepared.training for f in shard_files(w.sequences))
    train = SequenceStream(
        files, vocab=vocab, max_events=encoder.max_events, batch_size=training.batch_size, seed=training.seed,
        holdout="train", max_batches=training.max_batches_per_epoch,
    )  # fmt: skip
    validation = SequenceStream(
        files, vocab=vocab, max_events=encoder.max_events, batch_size=training.batch_size, seed=training.seed,
        holdout="validation", shuffle=False, max_batches=training.max_batches_per_epoch,
    )  # fmt: skip
    return train, validation, keys


def pretrain_prepared(
    prepared: PreparedWindows,
    model_dir: Path,
    *,
    encoder: EncoderConfig | None = None,
    pretrain: PretrainConfig | None = None,
    training: TrainConfig | None = None,
    work_dir: Path | None = None,
    resume: bool = False,
    progress: bool | RunProgress = True,
) -> PretrainRun:
    """Pre-train an encoder on the training windows of a ``prepare`` output and save it to ``model_dir``.

    Runs as is under ``torchrun`` (distributed data parallel); only rank 0 writes.
    """
    encoder, pretrain, training = encoder or EncoderConfig(), pretrain or PretrainConfig(), training or TrainConfig()
    vocab = SequenceVocab.load(prepared.vocab_file)
    train_stream, val_stream, keys = training_streams(prepared, vocab, encoder, training)
    torch.manual_seed(training.seed)
    model = PretrainModel(encoder, pretrain, vocab)
    result = train(
        model,
        lambda epoch, rank, world: train_stream.batches(epoch, rank, world),
        lambda rank, world: val_stream.batches(0, rank, world),
        training,
        out_dir=work_dir,
        steps_per_epoch=train_stream.n_batches(_world_size()),
        resume=resume,
        progress=progress,
        description="pre-training",
    )
    if not is_main_process():
        return PretrainRun(model_dir, None, None)  # rank 0 writes the model; other ranks report nothing
    metrics = {"best_val_loss": result.best_val_loss, "best_epoch": float(result.best_epoch)}
    summary = prepared.summary_file.read_bytes()
    manifest = save_model(
        model_dir,
        model.cpu(),
        {"encoder": encoder, "pretrain": pretrain, "train": training},
        vocab,
        model_type=MODEL_TYPE,
        data_fingerprint=data_fingerprint([summary, prepared.vocab_file.read_bytes()]),
        cutoffs=keys,
        metrics=metrics,
        extra={"history": result.history},
    )
    if work_dir is not None and (work_dir / "train_log.jsonl").exists():
        shutil.copy(work_dir / "train_log.jsonl", model_dir / "train_log.jsonl")
    return PretrainRun(model_dir, manifest, result)


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def model_vocab(model_dir: Path | str) -> SequenceVocab:
    """The vocabulary saved with a model."""
    return SequenceVocab.load(Path(model_dir) / VOCAB_FILE)
