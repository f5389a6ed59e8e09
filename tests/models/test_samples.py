"""Labelled samples from several windows: every batch lines up sequences, features and labels."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import custseq
from custseq.config import EncoderConfig, FinetuneConfig, ModelConfig, PredictorConfig, TrainConfig
from custseq.errors import ConfigError
from custseq.features.matrix import fit_tabular, transform_tabular
from custseq.models import samples
from custseq.models.combine import fit_final_predictor, latest_windows, predictor_windows
from custseq.models.encoder import SequenceEncoder
from custseq.models.finetune import epoch_validation
from custseq.models.multitask import MultiTaskModel
from custseq.models.samples import SampleStream, WindowLookups, default_lookup_bytes
from custseq.models.train import train
from custseq.sequences.batch import sample_mask, shard_files, split_mask
from custseq.sequences.build import read_sequences

TINY = EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0, max_events=8)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    rng = np.random.default_rng(5)
    rows = []
    for c in range(150):
        day, end = int(rng.integers(0, 40)), int(rng.integers(80, 400))
        while day < end:
            ts = dt.date(2023, 1, 1) + dt.timedelta(days=day)
            amount, product = round(float(rng.gamma(2, 10)), 2), f"p{int(rng.integers(4))}"
            rows.append({"customer_id": f"s{c:03d}", "ts": ts, "amount": amount, "product": product})
            day += int(rng.integers(5, 45))
    return custseq.prepare(
        pd.DataFrame(rows), out=tmp_path_factory.mktemp("samples"), as_of="2024-01-31", horizon="60d"
    )


def _stream(result, **kw) -> SampleStream:
    windows = tuple(result.window(w) for w in result.plan.training)
    spec = fit_tabular([pq.read_table(w.features) for w in windows])
    return SampleStream(windows, result.vocab, spec, TINY.max_events, batch_size=32, **kw)


def test_batches_line_up_sequences_features_and_labels(prepared):
    stream = _stream(prepared, shuffle=True, seed=3)
    total = 0
    for window in stream.windows:  # one window at a time, so each batch's window is known
        single = SampleStream((window,), stream.vocab, stream.tabular, TINY.max_events, batch_size=32, seed=3)
        features = pq.read_table(window.features)
        labels = pq.read_table(window.labels).to_pandas().set_index("customer_id")
        expected = transform_tabular(stream.tabular, features)
        for batch in single.batches(epoch=1):
            ids = batch.events.customer_ids
            rows = [expected.customer_ids.index(c) for c in ids]
            assert torch.equal(batch.tabular, torch.from_numpy(expected.values[rows]))
            assert batch.churned.tolist() == labels.loc[ids, "churned"].astype(float).tolist()
            assert np.allclose(batch.value.numpy(), labels.loc[ids, "value"].to_numpy())
            total += batch.size
    assert total == sum(len(b.events.customer_ids) for b in stream.batches(epoch=1))
    assert total == sum(pq.read_table(w.labels).num_rows for w in stream.windows)
    assert len(list(stream.batches(epoch=1))) == stream.n_batches()


def test_holdout_splits_customers_the_same_way_in_every_window(prepared):
    train_ids = {c for b in _stream(prepared, holdout="train").batches() for c in b.events.customer_ids}
    val_ids = {c for b in _stream(prepared, holdout="validation").batches() for c in b.events.customer_ids}
    assert train_ids and val_ids and not train_ids & val_ids


def test_each_epoch_validates_on_a_stable_subset_of_the_validation_customers_when_they_are_many(prepared):
    every_window = _stream(prepared, holdout="validation", holdout_fraction=0.5, shuffle=False)
    full = dataclasses.replace(every_window, windows=every_window.windows[:1])  # the latest, as fine-tuning's
    everyone = {c for b in full.batches() for c in b.events.customer_ids}
    n = full.customers()
    assert n == sum(len(b.events.customer_ids) for b in full.batches()) and n > 40
    ft = FinetuneConfig(validation_fraction=0.5)
    assert epoch_validation(full, dataclasses.replace(ft, max_epoch_validation_customers=n)) is full
    assert epoch_validation(full, dataclasses.replace(ft, max_epoch_validation_customers=None)) is full
    capped = epoch_validation(full, dataclasses.replace(ft, max_epoch_validation_customers=n // 4))
    subset = [c for b in capped.batches(epoch=3) for c in b.events.customer_ids]
    assert set(subset) < everyone and len(set(subset)) == len(subset)
    assert n // 10 < len(subset) < n // 2  # about a quarter: a band of the id hash
    assert subset == [c for b in capped.batches(epoch=0) for c in b.events.customer_ids]  # the same every epoch
    with pytest.raises(ConfigError, match="max_epoch_validation_customers"):
        FinetuneConfig(max_epoch_validation_customers=0)


def test_the_training_loop_fits_the_multitask_model_on_samples(prepared):
    train_stream = _stream(prepared, holdout="train")
    val_stream = _stream(prepared, holdout="validation", shuffle=False)
    torch.manual_seed(0)
    encoder = SequenceEncoder(TINY, {"product": prepared.vocab.size("product")}, len(prepared.vocab.layout.numeric()))
    model = MultiTaskModel(encoder, train_stream.tabular.width, {}, FinetuneConfig())
    result = train(
        model,
        lambda epoch, rank, world: train_stream.batches(epoch, rank, world),
        lambda rank, world: val_stream.batches(0, rank, world),
        TrainConfig(epochs=6, batch_size=32, learning_rate=3e-3, seed=0),
        steps_per_epoch=train_stream.n_batches(),
        progress=False,
    )
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert np.isfinite(result.best_val_loss)


def test_sample_weights_by_hand():
    import pyarrow as pa

    from custseq.models.samples import SampleWeights, fit_sample_weights

    labels = [pa.table({"churned": [1, 0, 0, 0], "value": [0.0, np.e - 1, 0.0, np.e**3 - 1]})]
    w = fit_sample_weights(labels, FinetuneConfig(imbalance="class_weight", value_reweight=True))
    # churn rate 1/4: churners weigh 0.5 / 0.25 = 2, others 0.5 / 0.75 = 2/3; mean log1p(positive value) = 2
    assert w.churned == pytest.approx(2.0) and w.retained == pytest.approx(2 / 3)
    assert w.value_scale == pytest.approx(2.0) and not w.oversample
    got = w.of(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.0, np.e - 1, 0.0, np.e**3 - 1]))
    assert torch.allclose(got, torch.tensor([2.0, 2 / 3 * 1.5, 2 / 3, 2 / 3 * 2.5]))
    assert not fit_sample_weights(labels, FinetuneConfig()).active
    assert SampleWeights().of(torch.ones(2), torch.zeros(2)).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("imbalance", ["class_weight", "oversample"])
def test_weighted_streams_balance_the_classes(prepared, imbalance):
    from custseq.models.samples import fit_sample_weights

    labels = [pq.read_table(prepared.window(w).labels) for w in prepared.plan.training]
    weights = fit_sample_weights(labels, FinetuneConfig(imbalance=imbalance))
    stream = _stream(prepared, seed=1, weights=weights)
    total, weighted_churn, weight_sum = 0, 0.0, 0.0
    for batch in stream.batches(epoch=0):
        w = batch.weight if batch.weight is not None else torch.ones(batch.size)
        weighted_churn += float((w * batch.churned).sum())
        weight_sum += float(w.sum())
        total += batch.size
    raw_rate = float(np.mean(np.concatenate([t.column("churned").to_numpy() for t in labels])))
    balanced = weighted_churn / weight_sum
    assert abs(balanced - 0.5) < abs(raw_rate - 0.5)  # closer to balanced than the raw labels
    assert total == sum(t.num_rows for t in labels)  # resampling keeps each batch's size


def test_a_sample_budget_caps_each_epoch_shares_it_among_windows_and_rotates_customers(prepared):
    full = _stream(prepared, shuffle=True, seed=3)
    budget = len(full.windows) + 2
    assert len(full.windows) > 1 and full.n_batches() > budget
    capped = _stream(prepared, shuffle=True, seed=3, max_batches=budget)
    epochs = [list(capped.batches(epoch=e)) for e in range(3)]
    assert capped.n_batches() <= budget and all(len(batches) == capped.n_batches() for batches in epochs)
    seen = [{c for b in batches for c in b.events.customer_ids} for batches in epochs]
    assert seen[0] != seen[1] and len(seen[0] | seen[1] | seen[2]) > len(seen[0])  # another share each epoch
    assert all(s.n_batches() >= 1 for s in capped._streams)  # every window keeps a share
    assert _stream(prepared, max_batches=10_000).n_batches() == full.n_batches()  # a budget above the data: all


def test_the_predictor_keeps_the_latest_windows_within_its_customer_budget(prepared):
    folders = [prepared.window(w) for w in prepared.plan.training]  # latest first
    sizes = [pq.ParquetFile(f.features).metadata.num_rows for f in folders]
    assert len(folders) > 2 and latest_windows(folders, None) == folders
    assert latest_windows(folders, 1) == folders[:1]  # always the latest window
    assert latest_windows(folders, sizes[0] + sizes[1]) == folders[:2]
    assert latest_windows(folders, sizes[0] + sizes[1] - 1) == folders[:1]


def test_the_sample_is_stable_near_its_fraction_nested_and_independent_of_the_split():
    ids = [f"c{i}" for i in range(20_000)]
    kept = sample_mask(ids, 0.25)
    assert (kept == sample_mask(list(reversed(ids)), 0.25)[::-1]).all()  # by id, not by position
    assert 0.24 < kept.mean() < 0.26
    assert (sample_mask(ids, 0.1) <= kept).all()  # a smaller sample lies within a larger one
    validation = split_mask(ids, "validation", 0.2)
    assert 0.18 < validation[kept].mean() < 0.22  # every part of the split is sampled alike
    assert sample_mask(ids, 1.0).all() and not sample_mask(ids, 0.0).any()


def test_a_latest_window_above_the_budget_is_sampled_by_customer_in_every_file(prepared):
    folders = [prepared.window(w) for w in prepared.plan.training]  # latest first
    latest = folders[0]
    features = pq.read_table(latest.features)
    n = features.num_rows
    with predictor_windows(folders, n) as within:
        assert within == folders[:1]  # within the budget: the window itself
    with predictor_windows(folders, n // 2) as windows:
        [sample] = windows
        kept = sample_mask(features.column("customer_id").to_pylist(), (n // 2) / n)
        assert 0 < kept.sum() < n and sample.key == latest.key
        assert pq.read_table(sample.features).equals(features.filter(kept))  # its rows, in their order
        assert pq.read_table(sample.labels).equals(pq.read_table(latest.labels).filter(kept))
        ids = set(features.column("customer_id").filter(kept).to_pylist())
        sequences = read_sequences(latest.sequences)
        in_sample = np.array([c in ids for c in sequences.column("customer_id").to_pylist()])
        assert read_sequences(sample.sequences).equals(sequences.filter(in_sample))
        shards = [f.relative_to(sample.sequences) for f in shard_files(sample.sequences)]
        assert shards == [f.relative_to(latest.sequences) for f in shard_files(latest.sequences)]
        written = sample.folder
    assert not written.exists()  # the temporary copy goes with the context


def test_the_predictor_learns_from_the_sample_when_the_latest_window_is_above_the_budget(prepared):
    latest = pq.read_table(prepared.window(prepared.plan.training[0]).features).num_rows
    fast = PredictorConfig(candidates=("boosted-features",), max_rounds=20, early_stopping_rounds=5, n_jobs=1)

    def choice(budget: int):
        cfg = ModelConfig(predictor=dataclasses.replace(fast, max_training_customers=budget))
        return fit_final_predictor(prepared.layout, None, cfg)[1]

    whole, sampled = choice(latest), choice(latest * 2 // 3)
    assert 0 < sampled.validation_customers < whole.validation_customers  # the sample's validation customers only
    assert sampled.sampled_from == latest and whole.sampled_from is None  # what the report says


def _recorded_reads(monkeypatch) -> list[Path]:
    """The paths samples.py reads Parquet tables from, from now on."""
    reads: list[Path] = []
    real_read = samples.pq.read_table
    monkeypatch.setattr(samples.pq, "read_table", lambda path, **kw: reads.append(Path(path)) or real_read(path, **kw))
    return reads


def test_streams_sharing_lookups_read_each_window_once_and_give_the_same_batches(prepared, monkeypatch):
    plain = _stream(prepared, shuffle=True, seed=3, holdout="train")
    lookups = WindowLookups(plain.tabular)
    cached = dataclasses.replace(plain, lookups=lookups)
    validation = dataclasses.replace(plain, holdout="validation", shuffle=False, lookups=lookups)
    reads = _recorded_reads(monkeypatch)
    for epoch in range(3):
        for a, b in zip(plain.batches(epoch), cached.batches(epoch), strict=True):
            assert a.events.customer_ids == b.events.customer_ids
            assert torch.equal(a.tabular, b.tabular) and torch.equal(a.churned, b.churned)
            assert torch.equal(a.value, b.value)
        assert sum(batch.size for batch in validation.batches()) > 0
    features_read = [p for p in reads if p.name == "features.parquet"]
    windows = len(plain.windows)
    # the plain stream reads every window every epoch; the two sharing the lookups, each window once in all
    assert len(features_read) == 3 * windows + windows
    assert len(set(features_read)) == windows


def test_lookups_refuse_a_stream_with_another_spec(prepared):
    stream = _stream(prepared)
    other = dataclasses.replace(stream.tabular, means=tuple(m + 1 for m in stream.tabular.means))
    with pytest.raises(ValueError, match="another tabular spec"):
        next(dataclasses.replace(stream, lookups=WindowLookups(other)).batches())


def test_lookups_keep_windows_only_within_their_memory_budget(prepared, monkeypatch):
    stream = _stream(prepared, shuffle=False, holdout="train")
    first, second = stream.windows[0], stream.windows[1]
    size = WindowLookups(stream.tabular).of(first).nbytes
    assert size > 0
    lookups = WindowLookups(stream.tabular, max_bytes=size)  # room for the first window only
    reads = _recorded_reads(monkeypatch)
    for _ in range(3):
        lookups.of(first)
        lookups.of(second)
    folders = [p.parent for p in reads]
    assert folders.count(first.folder) == 2  # features and labels, once
    assert folders.count(second.folder) == 3 * 2  # over the budget: read again each time
    nothing_kept = dataclasses.replace(stream, lookups=WindowLookups(stream.tabular, max_bytes=0))
    for a, b in zip(stream.batches(), nothing_kept.batches(), strict=True):
        assert a.events.customer_ids == b.events.customer_ids and torch.equal(a.tabular, b.tabular)


def test_the_lookups_memory_is_shared_by_the_processes_on_the_machine(monkeypatch):
    monkeypatch.setattr(samples, "machine_memory_bytes", lambda: 16 * 2**30)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_lookup_bytes() == 4 * 2**30  # a quarter of the machine
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun --nproc-per-node 4
    assert default_lookup_bytes() == 2**30
