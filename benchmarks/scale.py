"""``custseq predict`` on a large synthetic log, as a user runs it: wall time per stage and peak memory.

Run from the repository root::

    .venv/bin/python benchmarks/scale.py --rows 1000000 --out benchmarks/RESULTS.md

The log is ``custseq.datasets.synthetic.write_transactions(path, rows, seed=1)`` (1M rows: 143,912
customers over two years). One child process runs ``custseq predict FILE --out DIR`` with the default settings
(horizon 90 days, as-of the last day); its printed stages are time-stamped as they arrive, so each stage's
time is the gap to the next one. Peak memory is the child's maximum resident set size. The machine's load
(CPU used by other processes during the run) is reported, since the numbers are only comparable on a quiet
machine. The result replaces the section "## predict at scale (issue 15)" of ``--out``.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import busy_cpu_seconds, child_env, machine_description, write_section  # benchmarks/

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "duckdb", "lightgbm")
HEADING = "## predict at scale (issue 15)"
TARGET_SECONDS = 300  # issue 15: predict on 1M synthetic rows within 5 minutes on this machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from custseq.datasets.synthetic import write_transactions

    with tempfile.TemporaryDirectory(prefix="custseq-scale-") as tmp:
        data = write_transactions(Path(tmp) / "tx.parquet", args.rows, seed=1)
        stages, seconds, busy = _run(data, Path(tmp) / "out")
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/scale.py", *sys.argv[1:]])
    rows = "\n".join(f"| {name} | {s:.0f} | {gib:.2f} |" for name, s, gib in stages)
    verdict = "met" if seconds <= TARGET_SECONDS else "NOT met"
    section = (
        f"{HEADING}\n\n`{command}` on {machine_description(PACKAGES)}; other processes used {busy:.2f} cores on "
        f"average during the run.\n\n`custseq predict` on {args.rows:,} synthetic rows (seed 1), default settings: "
        f"**{seconds / 60:.1f} minutes** (target ≤ {TARGET_SECONDS / 60:.0f} minutes: {verdict}), peak memory "
        f"**{peak_gib:.2f} GiB** (target ≤ 2 GiB per million rows: "
        f"{'met' if peak_gib <= 2 * args.rows / 1e6 else 'NOT met'}).\n\n"
        "| stage (as printed) | seconds | peak GiB in the stage |\n|---|---:|---:|\n"
        f"{rows}\n"
    )
    write_section(args.out, section, HEADING)
    print(section)


def _run(data: Path, out: Path) -> tuple[list[tuple[str, float, float]], float, float]:
    """Each printed stage with the seconds until the next and the child's peak resident memory during it (sampled
    every 0.2 s), the whole wall time, and other processes' cores."""
    command = [str(ROOT / ".venv" / "bin" / "custseq"), "predict", str(data), "--out", str(out)]
    env = child_env(ROOT) | {"COLUMNS": "200"}
    cpu_before, started = busy_cpu_seconds(), time.perf_counter()
    marks: list[tuple[str, float]] = []
    peaks: dict[int, float] = {}  # stage index -> peak GiB
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        sampler = threading.Thread(target=_sample_rss, args=(proc, marks, peaks), daemon=True)
        sampler.start()
        for line in proc.stdout:
            if line.rstrip().endswith("…"):
                marks.append((line.strip().rstrip("…"), time.perf_counter() - started))
        sampler.join(timeout=2)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"custseq predict failed (exit {proc.returncode})")
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = max(0.0, (busy_cpu_seconds() - cpu_before - own.ru_utime - own.ru_stime) / seconds)
    ends = [t for _, t in marks[1:]] + [seconds]
    stages = [(name, end - t, peaks.get(i, 0.0)) for i, ((name, t), end) in enumerate(zip(marks, ends, strict=True))]
    return stages, seconds, busy


def _sample_rss(proc: subprocess.Popen, marks: list[tuple[str, float]], peaks: dict[int, float]) -> None:
    """The child's resident memory every 0.2 s, kept as the peak of the stage running then."""
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            break
        gib = int(line.split()[1]) / 1024**2
        stage = len(marks) - 1
        peaks[stage] = max(peaks.get(stage, 0.0), gib)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
