"""End to end with texts, the network refused: predict pre-trains and fine-tunes on tokens that carry the text
vector, saves the text model with the vocabulary, and score re-applies it to the same predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tests.text.small_shop import AS_OF, CONFIG, no_network

import custseq
from custseq.api import predict_run
from custseq.config import load_config
from custseq.models.finetune import load_churn_value

TINY = """
[model.encoder]
d_model = 16
n_heads = 2
n_layers = 1
d_ff = 32
max_events = 16

[model.pretrain_training]
epochs = 1
batch_size = 64

[model.finetune_training]
epochs = 2
batch_size = 64

[profit]
currency = "EUR"
"""


@pytest.mark.slow
def test_predict_and_score_read_the_texts_offline(shop_frames, tmp_path):
    tx, events = shop_frames
    (tmp_path / "tiny.toml").write_text(TINY)
    cfg = load_config(tmp_path / "tiny.toml", base=CONFIG)
    out = tmp_path / "run"
    with no_network():
        run = predict_run(tx, events=events, as_of=AS_OF, config=cfg, seed=0, out=out)
        scored = custseq.score(out / "model", tx, events=events, as_of=AS_OF)

    history = json.loads((out / "history.json").read_text())
    assert len(history["pretrain"]) == 1 and len(history["finetune"]) == 2
    assert all(math.isfinite(e["train_loss"]) for e in history["pretrain"] + history["finetune"])

    vocab = json.loads((out / "model" / "vocab.json").read_text())
    assert vocab["text"]["fitted_before"] == vocab["fitted_before"] and len(vocab["text"]["components"]) == 6
    numeric = [f["name"] for f in vocab["layout"]["fields"] if f["kind"] == "number"]
    assert numeric[-7:] == ["event_text_sentiment", *(f"event_text_svd_{i}" for i in range(1, 7))]
    model = load_churn_value(out / "model")[0]
    assert model.vocab.text is not None and model.vocab.text.n_texts > 1000
    # the encoder's numeric projection reads every numeric field, the text ones included
    assert model.network.encoder.embed.numeric.in_features == len(numeric)

    assert "n_texts" in run.model.tabular.numeric and "text_negative_share_last_30d" in run.model.tabular.numeric
    predicted = run.predictions.set_index("customer_id")["churn_probability"]
    rescored = scored.predictions.set_index("customer_id")["churn_probability"]
    assert len(predicted) > 200 and rescored.index.equals(predicted.index)
    assert np.allclose(rescored.to_numpy(), predicted.to_numpy(), atol=1e-6)
