"""Next-item proposals from the pre-training next-event head: a planted cycle, reserved ids, the item field;
the head mixed with the customer's own history: planted repeat buyers, hand-built next-item targets."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import custseq
from custseq.config import EncoderConfig, PretrainConfig, RunConfig, SequenceConfig
from custseq.errors import ArtifactError, ConfigError, TrainingError
from custseq.io.prepared import WindowFolder
from custseq.models import next_event
from custseq.models.next_event import (
    ItemMixture,
    customer_item_distribution,
    fit_item_mixture,
    item_field,
    next_item_targets,
    propose_next,
    rank_fully,
    rank_mixed,
)
from custseq.models.pretrain import PretrainModel
from custseq.sequences.batch import SequenceStream, shard_files
from custseq.sequences.tokens import Field, TokenLayout
from custseq.sequences.vocab import SequenceVocab

PRODUCTS = ["A", "B", "C", "D"]
AS_OF = "2023-03-25"
TINY = EncoderConfig(d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0, max_events=16)


@pytest.fixture(scope="module")
def cyclic(cyclic_prepared) -> tuple[custseq.PrepareResult, pd.DataFrame]:
    """The planted A→B→C→D cycle of conftest.py."""
    return cyclic_prepared


@pytest.fixture(scope="module")
def trained(cyclic) -> PretrainModel:
    """The next-event objective alone, trained on the scoring window's sequences (seconds)."""
    result, _ = cyclic
    files = tuple(shard_files(result.window(result.plan.scoring).sequences))
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
    return result.window(result.plan.scoring)


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


def test_proposals_for_some_customers_are_theirs_of_the_whole_run(cyclic, trained):
    result, _ = cyclic
    folder = _scoring_folder(result)
    whole = propose_next(trained, result.vocab, folder, "product", k=3, batch_size=8)
    some = set(whole.customer_ids[::3])
    chosen = propose_next(trained, result.vocab, folder, "product", k=3, batch_size=8, customers=some)
    assert chosen.customer_ids == sorted(some)
    rows = [whole.customer_ids.index(c) for c in chosen.customer_ids]
    assert chosen.items == [whole.items[i] for i in rows]
    np.testing.assert_allclose(chosen.probabilities, whole.probabilities[rows], atol=1e-6)
    first = propose_next(trained, result.vocab, folder, "product", k=3, batch_size=8, customers=some, max_customers=5)
    assert len(first) == 5 and set(first.customer_ids) <= some


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
        propose_next(model, result.vocab, WindowFolder(tmp_path), "product", k=3)


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


# --- the item mixture: the head mixed with the customer's own history ---------------------------------------


@pytest.fixture(scope="module")
def repeat(tmp_path_factory) -> tuple[custseq.PrepareResult, dict[str, str], PretrainModel]:
    """200 customers who always buy the same product (A for 40%, B 30%, C 20%, D 10% of them), and a next-event
    head that proposes by popularity whatever the history: its weights zeroed, its bias falling with the
    vocabulary id (ids are given by falling frequency)."""
    rng = np.random.default_rng(3)
    rows, own = [], {}
    for c in range(200):
        customer = f"r{c:03d}"
        own[customer] = PRODUCTS[int(np.searchsorted([0.4, 0.7, 0.9], rng.random(), side="right"))]
        day = int(rng.integers(0, 20))
        for _ in range(int(rng.integers(6, 13))):
            rows.append({"customer_id": customer, "ts": dt.datetime(2023, 1, 1) + dt.timedelta(days=day),
                         "amount": 10.0, "product": own[customer]})  # fmt: skip
            day += int(rng.integers(3, 9))
    result = custseq.prepare(
        pd.DataFrame(rows), out=tmp_path_factory.mktemp("repeat"), as_of=AS_OF, horizon="30d",
        config=RunConfig(sequence=SequenceConfig(min_count=1)),
    )  # fmt: skip
    torch.manual_seed(0)
    model = PretrainModel(TINY, PretrainConfig(objectives=("next",)), result.vocab)
    head = model.next_head.categorical["product"]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(-torch.arange(head.out_features, dtype=torch.float32))
    return result, own, model


def _windows(result: custseq.PrepareResult):
    return result.window(result.plan.training[0]), result.window(result.plan.scoring)


def test_recency_weights_count_events_from_the_latest_and_skip_reserved_ids():
    # ids 3 3 3 4 (oldest first), then a row with the unknown id 2 after a 3, then a row with nothing known
    ids = torch.tensor([[3, 3, 3, 4], [3, 2, 0, 0], [2, 2, 0, 0]])
    lengths = torch.tensor([4, 2, 2])
    q, known = customer_item_distribution(ids, lengths, half_life=1.0)
    # ages 3, 2, 1, 0: weights 1/8 + 1/4 + 1/2 = 7/8 on id 3, 1 on id 4
    np.testing.assert_allclose(q[0].numpy(), [0.875 / 1.875, 1 / 1.875])
    np.testing.assert_allclose(q[1].numpy(), [1.0, 0.0])  # the unknown id ages the 3 but gets no mass
    assert q[2].sum() == 0 and known.tolist() == [True, True, False]
    frequency, _ = customer_item_distribution(ids, lengths, half_life=1e9)
    np.testing.assert_allclose(frequency[0].numpy(), [0.75, 0.25])


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_ranking_the_largest_candidates_equals_sorting_whole_rows(weight):
    # few distinct values: many ties in the head and in the mixture, at and beyond the k-th place
    gen = torch.Generator().manual_seed(7)
    p_head = torch.randint(1, 6, (64, 300), generator=gen).double()
    p_head /= p_head.sum(dim=1, keepdim=True)
    q = torch.randint(0, 3, (64, 300), generator=gen).double() * (torch.rand(64, 300, generator=gen) < 0.02)
    q /= q.sum(dim=1, keepdim=True).clamp(min=1e-300)
    mixed = (1 - weight) * p_head + weight * q
    for k in (1, 3, 10, 299, 300):
        fast_p, fast_i = rank_mixed(mixed, p_head, k)
        full_p, full_i = rank_fully(mixed, p_head, k)
        assert torch.equal(fast_i, full_i) and torch.equal(fast_p, full_p)
    distinct = torch.rand(8, 5000, generator=gen).double()  # no ties: the candidates alone decide
    assert torch.equal(rank_mixed(distinct, distinct, 3)[1], torch.topk(distinct, 3, dim=1).indices)


def test_weight_zero_is_the_head_and_weight_one_copies_the_customer(cyclic, trained, repeat):
    result, _ = cyclic
    folder = _scoring_folder(result)
    head = propose_next(trained, result.vocab, folder, "product", k=3)
    zero = propose_next(trained, result.vocab, folder, "product", k=3, mixture=ItemMixture(0.0, 3.0, "", 0))
    assert zero.items == head.items
    np.testing.assert_allclose(zero.probabilities, head.probabilities, rtol=1e-6)  # float32 head, float64 mix
    result, own, model = repeat
    folder = _scoring_folder(result)
    popular = [v for v in result.vocab.values["product"]]  # the head's order: falling frequency
    alone = propose_next(model, result.vocab, folder, "product", k=3)
    assert all(items == popular[:3] for items in alone.items)  # the same popularity list for everyone
    copied = propose_next(model, result.vocab, folder, "product", k=3, mixture=ItemMixture(1.0, 3.0, "", 0))
    for customer, items, p in zip(copied.customer_ids, copied.items, copied.probabilities, strict=True):
        assert items == [own[customer], *[v for v in popular if v != own[customer]][:2]]  # then the head's order
        np.testing.assert_allclose(p, [1.0, 0.0, 0.0], atol=1e-12)


def test_mixed_proposals_are_real_values_descending_and_sum_to_at_most_one(cyclic, trained):
    result, _ = cyclic
    folder = _scoring_folder(result)
    boosted = PretrainModel(TINY, PretrainConfig(objectives=("next",)), result.vocab)
    boosted.load_state_dict(trained.state_dict())
    with torch.no_grad():
        boosted.next_head.categorical["product"].bias[:3] += 100.0  # reserved ids overwhelmingly likely
    half = ItemMixture(0.5, 1.0, "", 0)
    for k in (2, 10):
        proposed = propose_next(boosted, result.vocab, folder, "product", k=k, batch_size=7, mixture=half)
        p = proposed.probabilities
        assert all(set(items) <= set(PRODUCTS) and len(set(items)) == len(items) for items in proposed.items)
        assert (np.diff(p, axis=1) <= 0).all() and (p >= 0).all() and (p.sum(axis=1) <= 1 + 1e-9).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)  # k = 10: all four values, the whole mass


def test_fit_picks_a_high_weight_for_repeat_buyers(repeat):
    result, own, model = repeat
    window, later = _windows(result)
    mixture = fit_item_mixture(model, result.vocab, window, later, "product", horizon_days=30, k=1)
    assert mixture.fitted_on == result.plan.training[0].key and mixture.field == "product" and mixture.k == 1
    assert mixture.customers > 50 and not mixture.note
    assert mixture.weight >= 0.5, mixture  # measured 1.0: from 0.4 on all hit; ties go to more mass on the target
    assert mixture.hit_rate_at_k["customer"] == mixture.hit_rate_at_k["mixture"] == 1.0
    assert mixture.hit_rate_at_k["head"] < 0.6  # the buyers of the most frequent product only; measured 0.358
    proposed = propose_next(model, result.vocab, later, "product", k=1, mixture=mixture)
    assert [items[0] for items in proposed.items] == [own[c] for c in proposed.customer_ids]


def test_fit_keeps_the_head_when_the_next_item_is_not_a_repeat(cyclic, trained):
    result, _ = cyclic
    window, later = _windows(result)
    mixture = fit_item_mixture(trained, result.vocab, window, later, "product", horizon_days=30, k=1)
    assert mixture.weight <= 0.2, mixture  # measured 0.0 (head 1.000, customer alone 0.000 at half-life 1)
    assert mixture.hit_rate_at_k["mixture"] > 0.9 and mixture.hit_rate_at_k["customer"] < 0.6, mixture


def test_too_few_fitting_customers_leave_the_head_alone(repeat, monkeypatch):
    result, _, model = repeat
    monkeypatch.setattr(next_event, "MIN_FIT_CUSTOMERS", 10_000)
    mixture = fit_item_mixture(model, result.vocab, *_windows(result), "product", horizon_days=30, k=1)
    assert mixture.weight == 0.0 and mixture.customers > 0
    assert "at least 10000 needed" in mixture.note


def _write_sequences(folder: WindowFolder, cutoff: dt.datetime, customers: dict[str, list[tuple[float, int]]]) -> None:
    """A hand-built window: per customer, (days before the cutoff, product id) tokens, oldest first."""
    (folder.sequences / "shard=0").mkdir(parents=True)
    table = pa.table({
        "customer_id": list(customers),
        "cutoff": pa.array([cutoff] * len(customers), pa.timestamp("us")),
        "length": pa.array([len(t) for t in customers.values()], pa.int32()),
        "product": pa.array([[i for _, i in t] for t in customers.values()], pa.list_(pa.int32())),
        "log_t_to_cutoff": pa.array([[np.log1p(d) for d, _ in t] for t in customers.values()], pa.list_(pa.float32())),
    })  # fmt: skip
    pq.write_table(table, folder.sequences / "shard=0" / "data.parquet")


def test_targets_are_the_first_real_item_after_the_earlier_cutoff(tmp_path):
    earlier, later = WindowFolder(tmp_path / "earlier"), WindowFolder(tmp_path / "later")
    _write_sequences(earlier, dt.datetime(2023, 2, 1), {"a": [(9.0, 3)]})
    _write_sequences(later, dt.datetime(2023, 3, 3), {  # 30 days later
        "a": [(40.0, 3), (31.0, 4), (29.5, 2), (25.0, 0), (15.0, 7), (5.0, 5)],  # unknown and padding skipped
        "b": [(35.0, 3), (30.0, 6)],  # exactly at the earlier cutoff: after it
        "c": [(45.0, 3), (30.5, 4)],  # nothing after the earlier cutoff
        "d": [(20.0, 3), (10.0, 4)],  # no token before it (cut to max_events, or new): left out
    })  # fmt: skip
    targets = next_item_targets(earlier, later, "product", horizon_days=30)
    assert targets.customer_ids == ["a", "b"] and targets.value_ids.tolist() == [7, 6]
    assert targets.without_earlier_tokens == 1
    assert (targets.earlier_cutoff, targets.later_cutoff) == (dt.datetime(2023, 2, 1), dt.datetime(2023, 3, 3))
    short = next_item_targets(earlier, later, "product", horizon_days=10)  # [Feb 1, Feb 11): a has no real id
    assert short.customer_ids == ["b"] and short.value_ids.tolist() == [6]
    with pytest.raises(ConfigError, match=r"later_window's cutoff 2023-02-01 00:00:00 must come after"):
        next_item_targets(later, earlier, "product", horizon_days=30)
    with pytest.raises(ConfigError, match=r"mixture weight must be in \[0, 1\], got 1.5"):
        ItemMixture(1.5, 3.0, "", 0)
