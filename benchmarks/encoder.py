"""Benchmark the sequence encoder: pre-training and embedding throughput, and what pre-training learns.

Run from the repository root::

    .venv/bin/python benchmarks/encoder.py --out benchmarks/RESULTS.md

Part 1, speed. A synthetic log (``custseq.datasets.synthetic``, enough rows for 100k customers with history
at the scoring cutoff) is prepared once into ``benchmarks/.data/`` with ``SequenceConfig(max_events=256)``.
For each L in ``--lengths`` and d_model in ``--dims``, one process runs one pre-training epoch (masked +
next event, batch 256) over the scoring window's customers through ``custseq.models.train.train``, and
another embeds them (eval, no grad, batch 1024). Each process sets ``torch.set_num_threads(--threads)``
and reports its wall time, CPU time and peak resident memory. An epoch that would run past
``--epoch-budget`` seconds is stopped there and its time extrapolated (marked as such).

Part 2, quality. On CDNOW (bundled) and UCI Online Retail (``../shared/data``, when present), the encoder
is pre-trained on the training windows' sequences only; on the scoring window the masked-event and
next-event heads are compared with constant baselines fitted on the training sequences (the mean for
numeric fields and log Δt, the majority class for categorical fields), and a logistic regression for
churn is trained on the validation window and scored on the scoring window, on the embeddings alone, on
the RFM features alone and on both.

The machine is sampled from ``/proc/stat`` around every measurement: the CPU used by other processes is
reported next to each number, and each measurement waits up to ``--max-wait`` seconds for a quiet machine.
The results replace the section "## encoder (issue 5)" of ``--out``; other sections are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (  # benchmarks/
    busy_cpu_seconds,
    child_env,
    machine_description,
    read_result,
    report_result,
    wait_for_quiet,
    write_section,
)

PACKAGES = ("torch", "numpy", "scikit-learn")

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "src" / "custseq" / "datasets" / "synthetic.py"
SHARED_DATA = ROOT.parent / "shared" / "data"
SECTION = "## encoder (issue 5)"
GIB = 1024**3
PRETRAIN_BATCH = 256
EMBED_BATCH = 1024
QUALITY_L = 64  # EncoderConfig's default, used for the quality part
# name -> (source, as-of, horizon). CDNOW ends 1998-06-30: from the cutoff 1998-01-01, 181 days are observed.
DATASETS = {
    "CDNOW": ("cdnow", "1997-12-31", "181d"),
    "Online Retail": (str(SHARED_DATA / "online_retail" / "online_retail.csv.gz"), "2011-09-09", "91d"),
}


# --------------------------------------------------------------------------- child side
# Each task runs in a fresh process and returns what it measured; the process adds its peak RSS.


def child_generate(p: dict) -> dict:
    from custseq.datasets.synthetic import write_transactions

    t0 = time.perf_counter()
    write_transactions(Path(p["path"]), p["rows"], seed=p["seed"])
    return {"seconds": time.perf_counter() - t0}


def child_prepare(p: dict) -> dict:
    import custseq
    from custseq.config import RunConfig, SequenceConfig

    cfg = RunConfig(sequence=SequenceConfig(max_events=p["max_events"]))
    t0 = time.perf_counter()
    result = custseq.prepare(Path(p["path"]), out=Path(p["out"]), horizon=p["horizon"], config=cfg)
    score = next(w for w in result.summary.windows if w.role == "score")
    return {"seconds": time.perf_counter() - t0, "customers": score.customers}


def encoder_config(max_events: int, d_model: int) -> Any:
    from custseq.config import EncoderConfig

    return EncoderConfig(d_model=d_model, n_heads=4, n_layers=2, d_ff=2 * d_model, max_events=max_events)


def scoring_sequences(prepared: Path) -> tuple[Any, tuple[Path, ...]]:
    """The vocabulary and the scoring window's sequence shards of a prepared folder."""
    from custseq.io.prepared import PreparedWindows
    from custseq.sequences.batch import shard_files
    from custseq.sequences.vocab import SequenceVocab

    layout = PreparedWindows.read(prepared)
    return SequenceVocab.load(layout.vocab_file), tuple(shard_files(layout.scoring.sequences))


def sequence_lengths(files: tuple[Path, ...]) -> Any:
    import numpy as np
    import pyarrow.parquet as pq

    return np.concatenate([pq.read_table(f, columns=["length"]).column("length").to_numpy() for f in files])


def count_tokens(files: tuple[Path, ...], max_events: int) -> tuple[int, int]:
    """Customers and tokens (each customer's length capped at ``max_events``) in the shards."""
    import numpy as np

    lengths = sequence_lengths(files)
    return len(lengths), int(np.minimum(lengths, max_events).sum())


def child_pretrain(p: dict) -> dict:
    """One pre-training epoch over the scoring window (stopped at the time budget and extrapolated)."""
    import torch

    torch.set_num_threads(p["threads"])
    from custseq.config import PretrainConfig, TrainConfig
    from custseq.models.pretrain import PretrainModel
    from custseq.sequences.batch import SequenceStream

    vocab, files = scoring_sequences(Path(p["prepared"]))
    customers, tokens = count_tokens(files, p["L"])
    stream = SequenceStream(files, vocab, p["L"], PRETRAIN_BATCH, shuffle=True, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=PRETRAIN_BATCH, seed=0, device="cpu")
    seen: dict[str, float] = {}

    def batches(epoch: int, rank: int = 0, world_size: int = 1):
        start = time.perf_counter()
        it = stream.batches(epoch, rank, world_size)
        while True:
            t = time.perf_counter()
            batch = next(it, None)
            seen["data_s"] += time.perf_counter() - t
            if batch is None:
                return
            seen["batches"] += 1
            seen["customers"] += batch.size
            seen["padded"] += batch.mask.numel()
            yield batch
            if time.perf_counter() - start > p["budget"]:
                return

    def fresh_model() -> PretrainModel:
        torch.manual_seed(0)
        seen.update(batches=0, customers=0, padded=0, data_s=0.0)
        return PretrainModel(encoder_config(p["L"], p["d"]), PretrainConfig(), vocab)

    t0 = time.perf_counter()
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # a process's first optimizer imports torch._dynamo
    warmup_s = time.perf_counter() - t0
    model = fresh_model()
    loop = "custseq.models.train.train"
    t0 = time.perf_counter()
    try:
        from custseq.models.train import train

        train(model, batches, None, cfg, steps_per_epoch=stream.n_batches(), progress=False)
    except Exception as e:  # the trainer is being finished elsewhere: measure a plain loop instead
        loop = f"plain AdamW loop (train() failed: {type(e).__name__}: {str(e)[:100]})"
        model = fresh_model()
        t0 = time.perf_counter()
        plain_epoch(model, batches(0), cfg)
    seconds = time.perf_counter() - t0
    fraction = seen["customers"] / customers
    return {
        "seconds": seconds / fraction,
        "measured_seconds": seconds,
        "extrapolated": fraction < 1,
        "batches": int(seen["batches"]),
        "total_batches": stream.n_batches(),
        "customers": customers,
        "tokens": tokens,
        "padded_tokens": int(seen["padded"] / fraction),
        "data_seconds": seen["data_s"] / fraction,
        "lengths": length_summary(files, p["L"]),
        "params": sum(w.numel() for w in model.parameters()),
        "encoder_params": sum(w.numel() for w in model.encoder.parameters()),
        "loop": loop,
        "warmup_seconds": warmup_s,
    }


def length_summary(files: tuple[Path, ...], max_events: int) -> dict:
    import numpy as np

    lengths = sequence_lengths(files)
    return {"mean": float(lengths.mean()), "p50": float(np.median(lengths)), "p99": float(np.percentile(lengths, 99)),
            "max": int(lengths.max()), "over_L": float((lengths > max_events).mean())}  # fmt: skip


def plain_epoch(model: Any, batches: Any, cfg: Any) -> None:
    """The fallback: one AdamW step per batch, nothing else."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model.train()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        model(batch).loss.backward()
        optimizer.step()


def child_embed(p: dict) -> dict:
    """Embeddings of every scoring-window customer (eval mode, no grad) with a freshly initialised encoder."""
    import torch

    torch.set_num_threads(p["threads"])
    from custseq.config import PretrainConfig
    from custseq.models.pretrain import PretrainModel, embed
    from custseq.sequences.batch import SequenceStream

    vocab, files = scoring_sequences(Path(p["prepared"]))
    customers, tokens = count_tokens(files, p["L"])
    torch.manual_seed(0)
    encoder = PretrainModel(encoder_config(p["L"], p["d"]), PretrainConfig(), vocab).encoder
    stream = SequenceStream(files, vocab, p["L"], EMBED_BATCH, shuffle=False)
    t0 = time.perf_counter()
    table = embed(encoder, stream)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "customers": customers, "tokens": tokens, "rows": table.num_rows}


def child_profile(p: dict) -> dict:
    """Where a pre-training step spends its time: the busiest operators over ``p['batches']`` batches."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(p["threads"])
    from custseq.config import PretrainConfig
    from custseq.models.pretrain import PretrainModel
    from custseq.sequences.batch import SequenceStream

    vocab, files = scoring_sequences(Path(p["prepared"]))
    stream = SequenceStream(files, vocab, p["L"], PRETRAIN_BATCH, shuffle=True, seed=0)
    torch.manual_seed(0)
    model = PretrainModel(encoder_config(p["L"], p["d"]), PretrainConfig(), vocab).train()
    optimizer = torch.optim.AdamW(model.parameters())
    batches = [b for _, b in zip(range(p["batches"] + 3), stream.batches(0), strict=False)]
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for i, batch in enumerate(batches):
        if i == 3:  # warm-up done
            prof = profile(activities=[ProfilerActivity.CPU])
            prof.__enter__()
        t0 = time.perf_counter()
        loss = model(batch).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 3:
            phases["forward"] += t1 - t0
            phases["backward"] += t2 - t1
            phases["optimizer"] += time.perf_counter() - t2
    prof.__exit__(None, None, None)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:8]]
    widths = [b.mask.shape[1] for b in batches[3:]]
    return {"seconds": sum(phases.values()), "phases": phases, "top": top, "widths": widths}


def child_quality(p: dict) -> dict:
    """Pre-train on the training windows, then score the heads and the churn regressions on the scoring window."""
    import torch

    torch.set_num_threads(p["threads"])
    import custseq
    from custseq.config import PretrainConfig, TrainConfig
    from custseq.datasets import cdnow_path
    from custseq.models.pretrain import PretrainModel
    from custseq.models.train import train
    from custseq.sequences.batch import SequenceStream, shard_files

    source = cdnow_path() if p["source"] == "cdnow" else Path(p["source"])
    t0 = time.perf_counter()
    result = custseq.prepare(source, out=Path(p["out"]), as_of=p["as_of"], horizon=p["horizon"])
    prepare_s = time.perf_counter() - t0
    if not result.plan.scoring_labels_observed:
        return {"status": "not available", "reason": f"scoring labels not observed (ends {result.plan.scoring.end})"}
    vocab = result.vocab
    files = tuple(f for w in result.plan.training for f in shard_files(result.window(w).sequences))

    def stream(holdout: str, shuffle: bool) -> SequenceStream:
        return SequenceStream(files, vocab, QUALITY_L, PRETRAIN_BATCH, shuffle=shuffle, seed=0, holdout=holdout)

    train_stream, val_stream = stream("train", True), stream("validation", False)
    cfg = TrainConfig(epochs=p["epochs"], batch_size=PRETRAIN_BATCH, seed=0, device="cpu")
    torch.manual_seed(0)
    model = PretrainModel(encoder_config(QUALITY_L, 64), PretrainConfig(), vocab)
    random_encoder = PretrainModel(encoder_config(QUALITY_L, 64), PretrainConfig(), vocab).encoder
    t0 = time.perf_counter()
    fit = train(
        model,
        lambda epoch, rank, world_size: train_stream.batches(epoch, rank, world_size),
        lambda rank, world_size: val_stream.batches(0, rank, world_size),
        cfg,
        progress=False,
    )
    pretrain_s = time.perf_counter() - t0
    baselines = constant_baselines(train_stream, vocab)
    score_files = tuple(shard_files(result.window(result.plan.scoring).sequences))
    score_stream = SequenceStream(score_files, vocab, QUALITY_L, EMBED_BATCH, shuffle=False)
    heads = head_scores(model, score_stream, baselines, vocab)
    t0 = time.perf_counter()
    churn = churn_aucs(result, {"pre-trained": model.encoder, "random init": random_encoder})
    return {
        "seconds": prepare_s + pretrain_s + time.perf_counter() - t0,
        "prepare_seconds": prepare_s,
        "pretrain_seconds": pretrain_s,
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "best_val_loss": fit.best_val_loss,
        "training_windows": [w.key for w in result.plan.training],
        "scoring_window": f"{result.plan.scoring.key} + {result.plan.scoring.horizon_days} d",
        "training_customers": count_tokens(files, QUALITY_L)[0],
        "token": vocab.layout.token,
        "heads": heads,
        "churn": churn,
    }


def constant_baselines(stream: Any, vocab: Any) -> dict:
    """Constant predictors fitted on the training sequences, per head: field means and majority classes.

    The masked head sees the input tokens (every token but a customer's last); the next head the last token.
    """
    import numpy as np
    import torch

    from custseq.sequences.masking import split_last

    numeric = [f.name for f in vocab.layout.numeric()] + ["log_dt"]
    cats = {f.name: vocab.size(f.name) for f in vocab.layout.categorical()}
    acc = {
        head: {"sum": np.zeros(len(numeric)), "n": 0, "counts": {k: np.zeros(n, np.int64) for k, n in cats.items()}}
        for head in ("masked", "next")
    }
    for batch in stream.batches(0):
        inputs, targets, has_next = split_last(batch)
        views = {
            "masked": (inputs.categorical, inputs.numeric[inputs.mask], inputs.log_dt_prev[inputs.mask], inputs.mask),
            "next": (targets.categorical, targets.numeric[has_next], targets.log_dt_prev[has_next], has_next),
        }
        for head, (categorical, values, log_dt, keep) in views.items():
            a = acc[head]
            a["sum"] += torch.cat([values, log_dt.unsqueeze(-1)], dim=-1).double().sum(0).numpy()
            a["n"] += int(keep.sum())
            for name, ids in categorical.items():
                a["counts"][name] += np.bincount(ids[keep].numpy(), minlength=cats[name])
    out = {}
    for head, a in acc.items():
        majority = {k: int(np.argmax(c[1:]) + 1) for k, c in a["counts"].items()}  # id 0 = no value
        out[head] = {
            "mean": dict(zip(numeric, (a["sum"] / max(a["n"], 1)).tolist(), strict=True)),
            "majority": majority,
        }
    return out


def head_scores(model: Any, stream: Any, baselines: dict, vocab: Any) -> list[dict]:
    """MSE (numeric fields, log Δt) and accuracy (categorical fields) of both heads and their baselines."""
    import torch

    from custseq.sequences.masking import sample_mask, split_last, targets_at

    numeric = [f.name for f in vocab.layout.numeric()] + ["log_dt"]
    cats = [f.name for f in vocab.layout.categorical()]
    zero = {"model": 0.0, "baseline": 0.0, "n": 0}
    sums = {(h, k): dict(zero) for h in ("masked", "next") for k in numeric + cats}
    cfg = model.pretrain_cfg
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for batch in stream.batches():
            inputs, next_targets, has_next = split_last(batch)
            masked = sample_mask(inputs.mask, cfg.mask_rate)
            out = model.encoder(inputs, masked, cfg.mask_style)
            rows, cols = torch.nonzero(masked, as_tuple=True)
            pairs = {
                "masked": (model.masked_head(out.hidden[rows, cols]), targets_at(inputs, rows, cols), None),
                "next": (model.next_head(out.embedding[has_next]), next_targets, has_next),
            }
            for head, (pred, target, keep) in pairs.items():
                base = baselines[head]
                wanted = torch.cat([target.numeric, target.log_dt_prev.unsqueeze(-1)], dim=-1)
                if keep is not None:
                    wanted = wanted[keep]
                got = torch.cat([pred.numeric, pred.log_dt_prev.unsqueeze(-1)], dim=-1)
                for j, name in enumerate(numeric):
                    s = sums[(head, name)]
                    s["model"] += float(((got[:, j] - wanted[:, j]) ** 2).sum())
                    s["baseline"] += float(((base["mean"][name] - wanted[:, j]) ** 2).sum())
                    s["n"] += len(wanted)
                for name in cats:
                    ids = target.categorical[name] if keep is None else target.categorical[name][keep]
                    seen = ids != 0
                    s = sums[(head, name)]
                    s["model"] += int((pred.logits[name].argmax(-1)[seen] == ids[seen]).sum())
                    s["baseline"] += int((ids[seen] == base["majority"][name]).sum())
                    s["n"] += int(seen.sum())
    rows_out = []
    for (head, name), s in sums.items():
        metric = "accuracy" if name in cats else "MSE"
        n = max(s["n"], 1)
        rows_out.append({"head": head, "field": name, "metric": metric, "model": s["model"] / n,
                         "baseline": s["baseline"] / n, "n": s["n"]})  # fmt: skip
    return rows_out


def churn_aucs(result: Any, encoders: dict[str, Any]) -> dict:
    """ROC AUC for churn of logistic regressions trained on the validation window, scored on the scoring window."""
    import numpy as np
    import pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from custseq.models.pretrain import embed
    from custseq.sequences.batch import SequenceStream, shard_files

    def frame(window: Any) -> pd.DataFrame:
        labels = result.labels(window).to_pandas()[["customer_id", "churned"]]
        features = result.features(window).to_pandas().drop(columns=["cutoff"])
        rfm = [c for c in features.columns if c != "customer_id" and pd.api.types.is_numeric_dtype(features[c])]
        df = labels.merge(
            features[["customer_id", *rfm]].rename(columns={c: f"rfm_{c}" for c in rfm}), on="customer_id"
        )
        files = tuple(shard_files(result.window(window).sequences))
        for name, encoder in encoders.items():
            stream = SequenceStream(files, result.vocab, QUALITY_L, EMBED_BATCH, shuffle=False)
            emb = embed(encoder, stream).to_pandas()
            df = df.merge(
                emb.rename(columns=lambda c, n=name: c if c == "customer_id" else f"{n}:{c}"), on="customer_id"
            )
        return df

    train, test = frame(result.plan.validation), frame(result.plan.scoring)
    rfm = [c for c in train.columns if c.startswith("rfm_")]
    sets = {f"embeddings ({name})": [c for c in train.columns if c.startswith(f"{name}:")] for name in encoders}
    sets["RFM features"] = rfm
    sets["embeddings (pre-trained) + RFM"] = sets["embeddings (pre-trained)"] + rfm
    aucs = {}
    for name, cols in sets.items():
        lr = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(max_iter=1000),
        )
        lr.fit(train[cols].astype(float).to_numpy(), train["churned"].to_numpy())
        score = lr.predict_proba(test[cols].astype(float).to_numpy())[:, 1]
        aucs[name] = {"auc": float(roc_auc_score(test["churned"].to_numpy(), score)), "columns": len(cols)}
    return {
        "aucs": aucs,
        "train": {"window": result.plan.validation.key, "n": len(train), "churn": float(np.mean(train["churned"]))},
        "test": {"window": result.plan.scoring.key, "n": len(test), "churn": float(np.mean(test["churned"]))},
    }


CHILD_TASKS = {
    "generate": child_generate,
    "prepare": child_prepare,
    "pretrain": child_pretrain,
    "embed": child_embed,
    "profile": child_profile,
    "quality": child_quality,
}


def run_child(task: str, params: dict) -> None:
    """Entry point of a measurement process: run one task and print its result as one JSON line."""
    result = CHILD_TASKS[task](params)
    report_result(result)


# --------------------------------------------------------------------------- parent side


@dataclass
class Measurement:
    """What one child process reported; ``note`` explains a missing result."""

    seconds: float | None = None
    peak_gib: float | None = None
    cpu_seconds: float | None = None  # the child's own user + system time
    other_cores: float | None = None  # CPU used by other processes during the run, in cores
    note: str = ""
    extra: dict = field(default_factory=dict)


def measure(task: str, params: dict, args: argparse.Namespace) -> Measurement:
    """Run ``task`` in a fresh Python process and collect its result, peak memory and the machine's load."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", task, "--params", json.dumps(params)]
    env = child_env(ROOT)
    if task in ("pretrain", "embed", "profile", "quality"):
        wait_for_quiet(args.quiet_cores, args.max_wait)
    usage0, busy0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_cpu_seconds(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return Measurement(note=f"timeout (> {args.timeout:.0f} s)")
    wall, busy, usage1 = (
        time.perf_counter() - t0,
        busy_cpu_seconds() - busy0,
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    child_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    result, note = read_result(task, proc, note_width=100)
    if result is None:
        return Measurement(note=note)
    return Measurement(
        seconds=result.pop("seconds"),
        peak_gib=result.pop("peak_bytes") / GIB,
        cpu_seconds=child_cpu,
        other_cores=max(busy - child_cpu, 0.0) / wall,
        extra=result,
    )


def generator_fingerprint() -> str:
    """Short hash of the generator source, so a changed generator never reuses a stale file."""
    return hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:10]


def prepared_synthetic(args: argparse.Namespace) -> tuple[Path, int]:
    """Generate and prepare the synthetic log once (cached under ``--data-dir``); its folder and customers."""
    stem = f"synthetic_{args.rows}_seed{args.seed}_{generator_fingerprint()}"
    path = args.data_dir / f"{stem}.parquet"
    if not path.exists():
        tmp = path.with_suffix(".tmp.parquet")
        m = measure("generate", {"path": str(tmp), "rows": args.rows, "seed": args.seed}, args)
        if m.seconds is None:
            raise SystemExit(f"could not generate {args.rows} rows: {m.note}")
        tmp.rename(path)
        print(f"  generated {args.rows:,} rows in {m.seconds:.1f} s -> {path.name}")
    out = args.data_dir / f"{stem}_prepared_L256_90d"
    summary = out / "prepare.json"
    if not summary.exists():
        m = measure("prepare", {"path": str(path), "out": str(out), "horizon": "90d", "max_events": 256}, args)
        if m.seconds is None:
            raise SystemExit(f"could not prepare {path}: {m.note}")
        print(f"  prepared in {m.seconds:.1f} s -> {out.name}")
    windows = json.loads(summary.read_text())["windows"]
    return out, next(w["customers"] for w in windows if w["role"] == "score")


@dataclass
class SpeedRow:
    """Pre-training and embedding of one (threads, L, d_model)."""

    threads: int
    L: int
    d: int
    pretrain: Measurement
    embed: Measurement


def run_speed(args: argparse.Namespace, prepared: Path) -> list[SpeedRow]:
    configs = [(args.threads, L, d) for L in args.lengths for d in args.dims]
    configs += [(t, args.lengths[0], args.dims[0]) for t in args.compare_threads if t != args.threads]
    rows = []
    for threads, L, d in configs:
        params = {"prepared": str(prepared), "L": L, "d": d, "threads": threads, "budget": args.epoch_budget}
        pretrain = measure("pretrain", params, args)
        embed = measure("embed", params, args)
        print(
            f"  threads {threads} L {L:>3} d {d:>3}: pre-train {fmt(pretrain.seconds)} s, embed {fmt(embed.seconds)} s"
        )
        rows.append(SpeedRow(threads, L, d, pretrain, embed))
    return rows


def run_quality(args: argparse.Namespace) -> dict[str, Measurement]:
    out = {}
    for name, (source, as_of, horizon) in DATASETS.items():
        if source != "cdnow" and not Path(source).exists():
            out[name] = Measurement(note=f"not run: {source} not found")
            continue
        folder = args.data_dir / f"quality_{name.lower().replace(' ', '_')}"
        params = {"source": source, "out": str(folder), "as_of": as_of, "horizon": horizon,
                  "epochs": args.epochs, "threads": args.threads}  # fmt: skip
        out[name] = measure("quality", params, args)
        print(f"  {name}: {fmt(out[name].seconds)} s {out[name].note}")
    return out


# --------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def speed_tables(rows: list[SpeedRow]) -> list[str]:
    pre = [
        "| threads | L | d_model | params (encoder) | customers | tokens (padded) | epoch s | customers/s | tokens/s "
        "| data s | CPU s | other load | peak GiB | how |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    emb = [
        "| threads | L | d_model | customers | tokens | s | customers/s | tokens/s | CPU s | other load | peak GiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p, e = r.pretrain, r.embed
        if p.seconds is None:
            pre.append(f"| {r.threads} | {r.L} | {r.d} | | | | {p.note} | | | | | | | |")
        else:
            x = p.extra
            how = (
                "full epoch"
                if not x["extrapolated"]
                else f"extrapolated from {x['batches']} of {x['total_batches']} batches ({x['measured_seconds']:.0f} s)"
            )
            if not x["loop"].startswith("custseq"):
                how += f"; {x['loop']}"
            pre.append(
                f"| {r.threads} | {r.L} | {r.d} | {x['params']:,} ({x['encoder_params']:,}) | {x['customers']:,} "
                f"| {x['tokens']:,} ({x['padded_tokens']:,}) | {p.seconds:.1f} | {x['customers'] / p.seconds:,.0f} "
                f"| {x['tokens'] / p.seconds:,.0f} | {x['data_seconds']:.1f} | {p.cpu_seconds:.0f} "
                f"| {p.other_cores:.2f} | {p.peak_gib:.2f} | {how} |"
            )
        if e.seconds is None:
            emb.append(f"| {r.threads} | {r.L} | {r.d} | | | {e.note} | | | | | |")
        else:
            x = e.extra
            emb.append(
                f"| {r.threads} | {r.L} | {r.d} | {x['customers']:,} | {x['tokens']:,} | {e.seconds:.1f} "
                f"| {x['customers'] / e.seconds:,.0f} | {x['tokens'] / e.seconds:,.0f} | {e.cpu_seconds:.0f} "
                f"| {e.other_cores:.2f} | {e.peak_gib:.2f} |"
            )
    return ["Pre-training, one epoch:", "", *pre, "", "Embedding:", "", *emb]


def warmup_text(rows: list[SpeedRow]) -> str:
    times = [r.pretrain.extra["warmup_seconds"] for r in rows if r.pretrain.seconds is not None]
    return f"{max(times):.1f} s here" if times else "not measured"


def length_line(rows: list[SpeedRow]) -> list[str]:
    """How long the synthetic sequences are: it decides how much L matters."""
    measured = [r for r in rows if r.pretrain.seconds is not None]
    if not measured:
        return []
    x = measured[0].pretrain.extra["lengths"]
    over = ", ".join(
        f"{r.L}: {r.pretrain.extra['lengths']['over_L']:.2%}"
        for r in measured
        if r.d == measured[0].d and r.threads == measured[0].threads
    )
    return [
        f"Sequence lengths (tokens = orders) at the scoring cutoff: mean {x['mean']:.1f}, median {x['p50']:.0f}, "
        f"99th percentile {x['p99']:.0f}, max {x['max']}; customers longer than L: {over}. With length "
        "bucketing, a batch is only as wide as its longest customer, so L mostly decides the cost of the few "
        "long customers.",
        "",
    ]


def profile_lines(m: Measurement | None) -> list[str]:
    if m is None or m.seconds is None:
        return []
    x = m.extra
    phases = ", ".join(f"{k} {v / m.seconds:.0%}" for k, v in x["phases"].items())
    ops = ", ".join(f"`{t['op']}` {t['share']:.0%}" for t in x["top"])
    n = len(x["widths"])
    return [
        f"Where a pre-training step's time goes (L = {x['L']}, d_model = {x['d']}, {x['threads']} threads, "
        f"{n} batches of widths {min(x['widths'])}–{max(x['widths'])}, {1000 * m.seconds / n:.0f} ms a batch, "
        f"other load {m.other_cores:.2f} cores): {phases}; busiest operators by own CPU time: {ops}.",
        "",
    ]


def quality_tables(results: dict[str, Measurement]) -> list[str]:
    lines = []
    for name, m in results.items():
        lines += [f"**{name}**" + (f": {m.note}" if m.seconds is None else ""), ""]
        if m.seconds is None:
            continue
        x = m.extra
        lines += [
            f"Scoring window {x['scoring_window']}; pre-trained on the training window(s) "
            f"{', '.join(x['training_windows'])} ({x['training_customers']:,} customer sequences, tokens = "
            f"{x['token']}s, 90/10 customer split for early stopping), {x['epochs_run']} epochs, best epoch "
            f"{x['best_epoch'] + 1}, {x['pretrain_seconds']:.0f} s; peak {m.peak_gib:.2f} GiB.",
            "",
            "| head | field | metric | model | baseline | improvement | tokens |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for h in x["heads"]:
            if h["metric"] == "MSE":
                change = 1 - h["model"] / h["baseline"] if h["baseline"] else 0.0
                gain = f"{change:.1%} lower MSE" if change >= 0 else f"{-change:.1%} higher MSE (worse)"
                base = "training mean"
            else:
                points = 100 * (h["model"] - h["baseline"])
                gain = f"{points:+.1f} points" + (" (worse)" if points < 0 else "")
                base = "majority class"
            lines.append(
                f"| {h['head']} | {h['field']} | {h['metric']} | {h['model']:.4f} | {h['baseline']:.4f} ({base}) "
                f"| {gain} | {h['n']:,} |"
            )
        c = x["churn"]
        lines += [
            "",
            f"Churn, logistic regression (median impute + missing indicators, standardised, max_iter 1000) trained "
            f"on the validation window {c['train']['window']} ({c['train']['n']:,} customers, churn "
            f"{c['train']['churn']:.1%}), scored on {c['test']['window']} ({c['test']['n']:,} customers, churn "
            f"{c['test']['churn']:.1%}):",
            "",
            "| inputs | columns | ROC AUC |",
            "|---|---:|---:|",
            *(f"| {k} | {v['columns']} | {v['auc']:.3f} |" for k, v in c["aucs"].items()),
            "",
        ]
    return lines


def target_status(rows: list[SpeedRow], threads: int) -> list[str]:
    base = next((r for r in rows if (r.threads, r.L, r.d) == (threads, 64, 64)), None)
    if base is None or base.embed.seconds is None:
        embed = "not measured"
    else:
        rate = base.embed.extra["customers"] / base.embed.seconds
        embed = f"{'met' if rate >= 10_000 else 'NOT met'} ({rate:,.0f} customers/s)"
    if base is None or base.pretrain.seconds is None:
        epoch = "not measured"
    else:
        per_100k = base.pretrain.seconds * 100_000 / base.pretrain.extra["customers"]
        epoch = f"{'met' if per_100k <= 60 else 'NOT met'} ({per_100k:.0f} s per 100k customers)"
    return [
        f"- embed ≥ 10,000 customers/s at L = 64, d_model = 64 ({threads} threads): **{embed}**",
        f"- one pre-training epoch over 100k customers ≤ 60 s at L = 64, d_model = 64: **{epoch}**",
    ]


def render(args: argparse.Namespace, command: str, customers: int, speed: list[SpeedRow], profile: Measurement | None,
           quality: dict[str, Measurement], started: float) -> str:  # fmt: skip
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    loads = [m.other_cores for r in speed for m in (r.pretrain, r.embed) if m.other_cores is not None]
    busiest = f"{max(loads):.2f}" if loads else "–"
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}`  ",
            f"Date: {now}; the whole run took {(time.perf_counter() - started) / 60:.1f} min  ",
            f"Machine: {machine_description(PACKAGES)}; `torch.set_num_threads({args.threads})` in every process "
            "unless a row says otherwise",
            "",
            "CUDA: not measured: no GPU machine was available to this session.",
            "",
            f"Data (speed): `synthetic.write_transactions(path, {args.rows:,}, seed={args.seed})`, prepared with "
            f"`horizon='90d'` and `SequenceConfig(max_events=256)`; the scoring window has {customers:,} customers. "
            "Model: `EncoderConfig(d_model=d, n_heads=4, n_layers=2, d_ff=2d, max_events=L)`, default "
            f"`PretrainConfig()` (masked 15% + 0.3 × next event). Pre-training: batch {PRETRAIN_BATCH}, "
            "`TrainConfig(epochs=1, seed=0, device='cpu')` through `custseq.models.train.train`, timed around "
            "that call (data reading and collation included; *data s* is the part spent producing batches; the "
            f"one-time import of `torch._dynamo` by a process's first optimizer, {warmup_text(speed)}, is paid "
            "before the clock starts). "
            f"Embedding: `custseq.models.pretrain.embed`, batch {EMBED_BATCH}, eval mode, no grad. tokens = Σ "
            "min(length, L); padded = positions actually computed after length bucketing. Every row is its own "
            "process; peak = its maximum resident memory (interpreter, torch and data included); CPU s = its "
            "user + system time; other load = cores other processes kept busy meanwhile (from `/proc/stat`; "
            f"{busiest} at most in this run: above ~0.2 the numbers are slowed by a busy machine).",
            "",
            *length_line(speed),
            *speed_tables(speed),
            "",
            "Targets:",
            "",
            *target_status(speed, args.threads),
            "",
            *profile_lines(profile),
            f"Quality: `EncoderConfig()` (d_model 64, L = {QUALITY_L}), `PretrainConfig()`, "
            f"`TrainConfig(epochs={args.epochs}, seed=0)`, one seed. Head metrics on the scoring window's "
            "customers (masked positions drawn with `torch.manual_seed(0)`; numeric fields are in the "
            "vocabulary's standardised signed-log space, log Δt in log days). The constant baselines are fitted "
            "on the pre-training sequences. *embeddings (random init)* is the same encoder untrained: the "
            "share of the AUC that pre-training earns. One seed and one run: the order of customers in "
            "`prepare`'s shards is not fixed between runs (the content is), which changes the batches and the "
            "masked positions, so expect a few thousandths of AUC and a few percent of head MSE between runs. "
            "CDNOW uses H = 181 d, not 182: from the cutoff 1998-01-01, 182 days end on 1998-07-02, after the "
            "data's last day (1998-06-30), and `prepare` then writes no scoring labels "
            "(`plan.scoring_labels_observed` is False).",
            "",
            *quality_tables(quality),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=720_000, help="synthetic rows (~6.9 a customer)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every measurement")
    parser.add_argument("--compare-threads", type=int, nargs="*", default=[1],
                        help="also time the first (L, d_model) with these thread counts")  # fmt: skip
    parser.add_argument("--epoch-budget", type=float, default=120.0,
                        help="seconds after which a pre-training epoch is stopped and extrapolated")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=10, help="pre-training epochs for the quality part")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / ".data")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a measurement is killed")
    parser.add_argument("--quiet-cores", type=float, default=0.2,
                        help="wait before a measurement until other processes use fewer cores than this")  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=30.0, help="longest wait for a quiet machine, seconds")
    parser.add_argument("--child", choices=list(CHILD_TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--params", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.params)
        return 0

    started = time.perf_counter()
    command = shlex.join([".venv/bin/python", "benchmarks/encoder.py", *(sys.argv[1:] if argv is None else argv)])
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"synthetic data ({args.rows:,} rows)")
    prepared, customers = prepared_synthetic(args)
    if customers < 100_000:
        print(f"  warning: only {customers:,} customers at the scoring cutoff; raise --rows", file=sys.stderr)
    print("speed")
    speed = run_speed(args, prepared)
    L, d = args.lengths[0], args.dims[0]
    profile = measure("profile", {"prepared": str(prepared), "L": L, "d": d, "threads": args.threads,
                                  "batches": 30}, args)  # fmt: skip
    profile.extra.update(L=L, d=d, threads=args.threads)
    print("quality")
    quality = {} if args.skip_quality else run_quality(args)
    section = render(args, command, customers, speed, profile, quality, started)
    write_section(args.out, section, SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
