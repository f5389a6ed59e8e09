"""Early stopping: patience on the monitored loss, keeping a copy of the best weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class EarlyStopping:
    """Patience on the monitored loss; keeps a CPU copy of the best weights.

    Parameters
    ----------
    patience : int
        Epochs without improvement after which :attr:`stopped` becomes True.
    min_delta : float
        How far below the best loss a loss must fall to count as an improvement.

    Attributes
    ----------
    best_loss : float
        The lowest monitored loss so far (inf before the first finite one).
    best_epoch : int
        Its 0-based epoch (-1 before the first finite loss).
    bad_epochs : int
        Epochs since the last improvement.
    stopped : bool
        Whether the patience has run out.
    best_state : dict of str to torch.Tensor or None
        The model's state dict at ``best_epoch``, on the CPU.
    """

    patience: int
    min_delta: float
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    best_state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, loss: float, model: torch.nn.Module) -> None:
        """Record the monitored ``loss`` of ``epoch``, copying ``model``'s weights when it improves."""
        if loss < self.best_loss - self.min_delta:  # NaN never improves
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = {k: w.detach().to("cpu", copy=True) for k, w in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        self.stopped = self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The state to checkpoint, under the checkpoint's key names."""
        return {
            "best_loss": self.best_loss, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped, "best_state": self.best_state,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state written by :meth:`state_dict` (or a checkpoint holding one)."""
        self.best_loss, self.best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        self.bad_epochs, self.stopped = int(state["bad_epochs"]), bool(state["stopped_early"])
        self.best_state = state["best_state"]
