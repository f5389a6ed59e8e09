"""BTYD ("buy till you die") models: BG/NBD for purchases and P(alive), Gamma-Gamma for spend.

Fitted with ``lifetimes`` (maximum likelihood, CPU, seconds): PyMC-Marketing fits the same models by
MCMC/MAP but needs PyMC and a compiler tool-chain, heavy for a baseline that must run on a laptop in
seconds. The models need no labels: they are fitted on the RFM summary of the window they predict
(``frequency``, ``recency``, ``T`` and ``monetary_value`` in the BTYD convention, all from rows before
its cutoff), in days.

Churn probability is P(no purchase in the horizon | history). For BG/NBD a customer drops out only
right after a purchase, so one who is alive at T and buys nothing stays alive, and

    P(X(T, T + t) = 0 | x, t_x, T) = 1 − P(alive) + P(alive) · ((α + T) / (α + T + t))^(r + x)

(the Poisson rate's posterior given alive is Gamma(r + x, α + T); Fader, Hardie & Lee 2005).
Value = expected purchases in the horizon × Gamma-Gamma expected spend per purchase.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from custseq.errors import TrainingError

SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")


@dataclass(frozen=True)
class BtydPredictions:
    """Per customer, in the order of the features table."""

    customer_ids: list[str]
    p_alive: np.ndarray
    expected_purchases: np.ndarray
    churn_probability: np.ndarray
    value: np.ndarray
    params: BgNbdParams
    penalizer: float  # the L2 penalty the fit needed (lifetimes' optimiser diverges on some data without one)


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


def fit_bgnbd(frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, penalizer: float = 0.0) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters.

    Raises
    ------
    TrainingError
        If the optimiser does not converge (e.g. too few customers with repeat purchases).
    """
    from lifetimes import BetaGeoFitter

    model = BetaGeoFitter(penalizer_coef=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model.fit(frequency, recency, T)
    except Exception as e:  # lifetimes raises ConvergenceError or numpy errors on degenerate data
        raise TrainingError(f"BG/NBD did not fit these customers ({len(frequency)}): {e}") from None
    p = model.params_
    return BgNbdParams(float(p["r"]), float(p["alpha"]), float(p["a"]), float(p["b"]))


def bgnbd_p_alive(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive at T | x, t_x, T): 1 for customers without repeat purchases (they cannot have dropped out)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    log_ratio = (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    odds = (a / (b + np.maximum(x, 1) - 1)) * np.exp(log_ratio)
    return np.where(x > 0, 1.0 / (1.0 + odds), 1.0)


def bgnbd_no_purchase_probability(
    params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, t: float
) -> np.ndarray:
    """P(no purchase in (T, T + t] | x, t_x, T) under BG/NBD (see the module docstring)."""
    x, T = np.asarray(x, dtype=np.float64), np.asarray(T, dtype=np.float64)
    alive = bgnbd_p_alive(params, x, t_x, T)
    quiet_if_alive = np.exp((params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + T + t)))
    return 1.0 - alive + alive * quiet_if_alive


def predict_btyd(features: pa.Table, horizon_days: int, penalizer: float = 0.001) -> BtydPredictions:
    """Fit BG/NBD and Gamma-Gamma on one window's RFM summary and predict its horizon."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    df = features.select(list(SUMMARY_COLUMNS)).to_pandas()
    x, t_x, T = (df[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))
    params, penalizer = _fit_with_fallback(x, t_x, T, penalizer)
    bg = BetaGeoFitter(penalizer_coef=penalizer)
    bg.params_ = pd.Series({"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b})
    purchases = bg.conditional_expected_number_of_purchases_up_to_time(horizon_days, x, t_x, T)
    spend = _gamma_gamma_spend(df, GammaGammaFitter, penalizer)
    return BtydPredictions(
        customer_ids=df["customer_id"].astype(str).tolist(),
        p_alive=bgnbd_p_alive(params, x, t_x, T),
        expected_purchases=np.asarray(purchases, dtype=np.float64),
        churn_probability=bgnbd_no_purchase_probability(params, x, t_x, T, horizon_days),
        value=np.asarray(purchases, dtype=np.float64) * spend,
        params=params,
        penalizer=penalizer,
    )


def _fit_with_fallback(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, penalizer: float) -> tuple[BgNbdParams, float]:
    """BG/NBD with ``penalizer``, then 10x and 100x stronger ones, as lifetimes advises when a fit diverges."""
    for attempt in (penalizer, penalizer * 10, penalizer * 100):
        try:
            return fit_bgnbd(x, t_x, T, attempt), attempt
        except TrainingError as e:
            error = e
    raise error


def _gamma_gamma_spend(df: pd.DataFrame, fitter: type, penalizer: float) -> np.ndarray:
    """Expected spend per purchase: Gamma-Gamma on repeat buyers with positive spend, else their mean."""
    repeat = df[(df["frequency"] > 0) & (df["monetary_value"] > 0)]
    fallback = float(repeat["monetary_value"].mean()) if len(repeat) else 0.0
    if len(repeat) < 20:
        return np.full(len(df), fallback)
    gg = fitter(penalizer_coef=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gg.fit(repeat["frequency"], repeat["monetary_value"])
    except Exception:  # a degenerate spend distribution: use the mean spend instead
        return np.full(len(df), fallback)
    spend = gg.conditional_expected_average_profit(df["frequency"], df["monetary_value"].clip(lower=0))
    return np.nan_to_num(np.asarray(spend, dtype=np.float64), nan=fallback)
