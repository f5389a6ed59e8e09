"""Issue 20: churn AUC with purchases only, + behaviour events, + event texts, on the synthetic shop.

Run from the repository root::

    .venv/bin/python benchmarks/events_text.py --seeds 5 --customers 3000

For each seed a shop (:func:`custseq.datasets.shop.generate_shop`, planted effects at their defaults) is
prepared by ``custseq.prepare`` with transactions alone; with the events table without its text column; with the
texts; and, as a control, with the texts of the same shop whose complaints are no likelier before a lapse. Every
run scores as of one horizon (60 days) before the data end, so the scoring
window's labels are observed: custseq's ``lightgbm-rich`` baseline (LightGBM on every feature column) trains on
the training windows and is tested on the scoring window. The section "## events and text (issue 20)" of
``--results`` is replaced with the command, the machine, how busy it was and the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
from sklearn.metrics import roc_auc_score

import custseq
from custseq.baselines.base import WindowTables
from custseq.baselines.tabular import LightGBMRich
from custseq.config import EngineConfig, PredictorConfig, RunConfig, SequenceConfig, WindowConfig
from custseq.datasets.shop import ShopEffects, generate_shop
from harness import busy_cpu_seconds, machine_description, wait_for_quiet, write_section  # benchmarks/

HEADING = "## events and text (issue 20)"
INPUTS = ("purchases", "+ events", "+ text", "+ text, no complaints")
HORIZON = 60
PACKAGES = ("scikit-learn", "lightgbm", "duckdb", "vaderSentiment")


def shop_aucs(seed: int, n_customers: int, effects: ShopEffects) -> dict[str, dict[str, float]]:
    """Churn AUC on the scoring window for each input set, with every feature column custseq builds: over every
    customer (``all``) and over those who bought in the horizon before the cutoff (``active``).

    ``+ text, no complaints`` is the control: the same shop but complaints no likelier before a lapse (only the
    texts differ from the planted shop's), with the texts.
    """
    shop = generate_shop(n_customers, effects=effects, seed=seed)
    control = generate_shop(
        n_customers, effects=dataclasses.replace(effects, complaint_share=effects.base_complaint_share), seed=seed
    )
    tx = shop.transactions
    as_of = (pc.max(tx.column("ts")).as_py() - dt.timedelta(days=HORIZON)).date()
    config = RunConfig(
        window=WindowConfig(horizon_days=HORIZON, max_train_windows=4),
        sequence=SequenceConfig(max_events=16),
        engine=EngineConfig(threads=2),
    )
    tables = {
        "purchases": None,
        "+ events": shop.events.drop_columns(["text"]),
        "+ text": shop.events,
        "+ text, no complaints": control.events,
    }
    aucs: dict[str, dict[str, float]] = {"all": {}, "active": {}}
    for name, ev in tables.items():
        with tempfile.TemporaryDirectory() as out:
            prepared = custseq.prepare(tx, events=ev, out=out, as_of=as_of, config=config)
            layout = prepared.layout
            train = [WindowTables.read(w, layout.horizon_days) for w in layout.training]
            test = WindowTables.read(layout.scoring, layout.horizon_days)
        churn = LightGBMRich(seed=seed, config=PredictorConfig(n_jobs=1)).fit(train).predict(test).churn_probability
        churned = test.label_arrays()[0]
        active = test.features.column("purchase_days_last_h").to_numpy() > 0
        aucs["all"][name] = float(roc_auc_score(churned, churn))
        aucs["active"][name] = float(roc_auc_score(churned[active], churn[active]))
    return aucs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for a quiet machine at most")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    busy = wait_for_quiet(0.5, args.wait)
    before, started = busy_cpu_seconds(), time.perf_counter()
    rows = []
    for seed in range(args.seeds):
        aucs = shop_aucs(seed, args.customers, ShopEffects())
        rows.append(aucs)
        for subset, by_input in aucs.items():
            shown = ", ".join(f"{k} {v:.3f}" for k, v in by_input.items())
            print(f"seed {seed} {subset}: {shown}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    other_load = max(0.0, (busy_cpu_seconds() - before) / seconds - 2.0)
    write_section(args.results, section(rows, args, seconds, busy, other_load), HEADING)


def section(
    rows: list[dict[str, dict[str, float]]], args: argparse.Namespace, seconds: float, busy: float, load: float
) -> str:
    def mean_sd(values: list[float]) -> str:
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}"

    command = "python benchmarks/events_text.py " + shlex.join(
        ["--seeds", str(args.seeds), "--customers", str(args.customers)]
    )
    fx = ShopEffects()
    lines = [
        HEADING,
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Machine: {machine_description(PACKAGES)}  ",
        f"Load: other processes used {busy:.1f} cores when it started, about {load:.1f} on average while it ran; "
        f"{seconds:.0f} s in all",
        "",
        f"Data: `generate_shop({args.customers}, seed=s)` with the default `ShopEffects`: customers lapse after "
        f"{fx.lifetime_days:g} days on average; in the {fx.warning_days:g} days before, half of them (dissatisfied) "
        f"write complaints in {fx.complaint_share:.0%} of their tickets and reviews against "
        f"{fx.base_complaint_share:.0%} otherwise, with as many tickets as anyone, and the other half (drifting) view "
        f"pages {fx.browse_lift:g}× as often. Scoring as of {HORIZON} days before the data end (labels observed), "
        f"horizon {HORIZON} days, 4 training windows; custseq's `lightgbm-rich` baseline on every feature column "
        "`custseq.prepare` built, trained on the training windows, churn AUC on the scoring window. *+ text, no "
        "complaints* is the control: the same shop whose complaints are no likelier before a lapse (only the texts "
        "differ). *All*: every customer with history; *active*: those who bought in the horizon before the cutoff "
        "(those already gone are easy for any input).",
        "",
    ]
    for subset in ("all", "active"):
        by_seed = [r[subset] for r in rows]
        gains = {
            "+ events − purchases": [r["+ events"] - r["purchases"] for r in by_seed],
            "+ text − + events": [r["+ text"] - r["+ events"] for r in by_seed],
            "+ text − purchases": [r["+ text"] - r["purchases"] for r in by_seed],
            "control: + text, no complaints − + events": [r["+ text, no complaints"] - r["+ events"] for r in by_seed],
        }
        lines += [
            f"Churn AUC, {subset} customers:",
            "",
            "| seed | " + " | ".join(INPUTS) + " |",
            "|---:|" + "---:|" * len(INPUTS),
            *(f"| {i} | " + " | ".join(f"{r[k]:.3f}" for k in INPUTS) + " |" for i, r in enumerate(by_seed)),
            "| mean ± sd | " + " | ".join(mean_sd([r[k] for r in by_seed]) for k in INPUTS) + " |",
            "",
            "| gain | mean ± sd | min | max |",
            "|---|---:|---:|---:|",
            *(f"| {k} | {mean_sd(v)} | {min(v):.3f} | {max(v):.3f} |" for k, v in gains.items()),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
