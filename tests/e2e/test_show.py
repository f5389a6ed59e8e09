"""What `predict` and `score` print about the scores: the top-risk table explains a 0 – 0 interval when it shows one."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from custseq.cli.app import console
from custseq.cli.show import NOTHING_LIKELY_NOTE, print_scores
from custseq.config import RunConfig
from custseq.pipelines.outputs import PredictRun


def _run(p90_of_the_riskiest: float) -> PredictRun:
    n = 8
    predictions = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "churn_probability": [0.1 + 0.1 * i for i in range(n)],  # c7 the riskiest
        "clv_expected": [40.0 + i for i in range(n)],  # c6 and c7 in the top 25% by value
        "clv_p10": [0.0] * n,
        "clv_p90": [90.0] * (n - 1) + [p90_of_the_riskiest],
        "segment": ["at_risk"] * n,
    })  # fmt: skip
    metrics = SimpleNamespace(horizon_days=90, review_customers=0, prospects=None)
    return PredictRun(predictions, None, metrics, None, None, RunConfig(), "2024-01-01")  # type: ignore[arg-type]


@pytest.mark.parametrize(("p90", "explained"), [(0.0, True), (12.5, False)])
def test_a_zero_interval_in_the_top_risk_table_is_explained(p90, explained):
    with console.capture() as captured:
        print_scores(_run(p90))
    text = " ".join(captured.get().split())
    shown_interval = "0.00 – 0.00" if explained else "0.00 – 12.50"
    assert "c7" in text and shown_interval in text  # the riskiest valuable customer, with its interval
    assert (" ".join(NOTHING_LIKELY_NOTE.split()) in text) is explained
