"""Whom to contact: one ranked list of the customers worth a retention contact, each with a reason in words.

A customer is on the list when they are flagged for retention (churn above the plans' threshold, or a lapsed
regular: :mod:`custseq.scoring.lapse`) *and* the expected profit of contacting them is positive under the
profit settings (:mod:`custseq.scoring.profit`: the value a contact is expected to save, net of the contact
and offer costs). Flagged customers whose value does not cover those costs are counted, not listed. The list
is ranked by that expected profit, so its head is where a campaign earns most.

Every row says why in the customer's own numbers, e.g. "usually buys every 9 days; silent for 80 days (9 of
their usual gaps); 42 purchase days; spent 1,240 in the last year; regulars this silent churned 41% in the
past".
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from custseq.config import ProfitConfig
from custseq.scoring.profit import contact_profit

SAVE_RATE_FACTORS = (0.5, 2.0)  # the sensitivity band: half and twice the assumed save rate
CONTACT_COLUMNS = ("rank", "customer_id", "segment", "churn_probability", "value_at_stake", "expected_gain",
                   "action", "reason")  # fmt: skip


@dataclass(frozen=True)
class ContactList:
    """The customers worth a retention contact, and how many flagged customers were left off."""

    contacts: pd.DataFrame  # CONTACT_COLUMNS, best first
    flagged: int  # flagged for retention (listed or not)
    by_save_rate: dict[float, tuple[int, float]] = dataclasses.field(default_factory=dict)  # see save_rate_sensitivity

    @property
    def not_worth(self) -> int:
        """Flagged, but the expected saved value does not cover the costs."""
        return self.flagged - len(self.contacts)

    @property
    def total_at_stake(self) -> float:
        return float(self.contacts["value_at_stake"].sum())

    @property
    def total_gain(self) -> float:
        return float(self.contacts["expected_gain"].sum())


def contact_list(
    predictions: pd.DataFrame,
    cadence: pd.DataFrame,
    decision_churn: np.ndarray,
    retained_value: np.ndarray,
    lapsed_churn_rate: float | None,
) -> ContactList:
    """The ranked contact list.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Scored customers with ``customer_id``, ``segment``, ``retention_flag``, ``contact_profit`` and
        ``next_actions`` (a JSON list of actions).
    cadence : pandas.DataFrame
        Per row of ``predictions`` (same order): ``purchase_days``, ``usual_gap_days``, ``silent_days``,
        ``lapsed_regular`` (:func:`custseq.scoring.lapse.cadence`) and ``spend_last_year`` (NaN if unknown).
    decision_churn, retained_value : numpy.ndarray
        The churn probability the decisions used, and the value over the horizon if retained, per row.
    lapsed_churn_rate : float, optional
        How often lapsed regulars churned in the training windows, quoted in their reasons.
    """
    flagged = predictions["retention_flag"].to_numpy(dtype=bool)
    gain = predictions["contact_profit"].to_numpy(dtype=float)
    chosen = np.flatnonzero(flagged & (gain > 0))
    chosen = chosen[np.argsort(-gain[chosen], kind="stable")]
    rows = predictions.iloc[chosen]
    at_stake = decision_churn[chosen] * retained_value[chosen]
    segments = rows["segment"].astype(str).to_numpy()
    reasons = [  # records, not a Series per row: 160,000 contacts of a million customers take a second, not ten
        reason(row, float(churn), segment, lapsed_churn_rate)
        for row, churn, segment in zip(
            cadence.iloc[chosen].to_dict("records"), decision_churn[chosen], segments, strict=True
        )
    ]
    contacts = pd.DataFrame(
        {
            "rank": np.arange(1, len(chosen) + 1),
            "customer_id": rows["customer_id"].to_numpy(),
            "segment": rows["segment"].to_numpy(),
            "churn_probability": np.round(decision_churn[chosen], 4),
            "value_at_stake": np.round(at_stake, 2),
            "expected_gain": np.round(gain[chosen], 2),
            "action": [_first_action(a) for a in rows["next_actions"]],
            "reason": reasons,
        },
        columns=list(CONTACT_COLUMNS),
    )
    return ContactList(contacts, flagged=int(flagged.sum()))


def save_rate_sensitivity(
    flagged: np.ndarray, decision_churn: np.ndarray, retained_value: np.ndarray, cfg: ProfitConfig
) -> dict[float, tuple[int, float]]:
    """The contact list's size and expected gain if the offer kept half, or twice, the assumed share of leavers.

    Returns
    -------
    dict
        save rate (capped at 1) -> (customers worth a contact, their total expected gain).
    """
    out = {}
    for factor in SAVE_RATE_FACTORS:
        changed = dataclasses.replace(cfg, save_rate=min(1.0, cfg.save_rate * factor))
        gain = contact_profit(decision_churn, retained_value, changed)
        chosen = flagged & (gain > 0)
        out[changed.save_rate] = (int(chosen.sum()), float(gain[chosen].sum()))
    return out


def reason(row: Mapping[Any, Any], churn: float, segment: str, lapsed_churn_rate: float | None) -> str:
    """Why this customer is worth a contact, in their own numbers."""
    parts = []
    gap, silent, days = row["usual_gap_days"], row["silent_days"], row["purchase_days"]
    if row["lapsed_regular"]:
        parts.append(f"usually buys every {_days(gap)}")
        parts.append(f"silent for {_days(silent)} ({silent / gap:.0f} of their usual gaps)")
    else:
        parts.append(f"churn risk {churn:.0%} ({segment.replace('_', ' ')})")
        parts.append(f"last purchase {_days(silent)} ago")
    parts.append(f"{int(days):,} purchase day{'s' if days != 1 else ''}")
    spend = row.get("spend_last_year", math.nan)
    if spend is not None and math.isfinite(spend):
        parts.append(f"spent {spend:,.0f} in the last year")
    if row["lapsed_regular"] and lapsed_churn_rate is not None:
        parts.append(f"regulars this silent churned {lapsed_churn_rate:.0%} in the past")
    return "; ".join(parts)


def _days(days: float) -> str:
    n = max(round(days), 1)
    return f"{n:,} day{'s' if n != 1 else ''}"


def _first_action(raw: object) -> str:
    try:
        actions = json.loads(str(raw)) if not isinstance(raw, list) else raw
    except json.JSONDecodeError:
        return ""
    return str(actions[0]["action"]) if actions else ""
