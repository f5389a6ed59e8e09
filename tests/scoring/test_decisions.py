"""The review loop: decisions on review.csv applied to the predictions, and refused when malformed."""

from __future__ import annotations

import pandas as pd
import pytest

from custseq.errors import ConfigError
from custseq.scoring.decisions import (
    DECISION_COLUMNS,
    LABEL_COLUMNS,
    apply_decisions,
    decision_labels,
    with_decision_columns,
)

PREDICTIONS = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "churn_probability": [0.1, 0.2, 0.3, 0.4],
                            "clv_expected": [10.0, 20.0, 30.0, 40.0]})  # fmt: skip


def _review(**columns) -> pd.DataFrame:
    base = {"customer_id": ["a", "b", "c", "x"], "btyd_churn_probability": [0.9, 0.8, 0.7, 0.6],
            "btyd_clv_expected": [1.0, 2.0, 3.0, 4.0]}  # fmt: skip
    return with_decision_columns(pd.DataFrame(base)).assign(**columns)


def test_review_csv_gets_empty_columns_to_fill():
    review = with_decision_columns(pd.DataFrame({"customer_id": ["a"]}))
    assert (
        list(review.columns) == ["customer_id", *DECISION_COLUMNS] and review[list(DECISION_COLUMNS)].isna().all().all()
    )


def test_each_decision_changes_what_it_says_and_is_counted():
    review = _review(decision=["custseq", "btyd", "override", "btyd"],
                     override_churn_probability=[None, None, 0.95, None],
                     override_clv_expected=[None, None, "", None])  # fmt: skip
    applied = apply_decisions(PREDICTIONS, review)
    p = applied.predictions
    assert p["churn_probability"].tolist() == [0.1, 0.8, 0.95, 0.4]  # a kept, b from BG/NBD, c overridden, d untouched
    assert p["clv_expected"].tolist() == [10.0, 2.0, 30.0, 40.0]  # c's empty value override keeps custseq's
    assert applied.counts == {"custseq": 1, "btyd": 1, "override": 1} and applied.unknown_customers == 1  # x
    assert PREDICTIONS["churn_probability"].tolist() == [0.1, 0.2, 0.3, 0.4]  # the input is not changed


def test_undecided_rows_change_nothing():
    applied = apply_decisions(PREDICTIONS, _review())
    assert applied.predictions.equals(PREDICTIONS) and sum(applied.counts.values()) == 0


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"decision": ["maybe", None, None, None]}, "decision must be one of custseq, btyd, override"),
        (
            {"decision": ["override", None, None, None], "override_churn_probability": ["high", None, None, None]},
            "override_churn_probability of customer 'a' is not a number",
        ),
        (
            {"decision": ["override", None, None, None], "override_churn_probability": [1.5, None, None, None]},
            r"must be in \[0, 1\]",
        ),
        ({"decision": ["override", None, None, None], "override_clv_expected": [-3, None, None, None]}, ">= 0"),
        ({"customer_id": ["a", "a", "c", "x"], "decision": ["btyd", "btyd", None, None]}, "decided more than once"),
    ],
)
def test_malformed_decisions_are_refused_with_the_row(columns, message):
    with pytest.raises(ConfigError, match=message):
        apply_decisions(PREDICTIONS, _review(**columns))


def test_a_file_without_a_decision_column_says_what_to_fill():
    with pytest.raises(ConfigError, match="lacks column\\(s\\) \\['decision'\\]"):
        apply_decisions(PREDICTIONS, pd.DataFrame({"customer_id": ["a"]}))


def test_decisions_csv_carries_the_run_and_the_competing_numbers():
    review = _review(decision=["custseq", "btyd", "override", "btyd"],
                     override_churn_probability=[None, None, 0.95, None],
                     override_clv_expected=[None, None, "", None]).assign(
        churn_probability=[0.15, 0.25, 0.35, 0.45], clv_expected=[11.0, 21.0, None, 41.0])  # fmt: skip
    applied = apply_decisions(PREDICTIONS, review)
    written = decision_labels(applied, PREDICTIONS, "2023-10-15", 60)
    assert list(written.columns) == list(LABEL_COLUMNS)
    labels = written.set_index("customer_id")
    assert labels.index.tolist() == ["a", "b", "c"]  # x is not in the predictions: nothing was applied to it
    assert (labels["as_of"] == "2023-10-15").all() and (labels["horizon_days"] == 60).all()
    # custseq's numbers are review.csv's (as predict wrote them), the predictions' where the row has none (c)
    assert labels["custseq_churn_probability"].tolist() == [0.15, 0.25, 0.35]
    assert labels["custseq_clv_expected"].tolist() == [11.0, 21.0, 30.0]
    assert labels["btyd_churn_probability"].tolist() == [0.9, 0.8, 0.7]
    assert labels.loc["c", "override_churn_probability"] == 0.95 and labels["override_clv_expected"].isna().all()
    assert labels.loc[["a", "b"], "override_churn_probability"].isna().all()
    assert labels["reviewed_churn_probability"].tolist() == [0.15, 0.8, 0.95]  # kept, BG/NBD's, overridden
    assert labels["reviewed_clv_expected"].tolist() == [11.0, 2.0, 30.0]  # c's empty override keeps custseq's
