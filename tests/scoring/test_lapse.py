"""Lapsed regulars by hand: cadence, the measured churn rate, decision churn, segments, flags and contacts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from custseq.config import ActionConfig, ProfitConfig, SegmentConfig
from custseq.errors import ConfigError
from custseq.scoring.actions import load_catalogue, plan_actions
from custseq.scoring.contacts import CONTACT_COLUMNS, contact_list, save_rate_sensitivity
from custseq.scoring.lapse import MIN_MEASURED, cadence, decision_churn, lapsed_churn_rate
from custseq.scoring.segments import assign_segments

#        id     freq recency  T    ipt_median  lapsed?  why
ROWS = [
    ("reg", 20, 200, 290, 10.0, True),  # 21 purchase days every 10 days, silent 90 = 9 gaps ≥ 3 and ≥ 28 days
    ("fresh", 20, 200, 215, 10.0, False),  # the same regular, silent 15 days: 1.5 gaps
    ("few", 3, 60, 200, 20.0, False),  # silent 140 days, but only 4 purchase days: not a regular
    ("daily", 30, 30, 50, 1.0, False),  # silent 20 days = 20 gaps, but under 28 days
    ("nomed", 9, 90, 190, np.nan, True),  # no median: mean gap 90 / 9 = 10 days, silent 100 days
    ("once", 0, 0, 300, np.nan, False),  # one purchase day: no gap
]


def _features() -> pd.DataFrame:
    ids, freq, rec, t, med, _ = zip(*ROWS, strict=True)
    return pd.DataFrame({"customer_id": ids, "frequency": freq, "recency": rec, "T": t, "ipt_median": med})


def test_cadence_by_hand():
    c = cadence(_features(), SegmentConfig())
    assert c["lapsed_regular"].tolist() == [r[5] for r in ROWS]
    assert c["usual_gap_days"].iloc[4] == pytest.approx(10.0) and np.isnan(c["usual_gap_days"].iloc[5])
    assert c["silent_days"].tolist() == [90, 15, 140, 20, 100, 300]
    assert c["purchase_days"].tolist() == [21, 21, 4, 31, 10, 1]
    lenient = cadence(_features(), SegmentConfig(lapsed_min_purchase_days=4, lapsed_min_silent_days=14))
    assert lenient["lapsed_regular"].tolist() == [True, False, True, True, True, False]


def test_cadence_without_the_timing_features_uses_the_mean_gap():
    c = cadence(_features().drop(columns="ipt_median"), SegmentConfig())
    assert c["usual_gap_days"].iloc[0] == pytest.approx(200 / 20) and bool(c["lapsed_regular"].iloc[0])


def test_the_lapsed_churn_rate_is_measured_on_labelled_windows_and_needs_enough_of_them():
    features = pd.concat([_features()] * 20, ignore_index=True)  # 40 lapsed regulars
    churned = np.tile([1.0, 0, 0, 0, 0.0, 1], 20)  # "reg" churned, "nomed" did not
    assert lapsed_churn_rate([(features, churned)], SegmentConfig()) == pytest.approx(0.5)
    few = features.iloc[: 6 * (MIN_MEASURED // 2 - 1)]
    assert lapsed_churn_rate([(few, churned[: len(few)])], SegmentConfig()) is None
    assert lapsed_churn_rate([], SegmentConfig()) is None


def test_decision_churn_raises_only_lapsed_regulars_to_the_measured_rate():
    churn, lapsed = np.array([0.05, 0.9, 0.05]), np.array([True, True, False])
    assert decision_churn(churn, lapsed, 0.4).tolist() == [0.4, 0.9, 0.05]
    assert decision_churn(churn, lapsed, None).tolist() == churn.tolist()


def test_lapsed_regulars_are_at_risk_in_segments_and_flagged_whatever_the_predicted_churn():
    f = _features()
    lapsed = cadence(f, SegmentConfig())["lapsed_regular"].to_numpy()
    p = pd.DataFrame({"customer_id": f["customer_id"], "churn_probability": 0.05, "clv_expected": 10.0})
    p["lapsed_regular"] = lapsed
    p.loc[0, "clv_expected"] = 500.0  # the top value tier (share 0.2 of 6: one customer)
    segments = assign_segments(p, f, SegmentConfig(), horizon_days=60)
    assert segments.iloc[0] == "high_value_potential_attrier" and segments.iloc[4] == "hibernating"
    assert set(segments[~lapsed]) <= {"loyal", "potential_loyalist", "champion", "new"}
    without = assign_segments(p.drop(columns="lapsed_regular"), f, SegmentConfig(), horizon_days=60)
    assert without.iloc[0] == "champion"  # what the rules said before: a lapsed regular called a champion
    p["segment"], p["value_score"] = segments, 100.0
    planned = plan_actions(p, ActionConfig(), load_catalogue())
    assert planned["retention_flag"].tolist() == lapsed.tolist()
    plans = planned.loc[lapsed, "next_actions"].map(json.loads)
    assert plans.map(lambda plan: all(a["kind"] == "retention" for a in plan)).all()


def test_the_contact_list_ranks_the_flagged_worth_contacting_with_reasons_in_their_own_numbers():
    f = _features()
    rhythm = cadence(f, SegmentConfig())
    rhythm["spend_last_year"] = [1240.0, 800.0, 50.0, 300.0, 90.0, np.nan]
    p = pd.DataFrame({
        "customer_id": f["customer_id"], "segment": "at_risk",
        "retention_flag": [True, False, True, False, True, True],
        "contact_profit": [12.0, 30.0, -1.0, 5.0, 40.0, 2.0],
        "next_actions": [json.dumps([{"action": "Call them", "kind": "retention"}])] * 6,
    })  # fmt: skip
    churn, kept = np.array([0.4, 0.1, 0.9, 0.2, 0.4, 0.7]), np.array([100.0, 50, 10, 20, 300, 5])
    result = contact_list(p, rhythm, churn, kept, lapsed_churn_rate=0.41)
    c = result.contacts
    assert list(c.columns) == list(CONTACT_COLUMNS)
    assert c["customer_id"].tolist() == ["nomed", "reg", "once"]  # flagged, gain > 0, best gain first
    assert c["rank"].tolist() == [1, 2, 3] and result.flagged == 4 and result.not_worth == 1
    assert c["value_at_stake"].tolist() == [120.0, 40.0, 3.5]  # decision churn × value if retained
    assert result.total_gain == pytest.approx(54.0) and c["action"].eq("Call them").all()
    assert c["reason"].iloc[1] == (
        "usually buys every 10 days; silent for 90 days (9 of their usual gaps); 21 purchase days; "
        "spent 1,240 in the last year; regulars this silent churned 41% in the past"
    )
    assert c["reason"].iloc[2] == "churn risk 70% (at risk); last purchase 300 days ago; 1 purchase day"


def test_the_save_rate_band_recounts_whom_to_contact_at_half_and_twice_the_assumed_rate():
    flagged = np.array([True, True, True, False])
    churn, kept = np.array([0.9, 0.5, 0.2, 0.9]), np.array([200.0, 100.0, 100.0, 1000.0])
    band = save_rate_sensitivity(flagged, churn, kept, ProfitConfig(save_rate=0.3))
    # π = p·s·v − 1 − 10·(p·s + (1 − p)·1): at s = 0.15 the first two pay (23.65 and 0.75), the third does
    # not (−6.3); at s = 0.6 all three flagged do (100.6, 21, 1.8); the unflagged fourth never counts
    assert band[0.15] == (2, pytest.approx(23.65 + 0.75))
    assert band[0.6] == (3, pytest.approx(100.6 + 21 + 1.8)) and set(band) == {0.15, 0.6}
    assert set(save_rate_sensitivity(flagged, churn, kept, ProfitConfig(save_rate=0.8))) == {0.4, 1.0}  # capped


def test_lapse_settings_are_checked():
    with pytest.raises(ConfigError, match="lapsed_min_purchase_days"):
        SegmentConfig(lapsed_min_purchase_days=1)
