"""What learning from a sample of the latest window costs the final predictor and the item level (issue 19).

At a million customers the final predictor's boosted heads learn from a stable sample of about
``[model.predictor] max_training_customers`` customers of the latest training window, and products vs categories
are compared on at most ``MAX_LEVEL_CUSTOMERS`` held-out next purchases. This measures both against the whole
window on a ``prepare`` output and the model a ``predict`` of the same data saved. Run from the repository root,
on the synthetic log of ``benchmarks/scaling.py`` at a million customers
(``custseq.datasets.synthetic.write_transactions("tx.parquet", 6949270, seed=1)``)::

    .venv/bin/custseq prepare tx.parquet --out prepared/
    .venv/bin/custseq predict tx.parquet --out run/
    .venv/bin/python benchmarks/predictor_sample.py --prepared prepared/ --model run/model --budgets 200000 100000

The predictor is fitted on the whole latest window (the behaviour before sampling) and on each budget's sample;
each is judged on the latest window's validation customers outside the smallest sample, which none of the
sampled predictors saw (the whole-window predictor chose its blend and calibration on them: an advantage to it).
The item level is decided on the first ``MAX_LEVEL_CUSTOMERS`` held-out next purchases and on all of them. The
result replaces the section "## the predictor on a sample of the latest window (issue 19)" of ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from harness import busy_cpu_seconds, machine_description, write_section  # benchmarks/

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## the predictor on a sample of the latest window (issue 19)"
PACKAGES = ("torch", "lightgbm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", type=Path, required=True, help="a `custseq prepare` output")
    parser.add_argument("--model", type=Path, required=True, help="the model `custseq predict` saved on the same data")
    parser.add_argument("--budgets", type=int, nargs="+", default=[200_000, 100_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    cpu_before, started = busy_cpu_seconds(), time.perf_counter()
    predictor_rows = _predictor_rows(args.prepared, args.model, args.budgets)
    level_rows = _level_rows(args.prepared, args.model)
    own = resource.getrusage(resource.RUSAGE_SELF)
    busy = max(0.0, (busy_cpu_seconds() - cpu_before - own.ru_utime - own.ru_stime) / (time.perf_counter() - started))
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/predictor_sample.py", *sys.argv[1:]])
    write_section(args.out, _section(predictor_rows, level_rows, command, busy), HEADING)


def _predictor_rows(prepared: Path, model_dir: Path, budgets: list[int]) -> list[list[str]]:
    from custseq.config import RunConfig
    from custseq.io.prepared import PreparedWindows
    from custseq.metrics import normalized_gini, roc_auc
    from custseq.models.combine import fit_final_predictor, predictor_windows
    from custseq.models.finetune import apply_predictor, load_churn_value, score_window
    from custseq.sequences.batch import sample_mask, split_mask

    model = load_churn_value(model_dir)[0]
    model.predictor = None  # the network as fine-tuned: the predictor is what is fitted here
    layout = PreparedWindows.read(prepared)
    cfg = RunConfig().model
    latest = layout.training[0]
    features, labels = pq.read_table(latest.features), pq.read_table(latest.labels)
    ids = features.column("customer_id").to_pylist()
    network = score_window(model, latest)
    rows_of = {c: i for i, c in enumerate(network.customer_ids)}
    order = np.array([rows_of[c] for c in ids])
    churned = labels.column("churned").to_numpy(zero_copy_only=False).astype(float)
    value = labels.column("value").to_numpy(zero_copy_only=False).astype(float)
    validation = split_mask(ids, "validation", cfg.finetune.validation_fraction, cfg.finetune.test_fraction)
    judged = validation & ~sample_mask(ids, min(budgets) / len(ids))
    rows = []
    for budget in [None, *sorted(budgets, reverse=True)]:
        tick = time.perf_counter()
        taken = predictor_windows(layout.training, budget) if budget else contextlib.nullcontext([latest])
        with taken as windows:
            predictor, choice = fit_final_predictor(layout, model, cfg, windows=windows)
        seconds = time.perf_counter() - tick
        scored = apply_predictor(predictor, network, features).columns
        p, v = scored["churn_probability"][order][judged], scored["clv_expected"][order][judged]
        learned = f"{budget:,} (a sample)" if budget else f"{len(ids):,} (the whole window)"
        rows.append([
            learned, f"{seconds:.0f}", f"{choice.validation_customers:,}", f"{roc_auc(churned[judged], p):.4f}",
            f"{normalized_gini(value[judged], v):.4f}", f"{v.sum() / value[judged].sum():.3f}",
            f"{choice.churn.description} / {choice.value.description}",
        ])  # fmt: skip
        print(rows[-1], flush=True)
    rows.append([f"judged on {int(judged.sum()):,} validation customers outside every sample", "", "", "", "", "", ""])
    return rows


def _level_rows(prepared: Path, model_dir: Path) -> list[list[str]]:
    from custseq.config import ActionConfig
    from custseq.io.prepared import PreparedWindows
    from custseq.models.next_event import item_field
    from custseq.pipelines.predict import NEXT_EVENT_DIR
    from custseq.pipelines.score import load_item_proposer
    from custseq.scoring import item_level
    from custseq.sequences.vocab import SequenceVocab

    proposer = load_item_proposer(model_dir / NEXT_EVENT_DIR)
    if proposer is None:
        return []
    layout = PreparedWindows.read(prepared)
    vocab = SequenceVocab.load(layout.vocab_file)
    field = item_field(vocab, ActionConfig().item_field)
    if field is None:
        return []
    cap, rows = item_level.MAX_LEVEL_CUSTOMERS, []
    try:
        for limit in (cap, None):
            item_level.MAX_LEVEL_CUSTOMERS = limit  # None: every held-out purchase
            tick = time.perf_counter()
            level = item_level.decide_item_level(
                proposer.model, vocab, layout.training[0], layout.scoring, field, ActionConfig(),
                horizon_days=layout.horizon_days, mixture=proposer.mixture,
            )  # fmt: skip
            hits = level.hit_rate_at_k
            rows.append([
                f"{limit:,} (the first)" if limit else "all", f"{time.perf_counter() - tick:.0f}",
                f"{level.customers:,}", f"{hits.get('item', float('nan')):.2%}",
                f"{hits.get('category', float('nan')):.2%}", level.level,
            ])  # fmt: skip
            print(rows[-1], flush=True)
    finally:
        item_level.MAX_LEVEL_CUSTOMERS = cap
    return rows


def _section(predictor_rows: list[list[str]], level_rows: list[list[str]], command: str, busy: float) -> str:
    table = [
        "| customers learned from | seconds | validation customers | churn AUC | value Gini | predicted / actual "
        "value | chosen (churn / value) |",
        "|---|---:|---:|---:|---:|---:|---|",
        *("| " + " | ".join(r) + " |" for r in predictor_rows),
    ]
    levels = [
        "| held-out next purchases | seconds | measured on | products hit@k | categories hit@k | level |",
        "|---|---:|---:|---:|---:|---|",
        *("| " + " | ".join(r) + " |" for r in level_rows),
    ]
    return "\n".join([
        HEADING, "",
        f"`{command}` (other processes used about {busy:.2f} cores on average); on {machine_description(PACKAGES)}.",
        "", "The final predictor (boosted heads, choice, calibration) fitted on the latest training window:", "",
        *table, "", "Products vs categories decided on the latest training window's held-out next purchases:", "",
        *(levels if level_rows else ["(no next-event head or no item field: nothing to decide)"]), "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
