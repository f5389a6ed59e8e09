"""`custseq evaluate`: custseq and its baselines on the same temporal back-test, over several seeds.

Temporal protocol (DESIGN §3): the test window is one horizon back from the scoring date (its labels are in
the data); everything is trained on windows before it. custseq runs ``predict`` as of the test window's
as-of date; every baseline is fitted on the training windows that run prepared and scored on the same
customers. Stochastic methods are repeated per seed; custseq is compared with each baseline by a paired
t-test over seeds and, on the first seed, a per-customer paired bootstrap of the churn AUC.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from custseq.baselines.base import Baseline, WindowTables
from custseq.baselines.simple import Btyd, LastPeriod
from custseq.baselines.tabular import LightGBM, LogisticRidge, RandomForest
from custseq.config import PrepareConfig
from custseq.errors import ConfigError, TrainingError
from custseq.evaluation.stats import paired_bootstrap_auc, paired_t_test
from custseq.metrics import churn_value_metrics
from custseq.prepare import PreparedWindows, prepare
from custseq.scoring.predict import run_predict

CUSTSEQ = "custseq"
BASELINES: dict[str, Callable[[int], Baseline]] = {
    "last-period": lambda seed: LastPeriod(),
    "btyd": lambda seed: Btyd(),
    "logistic": lambda seed: LogisticRidge(seed=seed),
    "lightgbm": lambda seed: LightGBM(seed=seed),
    "random-forest": lambda seed: RandomForest(seed=seed),
}
METHODS = (CUSTSEQ, *BASELINES)
REPORTED = ("churn_auc", "churn_pr_auc", "churn_brier", "value_rmse", "value_mae", "value_mape", "value_gini",
            "value_spearman", "value_top_decile_share", "composite", "seconds")  # fmt: skip


@dataclass
class Evaluation:
    as_of: str
    horizon_days: int
    seeds: list[int]
    per_seed: dict[str, list[dict[str, float]]]  # method -> one metrics dict per seed
    comparisons: dict[str, dict[str, Any]]  # baseline -> paired tests against custseq
    skipped: dict[str, str]  # method -> why it could not run (e.g. BG/NBD did not converge)

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """method -> metric -> (mean, std over seeds)."""
        out = {}
        for method, runs in self.per_seed.items():
            out[method] = {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
                           for k in REPORTED if k in runs[0]}  # fmt: skip
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": "temporal", "as_of": self.as_of, "horizon_days": self.horizon_days, "seeds": self.seeds,
            "summary": {m: {k: {"mean": v[0], "std": v[1]} for k, v in s.items()} for m, s in self.summary().items()},
            "per_seed": self.per_seed, "comparisons": self.comparisons, "skipped": self.skipped,
        }  # fmt: skip


def evaluate(
    transactions: Any,
    *,
    horizon: str | int | None = None,
    as_of: str | None = None,
    customers: Any = None,
    events: Any = None,
    config: PrepareConfig | None = None,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
    methods: list[str] | tuple[str, ...] = METHODS,
    out: Path | str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Evaluation:
    """Back-test custseq and the chosen baselines one horizon before ``as_of`` (default: the last day).

    Raises
    ------
    ConfigError
        On an unknown method or an empty seed list.
    CustseqError
        On bad input or windows that cannot be built.
    """
    if unknown := sorted(set(methods) - set(METHODS)):
        raise ConfigError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if not seeds:
        raise ConfigError("evaluate needs at least one seed")
    say = on_stage or (lambda _msg: None)
    tables = {"customers": customers, "events": events}
    per_seed: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="custseq-evaluate-") as tmp:
        say("laying out the windows")
        plan = prepare(transactions, out=Path(tmp) / "plan", as_of=as_of, horizon=horizon, config=config, **tables).plan
        test_as_of = plan.validation.as_of.isoformat()  # one horizon back: its labels are in the data
        first: _SeedRun | None = None
        for seed in seeds:
            say(f"seed {seed}: custseq (pre-training, fine-tuning) and {len(methods) - 1} baselines")
            run = _run_seed(transactions, tables, horizon, test_as_of, config, seed, methods, Path(tmp) / f"s{seed}")
            first = first or run
            skipped |= run.skipped
            for name, metrics in run.metrics.items():
                per_seed[name].append(metrics)
    per_seed = {m: runs for m, runs in per_seed.items() if m not in skipped}
    comparisons = _compare(per_seed, first) if CUSTSEQ in per_seed else {}
    result = Evaluation(test_as_of, first.horizon_days, list(seeds), per_seed, comparisons, skipped)
    if out is not None:
        write_evaluation(Path(out), result)
    return result


@dataclass
class _SeedRun:
    horizon_days: int
    churned: np.ndarray
    metrics: dict[str, dict[str, float]]  # method -> metrics
    churn_probability: dict[str, np.ndarray]  # method -> per customer, in the window's order
    skipped: dict[str, str]  # method -> why it could not run


def _run_seed(
    transactions: Any, tables: dict[str, Any], horizon: Any, as_of: str, config: PrepareConfig | None, seed: int,
    methods: Any, work: Path,
) -> _SeedRun:  # fmt: skip
    started = time.perf_counter()
    run = run_predict(transactions, horizon=horizon, as_of=as_of, config=config, seed=seed, work_dir=work, **tables)
    custseq_seconds = time.perf_counter() - started
    scoring, training, h = _windows(work / "prepared")
    churned, value = scoring.label_arrays()
    result = _SeedRun(h, churned, {}, {}, {})
    if CUSTSEQ in methods:
        p = run.predictions  # sorted by customer id, like the features table
        if p["customer_id"].tolist() != scoring.customer_ids:
            raise TrainingError("custseq's predictions and the window's features list different customers")
        churn_p = p["churn_probability"].to_numpy()
        result.metrics[CUSTSEQ] = _metrics(churned, churn_p, value, p["clv_expected"].to_numpy(), custseq_seconds)
        result.churn_probability[CUSTSEQ] = churn_p
    for name in (m for m in methods if m != CUSTSEQ):
        started = time.perf_counter()
        try:
            bp = BASELINES[name](seed).fit(training).predict(scoring)
        except TrainingError as e:
            result.skipped[name] = str(e)
            continue
        seconds = time.perf_counter() - started
        result.metrics[name] = _metrics(churned, bp.churn_probability, value, bp.value, seconds)
        result.churn_probability[name] = bp.churn_probability
    return result


def write_evaluation(out: Path, result: Evaluation) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result.to_json(), indent=1))
    (out / "evaluation.md").write_text(markdown(result))


def markdown(result: Evaluation) -> str:
    columns = ("churn_auc", "churn_pr_auc", "churn_brier", "value_rmse", "value_mae", "value_gini", "value_spearman",
               "value_top_decile_share", "seconds")  # fmt: skip
    lines = [
        f"# custseq evaluate: as of {result.as_of}, horizon {result.horizon_days} days, seeds {result.seeds}",
        "",
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method, s in result.summary().items():
        lines.append(f"| {method} | " + " | ".join(f"{s[c][0]:.3f} ± {s[c][1]:.3f}" for c in columns) + " |")
    if result.comparisons:
        lines += [
            "",
            "| custseq vs | ΔAUC (t-test p) | ΔnGini (t-test p) | ΔAUC bootstrap 95% (p) |",
            "|---|---|---|---|",
        ]
        for name, c in result.comparisons.items():
            b = c["auc_bootstrap"]
            lines.append(
                f"| {name} | {c['churn_auc_difference']:+.3f} ({c['churn_auc_p']:.3g}) | "
                f"{c['value_gini_difference']:+.3f} ({c['value_gini_p']:.3g}) | "
                f"{b['difference']:+.3f} [{b['low']:+.3f}, {b['high']:+.3f}] ({b['p_value']:.3g}) |"
            )
    lines += [f"\n{name} was not run: {why}" for name, why in result.skipped.items()]
    return "\n".join(lines) + "\n"


def _windows(prepared: Path) -> tuple[WindowTables, list[WindowTables], int]:
    layout = PreparedWindows.read(prepared)
    h = layout.horizon_days
    return WindowTables.read(layout.scoring, h), [WindowTables.read(f, h) for f in layout.training], h


def _metrics(churned: np.ndarray, churn_p: np.ndarray, value: np.ndarray, value_p: np.ndarray, seconds: float) -> dict:
    m = churn_value_metrics(churned, churn_p, value, value_p)
    positive = value > 0
    m["value_mape"] = (
        float(np.mean(np.abs(value_p[positive] - value[positive]) / value[positive])) if positive.any() else math.nan
    )
    m["value_spearman"] = float(stats.spearmanr(value, value_p).statistic) if len(value) > 1 else math.nan
    m["seconds"] = seconds
    return m


def _compare(per_seed: dict[str, list[dict[str, float]]], first: _SeedRun) -> dict[str, dict]:
    """Paired t-tests over seeds, and a paired bootstrap of the AUC on the first seed's customers."""
    ours = per_seed[CUSTSEQ]
    out = {}
    for name, runs in per_seed.items():
        if name == CUSTSEQ:
            continue
        pair = {}
        for metric in ("churn_auc", "value_gini"):
            a, b = [r[metric] for r in ours], [r[metric] for r in runs]
            pair[f"{metric}_difference"] = float(np.mean(a) - np.mean(b))
            pair[f"{metric}_p"] = paired_t_test(a, b)
        scores = first.churn_probability
        pair["auc_bootstrap"] = paired_bootstrap_auc(first.churned, scores[CUSTSEQ], scores[name], n_boot=500)
        out[name] = pair
    return out
