"""The customer split every evaluation method shares: disjoint parts, stable, label fractions nested."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import custseq
from custseq.baselines.base import WindowTables
from custseq.config import FinetuneConfig
from custseq.errors import ConfigError, WindowError
from custseq.evaluation.methods import resolve
from custseq.evaluation.protocol import Split, make_split, protocol_finetune
from custseq.sequences.batch import split_mask

IDS = [f"c{i}" for i in range(20_000)]


def test_the_three_parts_are_disjoint_and_cover_every_customer():
    parts = [split_mask(IDS, p, 0.15, 0.15) for p in ("train", "validation", "test")]
    assert np.array_equal(sum(p.astype(int) for p in parts), np.ones(len(IDS), dtype=int))
    shares = [p.mean() for p in parts]
    assert shares == pytest.approx([0.70, 0.15, 0.15], abs=0.01)


def test_without_a_test_part_validation_is_the_old_holdout():
    assert not split_mask(IDS, "test", 0.2).any()
    assert split_mask(IDS, "validation", 0.2).mean() == pytest.approx(0.2, abs=0.01)


def test_label_fractions_are_nested_subsets_of_the_train_customers():
    train = split_mask(IDS, "train", 0.2)
    forty, ten = split_mask(IDS, "train", 0.2, label_fraction=0.4), split_mask(IDS, "train", 0.2, label_fraction=0.1)
    assert not (forty & ~train).any() and not (ten & ~forty).any()
    assert forty.sum() / train.sum() == pytest.approx(0.4, abs=0.02)
    assert not (forty & split_mask(IDS, "validation", 0.2)).any()


def test_the_split_is_stable_across_windows_and_orders():
    reversed_ids = IDS[::-1]
    assert np.array_equal(split_mask(reversed_ids, "test", 0.15, 0.15), split_mask(IDS, "test", 0.15, 0.15)[::-1])


def _window(ids: list[str]) -> WindowTables:
    features = pa.table({"customer_id": ids, "frequency": np.arange(len(ids), dtype=float)})
    labels = pa.table({"customer_id": ids, "churned": np.zeros(len(ids), bool), "value": np.ones(len(ids))})
    return WindowTables(features, labels, 30)


def test_customer_split_keeps_test_customers_out_of_training_and_validation(tmp_path):
    ft = protocol_finetune("customer-split", FinetuneConfig())
    latest, older = _window(IDS[:5000]), _window(IDS[2000:8000])
    split = Split("customer-split", (latest, older), latest, tmp_path, "test", ft)
    test = set(split.test.customer_ids)
    seen = {c for w in split.train() for c in w.customer_ids} | set(split.validation.customer_ids)
    assert test and not test & seen
    assert len(test) == pytest.approx(0.15 * 5000, rel=0.15)
    assert split.train(0.4)[0].features.num_rows < split.train()[0].features.num_rows


def test_a_temporal_test_window_without_labels_is_refused_with_the_fix(tmp_path):
    # evaluate prepares as of one horizon before --as-of; with --as-of after the last row, that window's labels
    # would run past the data (prepare accepts such an as-of for scoring, but a back-test needs the labels).
    tx = pd.DataFrame({"customer_id": ["a", "a", "b"], "amount": [10.0, 20.0, 5.0],
                       "ts": pd.to_datetime(["2023-01-05", "2023-06-01", "2023-06-30"])})  # fmt: skip
    prepared = custseq.prepare(tx, out=tmp_path, as_of="2023-07-10", horizon="30d")
    fix = r"30-day labels would run past the data's last row; choose an --as-of no later than the last day"
    with pytest.raises(WindowError, match=rf"tests as of 2023-07-10, .*{fix}"):
        make_split(prepared.layout, "temporal", FinetuneConfig())


def test_methods_resolve_ablations_fractions_and_transfer():
    names = [m.name for m in resolve(["custseq", "logistic"], ["no-next"], [0.4, 1.0], transfer=True)]
    assert names[:5] == ["custseq", "logistic", "custseq[no-next]", "custseq[transfer]", "custseq[no-pretraining]"]
    assert names[5:] == [n + "@40%" for n in names[:5]]
    with pytest.raises(ConfigError, match="unknown method"):
        resolve(["xgb-turbo"])
    with pytest.raises(ConfigError, match="label fractions"):
        resolve(["custseq"], label_fractions=[0])


def test_each_ablation_and_network_changes_what_its_name_says():
    from custseq.config import ModelConfig
    from custseq.evaluation.methods import ABLATIONS, NETWORKS

    m = ModelConfig()
    assert not ABLATIONS["no-pretraining"](m).pretraining
    assert ABLATIONS["fixed-weights"](m).finetune.weighting == "fixed"
    assert not ABLATIONS["no-tabular"](m).finetune.use_tabular
    assert ABLATIONS["mask-30"](m).pretrain.mask_rate == 0.3
    assert ABLATIONS["no-next"](m).pretrain.objectives == ("masked",)
    assert ABLATIONS["contrastive"](m).pretrain.objectives == ("masked", "next", "contrastive")
    hard, lstm = NETWORKS["hard-sharing"](m), NETWORKS["lstm"](m)
    assert not hard.pretraining and hard.finetune.weighting == "fixed" and hard.encoder.kind == "transformer"
    assert lstm.encoder.kind == "lstm" and not lstm.finetune.use_tabular and not lstm.pretraining
    assert NETWORKS["custseq"](m) == m
