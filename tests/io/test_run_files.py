"""The run folder's contracts: every file round-trips, real files of each command parse, bad files are named."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseq.config import AuditConfig, ModelConfig, ProfitConfig, RunConfig, ValueScoreConfig
from custseq.errors import ArtifactError
from custseq.io import json_texts, run_files
from custseq.io.run_files import (
    ActionSettings,
    Attention,
    AttentionSample,
    AucBootstrap,
    Audit,
    AuditAttribute,
    AuditCorrection,
    AuditGroup,
    AuditGroupMetrics,
    AuditRecalibration,
    AuditSummary,
    BacktestMetrics,
    BeforeAfter,
    BgNbdFit,
    BtydFailed,
    ColumnSource,
    Comparison,
    EpochRecord,
    EvaluationDetails,
    EvaluationResult,
    History,
    ItemMixtureInfo,
    MeanStd,
    Metrics,
    PAliveUnavailable,
    PreparedWindow,
    PrepareSummary,
    Profit,
    ProfitBest,
    ProfitCurve,
    RuleCount,
    RunFileError,
    RunFolder,
    RunRecord,
    SequenceSummary,
    TableAccount,
    TaskWeighting,
    ValidationMetrics,
    ValueScore,
)

SAMPLES = Path(__file__).parent / "run_files"  # real files of each command (+ format_version), see test below
CONTRACTS = {"metrics.json": Metrics, "profit.json": Profit, "audit.json": Audit, "history.json": History,
             "attention.json": Attention, "evaluation.json": EvaluationResult,
             "prepare.json": PrepareSummary, "run.json": RunRecord}  # fmt: skip


# --- realistic values of every contract --------------------------------------------------------------------------


def table_account() -> TableAccount:
    return TableAccount(
        mapping=(ColumnSource(column="customer_id", source="CustomerID", how="detected"),
                 ColumnSource(column="amount", source="Quantity × UnitPrice", how="mapped")),
        extras={"country": "category"},
        rows_in=541_909, rows_used=406_829, rows_quarantined=135_080,
        quarantined_by_rule={"missing_customer_id": RuleCount(rows=135_080, reason="customer id is empty")},
        flagged_by_rule={"outlier_amount": RuleCount(rows=12, reason="amount far above the rest")},
        notes=("transactions.ts (InvoiceDate): format ISO 8601 detected",),
    )  # fmt: skip


def predict_metrics() -> Metrics:
    scores = {"churn_auc": 0.853, "churn_pr_auc": 0.966, "churn_brier": 0.083, "value_rmse": 32.95,
              "value_mae": 12.87, "value_gini": 0.79, "value_top_decile_share": 0.635, "composite": 0.749}  # fmt: skip
    mixture = ItemMixtureInfo(weight=0.6, half_life=3.0, fitted_on="2023-08-16", customers=86, field="product", k=3,
                              hit_rate_at_k={"head": 0.465, "customer": 0.581, "mixture": 0.593}, note="")  # fmt: skip
    return Metrics(
        as_of="1998-06-30", horizon_days=90, customers_scored=23_570,
        training_windows=("1998-04-01", "1998-01-01"), pretrained=True,
        validation=ValidationMetrics(**scores, churn_brier_before=0.204, churn_brier_after=0.085, best_epoch=4,
                                     validation_customers=4707),
        task_weighting=TaskWeighting(mode="uncertainty", weights=(0.51, 0.49)), calibration="isotonic",
        tables={"transactions": table_account()}, seconds=181.31,
        backtest=BacktestMetrics(**scores), audit=AuditSummary(labelled_customers=4707, flagged_groups=1),
        p_alive=BgNbdFit(model="BG/NBD", penalizer=0.001, r=0.267, alpha=41.8, a=1e-8, b=1.37,
                         note="BG/NBD found no dropout (a ~ 0) on these data; p_alive is ~1 for everyone"),
        value_score=ValueScore(formula="value_score = 100 · [1 + σ(5 · ln V − 0.693147)^2]",
                               parameters=ValueScoreConfig()),
        actions=ActionSettings(item_field="product", retention_threshold=0.5, mode="replace", k=3,
                               catalogue="the default shipped with custseq", item_mixture=mixture),
        review_customers=1446,
    )  # fmt: skip


def score_metrics() -> Metrics:
    return Metrics(
        as_of="2023-10-15", horizon_days=60, customers_scored=200, unknown_values={"product": 3},
        tables={"transactions": table_account()}, seconds=0.18,
        p_alive=PAliveUnavailable(reason="BG/NBD did not converge"),
        value_score=ValueScore(formula="value_score = …", parameters=ValueScoreConfig(beta=3.0)),
        actions=ActionSettings(item_field=None, retention_threshold=0.6, mode="augment", k=2, catalogue="shop.yaml",
                               note="no product, category, event or channel field: catalogue actions only"),
        review_customers=0,
    )  # fmt: skip


def profit() -> Profit:
    return Profit(
        parameters=ProfitConfig(offer_cost=5.0), customers=4,
        curve=ProfitCurve(k=(0, 1, 2, 4), share_contacted=(0.0, 0.25, 0.5, 1.0),
                          profit_saved_value=(0.0, 12.5, 20.25, 8.0), profit_churn_probability=(0.0, 3.0, 20.25, 8.0),
                          profit_random=(0.0, 2.0, 4.0, 8.0)),
        best={"saved_value": ProfitBest(k=2, profit=20.25), "churn_probability": ProfitBest(k=2, profit=20.25),
              "random": ProfitBest(k=4, profit=8.0)},
    )  # fmt: skip


def group_metrics(n: int, auc: float | None, ratio: float | None) -> AuditGroupMetrics:
    return AuditGroupMetrics(
        n=n, churn_auc=auc, mean_predicted_churn=0.86, observed_churn=0.85, calibration_gap=0.01,
        mean_predicted_value=12.7, mean_actual_value=8.6, value_ratio=ratio,
        segment_shares={"champion": 0.04, "hibernating": 0.78, "new": 0.0},
    )  # fmt: skip


def audit() -> Audit:
    groups = (AuditGroup(group="372–392", metrics=group_metrics(1221, 0.82, 1.45), flags=()),
              AuditGroup(group="393–500", metrics=group_metrics(60, None, None),
                         flags=("calibration gap 0.180 vs 0.010 overall (differs by 0.170 > 0.05)",)))  # fmt: skip
    return Audit(
        settings=AuditConfig(columns=("country",), min_group_size=20), labelled_customers=1281,
        overall=group_metrics(1281, 0.85, 1.48), attributes=(AuditAttribute(attribute="tenure", groups=groups),),
        flagged_groups=1,
    )  # fmt: skip


def recalibrated_audit() -> Audit:
    """audit.json with [audit] recalibrate_groups: one group's churn corrected, its value not."""
    corrected = AuditCorrection(
        attribute="tenure", group="393–500", n=60, churn_shift=-0.71, value_factor=None,
        calibration_gap=BeforeAfter(before=0.18, after=0.04), value_ratio_error=BeforeAfter(before=None, after=None),
    )  # fmt: skip
    recalibration = AuditRecalibration(
        measured="cross-fitted", groups=(corrected,), overall_calibration_gap=BeforeAfter(before=0.02, after=0.01),
        overall_value_ratio_error=BeforeAfter(before=0.48, after=0.48),
        overall_churn_auc=BeforeAfter(before=0.85, after=0.851),
    )  # fmt: skip
    plain = audit()
    settings = AuditConfig(columns=("country",), min_group_size=20, recalibrate_groups=True)
    return Audit(settings=settings, labelled_customers=plain.labelled_customers, overall=plain.overall,
                 attributes=plain.attributes, flagged_groups=1, recalibration=recalibration)  # fmt: skip


def epoch(i: int, with_validation: bool = True) -> EpochRecord:
    return EpochRecord(epoch=i, train_loss=1.0 / (i + 1), val_loss=0.8 / (i + 1) if with_validation else None,
                       lr=1e-3, grad_norm=1.9, seconds=14.9, items_per_s=7285.6,
                       metrics={"train_churn_loss": 0.05, "val_score": 0.72})  # fmt: skip


def history() -> History:
    return History(pretrain=(epoch(0), epoch(1)), finetune=(epoch(0, with_validation=False),))


def attention() -> Attention:
    sample = AttentionSample(customer_id="06608", events=("1997-01-12 · 29.33", "1997-03-02 · 12.00"),
                             weights=((0.25, 0.75), (0.5, 0.5)), churn_probability=0.999, clv_expected=2.64,
                             segment="hibernating")  # fmt: skip
    return Attention(layers=2, customers=(sample, AttentionSample(customer_id="7", events=(), weights=((), ()))))


def evaluation() -> EvaluationResult:
    comparison = Comparison(
        reference="custseq", churn_auc_difference=0.05, churn_auc_p=0.01, value_gini_difference=-0.1,
        value_gini_p=0.3, composite_difference=0.02, composite_p=0.2,
        auc_bootstrap=AucBootstrap(difference=0.05, low=0.01, high=0.09, p_value=0.02),
    )  # fmt: skip
    return EvaluationResult(
        protocol="temporal", as_of="2023-08-16", horizon_days=60, seeds=(0, 1),
        summary={"custseq": {"churn_auc": MeanStd(mean=0.62, std=0.019), "seconds": MeanStd(mean=0.63, std=0.07)},
                 "btyd": {"churn_auc": MeanStd(mean=0.7, std=0.0)}},
        per_seed={"custseq": ({"churn_auc": 0.6, "seconds": 0.7}, {"churn_auc": 0.64, "seconds": 0.56}),
                  "btyd": ({"churn_auc": 0.7},)},
        comparisons={"btyd": comparison}, skipped={"lstm": "no training window fits before the test window"},
        details=EvaluationDetails(test_customers=200, test_churn_rate=0.81, training_windows=(200, 200),
                                  label_fractions=(1.0, 0.5), deterministic=("btyd",),
                                  config=ModelConfig(pretraining=False), tables={"transactions": table_account()}),
    )  # fmt: skip


def prepare_summary() -> PrepareSummary:
    fit = BgNbdFit(model="BG/NBD", penalizer=0.001, r=1.41, alpha=20.2, a=0.74, b=6.6)
    windows = (
        PreparedWindow(role="score", as_of="2023-12-26", cutoff="2023-12-27T00:00:00",
                       label_end="2024-02-25T00:00:00", customers=200, btyd_features=fit, labels=False),
        PreparedWindow(role="validation", as_of="2023-10-27", cutoff="2023-10-28T00:00:00",
                       label_end="2023-12-27T00:00:00", customers=200, churn_rate=0.81, total_value=4276.21,
                       btyd_features=BtydFailed(model="BG/NBD", error="did not converge"), labels=True),
    )  # fmt: skip
    return PrepareSummary(
        as_of="2023-12-26", horizon_days=60, data_start="2023-01-01T00:00:00", data_end="2023-12-26T00:00:00",
        tables={"transactions": table_account()}, windows=windows,
        notes=("any line of text: the round trip does not read it against the dates",),
        sequence=SequenceSummary(token="line", max_events=256, categorical_fields={"product": 9},
                                 numeric_fields=("amount",), vocab_fitted_before="2023-10-28T00:00:00"),
        config=RunConfig(), timings_s={"validate_s": 0.241, "window_2023-12-26_s": 0.021},
    )  # fmt: skip


def run_record() -> RunRecord:
    return RunRecord(custseq_version="0.1.0", command="predict", inputs="sha256:" + "0" * 64, status="complete",
                     started="2026-05-09T07:35:25+00:00", finished="2026-05-09T07:36:02+00:00")  # fmt: skip


# RunFolder.write_<method> / read_<method> of each contract
METHODS = {Metrics: "metrics", Profit: "profit", Audit: "audit", History: "history", Attention: "attention",
           EvaluationResult: "evaluation", PrepareSummary: "prepare_summary", RunRecord: "run"}  # fmt: skip
EXAMPLES = {"predict metrics": predict_metrics, "score metrics": score_metrics, "profit": profit, "audit": audit,
            "recalibrated audit": recalibrated_audit,
            "history": history, "attention": attention, "evaluation": evaluation,
            "prepare summary": prepare_summary, "run record": run_record}  # fmt: skip


# --- round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_every_contract_round_trips(make, tmp_path):
    contents = make()
    data = contents.to_json()
    assert next(iter(data)) == "format_version" and data["format_version"] == run_files.FORMAT_VERSION
    assert type(contents).from_json(data) == contents
    folder = RunFolder(tmp_path / "run")
    method = METHODS[type(contents)]
    written = getattr(folder, f"write_{method}")(contents)
    assert written == tmp_path / "run" / type(contents).file
    assert getattr(folder, f"read_{method}")() == contents  # through the JSON text, too


def test_the_json_keeps_the_shape_the_writers_produce_today():
    metrics = predict_metrics().to_json()
    assert list(metrics) == ["format_version", "as_of", "horizon_days", "customers_scored", "training_windows",
                             "pretrained", "validation", "task_weighting", "calibration", "tables", "seconds",
                             "backtest", "audit", "p_alive", "value_score", "actions", "review_customers"]  # fmt: skip
    assert metrics["validation"]["best_epoch"] == 4 and metrics["p_alive"]["note"].startswith("BG/NBD found")
    assert metrics["value_score"]["parameters"] == dataclasses.asdict(ValueScoreConfig())
    assert metrics["tables"]["transactions"]["quarantined_by_rule"] == {
        "missing_customer_id": {"rows": 135_080, "reason": "customer id is empty"}
    }
    score = score_metrics().to_json()
    assert score["p_alive"] == "not available: BG/NBD did not converge"  # the text, as predict writes it
    assert "training_windows" not in score and score["actions"]["item_field"] is None  # absent vs null
    assert "item_mixture" not in score["actions"] and score["unknown_values"] == {"product": 3}
    group = audit().to_json()["attributes"][0]["groups"][1]
    assert list(group)[:3] == ["group", "n", "churn_auc"] and group["churn_auc"] is None and group["flags"]
    assert "recalibration" not in audit().to_json() and metrics["audit"] == {"labelled_customers": 4707,
                                                                               "flagged_groups": 1}  # fmt: skip
    corrected = recalibrated_audit().to_json()["recalibration"]["groups"][0]
    assert corrected["value_factor"] is None and corrected["calibration_gap"] == {"before": 0.18, "after": 0.04}
    first = history().to_json()["finetune"][0]
    assert first["val_loss"] is None and first["train_churn_loss"] == 0.05 and "metrics" not in first
    assert list(attention().to_json()) == ["format_version", "layers", "customers"]
    note = Attention(note="the LstmEncoder has no attention to show", customers=()).to_json()
    assert note == {"format_version": 1, "note": "the LstmEncoder has no attention to show", "customers": []}


def test_a_number_that_is_not_finite_is_written_as_null_and_read_as_nan(tmp_path):
    result = dataclasses.replace(evaluation(), summary={"btyd": {"churn_f1": MeanStd(mean=math.nan, std=math.inf)}})
    path = RunFolder(tmp_path).write_evaluation(result, markdown="# evaluate\n")
    assert '"mean": null' in path.read_text() and (tmp_path / "evaluation.md").read_text() == "# evaluate\n"
    back = RunFolder(tmp_path).read_evaluation().summary["btyd"]["churn_f1"]
    assert math.isnan(back.mean) and math.isnan(back.std)
    legacy = {**result.to_json(), "summary": {"btyd": {"churn_f1": {"mean": float("nan"), "std": 0.0}}}}
    assert math.isnan(EvaluationResult.from_json(legacy).summary["btyd"]["churn_f1"].mean)  # NaN literals too


# --- bad files --------------------------------------------------------------------------------------------------


def test_another_format_version_is_refused_naming_the_file_and_both_versions():
    data = {**predict_metrics().to_json(), "format_version": 2}
    with pytest.raises(
        ArtifactError, match=r"^metrics\.json: has format_version 2; this custseq reads format_version 1"
    ):
        Metrics.from_json(data)
    with pytest.raises(RunFileError, match=r"/run/profit\.json: has format_version '1'; .*`custseq predict`"):
        Profit.from_json({**profit().to_json(), "format_version": "1"}, source="/run/profit.json")


def test_a_missing_format_version_is_refused():
    data = audit().to_json()
    del data["format_version"]
    with pytest.raises(
        ArtifactError, match=r"^audit\.json: has no format_version; this custseq reads format_version 1"
    ):
        Audit.from_json(data)


def test_a_missing_key_is_named():
    data = predict_metrics().to_json()
    del data["tables"]["transactions"]["rows_in"]
    with pytest.raises(
        ArtifactError, match=r"^metrics\.json: key 'tables\.transactions\.rows_in' is missing; write it"
    ):
        Metrics.from_json(data)
    del data["as_of"]
    with pytest.raises(ArtifactError, match=r"key 'as_of' is missing"):
        Metrics.from_json(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(horizon_days="ninety"), r"key 'horizon_days' must be an integer, got str 'ninety'"),
        (lambda d: d.update(horizon_days=True), r"key 'horizon_days' must be an integer, got bool True"),
        (lambda d: d["task_weighting"].update(weights=[0.5, "x"]), r"'task_weighting\.weights\[1\]' must be a number"),
        (lambda d: d.update(training_windows="1998-04-01"), r"'training_windows' must be a list, got str"),
        (lambda d: d.update(surprise=1), r"key 'surprise' is not a key of Metrics; known keys: \['actions'"),
        (lambda d: d.update(p_alive=3), r"'p_alive' must be BgNbdFit or PAliveUnavailable: .*must be a JSON object"),
        (lambda d: d["value_score"]["parameters"].update(beta=-1.0), r"'value_score\.parameters' holds invalid"),
    ],
    ids=["text for int", "bool for int", "text in a list", "text for a list", "unknown key", "p_alive", "config"],
)
def test_an_ill_typed_or_unknown_key_is_named(change, message):
    data = predict_metrics().to_json()
    change(data)
    with pytest.raises(ArtifactError, match=message):
        Metrics.from_json(data)


def test_a_nested_part_reads_on_its_own_and_names_its_key():
    assert TableAccount.from_json(table_account().to_json()) == table_account()
    with pytest.raises(ArtifactError, match=r"^TableAccount: notes\[0\] must be a string, got int 3"):
        TableAccount.from_json({**table_account().to_json(), "notes": [3]})


def test_the_folder_explains_a_missing_or_unreadable_file(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(RunFileError, match=r"evaluation\.json: is not in the folder; `custseq evaluate` writes it"):
        folder.read_evaluation()
    (tmp_path / "history.json").write_text("{ not json")
    with pytest.raises(RunFileError, match=r"history\.json: JSONDecodeError: Expecting property name") as error:
        folder.read_history()
    assert error.value.reason.startswith("JSONDecodeError: ") and error.value.source == str(tmp_path / "history.json")
    (tmp_path / "attention.json").write_text("[1, 2]")
    with pytest.raises(RunFileError, match=r"must hold a JSON object, got list"):
        folder.read_attention()
    (tmp_path / "embeddings.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunFileError, match=r"embeddings\.parquet: \w+"):
        folder.read_embeddings()


# --- tables ------------------------------------------------------------------------------------------------------


def test_tables_are_written_and_read_back(tmp_path):
    folder = RunFolder(str(tmp_path / "new"))
    predictions = pd.DataFrame({"customer_id": ["007", "12"], "churn_probability": [0.25, 0.5],
                                "next_actions": ['[{"action": "call"}]', "[]"]})  # fmt: skip
    assert folder.write_predictions(predictions) == tmp_path / "new" / "predictions.parquet"
    pd.testing.assert_frame_equal(folder.read_predictions(), predictions)
    csv = pd.read_csv(tmp_path / "new" / "predictions.csv", dtype={"customer_id": str})
    pd.testing.assert_frame_equal(csv, predictions)  # the CSV twin holds the same rows
    embeddings = pd.DataFrame({"customer_id": ["007", "12"], "e0": np.float32([0.5, -1.0])})
    folder.write_embeddings(embeddings)
    pd.testing.assert_frame_equal(folder.read_embeddings(), embeddings)
    labelled = predictions.assign(churned=[True, False], value=[0.0, 12.5])
    folder.write_validation(labelled)
    folder.write_test_predictions(labelled.rename(columns={"churn_probability": "custseq:churn_probability"}))
    pd.testing.assert_frame_equal(folder.read_validation(), labelled)
    assert list(folder.read_test_predictions())[1] == "custseq:churn_probability"
    review = pd.DataFrame({"customer_id": ["007"], "reason": ["churn 0.90 vs BG/NBD 0.20 (gap 0.70)"]})
    folder.write_review(review)
    pd.testing.assert_frame_equal(folder.read_review(), review)  # ids stay text: "007", not 7
    assert all(folder.has(f) for f in ("predictions.csv", "embeddings.parquet", "validation.parquet", "review.csv"))


def test_predictions_written_in_parts_equal_those_written_at_once(monkeypatch, tmp_path):
    named = [{"item": "C", "probability": 0.25, "name": "Cheddar"}]  # a record field only the last part's rows have
    predictions = pd.DataFrame({
        "customer_id": ["1", "2", "3", "4", "5"], "churn_probability": [0.123456, 0.5, 0.25, 0.75, 1.0],
        "next_items": ["[]", '[{"item": "A", "probability": 0.5}]', "[]", "[]", json.dumps(named)],
        "next_actions": ['[{"action": "=call", "kind": "retention", "item": null, "probability": null}]', *["[]"] * 4],
    })  # fmt: skip
    whole, parts = RunFolder(str(tmp_path / "whole")), RunFolder(str(tmp_path / "parts"))
    whole.write_predictions(predictions)
    monkeypatch.setattr(run_files, "WRITE_ROWS", 2)
    parts.write_predictions(predictions)
    assert pq.ParquetFile(parts.path / "predictions.parquet").num_row_groups == 3
    assert pq.read_table(parts.path / "predictions.parquet").equals(pq.read_table(whole.path / "predictions.parquet"))
    assert (parts.path / "predictions.csv").read_bytes() == (whole.path / "predictions.csv").read_bytes()
    pd.testing.assert_frame_equal(parts.read_predictions(), whole.read_predictions())
    assert json.loads(parts.read_predictions()["next_items"].iloc[1]) == [
        {"item": "A", "probability": 0.5, "name": None}
    ]


def test_predictions_written_block_by_block_equal_those_written_at_once(monkeypatch, tmp_path):
    """The block writer (scoring shard by shard) gives the files of one write, whatever the blocks' sizes; its
    part files are gone at the end, also after an error."""
    named = [{"item": "C", "probability": 0.25, "name": "Cheddar"}]  # a record field only one block's rows have
    predictions = pd.DataFrame({
        "customer_id": [str(i) for i in range(7)], "churn_probability": np.linspace(0.1, 0.9, 7),
        "next_items": [json.dumps(named), *['[{"item": "A", "probability": 0.5}]'] * 3, *["[]"] * 3],
    })  # fmt: skip
    monkeypatch.setattr(run_files, "WRITE_ROWS", 2)
    whole, blocks = RunFolder(str(tmp_path / "whole")), RunFolder(str(tmp_path / "blocks"))
    whole.write_predictions(predictions)
    with blocks.predictions_writer() as writer:
        for start, stop in ((0, 4), (4, 4), (4, 7)):  # blocks of whole parts, and an empty one
            writer.write(predictions.iloc[start:stop])
    for name in ("predictions.parquet", "predictions.csv"):
        assert (blocks.path / name).read_bytes() == (whole.path / name).read_bytes(), name
    assert sorted(p.name for p in blocks.path.iterdir()) == ["predictions.csv", "predictions.parquet"]
    other = RunFolder(str(tmp_path / "other"))
    with other.predictions_writer() as writer:
        for start, stop in ((0, 3), (3, 7)):  # blocks that cut parts: the same rows in other row groups
            writer.write(predictions.iloc[start:stop])
    assert pq.read_table(other.path / "predictions.parquet").equals(pq.read_table(whole.path / "predictions.parquet"))
    empty = RunFolder(str(tmp_path / "empty"))
    with empty.predictions_writer() as writer:
        writer.write(predictions.iloc[0:0])
    assert pq.read_table(empty.path / "predictions.parquet").num_rows == 0
    assert (empty.path / "predictions.csv").read_text().splitlines() == [
        '"customer_id","churn_probability","next_items"'
    ]
    columns = blocks.read_prediction_columns(["customer_id", "next_items"])
    pd.testing.assert_frame_equal(columns, whole.read_predictions()[["customer_id", "next_items"]])

    failed = RunFolder(str(tmp_path / "failed"))
    with pytest.raises(RuntimeError), failed.predictions_writer() as writer:
        writer.write(predictions)
        raise RuntimeError("stopped")
    assert not (failed.path / "predictions.parquet").exists() and not list(failed.path.glob(".*"))
    with pytest.raises(ValueError, match="no predictions were written"), failed.predictions_writer():
        pass


# --- the real files of each command ------------------------------------------------------------------------------

REAL = sorted(SAMPLES.glob("*/*.json"))


def _same(written: Any, read: Any) -> bool:
    """Equal JSON, with NaN (a literal in today's evaluation.json) equal to the null it is now written as."""
    if isinstance(written, float) and math.isnan(written):
        return read is None
    if isinstance(written, dict):
        return (
            isinstance(read, dict)
            and list(written) == list(read)
            and all(_same(v, read[k]) for k, v in written.items())
        )
    if isinstance(written, list):
        return isinstance(read, list) and len(written) == len(read) and all(map(_same, written, read))
    return written == read and isinstance(read, bool) == isinstance(written, bool)


def test_the_real_files_are_all_there():
    assert {p.name for p in REAL} == set(CONTRACTS) and len(REAL) >= 12


@pytest.mark.parametrize("path", REAL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_files_of_each_command_parse_and_keep_every_key(path):
    """Files written by predict (CDNOW demo and a shop with products), score, evaluate and prepare, as they are
    today plus format_version: every key is read, and written back the same."""
    raw = json.loads(path.read_text())
    contents = CONTRACTS[path.name].from_json(raw, source=path)
    assert _same(raw, contents.to_json())


def test_real_files_hold_what_the_report_reads():
    cdnow = Metrics.from_json(json.loads((SAMPLES / "cdnow-predict" / "metrics.json").read_text()))
    assert cdnow.customers_scored == 23_570 and cdnow.tables["transactions"].rows_in == 69_659
    assert isinstance(cdnow.p_alive, BgNbdFit) and cdnow.actions.item_mixture is None and cdnow.unknown_values is None
    assert cdnow.validation is not None and cdnow.validation.best_epoch == 4  # written as 4.0 today
    shop = RunFolder(SAMPLES / "shop-predict")
    mixture = shop.read_metrics().actions.item_mixture
    assert mixture is not None and mixture.fitted_on == shop.read_metrics().training_windows[0]
    level = shop.read_metrics().actions.item_level  # the shop has products but no categories
    assert level is not None and level.level == "item" and level.category_source is None and not level.hit_rate_at_k
    assert shop.read_profit().curve.to_frame().columns.tolist()[:2] == ["k", "share_contacted"]
    assert RunFolder(SAMPLES / "shop-score").read_metrics().unknown_values == {"product": 0}
    label_free = RunFolder(SAMPLES / "shop-evaluate-label-free").read_evaluation()
    assert math.isnan(label_free.summary["btyd"]["churn_f1"].mean) and "custseq" in label_free.skipped
    windows = RunFolder(SAMPLES / "shop-prepare").read_prepare_summary().windows
    assert isinstance(windows[0].btyd_features, BgNbdFit) and windows[0].churn_rate is None and windows[1].labels


def test_a_prepare_summary_written_before_notes_reads_with_none():
    raw = json.loads((SAMPLES / "shop-prepare" / "prepare.json").read_text())
    del raw["notes"]  # prepare.json as custseq wrote it before the plan carried notes (same format version)
    summary = PrepareSummary.from_json(raw)
    assert summary.notes == () and summary.to_json()["notes"] == []
    assert summary.windows[0].role == "score" and summary.as_of == raw["as_of"]


@pytest.mark.parametrize("rows_per_block", [2, 1000])
def test_list_columns_parsed_by_arrow_equal_those_parsed_in_python(monkeypatch, rows_per_block):
    monkeypatch.setattr(json_texts, "JSON_ROWS_PER_BLOCK", rows_per_block)
    items = [
        json.dumps([{"item": "A", "probability": 0.5}, {"item": "B", "probability": 1e-06}]),
        None,
        "[]",
        json.dumps([{"item": "C", "probability": 0.25, "name": "Cheddar ‘mature’"}]),  # a key only some rows have
        json.dumps([{"item": "tea", "probability": 0.125, "level": "category"}]),
    ]
    multiline = '[\n {"item": "D", "probability": 0.5}\n]'
    for texts in (items, [items[0], None, items[0]] * 3, [*items, multiline], ["[]", None]):
        expected = pa.array([None if t is None else json.loads(t) for t in texts])
        assert json_texts.parse_json_texts(texts).equals(expected)
    with pytest.raises(json.JSONDecodeError):  # bad JSON: Python's error, as before
        json_texts.parse_json_texts(['[{"item": "A"', "[]"])
