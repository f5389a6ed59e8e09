"""`custseq predict --nproc 2`: pre-training and fine-tuning on two torchrun processes (gloo), on the tiny shop."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from tests.e2e.test_predict import AS_OF, TINY_TOML, _shop_rows
from typer.testing import CliRunner

from custseq.api import predict_run
from custseq.cli import app
from custseq.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig
from custseq.errors import ConfigError
from custseq.models.finetune import load_churn_value
from custseq.pipelines.finetune_worker import TRAINED_FILE

# Batches of 16 give each window's training customers several batches, so that two ranks share them.
MODEL = ModelConfig(
    encoder=EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, max_events=8),
    finetune_training=TrainConfig(epochs=2, batch_size=16),
    pretraining=False,
)
# Not bit-exact, by construction: rank r trains on every 2nd batch and DDP averages the two ranks' gradients,
# so an epoch has half the optimizer steps, each on twice the customers; dropout draws differ per rank (seed +
# rank); and gloo's all-reduce sums in its own order. On this shop the two runs' churn probabilities differ by
# at most 0.04 and their expected values correlate at 0.998; the bounds below leave room for other platforms.
PROBABILITY_TOLERANCE = 0.1
MIN_VALUE_CORRELATION = 0.98
AUC_TOLERANCE = 0.1


@pytest.mark.slow
def test_two_process_fine_tuning_matches_one_process(tmp_path):
    rows, cfg = _shop_rows(), RunConfig(model=MODEL)
    one = predict_run(rows, horizon="60d", as_of=AS_OF, config=cfg)
    two = predict_run(rows, horizon="60d", as_of=AS_OF, config=cfg, nproc=2, work_dir=tmp_path / "work")
    # rank 0 wrote the weights the parent read back, and the training log of the two ranks' epochs
    trained = tmp_path / "work" / "finetune"
    assert (trained / TRAINED_FILE).is_file()
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    a, b = one.predictions.set_index("customer_id"), two.predictions.set_index("customer_id")
    assert a.index.equals(b.index)
    gap = float((a["churn_probability"] - b["churn_probability"]).abs().max())
    assert 0 < gap < PROBABILITY_TOLERANCE  # > 0: the two-process run did train on its own
    assert np.corrcoef(a["clv_expected"], b["clv_expected"])[0, 1] > MIN_VALUE_CORRELATION
    v1, v2 = one.metrics.validation, two.metrics.validation
    assert v1 is not None and v2 is not None
    assert abs(v1.churn_auc - v2.churn_auc) < AUC_TOLERANCE
    assert dataclasses.asdict(v1).keys() == dataclasses.asdict(v2).keys()


def test_nproc_below_one_is_refused():
    with pytest.raises(ConfigError, match="nproc must be at least 1"):
        predict_run(_shop_rows(), horizon="60d", as_of=AS_OF, config=RunConfig(model=MODEL), nproc=0)


@pytest.mark.slow
def test_cli_predict_with_nproc_pretrains_and_fine_tunes_on_two_processes(tmp_path):
    shop, tiny, out = tmp_path / "shop.csv", tmp_path / "tiny.toml", tmp_path / "out"
    _shop_rows().to_csv(shop, index=False)
    tiny.write_text(TINY_TOML.replace("batch_size = 64", "batch_size = 16"))
    args = ["predict", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(tiny), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--nproc", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    model, _, manifest = load_churn_value(out / "model")
    assert manifest.extra["pretrained"] is True  # pre-training ran (on two processes) before the fine-tuning
    assert (out / "model" / "next-event").is_dir()
    assert len(manifest.extra["history"]) == 2
    assert (out / "predictions.parquet").is_file()
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.network.parameters())


def test_rank_zeros_weights_round_trip_and_a_damaged_file_is_refused(tmp_path):
    import torch

    from custseq.errors import ArtifactError
    from custseq.models.finetune import load_trained, save_trained
    from custseq.models.train import TrainResult

    network = torch.nn.Linear(3, 2)
    result = TrainResult(best_epoch=1, best_val_loss=0.5, epochs_run=2, stopped_early=False,
                         history=[{"epoch": 0, "val_loss": None}, {"epoch": 1, "val_loss": 0.5}])  # fmt: skip
    path = tmp_path / TRAINED_FILE
    save_trained(network, result, path)
    other = torch.nn.Linear(3, 2)
    assert load_trained(other, path) == result
    assert torch.equal(other.weight, network.weight) and torch.equal(other.bias, network.bias)
    path.write_bytes(b"not weights")
    with pytest.raises(ArtifactError, match="left no usable weights"):
        load_trained(other, path)
