"""Benchmark ``custseq.prepare`` against a bare DuckDB scan and lifetimes' RFM summary.

Run from the repository root::

    .venv/bin/python benchmarks/prepare.py --sizes 100000 1000000 10000000 --out benchmarks/RESULTS.md

For each size a synthetic log (``custseq.datasets.synthetic``) is written once to
``benchmarks/.data/`` and reused. Every measurement runs in its own fresh Python process, which
times the measured call and reports its own peak resident memory (``ru_maxrss``), so peaks are
per measurement and include the interpreter and its imports. The results replace the section
"## prepare (issue 4)" of the output file; other sections are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import child_env, machine_description, read_result, report_result, write_section  # benchmarks/

PACKAGES = ("duckdb", "pyarrow", "pandas", "lifetimes")

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "src" / "custseq" / "datasets" / "synthetic.py"
SECTION = "## prepare (issue 4)"
GIB = 1024**3
SCAN_SQL = (
    "SELECT customer_id, count(*) AS n, sum(amount) AS total, min(ts) AS first_ts, max(ts) AS last_ts "
    "FROM read_parquet($path) GROUP BY customer_id"
)
TARGETS = (
    "10M rows: custseq prepare ≤ 60 s and ≤ 6 GiB peak",
    "custseq prepare within 3× the DuckDB scan",
    "custseq RFM ≥ 20× faster than lifetimes at 1M rows",
)


# --------------------------------------------------------------------------- child side
# Each function runs inside a fresh process and returns what it measured; the process adds its peak RSS.


def child_generate(path: Path, n_rows: int, seed: int) -> dict:
    from custseq.datasets.synthetic import write_transactions

    t0 = time.perf_counter()
    write_transactions(path, n_rows, seed=seed)
    return {"seconds": time.perf_counter() - t0}


def child_custseq_prepare(path: Path) -> dict:
    try:
        import custseq

        prepare = custseq.prepare
    except (ImportError, AttributeError) as e:
        return {"status": "not available", "reason": f"{type(e).__name__}: {e}"}
    if not callable(prepare):
        return {"status": "not available", "reason": "custseq.prepare is not callable"}
    with tempfile.TemporaryDirectory(prefix="custseq-bench-") as out:
        t0 = time.perf_counter()
        prepare(path, as_of=None, horizon="90d", out=Path(out))
        seconds = time.perf_counter() - t0
        summary_file = Path(out) / "prepare.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    tx = summary.get("tables", {}).get("transactions", {})
    return {
        "seconds": seconds,
        "stages": summary.get("timings_s", {}),
        "rows_quarantined": tx.get("rows_quarantined"),
    }


def child_custseq_rfm(path: Path) -> dict:
    """Time custseq's BTYD summary (frequency, recency, T, monetary_value) on already validated rows.

    The like-for-like counterpart of lifetimes' ``summary_data_from_transaction_data``; the full feature set
    (40-odd columns) is timed separately as ``features_seconds``.
    """
    import dataclasses

    try:
        from custseq.config import RunConfig
        from custseq.features.rfm import build_btyd_summary, build_features
        from custseq.io.engine import connect
        from custseq.validate.tables import validate_tables
        from custseq.windows import data_span, plan_windows
    except ImportError as e:
        return {"status": "not available", "reason": f"{type(e).__name__}: {e}"}
    cfg = RunConfig()
    cfg = dataclasses.replace(cfg, window=dataclasses.replace(cfg.window, as_of=None, horizon_days=90))
    con = connect(cfg.engine)
    tx = validate_tables(con, path, config=cfg).tables["transactions"]
    plan = plan_windows(*data_span(con, tx.sql_name), cfg.window)
    t0 = time.perf_counter()
    summary = build_btyd_summary(con, tx, plan.scoring)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = build_features(con, tx, plan.scoring, cfg.features)
    features_seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "customers": summary.num_rows,
        "features_seconds": features_seconds,
        "columns": features.num_columns,
    }


def child_duckdb_scan(path: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    t0 = time.perf_counter()
    table = con.sql(SCAN_SQL, params={"path": str(path)}).to_arrow_table()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "customers": table.num_rows}


def child_lifetimes_rfm(path: Path) -> dict:
    import warnings

    import pandas as pd

    with warnings.catch_warnings():  # lifetimes sets a deprecated pandas option at import
        warnings.simplefilter("ignore")
        from lifetimes.utils import summary_data_from_transaction_data

    t0 = time.perf_counter()
    df = pd.read_parquet(path, columns=["customer_id", "ts", "amount"])
    read_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = summary_data_from_transaction_data(
        df, "customer_id", "ts", monetary_value_col="amount", observation_period_end=df["ts"].max()
    )
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "read_seconds": read_seconds, "customers": len(summary)}


CHILD_TASKS = {
    "custseq-prepare": child_custseq_prepare,
    "custseq-rfm": child_custseq_rfm,
    "duckdb-scan": child_duckdb_scan,
    "lifetimes-rfm": child_lifetimes_rfm,
}


def run_child(task: str, path: Path, n_rows: int, seed: int) -> None:
    """Entry point of a measurement process: run one task and print its result as one JSON line."""
    result = child_generate(path, n_rows, seed) if task == "generate" else CHILD_TASKS[task](path)
    report_result(result)


# --------------------------------------------------------------------------- parent side


@dataclass
class Measurement:
    """What one child process reported; ``note`` explains a missing time."""

    seconds: float | None = None
    peak_gib: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def cell(self, with_peak: bool = True) -> str:
        if self.seconds is None:
            return self.note
        text = f"{self.seconds:.2f}"
        return f"{text} / {self.peak_gib:.2f}" if with_peak and self.peak_gib is not None else text


def measure(task: str, path: Path, timeout_s: float, n_rows: int = 0, seed: int = 0) -> Measurement:
    """Run ``task`` in a fresh Python process and collect its time and peak memory."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", task, "--path", str(path),
           "--rows", str(n_rows), "--seed", str(seed)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=child_env(ROOT), check=False)
    except subprocess.TimeoutExpired:
        return Measurement(note=f"timeout (> {timeout_s:.0f} s)")
    result, note = read_result(task, proc)
    if result is None:
        return Measurement(note="not available" if note.startswith("not available") else note)
    seconds = result.pop("seconds")
    return Measurement(seconds=seconds, peak_gib=result.pop("peak_bytes") / GIB, extra=result)


def best_of(task: str, path: Path, repeat: int, timeout_s: float) -> Measurement:
    """The fastest of ``repeat`` runs, with the largest peak seen (each run in its own process)."""
    runs = [measure(task, path, timeout_s) for _ in range(repeat)]
    timed = [m for m in runs if m.seconds is not None]
    if not timed:
        return runs[0]
    best = min(timed, key=lambda m: m.seconds)
    best.peak_gib = max(m.peak_gib for m in timed)
    return best


def generator_fingerprint() -> str:
    """Short hash of the generator source, so a changed generator never reuses a stale file."""
    return hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:10]


def dataset(n_rows: int, seed: int, data_dir: Path, timeout_s: float) -> Path:
    path = data_dir / f"synthetic_{n_rows}_seed{seed}_{generator_fingerprint()}.parquet"
    if path.exists():
        print(f"  using cached {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path
    tmp = path.with_suffix(".tmp.parquet")
    m = measure("generate", tmp, timeout_s, n_rows=n_rows, seed=seed)
    if m.seconds is None:
        raise SystemExit(f"could not generate {n_rows} rows: {m.note}")
    tmp.rename(path)
    print(f"  generated {n_rows:,} rows in {m.seconds:.1f} s (peak {m.peak_gib:.2f} GiB) -> {path.name}")
    return path


@dataclass
class Row:
    """One line of the results table."""

    rows: int
    customers: int | None
    prepare: Measurement
    scan: Measurement
    rfm: Measurement
    lifetimes: Measurement


def lifetimes_estimate(size: int, previous: list[Row]) -> float | None:
    """Seconds lifetimes would take at ``size``, scaled linearly from the largest timed smaller size."""
    timed = [r for r in previous if r.lifetimes.seconds is not None and r.rows < size]
    if not timed:
        return None
    ref = max(timed, key=lambda r: r.rows)
    return ref.lifetimes.seconds * size / ref.rows


def run_size(size: int, args: argparse.Namespace, previous: list[Row]) -> Row:
    print(f"{size:,} rows")
    path = dataset(size, args.seed, args.data_dir, args.timeout)
    scan = best_of("duckdb-scan", path, args.repeat, args.timeout)
    print(f"  duckdb scan      {scan.cell()}")
    prepare = best_of("custseq-prepare", path, args.repeat, args.timeout)
    print(f"  custseq prepare  {prepare.cell()}")
    rfm = best_of("custseq-rfm", path, args.repeat, args.timeout)
    print(f"  custseq RFM      {rfm.cell()}")
    estimate = lifetimes_estimate(size, previous)
    if estimate is not None and estimate > args.lifetimes_limit:
        lifetimes = Measurement(note=f"skipped (est. {estimate / 60:.0f} min)")
    else:
        lifetimes = best_of("lifetimes-rfm", path, args.repeat, args.timeout)
    print(f"  lifetimes RFM    {lifetimes.cell()}")
    customers = scan.extra.get("customers", lifetimes.extra.get("customers"))
    return Row(size, customers, prepare, scan, rfm, lifetimes)


# --------------------------------------------------------------------------- report


def ratio(a: Measurement, b: Measurement) -> str:
    return f"{a.seconds / b.seconds:.1f}×" if a.seconds and b.seconds else "–"


def target_status(rows: list[Row]) -> list[str]:
    """One line per target: met, not met, or not measured, with the numbers behind it."""
    big = next((r for r in rows if r.rows == 10_000_000), None)
    if big is None or big.prepare.seconds is None:
        first = "not measured"
    else:
        ok = big.prepare.seconds <= 60 and big.prepare.peak_gib <= 6
        first = f"{'met' if ok else 'NOT met'} ({big.prepare.seconds:.1f} s, {big.prepare.peak_gib:.2f} GiB)"
    ratios = [(r.rows, r.prepare.seconds / r.scan.seconds) for r in rows if r.prepare.seconds and r.scan.seconds]
    if ratios:
        detail = ", ".join(f"{n:,}: {x:.1f}×" for n, x in ratios)
        second = f"{'met' if all(x <= 3 for _, x in ratios) else 'NOT met'} ({detail})"
    else:
        second = "not measured"
    mid = next((r for r in rows if r.rows == 1_000_000), None)
    if mid is None or mid.rfm.seconds is None or mid.lifetimes.seconds is None:
        third = "not measured"
    else:
        speedup = mid.lifetimes.seconds / mid.rfm.seconds
        third = f"{'met' if speedup >= 20 else 'NOT met'} ({speedup:.1f}×)"
    return [f"- {t}: **{s}**" for t, s in zip(TARGETS, (first, second, third), strict=True)]


def stage_line(row: Row) -> str | None:
    """Where ``prepare``'s time went, from the ``timings_s`` of its ``prepare.json``."""
    stages = row.prepare.extra.get("stages")
    if not stages:
        return None
    parts = ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in stages.items())
    quarantined = row.prepare.extra.get("rows_quarantined")
    tail = f"; {quarantined:,} rows quarantined" if quarantined is not None else ""
    return f"- {row.rows:,} rows: {parts} s{tail}"


def render(rows: list[Row], command: str) -> str:
    header = (
        "| rows | customers | custseq prepare s / peak GiB | DuckDB scan s / peak GiB | prepare / scan "
        "| custseq RFM s / peak GiB | lifetimes RFM s (pandas read s) / peak GiB | lifetimes / custseq RFM |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = []
    for r in rows:
        life = r.lifetimes.cell(with_peak=False)
        if r.lifetimes.seconds is not None:
            life = f"{life} ({r.lifetimes.extra['read_seconds']:.2f}) / {r.lifetimes.peak_gib:.2f}"
        customers = f"{r.customers:,}" if r.customers is not None else "–"
        cells = [f"{r.rows:,}", customers, r.prepare.cell(), r.scan.cell(), ratio(r.prepare, r.scan), r.rfm.cell()]
        lines.append("| " + " | ".join([*cells, life, ratio(r.lifetimes, r.rfm)]) + " |")
    stages = [line for line in map(stage_line, rows) if line]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}`  ",
            f"Date: {now}  ",
            f"Machine: {machine_description(PACKAGES)}",
            "",
            "Data: `custseq.datasets.synthetic.generate_transactions` (seed shown in the command, default 0), "
            "written once to Parquet. Each number is the best of the runs, each run in a fresh Python process; "
            "peak = that process's maximum resident memory, interpreter and imports included.",
            "",
            "- custseq prepare: `custseq.prepare(path, as_of=None, horizon='90d', out=tmpdir)`, everything "
            "included (read, validation, all windows, features, labels, sequences, writing).",
            "- DuckDB scan: `SELECT customer_id, count(*), sum(amount), min(ts), max(ts) FROM read_parquet(...) "
            "GROUP BY customer_id` fetched as an Arrow table: the floor for one scan and group-by.",
            "- custseq RFM: `custseq.features.rfm.build_btyd_summary` (frequency, recency, T, monetary_value: "
            "the same four columns lifetimes returns) for the scoring window on already validated rows.",
            "- lifetimes RFM: `summary_data_from_transaction_data(df, 'customer_id', 'ts', "
            "monetary_value_col='amount', observation_period_end=<last ts>)` alone; reading Parquet into pandas "
            "is shown in brackets and not counted.",
            "",
            header,
            *lines,
            "",
            "Targets:",
            "",
            *target_status(rows),
            "",
            *(["Where prepare's time went (`timings_s` of prepare.json):", "", *stages, ""] if stages else []),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / ".data")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds before a measurement is killed")
    parser.add_argument("--lifetimes-limit", type=float, default=600.0,
                        help="skip lifetimes when its linear estimate exceeds this many seconds")  # fmt: skip
    parser.add_argument("--child", choices=["generate", *CHILD_TASKS], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.path, args.rows, args.seed)
        return 0

    command = shlex.join([".venv/bin/python", "benchmarks/prepare.py", *(sys.argv[1:] if argv is None else argv)])
    rows: list[Row] = []
    for size in sorted(args.sizes):
        rows.append(run_size(size, args, rows))
    section = render(rows, command)
    write_section(args.out, section, SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
