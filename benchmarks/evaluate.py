"""Issue 7's comparison and studies: ``custseq evaluate`` on CDNOW and Online Retail, written to RESULTS.md.

Run from the repository root, one study at a time (each takes minutes to an hour on 2 cores)::

    .venv/bin/python benchmarks/evaluate.py main --dataset cdnow-181d --seeds 5
    .venv/bin/python benchmarks/evaluate.py ablations --dataset online-retail --seeds 3
    .venv/bin/python benchmarks/evaluate.py labels --dataset online-retail --seeds 3
    .venv/bin/python benchmarks/evaluate.py transfer --dataset online-retail --seeds 3

Studies:

* ``main`` — every method (:data:`custseq.evaluation.methods.DEFAULT_METHODS`), temporal protocol;
* ``customer-split`` — the same methods on SeqPreMT's 70/15/15 customer split;
* ``ablations`` — custseq and each ablation of :data:`custseq.evaluation.methods.ABLATIONS`;
* ``labels`` — label efficiency: custseq, custseq without pre-training, the LSTM, logistic regression and
  LightGBM fine-tuned on 10/20/40/100% of the training customers;
* ``transfer`` — custseq pre-trained on the other dataset and fine-tuned on this one, against in-domain
  pre-training and none.

Each study writes ``evaluation.json`` / ``.md`` under ``benchmarks/out/<study>-<dataset>/`` and replaces its
own section of ``--results`` (with the command, the machine and how busy it was). The settings are
custseq's defaults; nothing is tuned on the test windows.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from harness import busy_cpu_seconds, machine_description, wait_for_quiet, write_section  # benchmarks/

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ONLINE_RETAIL = SHARED_DATA / "online_retail" / "online_retail.csv.gz"
PACKAGES = ("torch", "lightgbm", "xgboost-cpu", "lifetimes", "statsmodels", "scikit-learn")
# name -> (data, scoring as-of, horizon); the test window is one horizon before the as-of date.
# CDNOW ends 1998-06-30: tests as of 1997-12-31 (181 d observed) and 1997-09-30 (273 d).
DATASETS = {
    "cdnow-181d": ("cdnow", "1998-06-30", "181d"),
    "cdnow-273d": ("cdnow", "1998-06-30", "273d"),
    "online-retail": (str(ONLINE_RETAIL), "2011-12-09", "90d"),
}
TRANSFER_SOURCE = {"cdnow-181d": str(ONLINE_RETAIL), "cdnow-273d": str(ONLINE_RETAIL), "online-retail": "cdnow"}
STUDIES = ("main", "customer-split", "ablations", "labels", "transfer")


def study_arguments(study: str, dataset: str) -> dict:
    from custseq.evaluation.methods import ABLATIONS, DEFAULT_METHODS

    if study in ("main", "customer-split"):
        return {"methods": list(DEFAULT_METHODS), "protocol": "temporal" if study == "main" else "customer-split"}
    if study == "ablations":
        return {"methods": ["custseq"], "ablations": list(ABLATIONS)}
    if study == "labels":
        return {
            "methods": ["custseq", "lstm", "logistic", "lightgbm"],
            "ablations": ["no-pretraining"],
            "label_fractions": [0.1, 0.2, 0.4, 1.0],
        }
    return {"methods": ["custseq"], "transfer_from": _data(TRANSFER_SOURCE[dataset])}


def _data(name: str) -> str:
    from custseq.datasets import cdnow_path

    return str(cdnow_path()) if name == "cdnow" else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--dataset", choices=list(DATASETS), required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--max-wait", type=float, default=300.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--config", type=Path, help="a custseq TOML config, e.g. benchmarks/configs/btyd_features.toml")
    parser.add_argument("--methods", help="comma-separated methods instead of the study's")
    parser.add_argument("--ablations", help="comma-separated ablations instead of the study's")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from custseq.api import evaluate
    from custseq.config import load_config
    from custseq.pipelines.evaluate import markdown

    data, as_of, horizon = DATASETS[args.dataset]
    tag = f"{args.study}-{args.dataset}" + (f"-{args.config.stem}" if args.config else "")
    out = ROOT / "benchmarks" / "out" / tag
    study = study_arguments(args.study, args.dataset)
    if args.methods:
        study["methods"] = [m.strip() for m in args.methods.split(",")]
    if args.ablations:
        study["ablations"] = [a.strip() for a in args.ablations.split(",")]
    busy_before = wait_for_quiet(0.3, args.max_wait)
    cpu_before, started = busy_cpu_seconds(), time.perf_counter()
    result = evaluate(
        _data(data), horizon=horizon, as_of=as_of, seeds=list(range(args.seeds)), out=out,
        config=load_config(args.config) if args.config else None, on_stage=lambda msg: print(msg, flush=True),
        **study,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    busy = busy_cpu_seconds() - cpu_before
    heading = f"## evaluate (issue 7): {args.study}, {args.dataset}" + (f", {args.config.name}" if args.config else "")
    if args.methods or args.ablations:  # a chosen subset: its own section, the full study's is kept
        heading += f", methods {','.join(study['methods'] + study.get('ablations', []))}"
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/evaluate.py", *sys.argv[1:]])
    body = markdown(result).split("\n", 1)[1]  # without its own title
    section = (
        f"{heading}\n\n`{command}` — {seconds / 60:.1f} min on {machine_description(PACKAGES)}; the machine "
        f"was busy {busy / seconds:.2f} cores on average during the run, this run included (other processes "
        f"used {busy_before:.2f} cores just before it started).\n\n{result.protocol} protocol, test window as of "
        f"{result.as_of}, horizon {result.horizon_days} days, seeds {result.seeds}.\n{body}"
    )
    write_section(args.results, section, heading)


if __name__ == "__main__":
    main()
