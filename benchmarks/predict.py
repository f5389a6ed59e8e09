"""Back-test ``custseq predict`` against a logistic/ridge regression and LightGBM trained on the same windows.

Run from the repository root::

    .venv/bin/python benchmarks/predict.py --out benchmarks/RESULTS.md

Each back-test cuts the data at an as-of date whose horizon is observed, so the scoring window has labels.
For every seed, one fresh process runs ``custseq.api.predict_run`` (default settings, the seed,
``work_dir`` kept) and reports its back-test metrics, wall time and peak resident memory. In the same
process, after custseq, two baselines are trained on exactly custseq's training windows (roles "validation"
and "train" in ``prepare.json``) and scored on the scoring window, with the numeric feature columns of
``prepare`` (``custseq.features.matrix``: signed log1p, standardisation and missing indicators, fitted on the
training windows; categorical columns are left out):

- a logistic regression for churn, and a ridge regression on log1p(value⁺) for value, predicted as expm1 of
  its output clipped to the training targets' range [0, max log1p(value⁺)] (unclipped, a few scoring
  customers outside the training features' range get values in the millions);
- LightGBM: a classifier for churn and a Tweedie regressor on value⁺, fixed settings
  (``custseq.config.BaselineConfig``); both are the classes of ``custseq.baselines.tabular``.

All metrics come from ``custseq.metrics.churn_value_metrics``, so the three rows are comparable. A back-test
whose windows cannot be built (``WindowError``) is reported as not trainable, with custseq's message. Before
each run the parent waits up to ``--max-wait`` seconds for a quiet machine and reports the CPU other
processes used meanwhile (as ``encoder.py`` does). The results replace the section "## predict (issue 6)"
of ``--out`` (``--section``); other sections are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (  # benchmarks/
    busy_cpu_seconds,
    child_env,
    machine_description,
    read_result,
    report_result,
    wait_for_quiet,
    write_section,
)

PACKAGES = ("torch", "duckdb", "lightgbm", "scikit-learn")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
GIB = 1024**3
# name -> (source, as-of, horizon). CDNOW ends 1998-06-30: from the cutoff 1998-01-01, 181 days are observed.
BACKTESTS = {
    "cdnow-1997-12-31": ("cdnow", "1997-12-31", "181d"),
    "cdnow-1997-09-30": ("cdnow", "1997-09-30", "273d"),
    "online-retail": (str(SHARED_DATA / "online_retail" / "online_retail.csv.gz"), "2011-09-10", "90d"),
}
MODELS = ("custseq", "logistic regression", "LightGBM")

# metric key, column title, digits
COLUMNS = (
    ("churn_auc", "churn ROC AUC", 3),
    ("churn_pr_auc", "PR AUC", 3),
    ("churn_brier", "Brier", 3),
    ("value_rmse", "value RMSE", 2),
    ("value_mae", "MAE", 2),
    ("value_gini", "normalized Gini", 3),
    ("value_top_decile_share", "top-decile share", 3),
)


# --------------------------------------------------------------------------- child side
# One back-test and one seed per process: custseq first, then the baselines on its prepared windows.


def child_backtest(p: dict) -> dict:
    from custseq.api import predict_run as run_predict
    from custseq.config import load_config
    from custseq.datasets import cdnow_path
    from custseq.errors import WindowError

    source = cdnow_path() if p["source"] == "cdnow" else Path(p["source"])
    config = load_config(Path(p["config"])) if p.get("config") else None
    with tempfile.TemporaryDirectory(prefix="custseq-bench-predict-") as tmp:
        t0 = time.perf_counter()
        try:
            run = run_predict(
                source, horizon=p["horizon"], as_of=p["as_of"], seed=p["seed"], work_dir=tmp, config=config
            )
        except WindowError as e:
            return {"not_trainable": str(e)}
        seconds = time.perf_counter() - t0
        custseq_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the baselines run
        validation = run.metrics.validation.to_json()
        baselines, data = run_baselines(Path(tmp) / "prepared", p["seed"])
    return {
        "seconds": seconds,
        "custseq": run.metrics.backtest.to_json() if run.metrics.backtest else None,
        "custseq_peak_bytes": custseq_peak,
        "validation_composite": validation["composite"],
        "best_epoch": int(validation["best_epoch"]),
        "training_windows": list(run.metrics.training_windows or ()),
        "baselines": baselines,
        "data": data,
    }


def run_baselines(prepared: Path, seed: int) -> tuple[dict, dict]:
    """Metrics and fit + predict seconds of both baselines (``custseq.baselines``), and what data they saw."""
    import numpy as np

    from custseq.baselines.base import WindowTables
    from custseq.baselines.tabular import LightGBM, LogisticRidge
    from custseq.features.matrix import fit_tabular
    from custseq.io.prepared import PreparedWindows
    from custseq.metrics import churn_value_metrics

    layout = PreparedWindows.read(prepared)
    h = layout.horizon_days
    train_keys, score_key = [f.key for f in layout.training], layout.scoring.key
    train = [WindowTables.read(folder, h) for folder in layout.training]
    score = WindowTables.read(layout.scoring, h)
    y_train = np.concatenate([w.label_arrays()[0] for w in train])
    y_score, v_score = score.label_arrays()
    spec = fit_tabular([w.features for w in train])  # what both baselines read, for the summary line
    info = {
        "train_windows": train_keys,
        "score_window": score_key,
        "train_rows": len(y_train),
        "score_rows": len(y_score),
        "columns": spec.width,
        "categorical_skipped": list(spec.categorical),
        "train_churn": float(y_train.mean()),
        "score_churn": float(y_score.mean()),
        "score_value_mean": float(v_score.mean()),
        "score_value_zero": float(np.mean(v_score <= 0)),
    }
    out = {}
    for name, model in (("logistic regression", LogisticRidge(seed=seed)), ("LightGBM", LightGBM(seed=seed))):
        t0 = time.perf_counter()
        p = model.fit(train).predict(score)
        metrics = churn_value_metrics(y_score, p.churn_probability, v_score, p.value)
        out[name] = {"seconds": time.perf_counter() - t0, "metrics": metrics}
    return out, info


def run_child(params: dict) -> None:
    """Entry point of a measurement process: run one back-test and print its result as one JSON line."""
    report_result(child_backtest(params))


# --------------------------------------------------------------------------- parent side


def measure(params: dict, args: argparse.Namespace) -> tuple[dict | None, str]:
    """Run one back-test and seed in a fresh Python process on a quiet machine.

    Its result, with ``other_cores`` (CPU other processes used meanwhile, in cores), or None and why.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "backtest", "--params", json.dumps(params)]
    wait_for_quiet(args.quiet_cores, args.max_wait)
    usage0, busy0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_cpu_seconds(), time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, env=child_env(ROOT), check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"timeout (> {args.timeout:.0f} s)"
    wall, busy, usage1 = (
        time.perf_counter() - t0,
        busy_cpu_seconds() - busy0,
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    result, note = read_result(f"{params['name']} seed {params['seed']}", proc, note_width=200)
    if result is not None:
        child_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        result["other_cores"] = max(busy - child_cpu, 0.0) / wall
    return result, note


def run_backtest(name: str, seeds: list[int], args: argparse.Namespace) -> dict:
    """Every seed of one back-test: {"runs": [...]} or {"note": why there are no numbers}."""
    source, as_of, horizon = BACKTESTS[name]
    if source != "cdnow" and not Path(source).exists():
        return {"note": f"not run: {source} not found"}
    runs = []
    for seed in seeds:
        params = {"name": name, "source": source, "as_of": as_of, "horizon": horizon, "seed": seed}
        if args.config is not None:
            params["config"] = str(args.config.resolve())
        result, note = measure(params, args)
        if result is None:
            print(f"  {name} seed {seed}: {note}")
            return {"note": note}
        if "not_trainable" in result:  # the windows do not depend on the seed
            print(f"  {name}: not trainable")
            return {"note": f"not trainable: {result['not_trainable']}"}
        result["seed"] = seed
        runs.append(result)
        print(
            f"  {name} seed {seed}: {result['seconds']:.0f} s, AUC custseq {result['custseq']['churn_auc']:.3f} / "
            + " / ".join(f"{k} {v['metrics']['churn_auc']:.3f}" for k, v in result["baselines"].items())
        )
    return {"runs": runs}


# --------------------------------------------------------------------------- report


def model_metrics(runs: list[dict], model: str) -> list[dict]:
    return [r["custseq"] if model == "custseq" else r["baselines"][model]["metrics"] for r in runs]


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def cell(values: list[float], digits: int) -> str:
    if any(math.isnan(v) for v in values):
        return "nan"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_table(runs: list[dict]) -> list[str]:
    lines = [
        "| model | " + " | ".join(title for _, title, _ in COLUMNS) + " | wall s | peak GiB |",
        "|---|" + "---:|" * (len(COLUMNS) + 2),
    ]
    for model in MODELS:
        metrics = model_metrics(runs, model)
        cells = [cell([m[key] for m in metrics], digits) for key, _, digits in COLUMNS]
        if model == "custseq":
            wall = mean_std([r["seconds"] for r in runs])[0]
            peak = f"{mean_std([r['custseq_peak_bytes'] / GIB for r in runs])[0]:.2f}"
        else:
            wall, peak = mean_std([r["baselines"][model]["seconds"] for r in runs])[0], "–"
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {wall:.1f} | {peak} |")
    return lines


def target_line(runs: list[dict]) -> str:
    """Whether custseq's mean AUC and normalized Gini reach the better baseline's on both."""
    means = {m: {k: mean_std([x[k] for x in model_metrics(runs, m)])[0] for k in ("churn_auc", "value_gini")}
             for m in MODELS}  # fmt: skip
    parts, met = [], True
    for key, title in (("churn_auc", "AUC"), ("value_gini", "nGini")):
        best = max(MODELS[1:], key=lambda m, k=key: means[m][k])
        ok = means["custseq"][key] >= means[best][key]
        met = met and ok
        parts.append(f"{title} {means['custseq'][key]:.3f} vs {means[best][key]:.3f} ({best})")
    return f"Target (custseq ≥ best of LR and LightGBM on AUC and nGini): **{'met' if met else 'not met'}** " + (
        f"({'; '.join(parts)})"
    )


def data_line(runs: list[dict]) -> str:
    d = runs[0]["data"]
    skipped = ", ".join(f"`{c}`" for c in d["categorical_skipped"]) or "none"
    return (
        f"Training windows (as-of) {', '.join(d['train_windows'])}: {d['train_rows']:,} customer rows, churn "
        f"{d['train_churn']:.1%}; scoring window {d['score_window']}: {d['score_rows']:,} customers, churn "
        f"{d['score_churn']:.1%}, mean value {d['score_value_mean']:.2f}, {d['score_value_zero']:.1%} with value ≤ 0. "
        f"Baseline inputs: {d['columns']} numeric columns (categorical left out: {skipped})."
    )


def detail_line(runs: list[dict]) -> str:
    seeds = "; ".join(
        f"seed {r['seed']}: composite {r['validation_composite']:.3f}, best epoch {r['best_epoch'] + 1}, "
        f"{r['seconds']:.0f} s, other load {r['other_cores']:.2f}"
        for r in runs
    )
    return (
        "custseq per seed (fine-tuning validation composite, 1-based best epoch, wall s, cores other processes "
        f"kept busy meanwhile: above ~0.2 the times are slowed by a busy machine): {seeds}."
    )


def backtest_lines(name: str, outcome: dict) -> list[str]:
    source, as_of, horizon = BACKTESTS[name]
    data = "CDNOW (bundled)" if source == "cdnow" else "UCI Online Retail"
    head = [f"**{name}**: {data}, as-of {as_of}, horizon {horizon}", ""]
    if "note" in outcome:
        status, _, why = outcome["note"].partition(": ")
        rows = [f"| {model} | {status} |" for model in MODELS]
        return [*head, "| model | result |", "|---|---|", *rows, "", f"{status.capitalize()}: {why}", ""]
    runs = outcome["runs"]
    return [
        *head,
        data_line(runs),
        "",
        *results_table(runs),
        "",
        target_line(runs),
        "",
        detail_line(runs),
        "",
    ]


def render(args: argparse.Namespace, command: str, outcomes: dict[str, dict], started: float) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    from custseq.config import BaselineConfig

    settings = dataclasses.asdict(BaselineConfig())
    lgbm = ", ".join(f"{k}={v}" for k, v in settings.items() if k.startswith(("lgbm_", "cohort_cv", "cv_")))
    return "\n".join(
        [
            f"## {args.section}",
            "",
            f"Command: `{command}`  ",
            f"Date: {now}; the whole run took {(time.perf_counter() - started) / 60:.1f} min  ",
            f"Machine: {machine_description(PACKAGES)}",
            "",
            f"Seeds {', '.join(map(str, args.seeds))}; every cell is the mean ± standard deviation over the seeds. "
            "custseq: `run_predict(data, horizon=H, as_of=t0, seed=seed, work_dir=tmp)` with "
            + (f"the settings of `{args.config}` (below)" if args.config else "the default settings")
            + ", in a fresh process per seed; wall s is the whole call (validate, prepare, pre-train, "
            "fine-tune, score), peak GiB the process's maximum resident memory at its end. The baselines "
            "run in the same process afterwards, on the same prepared windows: trained on every training "
            "window (custseq holds a share of the validation window's customers out for early stopping and "
            "calibration; the baselines use them all), scored on the scoring window, with the numeric "
            "columns of `features.parquet` through `custseq.features.matrix` (signed log1p, standardised, "
            "missing indicators; fitted on the training windows). Logistic regression: "
            "`LogisticRegression(max_iter=2000)` for churn, `Ridge()` on log1p(max(value, 0)) with "
            "expm1 of its output clipped to [0, the largest training target] for value. LightGBM: "
            "`LGBMClassifier` for churn, "
            f"`LGBMRegressor(objective='tweedie')` on max(value, 0) for value, both with {lgbm}, "
            "random_state = seed; fixed, not tuned. Their wall s is fit + predict of both models. Metrics: "
            "`custseq.metrics.churn_value_metrics` on the scoring window for all three. "
            "CDNOW uses H = 181 d, not 182: the data end on 1998-06-30, so from the cutoff 1998-01-01 only "
            "181 days are observed and a 182-day label would be censored by one day; 181 days is the whole "
            "observed holdout.",
            "",
            *(
                [f"Settings (`{args.config}`):", "", "```toml", args.config.read_text().strip(), "```", ""]
                if args.config
                else []
            ),
            *(line for name, outcome in outcomes.items() for line in backtest_lines(name, outcome)),
        ]
    ).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--backtests", nargs="+", choices=list(BACKTESTS), default=list(BACKTESTS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--section", default="predict (issue 6)", help="heading of the section, after '## '")
    parser.add_argument("--config", type=Path, help="TOML config for custseq (e.g. an ablation); default settings")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before a back-test run is killed")
    parser.add_argument("--quiet-cores", type=float, default=0.2,
                        help="wait before a run until other processes use fewer cores than this")  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=60.0, help="longest wait for a quiet machine, seconds")
    parser.add_argument("--child", choices=["backtest"], help=argparse.SUPPRESS)
    parser.add_argument("--params", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.params)
        return 0

    started = time.perf_counter()
    command = shlex.join([".venv/bin/python", "benchmarks/predict.py", *(sys.argv[1:] if argv is None else argv)])
    outcomes = {}
    for name in args.backtests:
        print(name)
        outcomes[name] = run_backtest(name, args.seeds, args)
    write_section(args.out, render(args, command, outcomes, started), f"## {args.section}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
