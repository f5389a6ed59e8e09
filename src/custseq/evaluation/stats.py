"""Paired comparisons: a t-test over seeds (SeqPreMT) and a per-customer paired bootstrap of AUC."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from custseq.metrics import roc_auc


def paired_t_test(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of a paired t-test of ``a`` against ``b`` (same seeds); NaN with < 2 pairs or no spread."""
    if len(a) < 2 or len(a) != len(b):
        return math.nan
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if np.allclose(diff, diff[0]):
        return 0.0 if diff[0] != 0 else 1.0  # a constant difference: certain, or no difference at all
    return float(stats.ttest_rel(a, b).pvalue)


def paired_bootstrap_auc(
    y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """AUC(a) − AUC(b) on the same customers, with a 95% interval and a two-sided p-value from resampling them."""
    y, score_a, score_b = (np.asarray(v, dtype=np.float64) for v in (y, score_a, score_b))
    rng = np.random.default_rng(seed)
    n = len(y)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        d = roc_auc(y[idx], score_a[idx]) - roc_auc(y[idx], score_b[idx])
        if not math.isnan(d):
            diffs.append(d)
    diffs_arr = np.asarray(diffs)
    observed = roc_auc(y, score_a) - roc_auc(y, score_b)
    if len(diffs_arr) == 0:
        return {"difference": observed, "low": math.nan, "high": math.nan, "p_value": math.nan}
    # two-sided: how often the resampled difference falls on the other side of zero; counted as (1 + k) / (1 + n)
    # so that a finite number of resamples never claims p = 0 (the smallest reportable p is 2 / (1 + n))
    n = len(diffs_arr)
    p = 2 * min((1 + np.sum(diffs_arr <= 0)) / (1 + n), (1 + np.sum(diffs_arr >= 0)) / (1 + n))
    return {
        "difference": observed,
        "low": float(np.quantile(diffs_arr, 0.025)),
        "high": float(np.quantile(diffs_arr, 0.975)),
        "p_value": float(min(1.0, p)),
    }
