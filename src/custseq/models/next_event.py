"""The next item a customer is likely to buy or do, from the pre-training next-event head.

During pre-training the next-event head learned to predict each customer's held-out last event from the
embedding of the events before it (:func:`custseq.sequences.masking.split_last`). At scoring time the whole
sequence before the cutoff goes in, so the head predicts the first event after the cutoff. Its softmax over
one categorical field (product, category, event type, channel) ranks the values the customer is likely to
pick next; the reserved ids (padding, mask, unknown) are left out and the rest renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from custseq.errors import ArtifactError, ConfigError, TrainingError
from custseq.models.pretrain import PretrainModel
from custseq.sequences.batch import EventBatch, SequenceStream, shard_files
from custseq.sequences.vocab import FIRST_VALUE_ID, SequenceVocab

ITEM_FIELDS = ("product", "category", "event", "channel")  # what "auto" picks, first present first


@dataclass(frozen=True)
class NextItems:
    """The ``k`` likeliest next values of one field per customer, likeliest first."""

    field: str
    customer_ids: list[str]  # sorted, like every scoring output
    items: list[list[str]]  # per customer, the values (vocabulary strings), likeliest first
    probabilities: np.ndarray  # (N, k') float64, k' = min(k, values of the field); rows descending, sum <= 1

    def __len__(self) -> int:
        return len(self.customer_ids)


def item_field(vocab: SequenceVocab, requested: str) -> str | None:
    """The categorical field next items are proposed from.

    Parameters
    ----------
    vocab : SequenceVocab
        The model's vocabulary.
    requested : str
        ``"auto"`` for the first of :data:`ITEM_FIELDS` the vocabulary has (with at least one value), or a
        field name.

    Returns
    -------
    str or None
        The field, or None when ``"auto"`` finds none (e.g. CDNOW has no categorical field).

    Raises
    ------
    ConfigError
        If an explicit name is not a categorical field of the vocabulary.
    """
    names = [f.name for f in vocab.layout.categorical()]
    if requested == "auto":
        return next((name for name in ITEM_FIELDS if name in names and vocab.values.get(name)), None)
    if requested not in names:
        raise ConfigError(
            f"item_field {requested!r} is not a categorical field of the model's vocabulary; "
            f"available: {names or 'none'} (or 'auto')"
        )
    return requested


@torch.no_grad()
def propose_next(
    model: PretrainModel,
    vocab: SequenceVocab,
    folder: Path,
    field: str,
    k: int,
    batch_size: int = 256,
    *,
    anchor: Literal["last_event", "cutoff"] = "last_event",
    device: str | torch.device = "cpu",
) -> NextItems:
    """The ``k`` likeliest next values of ``field`` for every customer of a window folder.

    Parameters
    ----------
    model : PretrainModel
        A pre-trained model with the next-event objective (``"next"`` in its objectives).
    vocab : SequenceVocab
        The vocabulary the folder's sequences were encoded with (the model's).
    folder : Path
        A window folder with ``sequences/`` (a ``prepare`` window, or the output of
        :func:`custseq.prepare.prepare_scoring_sequences`).
    field : str
        The categorical field to propose from (see :func:`item_field`).
    k : int
        Items per customer; fewer when the field has fewer values.
    batch_size : int
        Customers per forward pass.
    anchor : {"last_event", "cutoff"}
        ``"last_event"`` (default) measures the time features from the customer's last event, as the head saw
        them in training (:func:`~custseq.sequences.masking.split_last` re-anchors its inputs there);
        ``"cutoff"`` keeps the real time to the cutoff, which the head never saw on a last event.
    device : str or torch.device
        Where the forward passes run.

    Returns
    -------
    NextItems
        Sorted by customer id; probabilities are the softmax over the field's real values (reserved ids
        excluded, renormalised), so each row is descending, in [0, 1] and sums to at most 1.

    Raises
    ------
    TrainingError
        If the model was pre-trained without the next-event objective.
    ConfigError
        If ``field`` is not a categorical field of the vocabulary, or ``k`` is below 1.
    ArtifactError
        If the folder holds no sequences, or the model's head does not match the vocabulary.
    """
    if model.next_head is None:
        raise TrainingError(
            f"this model was pre-trained with objectives {list(model.pretrain_cfg.objectives)}, without 'next': "
            "it has no next-event head to propose items. Pre-train with the 'next' objective."
        )
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if anchor not in ("last_event", "cutoff"):
        raise ConfigError(f"anchor must be last_event or cutoff, got {anchor!r}")
    resolved = item_field(vocab, field)
    if resolved is None:
        raise ConfigError(
            f"the vocabulary has none of the item fields {list(ITEM_FIELDS)} (categorical fields: "
            f"{[f.name for f in vocab.layout.categorical()] or 'none'}); there are no items to propose"
        )
    field = resolved
    head = model.next_head.categorical[field]
    if head.out_features != vocab.size(field):
        raise ArtifactError(
            f"the model's next-event head has {head.out_features} {field} ids but the vocabulary {vocab.size(field)}; "
            "score with the vocabulary saved with the model"
        )
    files = tuple(shard_files(Path(folder) / "sequences"))
    if not files:
        raise ArtifactError(f"{folder} has no sequences/*.parquet; give a window folder written by prepare")
    values = np.asarray(vocab.values[field], dtype=object)
    top_k = min(k, len(values))
    stream = SequenceStream(files, vocab, model.encoder.cfg.max_events, batch_size, shuffle=False)
    model.eval().to(device)
    ids: list[str] = []
    chunks_p: list[np.ndarray] = []
    chunks_i: list[np.ndarray] = []
    for batch in stream.batches():
        batch = batch.to(device)
        if anchor == "last_event":
            batch = anchor_at_last_event(batch)
        logits = model.next_head(model.encoder(batch).embedding).logits[field]  # (B, V)
        probs = torch.softmax(logits[:, FIRST_VALUE_ID:].float(), dim=-1)  # (B, V - 3) real values only
        top = torch.topk(probs, top_k, dim=-1)  # sorted, largest first
        ids.extend(batch.customer_ids)
        chunks_p.append(top.values.double().cpu().numpy())
        chunks_i.append(top.indices.cpu().numpy())
    order = sorted(range(len(ids)), key=ids.__getitem__)
    probabilities = np.concatenate(chunks_p)[order] if chunks_p else np.zeros((0, top_k))
    positions = np.concatenate(chunks_i)[order] if chunks_i else np.zeros((0, top_k), dtype=np.int64)
    return NextItems(
        field=field,
        customer_ids=[ids[i] for i in order],
        items=[values[row].tolist() for row in positions],
        probabilities=probabilities,
    )


def anchor_at_last_event(batch: EventBatch) -> EventBatch:
    """The batch with each token's time to the cutoff measured to the customer's last token instead.

    The next-event head was trained on inputs re-anchored this way (the held-out event's time must not leak),
    so its last input token always had time 0 to the "cutoff".
    """
    rows = torch.arange(batch.size, device=batch.lengths.device)
    last = (batch.lengths - 1).clamp(min=0)
    days = torch.expm1(batch.log_t_to_cutoff)  # (B, T) days to the cutoff
    anchor = days[rows, last].unsqueeze(1)  # (B, 1)
    log_t = torch.log1p((days - anchor).clamp(min=0)) * batch.mask  # (B, T)
    return replace(batch, log_t_to_cutoff=log_t)
