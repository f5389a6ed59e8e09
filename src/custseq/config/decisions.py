"""Settings of the decisions drawn from the scores: segments, value score, profit, actions, audit and report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from custseq.errors import ConfigError


@dataclass(frozen=True)
class SegmentConfig:
    """Thresholds of the segment rules (:mod:`custseq.scoring.segments`); churn thresholds are probabilities."""

    top_value_share: float = 0.2  # the top value tier: the highest expected values, at most this share of customers
    attrier_churn: float = 0.65  # high-value potential attrier: top tier and churn above this (DESIGN §1)
    champion_max_churn: float = 0.35  # champion: top tier and churn at most this
    at_risk_churn: float = 0.5  # churn above this is at risk or hibernating (the engagement plan's threshold)
    loyal_min_frequency: int = 2  # loyal: at least this many repeat purchase days and churn at most at_risk_churn
    new_customer_days: int | None = None  # new: first purchase fewer than this many days ago; None = the horizon
    hibernating_days: int | None = None  # hibernating: at risk and no purchase in this many days; None = the horizon
    # A lapsed regular (custseq.scoring.lapse) is at risk whatever the predicted churn: at least this many
    # purchase days, silent for at least lapsed_silent_gaps of their usual gaps and lapsed_min_silent_days.
    lapsed_min_purchase_days: int = 5
    lapsed_silent_gaps: float = 3.0
    lapsed_min_silent_days: int = 28

    def __post_init__(self) -> None:
        if not 0 < self.top_value_share <= 1:
            raise ConfigError(f"top_value_share must be in (0, 1], got {self.top_value_share}")
        for name in ("attrier_churn", "champion_max_churn", "at_risk_churn"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.champion_max_churn > self.at_risk_churn:
            raise ConfigError(
                f"champion_max_churn ({self.champion_max_churn}) must not exceed at_risk_churn ({self.at_risk_churn}): "
                "a champion would be likelier to churn than a customer at risk"
            )
        if self.loyal_min_frequency < 1:
            raise ConfigError(f"loyal_min_frequency must be at least 1, got {self.loyal_min_frequency}")
        if self.lapsed_min_purchase_days < 2 or not self.lapsed_silent_gaps > 0 or self.lapsed_min_silent_days < 1:
            raise ConfigError(
                "lapsed_min_purchase_days must be at least 2 (a gap needs two purchases), lapsed_silent_gaps "
                "above 0 and lapsed_min_silent_days at least 1"
            )
        for name in ("new_customer_days", "hibernating_days"):
            days = getattr(self, name)
            if days is not None and days < 1:
                raise ConfigError(f"{name} must be at least 1 day (or unset for the horizon), got {days}")


@dataclass(frozen=True)
class ValueScoreConfig:
    """The composite value score (:mod:`custseq.scoring.scores`): V's weights and the HyperScore boost.

    value_score = 100 · [1 + σ(beta · ln V + gamma)^kappa], V = the weighted mean of the rank-normalised
    expected value, retention (1 − churn) and engagement (purchase days in the last horizon). The defaults
    (beta 2, gamma 0, kappa 1: 100 · (1 + V² / (V² + 1)), from 100 to 150) spread every customer: the earlier
    beta 5, gamma −ln 2, kappa 2 lifted only the top (boost ~V^10 / 4), so that a quarter of a grocery's
    households scored exactly 100.00 and the median 100.02.
    """

    value_weight: float = 0.5  # the value a customer brings is what the score ranks first
    retention_weight: float = 0.3
    engagement_weight: float = 0.2
    beta: float = 2.0  # sensitivity: how sharply the boost rises towards V = 1
    gamma: float = 0.0  # the bias: σ(gamma) = 1/2 at V = 1
    kappa: float = 1.0  # the power of the boost

    def __post_init__(self) -> None:
        weights = {name: getattr(self, name) for name in ("value_weight", "retention_weight", "engagement_weight")}
        if min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise ConfigError(f"value score weights must be >= 0 with a positive sum, got {weights}")
        if not self.beta > 0 or not self.kappa > 0:
            raise ConfigError(
                f"beta and kappa must be > 0 for the score to rise with V, got beta={self.beta}, kappa={self.kappa}"
            )
        if not math.isfinite(self.gamma):
            raise ConfigError(f"gamma must be a finite number, got {self.gamma}")


@dataclass(frozen=True)
class ProfitConfig:
    """The retention campaign of the profit simulation (:mod:`custseq.scoring.profit`), in the data's currency.

    Defaults follow the churn campaign of Verbraken, Verbeke & Baesens (2013), IEEE TKDE 25(5): contact cost 1,
    offer cost 10, a mean share of 0.3 of contacted would-be churners kept, and every contacted non-churner
    redeeming the offer. Set them to the business's own numbers.
    """

    contact_cost: float = 1.0  # per customer contacted
    offer_cost: float = 10.0  # per offer redeemed
    save_rate: float = 0.3  # share of contacted would-be churners the offer keeps
    take_rate: float = 1.0  # share of contacted non-churners who redeem the offer anyway (wasted); 0 = none
    max_value_multiplier: float = 20.0  # without clv_if_active: value if retained = clv_expected / (1 − churn), capped
    currency: str | None = None  # the data's currency (e.g. "EUR"), shown with every amount; None: not named

    def __post_init__(self) -> None:
        if min(self.contact_cost, self.offer_cost) < 0:
            raise ConfigError(
                f"contact_cost and offer_cost must be >= 0, got {self.contact_cost} and {self.offer_cost}"
            )
        for name in ("save_rate", "take_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a share in [0, 1], got {getattr(self, name)}")
        if self.currency is not None and not (0 < len(self.currency.strip()) <= 8):
            raise ConfigError(f"currency must be a short code such as EUR or $, got {self.currency!r}")
        if not self.max_value_multiplier >= 1:
            raise ConfigError(f"max_value_multiplier must be at least 1, got {self.max_value_multiplier}")


@dataclass(frozen=True)
class ActionConfig:
    """Next-best-action plans (:mod:`custseq.scoring.actions`).

    A customer whose churn probability is strictly above ``retention_threshold`` gets retention actions from
    the catalogue (``retention_flag`` true); everyone else gets the next-event model's ``k`` likeliest items,
    topped up with the catalogue's growth actions when the model proposes fewer.

    Items are products, or their categories when products are too sparse to propose one by one
    (:mod:`custseq.scoring.item_level`): ``item_level = "auto"`` holds out each validation customer's next
    purchase and proposes categories when the products' hit@k is below ``min_item_hit_rate`` and the
    categories' is higher.
    """

    k: int = 3  # actions per customer
    retention_threshold: float = 0.5  # churn probability above which the plan switches to retention actions
    mode: Literal["replace", "augment"] = "replace"  # augment: the top retention action, then the model's items
    item_field: str = "auto"  # the token field the next-event head proposes; auto = product, category, event, channel
    # a shipped catalogue's name (retail, grocery, subscription) or the path of a JSON or YAML one; None = retail
    catalogue: str | None = None
    # a products table (CSV or Parquet: product id, name, category, exclude): names, categories, items never to propose
    products: str | None = None
    # propose products (item), their categories (category), or categories when products are too sparse (auto)
    item_level: Literal["auto", "item", "category"] = "auto"
    # auto: categories when a smaller share of held-out next purchases than this is among the k products proposed
    min_item_hit_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if not 0 <= self.retention_threshold <= 1:
            raise ConfigError(f"retention_threshold must be a probability in [0, 1], got {self.retention_threshold}")
        if self.mode not in ("replace", "augment"):
            raise ConfigError(f"mode must be replace or augment, got {self.mode!r}")
        if self.item_level not in ("auto", "item", "category"):
            raise ConfigError(f"item_level must be auto, item or category, got {self.item_level!r}")
        if not 0 <= self.min_item_hit_rate <= 1:
            raise ConfigError(f"min_item_hit_rate must be a share in [0, 1], got {self.min_item_hit_rate}")


@dataclass(frozen=True)
class AuditConfig:
    """The bias audit (:mod:`custseq.evaluation.fairness`) and the human-review list.

    A group is flagged when one of its metrics differs from the whole population's by more than the tolerance;
    groups smaller than ``min_group_size`` are reported but never flagged (their metrics are noise). With
    ``recalibrate_groups``, ``predict`` corrects the churn and value of every group flagged for its calibration
    gap or value ratio (:mod:`custseq.models.group_calibration`), and ``score`` applies the same corrections.
    ``decisions_history`` lists decisions.csv files of earlier ``custseq plan --decisions`` runs: ``predict``
    measures their custseq, BG/NBD and reviewers' numbers against what happened since
    (:mod:`custseq.scoring.review_outcomes`).
    """

    columns: tuple[str, ...] | None = None  # profile columns to audit; None = every profile column, and tenure
    bins: int = 4  # numeric columns are cut into this many quantile bins
    max_groups: int = 12  # categorical columns keep their most frequent values; the rest become "other"
    min_group_size: int = 50  # smaller groups are reported, never flagged nor corrected (their metrics are noise)
    auc_tolerance: float = 0.05  # |group churn AUC − overall|
    calibration_tolerance: float = 0.05  # |(mean predicted − observed churn) in the group − the same overall|
    value_tolerance: float = 0.25  # |group mean predicted / actual value − the same overall ratio|
    segment_share_tolerance: float = 0.15  # |a segment's share in the group − its share overall|
    review_churn_gap: float = 0.5  # review.csv: |custseq churn − BG/NBD churn| at least this
    review_value_ratio: float = 5.0  # review.csv: custseq and BG/NBD values differ by at least this factor
    review_min_value: float = 1.0  # … where the larger of the two values is at least this (currency units)
    recalibrate_groups: bool = False  # correct flagged groups' churn (logit shift) and value (factor) on validation
    recalibration_shrinkage: float = 20.0  # a correction is shrunk by n / (n + this), n its group's customers
    max_value_factor: float = 2.0  # a group's value correction stays within [1 / this, this]
    decisions_history: tuple[str, ...] = ()  # earlier decisions.csv files: predict measures them against outcomes

    def __post_init__(self) -> None:
        if self.bins < 2 or self.max_groups < 2 or self.min_group_size < 1:
            raise ConfigError("bins and max_groups must be at least 2 and min_group_size at least 1")
        for name in ("auc_tolerance", "calibration_tolerance", "value_tolerance", "segment_share_tolerance"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.review_churn_gap <= 1 or not self.review_value_ratio > 1:
            raise ConfigError("review_churn_gap must be in (0, 1] and review_value_ratio above 1")
        if not self.recalibration_shrinkage >= 0 or not self.max_value_factor >= 1:
            raise ConfigError(
                f"recalibration_shrinkage must be at least 0 (got {self.recalibration_shrinkage}) and "
                f"max_value_factor at least 1 (got {self.max_value_factor})"
            )


@dataclass(frozen=True)
class ReportConfig:
    """The HTML report (:mod:`custseq.report`)."""

    enabled: bool = True  # predict and evaluate write report.html next to their outputs
    map_customers: int = 2000  # customers in the 2-D embedding map (a stable sample; t-SNE is quadratic)
    attention_customers: int = 4  # sample customers whose attention heat-maps are shown
    attention_events: int = 32  # their latest events shown
    interactive: bool = True  # inline Plotly (about 5 MB) for the interactive figures; static SVG otherwise

    def __post_init__(self) -> None:
        if self.map_customers < 10 or self.attention_customers < 0 or self.attention_events < 1:
            raise ConfigError("map_customers must be at least 10, attention_customers >= 0, attention_events >= 1")
