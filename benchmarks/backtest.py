"""Issue 15's back-tests as a user runs them: ``custseq predict`` on the past, scored on the real future.

Run from the repository root::

    .venv/bin/python benchmarks/backtest.py --seeds 0 --out benchmarks/RESULTS.md

For each back-test and seed, ``custseq.api.predict_run`` runs with the default settings (the seed, ``work_dir``
kept). The truth is the scoring window's labels from a separate ``custseq.prepare`` at the same as-of and the
requested horizon (so a horizon carried from a shorter one is judged on the requested horizon). On the same
prepared training windows, the alternatives are fitted and scored on the same customers:

- ``lightgbm-rich``: LightGBM on the rich features alone (:class:`custseq.baselines.tabular.LightGBMRich`);
- ``logistic``: logistic regression / ridge on the standardised features;
- ``pareto-nbd``: Pareto/NBD + Gamma-Gamma fitted on the scoring window's own history (no labels).

The supervised alternatives need a training window at the requested horizon; where none fits they are n/a
(custseq carries a shorter horizon, see the model choice). Reported per method: churn ROC AUC, Brier, value
normalized Gini, predicted / actual total value; for custseq also the share of customers above their P90 and
below their P10, and the "lapsed regulars" check: the customers custseq marks ``lapsed_regular`` (at least 5
purchase days, silent for 3 of their usual gaps and 28 days), their mean predicted churn against their actual
churn rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import machine_description, write_section  # benchmarks/

ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
# name -> (source, as-of, horizon). CDNOW ends 1998-06-30: from the cutoff 1998-01-01, 181 days are observed.
BACKTESTS = {
    "cdnow-1997-12-31-181d": ("cdnow", "1997-12-31", "181d"),
    "online-retail-2011-09-08-91d": (str(ONLINE_RETAIL), "2011-09-08", "91d"),
    "cdnow-1997-09-30-273d": ("cdnow", "1997-09-30", "273d"),
}
SECTION = "## back-tests as a user runs predict (issue 15)"


def _data(source: str):
    from custseq.datasets import load_cdnow

    return load_cdnow() if source == "cdnow" else source


def _truth(source: str, as_of: str, horizon: str, work: Path):
    """The scoring window's features and labels at the requested horizon (labels observed: a back-test)."""
    import custseq
    from custseq.baselines.base import WindowTables
    from custseq.config import RunConfig, with_window

    cfg = with_window(RunConfig(), as_of=as_of, horizon=horizon)
    cfg = dataclasses.replace(cfg, window=dataclasses.replace(cfg.window, require_training=False))
    prepared = custseq.api.prepare(_data(source), config=cfg, out=work / "truth", as_of=as_of, horizon=horizon)
    return WindowTables.read(prepared.layout.scoring, prepared.summary.horizon_days)


def _metrics(churned, value, churn_p, value_p) -> dict[str, float]:
    from custseq.metrics import brier, normalized_gini, roc_auc

    return {
        "auc": roc_auc(churned, churn_p),
        "brier": brier(churned, churn_p),
        "gini": normalized_gini(value, value_p),
        "total": float(np.sum(value_p) / max(np.clip(value, 0, None).sum(), 1e-9)),
    }


def _alternatives(layout, truth, seed: int) -> dict[str, dict[str, float]]:
    from custseq.baselines.base import WindowTables
    from custseq.baselines.simple import ParetoNbd
    from custseq.baselines.tabular import LightGBMRich, LogisticRidge

    churned, value = truth.label_arrays()
    out = {}
    scoring_features = WindowTables(truth.features, None, truth.horizon_days)
    p = ParetoNbd().predict(scoring_features)
    out["pareto-nbd"] = _metrics(churned, value, p.churn_probability, p.value)
    if layout.horizon_days != truth.horizon_days or not layout.training:
        return out
    windows = [WindowTables.read(w, layout.horizon_days) for w in layout.training]
    for name, model in (("lightgbm-rich", LightGBMRich(seed=seed)), ("logistic", LogisticRidge(seed=seed))):
        started = time.perf_counter()
        q = model.fit(windows).predict(scoring_features)
        out[name] = _metrics(churned, value, q.churn_probability, q.value) | {"seconds": time.perf_counter() - started}
    return out


def run_one(name: str, seed: int) -> dict:
    from custseq.api import predict_run
    from custseq.io.prepared import PreparedWindows

    source, as_of, horizon = BACKTESTS[name]
    with tempfile.TemporaryDirectory(prefix="custseq-backtest-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        run = predict_run(_data(source), as_of=as_of, horizon=horizon, seed=seed, work_dir=work / "predict")
        seconds = time.perf_counter() - started
        truth = _truth(source, as_of, horizon, work)
        ids = truth.customer_ids
        p = run.predictions.set_index("customer_id").loc[ids]
        churned, value = truth.label_arrays()
        ours = _metrics(churned, value, p["churn_probability"].to_numpy(), p["clv_expected"].to_numpy())
        ours["above_p90"] = float(np.mean(value > p["clv_p90"].to_numpy()))
        ours["below_p10"] = float(np.mean(value < p["clv_p10"].to_numpy()))
        ours["seconds"] = seconds
        lapsed = p["lapsed_regular"].to_numpy(dtype=bool)  # the product's own rule (custseq.scoring.lapse)
        ours["lapsed_n"] = int(lapsed.sum())
        ours["lapsed_predicted"] = float(p["churn_probability"].to_numpy()[lapsed].mean()) if lapsed.any() else np.nan
        ours["lapsed_actual"] = float(churned[lapsed].mean()) if lapsed.any() else np.nan
        folder = next(d for d in (work / "predict" / "prepared-short", work / "predict" / "prepared") if d.exists())
        layout = PreparedWindows.read(folder)
        alternatives = _alternatives(layout, truth, seed)
        choice = run.metrics.model_choice
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"custseq": ours, **alternatives, "choice": choice, "peak_gib": peak, "customers": len(ids)}


def _row(method: str, m: dict) -> str:
    def f(key, fmt):
        v = m.get(key)
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

    return (f"| {method} | {f('auc', '.3f')} | {f('brier', '.3f')} | {f('gini', '.3f')} | {f('total', '.2f')} | "
            f"{f('above_p90', '.3f')} | {f('below_p10', '.3f')} | {f('seconds', '.1f')} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", default=list(BACKTESTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    started = time.time()
    lines = [
        SECTION,
        "",
        f"Command: `.venv/bin/python benchmarks/backtest.py {shlex.join(sys.argv[1:])}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Machine: {machine_description(('torch', 'lightgbm', 'duckdb'))}",
        "",
        (__doc__ or "").split("\n\n", 3)[3].strip(),
    ]
    for name in args.only:
        for seed in args.seeds:
            r = run_one(name, seed)
            c = r["custseq"]
            choice = r["choice"]
            lines += [
                "", f"**{name}**, seed {seed}: {r['customers']:,} scored customers; peak {r['peak_gib']:.2f} GiB",
                "",
                "| method | churn AUC | Brier | value nGini | predicted/actual total | > P90 | < P10 | s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
                _row("custseq", c),
                *(_row(m, r[m]) for m in ("lightgbm-rich", "logistic", "pareto-nbd") if m in r),
                "",
                f"custseq chose churn = {choice.churn.description}, value = {choice.value.description}"
                + (f"; trained on {choice.trained_horizon_days} d and carried" if choice.trained_horizon_days else "")
                + f". Lapsed regulars (custseq's lapsed_regular): {c['lapsed_n']} customers, "
                f"predicted churn {c['lapsed_predicted']:.2f}, actual {c['lapsed_actual']:.2f}.",
            ]  # fmt: skip
            print("\n".join(lines[-9:]), flush=True)
    lines.append(f"\nThe whole run took {(time.time() - started) / 60:.1f} min.")
    if args.out:
        write_section(args.out, "\n".join(lines), SECTION)


if __name__ == "__main__":
    main()
