"""Metrics of churn and value predictions (DESIGN §6), pure functions of NumPy arrays.

Churn: ROC AUC, PR AUC (average precision), Brier score and F1 at a threshold chosen elsewhere. Value: RMSE,
MAE, normalized Gini and the top-decile value share. The validation composite that early stopping watches is
the mean of the churn Gini (2·AUC − 1) and the value normalized Gini, so both tasks count on the same [-1, 1]
scale.

:data:`METRICS` names and formats every metric once, for the report, the CLI's tables and evaluation.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class MetricInfo:
    """How tables name and show one metric."""

    label: str  # e.g. "churn AUC"
    format: str = ",.3f"  # format spec of one value (a mean and a standard deviation each get it)
    lower_is_better: bool = False  # which end of a column is best (counts: neither, left False)

    def show(self, value: float) -> str:
        """``value`` in this metric's format."""
        return format(value, self.format)


# Every metric a table shows, in the order tables show them: the evaluation summary (REPORTED of
# custseq.evaluation.backtest), the CLI's evaluate table, the report, and metrics.json's validation entry.
METRICS: dict[str, MetricInfo] = {
    "churn_auc": MetricInfo("churn AUC"),
    "churn_pr_auc": MetricInfo("churn PR AUC"),
    "churn_f1": MetricInfo("churn F1"),
    "churn_brier": MetricInfo("churn Brier", lower_is_better=True),
    "value_gini": MetricInfo("value Gini"),
    "value_rmse": MetricInfo("value RMSE", lower_is_better=True),
    "value_mae": MetricInfo("value MAE", lower_is_better=True),
    "value_mape": MetricInfo("value MAPE", lower_is_better=True),
    "value_spearman": MetricInfo("value Spearman"),
    "value_top_decile_share": MetricInfo("top-decile share"),
    "cohort_wape": MetricInfo("cohort WAPE", lower_is_better=True),
    "composite": MetricInfo("composite"),
    "seconds": MetricInfo("seconds", lower_is_better=True),
    "churn_brier_before": MetricInfo("churn Brier before calibration", format=".4f", lower_is_better=True),
    "churn_brier_after": MetricInfo("churn Brier after calibration", format=".4f", lower_is_better=True),
    "best_epoch": MetricInfo("best epoch", format=",.0f"),
    "validation_customers": MetricInfo("validation customers", format=",.0f"),
}


class MeanAndStd(Protocol):
    """A metric over seeds (e.g. :class:`custseq.io.run_files.MeanStd`)."""

    @property
    def mean(self) -> float: ...

    @property
    def std(self) -> float: ...


def mean_text(key: str, cell: MeanAndStd | None) -> str:
    """The mean over seeds alone, in the metric's format; "–" when there is none."""
    return "–" if cell is None or math.isnan(cell.mean) else METRICS[key].show(cell.mean)


def mean_std_text(key: str, cell: MeanAndStd | None, seeds: int = 2) -> str:
    """A mean ± standard deviation over seeds in the metric's format; "–" when there is no mean; the mean alone
    with one seed (a standard deviation of 0.000 would claim a spread that was never measured)."""
    if cell is None or math.isnan(cell.mean):
        return "–"
    show = METRICS[key].show
    if seeds < 2:
        return show(cell.mean)
    return f"{show(cell.mean)} ± {show(cell.std if not math.isnan(cell.std) else 0.0)}"


def metric_label(key: str) -> str:
    """The metric's label, or the key in words for one :data:`METRICS` does not know."""
    return METRICS[key].label if key in METRICS else key.replace("_", " ")


def _arrays(*xs: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(x, dtype=np.float64).ravel() for x in xs]


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present."""
    y, score = _arrays(y, score)
    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else math.nan


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision); NaN without positives."""
    y, score = _arrays(y, score)
    return float(average_precision_score(y, score)) if y.sum() > 0 else math.nan


def brier(y: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    y, p = _arrays(y, probability)
    return float(np.mean((p - y) ** 2))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    actual, predicted = _arrays(actual, predicted)
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    actual, predicted = _arrays(actual, predicted)
    return float(np.mean(np.abs(predicted - actual)))


def _gini(actual: np.ndarray, order: np.ndarray) -> float:
    """Gini of ``actual`` accumulated in ``order`` (descending by score), as in the Kaggle definition."""
    sorted_actual = actual[order]
    cumulative = np.cumsum(sorted_actual) / sorted_actual.sum()
    n = len(actual)
    return float(cumulative.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of the actual values ranked by the prediction over the Gini of the perfect ranking.

    1 is a perfect value ranking, 0 a random one. Ties in the prediction are broken by row order after a
    stable sort, and only the ranking matters. NaN when the actual values sum to zero or have no spread.
    """
    actual, predicted = _arrays(actual, predicted)
    if len(actual) < 2 or actual.sum() == 0:
        return math.nan
    perfect = _gini(actual, np.argsort(-actual, kind="stable"))
    if perfect == 0:
        return math.nan
    return _gini(actual, np.argsort(-predicted, kind="stable")) / perfect


def top_decile_share(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of the total actual value held by the 10% of customers with the highest predicted value."""
    actual, predicted = _arrays(actual, predicted)
    total = actual.sum()
    if len(actual) == 0 or total == 0:
        return math.nan
    k = max(1, math.ceil(0.1 * len(actual)))
    return float(actual[np.argsort(-predicted, kind="stable")[:k]].sum() / total)


def best_f1_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold (predict churn when score >= it) with the highest F1 on these rows.

    Chosen on validation rows and applied to test rows (SeqPreMT's F1). NaN without positives.
    """
    from sklearn.metrics import precision_recall_curve

    y, score = _arrays(y, score)
    if y.sum() == 0:
        return math.nan
    precision, recall, thresholds = precision_recall_curve(y, score)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def f1_at(y: np.ndarray, score: np.ndarray, threshold: float) -> float:
    """F1 of predicting churn when ``score >= threshold``; NaN for a NaN threshold."""
    y, score = _arrays(y, score)
    if math.isnan(threshold):
        return math.nan
    predicted = score >= threshold
    tp = float(np.sum(predicted & (y == 1)))
    denominator = float(predicted.sum() + (y == 1).sum())
    return 2 * tp / denominator if denominator else math.nan


def composite(churn_auc: float, value_gini: float) -> float:
    """The validation composite: mean of the churn Gini (2·AUC − 1) and the value normalized Gini.

    A missing part (NaN, e.g. one class only) leaves the other to decide.
    """
    parts = [x for x in (2 * churn_auc - 1, value_gini) if not math.isnan(x)]
    return float(np.mean(parts)) if parts else math.nan


def churn_value_metrics(
    churned: np.ndarray, churn_probability: np.ndarray, value: np.ndarray, value_predicted: np.ndarray
) -> dict[str, float]:
    """Every metric of one set of predictions against what happened."""
    auc = roc_auc(churned, churn_probability)
    gini = normalized_gini(value, value_predicted)
    return {
        "churn_auc": auc,
        "churn_pr_auc": pr_auc(churned, churn_probability),
        "churn_brier": brier(churned, churn_probability),
        "value_rmse": rmse(value, value_predicted),
        "value_mae": mae(value, value_predicted),
        "value_gini": gini,
        "value_top_decile_share": top_decile_share(value, value_predicted),
        "composite": composite(auc, gini),
    }
