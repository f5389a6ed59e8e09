"""One rank of the 2-process gloo run in test_train.py: ``torchrun ... ddp_worker.py OUT RESULTS``.

Each rank trains the same tiny linear regression on its shard, with out_dir OUT/rank<r> (so the test can
see that rank 1 writes nothing), and saves its final weights and history to RESULTS/rank<r>.pt.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from custseq.config import TrainConfig
from custseq.models.distributed import is_main_process, shard_indices, shutdown_distributed
from custseq.models.train import train

TRUE_W = torch.tensor([[1.5, -2.0, 0.5]])
N, BATCH = 64, 8


@dataclass
class Batch:
    x: torch.Tensor  # (B, 3)
    y: torch.Tensor  # (B,)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.x.to(device), self.y.to(device))

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Output:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class Regression(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()

    def forward(self, batch: Batch) -> Output:
        pred = self.linear(batch.x).squeeze(-1)  # (B,)
        return Output(torch.nn.functional.mse_loss(pred, batch.y), {"mae": (pred - batch.y).abs().mean()})


def main(out: Path, results: Path) -> None:
    x = torch.randn(N, 3, generator=torch.Generator().manual_seed(0))
    y = (x @ TRUE_W.T).squeeze(-1) + 0.3
    cfg = TrainConfig(
        epochs=8, batch_size=BATCH, learning_rate=0.3, grad_accumulation=3, seed=3, device="cpu", patience=10
    )

    def train_batches(epoch: int, rank: int, world_size: int) -> list[Batch]:
        idx = torch.from_numpy(shard_indices(N, epoch, cfg.seed, rank, world_size))
        return [Batch(x[idx[i : i + BATCH]], y[idx[i : i + BATCH]]) for i in range(0, len(idx), BATCH)]

    def val_batches(rank: int, world_size: int) -> list[Batch]:
        idx = torch.from_numpy(shard_indices(N, 0, 0, rank, world_size))
        return [Batch(x[idx], y[idx])]

    model = Regression()
    rank = int(os.environ["RANK"])
    result = train(model, train_batches, val_batches, cfg, out_dir=out / f"rank{rank}", progress=False)
    assert dist.is_initialized() and dist.get_world_size() == 2 and is_main_process() == (rank == 0)
    torch.save(
        {
            "state": model.state_dict(),
            "train_loss": torch.tensor([h["train_loss"] for h in result.history], dtype=torch.float64),
            "val_loss": torch.tensor([h["val_loss"] for h in result.history], dtype=torch.float64),
            "best_epoch": result.best_epoch,
        },
        results / f"rank{rank}.pt",
    )
    shutdown_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
