"""The [CLS] attention maps: the encoder's own states, weights on real events only, readable event labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

import custseq
from custseq.config import EncoderConfig, RunConfig, SequenceConfig, WindowConfig
from custseq.models.attention import attention_samples, cls_attention
from custseq.models.encoder import SequenceEncoder
from custseq.sequences.batch import collate
from custseq.sequences.build import read_sequences

TINY = EncoderConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0, max_events=6)


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    rows = []
    for c in range(20):
        for k in range(2 + c % 7):  # 2 … 8 purchases: some sequences longer than max_events
            rows.append({"customer_id": f"c{c:02d}", "ts": dt.datetime(2023, 1, 2 + 3 * k), "amount": 10.0 + k,
                         "product": "AB"[k % 2]})  # fmt: skip
    rows.append({"customer_id": "z", "ts": dt.datetime(2023, 2, 10), "amount": 5.0, "product": "A"})  # the last day
    result = custseq.prepare(
        pd.DataFrame(rows), out=tmp_path_factory.mktemp("att"), as_of="2023-02-10", horizon="10d",
        config=RunConfig(sequence=SequenceConfig(min_count=1), window=WindowConfig(require_training=False)),
    )  # fmt: skip
    return result


def _encoder(vocab) -> SequenceEncoder:
    torch.manual_seed(0)
    sizes = {f.name: vocab.size(f.name) for f in vocab.layout.categorical()}
    return SequenceEncoder(TINY, sizes, len(vocab.layout.numeric())).eval()


def test_weights_sit_on_real_events_and_the_states_are_the_encoders(window):
    folder = window.window(window.plan.scoring)
    encoder = _encoder(window.vocab)
    batch = collate(read_sequences(folder.sequences), window.vocab, TINY.max_events)
    maps = cls_attention(encoder, batch)
    assert maps.shape == (batch.size, TINY.n_layers, batch.mask.shape[1])
    mask = batch.mask.numpy()
    assert np.all(maps[:, :, :][~np.broadcast_to(mask[:, None, :], maps.shape)] == 0)  # never on padding
    assert np.all(maps.sum(-1) < 1.0) and np.all(maps.sum(-1) > 0)  # the rest goes to [CLS] itself
    with torch.no_grad():  # the layers were run on the encoder's own inputs: the same embeddings come out
        expected = encoder(batch).embedding
        tokens = encoder.embed(batch)
        x = torch.cat([encoder.cls.expand(batch.size, 1, -1), tokens], dim=1)
        keep = torch.cat([torch.ones(batch.size, 1, dtype=torch.bool), batch.mask], dim=1)
        for layer in encoder.transformer.layers:
            x = layer(x, src_key_padding_mask=~keep)
        hidden = encoder.final_norm(x)
    torch.testing.assert_close(encoder._pool(hidden[:, 0], hidden[:, 1:], batch.mask), expected)


def test_samples_label_the_latest_events_oldest_first(window):
    folder = window.window(window.plan.scoring)
    samples = attention_samples(_encoder(window.vocab), window.vocab, folder, ["c06", "c01", "missing"], 4)
    assert [s["customer_id"] for s in samples] == ["c01", "c06"]  # unknown ids are left out
    c06 = samples[1]
    assert len(c06["events"]) == 4 and len(c06["weights"]) == TINY.n_layers and len(c06["weights"][0]) == 4
    # c06 bought 8 times on 2023-01-02 + 3k; the latest four are k = 4 … 7, products A/B alternating
    assert c06["events"] == ["2023-01-14 · A · 14.00", "2023-01-17 · B · 15.00", "2023-01-20 · A · 16.00",
                             "2023-01-23 · B · 17.00"]  # fmt: skip
    assert len(samples[0]["events"]) == 3  # c01 has 3 events
