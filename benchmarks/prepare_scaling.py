"""How ``custseq prepare`` grows with the number of customers, on DuckDB and on Spark ``local[2]`` (issue 19).

Run from the repository root::

    .venv/bin/python benchmarks/prepare_scaling.py --customers 10000 100000 1000000 5000000 \
        --spark-customers 10000 100000 1000000

For each size N the synthetic generator writes about 7 rows per customer to a Parquet file (as
``benchmarks/scaling.py`` does); ``custseq prepare FILE --out DIR`` runs with the default settings on DuckDB, and
with ``--engine spark --spark-master local[2]`` (driver memory 6g) for the sizes in ``--spark-customers``. Each run
is one child process, timed wall-clock; its peak memory is the largest sum of resident memory over the child and all
its descendants (Spark's JVM and Python workers included), sampled every 0.2 s. The growth exponent is the slope of
log(seconds) against log(customers) between the two largest sizes of an engine (1 = linear). The machine's load (CPU
other processes used during the runs) is reported. The result replaces the section "## preparation scaling (issue
19)" of ``--out``; the measurements go to ``--json``."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from harness import busy_cpu_seconds, child_env, growth_exponent, machine_description, write_section  # benchmarks/

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("duckdb", "pyspark")
HEADING = "## preparation scaling (issue 19)"
CUSTOMERS_PER_ROW = 0.1439  # the generator's ratio (1M rows: 143,912 customers)
SPARK_MASTER = "local[2]"
SPARK_DRIVER_MEMORY = "12g"  # local mode runs the executors in the driver's JVM (Spark's default heap: 1g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="*", default=[10_000, 100_000, 1_000_000, 5_000_000])
    parser.add_argument("--spark-customers", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "prepare_scaling.json")
    parser.add_argument("--spark-driver-memory", default=SPARK_DRIVER_MEMORY)
    parser.add_argument(
        "--render", type=Path, nargs="+", help="write the section and --json from these runs' JSON, run nothing"
    )
    args = parser.parse_args()
    if args.render:
        _render([json.loads(p.read_text()) for p in args.render], args.out, args.json)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from custseq.datasets.synthetic import write_transactions

    results: list[dict] = []
    started, busy_before, own = time.perf_counter(), busy_cpu_seconds(), 0.0
    for n in sorted(set(args.customers) | set(args.spark_customers)):
        with tempfile.TemporaryDirectory(prefix="custseq-prepare-scaling-") as tmp:
            data = write_transactions(Path(tmp) / "tx.parquet", round(n / CUSTOMERS_PER_ROW), seed=1)
            engines = [e for e, sizes in (("duckdb", args.customers), ("spark", args.spark_customers)) if n in sizes]
            for engine in engines:
                out = Path(tmp) / f"prepared-{engine}"
                seconds, gib, cpu = _prepare(data, out, engine, args.spark_driver_memory)
                own += cpu
                result = {"customers": n, "engine": engine, "seconds": seconds, "peak_gib": gib, **_size(out)}
                results.append(result)
                print(json.dumps(result), flush=True)
    wall = time.perf_counter() - started
    busy = max(0.0, (busy_cpu_seconds() - busy_before - own) / wall)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/prepare_scaling.py", *sys.argv[1:]])
    run = {"command": command, "busy_cores": busy, "spark_driver_memory": args.spark_driver_memory, "results": results}
    args.json.write_text(json.dumps(run, indent=1) + "\n")
    _render([run], args.out, args.json)


def _render(runs: list[dict], out: Path, path: Path) -> None:
    """The section of ``runs`` (several runs' results together, each size and engine from the last run that has
    it) into ``out``, and the runs into ``path``."""
    results = {(r["engine"], r["customers"]): r for run in runs for r in run["results"]}
    section = _section(list(results.values()), runs)
    write_section(out, section, HEADING)
    if len(runs) > 1:
        path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(section)


def _prepare(data: Path, out: Path, engine: str, driver_memory: str) -> tuple[float, float, float]:
    """Wall seconds, peak GiB of the process tree and its CPU seconds for one ``custseq prepare``."""
    command = [str(ROOT / ".venv" / "bin" / "custseq"), "prepare", str(data), "--out", str(out)]
    env = child_env(ROOT)
    if engine == "spark":
        command += ["--engine", "spark", "--spark-master", SPARK_MASTER]
        env["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {driver_memory} pyspark-shell"
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) as proc:
        peak: list[float] = [0.0]
        cpu: dict[int, float] = {}
        sampler = threading.Thread(target=_sample_tree, args=(proc, peak, cpu), daemon=True)
        sampler.start()
        _, err = proc.communicate()
        sampler.join(timeout=2)
    if proc.returncode != 0:
        raise SystemExit(f"custseq prepare --engine {engine} failed (exit {proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - started, peak[0], sum(cpu.values())


def _sample_tree(proc: subprocess.Popen, peak: list[float], cpu: dict[int, float]) -> None:
    """The largest resident memory of the child and its descendants together (every 0.2 s), and each one's
    last CPU seconds seen (for the machine's load: the runs' own CPU is not "other processes")."""
    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        return
    while proc.poll() is None:
        total = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                continue
        peak[0] = max(peak[0], total / 1024**3)
        time.sleep(0.2)


def _size(out: Path) -> dict[str, int]:
    """The prepared folder's transactions used and the customers of its scoring window."""
    record = json.loads((out / "prepare.json").read_text())
    scoring = next(w for w in record["windows"] if w["role"] == "score")
    return {"rows_used": int(record["tables"]["transactions"]["rows_used"]), "scoring_customers": scoring["customers"]}


def _section(results: list[dict], runs: list[dict]) -> str:
    sizes = sorted({r["customers"] for r in results})
    by = {(r["engine"], r["customers"]): r for r in results}
    header = " | ".join(f"{n:,} customers" for n in sizes)

    def row(engine: str, what: str, cell) -> str:
        cells = " | ".join(cell(by[(engine, n)]) if (engine, n) in by else "—" for n in sizes)
        return f"| {engine}: {what} | {cells} |"

    lines = []
    for engine in ("duckdb", "spark"):
        if not any(e == engine for e, _ in by):
            continue
        points = [(n, by[(engine, n)]["seconds"]) for n in sizes if (engine, n) in by]
        lines.append(row(engine, "seconds", lambda r: f"**{r['seconds']:.0f}**") + f" {growth_exponent(points)} |")
        lines.append(row(engine, "peak memory (GiB)", lambda r: f"{r['peak_gib']:.2f}") + " |")
        lines.append(row(engine, "rows used", lambda r: f"{r['rows_used']:,}") + " |")
    commands = "; ".join(
        f"`{run['command']}` ({_load(run['busy_cores'])}; Spark driver memory {run['spark_driver_memory']})"
        for run in runs
    )
    return (
        f"{HEADING}\n\n{commands}; on {machine_description(PACKAGES)}. `custseq prepare` with the default settings; "
        f"Spark on `{SPARK_MASTER}` with `--driver-memory` as stated (PYSPARK_SUBMIT_ARGS); peak memory is the "
        "whole process tree's (Spark's JVM and Python workers included).\n\n"
        f"| | {header} | growth exponent |\n|---|" + "---:|" * (len(sizes) + 1) + "\n" + "\n".join(lines) + "\n"
    )


def _load(busy: float | None) -> str:
    if busy is None:
        return "the machine's load was not recorded: the run was stopped after these sizes, nothing else ran"
    return f"other processes used about {busy:.2f} cores on average"


if __name__ == "__main__":
    main()
