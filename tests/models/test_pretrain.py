"""The encoder and its self-supervised objectives learn a planted sequential pattern."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import custseq
from custseq.config import EncoderConfig, PretrainConfig
from custseq.models.pretrain import PretrainModel, embed
from custseq.sequences.batch import SequenceStream, collate, shard_files
from custseq.sequences.masking import sample_mask, split_last

PRODUCTS = ["A", "B", "C", "D"]
EPOCHS = 40
TINY = EncoderConfig(d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0, max_events=16)


@pytest.fixture(scope="module")
def cyclic(cyclic_prepared) -> tuple[custseq.PrepareResult, SequenceStream]:
    """The planted cycle of conftest.py, as a stream of scoring-window sequences."""
    result, _ = cyclic_prepared
    files = tuple(shard_files(result.window(result.plan.scoring).sequences))
    return result, SequenceStream(files, result.vocab, TINY.max_events, batch_size=64, seed=0)


def _train(model: PretrainModel, stream: SequenceStream, epochs: int) -> list[float]:
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for epoch in range(epochs):
        total = []
        for batch in stream.batches(epoch):
            out = model(batch)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            total.append(out.loss.item())
        losses.append(float(np.mean(total)))
    return losses


def _accuracy(model: PretrainModel, stream: SequenceStream, objective: str) -> tuple[float, float]:
    """Accuracy of the product prediction and of always predicting the most frequent product."""
    model.eval()
    hits = majority = n = 0
    torch.manual_seed(1)
    with torch.no_grad():
        for batch in stream.batches(0):
            inputs, targets, has_next = split_last(batch)
            if objective == "next":
                emb = model.encoder(inputs).embedding[has_next]
                logits = model.next_head(emb).logits["product"]
                truth = targets.categorical["product"][has_next]
            else:
                masked = sample_mask(batch.mask, 0.15)
                hidden = model.encoder(batch, masked).hidden[masked]
                logits = model.masked_head(hidden).logits["product"]
                truth = batch.categorical["product"][masked]
            hits += int((logits.argmax(-1) == truth).sum())
            majority += int((truth == torch.mode(truth).values).sum())
            n += len(truth)
    return hits / n, majority / n


def test_masked_and_next_heads_recover_the_planted_cycle(cyclic):
    result, stream = cyclic
    model = PretrainModel(TINY, PretrainConfig(), result.vocab)
    losses = _train(model, stream, epochs=EPOCHS)
    assert losses[-1] < 0.5 * losses[0]
    masked_acc, masked_majority = _accuracy(model, stream, "masked")
    next_acc, next_majority = _accuracy(model, stream, "next")
    assert masked_majority < 0.4 and next_majority < 0.4  # four products, about evenly used
    assert masked_acc > 0.9, masked_acc  # measured 0.976 (majority 0.304) with this seed
    assert next_acc > 0.9, next_acc  # measured 1.000 (majority 0.347)


@pytest.mark.parametrize(
    "objectives", [("masked",), ("next",), ("contrastive",), ("masked", "next", "contrastive")], ids=str
)
@pytest.mark.parametrize("style", ["token", "zero"])
def test_every_objective_is_finite_and_reaches_every_encoder_parameter(cyclic, objectives, style):
    result, stream = cyclic
    torch.manual_seed(0)
    model = PretrainModel(TINY, PretrainConfig(objectives=objectives, mask_style=style, mask_rate=0.3), result.vocab)
    out = model(next(stream.batches(0)))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    no_grad = [
        n for n, p in model.encoder.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or (p.grad == 0).all()
    ]  # fmt: skip
    # the mask vector is only used by token-style masking; the [CLS] token always matters (pooling mean+cls)
    expected_unused = {"embed.mask_vector"} if style == "zero" or "masked" not in objectives else set()
    assert set(no_grad) <= expected_unused, no_grad


def test_masking_never_selects_padding_and_masks_every_sequence():
    lengths = torch.tensor([1, 3, 16, 0, 7])
    mask = torch.arange(16).unsqueeze(0) < lengths.unsqueeze(1)
    for seed in range(20):
        chosen = sample_mask(mask, 0.15, torch.Generator().manual_seed(seed))
        assert not (chosen & ~mask).any()
        assert chosen[lengths > 0].any(dim=1).all()
        assert not chosen[3].any()
    everywhere = torch.ones(4000, 16, dtype=torch.bool)
    rate = sample_mask(everywhere, 0.15, torch.Generator().manual_seed(0)).float().mean()
    assert abs(rate - 0.15) < 0.01


def test_next_event_inputs_do_not_reveal_the_held_out_time(cyclic):
    _, stream = cyclic
    batch = next(stream.batches(0))
    inputs, targets, has_next = split_last(batch)
    last = inputs.lengths - 1
    rows = torch.arange(batch.size)
    # re-anchored at the last input token: its time to "cutoff" is 0, whatever the held-out gap was
    assert torch.allclose(inputs.log_t_to_cutoff[rows, last][has_next], torch.zeros(int(has_next.sum())))
    assert torch.equal(targets.log_dt_prev, batch.log_dt_prev[rows, batch.lengths - 1])
    assert not inputs.mask[rows[has_next], batch.lengths[has_next] - 1].any()


def test_embeddings_cover_every_customer_once_and_are_deterministic(cyclic):
    result, stream = cyclic
    torch.manual_seed(0)
    model = PretrainModel(TINY, PretrainConfig(), result.vocab)
    ordered = SequenceStream(stream.files, result.vocab, TINY.max_events, batch_size=50, shuffle=False)
    first, second = embed(model.encoder, ordered), embed(model.encoder, ordered)
    assert first.num_rows == 300 == len(set(first.column("customer_id").to_pylist()))
    assert first.column_names == ["customer_id", *(f"e{j}" for j in range(TINY.d_model))]
    assert first.equals(second)


def test_stream_batches_are_length_bucketed_and_split_evenly_across_ranks(cyclic):
    _, stream = cyclic
    batches = list(stream.batches(epoch=3))
    assert sum(b.size for b in batches) == 300 and len(batches) == stream.n_batches()
    spread = [int(b.lengths.max() - b.lengths.min()) for b in batches]
    assert max(spread) <= 3  # lengths 6..12, 64 per batch: each batch holds neighbouring lengths
    per_rank = [[b.customer_ids for b in stream.batches(3, rank, 2)] for rank in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == stream.n_batches(2)
    seen = [{c for ids in batches_of_rank for c in ids} for batches_of_rank in per_rank]
    assert not seen[0] & seen[1]
    assert [b.customer_ids for b in stream.batches(3)] == [b.customer_ids for b in batches]  # deterministic


def test_collate_keeps_the_last_events_in_order(cyclic):
    result, _ = cyclic
    table = result.sequences(result.plan.scoring).slice(0, 5)
    batch = collate(table, result.vocab, max_events=4)
    for i, row in enumerate(table.to_pylist()):
        kept = row["product"][-4:]
        assert batch.categorical["product"][i, : len(kept)].tolist() == kept
        assert int(batch.lengths[i]) == len(kept)
        assert not batch.mask[i, len(kept) :].any()
