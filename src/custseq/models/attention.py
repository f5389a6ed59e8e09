"""Where the encoder looks: the [CLS] token's attention on each event, per layer, for sample customers.

``nn.TransformerEncoder`` computes attention without returning it, so each layer's self-attention is run a
second time with ``need_weights=True`` on the same (pre-LayerNorm) input; the layer's own forward then gives
the next layer's input, so the states are exactly those of :meth:`SequenceEncoder.forward` (a test checks it).
The weights are averaged over heads. They show what the [CLS] summary reads, not a causal attribution.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from custseq.io.prepared import WindowFolder
from custseq.models.encoder import SequenceEncoder
from custseq.models.next_event import item_field
from custseq.schema import TOKEN_TYPES
from custseq.sequences.batch import EventBatch, collate
from custseq.sequences.build import read_sequences
from custseq.sequences.vocab import FIRST_VALUE_ID, SequenceVocab


@torch.no_grad()
def cls_attention(encoder: SequenceEncoder, batch: EventBatch) -> np.ndarray:
    """(B, L, T): per customer and layer, the [CLS] token's attention on each event (0 on padding)."""
    encoder.eval()
    tokens = encoder.embed(batch)  # (B, T, D)
    b = tokens.shape[0]
    x = torch.cat([encoder.cls.expand(b, 1, -1), tokens], dim=1)  # (B, 1 + T, D)
    keep = torch.cat([torch.ones(b, 1, dtype=torch.bool), batch.mask], dim=1)
    maps = []
    for layer in encoder.transformer.layers:
        h = layer.norm1(x) if layer.norm_first else x
        _, weights = layer.self_attn(h, h, h, key_padding_mask=~keep, need_weights=True, average_attn_weights=True)
        maps.append(weights[:, 0, 1:])  # (B, T): [CLS] attending to the events
        x = layer(x, src_key_padding_mask=~keep)
    return torch.stack(maps, dim=1).numpy()


def attention_samples(
    encoder: SequenceEncoder, vocab: SequenceVocab, window: WindowFolder, customer_ids: list[str], shown_events: int
) -> list[dict[str, Any]]:
    """For each customer: event labels (oldest first) and the [CLS] attention on them per layer.

    ``window`` is a window folder of ``prepare`` (its ``sequences/``); the encoder sees each customer's whole
    sequence (up to ``max_events``), the labels and weights cover the latest ``shown_events`` events.
    """
    table = read_sequences(window.sequences)
    wanted = pa.array(customer_ids, table.schema.field("customer_id").type)
    table = table.filter(pc.is_in(table.column("customer_id"), value_set=wanted))
    if table.num_rows == 0:
        return []
    batch = collate(table, vocab, encoder.cfg.max_events)
    maps = cls_attention(encoder, batch)
    rows = table.to_pylist()
    out = []
    for i, customer in enumerate(batch.customer_ids):
        n = int(batch.lengths[i])
        first = max(0, n - shown_events)
        labels = _event_labels(rows[i], vocab, encoder.cfg.max_events)[first:n]
        out.append({"customer_id": customer, "events": labels, "weights": maps[i, :, first:n].round(4).tolist()})
    return out


def _event_labels(row: dict[str, Any], vocab: SequenceVocab, max_events: int) -> list[str]:
    """``date · item · amount`` per kept token, oldest first, from the standardised sequence row."""
    start = max(0, row["length"] - max_events)
    cutoff: dt.datetime = row["cutoff"]
    # the times are stored as float32 ln(1 + days before the cutoff): exact to well under a minute for a year
    minutes = [round(math.expm1(v) * 1440) for v in row["log_t_to_cutoff"][start:]]
    parts = [[(cutoff - dt.timedelta(minutes=m)).date().isoformat()] for m in minutes]
    item = item_field(vocab, "auto")  # the field that names an event in the labels, as in the plans
    if item is not None:
        for p, vid in zip(parts, row[item][start:], strict=True):
            p.append(vocab.values[item][vid - FIRST_VALUE_ID] if vid >= FIRST_VALUE_ID else "·")
    if "amount" in vocab.stats:
        mean, std = vocab.stats["amount"]
        kinds = row["token_type"][start:]
        for p, z, kind in zip(parts, row["amount"][start:], kinds, strict=True):
            if kind == TOKEN_TYPES["transaction"]:  # behaviour events carry no amount
                signed_log = z * std + mean
                p.append(f"{math.copysign(math.expm1(abs(signed_log)), signed_log):,.2f}")
    return [" · ".join(p) for p in parts]
