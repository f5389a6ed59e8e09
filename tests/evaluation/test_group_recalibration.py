"""Group recalibration of the bias audit: rules that find a group again, corrections of flagged groups only,
an honest (cross-fitted) before/after, overlapping groups corrected once, and nothing at all when it is off."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseq.config import AuditConfig
from custseq.errors import ConfigError, SchemaError
from custseq.evaluation.fairness import audit, audit_groups, group_definitions, group_labels, recalibrate
from custseq.io.prepared import WindowFolder
from custseq.io.run_files import Audit as AuditFile
from custseq.models.group_calibration import apply_corrections
from custseq.pipelines.diagnostics import audit_validation

ON = AuditConfig(recalibrate_groups=True)


def _validation(n_fair=800, n_under=400, n_tiny=30, seed=0):
    """Validation customers of three plans. The model under-predicts churn (logit − 1) and value (× 0.5) for
    'under', churn even more for 'tiny' (logit − 2.5), which is below min_group_size (50). Tenure is the same
    for everyone (one group)."""
    rng = np.random.default_rng(seed)
    plan = np.array(["fair"] * n_fair + ["under"] * n_under + ["tiny"] * n_tiny)
    n = len(plan)
    p_true = rng.uniform(0.2, 0.8, n)
    churned = rng.uniform(size=n) < p_true
    biased = plan != "fair"
    shift = np.select([plan == "under", plan == "tiny"], [1.0, 2.5], 0.0)
    predicted = 1 / (1 + np.exp(-(np.log(p_true / (1 - p_true)) - shift)))
    mean_value = rng.gamma(2, 20, n)
    actual = np.where(churned, 0.0, mean_value * rng.lognormal(-0.125, 0.5, n) / (1 - p_true))
    ids = [f"c{i}" for i in range(n)]
    features = pd.DataFrame({"customer_id": ids, "T": 100.0, "profile_plan": plan})
    labelled = pd.DataFrame({
        "customer_id": ids, "churned": churned, "value": actual, "churn_probability": predicted,
        "clv_expected": mean_value * np.where(biased, 0.5, 1.0), "segment": "loyal",
    })  # fmt: skip
    return features, labelled


def _recalibrated(features, labelled, cfg=ON):
    definitions = group_definitions(features, cfg)
    groups = group_labels(features, definitions)
    result = audit(labelled, groups, cfg)
    return result, recalibrate(result, labelled, groups, definitions, cfg)


def _corrected(recalibration, attribute, group):
    return next(g for g in recalibration.groups if (g.correction.attribute, g.correction.group) == (attribute, group))


# --- rules: the audit's groups, found again ----------------------------------------------------------------------


def test_rules_label_the_source_table_as_the_audit_does_and_place_another_windows_customers():
    features = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(100)], "T": np.arange(100, dtype=float),
        "profile_age": [np.nan, np.nan, *range(18, 116)],
        "profile_region": ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 8 + [None] * 2,
    })  # fmt: skip
    cfg = AuditConfig(bins=4, max_groups=2)
    definitions = {d.attribute: d for d in group_definitions(features, cfg)}
    groups = audit_groups(features, cfg)
    for attribute, d in definitions.items():  # each rule takes exactly its group's customers
        for label, rule in d.rules.items():
            assert (rule.members(features[rule.column]) == (groups[attribute] == label).to_numpy()).all(), label
    tenure = definitions["tenure"].rules
    assert [(r.low, r.high) for r in tenure.values()] == [(None, 24.0), (24.0, 49.0), (49.0, 74.0), (74.0, None)]
    later = pd.DataFrame({"T": [-5.0, 24.5, 49.0, 400.0, np.nan],
                          "profile_region": ["a", "c", "zz", None, "b"]})  # fmt: skip
    found = {label: rule.members(later[rule.column]).tolist() for label, rule in tenure.items()}
    assert found == {"0–24": [True, False, False, False, False], "25–49": [False, True, True, False, False],
                     "50–74": [False] * 5, "75–99": [False, False, False, True, False]}  # fmt: skip
    region = definitions["region"].rules
    assert {label: rule.members(later["profile_region"]).tolist() for label, rule in region.items()} == {
        "a": [True, False, False, False, False], "b": [False, False, False, False, True],
        "other": [False, True, True, False, False], "missing": [False, False, False, True, False],
    }  # fmt: skip


# --- corrections -------------------------------------------------------------------------------------------------


def test_an_underpredicted_group_is_corrected_and_the_cross_fitted_gaps_shrink():
    features, labelled = _validation()
    _, recalibration = _recalibrated(features, labelled)
    under = _corrected(recalibration, "plan", "under")
    assert under.churn_corrected and under.value_corrected and under.n == 400
    # the planted bias is a logit shift of 1 and a factor of 2: shrunk by 400 / 420, found roughly
    assert 0.7 < under.correction.churn_shift < 1.3 and 1.5 < under.correction.value_factor <= 2.0
    gap_before, gap_after = under.calibration_gap  # |mean predicted − observed| on held-out halves
    assert gap_before == pytest.approx(abs(_group_gap(labelled, features, "under")), abs=0.02)
    assert gap_before > 0.15 and gap_after < gap_before / 3
    error_before, error_after = under.value_ratio_error  # |predicted / actual value − 1|
    assert error_before > 0.45 and error_after < error_before / 2
    before, after = recalibration.overall_calibration_gap
    assert after < before
    auc_before, auc_after = recalibration.overall_churn_auc
    assert auc_after > auc_before  # the shift moves the whole group: ranking across groups improves too


def test_a_group_below_the_minimum_size_is_never_corrected():
    features, labelled = _validation()
    result, recalibration = _recalibrated(features, labelled)
    tiny = next(g for g in result.groups if g.group == "tiny")
    assert tiny.metrics.n == 30 and tiny.metrics.calibration_gap < -0.15  # clearly biased, but small
    assert "tiny" not in {g.correction.group for g in recalibration.groups}
    smaller = AuditConfig(recalibrate_groups=True, min_group_size=30)
    assert "tiny" in {g.correction.group for g in _recalibrated(features, labelled, smaller)[1].groups}
    churn = labelled["churn_probability"].to_numpy()
    value = labelled["clv_expected"].to_numpy()
    new_churn, new_value = apply_corrections(recalibration.corrections, pa.Table.from_pandas(features), churn, value)
    untouched = (features["profile_plan"] == "tiny").to_numpy()
    assert np.array_equal(new_churn[untouched], churn[untouched]) and np.array_equal(new_value[untouched],
                                                                                     value[untouched])  # fmt: skip
    under = (features["profile_plan"] == "under").to_numpy()
    assert (new_churn[under] > churn[under]).all() and (new_value[under] > value[under]).all()


def test_the_after_gap_is_measured_out_of_sample_not_by_the_fit_itself():
    """Without shrinkage, a correction fitted on a group's customers closes its gap on them to 0: measured on
    the same customers, 'after' would say nothing. Cross-fitted, a gap that is only noise does not close: the
    correction one half fits is noise to the other (and signed gaps would cancel over the halves: they are
    absolute)."""
    rng = np.random.default_rng(5)
    n = 400
    halves = np.array(["x", "y"] * (n // 2))
    features = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "T": 1.0, "profile_half": halves})
    p = rng.uniform(0.2, 0.8, n)
    labelled = pd.DataFrame({"customer_id": features["customer_id"], "churned": rng.uniform(size=n) < p, "value": 1.0,
                             "churn_probability": p, "clv_expected": 1.0, "segment": "loyal"})  # fmt: skip
    cfg = AuditConfig(recalibrate_groups=True, recalibration_shrinkage=0.0, calibration_tolerance=0.01)
    _, recalibration = _recalibrated(features, labelled, cfg)
    assert recalibration.groups  # the noise is flagged with this tolerance
    for g in recalibration.groups:
        inside = (features["profile_half"] == g.correction.group).to_numpy()
        in_sample = apply_corrections([g.correction], pa.Table.from_pandas(features[inside]), p[inside], p[inside])[0]
        assert in_sample.mean() - labelled["churned"][inside].mean() == pytest.approx(0.0, abs=1e-9)
        before, after = g.calibration_gap
        assert after > 0.8 * before  # no real bias: correcting it does not help the held-out half


def test_a_customer_in_two_corrected_groups_is_corrected_once_not_twice():
    """Two attributes split the customers the same way: the first correction (the larger gap) takes the bias,
    the second finds almost nothing left, so their sum is the one correction the bias needs."""
    features, labelled = _validation(n_tiny=0)
    features["profile_tier"] = np.where(features["profile_plan"] == "under", "low", "high")
    cfg = AuditConfig(recalibrate_groups=True, recalibration_shrinkage=0.0, max_value_factor=4.0)
    _, alone = _recalibrated(features.drop(columns="profile_tier"), labelled, cfg)
    _, both = _recalibrated(features, labelled, cfg)
    single = _corrected(alone, "plan", "under").correction
    first, second = _corrected(both, "plan", "under").correction, _corrected(both, "tier", "low").correction
    assert first.churn_shift == pytest.approx(single.churn_shift) and abs(second.churn_shift) < 1e-6
    assert first.value_factor * second.value_factor == pytest.approx(single.value_factor)
    value = labelled["clv_expected"].to_numpy()
    churn = labelled["churn_probability"].to_numpy()
    table = pa.Table.from_pandas(features)
    once = apply_corrections(alone.corrections, table, churn, value)
    combined = apply_corrections(both.corrections, table, churn, value)
    np.testing.assert_allclose(combined[0], once[0], atol=1e-6)
    np.testing.assert_allclose(combined[1], once[1], rtol=1e-6)
    low = _corrected(both, "tier", "low")
    assert abs(low.calibration_gap[1]) < abs(low.calibration_gap[0]) / 3  # measured with both applied


def test_only_calibration_and_value_flags_are_corrected():
    features, labelled = _validation(n_tiny=0)
    under = (features["profile_plan"] == "under").to_numpy()
    labelled.loc[under, "churn_probability"] = 1 / (1 + np.exp(-np.log(0.5 / 0.5)))  # no ranking within 'under'
    labelled["clv_expected"] = np.where(under, labelled["clv_expected"] * 4, labelled["clv_expected"])
    cfg = AuditConfig(recalibrate_groups=True, calibration_tolerance=1.0)  # churn never flagged for calibration
    result, recalibration = _recalibrated(features, labelled, cfg)
    assert any(f.startswith("churn AUC") for g in result.groups if g.group == "under" for f in g.flags)
    corrected = _corrected(recalibration, "plan", "under")
    assert not corrected.churn_corrected and corrected.correction.churn_shift == 0.0 and corrected.value_corrected
    assert corrected.to_record().churn_shift is None and corrected.to_record().value_factor is not None


def test_the_record_round_trips_and_says_how_it_was_measured():
    features, labelled = _validation()
    result, recalibration = _recalibrated(features, labelled)
    record = type(result)(result.settings, result.labelled_customers, result.overall, result.groups,
                          recalibration).to_record()  # fmt: skip
    data = json.loads(json.dumps(record.to_json(), allow_nan=False))
    assert AuditFile.from_json(data) == record
    assert data["settings"]["recalibrate_groups"] is True and "cross-fitted" in data["recalibration"]["measured"]
    under = next(g for g in data["recalibration"]["groups"] if g["group"] == "under")
    assert set(under) == {"attribute", "group", "n", "churn_shift", "value_factor", "calibration_gap",
                          "value_ratio_error"}  # fmt: skip
    assert set(under["calibration_gap"]) == {"before", "after"}


def test_a_flagged_group_without_a_rule_is_refused():
    features, labelled = _validation()
    groups = audit_groups(features, ON)
    result = audit(labelled, groups, ON)
    with pytest.raises(SchemaError, match=r"have no rule"):
        recalibrate(result, labelled, groups, (), ON)


# --- the diagnostics step ------------------------------------------------------------------------------------------


@pytest.fixture
def window(tmp_path):
    features, labelled = _validation()
    folder = WindowFolder(tmp_path / "2023-01-01")
    folder.folder.mkdir()
    pq.write_table(pa.Table.from_pandas(features, preserve_index=False), folder.features)
    return folder, features, labelled


def test_off_by_default_the_audit_corrects_nothing(window):
    folder, features, labelled = window
    result = audit_validation(labelled, folder, AuditConfig())
    assert AuditConfig().recalibrate_groups is False
    assert result.recalibration is None and result.corrections == () and result.flagged_groups >= 1
    assert "recalibration" not in result.to_record().to_json() and result.summary().corrected_groups is None
    churn, value = labelled["churn_probability"].to_numpy(), labelled["clv_expected"].to_numpy()
    same = apply_corrections(result.corrections, pa.Table.from_pandas(features), churn, value)
    assert same[0] is churn and same[1] is value  # the predictions, untouched to the bit


def test_on_the_audit_fits_the_corrections_the_predictor_applies(window):
    folder, _, labelled = window
    result = audit_validation(labelled, folder, ON)
    assert result.recalibration is not None and ("plan", "under") in {
        (c.attribute, c.group) for c in result.corrections
    }
    assert result.summary().corrected_groups == len(result.corrections)
    assert result.to_record().recalibration is not None


def _group_gap(labelled, features, plan):
    inside = (features["profile_plan"] == plan).to_numpy()
    return labelled["churn_probability"][inside].mean() - labelled["churned"][inside].mean()


def test_the_settings_are_checked():
    with pytest.raises(ConfigError, match=r"recalibration_shrinkage must be at least 0 \(got -1\)"):
        AuditConfig(recalibration_shrinkage=-1)
    with pytest.raises(ConfigError, match=r"max_value_factor at least 1 \(got 0.5\)"):
        AuditConfig(max_value_factor=0.5)
