"""Next-item proposals from the pre-training next-event head: a planted cycle, reserved ids, the item field."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

import custseq
from custseq.config import EncoderConfig, PrepareConfig, PretrainConfig, SequenceConfig
from custseq.errors import ArtifactError, ConfigError, TrainingError
from custseq.models.next_event import item_field, propose_next
from custseq.models.pretrain import PretrainModel
from custseq.sequences.batch import SequenceStream, shard_files
from custseq.sequences.tokens import Field, TokenLayout
from custseq.sequences.vocab import SequenceVocab

PRODUCTS = ["A", "B", "C", "D"]
AS_OF = "2023-03-25"
TINY = EncoderConfig(d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0, max_events=16)


@pytest.fixture(scope="module")
def cyclic(tmp_path_factory) -> tuple[custseq.PrepareResult, pd.DataFrame]:
    """300 customers whose products cycle A→B→C→D→A… from a random start."""
    rng = np.random.default_rng(7)
    rows = []
    for c in range(300):
        start, day = int(rng.integers(4)), int(rng.integers(0, 20))
        for k in range(int(rng.integers(6, 13))):
            product = PRODUCTS[(start + k) % 4]
            rows.append(
                {"customer_id": f"c{c:03d}", "ts": dt.datetime(2023, 1, 1) + dt.timedelta(days=day),
                 "amount": 10.0 * (1 + PRODUCTS.index(product)), "product": product}
            )  # fmt: skip
            day += int(rng.integers(3, 9))
    frame = pd.DataFrame(rows)
    result = custseq.prepare(
        frame, out=tmp_path_factory.mktemp("cyclic"), as_of=AS_OF, horizon="30d",
        config=PrepareConfig(sequence=SequenceConfig(min_count=1)),
    )  # fmt: skip
    return result, frame


@pytest.fixture(scope="module")
def trained(cyclic) -> PretrainModel:
    """The next-event objective alone, trained on the scoring window's sequences (seconds)."""
    result, _ = cyclic
    files = tuple(shard_files(result.window_dir(result.plan.scoring) / "sequences"))
    stream = SequenceStream(files, result.vocab, TINY.max_events, batch_size=64, seed=0)
    torch.manual_seed(0)
    model = PretrainModel(TINY, PretrainConfig(objectives=("next",)), result.vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for epoch in range(25):
        for batch in stream.batches(epoch):
            loss = model(batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def _scoring_folder(result: custseq.PrepareResult):
    return result.window_dir(result.plan.scoring)


def test_proposals_continue_the_planted_cycle(cyclic, trained):
    result, frame = cyclic
    proposed = propose_next(trained, result.vocab, _scoring_folder(result), "product", k=3)
    before = frame[frame["ts"] < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)].sort_values("ts")
    last = before.groupby("customer_id")["product"].last()
    assert proposed.customer_ids == sorted(last.index)  # every customer with history, sorted by id
    expected = [PRODUCTS[(PRODUCTS.index(last[c]) + 1) % 4] for c in proposed.customer_ids]
    top1 = np.mean([items[0] == e for items, e in zip(proposed.items, expected, strict=True)])
    assert top1 > 0.9, top1  # measured 1.000 (0.973 with anchor="cutoff"); the majority product is about 0.3


def test_probabilities_are_sorted_bounded_and_over_real_values_only(cyclic, trained):
    result, _ = cyclic
    folder = _scoring_folder(result)
    proposed = propose_next(trained, result.vocab, folder, "auto", k=3, batch_size=7)
    p = proposed.probabilities
    assert proposed.field == "product" and p.shape == (len(proposed), 3)
    assert (np.diff(p, axis=1) <= 0).all() and (p >= 0).all() and (p.sum(axis=1) <= 1 + 1e-9).all()
    assert all(set(items) <= set(PRODUCTS) and len(set(items)) == 3 for items in proposed.items)
    everything = propose_next(trained, result.vocab, folder, "product", k=10)  # more than the 4 values
    assert all(len(items) == 4 for items in everything.items)
    np.testing.assert_allclose(everything.probabilities.sum(axis=1), 1.0, atol=1e-6)
    # reserved ids (pad, mask, unknown) made overwhelmingly likely change nothing: they are never proposed
    boosted = PretrainModel(TINY, PretrainConfig(objectives=("next",)), result.vocab)
    boosted.load_state_dict(trained.state_dict())
    with torch.no_grad():
        boosted.next_head.categorical["product"].bias[:3] += 100.0
    again = propose_next(boosted, result.vocab, folder, "product", k=3)
    assert again.items == proposed.items
    np.testing.assert_allclose(again.probabilities, proposed.probabilities, atol=1e-6)


def test_time_anchors_differ_only_in_the_time_features(cyclic, trained):
    result, _ = cyclic
    folder = _scoring_folder(result)
    at_last = propose_next(trained, result.vocab, folder, "product", k=4)
    at_cutoff = propose_next(trained, result.vocab, folder, "product", k=4, anchor="cutoff")
    assert at_last.customer_ids == at_cutoff.customer_ids
    assert not np.allclose(at_last.probabilities, at_cutoff.probabilities)  # the time to the cutoff is an input


def test_a_model_without_a_next_head_or_a_bad_field_is_refused(cyclic, tmp_path):
    result, _ = cyclic
    folder = _scoring_folder(result)
    masked_only = PretrainModel(TINY, PretrainConfig(objectives=("masked",)), result.vocab)
    with pytest.raises(TrainingError, match=r"objectives \['masked'\], without 'next'"):
        propose_next(masked_only, result.vocab, folder, "product", k=3)
    model = PretrainModel(TINY, PretrainConfig(), result.vocab)
    with pytest.raises(ConfigError, match=r"item_field 'sku' is not a categorical field .*available: \['product'\]"):
        propose_next(model, result.vocab, folder, "sku", k=3)
    with pytest.raises(ConfigError, match="k must be at least 1, got 0"):
        propose_next(model, result.vocab, folder, "product", k=0)
    with pytest.raises(ArtifactError, match="has no sequences"):
        propose_next(model, result.vocab, tmp_path, "product", k=3)


def test_item_field_picks_the_first_item_field_present():
    def vocab(*names: str) -> SequenceVocab:
        fields = tuple(Field(n, "transactions", n, "category") for n in names)
        fields += (Field("amount", "transactions", "amount", "number"),)
        return SequenceVocab(TokenLayout("order", fields, False), {n: ("x",) for n in names}, {}, "2024-01-01")

    assert item_field(vocab("channel", "category", "country"), "auto") == "category"
    assert item_field(vocab("country", "channel"), "auto") == "channel"
    assert item_field(vocab(), "auto") is None  # CDNOW: amounts and quantities only
    assert item_field(vocab("country"), "country") == "country"
    with pytest.raises(ConfigError, match=r"available: none"):
        item_field(vocab(), "product")
