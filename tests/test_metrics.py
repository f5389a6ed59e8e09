"""Metric functions against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from custseq.metrics import (
    METRICS,
    best_f1_threshold,
    brier,
    composite,
    f1_at,
    mae,
    metric_label,
    normalized_gini,
    pr_auc,
    rmse,
    roc_auc,
    top_decile_share,
)


def test_normalized_gini_by_hand():
    actual = np.array([0.0, 10.0, 0.0, 5.0])
    # Perfect order (10, 5, 0, 0): cumulative shares 2/3, 1, 1, 1 -> sum 11/3; Gini = 11/12 - 5/8 = 7/24.
    assert normalized_gini(actual, np.array([0.1, 0.9, 0.2, 0.5])) == pytest.approx(1.0)
    # Order (5, 0, 10, 0) by the prediction: shares 1/3, 1/3, 1, 1 -> sum 8/3; Gini = 8/12 - 5/8 = 1/24.
    assert normalized_gini(actual, np.array([0.8, 0.5, 0.2, 0.9])) == pytest.approx((1 / 24) / (7 / 24))
    assert normalized_gini(actual, -np.array([0.1, 0.9, 0.2, 0.5])) < 0


def test_normalized_gini_needs_value():
    assert math.isnan(normalized_gini(np.zeros(5), np.arange(5)))


def test_churn_metrics_agree_with_sklearn_and_hand_values():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.3, 0.6, 0.4, 0.5, 0.1, 0.8, 0.7])
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    assert 0 < pr_auc(y, p) <= 1
    assert math.isnan(roc_auc(np.ones(4), p[:4]))


def test_value_errors_and_top_decile_share():
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    predicted = np.array([2.0, 2.0, 2.0, 2.0])
    assert rmse(actual, predicted) == pytest.approx(math.sqrt((1 + 0 + 1 + 4) / 4))
    assert mae(actual, predicted) == pytest.approx(1.0)
    values = np.arange(1.0, 21.0)  # 20 customers: the top decile is 2 customers
    assert top_decile_share(values, values) == pytest.approx((20 + 19) / values.sum())


def test_composite_is_the_mean_of_both_ginis():
    assert composite(0.8, 0.5) == pytest.approx((0.6 + 0.5) / 2)
    assert composite(0.8, math.nan) == pytest.approx(0.6)


def test_best_f1_threshold_by_hand():
    y = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    # thresholds 0.8 -> F1 0.8, 0.35 -> P 3/4 R 1 -> 6/7 (best), 0.1 -> 2/3
    assert best_f1_threshold(y, score) == 0.35
    assert f1_at(y, score, 0.35) == pytest.approx(6 / 7)
    assert f1_at(y, score, 0.8) == pytest.approx(0.8)


def test_f1_at_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    score = rng.random(500)
    assert f1_at(y, score, 0.4) == pytest.approx(f1_score(y, score >= 0.4))
    assert np.isnan(best_f1_threshold(np.zeros(5), score[:5]))


def test_every_shown_metric_has_one_label_and_format():
    # The keys of evaluate's summary (REPORTED in evaluation/backtest.py, also evaluation.md's columns), of the
    # CLI's evaluate table and of the report's tables, written out here so that a renamed key fails this test.
    reported = (
        "churn_auc",
        "churn_pr_auc",
        "churn_f1",
        "churn_brier",
        "value_rmse",
        "value_mae",
        "value_mape",
        "value_gini",
        "value_spearman",
        "value_top_decile_share",
        "composite",
        "cohort_wape",
        "seconds",
    )
    validation = ("churn_brier_before", "churn_brier_after", "best_epoch", "validation_customers")
    assert set(METRICS) == set(reported) | set(validation)
    assert [m.label for m in METRICS.values()] == list(dict.fromkeys(m.label for m in METRICS.values()))  # distinct
    assert METRICS["churn_auc"].show(0.81234) == "0.812" and METRICS["seconds"].show(1234.5) == "1,234.500"
    assert METRICS["best_epoch"].show(4.0) == METRICS["best_epoch"].show(4) == "4"
    assert {k for k, m in METRICS.items() if m.lower_is_better} == {
        "churn_brier", "value_rmse", "value_mae", "value_mape", "cohort_wape", "seconds", "churn_brier_before",
        "churn_brier_after",
    }  # fmt: skip
    assert metric_label("value_gini") == "value Gini" and metric_label("mean_predicted_churn") == "mean predicted churn"
