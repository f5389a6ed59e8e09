"""Fine-tuning through Spark's TorchDistributor (local mode, two gloo processes) runs the `predict --nproc` entry
point and matches a one-process fine-tuning within the tolerance the `--nproc` test states."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.e2e.test_predict import AS_OF, _shop_rows
from tests.e2e.test_predict_distributed import AUC_TOLERANCE, MIN_VALUE_CORRELATION, MODEL, PROBABILITY_TOLERANCE

import custseq
from custseq.config import RunConfig
from custseq.errors import TrainingError
from custseq.io.prepared import PreparedWindows
from custseq.models.combine import fit_final_predictor
from custseq.models.finetune import finetune_prepared, score_window
from custseq.pipelines.finetune_worker import TRAINED_FILE, finetune_distributed


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedWindows:
    out = tmp_path_factory.mktemp("prepared") / "shop"
    return custseq.prepare(_shop_rows(), out=out, as_of=AS_OF, horizon="60d", config=RunConfig(model=MODEL)).layout


@pytest.mark.slow
def test_distributor_training_is_the_nproc_training(spark_session, prepared, tmp_path):
    """TorchDistributor and torchrun (`predict --nproc 2`) run one entry point: the same weights, bit for bit."""
    from custseq.spark.distributor import finetune_with_distributor

    spark = finetune_with_distributor(prepared.root, MODEL, tmp_path / "spark", num_processes=2)
    torchrun = finetune_distributed(prepared, MODEL, tmp_path / "torchrun", nproc=2, resume=False, encoder_dir=None)
    # rank 0 wrote the weights this process read back, and the log of the two ranks' epochs
    assert (tmp_path / "spark" / TRAINED_FILE).is_file()
    log = [json.loads(line) for line in (tmp_path / "spark" / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    for name, weights in spark.model.network.state_dict().items():
        assert torch.equal(weights, torchrun.model.network.state_dict()[name]), name


@pytest.mark.slow
def test_two_distributor_processes_match_one_process(spark_session, prepared, tmp_path):
    """Within the `--nproc` test's tolerances, on the predictions as predict makes them (with the boosted
    predictor, which the tolerances were stated for)."""
    from custseq.spark.distributor import finetune_with_distributor

    one = finetune_prepared(prepared, MODEL, progress=False)
    two = finetune_with_distributor(prepared, MODEL, tmp_path / "work", num_processes=2)
    for fit in (one, two):
        fit.model.predictor, _ = fit_final_predictor(prepared, fit.model, MODEL)
    a, b = score_window(one.model, prepared.scoring), score_window(two.model, prepared.scoring)
    assert a.customer_ids == b.customer_ids
    gap = float(np.abs(a.columns["churn_probability"] - b.columns["churn_probability"]).max())
    assert 0 < gap < PROBABILITY_TOLERANCE  # > 0: the two processes did train on their own
    assert np.corrcoef(a.columns["clv_expected"], b.columns["clv_expected"])[0, 1] > MIN_VALUE_CORRELATION
    assert abs(one.metrics["churn_auc"] - two.metrics["churn_auc"]) < AUC_TOLERANCE


@pytest.mark.slow
def test_a_failed_process_is_a_training_error(spark_session, prepared, tmp_path):
    from custseq.spark.distributor import distributor_launcher

    job = tmp_path / "job.json"
    job.write_text("{}")  # no step, no paths: every process fails reading it
    with pytest.raises(TrainingError, match="training through TorchDistributor failed"):
        distributor_launcher(local_mode=True, use_gpu=False)(job, 2)
