"""Entry point of one ``torchrun`` process of a distributed pre-training (``custseq pretrain --nproc N``).

Usage (launched by :func:`custseq.pipelines.pretrain.pretrain`): ``python -m custseq.pipelines.pretrain_worker WORK OUT
[--resume]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from custseq.models.distributed import exit_finished_worker, shutdown_distributed
from custseq.pipelines.pretrain import run_worker


def main(argv: list[str]) -> None:
    args = [a for a in argv if a != "--resume"]
    if len(args) != 2:
        raise SystemExit("usage: python -m custseq.pipelines.pretrain_worker WORK OUT [--resume]")
    run_worker(Path(args[0]), Path(args[1]), resume="--resume" in argv)
    shutdown_distributed()  # only on success: a failed rank exits at once and torchrun stops the others


if __name__ == "__main__":
    main(sys.argv[1:])
    exit_finished_worker()
