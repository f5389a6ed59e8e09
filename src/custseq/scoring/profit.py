"""Profit simulation of a retention campaign: what contacting the top k customers would earn, for every k.

Contacting customer i costs ``c`` (``contact_cost``). If i would churn (probability ``p_i``), the offer keeps
them with probability ``s`` (``save_rate``); a kept customer redeems the offer (``f``, ``offer_cost``) and
brings ``v_i``, their value if retained, while a would-be churner the offer does not keep churns and redeems
nothing. If i would not churn (``1 − p_i``), contacting adds no value, but with probability ``t``
(``take_rate``) they redeem the offer anyway. The expected profit of contacting i is therefore::

    π_i = p_i · s · v_i − c − f · (p_i · s + (1 − p_i) · t)

and of contacting a set S, Σ_{i ∈ S} π_i (a contact changes only the contacted customer). This is the
per-customer profit of the churn campaign of Verbraken, Verbeke & Baesens (2013), "A novel profit maximizing
metric for measuring classification performance of customer churn prediction models", IEEE TKDE 25(5), with
each customer's own p_i and v_i, and t a setting (they take t = 1).

The value if retained, ``v_i``, is the value model's own expected value given a purchase in the horizon,
``clv_if_active_i`` (the zero-inflated lognormal's ``exp(μ + σ²/2)``): churn is no purchase within the
horizon, so a kept customer is one who buys. Where that column is absent or not finite (a point-regression
value head), ``v_i = clv_expected_i · min(1 / (1 − p_i), max_value_multiplier)``, since
``clv_expected_i = (1 − p_i) · E[value_i | retained]`` when both heads agree. They often do not: the churn head
is calibrated, the value head's P(value > 0) is not, and near p_i = 1 the ratio magnifies the difference (on
CDNOW it credited hibernating customers with 20 times their expected value, and the best campaign with
nearly the whole horizon's revenue), hence the preference for the value head's own conditional mean and the
cap. ``clv_expected`` itself would count the churn risk twice (p_i · s · clv_expected_i) and undervalue
exactly the customers a campaign is for; ``clv_p50``, the median of a zero-inflated value, is 0 for most of
them. Value counts within the horizon only: what a kept customer brings later is left out, so the profits
are conservative.

The profit curve contacts the top k customers, k = 0 … n, under three orderings:

- ``saved_value``: π_i, descending (the expected saved value net of costs). Its best k contacts exactly the
  customers with π_i > 0, the most any set of customers can earn, so no ordering's best profit is higher.
- ``churn_probability``: p_i, descending, ties in input order; what a churn model alone would suggest.
- ``random``: the expectation over all orders, k · mean(π), exact: each customer is among a random k
  with probability k / n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from custseq.config import ProfitConfig
from custseq.scoring.segments import check_predictions

ORDERINGS = ("saved_value", "churn_probability", "random")


@dataclass(frozen=True)
class BestContact:
    """How many customers to contact, first in one ordering, for the highest expected profit."""

    k: int  # the smallest k reaching the highest profit (0: contacting nobody is best)
    profit: float


@dataclass
class ProfitSimulation:
    """The expected profit of contacting the top k customers, for every k and each ordering."""

    curve: pd.DataFrame  # k, share_contacted, profit_saved_value, profit_churn_probability, profit_random
    best: dict[str, BestContact]  # ordering -> its best k and that k's profit
    contact_profit: np.ndarray  # π_i, one per row of the predictions


def simulate_retention(
    predictions: pd.DataFrame, cfg: ProfitConfig | None = None, past_rate_value: ArrayLike | None = None
) -> ProfitSimulation:
    """The profit curve of a retention campaign under each ordering of :data:`ORDERINGS`.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per customer with ``customer_id``, ``churn_probability`` and ``clv_expected``.
    cfg : ProfitConfig, optional
        Costs, save rate and take rate; defaults to ``ProfitConfig()``.
    past_rate_value : array-like of float, optional
        Per row, the customer's own spend per horizon over the last year (see :func:`retained_value`).

    Returns
    -------
    ProfitSimulation
        ``curve`` has n + 1 rows (k = 0 … n); ``best`` holds the best k and its profit per ordering.

    Raises
    ------
    SchemaError
        If a column is missing, a churn probability is not in [0, 1], or an expected value is missing.
    """
    cfg = cfg or ProfitConfig()
    check_predictions(predictions)
    churn = predictions["churn_probability"].to_numpy(dtype=float)
    if_active = predictions.get("clv_if_active")
    value = retained_value(churn, predictions["clv_expected"], cfg, if_active, past_rate_value)
    profit = contact_profit(churn, value, cfg)
    k = np.arange(len(profit) + 1)
    curves = {
        "saved_value": _cumulative(profit[np.argsort(-profit, kind="stable")]),
        "churn_probability": _cumulative(profit[np.argsort(-churn, kind="stable")]),
        "random": k * (profit.mean() if len(profit) else 0.0),
    }
    curve = pd.DataFrame({"k": k, "share_contacted": k / max(len(profit), 1)})
    for ordering in ORDERINGS:
        curve[f"profit_{ordering}"] = curves[ordering]
    best = {ordering: _best(curves[ordering]) for ordering in ORDERINGS}
    return ProfitSimulation(curve=curve, best=best, contact_profit=profit)


def retained_value(
    churn_probability: ArrayLike,
    clv_expected: ArrayLike,
    cfg: ProfitConfig,
    clv_if_active: ArrayLike | None = None,
    past_rate_value: ArrayLike | None = None,
) -> np.ndarray:
    """The expected value over the horizon if the customer is retained (buys).

    ``clv_if_active`` is ``clv_expected / (1 − p)`` at heart, so for a near-certain leaver it multiplies a small
    expected value up to ``max_value_multiplier`` times: a customer with 4 purchases and 39 spent last year was
    credited with 514 at stake and ranked first to contact. Where ``past_rate_value`` (what the customer spent
    per horizon in the last year) is given and finite, the value if retained is therefore at most the larger of
    that and ``clv_expected``: keeping a customer brings back their own past rate, not twenty times their
    expected value.

    Parameters
    ----------
    churn_probability, clv_expected : array-like of float
        One per customer.
    cfg : ProfitConfig
        ``max_value_multiplier`` caps ``1 / (1 − p)`` in the fallback.
    clv_if_active : array-like of float, optional
        The value model's expected value given a purchase; used wherever it is finite.
    past_rate_value : array-like of float, optional
        The customer's own spend per horizon over the last year (NaN where unknown): the cap above.

    Returns
    -------
    numpy.ndarray of float
        ``clv_if_active`` where finite, else ``clv_expected · min(1 / (1 − p), max_value_multiplier)``; at most
        ``max(past_rate_value, clv_expected)`` where that is finite.
    """
    churn = np.asarray(churn_probability, dtype=float)
    expected = np.asarray(clv_expected, dtype=float)
    value = expected / np.maximum(1 - churn, 1 / cfg.max_value_multiplier)
    if clv_if_active is not None:
        own = np.asarray(clv_if_active, dtype=float)
        value = np.where(np.isfinite(own), own, value)
    if past_rate_value is not None:
        past = np.asarray(past_rate_value, dtype=float)
        value = np.where(np.isfinite(past), np.minimum(value, np.maximum(past, expected)), value)
    return value


def contact_profit(churn_probability: ArrayLike, value_if_retained: ArrayLike, cfg: ProfitConfig) -> np.ndarray:
    """The expected profit of contacting each customer: ``p · s · v − c − f · (p · s + (1 − p) · t)``.

    Parameters
    ----------
    churn_probability : array-like of float
        p, one per customer.
    value_if_retained : array-like of float
        v, from :func:`retained_value`.
    cfg : ProfitConfig
        c (``contact_cost``), f (``offer_cost``), s (``save_rate``) and t (``take_rate``).

    Returns
    -------
    numpy.ndarray of float
        π, one per customer.
    """
    p = np.asarray(churn_probability, dtype=float)
    kept = p * cfg.save_rate  # would churn, and the offer keeps them
    offers_redeemed = kept + (1 - p) * cfg.take_rate
    return kept * np.asarray(value_if_retained, dtype=float) - cfg.contact_cost - cfg.offer_cost * offers_redeemed


def money(x: float, currency: str | None) -> str:
    """An amount as the outputs show it: thousands separators, no decimals, the currency when known."""
    return f"{x:,.0f} {currency}" if currency else f"{x:,.0f}"


def _cumulative(profits: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(profits)])  # k = 0: contacting nobody earns nothing


def _best(curve: np.ndarray) -> BestContact:
    k = int(np.argmax(curve))  # the first maximum: the fewest contacts for the best profit
    return BestContact(k=k, profit=float(curve[k]))
