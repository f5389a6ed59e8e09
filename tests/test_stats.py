"""Paired tests against scipy and against known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from custseq.evaluation.stats import paired_bootstrap_auc, paired_t_test


def test_paired_t_test_matches_scipy():
    a, b = [0.81, 0.80, 0.83, 0.82, 0.80], [0.79, 0.80, 0.80, 0.81, 0.78]
    assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert math.isnan(paired_t_test([0.8], [0.7]))
    assert paired_t_test([0.8, 0.8], [0.8, 0.8]) == 1.0


def test_paired_bootstrap_sees_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000).astype(float)
    good = y + rng.normal(0, 0.8, 2000)  # informative
    noise = rng.normal(0, 1, 2000)  # not
    real = paired_bootstrap_auc(y, good, noise, n_boot=300)
    assert real["difference"] > 0.2 and real["low"] > 0 and real["p_value"] < 0.01
    same = paired_bootstrap_auc(y, good, good + 1e-9 * rng.normal(size=2000), n_boot=300)
    assert abs(same["difference"]) < 1e-3 and same["p_value"] > 0.05
