"""Segment rules against a hand-labelled table, the top value tier, the segment table and SegmentConfig."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from custseq.config import RunConfig, SegmentConfig, config_from_dict, config_to_dict, load_config
from custseq.errors import ConfigError, SchemaError
from custseq.scoring.segments import SEGMENTS, assign_segments, for_ranking, segment_table, top_value_tier

HORIZON = 90

# Hand-labelled with SegmentConfig(top_value_share=0.3): the top tier is a, b, c (3 of 10 by clv).
# T − recency is the days since the last purchase.
#        id    churn  clv  freq  recency  T    expected segment and why
CUSTOMERS = [
    ("a", 0.90, 500, 5, 300, 400, "high_value_potential_attrier"),  # top tier, churn > 0.65
    ("b", 0.65, 400, 5, 350, 360, "at_risk"),  # top tier but churn = 0.65 is not > 0.65; bought 10 days ago
    ("c", 0.35, 300, 0, 0, 400, "champion"),  # top tier, churn = 0.35 <= 0.35
    ("d", 0.20, 100, 0, 0, 30, "new"),  # first purchase 30 days ago
    ("e", 0.90, 90, 3, 60, 89, "new"),  # T = 89 < 90; new is tried before at risk
    ("f", 0.30, 80, 2, 100, 90, "loyal"),  # T = 90 is not new; frequency = 2 >= 2
    ("g", 0.50, 60, 1, 50, 200, "potential_loyalist"),  # churn = 0.5 is not at risk; frequency 1 < 2
    ("h", 0.51, 40, 1, 10, 100, "hibernating"),  # at risk, no purchase for T − recency = 90 >= 90 days
    ("i", 0.80, 30, 4, 200, 289, "at_risk"),  # at risk, last purchase 89 days ago
    ("j", 0.95, 0, 0, 0, 500, "hibernating"),
]


@pytest.fixture
def predictions() -> pd.DataFrame:
    ids, churn, clv = zip(*((c[0], c[1], c[2]) for c in CUSTOMERS), strict=True)
    return pd.DataFrame({"customer_id": ids, "churn_probability": churn, "clv_expected": clv})


@pytest.fixture
def features() -> pd.DataFrame:
    rows = pd.DataFrame(
        [(c[0], c[3], c[4], c[5]) for c in CUSTOMERS], columns=["customer_id", "frequency", "recency", "T"]
    )
    rows["purchase_days_last_h"] = 1
    return rows.iloc[::-1].reset_index(drop=True)  # another order than the predictions: matched by id


def test_segments_match_the_hand_labels(predictions, features):
    segments = assign_segments(predictions, features, SegmentConfig(top_value_share=0.3), horizon_days=HORIZON)
    assert segments.name == "segment"
    assert segments.index.equals(predictions.index)
    assert segments.tolist() == [c[-1] for c in CUSTOMERS]


def test_with_the_default_top_fifth_the_third_highest_value_is_no_champion(predictions, features):
    segments = assign_segments(predictions, features, horizon_days=HORIZON)
    assert segments.tolist()[:3] == ["high_value_potential_attrier", "at_risk", "potential_loyalist"]


def test_a_top_tier_attrier_outranks_new(predictions, features):
    features.loc[features["customer_id"] == "a", ["recency", "T"]] = [0, 5]
    segments = assign_segments(predictions, features, SegmentConfig(top_value_share=0.3), horizon_days=HORIZON)
    assert segments.iloc[0] == "high_value_potential_attrier"


def test_day_settings_replace_the_horizon(predictions, features):
    cfg = SegmentConfig(top_value_share=0.3, new_customer_days=30, hibernating_days=91)
    segments = assign_segments(predictions, features, cfg, horizon_days=HORIZON).tolist()
    # d: T = 30 is no longer new; e: T = 89 is at risk, 29 days since its last purchase; h: 90 < 91 days
    assert (segments[3], segments[4], segments[7]) == ("potential_loyalist", "at_risk", "at_risk")


def test_every_customer_gets_exactly_one_known_segment():
    rng = np.random.default_rng(0)
    n = 500
    recency = rng.integers(0, 300, n).astype(float)
    features = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "frequency": rng.integers(0, 6, n).astype(float),
            "recency": recency,
            "T": recency + rng.integers(0, 300, n),
        }
    )
    predictions = pd.DataFrame(
        {"customer_id": np.arange(n), "churn_probability": rng.uniform(size=n), "clv_expected": rng.gamma(1.0, 50, n)}
    )
    segments = assign_segments(predictions, features, horizon_days=HORIZON)
    assert len(segments) == n and segments.isin(SEGMENTS).all()
    table = segment_table(predictions, segments)
    assert table["customers"].sum() == n and table["share"].sum() == pytest.approx(1.0)
    assert (table["customers"] > 0).all()  # every rule is reachable


def test_segment_table_counts_shares_and_means(predictions, features):
    segments = assign_segments(predictions, features, SegmentConfig(top_value_share=0.3), horizon_days=HORIZON)
    table = segment_table(predictions, segments).set_index("segment")
    assert list(table.index) == list(SEGMENTS)
    assert table["customers"].to_dict() == {
        "high_value_potential_attrier": 1,
        "new": 2,
        "champion": 1,
        "loyal": 1,
        "hibernating": 2,
        "at_risk": 2,
        "potential_loyalist": 1,
    }
    assert table.loc["at_risk", "share"] == pytest.approx(0.2)
    assert table.loc["at_risk", "mean_churn_probability"] == pytest.approx((0.65 + 0.80) / 2)
    assert table.loc["at_risk", "total_clv_expected"] == pytest.approx(430)
    assert table.loc["at_risk", "mean_clv_expected"] == pytest.approx(215)
    assert table.loc["hibernating", "mean_churn_probability"] == pytest.approx((0.51 + 0.95) / 2)
    assert table.loc["hibernating", "total_clv_expected"] == pytest.approx(40)


def test_an_empty_segment_has_no_customers_and_no_means(predictions):
    table = segment_table(predictions, ["loyal"] * len(predictions)).set_index("segment")
    assert table.loc["new", "customers"] == 0 and table.loc["new", "total_clv_expected"] == 0
    assert np.isnan(table.loc["new", "mean_churn_probability"])
    assert table.loc["loyal", "share"] == 1.0


@pytest.mark.parametrize(
    "values, share, expected",
    [
        (range(1, 11), 0.2, [False] * 8 + [True] * 2),
        ([10, 8, 8, 1, 1], 0.4, [True, False, False, False, False]),  # the tie at the boundary falls below
        ([0, 0, 0, 0], 0.5, [False] * 4),  # equal values make no top tier
        ([3, 1, 2], 1.0, [True] * 3),
        (np.arange(100), 0.29, [False] * 71 + [True] * 29),  # 0.29 * 100 is 28.999999999999996
    ],
)
def test_top_value_tier_holds_at_most_the_share(values, share, expected):
    assert top_value_tier(list(values), share).tolist() == expected


def test_a_customer_without_features_is_named(predictions, features):
    with pytest.raises(SchemaError, match=r"1 customer\(s\) of the predictions have no row .*\(e\.g\. 'j'\)"):
        assign_segments(predictions, features[features["customer_id"] != "j"], horizon_days=HORIZON)


def test_a_missing_feature_column_is_named(predictions, features):
    with pytest.raises(SchemaError, match=re.escape("the features table lacks column(s) ['recency']")):
        assign_segments(predictions, features.drop(columns="recency"), horizon_days=HORIZON)


def test_a_churn_probability_outside_zero_one_is_refused(predictions, features):
    predictions.loc[2, "churn_probability"] = 1.5
    with pytest.raises(SchemaError, match=re.escape("1 row(s) are not (e.g. 1.5)")):
        assign_segments(predictions, features, horizon_days=HORIZON)


def test_segment_config_defaults():
    cfg = SegmentConfig()
    assert (cfg.top_value_share, cfg.attrier_churn, cfg.champion_max_churn, cfg.at_risk_churn) == (0.2, 0.65, 0.35, 0.5)
    assert (cfg.loyal_min_frequency, cfg.new_customer_days, cfg.hibernating_days) == (2, None, None)
    assert RunConfig().segments == cfg


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"top_value_share": 0.0}, "top_value_share must be in (0, 1], got 0.0"),
        ({"attrier_churn": 1.2}, "attrier_churn must be a probability in [0, 1], got 1.2"),
        ({"champion_max_churn": 0.6}, "champion_max_churn (0.6) must not exceed at_risk_churn (0.5)"),
        ({"loyal_min_frequency": 0}, "loyal_min_frequency must be at least 1, got 0"),
        ({"hibernating_days": 0}, "hibernating_days must be at least 1 day (or unset for the horizon), got 0"),
    ],
)
def test_bad_segment_settings_are_refused_with_the_value(setting, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SegmentConfig(**setting)


def test_a_toml_segments_section_changes_only_what_it_names(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[segments]\ntop_value_share = 0.1\nnew_customer_days = 30\n")
    cfg = load_config(path).segments
    assert (cfg.top_value_share, cfg.new_customer_days, cfg.attrier_churn) == (0.1, 30, 0.65)


def test_a_bad_toml_segments_value_is_a_config_error(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[segments]\nat_risk_churn = 0.2\n")  # below the default champion_max_churn of 0.35
    with pytest.raises(ConfigError, match=re.escape("champion_max_churn (0.35) must not exceed at_risk_churn (0.2)")):
        load_config(path)


def test_segments_round_trip_through_a_dict():
    cfg = RunConfig(segments=SegmentConfig(top_value_share=0.25, hibernating_days=180))
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg


def test_features_are_looked_up_by_customer_in_the_predictions_order_and_index():
    from custseq.scoring.segments import features_by_customer

    features = pd.DataFrame({"customer_id": ["c", "a", "b"], "x": [3, 1, 2], "y": [30.0, 10.0, 20.0]})
    predictions = pd.DataFrame({"customer_id": ["b", "c", "a", "b"]}, index=[7, 8, 9, 10])
    matched = features_by_customer(predictions, features, ("y", "x"))
    assert list(matched.columns) == ["y", "x"] and list(matched.index) == [7, 8, 9, 10]
    assert matched["x"].tolist() == [2.0, 3.0, 1.0, 2.0] and matched["x"].dtype == float
    with pytest.raises(SchemaError, match=r"1 customer\(s\) of the predictions have no row .*'z'"):
        features_by_customer(pd.DataFrame({"customer_id": ["a", "z"]}), features, ("x",))
    with pytest.raises(SchemaError, match="more than one row for customer_id 'a'"):
        features_by_customer(predictions, pd.concat([features, features.iloc[[1]]]), ("x",))
    with pytest.raises(SchemaError, match=r"missing values in \{'y': 1\}"):
        features_by_customer(predictions, features.assign(y=[1.0, None, 2.0]), ("y",))


def test_values_equal_but_for_float_noise_tie_in_the_ranks():
    noisy = [5.551096912052827, 5.551096717497295, 0.0, -3.25e-4, 7.0e12, np.nan, 1.0, 5e-324, -np.inf]
    with np.errstate(all="raise"):
        rounded = for_ranking(noisy)
    assert rounded[7] == 5e-324 and rounded[8] == -np.inf
    assert rounded[0] == rounded[1] == pytest.approx(5.55110)
    assert rounded[2] == 0.0 and rounded[3] == -3.25e-4 and rounded[4] == 7.0e12 and np.isnan(rounded[5])
    assert for_ranking([1.000001, 1.000002]).tolist() == [1.0, 1.0] and for_ranking([1.00001, 1.00002])[0] < 1.00002
    assert top_value_tier([5.551096912052827, 5.551096717497295, 1.0], 0.4).tolist() == [False, False, False]
    assert top_value_tier([5.5511, 5.5510, 1.0], 0.4).tolist() == [True, False, False]
