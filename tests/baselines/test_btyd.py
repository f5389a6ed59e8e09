"""BTYD baselines: the published CDNOW BG/NBD and Pareto/NBD fits, equations against lifetimes, a quadrature
and a simulation, churn-probability limits, and both baselines on CDNOW's holdout."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import astuple
from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from lifetimes import BetaGeoFitter, ParetoNBDFitter
from scipy.integrate import quad
from scipy.special import gammaln

from custseq.baselines.base import WindowTables
from custseq.baselines.btyd import (
    BgNbdParams,
    ParetoNbdParams,
    bgnbd_no_purchase_probability,
    bgnbd_p_alive,
    fit_bgnbd,
    fit_pareto_nbd,
    pareto_nbd_expected_purchases,
    pareto_nbd_log_likelihood,
    pareto_nbd_no_purchase_probability,
    pareto_nbd_p_alive,
    predict_btyd,
    predict_pareto_nbd,
)
from custseq.baselines.simple import Btyd, ParetoNbd
from custseq.config import FeatureConfig
from custseq.features.rfm import build_features
from custseq.io.engine import connect
from custseq.labels import build_labels
from custseq.metrics import roc_auc
from custseq.validate.tables import validate_tables
from custseq.windows import Window, cutoff_of

PUBLISHED = BgNbdParams(r=0.2426, alpha=4.4135, a=0.7929, b=2.4258)  # Fader, Hardie & Lee (2005), weeks
# Fader, Hardie & Lee (2005), "RFM and CLV", Journal of Marketing Research 42(4); weeks; log-likelihood -9595.0
PUBLISHED_PARETO = ParetoNbdParams(r=0.5534, alpha=10.5802, s=0.6061, beta=11.6562)
ONLINE_RETAIL_LIKE = ParetoNbdParams(r=0.83, alpha=69.1, s=0.1, beta=1594.0)  # days; β >> α as fitted there


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


def _rfm(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(summary[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))


def test_pareto_nbd_reproduces_the_published_cdnow_fit(cdnow_summary):
    x, t_x, T = _rfm(cdnow_summary)
    params = fit_pareto_nbd(x, t_x, T)
    # The likelihood is nearly flat along s and β together (their ratio, the mean dropout rate, is what the
    # data pin down), and this summary rounds recency and T to 0.01 week: the optimum found lies 0.02-0.09%
    # from the published parameters (β the farthest), with the same log-likelihood to 3e-5. rel=2e-3 allows
    # that and is 30x tighter than the parameters' standard errors (5-10%).
    for name in ("r", "alpha", "s", "beta"):
        assert getattr(params, name) == pytest.approx(getattr(PUBLISHED_PARETO, name), rel=2e-3), name
    log_likelihood = pareto_nbd_log_likelihood(params, x, t_x, T).sum()
    assert log_likelihood == pytest.approx(-9595.0, abs=0.05)
    assert log_likelihood >= pareto_nbd_log_likelihood(PUBLISHED_PARETO, x, t_x, T).sum() - 1e-6


def test_pareto_nbd_equations_match_lifetimes(cdnow_summary):
    x, t_x, T = _rfm(cdnow_summary)
    theirs = ParetoNBDFitter()
    theirs.params_ = pd.Series(dict(zip(("r", "alpha", "s", "beta"), astuple(PUBLISHED_PARETO), strict=True)))
    their_log_likelihood = ParetoNBDFitter._conditional_log_likelihood(astuple(PUBLISHED_PARETO), x, t_x, T)
    assert np.allclose(pareto_nbd_log_likelihood(PUBLISHED_PARETO, x, t_x, T), their_log_likelihood, rtol=1e-10)
    assert np.allclose(
        pareto_nbd_p_alive(PUBLISHED_PARETO, x, t_x, T), theirs.conditional_probability_alive(x, t_x, T), atol=1e-10
    )
    for t in (1.0, 39.0):
        expected = theirs.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T)
        assert np.allclose(pareto_nbd_expected_purchases(PUBLISHED_PARETO, x, t_x, T, t), expected, rtol=1e-9)
        quiet = theirs.conditional_probability_of_n_purchases_up_to_time(0, t, x, t_x, T)
        assert np.allclose(pareto_nbd_no_purchase_probability(PUBLISHED_PARETO, x, t_x, T, t), quiet, atol=1e-10)


def _log_likelihood_by_quadrature(p: ParetoNbdParams, x: float, t_x: float, T: float) -> float:
    """The integral form in ``pareto_nbd_log_likelihood``'s docstring, integrated numerically."""

    def log_f(w: float) -> float:
        return -(p.r + x) * np.log(p.alpha + w) - (p.s + 1) * np.log(p.beta + w)

    decay = (p.alpha + t_x) / (p.r + x + p.s + 1)  # the integrand falls by e over about this much time
    integral, _ = quad(
        lambda w: np.exp(log_f(w) - log_f(t_x)), t_x, T, points=[min(T, t_x + k * decay) for k in (1, 10, 100)],
        limit=500, epsabs=0, epsrel=1e-12,
    )  # fmt: skip
    alive = -(p.r + x) * np.log(p.alpha + T) - p.s * np.log(p.beta + T)
    dead = np.log(p.s) + log_f(t_x) + np.log(integral)
    prior = gammaln(p.r + x) - gammaln(p.r) + p.r * np.log(p.alpha) + p.s * np.log(p.beta)
    return float(prior + np.logaddexp(alive, dead))


@pytest.mark.parametrize("params", [PUBLISHED_PARETO, ONLINE_RETAIL_LIKE, ParetoNbdParams(0.61, 95.3, 0.31, 43.06)])
def test_pareto_nbd_log_likelihood_matches_quadrature(params):
    histories = [(0, 0, 39), (3, 10, 39), (100, 5, 39), (250, 10, 370), (600, 360, 370), (2000, 10, 370)]
    for x, t_x, T in histories:
        ours = pareto_nbd_log_likelihood(params, np.array([x]), np.array([t_x]), np.array([T]))[0]
        assert ours == pytest.approx(_log_likelihood_by_quadrature(params, x, t_x, T), rel=1e-10), (x, t_x, T)


def test_pareto_nbd_stays_finite_for_frequent_buyers_where_lifetimes_overflows():
    x, t_x, T = np.array([250.0, 600.0, 2000.0]), np.array([10.0, 360.0, 369.0]), np.full(3, 370.0)
    with np.errstate(all="ignore"):
        theirs = ParetoNBDFitter._conditional_log_likelihood(astuple(ONLINE_RETAIL_LIKE), x, t_x, T)
    assert np.isnan(theirs).all()  # why this module has its own Pareto/NBD
    assert np.isfinite(pareto_nbd_log_likelihood(ONLINE_RETAIL_LIKE, x, t_x, T)).all()
    alive = pareto_nbd_p_alive(ONLINE_RETAIL_LIKE, x, t_x, T)
    assert alive[0] < 1e-6 and alive[2] > 0.99  # 250 purchases, then silent for a year; bought yesterday
    horizons = (1.0, 30.0, 90.0, 365.0)
    quiet = np.array([pareto_nbd_no_purchase_probability(ONLINE_RETAIL_LIKE, x, t_x, T, t) for t in horizons])
    assert np.all((quiet >= 0) & (quiet <= 1)) and np.all(np.diff(quiet, axis=0) <= 1e-12)
    purchases = np.array([pareto_nbd_expected_purchases(ONLINE_RETAIL_LIKE, x, t_x, T, t) for t in horizons])
    assert np.all(np.isfinite(purchases)) and np.all(np.diff(purchases, axis=0) >= 0)
    # alive for sure and dropout rates are tiny: about the posterior mean rate (r + x) / (α + T), for a year
    rate = (ONLINE_RETAIL_LIKE.r + 2000) / (ONLINE_RETAIL_LIKE.alpha + 370)
    assert purchases[-1, 2] == pytest.approx(rate * 365, rel=0.05)


def test_pareto_nbd_no_purchase_probability_limits_and_a_hand_value():
    x, t_x, T = np.array([0.0, 2.0, 5.0, 30.0]), np.array([0.0, 10.0, 30.0, 5.0]), np.full(4, 39.0)
    p = PUBLISHED_PARETO
    assert np.all(pareto_nbd_no_purchase_probability(p, x, t_x, T, 0.0) == 1.0)  # nothing can happen in no time
    alive = pareto_nbd_p_alive(p, x, t_x, T)
    horizons = (1e-6, 1.0, 13.0, 39.0, 1e3, 1e6)
    quiet = np.array([pareto_nbd_no_purchase_probability(p, x, t_x, T, t) for t in horizons])
    assert np.all(np.diff(quiet, axis=0) <= 1e-12) and np.all(quiet[0] > 1 - 1e-5)
    assert quiet[-1, 3] == pytest.approx(1.0) and alive[3] < 1e-6  # 30 purchases in 5 weeks, then silence
    assert np.all(quiet >= 1 - alive - 1e-12) and np.all(quiet <= 1)  # the dead never buy, the alive may not
    # With α = β the integral is elementary: P = ((r+x)(α+T+t)^-c + s(α+t_x)^-c) / ((r+x)(α+T)^-c + s(α+t_x)^-c),
    # c = r + s + x. Both closed forms of the code (α >= β and α < β) must give it.
    r, s, t = 0.55, 0.6, 39.0
    for alpha, beta in ((10.0, 10.0), (10.0, 10.0 + 1e-9)):
        c = r + s + x
        hand = ((r + x) * (alpha + T + t) ** -c + s * (alpha + t_x) ** -c) / (
            (r + x) * (alpha + T) ** -c + s * (alpha + t_x) ** -c
        )
        ours = pareto_nbd_no_purchase_probability(ParetoNbdParams(r, alpha, s, beta), x, t_x, T, t)
        assert ours == pytest.approx(hand, rel=1e-7)


def _simulate_pareto_nbd(p: ParetoNbdParams, n: int, T: float, t: float, seed: int):
    """Customers drawn from Pareto/NBD, observed for T: their (x, t_x) and their purchases in (T, T + t]."""
    rng = np.random.default_rng(seed)
    rate, dropout = rng.gamma(p.r, 1 / p.alpha, n), rng.gamma(p.s, 1 / p.beta, n)
    active_until = np.minimum(rng.exponential(1 / dropout), T + t)
    n_purchases = rng.poisson(rate * active_until)  # repeat purchases: the first is at time 0
    owner = np.repeat(np.arange(n), n_purchases)
    times = rng.uniform(0, np.repeat(active_until, n_purchases))
    past = times <= T
    x = np.bincount(owner[past], minlength=n).astype(np.float64)
    t_x = np.zeros(n)
    np.maximum.at(t_x, owner[past], times[past])
    return x, t_x, np.bincount(owner[~past], minlength=n)


def test_pareto_nbd_predictions_match_a_simulation():
    # Averaged over the customers of any group defined by their history, P(no purchase | history) must be the
    # group's share of customers without a purchase, and the expected purchases its mean count.
    T, t, n = 39.0, 39.0, 40_000
    x, t_x, future = _simulate_pareto_nbd(PUBLISHED_PARETO, n, T, t, seed=0)
    quiet = pareto_nbd_no_purchase_probability(PUBLISHED_PARETO, x, t_x, np.full(n, T), t)
    purchases = pareto_nbd_expected_purchases(PUBLISHED_PARETO, x, t_x, np.full(n, T), t)
    groups = {
        "no repeat": x == 0, "1-3 repeats": (x >= 1) & (x <= 3),
        "4+ recent": (x >= 4) & (t_x > T / 2), "4+ stale": (x >= 4) & (t_x <= T / 2),
    }  # fmt: skip
    for name, members in groups.items():
        assert members.sum() > 300, name
        observed = (future[members] == 0).mean()
        standard_error = np.sqrt(observed * (1 - observed) / members.sum())
        assert quiet[members].mean() == pytest.approx(observed, abs=4 * standard_error), name
        standard_error = future[members].std() / np.sqrt(members.sum())
        assert purchases[members].mean() == pytest.approx(future[members].mean(), abs=4 * standard_error), name


@pytest.fixture(scope="module")
def cdnow_holdout() -> WindowTables:
    """The CDNOW sample as custseq sees it: features as of 1997-09-30, labels over the 39 weeks after."""
    raw = pd.read_csv(
        Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt", sep=r"\s+", header=None,
        names=["customer_id", "sample_id", "date", "cds", "amount"], dtype={"customer_id": str, "date": str},
    )  # fmt: skip
    df = pd.DataFrame(
        {"customer_id": raw["customer_id"], "ts": pd.to_datetime(raw["date"], format="%Y%m%d"), "amount": raw["amount"]}
    )
    con = connect()
    tx = validate_tables(con, df).tables["transactions"]
    window = Window(cutoff_of(dt.date(1997, 9, 30)), 273)
    return WindowTables(build_features(con, tx, window, FeatureConfig()), build_labels(con, tx, window), 273)


@pytest.mark.parametrize("make", [ParetoNbd, Btyd], ids=["pareto-nbd", "bg-nbd"])
def test_btyd_baselines_predict_the_cdnow_holdout(cdnow_holdout, make):
    model = make().fit([])
    p = model.predict(cdnow_holdout)
    assert p.customer_ids == cdnow_holdout.customer_ids
    assert np.all((p.churn_probability >= 0) & (p.churn_probability <= 1))
    assert np.all(np.isfinite(p.value)) and np.all(p.value >= 0)
    churned, _ = cdnow_holdout.label_arrays()
    assert roc_auc(churned, p.churn_probability) > 0.72, model.name  # measured: Pareto/NBD 0.771, BG/NBD 0.755


def test_pareto_nbd_on_days_is_the_weekly_fit_and_forecasts_the_holdout(cdnow_holdout):
    p = predict_pareto_nbd(cdnow_holdout.features, cdnow_holdout.horizon_days)
    # the same customers in days: r and s unchanged, α and β 7x the weekly ones
    scaled = (p.params.r, p.params.alpha / 7, p.params.s, p.params.beta / 7)
    assert scaled == pytest.approx(astuple(PUBLISHED_PARETO), rel=2e-3)
    actual = cdnow_holdout.labels.column("purchases").to_numpy().sum()  # 1882 purchase days in 39 weeks
    # measured 1666 (-11%): both BTYD models under-forecast CDNOW's holdout (BG/NBD here: 1770)
    assert p.expected_purchases.sum() == pytest.approx(actual, rel=0.15)


def test_pareto_nbd_baseline_fits_and_predicts_a_tiny_window(cdnow_summary):
    s = cdnow_summary.head(60)
    features = pa.table({
        "customer_id": [f"c{i}" for i in range(len(s))],
        "frequency": s["frequency"].astype(float), "recency": s["recency"] * 7.0, "T": s["T"] * 7.0,
        "monetary_value": np.where(s["frequency"] > 0, 25.0, 0.0),
    })  # fmt: skip
    p = ParetoNbd().fit([]).predict(WindowTables(features, None, 91))
    assert p.customer_ids == features.column("customer_id").to_pylist()
    assert np.all((p.churn_probability > 0) & (p.churn_probability < 1))
    repeat = s["frequency"].to_numpy() > 0
    assert np.all(p.value[~repeat] >= 0) and np.all(p.value[repeat] > 0)  # fewer than 20 repeaters: mean spend
    assert ParetoNbd.name == "Pareto/NBD + Gamma-Gamma"


def _cdnow_features(summary: pd.DataFrame, n: int = 800) -> pa.Table:
    s = summary.head(n)
    rng = np.random.default_rng(0)
    return pa.table({
        "customer_id": [f"c{i}" for i in range(len(s))],
        "frequency": s["frequency"].astype(float), "recency": s["recency"] * 7.0, "T": s["T"] * 7.0,
        "monetary_value": np.where(s["frequency"] > 0, rng.gamma(2.0, 20.0, len(s)), 0.0),
    })  # fmt: skip


def test_a_saved_btyd_fit_reads_any_batch_as_the_population_it_was_fitted_on(cdnow_summary):
    from custseq.baselines.btyd import BtydFit, fit_btyd

    features = _cdnow_features(cdnow_summary)
    fit = fit_btyd(features)
    assert fit.spend.gamma_gamma is not None  # enough repeat buyers
    restored = BtydFit.from_json(json.loads(json.dumps(fit.to_json())))
    assert restored == fit
    whole = predict_btyd(features, 91)
    three = predict_btyd(features.slice(10, 3), 91, fit=restored)  # too few customers to fit on their own
    for name in ("p_alive", "churn_probability", "expected_purchases", "value"):
        assert np.allclose(getattr(three, name), getattr(whole, name)[10:13], rtol=1e-12), name


def test_spend_matches_lifetimes_gamma_gamma(cdnow_summary):
    from lifetimes import GammaGammaFitter

    from custseq.baselines.btyd import fit_btyd

    features = _cdnow_features(cdnow_summary)
    df = features.to_pandas()
    repeat = df[(df["frequency"] > 0) & (df["monetary_value"] > 0)]
    gg = GammaGammaFitter(penalizer_coef=fit_btyd(features).penalizer).fit(
        repeat["frequency"], repeat["monetary_value"]
    )
    theirs = gg.conditional_expected_average_profit(df["frequency"], df["monetary_value"])
    ours = fit_btyd(features).spend.spend(df["frequency"].to_numpy(), df["monetary_value"].to_numpy())
    assert np.allclose(ours, theirs, rtol=1e-9)
