"""The multi-task model: every loss and weighting trains, outputs honour the contract, and it learns a signal."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

import custseq
from custseq.config import EncoderConfig, FinetuneConfig
from custseq.features.matrix import fit_tabular, transform_tabular
from custseq.models.encoder import SequenceEncoder
from custseq.models.multitask import CustomerBatch, MultiTaskModel
from custseq.sequences.batch import collate

TINY = EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0, max_events=8)


@pytest.fixture(scope="module")
def window_batch(tmp_path_factory) -> tuple[CustomerBatch, custseq.PrepareResult]:
    """Customers whose churn is decided by how recently and often they bought (a learnable signal)."""
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
    result = custseq.prepare(pd.DataFrame(rows), out=tmp_path_factory.mktemp("ft"), as_of="2023-10-31", horizon="60d")
    window = result.plan.validation
    features, labels, sequences = result.features(window), result.labels(window), result.sequences(window)
    assert features.column("customer_id").equals(labels.column("customer_id"))
    assert features.column("customer_id").equals(sequences.column("customer_id"))
    inputs = transform_tabular(fit_tabular([features]), features)
    batch = CustomerBatch(
        collate(sequences, result.vocab, TINY.max_events),
        torch.from_numpy(inputs.values),
        {k: torch.from_numpy(v) for k, v in inputs.categories.items()},
        torch.tensor(labels.column("churned").to_numpy(zero_copy_only=False), dtype=torch.float32),
        torch.tensor(labels.column("value").to_numpy(), dtype=torch.float32),
    )
    return batch, result


def _model(batch: CustomerBatch, result, **cfg) -> MultiTaskModel:
    torch.manual_seed(0)
    encoder = SequenceEncoder(TINY, {f.name: result.vocab.size(f.name) for f in result.vocab.layout.categorical()},
                              len(result.vocab.layout.numeric()))  # fmt: skip
    sizes = {k: int(v.max()) + 2 for k, v in batch.categories.items()}
    return MultiTaskModel(encoder, batch.tabular.shape[1], sizes, FinetuneConfig(**cfg))


@pytest.mark.parametrize("value_loss", ["ziln", "smooth_l1"])
@pytest.mark.parametrize("weighting", ["uncertainty", "fixed", "variance"])
def test_every_loss_and_weighting_is_finite_and_trains(window_batch, value_loss, weighting):
    batch, result = window_batch
    model = _model(batch, result, value_loss=value_loss, weighting=weighting)
    out = model(batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.churn_head.weight.grad.abs().sum() > 0 and model.value_head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    if weighting == "uncertainty":
        assert model.weighting.log_var.grad is not None


def test_frozen_encoder_gets_no_gradient(window_batch):
    batch, result = window_batch
    model = _model(batch, result, encoder_mode="frozen")
    model(batch).loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())


@pytest.mark.parametrize("value_loss", ["ziln", "smooth_l1"])
def test_predictions_honour_the_output_contract(window_batch, value_loss):
    batch, result = window_batch
    model = _model(batch, result, value_loss=value_loss).eval()
    pred = model.predict_values(model(batch))
    assert ((pred["churn_probability"] >= 0) & (pred["churn_probability"] <= 1)).all()
    assert (pred["clv_expected"] >= 0).all() and (pred["clv_p10"] >= 0).all()
    assert (pred["clv_p10"] <= pred["clv_p50"]).all() and (pred["clv_p50"] <= pred["clv_p90"]).all()


@pytest.mark.parametrize(
    "inputs", [{"use_sequence": False}, {"use_tabular": False}, {}], ids=["tabular", "sequence", "both"]
)
def test_model_learns_the_planted_churn_signal(window_batch, inputs):
    from sklearn.metrics import roc_auc_score

    batch, result = window_batch
    model = _model(batch, result, dropout=0.0, **inputs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    churn = model.predict_values(model(batch))["churn_probability"].numpy()
    auc = roc_auc_score(batch.churned.numpy(), churn)
    assert auc > 0.85, auc  # the same customers it trained on: it must at least fit a clear signal
