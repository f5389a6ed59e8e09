"""Predict's training steps on several processes (``custseq predict --nproc N``): the launcher and a torchrun process.

The parent writes a job file (:class:`TrainingJob`: which step, the prepared windows, the model settings, the
folders) and runs ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
custseq.pipelines.finetune_worker JOB``. Every process runs the one training loop
(:func:`custseq.models.train.train`, distributed data parallel: gloo on CPU, NCCL on GPU) on its own share of
the training batches; rank 0 writes the result, which the parent reads back. On one machine the launcher uses
torchrun's standalone rendezvous, as ``custseq pretrain --nproc`` does; on several (``--nnodes``), a c10d
rendezvous that ``custseq join`` brings the other machines to (:mod:`custseq.pipelines.nodes`).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from custseq.config import ModelConfig, config_from_dict, config_to_dict
from custseq.errors import TrainingError
from custseq.io.prepared import PreparedWindows
from custseq.models.artifacts import read_manifest
from custseq.models.distributed import exit_finished_worker, shutdown_distributed, worker_environment
from custseq.models.finetune import FitResult, finetune_prepared, finetune_rank
from custseq.models.pretrain import PretrainRun, pretrain_prepared
from custseq.pipelines.nodes import JobList, Nodes

TRAINED_FILE = "trained.safetensors"  # in the fine-tuning's work folder: rank 0's best weights and training history
log = logging.getLogger(__name__)
# Runs `main([JOB.json])` on N processes and returns when all have ended; raises TrainingError if one failed.
# launch_torchrun here; custseq.spark.distributor runs the same entry point through Spark's TorchDistributor.
Launcher = Callable[[Path, int], None]


@dataclass(frozen=True)
class TrainingJob:
    """What every process of one distributed training step needs: all of it paths and settings, in JSON."""

    step: str  # "pretrain" or "finetune"
    prepared: Path  # the prepare output
    model: ModelConfig
    work_dir: Path  # checkpoints and the training log
    out: Path  # pretrain: the model folder; finetune: the weights file (TRAINED_FILE)
    resume: bool = False
    encoder_dir: Path | None = None  # finetune: the pre-trained encoder to start from

    def write(self, path: Path) -> None:
        record = {
            "step": self.step, "prepared": str(self.prepared), "model": config_to_dict(self.model),
            "work_dir": str(self.work_dir), "out": str(self.out), "resume": self.resume,
            "encoder_dir": None if self.encoder_dir is None else str(self.encoder_dir),
        }  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))

    @classmethod
    def read(cls, path: Path) -> TrainingJob:
        record = json.loads(path.read_text())
        model = cast(ModelConfig, config_from_dict(ModelConfig, record["model"], where="the training job"))
        encoder_dir = None if record["encoder_dir"] is None else Path(record["encoder_dir"])
        return cls(
            record["step"], Path(record["prepared"]), model, Path(record["work_dir"]), Path(record["out"]),
            bool(record["resume"]), encoder_dir,
        )  # fmt: skip


def pretrain_distributed(
    layout: PreparedWindows,
    cfg: ModelConfig,
    out: Path,
    work_dir: Path,
    *,
    nproc: int,
    resume: bool,
    launch: Launcher | None = None,
) -> PretrainRun:
    """:func:`custseq.models.pretrain.pretrain_prepared` on ``nproc`` processes; the model rank 0 saved to ``out``.

    ``launch`` starts the processes (default :func:`launch_torchrun`).
    """
    job = TrainingJob("pretrain", layout.root, cfg, work_dir, out, resume)
    _launch(job, work_dir / "job.json", nproc, launch or launch_torchrun)
    return PretrainRun(out, read_manifest(out), None)


def finetune_distributed(
    layout: PreparedWindows,
    cfg: ModelConfig,
    work_dir: Path,
    *,
    nproc: int,
    resume: bool,
    encoder_dir: Path | None,
    launch: Launcher | None = None,
) -> FitResult:
    """:func:`custseq.models.finetune.finetune_prepared` with its training loop on ``nproc`` processes.

    Rank 0's best weights are read back here, then calibrated and measured on the validation customers as in a
    one-process run. ``launch`` starts the processes (default :func:`launch_torchrun`).
    """
    trained = work_dir / TRAINED_FILE
    trained.unlink(missing_ok=True)  # a stopped run's weights must not pass for this run's
    job = TrainingJob("finetune", layout.root, cfg, work_dir, trained, resume, encoder_dir)
    _launch(job, work_dir / "job.json", nproc, launch or launch_torchrun)
    return finetune_prepared(layout, cfg, encoder_dir=encoder_dir, trained=trained)


def _launch(job: TrainingJob, path: Path, nproc: int, launch: Launcher) -> None:
    job.write(path)
    log.info("%s on %d processes", job.step, nproc)
    launch(path, nproc)


def launch_torchrun(job: Path, nproc: int, nodes: Nodes | None = None, rdzv_id: str = "") -> None:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N -m custseq.pipelines.finetune_worker JOB``;
    with several ``nodes``, this machine's N processes at their rendezvous (``rdzv_id``) instead.

    Raises
    ------
    TrainingError
        If a process failed (torchrun's exit code is not 0).
    """
    options = (nodes or Nodes()).torchrun_options(nproc, rdzv_id)
    command = [
        sys.executable, "-m", "torch.distributed.run", *options, "-m", "custseq.pipelines.finetune_worker", str(job),
    ]  # fmt: skip
    done = subprocess.run(command, check=False, env=worker_environment(nproc))
    if done.returncode != 0:
        raise TrainingError(f"distributed training failed (exit code {done.returncode}); see the output above")


def launcher_on(nodes: Nodes, jobs: JobList) -> Launcher:
    """A launcher that announces each job to the joining machines (``custseq join``), then starts this
    machine's processes at the rendezvous."""

    def launch(job: Path, nproc: int) -> None:
        launch_torchrun(job, nproc, nodes, jobs.announce(job, TrainingJob.read(job).step))

    return launch


def run_job(job: TrainingJob) -> None:
    """One ``torchrun`` process of a distributed training step."""
    layout = PreparedWindows.read(job.prepared)
    m = job.model
    if job.step == "pretrain":
        pretrain_prepared(
            layout, job.out, encoder=m.encoder, pretrain=m.pretrain, training=m.pretrain_training,
            work_dir=job.work_dir, resume=job.resume, progress=False,
        )  # fmt: skip
    else:
        finetune_rank(layout, m, job.out, encoder_dir=job.encoder_dir, work_dir=job.work_dir, resume=job.resume)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m custseq.pipelines.finetune_worker JOB.json")
    run_job(TrainingJob.read(Path(argv[0])))
    shutdown_distributed()  # only on success: a failed rank exits at once and torchrun stops the others


if __name__ == "__main__":
    main(sys.argv[1:])
    exit_finished_worker()
