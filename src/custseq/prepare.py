"""The data pipeline: read → validate/quarantine → windows → labels, features and sequences on disk.

``prepare`` writes, under ``out``::

    prepare.json                 summary: mapping, row accounting, windows, vocabulary sizes, timings
    vocab.json                   vocabularies and numeric statistics (fitted on training rows only)
    daily_spend.parquet          net spend per customer and day before the scoring cutoff (cohort forecasts)
    quarantine/<table>.parquet   rejected rows with rule and reason (``.flagged`` = kept but flagged)
    windows/<as-of>/features.parquet, labels.parquet, sequences/shard=N/*.parquet
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseq.config import RunConfig, config_to_dict, parse_date, parse_horizon
from custseq.errors import SchemaError
from custseq.features.btyd import add_btyd_features
from custseq.features.rfm import DailyTables, build_daily, build_features
from custseq.io.engine import connect, drop_tables, fetch_scalar
from custseq.io.mapping import ColumnMap, resolve
from custseq.io.sources import Source, load_raw
from custseq.labels import build_labels
from custseq.schema import TABLES
from custseq.sequences.build import build_token_lists, read_sequences, write_sequences
from custseq.sequences.tokens import create_tokens, layout_for
from custseq.sequences.vocab import SequenceVocab, encode_tables, fit_vocab
from custseq.validate.parse import stage
from custseq.validate.quarantine import CleanTable, apply
from custseq.windows import Window, WindowPlan, cutoff_of, data_span, day_after, plan_windows

DAILY_SPEND = "daily_spend.parquet"

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ValidationReport:
    """What validation found: the mapping and the row account of every table."""

    mappings: dict[str, ColumnMap]
    tables: dict[str, CleanTable]

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for name, t in self.tables.items():
            m = self.mappings[name]
            out[name] = {
                "mapping": [{"column": c, "source": s, "how": h} for c, s, h in m.describe()],
                "extras": {c: t.kinds[c].value for c in m.extras if c in t.kinds},
                "rows_in": t.rows_in,
                "rows_used": t.rows_used,
                "rows_quarantined": t.rows_quarantined,
                "quarantined_by_rule": {r: {"rows": n, "reason": t.reasons[r]} for r, n in t.rule_counts.items()},
                "flagged_by_rule": {r: {"rows": n, "reason": t.reasons[r]} for r, n in t.flag_counts.items()},
                "notes": list(t.notes),
            }
        return out


@dataclass(frozen=True)
class PrepareResult:
    """Where ``prepare`` wrote its outputs, and its summary."""

    out_dir: Path
    summary: dict[str, Any]
    plan: WindowPlan
    vocab: SequenceVocab

    def window_dir(self, window: Window) -> Path:
        return self.out_dir / "windows" / window.key

    def features(self, window: Window) -> pa.Table:
        return pq.read_table(self.window_dir(window) / "features.parquet")

    def labels(self, window: Window) -> pa.Table:
        return pq.read_table(self.window_dir(window) / "labels.parquet")

    def sequences(self, window: Window) -> pa.Table:
        return read_sequences(self.window_dir(window) / "sequences")


@dataclass(frozen=True)
class PreparedWindows:
    """The window folders of a ``prepare`` output, by role (read back from its prepare.json)."""

    scoring: Path
    training: tuple[Path, ...]  # latest first; training[0] is the validation window
    horizon_days: int

    @classmethod
    def read(cls, prepared: Path | str) -> PreparedWindows:
        prepared = Path(prepared)
        summary = json.loads((prepared / "prepare.json").read_text())
        folder = {w["role"]: [] for w in summary["windows"]}
        for w in summary["windows"]:  # written score, validation, then the older training windows
            folder[w["role"]].append(prepared / "windows" / w["as_of"])
        training = (*folder.get("validation", []), *folder.get("train", []))  # none: window.require_training off
        return cls(folder["score"][0], training, summary["horizon_days"])

    @property
    def validation(self) -> Path:
        return self.training[0]


def validate_tables(
    con: duckdb.DuckDBPyConnection,
    transactions: Any,
    *,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    quarantine_dir: Path | None = None,
    future_cutoff: dt.datetime | None = None,
) -> ValidationReport:
    """Read, map, parse and validate the tables into ``clean_<table>`` on ``con``.

    Raises
    ------
    CustseqError
        Any structural problem: unreadable source, missing or unknown column, empty table.
    """
    cfg = config or RunConfig()
    mappings, tables = {}, {}
    for name, data in (("transactions", transactions), ("customers", customers), ("events", events)):
        if data is None:
            continue
        raw = f"raw_{name}"
        columns = load_raw(con, Source.of(data, name), raw)
        cmap = resolve(TABLES[name], columns, getattr(cfg.columns, name), detect=cfg.columns.detect)
        staged = stage(con, raw, cmap, cfg.validation, cfg.sequence.max_category_share)
        cutoff = future_cutoff if name != "customers" else None
        tables[name] = apply(con, staged, cfg.validation, future_cutoff=cutoff, quarantine_dir=quarantine_dir)
        mappings[name] = cmap
        con.execute(f"DROP VIEW IF EXISTS {staged.sql_name}")
        drop_tables(con, raw)
    return ValidationReport(mappings, tables)


def validate(
    transactions: Any,
    *,
    customers: Any = None,
    events: Any = None,
    as_of: str | dt.date | None = None,
    config: RunConfig | None = None,
    quarantine_dir: Path | str | None = None,
) -> ValidationReport:
    """Validate tables (paths, ``db.duckdb:table`` or frames) and optionally write the quarantine files.

    With ``as_of`` and ``config.validation.future_rows == "quarantine"``, rows after as-of are quarantined.
    """
    cfg = config or RunConfig()
    con = connect(cfg.engine)
    try:
        future = cutoff_of(parse_date(as_of, "as-of")) if as_of else None
        folder = Path(quarantine_dir) if quarantine_dir else None
        return validate_tables(
            con,
            transactions,
            customers=customers,
            events=events,
            config=cfg,
            quarantine_dir=folder,
            future_cutoff=future,
        )
    finally:
        con.close()


def prepare(
    transactions: Any,
    *,
    out: Path | str,
    customers: Any = None,
    events: Any = None,
    as_of: str | dt.date | None = None,
    horizon: str | int | None = None,
    config: RunConfig | None = None,
    progress: Progress | None = None,
) -> PrepareResult:
    """Validate the tables and write windows, labels, features and sequences under ``out``.

    Parameters
    ----------
    transactions, customers, events
        A path (CSV, CSV.gz, Parquet), a list of paths, ``path.duckdb:table``, or a pandas/polars/Arrow frame.
    out
        Output folder (created; existing window outputs are replaced).
    as_of
        Inclusive scoring date; default the last day in the data.
    horizon
        ``90d``, ``13w``, ``6m``, ``1y`` or days; overrides ``config.window.horizon_days``.
    config
        All other settings.
    progress
        Called with a short description as each stage starts.

    Raises
    ------
    CustseqError
        On any problem the user can fix (bad input, impossible windows).
    """
    cfg = _with_overrides(config or RunConfig(), as_of, horizon)
    say = progress or (lambda _msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    con = connect(cfg.engine)
    try:
        tick = time.perf_counter()
        say("validating tables")
        future = cutoff_of(cfg.window.as_of) if cfg.window.as_of else None
        report = validate_tables(
            con,
            transactions,
            customers=customers,
            events=events,
            config=cfg,
            quarantine_dir=out / "quarantine",
            future_cutoff=future,
        )
        tx, cust, ev = (report.tables.get(n) for n in ("transactions", "customers", "events"))
        timings["validate_s"] = time.perf_counter() - tick

        plan = plan_windows(*data_span(con, tx.sql_name), cfg.window)
        tick = time.perf_counter()
        say("fitting vocabularies on training rows")
        roles = _roles(plan)
        layout = layout_for(tx, ev, cfg.sequence.token)
        vocab = fit_vocab(con, layout, tx, ev, plan.vocab_cutoff, cfg.sequence, cutoffs=[w.cutoff for _, w in roles])
        vocab.save(out / "vocab.json")
        timings["vocab_s"] = time.perf_counter() - tick

        tick = time.perf_counter()
        say("ordering every customer's events once")
        lists = build_token_lists(con, vocab, "tokens")
        drop_tables(con, "tokens", "enc_transactions", "enc_events")
        daily = build_daily(con, tx, plan.scoring.cutoff)
        spend = f"SELECT customer_id, day AS ts, net AS amount FROM {daily.daily} ORDER BY customer_id, day"
        pq.write_table(con.sql(spend).to_arrow_table(), out / DAILY_SPEND)
        timings["base_s"] = time.perf_counter() - tick

        windows = []
        for role, window in roles:
            tick = time.perf_counter()
            say(f"window {window.key} ({role}): features, labels, sequences")
            windows.append(_write_window(con, cfg, plan, role, window, tx, cust, ev, vocab, out, lists, daily))
            timings[f"window_{window.key}_s"] = time.perf_counter() - tick
    finally:
        con.close()
    summary = {
        "as_of": plan.scoring.as_of.isoformat(),
        "horizon_days": cfg.window.horizon_days,
        "data_start": plan.data_start.isoformat(),
        "data_end": plan.data_end.isoformat(),
        "tables": report.to_dict(),
        "windows": windows,
        "sequence": {
            "token": layout.token,
            "max_events": cfg.sequence.max_events,
            "categorical_fields": {f.name: vocab.size(f.name) for f in layout.categorical()},
            "numeric_fields": [f.name for f in layout.numeric()],
            "vocab_fitted_before": vocab.fitted_before,
        },
        "config": config_to_dict(cfg),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (out / "prepare.json").write_text(json.dumps(summary, indent=1, default=str))
    return PrepareResult(out, summary, plan, vocab)


def _with_overrides(cfg: RunConfig, as_of: Any, horizon: Any) -> RunConfig:
    window = cfg.window
    if as_of is not None:
        window = dataclasses.replace(window, as_of=parse_date(as_of, "as-of"))
    if horizon is not None:
        window = dataclasses.replace(window, horizon_days=parse_horizon(horizon))
    return dataclasses.replace(cfg, window=window)


def _roles(plan: WindowPlan) -> list[tuple[str, Window]]:
    roles = [("score", plan.scoring)] + ([("validation", plan.training[0])] if plan.training else [])
    return roles + [("train", w) for w in plan.training[1:]]


def _write_window(
    con: duckdb.DuckDBPyConnection,
    cfg: RunConfig,
    plan: WindowPlan,
    role: str,
    window: Window,
    tx: CleanTable,
    cust: CleanTable | None,
    ev: CleanTable | None,
    vocab: SequenceVocab,
    out: Path,
    lists: str,
    daily: DailyTables,
) -> dict[str, Any]:
    folder = out / "windows" / window.key
    folder.mkdir(parents=True, exist_ok=True)
    features = build_features(con, tx, window, cfg.features, customers=cust, events=ev, daily=daily)
    entry: dict[str, Any] = {
        "role": role,
        "as_of": window.key,
        "cutoff": window.cutoff.isoformat(),
        "label_end": window.end.isoformat(),
        "customers": features.num_rows,
    }
    if cfg.features.btyd:
        features, entry["btyd_features"] = add_btyd_features(features, window.horizon_days)
    pq.write_table(features, folder / "features.parquet")
    labelled = role != "score" or plan.scoring_labels_observed
    if labelled:
        labels = build_labels(con, tx, window)
        pq.write_table(labels, folder / "labels.parquet")
        churned = pc.sum(labels.column("churned")).as_py() or 0
        entry["churn_rate"] = round(churned / max(labels.num_rows, 1), 4)
        entry["total_value"] = round(pc.sum(labels.column("value")).as_py() or 0.0, 2)
    entry["labels"] = labelled
    write_sequences(con, vocab, window, cfg.sequence, folder / "sequences", features.num_rows, lists=lists)
    return entry


@dataclass(frozen=True)
class ScoringSequences:
    """Sequences of every customer at one cutoff, encoded with an existing vocabulary."""

    folder: Path
    window: Window
    customers: int
    unknown_values: dict[str, int]  # non-empty values per field that the vocabulary does not know
    report: ValidationReport


def prepare_scoring_sequences(
    transactions: Any,
    *,
    vocab: SequenceVocab,
    out: Path | str,
    customers: Any = None,
    events: Any = None,
    as_of: str | dt.date | None = None,
    config: RunConfig | None = None,
    with_features: bool = False,
) -> ScoringSequences:
    """Validate new data and write its sequences as of ``as_of`` with a saved model's vocabulary.

    ``out`` receives ``sequences/``, ``quarantine/`` and, ``with_features``, the window's
    ``features.parquet`` (the layout of a ``prepare`` window folder, without labels).

    Raises
    ------
    SchemaError
        If the data lack a field the vocabulary was fitted with (the model cannot read them).
    CustseqError
        On any other input problem.
    """
    cfg = config or RunConfig()
    out = Path(out)
    con = connect(cfg.engine)
    try:
        future = cutoff_of(parse_date(as_of, "as-of")) if as_of else None
        report = validate_tables(
            con, transactions, customers=customers, events=events, config=cfg, quarantine_dir=out / "quarantine",
            future_cutoff=future,
        )  # fmt: skip
        tx, ev = report.tables["transactions"], report.tables.get("events")
        _check_fields(vocab, {"transactions": tx, "events": ev})
        window = Window(future or day_after(data_span(con, tx.sql_name)[1]), cfg.window.horizon_days)
        if with_features:
            out.mkdir(parents=True, exist_ok=True)
            features = build_features(
                con, tx, window, cfg.features, customers=report.tables.get("customers"), events=ev
            )
            if cfg.features.btyd:  # a failed fit leaves the columns missing and is logged
                features, _ = add_btyd_features(features, window.horizon_days)
            pq.write_table(features, out / "features.parquet")
        unknown = encode_tables(con, vocab, tx, ev)
        tokens = create_tokens(con, vocab.layout, [window.cutoff])
        lists = build_token_lists(con, vocab, tokens)
        n = fetch_scalar(con, f"SELECT count(*) FROM {lists} WHERE first_transaction < $c", {"c": window.cutoff})
        write_sequences(con, vocab, window, cfg.sequence, out / "sequences", n, lists=lists)
    finally:
        con.close()
    return ScoringSequences(out / "sequences", window, n, unknown, report)


def _check_fields(vocab: SequenceVocab, tables: dict[str, CleanTable | None]) -> None:
    missing = [
        f"{f.table}.{f.column}"
        for f in vocab.layout.fields
        if f.name != "n_lines" and (tables.get(f.table) is None or not tables[f.table].has(f.column))
    ]
    if vocab.layout.token == "order" and not tables["transactions"].has("order_id"):
        missing.append("transactions.order_id")
    if missing:
        raise SchemaError(
            f"the model was trained with field(s) {missing}, which these data lack; map the columns with "
            "--column (e.g. --column product=<your column>) or retrain on data of this shape"
        )
