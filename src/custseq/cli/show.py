"""What the commands print: the row accounting, the windows, the scores, the pre-training and the back-test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from custseq.cli.app import console
from custseq.io.run_files import PROSPECTS_CSV_FILE, EvaluationResult, Metrics, TableAccount
from custseq.metrics import METRICS, mean_text
from custseq.pipelines.prepare import PrepareResult
from custseq.report.sections.verdict import back_test_verdict
from custseq.scoring.profit import money
from custseq.scoring.prospects import prospects_text

if TYPE_CHECKING:
    from custseq.config import ProfitConfig
    from custseq.models.artifacts import Manifest
    from custseq.pipelines.outputs import PredictRun
    from custseq.scoring.contacts import ContactList


def print_validation(tables: dict[str, TableAccount]) -> None:
    for name, t in tables.items():
        mapping = Table(title=f"{name}: columns", title_justify="left")
        for col in ("role", "source column", "how"):
            mapping.add_column(col)
        for m in t.mapping:
            mapping.add_row(m.column, m.source, m.how)
        for extra, kind in t.extras.items():
            mapping.add_row(extra, "(extra)", kind)
        console.print(mapping)
        account = f"{t.rows_in:,} rows in = {t.rows_used:,} used + {t.rows_quarantined:,} quarantined"
        rules = Table(title=f"{name}: {account}", title_justify="left")
        for col in ("rule", "rows", "action", "reason"):
            rules.add_column(col)
        for rule, hit in t.quarantined_by_rule.items():
            rules.add_row(rule, f"{hit.rows:,}", "quarantined", hit.reason)
        for rule, hit in t.flagged_by_rule.items():
            rules.add_row(rule, f"{hit.rows:,}", "kept, flagged", hit.reason)
        if rules.row_count:
            console.print(rules)
        else:
            console.print(f"[bold]{name}[/]: {t.rows_in:,} rows, all passed validation")
        for note in t.notes:
            console.print(f"  [dim]note:[/] {note}", highlight=False)


def print_prepare(result: PrepareResult) -> None:
    s = result.summary
    print_validation(s.tables)
    windows = Table(title=f"windows (horizon {s.horizon_days} days, as of {s.as_of})", title_justify="left")
    for col in ("as of", "role", "customers", "churn rate", "value in horizon"):
        windows.add_column(col, justify="right" if col != "role" else "left")
    for w in s.windows:
        churn = f"{w.churn_rate:.1%}" if w.churn_rate is not None else "—"
        value = f"{w.total_value:,.0f}" if w.total_value is not None else "—"
        windows.add_row(w.as_of, w.role, f"{w.customers:,}", churn, value)
    console.print(windows)
    for note in s.notes:
        console.print(f"  [dim]note:[/] {note}", highlight=False)
    seq = s.sequence
    fields = ", ".join([*(f"{k} ({v} ids)" for k, v in seq.categorical_fields.items()), *seq.numeric_fields])
    console.print(f"sequences: one token per {seq.token}, last {seq.max_events} events; fields: {fields}")
    console.print(f"Outputs in [bold]{result.out_dir}/[/] (prepare.json, vocab.json, windows/, quarantine/)")


# A P90 of 0 beside an expected value of 45 reads like a contradiction; it is a quantile of a value that is mostly 0
NOTHING_LIKELY_NOTE = (
    "P10 – P90 is 0 – 0 where at least 9 in 10 customers at that churn risk spend nothing: the expected value is "
    "the few buyers' spend spread over them all."
)


SHOWN_COLUMNS = ("customer_id", "churn_probability", "clv_expected", "clv_p10", "clv_p90", "segment")


def print_scores(run: PredictRun) -> None:
    p = run.prediction_columns(SHOWN_COLUMNS)  # read alone from the files when a score wrote them block by block
    h = run.metrics.horizon_days
    console.print(
        f"[bold]{len(p):,}[/] customers scored as of {run.as_of} for the next {h} days: expected churn rate "
        f"{p['churn_probability'].mean():.1%}, total expected value "
        f"{money(p['clv_expected'].sum(), run.data_config.profit.currency)}"
    )
    valuable = p[p["clv_expected"] >= p["clv_expected"].quantile(0.75)]
    top = Table(title="highest churn risk among the top 25% by expected value", title_justify="left")
    for col in ("customer", "churn probability", "expected value", "P10 – P90"):
        top.add_column(col, justify="left" if col == "customer" else "right")
    shown = valuable.sort_values(["churn_probability", "clv_expected"], ascending=False).head(5)
    for r in shown.itertuples():
        top.add_row(
            str(r.customer_id), f"{r.churn_probability:.1%}", f"{r.clv_expected:,.2f}",
            f"{_amount(r.clv_p10)} – {_amount(r.clv_p90)}",
        )  # fmt: skip
    if (shown["clv_p90"] == 0).any():
        top.caption = NOTHING_LIKELY_NOTE
        top.caption_justify = "left"
    console.print(top)
    segments = ", ".join(f"{n:,} {str(name).replace('_', ' ')}" for name, n in p["segment"].value_counts().items())
    console.print(f"segments: {segments}")
    if run.contacts is not None:
        print_contacts(run.contacts, run.data_config.actions.retention_threshold, run.data_config.profit)
    console.print(f"{run.metrics.review_customers:,} customers listed in review.csv for a human look")
    if run.metrics.prospects is not None:
        console.print(prospects_text(run.metrics.prospects, run.data_config.profit.currency), highlight=False)


def _amount(x: object) -> str:
    value = float(str(x))
    return "?" if math.isnan(value) else f"{value:,.2f}"  # NaN: not known (BG/NBD alone: no interval above zero)


def print_contacts(contacts: ContactList, threshold: float, profit: ProfitConfig, top: int = 10) -> None:
    """Whom to contact: how many, what is at stake, the first ``top`` with their reasons (contacts.csv)."""
    c = contacts.contacts
    console.print(
        f"[bold]{len(c):,}[/] customers worth a retention contact (contacts.csv): at risk (churn above "
        f"{threshold:g}, or a regular silent for several of their usual gaps) and expected to save more than the "
        f"contact and offer cost; {money(contacts.total_at_stake, profit.currency)} at stake, expected gain "
        f"{money(contacts.total_gain, profit.currency)} after costs. {contacts.not_worth:,} more "
        f"{'is' if contacts.not_worth == 1 else 'are'} at risk but not worth the costs. Assumed: contact cost "
        f"{profit.contact_cost:g}, offer cost {profit.offer_cost:g}, {profit.save_rate:.0%} of contacted leavers "
        "kept (\\[profit] in the config).",
        highlight=False,
    )
    if c.empty:
        return
    title = f"first {min(top, len(c))} to contact (reasons and actions in contacts.csv)"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("customer", no_wrap=True)
    table.add_column("at stake", justify="right", no_wrap=True)
    table.add_column("why", ratio=1)
    for r in c.head(top).itertuples():
        table.add_row(str(r.customer_id), f"{r.value_at_stake:,.0f}", "; ".join(str(r.reason).split("; ")[:2]))
    console.print(table)


def print_outputs(out_dir: Path, report: Path | None) -> None:
    """Where a predict or score run wrote its files."""
    files = "predictions.parquet/.csv, embeddings.parquet, metrics.json, review.csv, quarantine/"
    files += ", prospects.csv" if (out_dir / PROSPECTS_CSV_FILE).exists() else ""
    files += ", model/" if (out_dir / "model").exists() else ""
    files += f", {report.name}" if report else ""
    console.print(f"Outputs in [bold]{out_dir}/[/] ({files})")


def print_training(m: Metrics, as_of: str) -> None:
    """How the model was trained and how it did on its validation customers (and the back-test, if any)."""
    if m.validation is not None:
        v = m.validation
        console.print(
            f"trained on windows {', '.join(m.training_windows or ())} "
            f"({'pre-trained encoder' if m.pretrained else 'no pre-training'}); network's validation: "
            f"churn AUC {v.churn_auc:.3f}, value nGini {v.value_gini:.3f}, Brier "
            f"{v.churn_brier_before:.3f} -> {v.churn_brier_after:.3f} after {m.calibration} calibration"
        )
    if (c := m.model_choice) is not None:
        carried = f"; trained on {c.trained_horizon_days} days and carried" if c.trained_horizon_days else ""
        console.print(
            f"predictions: churn from {c.churn.description} (validation AUC {c.churn_auc:.3f}), value from "
            f"{c.value.description} (validation nGini {c.value_gini:.3f}){carried}; see the report's "
            "'How this prediction was made'"
        )
    if m.btyd_alone is not None:
        console.print(f"  [dim]note:[/] {m.btyd_alone}", highlight=False)
    if m.backtest is not None:
        console.print(
            f"back-test (the horizon after {as_of} is in the data): churn AUC {m.backtest.churn_auc:.3f}, "
            f"value nGini {m.backtest.value_gini:.3f}"
        )


def print_pretrain(manifest: Manifest, out: Path) -> None:
    metrics = manifest.metrics
    console.print(
        f"pre-trained on windows {', '.join(manifest.cutoffs)}; best validation loss "
        f"{metrics['best_val_loss']:.4f} at epoch {int(metrics['best_epoch'])}"
    )
    console.print(f"Model in [bold]{out}/[/] (config.json, vocab.json, model.safetensors, manifest.json)")


def print_evaluation(result: EvaluationResult) -> None:
    """Every method's mean over seeds, the paired tests against custseq, and what could not run.

    Means only, so that the table reads at 80 columns; evaluation.md and the report add the standard deviations.
    """
    table = Table(
        title=f"{result.protocol} back-test, test as of {result.as_of}, horizon {result.horizon_days} days, "
        f"{len(result.seeds)} seed(s)",
        caption=("means over seeds; ± std in evaluation.md and report.html" if len(result.seeds) > 1 else "one seed"),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    columns = ("churn_auc", "churn_pr_auc", "churn_f1", "churn_brier", "value_gini", "value_mae", "composite",
               "seconds")  # fmt: skip
    rows = {method: [mean_text(k, cells.get(k)) for k in columns] for method, cells in result.summary.items()}
    table.add_column("method", no_wrap=True)
    for j, key in enumerate(columns):
        label = METRICS[key].label
        widest = max([len(r[j]) for r in rows.values()] + [len(word) for word in label.split()])
        table.add_column(label, justify="right", width=widest)
    for method, cells in rows.items():
        table.add_row(method, *cells)
    console.print(table)
    if (trained := result.details.trained_horizon_days) is not None:
        console.print(
            f"  [dim]note:[/] no training window fits {result.horizon_days} days before the test window: custseq "
            f"trained on {trained} days and carried its predictions by BG/NBD, as predict does"
        )
    console.print(back_test_verdict(result), highlight=False)
    one_seed = len(result.seeds) < 2
    if one_seed and result.comparisons:
        console.print("  [dim]note:[/] 1 seed: no spread and no paired t-test (give several --seeds for both)")
    for name, c in result.comparisons.items():
        t_test = "" if one_seed else f"paired t p={c.churn_auc_p:.3g}, "
        gini_p = "" if one_seed else f" (p={c.value_gini_p:.3g})"
        console.print(
            f"{c.reference} vs {name}: ΔAUC {c.churn_auc_difference:+.3f} ({t_test}"
            f"bootstrap p={c.auc_bootstrap.p_value:.3g}), ΔnGini {c.value_gini_difference:+.3f}{gini_p}"
        )
    for name, why in result.skipped.items():
        console.print(f"  [dim]note:[/] {name} was not run: {why}")
