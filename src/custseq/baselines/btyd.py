"""BTYD ("buy till you die") baselines: BG/NBD or Pareto/NBD for purchases and P(alive), Gamma-Gamma for spend.

The models need no labels: they are fitted on the RFM summary of the window they predict
(``frequency``, ``recency``, ``T`` and ``monetary_value`` in the BTYD convention, all from rows before
its cutoff), in days. Fitting is maximum likelihood on the CPU, in seconds: PyMC-Marketing fits the same
models by MCMC/MAP but needs PyMC and a compiler tool-chain, heavy for a baseline that must run on a
laptop. The BG/NBD equations live in :mod:`custseq.features.btyd` (they also make features); this module
re-exports them.

Churn probability is P(no purchase in the horizon | history); value = expected purchases in the horizon
× Gamma-Gamma expected spend per purchase.

Pareto/NBD (Schmittlein, Morrison & Colombo 1987) is written here in log space rather than taken from
``lifetimes.ParetoNBDFitter``: lifetimes' likelihood evaluates ``2F1(r+s+x, r+x; r+s+x+1; z)``, which
overflows to NaN for frequent buyers when β > α (from x ≈ 250 at Online Retail's daily parameters), and
then its fit, P(alive), expected purchases and purchase probabilities are all NaN. The same likelihood
written with a Pfaff transformation (see :func:`pareto_nbd_log_likelihood`) has no term that grows with
x; it equals lifetimes' to 1e-10 where lifetimes is finite (tested).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from custseq.errors import TrainingError
from custseq.features.btyd import (
    DEFAULT_PENALIZER,
    BgNbdParams,
    bgnbd_expected_purchases,
    bgnbd_no_purchase_probability,
    bgnbd_p_alive,
    fit_bgnbd,
    with_penalizer_fallback,
)
from custseq.io.run_files import BgNbdFit

__all__ = [
    "BgNbdParams",
    "BtydPredictions",
    "ParetoNbdParams",
    "bgnbd_no_purchase_probability",
    "bgnbd_p_alive",
    "fit_bgnbd",
    "fit_pareto_nbd",
    "pareto_nbd_expected_purchases",
    "pareto_nbd_log_likelihood",
    "pareto_nbd_no_purchase_probability",
    "pareto_nbd_p_alive",
    "predict_btyd",
    "predict_pareto_nbd",
]

SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")
# Pareto/NBD log-parameters stay within e^±30: a rate heading to 0 or infinity (no dropout) stops there
# instead of overflowing, and predictions no longer change at that point.
LOG_PARAM_BOUNDS = (-30.0, 30.0)
# Tighter than scipy's defaults, which stop 1e-4 (relative) short along the flat s-β ridge of CDNOW's likelihood.
OPTIMISER_OPTIONS = {"gtol": 1e-7, "ftol": 1e-12}


@dataclass(frozen=True)
class ParetoNbdParams:
    """Pareto/NBD parameters: purchase rate ~ Gamma(r, α), dropout rate ~ Gamma(s, β)."""

    r: float
    alpha: float
    s: float
    beta: float


@dataclass(frozen=True)
class BtydPredictions:
    """Per customer, in the order of the features table."""

    customer_ids: list[str]
    p_alive: np.ndarray
    expected_purchases: np.ndarray
    churn_probability: np.ndarray
    value: np.ndarray
    params: BgNbdParams | ParetoNbdParams
    penalizer: float  # the L2 penalty the fit needed (the optimiser diverges on some data without one)


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma spend parameters (Fader, Hardie & Lee 2005, "RFM and CLV")."""

    p: float
    q: float
    v: float


@dataclass(frozen=True)
class SpendModel:
    """Expected spend per purchase: Gamma-Gamma, or the repeat buyers' mean spend where it could not be fitted."""

    gamma_gamma: GammaGammaParams | None
    mean_spend: float

    def spend(self, frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
        """Per customer: Gamma-Gamma's weighted mean of their own spend and the population's, or the mean."""
        if self.gamma_gamma is None:
            return np.full(len(frequency), self.mean_spend)
        p, q, v = self.gamma_gamma.p, self.gamma_gamma.q, self.gamma_gamma.v
        x, m = np.asarray(frequency, np.float64), np.clip(np.asarray(monetary_value, np.float64), 0, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = p * x / (p * x + q - 1)
            spend = (1 - weight) * (v * p / (q - 1)) + weight * m
        return np.nan_to_num(spend, nan=self.mean_spend)


@dataclass(frozen=True)
class BtydFit:
    """BG/NBD + Gamma-Gamma fitted once, on the population a model was trained for (the scoring window of
    ``predict``), and saved with the model: ``score`` then reads any batch, even of one customer, with the same
    parameters, so that a customer's numbers do not depend on who else is in the batch."""

    bgnbd: BgNbdParams
    penalizer: float
    spend: SpendModel

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def record(self) -> BgNbdFit:
        """The BG/NBD part as run files (and the BG/NBD features) record it."""
        return BgNbdFit(model="BG/NBD", penalizer=self.penalizer, **asdict(self.bgnbd))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BtydFit:
        spend = d["spend"]
        gg = spend["gamma_gamma"]
        return cls(
            bgnbd=BgNbdParams(**d["bgnbd"]),
            penalizer=float(d["penalizer"]),
            spend=SpendModel(GammaGammaParams(**gg) if gg is not None else None, float(spend["mean_spend"])),
        )


def fit_btyd(features: pa.Table, penalizer: float = DEFAULT_PENALIZER, bgnbd: BgNbdFit | None = None) -> BtydFit:
    """BG/NBD (with the penalty fallback) and Gamma-Gamma on one window's RFM summary; ``bgnbd`` is a BG/NBD
    already fitted on it (the window's ``btyd_*`` features), so that only Gamma-Gamma is fitted here.

    Raises
    ------
    TrainingError
        If BG/NBD does not fit even with a 100x stronger penalty.
    """
    df, x, t_x, T = _summary(features)
    if bgnbd is not None:
        params, penalizer = BgNbdParams(bgnbd.r, bgnbd.alpha, bgnbd.a, bgnbd.b), bgnbd.penalizer
    else:
        params, penalizer = with_penalizer_fallback(lambda p: fit_bgnbd(x, t_x, T, p), penalizer)
    return BtydFit(params, penalizer, _fit_spend(df, penalizer))


def predict_btyd(
    features: pa.Table, horizon_days: int, penalizer: float = DEFAULT_PENALIZER, fit: BtydFit | None = None
) -> BtydPredictions:
    """BG/NBD and Gamma-Gamma's predictions of one window's horizon: fitted on its RFM summary, or ``fit``.

    Raises
    ------
    TrainingError
        If BG/NBD does not fit even with a 100x stronger penalty.
    """
    fit = fit or fit_btyd(features, penalizer)
    df, x, t_x, T = _summary(features)
    params = fit.bgnbd
    purchases = bgnbd_expected_purchases(params, x, t_x, T, horizon_days)
    return BtydPredictions(
        customer_ids=df["customer_id"].astype(str).tolist(),
        p_alive=bgnbd_p_alive(params, x, t_x, T),
        expected_purchases=purchases,
        churn_probability=bgnbd_no_purchase_probability(params, x, t_x, T, horizon_days),
        value=purchases * fit.spend.spend(df["frequency"].to_numpy(), df["monetary_value"].to_numpy()),
        params=params,
        penalizer=fit.penalizer,
    )


def predict_pareto_nbd(features: pa.Table, horizon_days: int, penalizer: float = DEFAULT_PENALIZER) -> BtydPredictions:
    """Fit Pareto/NBD and Gamma-Gamma on one window's RFM summary and predict its horizon.

    Raises
    ------
    TrainingError
        If Pareto/NBD does not fit even with a 100x stronger penalty.
    """
    df, x, t_x, T = _summary(features)
    params, penalizer = with_penalizer_fallback(lambda p: fit_pareto_nbd(x, t_x, T, p), penalizer)
    purchases = pareto_nbd_expected_purchases(params, x, t_x, T, horizon_days)
    return BtydPredictions(
        customer_ids=df["customer_id"].astype(str).tolist(),
        p_alive=pareto_nbd_p_alive(params, x, t_x, T),
        expected_purchases=purchases,
        churn_probability=pareto_nbd_no_purchase_probability(params, x, t_x, T, horizon_days),
        value=purchases * _gamma_gamma_spend(df, penalizer),
        params=params,
        penalizer=penalizer,
    )


def fit_pareto_nbd(
    frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, penalizer: float = 0.0
) -> ParetoNbdParams:
    """Maximum-likelihood Pareto/NBD parameters.

    The objective is lifetimes' (``ParetoNBDFitter``): minus the log-likelihood with time scaled so that the
    oldest customer's T is 1, plus ``penalizer`` × the sum of squared (scaled) parameters. It is minimised
    over log-parameters by L-BFGS-B from all parameters 1 (lifetimes' Nelder-Mead reaches the same optimum
    with 4-6x as many likelihood evaluations), on each distinct history once, weighted by its count (the
    same sum, computed fewer times).

    Parameters
    ----------
    frequency, recency, T
        Repeat purchases, time from first to last purchase, and time from first purchase to the end of
        the calibration period, per customer (one time unit throughout).
    penalizer
        L2 penalty on the scaled parameters.

    Returns
    -------
    ParetoNbdParams
        In the input's time unit.

    Raises
    ------
    TrainingError
        If the data cannot be fitted (no customer with T > 0) or the optimiser does not converge.
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
    if not len(T) or not T.max() > 0:
        raise TrainingError(f"Pareto/NBD needs customers observed for some time; got {len(T)} with max T 0")
    scale = 1.0 / T.max()
    histories, counts = np.unique(np.column_stack([x, t_x * scale, T * scale]), axis=0, return_counts=True)

    def objective(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        log_likelihood = pareto_nbd_log_likelihood(ParetoNbdParams(*params), *histories.T)
        # per customer: L-BFGS-B's first step is the gradient itself, and a summed one jumps to the bounds
        return (-float(counts @ log_likelihood) + penalizer * float(params @ params)) / len(T)

    with np.errstate(all="ignore"):
        result = minimize(
            objective, np.zeros(4), method="L-BFGS-B", bounds=[LOG_PARAM_BOUNDS] * 4, options=OPTIMISER_OPTIONS
        )
    if not (result.success and np.isfinite(result.fun)):
        raise TrainingError(f"Pareto/NBD did not fit these customers ({len(T)}): {result.message}")
    r, alpha, s, beta = np.exp(result.x)
    return ParetoNbdParams(float(r), float(alpha / scale), float(s), float(beta / scale))


def pareto_nbd_log_likelihood(params: ParetoNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood of a history (x, t_x, T) under Pareto/NBD.

    Given rates λ, μ the likelihood is ``λ^x e^{-(λ+μ)T} + λ^x μ ∫_{t_x}^T e^{-(λ+μ)w} dw`` (alive at T, or
    died in (t_x, T]); mixing over λ ~ Gamma(r, α) and μ ~ Gamma(s, β)::

        L = Γ(r+x)/Γ(r) α^r β^s [(α+T)^-(r+x) (β+T)^-s + s ∫_{t_x}^T (α+w)^-(r+x) (β+w)^-(s+1) dw]

    which is equation (18) of Fader & Hardie (2005), "A note on deriving the Pareto/NBD model and related
    expressions" (brucehardie.com/notes/009). The integral is evaluated in closed form, in log space.
    """
    r, alpha, s, beta = _unpack(params)
    x = np.asarray(x, dtype=np.float64)
    prior = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return prior + np.logaddexp(*_log_alive_and_dead(params, x, t_x, T))


def pareto_nbd_p_alive(params: ParetoNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive at T | x, t_x, T): the alive term's share of the likelihood (note 009, equation (19))."""
    alive, dead = _log_alive_and_dead(params, x, t_x, T)
    return np.exp(alive - np.logaddexp(alive, dead))


def pareto_nbd_expected_purchases(
    params: ParetoNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, t: float
) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T] under Pareto/NBD (note 009, equation (41)).

    ``P(alive) · (r+x)(β+T)/(α+T) · (1 − ((β+T)/(β+T+t))^(s−1)) / (s−1)``; the last factor tends to
    ``ln((β+T+t)/(β+T))`` at s = 1, where the textbook form is 0/0.
    """
    r, alpha, s, beta = _unpack(params)
    x, T = np.asarray(x, dtype=np.float64), np.asarray(T, dtype=np.float64)
    log_growth = np.log1p(t / (beta + T))
    per_rate = log_growth if s == 1 else -np.expm1(-(s - 1) * log_growth) / (s - 1)
    return pareto_nbd_p_alive(params, x, t_x, T) * (r + x) * (beta + T) / (alpha + T) * per_rate


def pareto_nbd_no_purchase_probability(
    params: ParetoNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, t: float
) -> np.ndarray:
    """P(no purchase in (T, T + t] | x, t_x, T) under Pareto/NBD.

    Seeing the history and then no purchase until T + t is the history (x, t_x, T + t), so the probability
    is the likelihood ratio ``L(x, t_x, T + t) / L(x, t_x, T)`` (the factors of the purchase times cancel).
    It equals lifetimes' ``conditional_probability_of_n_purchases_up_to_time(0, t, ...)`` (Fader, Hardie &
    Shang 2010 note 028, equation (16)) and a simulation (tested), and stays finite for frequent buyers.
    """
    T = np.asarray(T, dtype=np.float64)
    later = np.logaddexp(*_log_alive_and_dead(params, x, t_x, T + t))
    now = np.logaddexp(*_log_alive_and_dead(params, x, t_x, T))
    return np.clip(np.exp(later - now), 0.0, 1.0)


def _log_alive_and_dead(
    params: ParetoNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two terms in brackets of :func:`pareto_nbd_log_likelihood`, as logs: alive at T, died in (t_x, T]."""
    r, alpha, s, beta = _unpack(params)
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    since_last, since_end = _log_tail_integral(params, x, t_x), _log_tail_integral(params, x, T)
    with np.errstate(divide="ignore"):  # t_x = T: nobody can have died in between, log 0 = -inf
        dead = np.log(s) + since_last + np.log(-np.expm1(since_end - since_last))
    return alive, dead


def _log_tail_integral(params: ParetoNbdParams, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log ∫_y^∞ (α+w)^-(r+x) (β+w)^-(s+1) dw.

    With u = (α+y)/(α+w) the integral is ``(α+y)^-c / c · 2F1(s+1, c; c+1; (α−β)/(α+y))``, c = r+s+x. When
    β > α the argument is negative; Pfaff's transformation turns it into
    ``(α+y)^-(r+x−1) (β+y)^-(s+1) / c · 2F1(s+1, 1; c+1; (β−α)/(β+y))``. Either way the argument lies in
    [0, 1) and the series' terms shrink with x, so frequent buyers cannot overflow it.
    """
    r, alpha, s, beta = _unpack(params)
    c = r + s + x
    if alpha >= beta:
        return -c * np.log(alpha + y) - np.log(c) + np.log(hyp2f1(s + 1, c, c + 1, (alpha - beta) / (alpha + y)))
    series = hyp2f1(s + 1, 1.0, c + 1, (beta - alpha) / (beta + y))
    return -(r + x - 1) * np.log(alpha + y) - (s + 1) * np.log(beta + y) - np.log(c) + np.log(series)


def _unpack(params: ParetoNbdParams) -> tuple[float, float, float, float]:
    return params.r, params.alpha, params.s, params.beta


def _summary(features: pa.Table) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    df = features.select(list(SUMMARY_COLUMNS)).to_pandas()
    x, t_x, T = (df[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))
    return df, x, t_x, T


def _fit_spend(df: pd.DataFrame, penalizer: float) -> SpendModel:
    """Gamma-Gamma on repeat buyers with positive spend; their mean spend where there are too few or it fails."""
    from lifetimes import GammaGammaFitter

    repeat = df[(df["frequency"] > 0) & (df["monetary_value"] > 0)]
    fallback = float(repeat["monetary_value"].mean()) if len(repeat) else 0.0
    if len(repeat) < 20:
        return SpendModel(None, fallback)
    gg = GammaGammaFitter(penalizer_coef=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gg.fit(repeat["frequency"], repeat["monetary_value"])
    except Exception:  # a degenerate spend distribution: use the mean spend instead
        return SpendModel(None, fallback)
    p = gg.params_
    return SpendModel(GammaGammaParams(float(p["p"]), float(p["q"]), float(p["v"])), fallback)


def _gamma_gamma_spend(df: pd.DataFrame, penalizer: float) -> np.ndarray:
    """Expected spend per purchase of each customer of ``df``, Gamma-Gamma fitted on ``df`` (:func:`_fit_spend`)."""
    return _fit_spend(df, penalizer).spend(df["frequency"].to_numpy(), df["monetary_value"].to_numpy())
