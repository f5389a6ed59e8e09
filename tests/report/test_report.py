"""The HTML report: every section on the page, partial run folders, pure figures, no network, a real browser."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custseq.config import AuditConfig, ModelConfig, ProfitConfig, ReportConfig, ValueScoreConfig
from custseq.errors import DataReadError
from custseq.io import run_files as rf
from custseq.report import SECTIONS, analysis, figures, interactive, read_run, render_report, write_report
from custseq.report.data import ReportData
from custseq.report.html import svg, table
from custseq.report.sections.audit import audit as audit_section
from custseq.report.sections.choice import _sample
from custseq.scoring.profit import simulate_retention
from custseq.scoring.segments import SEGMENTS

CHROMIUM = Path("/usr/bin/chromium")
N_CUSTOMERS = 300
EXPECTED_SECTIONS = (
    "verdict", "segments", "actions", "profit", "backtest", "model-choice", "roc-pr", "calibration", "gain-lift",
    "value-deciles", "audit", "summary", "loss-curves", "attention", "embedding-map",
)  # fmt: skip  # decisions, then trust, then the internals in an appendix
SMALL = ReportConfig(map_customers=150, attention_customers=2, attention_events=12)


# --- a synthetic run folder ---------------------------------------------------------------------------------


def write_run_folder(folder: Path, seed: int = 0, n: int = N_CUSTOMERS) -> Path:
    """Every file of the run folder contract, small and plausible (churn and value related to the predictions)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"C{i:05d}" for i in rng.permutation(n)]
    churn = rng.beta(2, 2, n)
    clv = rng.lognormal(3, 1, n) * (1 - churn)
    kinds = ("retention", "cross_sell", "reactivation")
    actions = [
        json.dumps(
            [
                {"action": f"{kind}_offer", "kind": kind, "probability": float(rng.uniform()),
                 "item": f"item-{rng.integers(5)}" if kind == "cross_sell" else None}
                for kind in rng.choice(kinds, size=rng.integers(1, 3), replace=False)
            ]
        )
        for _ in range(n)
    ]  # fmt: skip
    predictions = pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": churn,
            "clv_expected": clv,
            "clv_p10": clv * 0.2,
            "clv_p50": clv * 0.8,
            "clv_p90": clv * 2.5,
            "p_alive": 1 - churn * 0.9,
            "segment": rng.choice(SEGMENTS, n),
            "value_score": 100 + 11 * rng.uniform(size=n) ** 4,
            "next_actions": actions,
            "retention_flag": churn > 0.6,
            "next_items": [json.dumps([f"item-{j}" for j in rng.choice(8, 2, replace=False)]) for _ in range(n)],
        }
    )
    predictions.to_parquet(folder / "predictions.parquet", index=False)
    centres = rng.normal(0, 4, (4, 16))
    embeddings = centres[rng.integers(4, size=n)] + rng.normal(0, 1, (n, 16))
    frame = pd.DataFrame(embeddings.astype(np.float32), columns=[f"e{j}" for j in range(16)])
    frame.insert(0, "customer_id", ids)
    frame.to_parquet(folder / "embeddings.parquet", index=False)

    labelled = predictions.sample(200, random_state=seed).reset_index(drop=True)
    churned = rng.uniform(size=200) < labelled["churn_probability"]
    value = np.where(churned, 0.0, labelled["clv_expected"] * rng.lognormal(0, 0.5, 200))
    validation = pd.DataFrame(
        {
            "customer_id": labelled["customer_id"],
            "churned": churned,
            "value": value,
            "churn_probability": labelled["churn_probability"],
            "clv_expected": labelled["clv_expected"],
            "btyd_churn_probability": np.clip(labelled["churn_probability"] + rng.normal(0, 0.25, 200), 0, 1),
            "btyd_clv_expected": labelled["clv_expected"] * rng.lognormal(0, 0.8, 200),
        }
    )
    validation.to_parquet(folder / "validation.parquet", index=False)
    test = pd.DataFrame({"customer_id": validation["customer_id"], "churned": churned, "value": value})
    for method, noise in (("custseq", 0.0), ("bg-nbd", 0.25), ("lightgbm", 0.15)):
        test[f"{method}:churn_probability"] = np.clip(labelled["churn_probability"] + rng.normal(0, noise, 200), 0, 1)
        test[f"{method}:clv_expected"] = labelled["clv_expected"] * rng.lognormal(0, noise * 3, 200)
    test.loc[:9, "lightgbm:churn_probability"] = np.nan  # a method without predictions for a few customers
    test.to_parquet(folder / "test_predictions.parquet", index=False)

    run = rf.RunFolder(folder)

    def epochs(count: int, start: float) -> tuple[rf.EpochRecord, ...]:
        return tuple(
            rf.EpochRecord(epoch=e + 1, train_loss=start / (e + 1), val_loss=start / (e + 1) ** 0.7 + 0.05, lr=1e-3,
                           grad_norm=1.5, seconds=2.0, items_per_s=900.0, metrics={"val_score": 0.5 + e / 100})
            for e in range(count)
        )  # fmt: skip

    run.write_history(rf.History(pretrain=epochs(4, 3.0), finetune=epochs(6, 1.2)))
    samples = []
    for i in range(3):
        events = 20 + 10 * i
        weights = rng.dirichlet(np.ones(events), size=2)
        labels = [f"2011-{1 + e // 28:02d}-{1 + e % 28:02d} · {rng.uniform(5, 90):.2f}" for e in range(events)]
        samples.append(
            rf.AttentionSample(customer_id=ids[i], churn_probability=float(churn[i]), clv_expected=float(clv[i]),
                               events=tuple(labels), weights=tuple(map(tuple, weights.tolist())))
        )  # fmt: skip
    run.write_attention(rf.Attention(layers=2, customers=tuple(samples)))

    simulation = simulate_retention(predictions, ProfitConfig())
    profit = rf.Profit(
        parameters=ProfitConfig(), customers=n,
        curve=rf.ProfitCurve(**{c: tuple(simulation.curve[c].tolist()) for c in simulation.curve.columns}),
        best={o: rf.ProfitBest(k=b.k, profit=b.profit) for o, b in simulation.best.items()},
    )  # fmt: skip
    run.write_profit(profit)

    def metrics_of(n: int, auc: float, observed: float, gap: float, ratio: float | None) -> rf.AuditGroupMetrics:
        return rf.AuditGroupMetrics(
            n=n, churn_auc=auc, mean_predicted_churn=0.5, observed_churn=observed, calibration_gap=gap,
            mean_predicted_value=30.0, mean_actual_value=28.0, value_ratio=ratio,
            segment_shares={"loyal": 0.5, "new": 0.3, "at_risk": 0.2},
        )  # fmt: skip

    def group(name: str, flags: tuple[str, ...] = ()) -> rf.AuditGroup:
        metrics = metrics_of(int(rng.integers(20, 80)), float(rng.uniform(0.6, 0.9)), float(rng.uniform(0.3, 0.7)),
                             float(rng.normal(0, 0.1)), None if flags else 1.07)  # fmt: skip
        return rf.AuditGroup(group=name, metrics=metrics, flags=flags)

    audit = rf.Audit(
        settings=AuditConfig(min_group_size=20, calibration_tolerance=0.1),
        labelled_customers=200,
        overall=metrics_of(200, 0.8, 0.5, 0.0, 1.07),
        attributes=(
            rf.AuditAttribute(attribute="country", groups=(group("UK"), group("FR", ("calibration gap 0.18 > 0.1",)))),
            rf.AuditAttribute(attribute="first purchase channel", groups=(group("web"), group("store"))),
        ),
        flagged_groups=1,
    )
    run.write_audit(audit)
    review = validation.head(30).assign(reason="custseq and BG/NBD disagree", segment="at_risk")
    review = review[["customer_id", "reason", "churn_probability", "btyd_churn_probability", "clv_expected",
                     "btyd_clv_expected", "segment"]]  # fmt: skip
    review.to_csv(folder / "review.csv", index=False)
    contacts = pd.DataFrame({
        "rank": [1, 2], "customer_id": ids[:2], "segment": ["at_risk", "hibernating"],
        "churn_probability": [0.8, 0.7], "value_at_stake": [120.0, 80.0], "expected_gain": [20.0, 9.5],
        "action": ["Call them", "Win-back email"],
        "reason": ["usually buys every 9 days; silent for 80 days (9 of their usual gaps)", "churn risk 70%"],
    })  # fmt: skip
    contacts.to_csv(folder / "contacts.csv", index=False)

    table_info = rf.TableAccount(
        rows_in=5000, rows_used=4990, rows_quarantined=10,
        quarantined_by_rule={"negative_amount": rf.RuleCount(rows=7, reason="amount below zero"),
                             "unparseable_date": rf.RuleCount(rows=3, reason="timestamp unreadable")},
        flagged_by_rule={"outlier_amount": rf.RuleCount(rows=4, reason="amount far above the rest")},
        notes=("transactions.ts (date): format ISO 8601 detected",),
        mapping=(rf.ColumnSource(column="customer_id", source="CustomerID", how="detected"),
                 rf.ColumnSource(column="amount", source="Price", how="--column amount=Price")),
        extras={},
    )  # fmt: skip
    summary = {
        m: {k: rf.MeanStd(mean=float(rng.uniform(0.5, 0.9)), std=float(rng.uniform(0, 0.02)))
            for k in ("churn_auc", "churn_pr_auc", "churn_f1", "churn_brier", "value_gini", "value_rmse", "composite",
                      "seconds")}
        for m in ("custseq", "bg-nbd", "lightgbm")
    }  # fmt: skip
    per_seed = {m: tuple({k: v.mean for k, v in s.items()} for _ in range(3)) for m, s in summary.items()}
    evaluation = rf.EvaluationResult(
        protocol="paper", as_of="2011-09-01", horizon_days=90, seeds=(0, 1, 2), summary=summary, per_seed=per_seed,
        comparisons={"bg-nbd": rf.Comparison(reference="custseq", churn_auc_difference=0.05, churn_auc_p=0.01,
                                             value_gini_difference=0.1, value_gini_p=0.03, composite_difference=0.07,
                                             composite_p=0.02,
                                             auc_bootstrap=rf.AucBootstrap(difference=0.05, low=0.01, high=0.09,
                                                                           p_value=0.02)),
                     "lightgbm": rf.Comparison(reference="custseq", churn_auc_difference=0.01, churn_auc_p=0.04,
                                               value_gini_difference=0.02, value_gini_p=0.3, composite_difference=0.01,
                                               composite_p=0.2,
                                               auc_bootstrap=rf.AucBootstrap(difference=0.01, low=-0.01, high=0.03,
                                                                             p_value=0.3))},
        skipped={"lstm": "torch LSTM disabled in this run"},
        details=rf.EvaluationDetails(test_customers=200, test_churn_rate=float(churned.mean()),
                                     training_windows=(300, 290), label_fractions=(1.0,),
                                     deterministic=("bg-nbd",), config=ModelConfig(),
                                     tables={"transactions": table_info}),
    )  # fmt: skip
    run.write_evaluation(evaluation)

    scores = {"churn_auc": 0.81, "churn_pr_auc": 0.77, "churn_brier": 0.17, "value_rmse": 40.2, "value_mae": 18.3,
              "value_gini": 0.62, "value_top_decile_share": 0.41, "composite": 0.72}  # fmt: skip
    metrics = rf.Metrics(
        as_of="2011-12-01", horizon_days=90, customers_scored=n,
        training_windows=("2011-09-02", "2011-06-04"), pretrained=True,
        validation=rf.ValidationMetrics(**scores, churn_brier_before=0.2, churn_brier_after=0.17, best_epoch=5,
                                        validation_customers=200),
        task_weighting=rf.TaskWeighting(mode="uncertainty", weights=(1.7, 0.4)), calibration="isotonic",
        tables={"transactions": table_info},
        seconds=12.5, p_alive=rf.BgNbdFit(model="BG/NBD", penalizer=0.001, r=0.24, alpha=4.4, a=0.79, b=2.43),
        value_score=rf.ValueScore(formula="value_score = 100 · [1 + σ(5 · ln V − 0.693147)^2]",
                                  parameters=ValueScoreConfig()),
        actions=rf.ActionSettings(item_field="StockCode", retention_threshold=0.6, mode="replace", k=3,
                                  catalogue="default", note="Actions follow the default catalogue."),
        review_customers=30,
        model_choice=_model_choice(),
    )  # fmt: skip
    run.write_metrics(metrics)
    return folder


def _model_choice() -> rf.ModelChoice:
    def figures(auc: float, gini: float) -> rf.CandidateValidation:
        return rf.CandidateValidation(churn_auc=auc, churn_brier=0.18, value_gini=gini, value_total_ratio=0.9)

    return rf.ModelChoice(
        validation_customers=200,
        candidates={"network": figures(0.80, 0.61), "boosted": figures(0.79, 0.64),
                    "boosted-features": figures(0.78, 0.63), "btyd": figures(0.74, 0.55)},
        skipped={}, churn=rf.ChosenBlend(first="network", second=None, weight=1.0, description="network"),
        value=rf.ChosenBlend(first="boosted", second="network", weight=0.7,
                             description="0.7 × boosted + 0.3 × network"),
        churn_auc=0.81, value_gini=0.65, churn_calibration="isotonic", value_scale=1.1, interval_below_p10=0.02,
        interval_above_p90=0.09, boosted_rounds={"boosted": (120, 80), "boosted-features": (110, 90)},
    )  # fmt: skip


def test_model_choice_section_names_the_choice_and_what_the_sequence_adds(report_html: str):
    section = _section(report_html, "model-choice")
    assert "LightGBM on features + sequence embedding" in section and "200 validation customers" in section
    assert "0.7 × LightGBM on features + sequence embedding + 0.3 × sequence network" in section
    # best sequence candidate minus features-only: AUC 0.80 − 0.78, nGini 0.64 − 0.63
    assert "churn AUC +0.020, value nGini +0.010" in section and "The sequence adds to the features" in section


def test_model_choice_says_when_the_predictor_learned_from_a_sample_of_the_latest_window():
    assert _sample(_model_choice()) == ""
    sampled = _sample(dataclasses.replace(_model_choice(), sampled_from=788_902))
    assert sampled.startswith(" The latest window's 788,902 customers are more than")
    assert "max_training_customers" in sampled and "stable sample" in sampled


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_folder(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def report(run_folder: Path) -> Path:
    return write_report(run_folder, cfg=SMALL)


@pytest.fixture(scope="module")
def report_html(report: Path) -> str:
    return report.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def static_html(run_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    cfg = ReportConfig(map_customers=150, attention_customers=2, attention_events=12, interactive=False)
    out = write_report(run_folder, tmp_path_factory.mktemp("static") / "static.html", cfg)
    return out.read_text(encoding="utf-8")


def _section(html: str, section_id: str) -> str:
    start = html.index(f'id="{section_id}"')
    return html[start : html.index("</section>", start)]


# --- the page -------------------------------------------------------------------------------------------------


def test_sections_are_the_contract():
    assert SECTIONS == EXPECTED_SECTIONS


def test_every_section_is_on_the_page_in_order(report: Path, report_html: str, run_folder: Path):
    assert report == run_folder / "report.html"
    positions = [report_html.index(f'<section class="card" id="{s}">') for s in SECTIONS]
    assert positions == sorted(positions)
    for s in SECTIONS:
        assert f'href="#{s}"' in report_html  # the table of contents links to it
    assert 'class="na"' not in report_html, "a full run folder leaves no section unavailable"
    assert "could not be drawn" not in report_html


def test_the_first_screen_answers_who_leaves_what_is_at_stake_whom_to_contact_and_how_much_to_trust_it(
    report_html: str,
):
    verdict = _section(report_html, "verdict")
    assert "are more likely than not to leave in the next 90 days" in verdict
    assert "2 customers are worth a retention contact" in verdict and "200 is at stake" in verdict
    assert "expected to gain 30 after costs" in verdict and "usually buys every 9 days" in verdict
    # the back-test's verdict: custseq against the best baseline, per metric, with the t-test over seeds
    assert "In the back-test (test window as of 2011-09-01, 90 days, 3 seeds)" in verdict
    assert "for lightgbm, the best baseline" in verdict and "paired t-test over seeds p = " in verdict
    assert "a customer churns when they make no purchase in the 90 days after 2011-12-01" in verdict
    assert "name them with [profit] currency" in verdict  # no currency set: said, not guessed
    assert "to contact <b>2 (expected gain 30)</b>" in report_html  # the header counts the same list
    assert "validation churn AUC <b>0.810</b>" in report_html  # the final predictions', not the network's


def test_full_report_shows_the_numbers(report_html: str):
    assert "as of <b>2011-12-01</b>" in report_html and "horizon <b>90 days</b>" in report_html
    summary = _section(report_html, "summary")
    assert "negative_amount" in summary and "CustomerID" in summary and "ISO 8601" in summary
    assert "amount below zero" in summary and ">7<" in summary  # rule, reason and rows, as prepare reports them
    backtest = _section(report_html, "backtest")
    assert "lightgbm" in backtest and "torch LSTM disabled" in backtest and backtest.count("<b>") >= 8
    assert "On the 200 test customers" in _section(report_html, "roc-pr")
    attention = _section(report_html, "attention")  # a table per customer: date, what, attention as a bar
    assert attention.count('<table class="attention">') == SMALL.attention_customers and "<svg" not in attention
    assert attention.count('class="bar"') == SMALL.attention_customers * SMALL.attention_events
    assert "<td>2011-01-" in attention and "<td>spent " in attention  # in dates and words, not ticks
    assert "t-SNE" in _section(report_html, "embedding-map") and "of 300)" in _section(report_html, "embedding-map")
    assert "σ(5 · ln V" in _section(report_html, "segments")
    audit = _section(report_html, "audit")
    assert audit.count('class="flagged"') == 1 and "calibration gap 0.18" in audit and "30 customers" in audit
    assert "best k" in _section(report_html, "profit")


def test_the_audit_says_flagged_groups_are_not_corrected_unless_asked(report_html: str):
    audit = _section(report_html, "audit")
    assert "Group corrections" in audit and "off by default" in audit
    assert "<code>[audit] recalibrate_groups = true</code>" in audit and "churn logit shift" not in audit


def test_the_audit_shows_the_group_corrections_before_and_after(run_folder: Path):
    plain = rf.RunFolder(run_folder).read_audit()
    corrected = rf.AuditCorrection(
        attribute="country", group="FR", n=41, churn_shift=0.62, value_factor=None,
        calibration_gap=rf.BeforeAfter(before=0.181, after=0.043),
        value_ratio_error=rf.BeforeAfter(before=0.07, after=0.07),
    )  # fmt: skip
    recalibration = rf.AuditRecalibration(
        measured="cross-fitted (two halves)", groups=(corrected,),
        overall_calibration_gap=rf.BeforeAfter(before=0.02, after=0.011),
        overall_value_ratio_error=rf.BeforeAfter(before=0.07, after=0.07),
        overall_churn_auc=rf.BeforeAfter(before=0.8, after=0.805),
    )  # fmt: skip
    settings = AuditConfig(min_group_size=20, calibration_tolerance=0.1, recalibrate_groups=True)

    def section(recalibration: rf.AuditRecalibration) -> str:
        contents = rf.Audit(settings=settings, labelled_customers=plain.labelled_customers, overall=plain.overall,
                            attributes=plain.attributes, flagged_groups=1, recalibration=recalibration)  # fmt: skip
        return audit_section(ReportData(run_dir=run_folder, audit=contents), SMALL)

    audit = section(recalibration)
    assert "off by default" not in audit and "churn logit shift" in audit and "|cal. gap| after" in audit
    assert "<td>country: FR</td>" in audit and ">+0.620<" in audit and ">0.181<" in audit and ">0.043<" in audit
    assert "<td>all validation customers</td>" in audit and "cross-fitted (two halves)" in audit
    assert "0.800 before, 0.805 after" in audit
    assert "nothing was corrected" in section(rf.AuditRecalibration(**{**vars(recalibration), "groups": ()}))


def test_plotly_is_inlined_once_with_static_fallbacks(report_html: str):
    assert report_html.count("Plotly.newPlot(") == 3  # ROC/PR, embedding map, profit
    assert report_html.count('<script type="text/javascript">') == 1  # plotly.js itself, once
    assert report_html.count("<noscript><svg") == 3


def test_static_report_has_no_javascript_figures_and_is_small(report_html: str, static_html: str):
    assert "Plotly.newPlot" not in static_html and "<noscript>" not in static_html
    assert all(f'id="{s}"' in static_html for s in SECTIONS)
    assert len(static_html) < 1_500_000 and len(static_html) < len(report_html) / 3


def test_a_report_of_cdnow_size_stays_small(tmp_path: Path):
    """23,570 customers (the CDNOW demo), every file present: the report stays far below 15 MB."""
    folder = write_run_folder(tmp_path / "cdnow-size", seed=2, n=23_570)
    size = write_report(folder, cfg=ReportConfig(map_customers=500)).stat().st_size
    assert size <= 15e6, size  # plotly.js (about 5 MB) is most of it; the figures scale with the caps, not n
    assert size >= 4e6  # ... and it really is inlined


def test_an_evaluate_folder_shows_the_back_test_right_after_its_verdict(run_folder: Path, tmp_path: Path):
    folder = tmp_path / "evaluate-only"
    folder.mkdir()
    shutil.copy(run_folder / "evaluation.json", folder / "evaluation.json")
    html = render_report(read_run(folder), SMALL)
    positions = [html.index(f'<section class="card" id="{s}">') for s in ("verdict", "backtest", "segments")]
    assert positions == sorted(positions)
    assert "In the back-test (test window as of 2011-09-01" in _section(html, "verdict")


def test_the_report_is_reproducible(run_folder: Path, static_html: str):
    cfg = ReportConfig(map_customers=150, attention_customers=2, attention_events=12, interactive=False)
    assert render_report(read_run(run_folder), cfg) == static_html  # same files in, same bytes out


def test_the_page_loads_nothing_from_the_network(report_html: str):
    assert not re.search(r"<script[^>]*\ssrc=", report_html, re.I)
    assert not re.search(r"<link[^>]*href=[\"']?(https?:)?//", report_html, re.I)
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", report_html, re.I)
    assert not re.search(r"<(img|image|iframe)[^>]*\s(src|href|xlink:href)=[\"']?(https?:)?//", report_html, re.I)
    assert not re.search(r"@import", report_html)


def test_a_folder_with_only_metrics_and_predictions_still_has_every_section(run_folder: Path, tmp_path: Path):
    for name in ("metrics.json", "predictions.parquet"):
        shutil.copy(run_folder / name, tmp_path / name)
    html = write_report(tmp_path, cfg=SMALL).read_text()
    assert all(f'<section class="card" id="{s}">' in html for s in SECTIONS)
    for s in ("roc-pr", "calibration", "gain-lift", "value-deciles", "loss-curves", "attention", "embedding-map"):
        assert "Not available:" in _section(html, s), s
    assert "custseq evaluate" in _section(html, "backtest")
    assert "attention.json is not in the run folder; <code>custseq predict</code> writes it" in html
    for s in ("summary", "segments", "actions"):
        assert "Not available" not in _section(html, s).split("<h3>")[0], s
    assert "Plotly.newPlot" not in html and len(html) < 1_000_000  # no interactive figure, so no plotly.js


def test_without_evaluate_the_validation_customers_stand_in(run_folder: Path, tmp_path: Path):
    for name in ("metrics.json", "predictions.parquet", "validation.parquet"):
        shutil.copy(run_folder / name, tmp_path / name)
    html = write_report(tmp_path, cfg=ReportConfig(interactive=False)).read_text()
    backtest = _section(html, "backtest")
    assert "evaluation.json is not in the run folder; run <code>custseq evaluate</code> for the full" in backtest
    assert "200 held-out customers" in backtest and ">bg-nbd</td>" in backtest and ">custseq</td>" in backtest
    roc = _section(html, "roc-pr")
    assert "held-out validation customers" in roc and "bg-nbd (AUC" in roc and "lightgbm" not in roc
    assert "custseq and bg-nbd, the best other method by value Gini" in _section(html, "value-deciles")


def test_an_empty_folder_renders_and_a_corrupt_file_is_explained(tmp_path: Path):
    (tmp_path / "metrics.json").write_text("{ not json")
    html = write_report(tmp_path, tmp_path / "out" / "r.html", SMALL).read_text()
    assert all(f'id="{s}"' in html for s in SECTIONS)
    assert "metrics.json could not be read (JSONDecodeError" in html
    with pytest.raises(DataReadError, match="does not exist"):
        write_report(tmp_path / "absent")


def test_a_file_of_another_format_version_or_shape_is_explained_not_fatal(run_folder: Path, tmp_path: Path):
    for name in ("metrics.json", "predictions.parquet", "audit.json", "review.csv", "profit.json"):
        shutil.copy(run_folder / name, tmp_path / name)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, "format_version": 2}))
    audit = json.loads((tmp_path / "audit.json").read_text())
    del audit["overall"]["observed_churn"]
    (tmp_path / "audit.json").write_text(json.dumps(audit))
    data = read_run(tmp_path)
    assert data.metrics is None and data.audit is None and data.profit is not None
    assert data.problems["metrics.json"] == (
        "has format_version 2; this custseq reads format_version 1: write it again with this custseq "
        "(`custseq predict`)"
    )
    assert "key 'overall.observed_churn' is missing" in data.problems["audit.json"]
    html = render_report(data, SMALL)
    assert "metrics.json could not be read (has format_version 2; this custseq reads format_version 1" in html
    assert "audit.json could not be read (key &#x27;overall.observed_churn&#x27; is missing" in _section(html, "audit")
    assert "could not be drawn" not in html and "30 customers" in _section(html, "audit")  # review.csv still shown


def test_read_run_gives_the_typed_contracts(run_folder: Path):
    data = read_run(run_folder)
    assert data.problems == {}
    assert isinstance(data.metrics, rf.Metrics) and data.metrics.tables["transactions"].rows_quarantined == 10
    assert isinstance(data.evaluation, rf.EvaluationResult) and data.evaluation.summary["custseq"]["churn_auc"].std >= 0
    assert isinstance(data.profit, rf.Profit) and data.profit.customers == N_CUSTOMERS
    assert isinstance(data.audit, rf.Audit) and data.audit.attributes[0].groups[1].flags
    assert isinstance(data.history, rf.History) and len(data.history.finetune) == 6
    assert isinstance(data.attention, rf.Attention) and data.attention.layers == 2
    assert data.review is not None and len(data.review) == data.metrics.review_customers


# --- numbers and figures on hand data ----------------------------------------------------------------------------


def test_gain_curve_and_lift_by_hand():
    curve = analysis.gain_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert curve["share_churners"].tolist() == [0, 0.5, 0.5, 1, 1]
    assert curve["lift"].iloc[1:].tolist() == pytest.approx([2.0, 1.0, 4 / 3, 1.0])


def test_reliability_table_by_hand():
    t = analysis.reliability_table([0, 1, 1, 0, 1], [0.05, 0.15, 0.95, 1.0, 0.92], bins=10)
    assert t["customers"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert t.loc[9, "observed"] == pytest.approx(2 / 3) and t.loc[9, "mean_predicted"] == pytest.approx(2.87 / 3)
    assert np.isnan(t.loc[5, "observed"])


def test_value_deciles_by_hand():
    t = analysis.value_decile_table(np.arange(1, 21), np.arange(1, 21) * 2.0)
    assert t["customers"].tolist() == [2] * 10
    assert t["mean_actual"].tolist() == [1.5 + 2 * i for i in range(10)]
    assert t["share_of_value"].sum() == pytest.approx(1)


def test_stable_sample_depends_on_ids_not_order():
    ids = [f"c{i}" for i in range(500)]
    first = {ids[i] for i in analysis.stable_sample(ids, 50)}
    shuffled = list(np.random.default_rng(0).permutation(ids))
    assert {shuffled[i] for i in analysis.stable_sample(shuffled, 50)} == first and len(first) == 50
    assert analysis.stable_sample(ids[:10], 50).tolist() == list(range(10))


def test_embedding_map_is_deterministic(run_folder: Path):
    embeddings = pd.read_parquet(run_folder / "embeddings.parquet")
    a, b = analysis.embedding_map(embeddings, 60), analysis.embedding_map(embeddings, 60)
    assert len(a) == 60 and np.isfinite(a[["x", "y"]].to_numpy()).all()
    pd.testing.assert_frame_equal(a, b)


def test_roc_pr_figure_has_a_line_per_method_and_chance():
    y = np.array([0, 0, 1, 1, 0, 1])
    curves = analysis.roc_pr_curves(y, {"custseq": y * 0.8 + 0.1, "bg-nbd": [0.5, 0.2, 0.4, 0.9, 0.6, 0.3]})
    fig = figures.roc_pr_figure(curves)
    roc, pr = fig.axes
    assert [ln.get_label() for ln in roc.get_lines()] == ["custseq (AUC 1.000)", "bg-nbd (AUC 0.556)", "chance"]
    assert len(pr.get_lines()) == 3 and roc.get_xlabel() == "false positive rate" and pr.get_ylabel() == "precision"


def test_calibration_gain_and_decile_figures():
    y = np.array([0, 1] * 20)
    p = np.linspace(0.05, 0.95, 40)
    cal = figures.calibration_figure({"custseq": analysis.reliability_table(y, p)})
    assert len(cal.axes) == 2
    assert [ln.get_label() for ln in cal.axes[0].get_lines()] == ["custseq", "perfectly calibrated"]
    assert len(cal.axes[1].patches) == 10  # one bar per bin
    gain = figures.gain_lift_figure({"custseq": analysis.gain_curve(y, p), "x": analysis.gain_curve(y, 1 - p)})
    assert [ln.get_label() for ln in gain.axes[0].get_lines()] == ["custseq", "x", "random"]
    deciles = figures.value_deciles_figure({"custseq": analysis.value_decile_table(p, p)})
    assert len(deciles.axes) == 1 and len(deciles.axes[0].patches) == 20


def test_event_labels_read_as_words():
    from custseq.report.sections.model import _in_words

    assert _in_words(["WHITE HEART", "12.50"]) == "bought WHITE HEART for 12.50"
    assert _in_words(["1,204.00"]) == "spent 1,204.00" and _in_words(["·", "3.00"]) == "spent 3.00"
    assert _in_words(["login"]) == "login" and _in_words([]) == "event"


def test_loss_attention_map_segments_and_profit_figures():
    epochs = [{"epoch": 1, "train_loss": 1, "val_loss": 2}, {"epoch": 2, "train_loss": 0.5, "val_loss": None}]
    loss = figures.loss_curves_figure({"pretrain": [], "finetune": epochs})
    assert loss.axes[0].texts[0].get_text() == "no epochs recorded"
    assert [ln.get_label() for ln in loss.axes[1].get_lines()] == ["train", "validation"]

    points = pd.DataFrame({"x": [0, 1, 2.0], "y": [1, 0, 2.0], "churn_probability": [0.1, 0.5, 0.9],
                           "clv_expected": [0.0, 10, 1000]})  # fmt: skip
    emb = figures.embedding_map_figure(points)
    scatters = [ax.collections[0] for ax in emb.axes if ax.collections and ax.get_title()]
    assert len(scatters) == 2 and all(s.get_rasterized() and len(s.get_offsets()) == 3 for s in scatters)

    seg = figures.segments_figure(pd.DataFrame({"segment": ["a", "b"], "share": [0.25, 0.75],
                                                "total_clv_expected": [30.0, 10.0]}))  # fmt: skip
    assert [p.get_width() for p in seg.axes[0].patches] == [0.25, 0.75, 0.75, 0.25]

    curve = pd.DataFrame({"k": [0, 1, 2], "share_contacted": [0, 0.5, 1], "profit_saved_value": [0, 5, 3],
                          "profit_random": [0, 1, 2]})  # fmt: skip
    prof = figures.profit_figure(curve, {"saved_value": {"k": 1, "profit": 5.0}})
    lines = prof.axes[0].get_lines()
    assert [ln.get_label() for ln in lines[:3]] == ["by expected saved value", "_", "random order"]
    assert lines[1].get_xydata().tolist() == [[0.5, 5.0]]


def test_interactive_figures():
    y = np.array([0, 0, 1, 1])
    roc = interactive.roc_pr_plotly(
        analysis.roc_pr_curves(y, {"custseq": [0.1, 0.2, 0.8, 0.9], "bg-nbd": [0.4, 0.6, 0.5, 0.7]})
    )
    assert [t.name for t in roc.data] == [
        "custseq (AUC 1.000)", "custseq (AP 1.000)", "bg-nbd (AUC 0.750)", "bg-nbd (AP 0.833)", "chance",
        "chance (churn rate 0.50)",
    ]  # fmt: skip
    assert all(t.type == "scatter" for t in roc.data)  # SVG traces, not WebGL
    points = pd.DataFrame({"customer_id": ["a", "b"], "x": [0.0, 1], "y": [1.0, 0], "churn_probability": [0.2, 0.9],
                           "clv_expected": [5.0, 50], "segment": ["loyal", "at_risk"]})  # fmt: skip
    emb = interactive.embedding_map_plotly(points)
    assert len(emb.data) == 2 and emb.data[0].customdata[1].tolist() == ["b", 0.9, 50.0, "at_risk"]
    assert "customer %{customdata[0]}" in emb.data[0].hovertemplate and "segment" in emb.data[1].hovertemplate
    curve = pd.DataFrame({"k": [0, 1, 2], "share_contacted": [0, 0.5, 1.0], "profit_saved_value": [0, 5, 3.0]})
    prof = interactive.profit_plotly(curve, {"saved_value": {"k": 1, "profit": 5.0}})
    assert len(prof.data) == 2 and prof.data[1].x == (0.5,)
    assert [(a.x, a.text) for a in prof.layout.annotations] == [(0.5, "best k = 1")]


def test_svg_is_inline_markup_and_tables_escape():
    fig = figures.segments_figure(pd.DataFrame({"segment": ["a"], "share": [1.0], "total_clv_expected": [1.0]}))
    markup = svg(fig)
    assert markup.startswith("<svg") and "<?xml" not in markup and 'role="img"' in markup and "<text" in markup
    html = table(pd.DataFrame({"name": ["<b>x</b>"], "n": [1234567], "p": [0.5]}), formats={"p": ".0%"})
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "1,234,567" in html and "50%" in html


def test_read_run_leaves_missing_files_none(run_folder: Path, tmp_path: Path):
    shutil.copy(run_folder / "profit.json", tmp_path / "profit.json")
    data = read_run(tmp_path)
    assert data.profit is not None and data.predictions is None and data.problems == {}
    assert data.missing("evaluation.json") == "evaluation.json is not in the run folder; `custseq evaluate` writes it"


# --- in a browser ----------------------------------------------------------------------------------------------

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is missing: install Debian's chromium (make test does, as root) for the browser tests"
        if os.environ.get("CI"):  # CI installs it: a missing browser there is a failure, not a skip
            pytest.fail(why)
        pytest.skip(why)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield browser
        browser.close()


def _not_blank(png: Path) -> None:
    try:
        from PIL import Image

        pixels = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    except ImportError:
        import matplotlib.image

        pixels = matplotlib.image.imread(png)[..., :3] * 255
    flat = pixels.reshape(-1, 3)[::7]  # a sample of the pixels is enough, and a full page has millions
    background = np.median(flat, axis=0)
    differ = np.abs(flat - background).sum(axis=1) > 30
    colours = np.unique(flat.round().astype(np.int64) @ np.array([65536, 256, 1]))
    assert len(colours) > 20, f"{png} is (nearly) one colour"
    assert differ.mean() > 0.05, f"only {differ.mean():.1%} of {png}'s pixels differ from the background"


def _open(context, report: Path, errors: list[str], requests: list[str]):
    page = context.new_page()
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri(), wait_until="load")
    return page


def test_report_renders_in_chromium(browser, report: Path, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    errors, requests = [], []
    page = _open(context, report, errors, requests)
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=15_000)
    for s in SECTIONS:
        assert page.locator(f"section#{s}").is_visible(), s
    assert page.locator(".js-plotly-plot").count() == 3
    assert page.locator("noscript svg").count() == 0  # with JavaScript on, the static twins stay hidden
    page.screenshot(path=tmp_path / "first_screen.png")
    page.screenshot(path=tmp_path / "full.png", full_page=True)
    context.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in requests), requests
    _not_blank(tmp_path / "first_screen.png")
    _not_blank(tmp_path / "full.png")


def test_report_fits_a_phone_without_horizontal_scrolling(browser, report: Path, tmp_path: Path):
    context = browser.new_context(viewport={"width": 390, "height": 800})
    errors, requests = [], []
    page = _open(context, report, errors, requests)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll inside themselves
    assert page.locator("section#verdict").is_visible()
    top = page.evaluate("document.querySelector('section#verdict').getBoundingClientRect().top")
    assert top < 800, "the verdict starts on the first phone screen"
    page.screenshot(path=tmp_path / "phone.png")
    context.close()
    assert errors == []
    _not_blank(tmp_path / "phone.png")


def test_report_reads_without_javascript(browser, report: Path, tmp_path: Path):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    errors, requests = [], []
    page = _open(context, report, errors, requests)
    for s in SECTIONS:
        assert page.locator(f"section#{s}").is_visible(), s
    fallbacks = page.locator("noscript svg")
    assert fallbacks.count() == 3 and all(fallbacks.nth(i).is_visible() for i in range(3))
    assert page.locator(".js-plotly-plot").count() == 0 and not page.locator(".interactive").first.is_visible()
    page.locator("section#profit").screenshot(path=tmp_path / "profit.png")
    context.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in requests), requests
    _not_blank(tmp_path / "profit.png")


# Pairs of non-empty <text> boxes inside one visible <svg> (a chart) that overlap by more than a pixel each way.
OVERLAPPING_LABELS_JS = """
() => {
  const found = [];
  for (const svg of document.querySelectorAll('svg')) {
    const frame = svg.getBoundingClientRect();
    if (frame.width === 0 || frame.height === 0) continue;
    const boxes = Array.from(svg.querySelectorAll('text'))
      .filter(t => t.textContent.trim() !== '')
      .map(t => ({text: t.textContent.trim(), r: t.getBoundingClientRect()}))
      .filter(b => b.r.width > 0 && b.r.height > 0);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].r, b = boxes[j].r;
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) {
          const section = svg.closest('section');
          found.push(`${section ? section.id : '?'}: "${boxes[i].text}" over "${boxes[j].text}"`);
        }
      }
    }
  }
  return found;
}
"""


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("javascript", [True, False], ids=["plotly", "static"])
def test_no_chart_label_overlaps_another(browser, report: Path, width: int, javascript: bool):
    context = browser.new_context(viewport={"width": width, "height": 800}, java_script_enabled=javascript)
    errors, requests = [], []
    page = _open(context, report, errors, requests)
    if javascript:
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=15_000)
    charts = page.evaluate("document.querySelectorAll('svg text').length")
    overlapping = page.evaluate(OVERLAPPING_LABELS_JS)
    context.close()
    assert charts > 50  # the charts' labels are there to be checked
    assert overlapping == []


def test_orderings_with_the_same_best_k_share_one_label():
    from custseq.report.figures import best_k_labels

    curve = pd.DataFrame({"k": [0, 5, 10], "share_contacted": [0.0, 0.5, 1.0]})
    best = {"saved_value": {"k": 0, "profit": 0.0}, "churn_probability": {"k": 0, "profit": 0.0},
            "random": {"k": 5, "profit": -3.0}}  # fmt: skip
    labels = best_k_labels(curve, best, ["saved_value", "churn_probability", "random"])
    assert [label.text for label in labels] == ["best k = 0 (expected saved value, churn probability)", "best k = 5"]
    assert [label.share for label in labels] == [0.0, 0.5]
