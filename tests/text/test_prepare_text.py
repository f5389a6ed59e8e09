"""Texts through prepare and scoring: fitted on training texts only, the future moves nothing, tokens carry them,
scoring re-applies the saved model, and no network is touched."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import socket
import urllib.request

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from tests.text.small_shop import AS_OF, CONFIG, NetworkUsed, no_network

import custseq
from custseq.config import with_window
from custseq.errors import SchemaError
from custseq.io.prepared import VOCAB_FILE
from custseq.io.tables import Tables
from custseq.pipelines.prepare import prepare_scoring_sequences
from custseq.sequences.build import read_sequences
from custseq.sequences.vocab import SequenceVocab
from custseq.text.sentiment import sentiment_scores
from custseq.windows import cutoff_of

TEXT_FEATURES = ["n_texts", "text_sentiment_mean", "text_negative_share", "n_texts_last_30d",
                 "text_sentiment_last_30d", "text_negative_share_last_30d", "n_texts_last_90d",
                 "text_sentiment_last_90d", "text_negative_share_last_90d", "days_since_negative_text",
                 *(f"text_svd_{i}_recent" for i in range(1, 7))]  # fmt: skip
TEXT_FIELDS = ["event_text_sentiment", *(f"event_text_svd_{i}" for i in range(1, 7))]


@pytest.fixture(scope="module")
def base(shop_frames, tmp_path_factory):
    tx, events = shop_frames
    with no_network():
        return custseq.prepare(tx, events=events, out=tmp_path_factory.mktemp("base"), as_of=AS_OF, config=CONFIG)


def perturb_texts(events: pd.DataFrame, at: dt.datetime, seed: int = 1) -> pd.DataFrame:
    """Texts and events at or after ``at`` changed, deleted and added; earlier rows untouched, in their order."""
    rng = np.random.default_rng(seed)
    events = events.copy()
    future = events.index[events["ts"] >= pd.Timestamp(at)]
    assert len(future) > 100
    events.loc[future[::3], "text"] = "zyxword never seen before, absolutely horrible and terrible"
    events.loc[future[1::5], "event"] = "support_ticket"
    events.loc[future[1::5], "text"] = "love it"
    events = events.drop(future[2::7])
    customers = events["customer_id"].drop_duplicates().to_numpy()[:30]
    extra = pd.DataFrame(
        {
            "customer_id": customers,
            "ts": [pd.Timestamp(at) + pd.Timedelta(hours=int(h)) for h in rng.integers(0, 24 * 40, len(customers))],
            "event": "support_ticket",
            "text": "refund refund refund, the worst shop ever",
        }
    )
    return pd.concat([extra, events], ignore_index=True)


def test_the_text_model_is_fitted_on_the_texts_before_the_latest_training_cutoff(base, shop_frames):
    _, events = shop_frames
    model = base.vocab.text
    assert model is not None and base.plan.vocab_cutoff == dt.datetime(2024, 2, 1)
    assert model.fitted_before == base.plan.vocab_cutoff.isoformat() == base.vocab.fitted_before
    before = events[(events["ts"] < base.plan.vocab_cutoff) & events["text"].notna()]
    assert model.n_texts == len(before) > 1000
    assert model.svd_dims == 6 and 50 < len(model.terms) <= 300
    assert base.summary.sequence.numeric_fields[-7:] == tuple(TEXT_FIELDS)


def test_the_saved_vocabulary_reloads_the_same_text_model(base):
    again = SequenceVocab.load(base.out_dir / VOCAB_FILE)
    assert again == base.vocab and again.text == base.vocab.text
    texts = ["my parcel never arrived", "love the lamp, great quality", "question about sizes"]
    assert again.text is not None and base.vocab.text is not None
    assert np.array_equal(again.text.transform(texts), base.vocab.text.transform(texts))


def test_the_network_guard_refuses_connections():
    with no_network(), pytest.raises(NetworkUsed):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with no_network(), pytest.raises(NetworkUsed):
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)


@pytest.mark.parametrize("at", ["scoring", "vocab"])
def test_later_texts_change_neither_the_model_nor_earlier_features_and_sequences(base, shop_frames, tmp_path, at):
    tx, events = shop_frames
    m = base.plan.scoring.cutoff if at == "scoring" else base.plan.vocab_cutoff
    with no_network():
        after = custseq.prepare(tx, events=perturb_texts(events, m), out=tmp_path, as_of=AS_OF, config=CONFIG)
    assert after.vocab == base.vocab  # the text model included
    windows = (base.plan.scoring, *base.plan.training)
    earlier = [w for w in windows if w.cutoff <= m]
    assert len(earlier) >= 3
    for w in earlier:
        assert after.features(w).equals(base.features(w)), w.key
        assert after.sequences(w).equals(base.sequences(w)), w.key
    later = [w for w in windows if w.cutoff > m]
    for w in later:  # the perturbation is real: a window that may see it does
        assert not after.features(w).select(TEXT_FEATURES).equals(base.features(w).select(TEXT_FEATURES))


def test_earlier_texts_do_change_the_model(base, shop_frames, tmp_path):
    # The other side of the rule: texts before the vocabulary cutoff are what the model is fitted on.
    tx, events = shop_frames
    after = custseq.prepare(
        tx, events=perturb_texts(events, base.plan.training[-1].cutoff), out=tmp_path, as_of=AS_OF, config=CONFIG
    )
    assert after.vocab.text is not None and base.vocab.text is not None
    assert after.vocab.text != base.vocab.text and "zyxword" in after.vocab.text.terms
    assert "zyxword" not in base.vocab.text.terms


def test_text_features_aggregate_the_texts_before_the_cutoff(base, shop_frames):
    _, events = shop_frames
    window = base.plan.training[0]
    features = base.features(window).to_pandas().set_index("customer_id")
    texts = events[(events["ts"] < window.cutoff) & events["text"].notna()].copy()
    texts["sentiment"] = sentiment_scores(texts["text"].tolist())
    last_30 = texts[texts["ts"] >= window.cutoff - dt.timedelta(days=30)]
    expected = pd.DataFrame(
        {
            "n_texts": texts.groupby("customer_id").size(),
            "text_sentiment_mean": texts.groupby("customer_id")["sentiment"].mean(),
            "text_negative_share_last_30d": last_30.groupby("customer_id")["sentiment"].apply(
                lambda s: (s <= -0.05).mean()
            ),
        }
    )
    got = features.loc[expected.index, expected.columns]
    assert (got["n_texts"] == expected["n_texts"]).all() and len(expected) > 200
    assert np.allclose(got["text_sentiment_mean"], expected["text_sentiment_mean"], atol=1e-12)
    assert np.allclose(
        got["text_negative_share_last_30d"], expected["text_negative_share_last_30d"], atol=1e-12, equal_nan=True
    )
    silent = features.index.difference(expected.index)
    assert len(silent) > 0 and (features.loc[silent, "n_texts"] == 0).all()
    assert features.loc[silent, "text_sentiment_mean"].isna().all()
    assert [c for c in base.features(window).column_names if c in TEXT_FEATURES] == TEXT_FEATURES


def test_event_tokens_carry_the_standardised_sentiment_of_their_text(base, shop_frames):
    _, events = shop_frames
    window = base.plan.training[0]
    sequences = base.sequences(window).to_pylist()
    mean, std = base.vocab.stats["event_text_sentiment"]
    before = events[events["ts"] < window.cutoff]
    checked = 0
    for row in sequences[:60]:
        mine = before[before["customer_id"] == row["customer_id"]].sort_values("ts").tail(row["length"])
        texts = mine["text"].tolist()
        # the tokens are the customer's last transactions and events; compare the event tokens with a text
        is_event = [t == 1 for t in row["token_type"]]
        values = [v for v, e in zip(row["event_text_sentiment"], is_event, strict=True) if e]
        if len(values) != len(mine):
            continue  # transactions among the last tokens: the event positions still line up below
        for text, value in zip(texts, values, strict=True):
            if pd.isna(text):
                assert value == 0.0  # no text: the mean (0 once standardised)
            else:
                s = sentiment_scores([text])[0]
                assert value == pytest.approx((math.copysign(math.log1p(abs(s)), s) - mean) / std, abs=1e-5)
                checked += 1
    assert checked > 50
    assert all(name in base.sequences(window).column_names for name in TEXT_FIELDS)


def test_scoring_reapplies_the_saved_text_model(base, shop_frames, tmp_path):
    tx, events = shop_frames
    tables = Tables.of(tx, events=events)
    with no_network():
        cfg = with_window(CONFIG, as_of=AS_OF)
        scored = prepare_scoring_sequences(tables, cfg, tmp_path, vocab=base.vocab, with_features=True)
    assert scored.window.cutoff == cutoff_of(dt.date.fromisoformat(AS_OF)) == base.plan.scoring.cutoff
    features = pq.read_table(scored.folder.features)
    expected = base.features(base.plan.scoring)
    assert features.select(["customer_id", *TEXT_FEATURES]).equals(expected.select(["customer_id", *TEXT_FEATURES]))
    sequences = read_sequences(scored.folder.sequences)
    assert sequences.select(["customer_id", *TEXT_FIELDS]).equals(
        base.sequences(base.plan.scoring).select(["customer_id", *TEXT_FIELDS])
    )


def test_scoring_data_without_texts_are_refused_by_a_model_that_read_texts(base, shop_frames, tmp_path):
    tx, events = shop_frames
    tables = Tables.of(tx, events=events.drop(columns="text"))
    with pytest.raises(SchemaError, match=r"trained with event texts \(events.text\).*--column events.text="):
        prepare_scoring_sequences(tables, CONFIG, tmp_path, vocab=base.vocab)


def test_texts_switched_off_leave_the_column_unused(shop_frames, tmp_path):
    tx, events = shop_frames
    cfg = dataclasses.replace(CONFIG, text=dataclasses.replace(CONFIG.text, enabled=False))
    prepared = custseq.prepare(tx, events=events, out=tmp_path, as_of=AS_OF, config=cfg)
    assert prepared.vocab.text is None and "text" not in (tmp_path / "vocab.json").read_text().split('"layout"')[0]
    assert not set(TEXT_FEATURES) & set(prepared.features(prepared.plan.scoring).column_names)
    assert not [f for f in prepared.vocab.layout.fields if "text" in f.name]
