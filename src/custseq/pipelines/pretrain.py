"""Pretrain: prepare the data, pre-train the encoder on its training windows (one process or torchrun), save it;
and embed: customer embeddings of new data with a saved encoder."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast

import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import ModelConfig, RunConfig, TrainConfig, config_to_dict
from custseq.errors import ArtifactError, TrainingError
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.io.tables import Tables
from custseq.models.artifacts import configs_from_json, load_model, read_manifest
from custseq.models.distributed import worker_environment
from custseq.models.encoder import SequenceEncoder
from custseq.models.pretrain import (
    CONFIG_CLASSES,
    MODEL_TYPE,
    PretrainRun,
    build_pretrain_model,
    embed,
    pretrain_prepared,
)
from custseq.pipelines.prepare import ScoringSequences, prepare, prepare_scoring_sequences
from custseq.progress import RunProgress, Stage
from custseq.sequences.batch import SequenceStream, shard_files

# Pre-training for its own sake (`custseq pretrain`) runs longer than predict's laptop-sized pre-training step.
PRETRAIN_DEFAULTS = RunConfig(model=ModelConfig(pretrain_training=TrainConfig()))
WORKER_CONFIG = "models.json"  # the configs a distributed run hands to its torchrun workers
log = logging.getLogger(__name__)


def work_dir_of(model_dir: Path | str) -> Path:
    """Where ``pretrain`` keeps its work files for a model directory: prepared data, checkpoints, the log."""
    return Path(f"{model_dir}.work")


def pretrain(
    tables: Tables,
    config: RunConfig,
    out: Path | str,
    *,
    nproc: int = 1,
    resume: bool = False,
    progress: bool = False,
    on_stage: Stage | None = None,
) -> PretrainRun:
    """Prepare the data and pre-train an encoder on its training windows; save the model to ``out``.

    The encoder, objectives and training loop are ``config.model.encoder``, ``.pretrain`` and
    ``.pretrain_training``. Work files go to ``<out>.work`` (:func:`work_dir_of`); ``resume`` continues from
    its last checkpoint. With ``nproc`` > 1 the training runs on that many processes under ``torchrun``
    (distributed data parallel; gloo on CPU, NCCL on GPU), and only rank 0 writes. ``progress`` shows each
    stage with its duration and the training bars with their time left on stderr
    (:class:`~custseq.progress.RunProgress`); ``on_stage`` hears each stage start, shown or not.
    """
    work = work_dir_of(out)
    with RunProgress(progress, on_stage=on_stage) as shown:
        prepare(tables, config, work / "prepared", progress=shown.stage)
        m = config.model
        configs = {"encoder": m.encoder, "pretrain": m.pretrain, "train": m.pretrain_training}
        if nproc > 1:
            shown.stage(f"pre-training the sequence encoder on {nproc} processes (torchrun)")
            return _pretrain_distributed(work, Path(out), configs, nproc, resume)
        shown.stage("pre-training the sequence encoder")
        return pretrain_prepared(
            PreparedWindows.read(work / "prepared"), Path(out), encoder=m.encoder, pretrain=m.pretrain,
            training=m.pretrain_training, work_dir=work / "train", resume=resume, progress=shown,
        )  # fmt: skip


def _pretrain_distributed(work: Path, out: Path, configs: dict[str, object], nproc: int, resume: bool) -> PretrainRun:
    (work / WORKER_CONFIG).write_text(json.dumps({k: config_to_dict(v) for k, v in configs.items()}))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "custseq.pipelines.pretrain_worker", str(work), str(out), *(["--resume"] if resume else []),
    ]  # fmt: skip
    log.info("pre-training on %d processes (torchrun)", nproc)
    done = subprocess.run(command, check=False, env=worker_environment(nproc))
    if done.returncode != 0:
        raise TrainingError(f"distributed pre-training failed (exit code {done.returncode}); see the output above")
    return PretrainRun(out, read_manifest(out), None)


def run_worker(work: Path, out: Path, resume: bool) -> None:
    """One ``torchrun`` process of a distributed :func:`pretrain` (see :mod:`custseq.pipelines.pretrain_worker`)."""
    spec = json.loads((work / WORKER_CONFIG).read_text())
    configs = configs_from_json(spec, CONFIG_CLASSES)
    pretrain_prepared(
        PreparedWindows.read(work / "prepared"), out, encoder=configs["encoder"], pretrain=configs["pretrain"],
        training=configs["train"], work_dir=work / "train", resume=resume, progress=False,
    )  # fmt: skip


def embed_customers(
    model_dir: Path | str, tables: Tables, config: RunConfig, out: Path | str, *, batch_size: int = 1024
) -> tuple[pa.Table, ScoringSequences]:
    """Embed every customer of new data as of ``config.window.as_of`` with a pre-trained model; write ``out``.

    The data are encoded with the model's own vocabulary; values it has not seen map to the unknown id
    and are counted in the returned :class:`ScoringSequences`.
    """
    model, _, vocab, _ = load_model(Path(model_dir), build_pretrain_model, expected_type=MODEL_TYPE)
    if vocab is None:
        raise ArtifactError(f"{model_dir} has no vocab.json; a pre-trained custseq model needs one")
    encoder = cast(SequenceEncoder, model.encoder)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="custseq-embed-") as tmp:
        scoring = prepare_scoring_sequences(tables, config, tmp, vocab=vocab)
        files = tuple(shard_files(WindowFolder(Path(tmp)).sequences))
        stream = SequenceStream(files, vocab, encoder.cfg.max_events, batch_size, shuffle=False)
        table = embed(encoder, stream)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return table, dataclasses.replace(scoring, folder=None)  # the work folder is gone
