"""How ``custseq predict`` and ``custseq score`` grow with the number of customers (issue 19).

Run from the repository root::

    .venv/bin/python benchmarks/scaling.py --customers 10000 100000 1000000 --out benchmarks/RESULTS.md

For each size N the synthetic generator writes about 7 rows per customer
(``custseq.datasets.synthetic.write_transactions(path, round(N / CUSTOMERS_PER_ROW), seed=1)``, which gives
N customers give or take 1%). One child process runs ``custseq predict FILE --out DIR`` with the default
settings; its stages are timed as in ``benchmarks/scale.py`` (the gap between printed stages) with the child's
peak resident memory per stage, and the epochs pre-training and fine-tuning ran (early stopping decides
them, so a stage's time depends on them). Then ``custseq score FILE --model DIR/model`` scores the same
customers with the saved model, timed the same way. Each stage's growth exponent is the slope of log(seconds) against
log(customers) between the two largest sizes (1 = linear). The machine's load (CPU other processes used during
the runs) is reported: the numbers are only comparable on a quiet machine. The result replaces the section
"## scaling (issue 19)" of ``--out``; the measurements go to ``--json`` (default ``benchmarks/scaling.json``) and
the growth curves to ``--plot`` (default ``docs/scaling-growth.png``). ``--plot-only`` redraws the plot from the
JSON without running anything.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import busy_cpu_seconds, child_env, growth_exponent, machine_description, write_section  # benchmarks/
from scale import _run  # benchmarks/

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "duckdb", "lightgbm")
HEADING = "## scaling (issue 19)"
CUSTOMERS_PER_ROW = 0.1439  # the generator's ratio (1M rows: 143,912 customers)
TARGET_PREDICT_S, TARGET_PEAK_GIB, TARGET_SCORE_S = 30 * 60, 8.0, 3 * 60  # at 1M customers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "scaling.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "scaling-growth.png")
    parser.add_argument("--plot-only", action="store_true", help="redraw --plot from --json, run nothing")
    args = parser.parse_args()
    if args.plot_only:
        _plot(json.loads(args.json.read_text())["results"], args.plot)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from custseq.datasets.synthetic import write_transactions

    results = []
    cpu_before, started = busy_cpu_seconds(), time.perf_counter()
    own_before = _children_cpu()
    for n in sorted(args.customers):
        with tempfile.TemporaryDirectory(prefix="custseq-scaling-") as tmp:
            data = write_transactions(Path(tmp) / "tx.parquet", round(n / CUSTOMERS_PER_ROW), seed=1)
            stages, seconds, _ = _run(data, Path(tmp) / "out")
            score_s, score_gib = _score(data, Path(tmp) / "out" / "model", Path(tmp) / "scored")
            customers = _customers(Path(tmp) / "out")
            epochs = _epochs(Path(tmp) / "out")
        results.append((n, customers, stages, seconds, score_s, score_gib, epochs))
        print(f"{customers:,} customers: predict {seconds:.0f} s, score {score_s:.0f} s", flush=True)
    wall = time.perf_counter() - started
    busy = max(0.0, (busy_cpu_seconds() - cpu_before - (_children_cpu() - own_before)) / wall)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/scaling.py", *sys.argv[1:]])
    section = _section(results, command, busy)
    write_section(args.out, section, HEADING)
    args.json.write_text(json.dumps({"command": command, "busy_cores": busy, "results": results}, indent=1) + "\n")
    _plot(results, args.plot)
    print(section)


def _score(data: Path, model: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak GiB of ``custseq score`` with the saved model on the same data."""
    command = [str(ROOT / ".venv" / "bin" / "custseq"), "score", str(data), "--model", str(model), "--out", str(out)]
    started = time.perf_counter()
    with subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=child_env(ROOT),
    ) as proc:  # fmt: skip
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"custseq score failed (exit {proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - started, int(err.strip().splitlines()[-1]) / 1024**2


def _customers(out: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(out / "predictions.parquet").num_rows


def _epochs(out: Path) -> list[int]:
    """Pre-training and fine-tuning epochs of the run (early stopping makes them vary with the data)."""
    history = json.loads((out / "history.json").read_text())
    return [len(history["pretrain"]), len(history["finetune"])]


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _section(results: list, command: str, busy: float) -> str:
    names = list(dict.fromkeys(_short(name) for name, _, _ in results[-1][2]))
    header = " | ".join(f"{r[1]:,} customers" for r in results)
    lines = [f"| {_short(name)} | " + " | ".join(_stage(r[2], name) for r in results) + f" | {_slope(results, name)} |"
             for name in names]  # fmt: skip
    total = " | ".join(f"**{r[3]:.0f}**" for r in results)
    peaks = " | ".join(f"{max(g for _, _, g in r[2]):.2f}" for r in results)
    score = " | ".join(f"{r[4]:.0f}" for r in results)
    score_peak = " | ".join(f"{r[5]:.2f}" for r in results)
    peak_stages = " | ".join(_short(max(r[2], key=lambda stage: stage[2])[0]) for r in results)
    epochs = " | ".join(f"{r[6][0]} / {r[6][1]}" if len(r) > 6 else "—" for r in results)  # older runs: none
    largest = results[-1]
    verdicts = (
        f"At {largest[1]:,} customers: predict {largest[3] / 60:.1f} min (target ≤ {TARGET_PREDICT_S / 60:.0f} min "
        f"at 1M), peak {max(g for _, _, g in largest[2]):.2f} GiB (target ≤ {TARGET_PEAK_GIB:g} GiB), score "
        f"{largest[4] / 60:.1f} min (target ≤ {TARGET_SCORE_S / 60:.0f} min)."
    )
    return (
        f"{HEADING}\n\n`{command}` on {machine_description(PACKAGES)}; other processes used about {busy:.2f} "
        f"cores on average during the runs.\n\n{verdicts}\n\n"
        f"| stage (seconds) | {header} | growth exponent |\n|---|"
        + "---:|" * (len(results) + 1)
        + "\n"
        + "\n".join(lines)
        + "\n"
        f"| **predict, whole run** | {total} | {growth_exponent([(r[1], r[3]) for r in results])} |\n"
        f"| predict peak memory (GiB) | {peaks} | |\n"
        f"| stage of the peak | {peak_stages} | |\n"
        f"| epochs: pre-training / fine-tuning | {epochs} | |\n"
        f"| **score with the saved model** | {score} | {growth_exponent([(r[1], r[4]) for r in results])} |\n"
        f"| score peak memory (GiB) | {score_peak} | |\n"
    )


MAIN_STAGES = {  # the plot's curves: the stages that take most of a large run, with their short labels
    "windows: features, labels, sequences (all windows)": "windows: features, labels, sequences",
    "pre-training the sequence encoder (masked + next event)": "pre-training",
    "fine-tuning the churn + value model": "fine-tuning",
    "fitting the boosted heads and choosing the predictor on the validation customers": "boosted heads, choice",
    "fitting the next-item mixture on the latest training window": "next-item mixture",
    "choosing between products and their categories on the latest training window": "products or categories",
    "segments, plans and the contact list for every customer": "segments, plans, contacts",
}


def _plot(results: list, path: Path) -> None:
    """Seconds per main stage, the whole predict and score runs (left) and their peak memory (right) against
    the customers, on log-log axes, with a line of slope 1 (linear growth) for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    customers = [r[1] for r in results]
    fig, (time_ax, memory_ax) = plt.subplots(
        1, 2, figsize=(12, 4.6), constrained_layout=True, gridspec_kw={"width_ratios": [1.6, 1]}
    )
    for name, label in MAIN_STAGES.items():
        seconds = [sum(s for n, s, _ in r[2] if _short(n) == name) for r in results]
        if any(seconds):
            time_ax.plot(customers, seconds, marker="o", linewidth=1, label=label)
    for column, color, label in ((3, "black", "predict, whole run"), (4, "grey", "score, whole run")):
        time_ax.plot(customers, [r[column] for r in results], marker="s", color=color, linewidth=2.5, label=label)
    linear = [results[-1][3] * c / customers[-1] for c in customers]
    time_ax.plot(customers, linear, linestyle=":", color="black", label="linear growth (slope 1)")
    time_ax.axhline(TARGET_PREDICT_S, color="firebrick", linestyle="--", linewidth=1, label="predict target at 1M")
    time_ax.set(xscale="log", yscale="log", xlabel="customers", ylabel="seconds", title="Wall time (2 cores)")
    time_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    memory_ax.plot(customers, [max(g for _, _, g in r[2]) for r in results], marker="s", color="black",
                   label="predict")  # fmt: skip
    memory_ax.plot(customers, [r[5] for r in results], marker="s", color="grey", label="score")
    memory_ax.axhline(TARGET_PEAK_GIB, color="firebrick", linestyle="--", linewidth=1, label="target at 1M")
    memory_ax.set(xscale="log", xlabel="customers", ylabel="GiB", title="Peak resident memory", ylim=(0, None))
    memory_ax.legend(fontsize=8, loc="lower right")
    for ax in (time_ax, memory_ax):
        ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(name: str) -> str:
    """Every window's stage in one row (their dates differ between sizes)."""
    return "windows: features, labels, sequences (all windows)" if name.startswith("window ") else name


def _stage(stages: list, name: str) -> str:
    seconds = sum(s for n, s, _ in stages if _short(n) == name)
    return f"{seconds:.0f}" if any(_short(n) == name for n, _, _ in stages) else "—"


def _slope(results: list, name: str) -> str:
    points = [(r[1], sum(s for n, s, _ in r[2] if _short(n) == name)) for r in results]
    return growth_exponent([p for p in points if p[1] > 0])


if __name__ == "__main__":
    main()
