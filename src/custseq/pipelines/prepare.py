"""Prepare: validate the tables, then write windows, labels, features and sequences on disk.

``prepare`` writes the layout of :mod:`custseq.io.prepared` under ``out``; ``prepare_scoring_sequences``
writes one unlabelled window of new data with a saved model's vocabulary (what ``score`` and ``embed`` read).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseq.config import RunConfig
from custseq.errors import ConfigError, SchemaError
from custseq.features.btyd import add_btyd_features
from custseq.features.prospects import prospects_table
from custseq.features.rfm import DailyTables, build_daily, build_features
from custseq.io.engine import connect, drop_tables, fetch_arrow, fetch_scalar, memory_limit_bytes
from custseq.io.prepared import (
    DAILY_SPEND_FILE,
    VOCAB_FILE,
    PreparedWindows,
    WindowFolder,
    window_folder,
)
from custseq.io.run_files import (
    QUARANTINE_DIR,
    BgNbdFit,
    PreparedWindow,
    PrepareSummary,
    RunFolder,
    SequenceSummary,
)
from custseq.io.tables import Tables
from custseq.labels import build_labels
from custseq.pipelines.ranges import (
    CustomerRange,
    PartitionWork,
    customer_ranges,
    finish_window,
    first_timed_day,
    outputs_by_range,
    range_count,
    window_specs,
    write_outputs,
)
from custseq.progress import Note
from custseq.sequences.build import build_token_lists, read_sequences, sequences_sql, write_sequences
from custseq.sequences.tokens import TokenLayout, create_tokens, layout_for, tokens_query
from custseq.sequences.vocab import (
    SequenceVocab,
    encode_tables,
    event_types,
    fit_categories,
    fit_numeric_stats,
    fit_vocab,
)
from custseq.text.events import fit_on_events, uses_text, with_text_vectors
from custseq.validate.currencies import currency_of_data
from custseq.validate.quarantine import CleanTable
from custseq.validate.tables import ValidationReport, validate_into
from custseq.windows import Window, WindowPlan, check_as_of, cutoff_of, data_span, day_after, plan_windows

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PrepareResult:
    """Where ``prepare`` wrote its outputs, and its summary."""

    out_dir: Path
    summary: PrepareSummary
    plan: WindowPlan
    vocab: SequenceVocab

    @property
    def layout(self) -> PreparedWindows:
        """The written window folders, by role."""
        return PreparedWindows.of(self.out_dir, self.summary)

    def window(self, window: Window) -> WindowFolder:
        """Where one window of the plan was written."""
        return window_folder(self.out_dir, window.key)

    def features(self, window: Window) -> pa.Table:
        return pq.read_table(self.window(window).features)

    def labels(self, window: Window) -> pa.Table:
        return pq.read_table(self.window(window).labels)

    def sequences(self, window: Window) -> pa.Table:
        return read_sequences(self.window(window).sequences)


# Engines besides the embedded DuckDB, by EngineConfig.name. custseq.spark adds "spark" when it is imported (the
# CLI imports it): the pipelines sit below it and cannot import it themselves.
ENGINES: dict[str, Callable[..., PrepareResult]] = {}


def prepare(tables: Tables, config: RunConfig, out: Path | str, *, progress: Progress | None = None) -> PrepareResult:
    """Validate the tables and write windows, labels, features and sequences under ``out``.

    Parameters
    ----------
    tables
        The user's tables and their column mapping.
    config
        Every setting; ``config.window`` gives the as-of date (default the last day in the data) and horizon.
    out
        Output folder (created; existing window outputs are replaced).
    progress
        Called with a short description as each stage starts.

    Raises
    ------
    CustseqError
        On any problem the user can fix (bad input, impossible windows).
    """
    if config.engine.name != "duckdb":
        if config.engine.name not in ENGINES:
            raise ConfigError(
                f"engine {config.engine.name!r} is not loaded; import custseq.{config.engine.name} first "
                "(the command line does), or set engine.name = 'duckdb'"
            )
        return ENGINES[config.engine.name](tables, config, out, progress=progress)
    say = progress or (lambda _msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    con = connect(config.engine)
    try:
        with timed_stage(timings, "validate_s", say, "validating tables"):
            future = cutoff_of(config.window.as_of) if config.window.as_of else None
            report = validate_into(con, tables, config, quarantine_dir=out / QUARANTINE_DIR, future_cutoff=future)
            tx, cust, ev = report.tables["transactions"], report.tables.get("customers"), report.tables.get("events")
        plan = plan_windows(*data_span(con, tx.sql_name), config.window)
        config, currency_note = _with_data_currency(con, config, report, plan.scoring.cutoff)
        notes = plan.notes + ((currency_note,) if currency_note else ())
        for note in notes:
            say(Note(note))
        text_model = None
        if ev is not None and uses_text(ev, config.text):
            with timed_stage(timings, "text_s", say, "fitting the text model on training texts"):
                text_model = fit_on_events(con, ev, plan.vocab_cutoff, config.text)
                ev = with_text_vectors(con, ev, text_model)
        clean = {"transactions": tx, **({"customers": cust} if cust else {}), **({"events": ev} if ev else {})}
        rows = sum(t.rows_used for t in clean.values())
        ranges = customer_ranges(con, tx, range_count(rows, config.engine, memory_limit_bytes(con)))
        layout = layout_for(tx, ev, config.sequence.token)
        if len(ranges) > 1:
            vocab, windows = _prepare_by_ranges(con, config, plan, clean, layout, ranges, out, timings, say)
        else:
            vocab, windows = _prepare_at_once(con, config, plan, clean, layout, out, timings, say)
        vocab = dataclasses.replace(vocab, text=text_model)
        vocab.save(out / VOCAB_FILE)
    finally:
        con.close()
    return finish_prepare(out, plan, config, report, windows, notes, layout, vocab, timings)


def _prepare_at_once(
    con: duckdb.DuckDBPyConnection,
    config: RunConfig,
    plan: WindowPlan,
    tables: dict[str, CleanTable],
    layout: TokenLayout,
    out: Path,
    timings: dict[str, float],
    say: Progress,
) -> tuple[SequenceVocab, list[PreparedWindow]]:
    """The vocabulary and the windows, every customer at once."""
    tx, cust, ev = tables["transactions"], tables.get("customers"), tables.get("events")
    roles = window_roles(plan)
    with timed_stage(timings, "vocab_s", say, "fitting vocabularies on training rows"):
        cutoffs = [w.cutoff for _, w in roles]
        vocab = fit_vocab(con, layout, tx, ev, plan.vocab_cutoff, config.sequence, cutoffs=cutoffs)
    with timed_stage(timings, "base_s", say, "ordering every customer's events once"):
        lists = build_token_lists(con, vocab, "tokens")
        drop_tables(con, "tokens", "enc_transactions", "enc_events")
        daily = build_daily(con, tx, plan.scoring.cutoff)
        spend = f"SELECT customer_id, day AS ts, net AS amount FROM {daily.daily} ORDER BY customer_id, day"
        pq.write_table(con.sql(spend).to_arrow_table(), out / DAILY_SPEND_FILE)
    windows = []
    for role, window in roles:
        with timed_stage(
            timings, f"window_{window.key}_s", say, f"window {window.key} ({role}): features, labels, sequences"
        ):
            windows.append(_write_window(con, config, plan, role, window, tx, cust, ev, vocab, out, lists, daily))
    return vocab, windows


def _prepare_by_ranges(
    con: duckdb.DuckDBPyConnection,
    config: RunConfig,
    plan: WindowPlan,
    tables: dict[str, CleanTable],
    layout: TokenLayout,
    ranges: list[CustomerRange],
    out: Path,
    timings: dict[str, float],
    say: Progress,
) -> tuple[SequenceVocab, list[PreparedWindow]]:
    """The vocabulary and the windows of data larger than DuckDB's memory keeps at once: customers a range at a
    time (:mod:`custseq.pipelines.ranges`), the same files as one pass over every customer."""
    roles = window_roles(plan)
    tx = tables["transactions"]
    with timed_stage(timings, "vocab_s", say, "fitting vocabularies on training rows"):
        ev = tables.get("events")
        values = fit_categories(con, layout, tx, ev, plan.vocab_cutoff, config.sequence)
        cutoffs = (plan.vocab_cutoff, *(w.cutoff for _, w in roles))
        # the tokens' numeric sums in one aggregate over every customer, the tokens not kept
        tokens, params = tokens_query(layout, tx.sql_name, ev.sql_name if ev else None, cutoffs)
        stats = fit_numeric_stats(con, layout, f"({tokens})", plan.vocab_cutoff, params)
        vocab = SequenceVocab(layout, values, stats, plan.vocab_cutoff.isoformat())
    message = f"{len(roles)} windows: features, labels, sequences ({len(ranges)} ranges of customers)"
    with timed_stage(timings, "windows_s", say, message):
        specs = window_specs(con, tx, plan, roles)
        work = PartitionWork(
            tables=tables, columns={}, config=config, layout=layout, vocab=vocab, token_cutoffs=cutoffs,
            stats_before=plan.vocab_cutoff, windows=specs, scoring_cutoff=plan.scoring.cutoff,
            first_timed_day=first_timed_day(con, tx, plan.scoring.cutoff),
        )  # fmt: skip
        write_outputs(outputs_by_range(con, work, ranges, "windows"), out, specs)
        windows = [finish_window(out, spec, config) for spec in specs]
    return vocab, windows


def finish_prepare(
    out: Path,
    plan: WindowPlan,
    config: RunConfig,
    report: ValidationReport,
    windows: list[PreparedWindow],
    notes: tuple[str, ...],
    layout: TokenLayout,
    vocab: SequenceVocab,
    timings: dict[str, float],
) -> PrepareResult:
    """Write prepare.json for the written windows (either engine) and return the result."""
    summary = PrepareSummary(
        as_of=plan.scoring.as_of.isoformat(),
        horizon_days=config.window.horizon_days,
        data_start=plan.data_start.isoformat(),
        data_end=plan.data_end.isoformat(),
        tables=report.accounts(),
        windows=tuple(windows),
        notes=notes,
        sequence=_sequence_summary(layout, vocab, config.sequence.max_events),
        config=config,
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
    RunFolder(out).write_prepare_summary(summary)
    return PrepareResult(out, summary, plan, vocab)


def _with_data_currency(
    con: duckdb.DuckDBPyConnection, config: RunConfig, report: ValidationReport, cutoff: dt.datetime
) -> tuple[RunConfig, str | None]:
    """The config with ``[profit] currency`` set to the data's own, when the user named none and the data say it
    (:func:`custseq.validate.currencies.currency_of_data`); and a note on how it was found, or why not."""
    if config.profit.currency is not None:
        return config, None
    tx, mapping = report.tables["transactions"], report.mappings["transactions"]
    sources = mapping.amount_product or tuple(s for c, s in mapping.canonical.items() if c == "amount")
    found = currency_of_data(con, tx.sql_name, tx.has("currency"), tuple(sources), cutoff)
    if found.code is None:
        return config, found.note
    return dataclasses.replace(config, profit=dataclasses.replace(config.profit, currency=found.code)), found.note


@contextlib.contextmanager
def timed_stage(timings: dict[str, float], key: str, say: Progress, message: str) -> Iterator[None]:
    """Say that a stage starts, and record its seconds under ``key``."""
    say(message)
    tick = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - tick


def _sequence_summary(layout: TokenLayout, vocab: SequenceVocab, max_events: int) -> SequenceSummary:
    return SequenceSummary(
        token=layout.token,
        max_events=max_events,
        categorical_fields={f.name: vocab.size(f.name) for f in layout.categorical()},
        numeric_fields=tuple(f.name for f in layout.numeric()),
        vocab_fitted_before=vocab.fitted_before,
    )


def window_roles(plan: WindowPlan) -> list[tuple[str, Window]]:
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
) -> PreparedWindow:
    folder = window_folder(out, window.key)
    folder.folder.mkdir(parents=True, exist_ok=True)
    features = build_features(
        con, tx, window, cfg.features, customers=cust, events=ev, event_types=event_types(vocab), daily=daily,
        text=cfg.text,
    )  # fmt: skip
    customers = features.num_rows
    btyd_fit = None
    if cfg.features.btyd:
        features, btyd_fit = add_btyd_features(features, window.horizon_days)
    pq.write_table(features, folder.features)
    labelled = role != "score" or plan.scoring_labels_observed
    churn_rate = total_value = None
    if labelled:
        labels = build_labels(con, tx, window)
        pq.write_table(labels, folder.labels)
        churned = pc.sum(labels.column("churned")).as_py() or 0
        churn_rate = round(churned / max(labels.num_rows, 1), 4)
        total_value = round(pc.sum(labels.column("value")).as_py() or 0.0, 2)
    write_sequences(con, vocab, window, cfg.sequence, folder.sequences, features.num_rows, lists=lists)
    if ev is not None:
        write_prospects(con, cfg, window, folder, tx, ev, cust, daily, event_types(vocab), labelled=labelled)
    return PreparedWindow(
        role=role, as_of=window.key, cutoff=window.cutoff.isoformat(), label_end=window.end.isoformat(),
        customers=customers, btyd_features=btyd_fit, churn_rate=churn_rate, total_value=total_value, labels=labelled,
    )  # fmt: skip


@dataclass(frozen=True)
class ScoringSequences:
    """Sequences of every customer at one cutoff, encoded with an existing vocabulary."""

    folder: WindowFolder | None  # sequences/, quarantine/ and, with features, features.parquet (None: removed)
    window: Window
    customers: int
    unknown_values: dict[str, int]  # non-empty values per field that the vocabulary does not know
    report: ValidationReport


def prepare_scoring_sequences(
    tables: Tables,
    config: RunConfig,
    out: Path | str,
    *,
    vocab: SequenceVocab,
    with_features: bool = False,
    btyd_fit: BgNbdFit | None = None,
) -> ScoringSequences:
    """Validate new data and write its sequences as of ``as_of`` with a saved model's vocabulary.

    ``out`` receives ``sequences/``, ``quarantine/`` and, ``with_features``, the window's
    ``features.parquet`` (the layout of a ``prepare`` window folder, without labels); its BG/NBD features
    use ``btyd_fit`` (the saved model's), else a fit on these customers.

    Raises
    ------
    SchemaError
        If the data lack a field the vocabulary was fitted with (the model cannot read them).
    CustseqError
        On any other input problem.
    """
    out = Path(out)
    con = connect(config.engine)
    try:
        report, window = _validated_window(con, tables, config, vocab, out / QUARANTINE_DIR)
        if with_features:
            out.mkdir(parents=True, exist_ok=True)
            features = _window_features(con, report, window, config, vocab, btyd_fit)
            pq.write_table(features, WindowFolder(out).features)
            if (ev := report.tables.get("events")) is not None:
                tx, cust = report.tables["transactions"], report.tables.get("customers")
                write_prospects(
                    con, config, window, WindowFolder(out), tx, ev, cust, None, event_types(vocab), labelled=False
                )
        lists, unknown = _token_lists(con, report, vocab, window)
        n = fetch_scalar(con, f"SELECT count(*) FROM {lists} WHERE first_transaction < $c", {"c": window.cutoff})
        write_sequences(con, vocab, window, config.sequence, WindowFolder(out).sequences, n, lists=lists)
    finally:
        con.close()
    return ScoringSequences(WindowFolder(out), window, n, unknown, report)


def write_prospects(
    con: duckdb.DuckDBPyConnection,
    cfg: RunConfig,
    window: Window,
    folder: WindowFolder,
    tx: CleanTable,
    ev: CleanTable,
    cust: CleanTable | None,
    daily: DailyTables | None,
    types: tuple[str, ...],
    *,
    labelled: bool,
) -> None:
    """Write :func:`prospects_table` to the window's folder."""
    table = prospects_table(
        con, window, tx, ev, cust, daily, types, features=cfg.features, text=cfg.text, labelled=labelled
    )  # fmt: skip
    pq.write_table(table, folder.prospects)


@dataclass(frozen=True)
class ScoringTables:
    """One unlabelled window of new data held in memory: what :func:`prepare_scoring_sequences` writes, as tables."""

    window: Window
    features: pa.Table  # features.parquet's table
    sequences: pa.Table  # one row per customer in id order: the rows of a single shard of sequences/
    unknown_values: dict[str, int]  # non-empty values per field that the vocabulary does not know
    report: ValidationReport


def prepare_scoring_tables(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    config: RunConfig,
    *,
    vocab: SequenceVocab,
    btyd_fit: BgNbdFit | None = None,
    quarantine_dir: Path | None = None,
) -> ScoringTables:
    """:func:`prepare_scoring_sequences` with features, in memory on ``con``: no folder, no Parquet files.

    The same validation, features and sequences; the sequences are the rows one shard would hold, so for up to
    ``config.sequence.shard_customers`` customers they are batched as the files are. Rejected rows are written
    to ``quarantine_dir`` when one is given. Its tables are left on ``con``: pass a connection of its own
    (e.g. a cursor, closed after).

    Raises
    ------
    SchemaError
        If the data lack a field the vocabulary was fitted with (the model cannot read them).
    CustseqError
        On any other input problem.
    """
    report, window = _validated_window(con, tables, config, vocab, quarantine_dir)
    features = _window_features(con, report, window, config, vocab, btyd_fit)
    lists, unknown = _token_lists(con, report, vocab, window)
    params = {"cutoff": window.cutoff, "max_events": config.sequence.max_events}
    sequences = fetch_arrow(con, sequences_sql(vocab, lists), params).drop_columns(["shard"])
    return ScoringTables(window, features, sequences, unknown, report)


def _validated_window(
    con: duckdb.DuckDBPyConnection, tables: Tables, config: RunConfig, vocab: SequenceVocab, quarantine: Path | None
) -> tuple[ValidationReport, Window]:
    """Validate new data, check that they have the vocabulary's fields, and place the scoring window."""
    future = cutoff_of(config.window.as_of) if config.window.as_of else None
    report = validate_into(con, tables, config, quarantine_dir=quarantine, future_cutoff=future)
    tx, ev = report.tables["transactions"], report.tables.get("events")
    if vocab.text is not None and ev is not None:  # the model's own text model, as it made its tokens
        ev = with_text_vectors(con, ev, vocab.text)
        report = dataclasses.replace(report, tables={**report.tables, "events": ev})
    _check_fields(vocab, {"transactions": tx, "events": ev})
    data_start, data_end = data_span(con, tx.sql_name)
    if config.window.as_of is not None:  # after the last row is accepted; before the first is not
        check_as_of(config.window.as_of, data_start, data_end)
    return report, Window(future or day_after(data_end), config.window.horizon_days)


def _window_features(
    con: duckdb.DuckDBPyConnection,
    report: ValidationReport,
    window: Window,
    config: RunConfig,
    vocab: SequenceVocab,
    btyd_fit: BgNbdFit | None,
) -> pa.Table:
    """The scoring window's features; its BG/NBD columns from ``btyd_fit``, else a fit on these customers."""
    tx, ev = report.tables["transactions"], report.tables.get("events")
    features = build_features(
        con, tx, window, config.features, customers=report.tables.get("customers"), events=ev,
        event_types=event_types(vocab), text=config.text,
    )  # fmt: skip
    if config.features.btyd:  # a failed fit leaves the columns null and is logged
        features, _ = add_btyd_features(features, window.horizon_days, fitted=btyd_fit)
    return features


def _token_lists(
    con: duckdb.DuckDBPyConnection, report: ValidationReport, vocab: SequenceVocab, window: Window
) -> tuple[str, dict[str, int]]:
    """The token-lists table of the window's customers, encoded with ``vocab``, and the unknown values per field."""
    unknown = encode_tables(con, vocab, report.tables["transactions"], report.tables.get("events"))
    tokens = create_tokens(con, vocab.layout, [window.cutoff])
    return build_token_lists(con, vocab, tokens), unknown


def _check_fields(vocab: SequenceVocab, tables: dict[str, CleanTable | None]) -> None:
    def lacks(table: str, column: str) -> bool:
        clean = tables.get(table)
        return clean is None or not clean.has(column)

    missing = [f"{f.table}.{f.column}" for f in vocab.layout.fields if f.name != "n_lines" and lacks(f.table, f.column)]
    if vocab.layout.token == "order" and lacks("transactions", "order_id"):
        missing.append("transactions.order_id")
    if missing:
        raise SchemaError(
            f"the model was trained with field(s) {missing}, which these data lack; map the columns with "
            "--column (e.g. --column product=<your column>) or retrain on data of this shape"
        )
