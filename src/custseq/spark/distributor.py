"""Fine-tuning on a Spark cluster through ``pyspark.ml.torch.distributor.TorchDistributor``.

The processes run the entry point of ``custseq predict --nproc`` (:func:`custseq.pipelines.finetune_worker.main`
on a job file): TorchDistributor starts them under ``torchrun`` and sets ``MASTER_ADDR``, ``MASTER_PORT``,
``RANK`` and ``WORLD_SIZE``, which :func:`custseq.models.distributed.init_distributed` reads to join the process
group (gloo on CPU, NCCL on GPU). Rank 0 writes its best weights to the work folder; this process reads them
back, then calibrates and measures the model as a one-process run does.

With ``local_mode`` the processes run on the driver; without it each runs in a Spark barrier task on an executor,
so the prepared folder, the work folder and the encoder must be at the same path everywhere (DBFS, a mounted
volume) and custseq installed on every executor. Nothing here imports pyspark at import time (the ``[spark]``
extra).
"""

from __future__ import annotations

from pathlib import Path

from custseq.config import ModelConfig
from custseq.errors import TrainingError
from custseq.io.prepared import PreparedWindows
from custseq.models.finetune import FitResult
from custseq.pipelines.finetune_worker import Launcher, finetune_distributed, main


def finetune_with_distributor(
    prepared: PreparedWindows | Path | str,
    cfg: ModelConfig,
    work_dir: Path | str,
    *,
    num_processes: int = 2,
    local_mode: bool = True,
    use_gpu: bool = False,
    encoder_dir: Path | None = None,
    resume: bool = False,
) -> FitResult:
    """Fine-tune on the prepared windows with the training loop on ``num_processes`` TorchDistributor processes.

    Parameters
    ----------
    prepared : PreparedWindows or path
        The output of ``custseq prepare`` (or its folder).
    cfg : ModelConfig
        The model settings (``finetune_training.device`` "auto" takes a GPU when the process sees one).
    work_dir : path
        Checkpoints, the training log and rank 0's weights (shared by every process).
    num_processes : int
        Processes in all (TorchDistributor's ``num_processes``).
    local_mode : bool
        Run them on the driver (True) or in Spark tasks on the executors.
    use_gpu : bool
        Give each process a GPU (Spark's GPU resources must be configured).
    encoder_dir : path, optional
        A pre-trained encoder to start from.
    resume : bool
        Continue from the checkpoint in ``work_dir``.

    Returns
    -------
    FitResult
        The calibrated model and its validation metrics, as :func:`custseq.models.finetune.finetune_prepared`.

    Raises
    ------
    TrainingError
        If ``num_processes`` is below 1 or a process failed (TorchDistributor's message says how).
    """
    if num_processes < 1:
        raise TrainingError(f"num_processes must be at least 1, got {num_processes}")
    layout = prepared if isinstance(prepared, PreparedWindows) else PreparedWindows.read(Path(prepared))
    work = Path(work_dir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    launch = distributor_launcher(local_mode=local_mode, use_gpu=use_gpu)
    return finetune_distributed(
        layout, cfg, work, nproc=num_processes, resume=resume, encoder_dir=encoder_dir, launch=launch
    )


def distributor_launcher(*, local_mode: bool, use_gpu: bool) -> Launcher:
    """A :data:`~custseq.pipelines.finetune_worker.Launcher` that runs the worker's ``main`` through
    TorchDistributor (on the active SparkSession)."""

    def launch(job: Path, nproc: int) -> None:
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(num_processes=nproc, local_mode=local_mode, use_gpu=use_gpu)
        try:
            distributor.run(main, [str(job)])
        except RuntimeError as e:  # TorchDistributor reports a failed process with its output's tail
            raise TrainingError(f"training through TorchDistributor failed: {e}") from None

    return launch
