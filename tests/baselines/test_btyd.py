"""BTYD baseline: the published CDNOW BG/NBD fit, P(alive) against lifetimes, churn-probability limits."""

from __future__ import annotations

from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from lifetimes import BetaGeoFitter

from custseq.baselines.btyd import (
    BgNbdParams,
    bgnbd_no_purchase_probability,
    bgnbd_p_alive,
    fit_bgnbd,
    predict_btyd,
)

PUBLISHED = BgNbdParams(r=0.2426, alpha=4.4135, a=0.7929, b=2.4258)  # Fader, Hardie & Lee (2005), weeks


@pytest.fixture(scope="module")
def cdnow_summary():
    # The 2,357-customer CDNOW sample, 39-week calibration period, as lifetimes ships it (its loader needs
    # pkg_resources, which current setuptools no longer has).
    return pd.read_csv(Path(lifetimes.__file__).parent / "datasets" / "cdnow_customers_summary.csv")


def test_bgnbd_reproduces_the_published_cdnow_fit(cdnow_summary):
    s = cdnow_summary
    params = fit_bgnbd(s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy())
    for name in ("r", "alpha", "a", "b"):
        assert getattr(params, name) == pytest.approx(getattr(PUBLISHED, name), abs=2e-3), name


def test_p_alive_matches_lifetimes(cdnow_summary):
    s = cdnow_summary
    bg = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    params = BgNbdParams(*(float(bg.params_[k]) for k in ("r", "alpha", "a", "b")))
    ours = bgnbd_p_alive(params, s["frequency"], s["recency"], s["T"])
    theirs = bg.conditional_probability_alive(s["frequency"], s["recency"], s["T"])
    assert np.allclose(ours, theirs, atol=1e-9)


def test_no_purchase_probability_limits_and_a_hand_value():
    x, t_x, T = np.array([0.0, 2.0, 5.0]), np.array([0.0, 10.0, 30.0]), np.array([39.0, 39.0, 39.0])
    alive = bgnbd_p_alive(PUBLISHED, x, t_x, T)
    assert np.allclose(bgnbd_no_purchase_probability(PUBLISHED, x, t_x, T, 0.0), 1.0)
    assert np.allclose(bgnbd_no_purchase_probability(PUBLISHED, x, t_x, T, 1e30), 1 - alive, atol=1e-5)
    # x = 0: alive for sure, so P = ((α + T) / (α + T + t))^r; with t = 39 weeks:
    hand = ((4.4135 + 39) / (4.4135 + 39 + 39)) ** 0.2426
    assert bgnbd_no_purchase_probability(PUBLISHED, x[:1], t_x[:1], T[:1], 39.0)[0] == pytest.approx(hand)
    later = bgnbd_no_purchase_probability(PUBLISHED, x, t_x, T, 78.0)
    assert np.all(later <= bgnbd_no_purchase_probability(PUBLISHED, x, t_x, T, 39.0))


def test_predict_btyd_on_a_features_table(cdnow_summary):
    s = cdnow_summary.head(800)
    rng = np.random.default_rng(0)
    features = pa.table({
        "customer_id": [f"c{i}" for i in range(len(s))],
        "frequency": s["frequency"].astype(float), "recency": s["recency"] * 7.0, "T": s["T"] * 7.0,
        "monetary_value": np.where(s["frequency"] > 0, rng.gamma(2.0, 20.0, len(s)), 0.0),
    })  # fmt: skip
    p = predict_btyd(features, horizon_days=91)
    assert p.customer_ids[:2] == ["c0", "c1"] and len(p.value) == 800
    assert np.all((p.p_alive > 0) & (p.p_alive <= 1)) and np.all(
        (p.churn_probability >= 0) & (p.churn_probability <= 1)
    )
    assert np.all(p.value >= 0) and np.all(p.expected_purchases >= 0)
    # more repeat purchases, same recency and age: more expected purchases, lower churn
    busy, quiet = int(np.argmax(s["frequency"])), int(np.argmin(s["frequency"]))
    assert p.expected_purchases[busy] > p.expected_purchases[quiet]
