"""The LSTM encoder: the encoder contract, padding never matters, and it fine-tunes, saves and loads."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import custseq
from custseq.config import EncoderConfig, FinetuneConfig, ModelConfig, PretrainConfig, TrainConfig
from custseq.io.prepared import PreparedWindows
from custseq.models.encoder import SequenceEncoder
from custseq.models.finetune import (
    finetune_prepared,
    fingerprint_of,
    load_churn_value,
    save_churn_value,
    score_window,
)
from custseq.models.lstm import LstmEncoder, build_encoder
from custseq.models.pretrain import PretrainModel
from custseq.sequences.batch import EventBatch, collate

TINY = EncoderConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0, max_events=8, kind="lstm")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> custseq.PrepareResult:
    """Loyal customers buy every 1-3 weeks all year, the others stop early: churn is visible in the sequence."""
    rng = np.random.default_rng(11)
    rows = []
    for c in range(240):
        loyal = c % 2 == 0
        day = int(rng.integers(0, 30))
        end = 360 if loyal else int(rng.integers(60, 200))
        while day < end:
            rows.append({"customer_id": f"u{c:03d}", "ts": dt.date(2023, 1, 1) + dt.timedelta(days=day),
                         "amount": round(float(rng.gamma(2, 20 if loyal else 8)), 2)})  # fmt: skip
            day += int(rng.integers(7, 20) if loyal else rng.integers(15, 40))
    return custseq.prepare(pd.DataFrame(rows), out=tmp_path_factory.mktemp("lstm"), as_of="2023-10-31", horizon="60d")


@pytest.fixture(scope="module")
def sequences(prepared) -> pa.Table:
    return prepared.sequences(prepared.plan.validation)


@pytest.fixture(scope="module")
def batch(prepared, sequences) -> EventBatch:
    return collate(sequences, prepared.vocab, TINY.max_events)


def _encoder(prepared, cfg: EncoderConfig = TINY) -> LstmEncoder:
    torch.manual_seed(0)
    sizes = {f.name: prepared.vocab.size(f.name) for f in prepared.vocab.layout.categorical()}
    return build_encoder(cfg, sizes, len(prepared.vocab.layout.numeric())).eval()


def test_factory_builds_the_kind_the_config_names(prepared):
    assert isinstance(_encoder(prepared), LstmEncoder)
    assert isinstance(_encoder(prepared, dataclasses.replace(TINY, kind="transformer")), SequenceEncoder)


def test_outputs_follow_the_encoder_contract(prepared, batch):
    out = _encoder(prepared)(batch)
    b, t = batch.mask.shape
    assert out.hidden.shape == (b, t, 16) and out.embedding.shape == (b, 16)
    assert torch.equal(out.mask, batch.mask) and torch.isfinite(out.embedding).all()
    assert (out.hidden[~batch.mask] == 0).all()  # padding outputs are zeroed
    assert batch.lengths.min() < batch.lengths.max()  # the batch really is padded


@pytest.mark.parametrize("pooling", ["cls", "mean", "mean+cls"])
def test_embedding_does_not_depend_on_padding(prepared, sequences, batch, pooling):
    encoder = _encoder(prepared, dataclasses.replace(TINY, pooling=pooling))
    shortest = int(torch.argmin(batch.lengths))
    alone = collate(sequences.take([shortest]), prepared.vocab, TINY.max_events)  # no padding at all
    assert alone.mask.all() and batch.lengths[shortest] < batch.mask.shape[1]
    together = encoder(batch).embedding[shortest]
    torch.testing.assert_close(together, encoder(alone).embedding[0], atol=1e-6, rtol=1e-5)


def test_last_state_equals_a_packed_lstm_run(prepared, batch):
    encoder = _encoder(prepared, dataclasses.replace(TINY, pooling="cls"))
    with torch.no_grad():
        tokens = encoder.embed(batch)
        packed = pack_padded_sequence(tokens, batch.lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = encoder.lstm(packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=batch.mask.shape[1])
        ours = encoder(batch)
    torch.testing.assert_close(ours.embedding, h_n[-1], atol=1e-6, rtol=1e-5)  # top layer's final state
    torch.testing.assert_close(ours.hidden, hidden, atol=1e-6, rtol=1e-5)


def test_a_customer_without_events_gets_a_zero_embedding(prepared, batch):
    encoder = _encoder(prepared)
    empty = dataclasses.replace(batch, mask=batch.mask.clone(), lengths=batch.lengths.clone())
    empty.mask[0] = False
    empty.lengths[0] = 0
    before, after = encoder(batch).embedding, encoder(empty).embedding
    assert (after[0] == 0).all()
    torch.testing.assert_close(after[1:], before[1:])


def test_pretraining_objectives_train_an_lstm(prepared, batch):
    torch.manual_seed(0)
    model = PretrainModel(TINY, PretrainConfig(objectives=("masked", "next", "contrastive")), prepared.vocab)
    assert isinstance(model.encoder, LstmEncoder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_finetune_scores_and_round_trips(prepared, tmp_path):
    cfg = ModelConfig(
        pretraining=False,
        encoder=TINY,
        finetune=FinetuneConfig(use_tabular=False),  # the sequence alone, through the LSTM
        finetune_training=TrainConfig(epochs=3, batch_size=32, learning_rate=5e-3, patience=3),
    )
    fit = finetune_prepared(prepared.layout, cfg, progress=False)
    assert isinstance(fit.model.network.encoder, LstmEncoder) and not fit.pretrained
    assert fit.metrics["churn_auc"] > 0.75, fit.metrics  # churn is visible in the sequence alone
    scoring = PreparedWindows.read(prepared.out_dir).scoring
    before = score_window(fit.model, scoring)
    save_churn_value(tmp_path / "model", fit, cfg, {}, fingerprint_of(prepared.layout))
    loaded, config, _ = load_churn_value(tmp_path / "model")
    assert isinstance(loaded.network.encoder, LstmEncoder) and config["encoder"]["kind"] == "lstm"
    after = score_window(loaded, scoring)
    assert after.customer_ids == before.customer_ids and len(after.customer_ids) > 100
    for name, values in before.columns.items():
        np.testing.assert_array_equal(after.columns[name], values, err_msg=name)
    np.testing.assert_array_equal(after.embeddings, before.embeddings)
