"""How this prediction was made: the candidates on the validation customers, the choice and the calibrated levels."""

from __future__ import annotations

import pandas as pd

from custseq.config import ReportConfig
from custseq.io.run_files import CandidateValidation, ChosenBlend, ModelChoice
from custseq.report.data import ReportData
from custseq.report.html import bullets, paragraph, table
from custseq.report.html import unavailable as na

CANDIDATE_NAMES = {
    "network": "sequence network (Transformer + features)",
    "boosted": "LightGBM on features + sequence embedding",
    "boosted-features": "LightGBM on features only",
    "btyd": "BG/NBD + Gamma-Gamma (no labels)",
}


def model_choice(data: ReportData, cfg: ReportConfig) -> str:
    choice = data.metrics.model_choice if data.metrics is not None else None
    if choice is None:
        return na("metrics.json holds no model choice (a score run, or a model saved by an older custseq)")
    rows = [
        {
            "candidate": CANDIDATE_NAMES.get(name, name),
            "churn_auc": c.churn_auc,
            "churn_brier": c.churn_brier,
            "value_gini": c.value_gini,
            "value_total_ratio": c.value_total_ratio,
        }
        for name, c in choice.candidates.items()
    ]
    frame = pd.DataFrame(rows)
    best = {(_best_row(frame[c]), c) for c in ("churn_auc", "value_gini") if frame[c].notna().any()}
    labels = {"churn_auc": "churn AUC", "churn_brier": "Brier", "value_gini": "value nGini",
              "value_total_ratio": "predicted / actual total"}  # fmt: skip
    formats = {"churn_auc": ".3f", "churn_brier": ".3f", "value_gini": ".3f", "value_total_ratio": ".2f"}
    sequence_adds = _sequence_contribution(choice.candidates)
    facts = [
        f"Churn: {_named(choice.churn)} (validation AUC {choice.churn_auc:.3f} after "
        f"{choice.churn_calibration} calibration).",
        f"Value: {_named(choice.value)} (validation nGini {choice.value_gini:.3f}); its total matched to what "
        "these customers spent.",
        f"P10–P90 interval: {choice.interval_below_p10:.0%} of validation customers fell below P10 and "
        f"{choice.interval_above_p90:.0%} above P90 (each half judged by intervals fitted on the other; 10% is the "
        "aim).",
    ]
    if choice.trained_horizon_days is not None:
        facts.append(
            f"No training window fits the requested horizon: the model learnt a {choice.trained_horizon_days}-day "
            f"horizon and its predictions were carried to the requested one ({choice.carried_by})."
        )
    if sequence_adds:
        facts.append(sequence_adds)
    skipped = [f"{CANDIDATE_NAMES.get(k, k)}: {why}" for k, why in choice.skipped.items()]
    return (
        paragraph(
            f"custseq fitted {len(choice.candidates)} candidate predictor(s) and scored each on "
            f"{choice.validation_customers:,} validation customers of the latest training window (customers no "
            "candidate was trained on; the test of `custseq evaluate` is later still). It keeps the best per task, "
            f"or a blend of two when that is better, then calibrates the levels on the same customers.{_sample(choice)}"
        )
        + table(frame, labels, formats, bold=best, caption="candidates on the validation customers")
        + bullets(facts)
        + (paragraph("Not run: " + "; ".join(skipped)) if skipped else "")
    )


def _sample(choice: ModelChoice) -> str:
    """A sentence saying the predictor learned from a sample of the latest window, when it did."""
    if choice.sampled_from is None:
        return ""
    return (
        f" The latest window's {choice.sampled_from:,} customers are more than "
        "`[model.predictor] max_training_customers`, so candidates, choice and calibration used a stable sample of "
        "them (chosen by a hash of the customer id)."
    )


def _best_row(column: pd.Series) -> int:
    return int(column.to_numpy(dtype=float, na_value=float("-inf")).argmax())


def _named(blend: ChosenBlend) -> str:
    first = CANDIDATE_NAMES.get(blend.first, blend.first)
    if blend.second is None:
        return first
    second = CANDIDATE_NAMES.get(blend.second, blend.second)
    return f"{blend.weight:.1f} × {first} + {1 - blend.weight:.1f} × {second}"


def _sequence_contribution(candidates: dict[str, CandidateValidation]) -> str:
    """What the sequence adds over the features alone on validation, said plainly, including when it adds nothing."""
    features = candidates.get("boosted-features")
    with_sequence = [c for k, c in candidates.items() if k in ("network", "boosted")]
    if features is None or not with_sequence or features.churn_auc is None:
        return ""
    auc = max((c.churn_auc for c in with_sequence if c.churn_auc is not None), default=None)
    gini = max((c.value_gini for c in with_sequence if c.value_gini is not None), default=None)
    if auc is None or gini is None or features.value_gini is None:
        return ""
    d_auc, d_gini = auc - features.churn_auc, gini - features.value_gini
    verdict = "adds to" if d_auc > 0.002 or d_gini > 0.002 else "adds nothing measurable to"
    return (
        f"The sequence {verdict} the features here: best sequence candidate minus LightGBM on features only, "
        f"churn AUC {d_auc:+.3f}, value nGini {d_gini:+.3f} (validation customers)."
    )
