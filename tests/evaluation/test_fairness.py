"""Bias audit: group metrics against hand values and scikit-learn, flags on planted bias only, group labels,
the JSON the report reads, the human-review list and the BG/NBD adapter."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from custseq.baselines.btyd import predict_btyd
from custseq.config import AuditConfig
from custseq.errors import ConfigError, SchemaError
from custseq.evaluation.fairness import audit, audit_groups, btyd_frame, review_list
from custseq.scoring.segments import SEGMENTS


def _labelled(churned, probability, value, expected, segment, prefix="c"):
    n = len(churned)
    return pd.DataFrame(
        {
            "customer_id": [f"{prefix}{i}" for i in range(n)],
            "churned": np.asarray(churned, dtype=bool),
            "value": np.asarray(value, dtype=float),
            "churn_probability": np.asarray(probability, dtype=float),
            "clv_expected": np.asarray(expected, dtype=float),
            "segment": list(segment),
        }
    )


@pytest.fixture
def two_groups():
    """Group a: 4 customers, group b: 4 customers, small enough to compute every metric by hand."""
    labelled = _labelled(
        churned=[1, 1, 0, 0, 1, 0, 0, 0],
        probability=[0.9, 0.4, 0.6, 0.1, 0.8, 0.3, 0.2, 0.5],
        value=[0, 0, 30, 10, 0, 20, 20, 40],
        expected=[5, 5, 20, 10, 0, 40, 40, 40],
        segment=["at_risk", "at_risk", "loyal", "new", "at_risk", "loyal", "loyal", "champion"],
    )
    groups = pd.DataFrame({"customer_id": labelled["customer_id"], "region": ["a"] * 4 + ["b"] * 4})
    return labelled, groups


def _group(result, attribute, group):
    return next(g for g in result.groups if g.attribute == attribute and g.group == group)


def test_group_auc_matches_hand_values_and_sklearn(two_groups):
    labelled, groups = two_groups
    result = audit(labelled, groups, AuditConfig(min_group_size=1))
    # group a: churners score 0.9, 0.4; stayers 0.6, 0.1: pairs won 0.9>0.6, 0.9>0.1, 0.4>0.1 = 3 of 4
    assert _group(result, "region", "a").metrics.churn_auc == pytest.approx(0.75)
    # group b: one churner at 0.8 above all three stayers
    assert _group(result, "region", "b").metrics.churn_auc == pytest.approx(1.0)
    y, p = labelled["churned"], labelled["churn_probability"]
    assert result.overall.churn_auc == pytest.approx(roc_auc_score(y, p))


def test_calibration_value_ratio_and_segment_shares_by_hand(two_groups):
    labelled, groups = two_groups
    result = audit(labelled, groups, AuditConfig(min_group_size=1))
    a, b = _group(result, "region", "a").metrics, _group(result, "region", "b").metrics
    assert (a.n, b.n, result.labelled_customers) == (4, 4, 8)
    assert a.mean_predicted_churn == pytest.approx(0.5) and a.observed_churn == pytest.approx(0.5)
    assert a.calibration_gap == pytest.approx(0.0)
    assert b.mean_predicted_churn == pytest.approx(0.45) and b.observed_churn == pytest.approx(0.25)
    assert b.calibration_gap == pytest.approx(0.2)
    assert result.overall.calibration_gap == pytest.approx(0.475 - 0.375)
    assert (a.mean_predicted_value, a.mean_actual_value, a.value_ratio) == pytest.approx((10.0, 10.0, 1.0))
    assert (b.mean_predicted_value, b.mean_actual_value, b.value_ratio) == pytest.approx((30.0, 20.0, 1.5))
    assert result.overall.value_ratio == pytest.approx(20.0 / 15.0)
    assert a.segment_shares["at_risk"] == 0.5 and a.segment_shares["loyal"] == 0.25
    assert a.segment_shares["champion"] == 0.0
    assert b.segment_shares == {**dict.fromkeys(SEGMENTS, 0.0), "at_risk": 0.25, "loyal": 0.5, "champion": 0.25}
    assert list(result.overall.segment_shares) == list(SEGMENTS)
    assert sum(result.overall.segment_shares.values()) == pytest.approx(1.0)


def _planted(n_fair=400, n_biased=100, shift=0.2):
    """A fair group and a smaller one the model over-predicts churn for by ``shift``, same outcomes otherwise."""
    pattern_p = np.array([0.1, 0.3, 0.5, 0.7] * 5)
    pattern_y = np.array([0, 0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1])
    reps_fair, reps_biased = n_fair // 20, n_biased // 20
    p = np.concatenate([np.tile(pattern_p, reps_fair), np.tile(pattern_p, reps_biased) + shift])
    y = np.concatenate([np.tile(pattern_y, reps_fair), np.tile(pattern_y, reps_biased)])
    value = np.tile([10.0, 20.0, 30.0, 40.0], len(p) // 4)
    segment = np.tile(["loyal", "at_risk", "new", "champion"], len(p) // 4)
    labelled = _labelled(y, p, value, value, segment)
    groups = pd.DataFrame({"customer_id": labelled["customer_id"], "plan": ["fair"] * n_fair + ["biased"] * n_biased})
    return labelled, groups


def test_a_planted_biased_group_is_flagged_and_the_fair_one_is_not():
    labelled, groups = _planted()
    result = audit(labelled, groups, AuditConfig(min_group_size=50))
    fair, biased = _group(result, "plan", "fair"), _group(result, "plan", "biased")
    # overall gap = 0.2 x 100 / 500 = 0.04 above the fair group's: within the 0.05 tolerance
    assert biased.metrics.calibration_gap - fair.metrics.calibration_gap == pytest.approx(0.2)
    assert fair.flags == ()
    assert len(biased.flags) == 1 and biased.flags[0].startswith("calibration gap")
    gap, overall = biased.metrics.calibration_gap, result.overall.calibration_gap
    assert f"{gap:.3f} vs {overall:.3f} overall" in biased.flags[0]
    assert result.flagged_groups == 1
    flagged = result.flagged()
    assert flagged.to_dict("records") == [{"attribute": "plan", "group": "biased", "n": 100, "reason": biased.flags[0]}]


def test_segment_shares_are_not_flagged_across_tenure_groups_which_define_them():
    labelled, groups = _planted(shift=0.0)
    groups["tenure"] = groups["plan"]  # the same split, named tenure
    labelled.loc[groups["plan"] == "biased", "segment"] = "hibernating"
    result = audit(labelled, groups, AuditConfig(min_group_size=50))
    assert any(f.startswith("share of segment") for f in _group(result, "plan", "biased").flags)
    assert not any(f.startswith("share of segment") for f in _group(result, "tenure", "biased").flags)


def test_value_and_segment_bias_are_flagged_per_metric():
    labelled, groups = _planted(shift=0.0)
    biased = groups["plan"] == "biased"
    labelled.loc[biased, "clv_expected"] *= 3  # value ratio 3 against (400 + 300) / 500 = 1.4 overall
    labelled.loc[biased, "segment"] = "hibernating"  # share 1 against 0.2 overall; the others drop to 0
    result = audit(labelled, groups, AuditConfig(min_group_size=50))
    flags = _group(result, "plan", "biased").flags
    assert any(f.startswith("value ratio") and "3.000 vs 1.400 overall" in f for f in flags)
    assert any(f.startswith("share of segment hibernating 1.000 vs 0.200 overall") for f in flags)
    assert not any(f.startswith(("churn AUC", "calibration")) for f in flags)
    # the fair group is measured against an overall the biased one pulled: its four segments' shares differ
    # by 0.05 each (0.25 vs 0.2 overall), within tolerance, but it has no hibernating customers (0 vs 0.2)
    assert _group(result, "plan", "fair").flags == (
        "value ratio (mean predicted / actual value) 1.000 vs 1.400 overall (differs by 0.400 > 0.25)",
        "share of segment hibernating 0.000 vs 0.200 overall (differs by 0.200 > 0.15)",
    )


def test_small_groups_are_reported_but_never_flagged():
    labelled, groups = _planted()
    result = audit(labelled, groups, AuditConfig(min_group_size=101))
    biased = _group(result, "plan", "biased")
    assert biased.metrics.n == 100 and biased.flags == ()
    assert result.flagged_groups == 0 and result.flagged().empty


def test_a_one_class_group_has_no_auc_and_no_auc_flag(two_groups):
    labelled, groups = two_groups
    groups = groups.assign(region=["a"] * 4 + ["b"] * 3 + ["stayers"])
    labelled.loc[7, "churned"] = False
    labelled = pd.concat([labelled, labelled.iloc[[7] * 3].assign(customer_id=["x1", "x2", "x3"])])
    groups = pd.concat([groups, pd.DataFrame({"customer_id": ["x1", "x2", "x3"], "region": "stayers"})])
    result = audit(labelled, groups, AuditConfig(min_group_size=1, auc_tolerance=0.01))
    stayers = _group(result, "region", "stayers")
    assert stayers.metrics.n == 4 and stayers.metrics.churn_auc is None
    assert not any(f.startswith("churn AUC") for f in stayers.flags)
    assert any(f.startswith("churn AUC") for f in _group(result, "region", "a").flags)  # 0.75 vs about 0.8


def test_the_record_has_the_report_shape_and_no_nan(two_groups):
    labelled, groups = two_groups
    labelled["value"] = labelled["value"].where(groups["region"] == "b", 0.0)  # group a: actual mean 0
    labelled["churned"] = labelled["churned"].where(groups["region"] == "b", True)  # group a: one class
    result = audit(labelled, groups, AuditConfig(min_group_size=1))
    out = json.loads(json.dumps(result.to_record().to_json(), allow_nan=False))
    assert set(out) == {"format_version", "settings", "labelled_customers", "overall", "attributes", "flagged_groups"}
    assert out["settings"]["min_group_size"] == 1 and out["settings"]["columns"] is None
    assert out["labelled_customers"] == 8 and out["flagged_groups"] == result.flagged_groups
    assert [a["attribute"] for a in out["attributes"]] == ["region"]
    a = out["attributes"][0]["groups"][0]
    assert a["group"] == "a" and a["churn_auc"] is None and a["value_ratio"] is None
    metrics = {"n", "churn_auc", "mean_predicted_churn", "observed_churn", "calibration_gap", "mean_predicted_value",
               "mean_actual_value", "value_ratio", "segment_shares"}  # fmt: skip
    assert set(a) == {"group", *metrics, "flags"}
    assert set(out["overall"]) == set(a) - {"group", "flags"}
    assert out["overall"]["n"] == 8 and isinstance(a["flags"], list)


def test_audit_refuses_customers_without_groups_and_missing_columns(two_groups):
    labelled, groups = two_groups
    with pytest.raises(SchemaError, match=r"1 labelled customer\(s\) have no groups \(e.g. 'c7'\)"):
        audit(labelled, groups.iloc[:7], AuditConfig())
    with pytest.raises(SchemaError, match=r"lack column\(s\) \['segment'\]"):
        audit(labelled.drop(columns="segment"), groups, AuditConfig())


# --- groups -----------------------------------------------------------------------------------------------


def test_numeric_columns_get_quantile_bins_with_readable_labels():
    features = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(100)],
            "T": np.arange(100, dtype=float),
            "profile_age": [np.nan, np.nan, *range(18, 116)],
            "profile_score": np.linspace(0.5, 1.49, 100),
            "profile_flag": [0.0, 1.0] * 50,
        }
    )
    groups = audit_groups(features, AuditConfig(bins=4))
    assert list(groups.columns) == ["customer_id", "age", "score", "flag", "tenure"]
    assert list(groups["tenure"].cat.categories) == ["0–24", "25–49", "50–74", "75–99"]
    assert groups["tenure"].value_counts().to_dict() == dict.fromkeys(["0–24", "25–49", "50–74", "75–99"], 25)
    assert list(groups["age"].cat.categories) == ["18–42", "43–66", "67–90", "91–115", "missing"]
    # quartiles of 18..115 are 42.25, 66.5 and 90.75: each label is the smallest and largest age in its bin
    assert groups["age"].value_counts().to_dict() == {"18–42": 25, "43–66": 24, "67–90": 24, "91–115": 25, "missing": 2}
    assert groups["age"].iloc[:3].tolist() == ["missing", "missing", "18–42"]
    assert list(groups["score"].cat.categories) == ["0.5–0.74", "0.75–0.99", "1–1.24", "1.25–1.49"]
    assert list(groups["flag"].cat.categories) == ["0", "1"]  # two values: one group each, not one bin


def test_categorical_columns_keep_the_most_frequent_values_then_other_and_missing():
    region = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d", "e"] + [None] * 2
    features = pd.DataFrame({"customer_id": range(16), "T": np.arange(16.0), "profile_region": region,
                             "profile_vip": [True, False] * 8})  # fmt: skip
    groups = audit_groups(features, AuditConfig(max_groups=2))
    assert groups["region"].tolist() == ["a"] * 5 + ["b"] * 4 + ["other"] * 5 + ["missing"] * 2
    assert list(groups["region"].cat.categories) == ["a", "b", "other", "missing"]
    assert list(groups["vip"].cat.categories) == ["False", "True"]  # ties by value
    result = audit(_labelled([1, 0] * 8, np.linspace(0, 1, 16), [1.0] * 16, [1.0] * 16, ["new"] * 16, ""),
                   groups.assign(customer_id=[str(i) for i in range(16)]), AuditConfig())  # fmt: skip
    assert [g.group for g in result.groups if g.attribute == "region"] == ["a", "b", "other", "missing"]
    assert [g.group for g in result.groups if g.attribute == "tenure"] == ["0–3", "4–7", "8–11", "12–15"]


def test_tenure_is_always_audited():
    features = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e"], "T": [0.0, 10, 20, 30, 40],
                             "profile_region": ["x", "y", "x", "y", "x"]})  # fmt: skip
    without_profile = audit_groups(features.drop(columns="profile_region"), AuditConfig(bins=2))
    assert list(without_profile.columns) == ["customer_id", "tenure"]
    assert without_profile["tenure"].tolist() == ["0–20", "0–20", "0–20", "30–40", "30–40"]
    picked = audit_groups(features, AuditConfig(columns=("tenure",)))
    assert list(picked.columns) == ["customer_id", "tenure"]


def test_columns_are_picked_by_either_name_and_unknown_ones_are_refused():
    features = pd.DataFrame({"customer_id": ["a", "b"], "T": [1.0, 2.0], "profile_region": ["x", "y"],
                             "profile_age": [30.0, 40.0]})  # fmt: skip
    assert list(audit_groups(features, AuditConfig(columns=("age",))).columns) == ["customer_id", "age", "tenure"]
    picked = audit_groups(features, AuditConfig(columns=("profile_region", "age")))
    assert list(picked.columns) == ["customer_id", "region", "age", "tenure"]
    with pytest.raises(ConfigError, match=r"audit columns \['gender'\] .* available: \['age', 'region'\]"):
        audit_groups(features, AuditConfig(columns=("gender",)))
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['T'\]"):
        audit_groups(features.drop(columns="T"), AuditConfig())


# --- review list ------------------------------------------------------------------------------------------


def test_review_list_reasons_order_and_missing_customers():
    predictions = pd.DataFrame(
        {
            "customer_id": ["same", "churn", "value", "both", "zero", "tiny", "absent"],
            "churn_probability": [0.5, 0.9, 0.4, 0.95, 0.3, 0.3, 0.99],
            "clv_expected": [100.0, 100.0, 600.0, 100.0, 0.0, 0.5, 1000.0],
            "segment": ["loyal", "at_risk", "champion", "at_risk", "new", "new", "at_risk"],
        }
    )
    btyd = pd.DataFrame(
        {
            "customer_id": ["same", "churn", "value", "both", "zero", "tiny"],
            "btyd_churn_probability": [0.6, 0.3, 0.4, 0.05, 0.3, 0.3],
            "btyd_clv_expected": [110.0, 100.0, 100.0, 2.0, 20.0, 0.0],  # "tiny": 0.5 vs 0, below min value
        }
    )
    out = review_list(
        predictions, btyd, AuditConfig(review_churn_gap=0.5, review_value_ratio=5.0, review_min_value=1.0)
    )
    # disagreement in multiples of its threshold: zero log5(20 / 0.2) = 2.86 (0 floored at min value / ratio);
    # both max(0.9 / 0.5, log5(50)) = 2.43; churn 0.6 / 0.5 = 1.2; value log5(6) = 1.11; "same" and "tiny"
    # are not listed, "absent" has no BG/NBD prediction
    assert out["customer_id"].tolist() == ["zero", "both", "churn", "value"]
    reasons = dict(zip(out["customer_id"], out["reason"], strict=True))
    assert reasons["churn"] == "churn 0.90 vs BG/NBD 0.30 (gap 0.60)"
    assert reasons["value"] == "value 600.00 vs BG/NBD 100.00 (6.0x)"
    assert reasons["both"] == "churn 0.95 vs BG/NBD 0.05 (gap 0.90); value 100.00 vs BG/NBD 2.00 (50.0x)"
    assert reasons["zero"] == "value 0.00 vs BG/NBD 20.00 (one of them 0 or less)"
    assert list(out.columns) == ["customer_id", "reason", "churn_probability", "btyd_churn_probability",
                                 "clv_expected", "btyd_clv_expected", "segment"]  # fmt: skip
    row = out.set_index("customer_id").loc["value"]
    assert (row["clv_expected"], row["btyd_clv_expected"], row["segment"]) == (600.0, 100.0, "champion")


def test_review_list_orders_by_disagreement():
    predictions = pd.DataFrame({"customer_id": ["a", "b", "c"], "churn_probability": [0.6, 1.0, 0.8],
                                "clv_expected": [1.0] * 3, "segment": ["new"] * 3})  # fmt: skip
    btyd = pd.DataFrame({"customer_id": ["c", "b", "a"], "btyd_churn_probability": [0.0, 0.0, 0.0],
                         "btyd_clv_expected": [1.0] * 3})  # fmt: skip
    out = review_list(predictions, btyd, AuditConfig(review_churn_gap=0.5))
    assert out["customer_id"].tolist() == ["b", "c", "a"]
    empty = review_list(predictions, btyd.assign(btyd_churn_probability=[0.8, 1.0, 0.6]), AuditConfig())
    assert empty.empty and list(empty.columns)[:2] == ["customer_id", "reason"]


def test_review_list_does_not_print_meaningless_ratios():
    predictions = pd.DataFrame({"customer_id": ["a"], "churn_probability": [0.5], "clv_expected": [100.0],
                                "segment": ["loyal"]})  # fmt: skip
    btyd = pd.DataFrame({"customer_id": ["a"], "btyd_churn_probability": [0.5], "btyd_clv_expected": [1e-9]})
    assert "over 1000x" in review_list(predictions, btyd, AuditConfig())["reason"].iloc[0]


# --- the BG/NBD adapter -----------------------------------------------------------------------------------


def test_btyd_frame_adapts_predict_btyd():
    """60 customers, 10 repeat buyers: too few for Gamma-Gamma, so spend is their mean monetary value."""
    rng = np.random.default_rng(3)
    n = 60
    frequency = np.where(np.arange(n) < 10, rng.integers(1, 8, n), 0).astype(float)
    T = rng.integers(30, 300, n).astype(float)
    recency = np.where(frequency > 0, np.floor(T * rng.uniform(0.2, 0.9, n)), 0.0)
    monetary = np.where(frequency > 0, rng.gamma(2.0, 20.0, n), 0.0)
    features = pa.table({"customer_id": [f"k{i:02d}" for i in range(n)], "frequency": frequency,
                         "recency": recency, "T": T, "monetary_value": monetary})  # fmt: skip
    direct = predict_btyd(features, 90)
    out = btyd_frame(direct)
    assert list(out.columns) == ["customer_id", "btyd_churn_probability", "btyd_clv_expected"]
    assert out["customer_id"].tolist() == features.column("customer_id").to_pylist()
    assert np.array_equal(out["btyd_churn_probability"].to_numpy(), direct.churn_probability)
    assert np.all((out["btyd_churn_probability"] > 0) & (out["btyd_churn_probability"] < 1))
    spend = out["btyd_clv_expected"].to_numpy() / direct.expected_purchases
    assert spend == pytest.approx(np.full(n, monetary[:10].mean()))
    # the frame is what review_list reads: BG/NBD compared with itself lists nobody
    assert review_list(
        pd.DataFrame({"customer_id": out["customer_id"], "churn_probability": out["btyd_churn_probability"],
                      "clv_expected": out["btyd_clv_expected"], "segment": "new"}), out, AuditConfig()
    ).empty  # fmt: skip
