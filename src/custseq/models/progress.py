"""A training run's progress: a bar over all its epochs and one over the current epoch, with the time left.

They are drawn on the run's :class:`~custseq.progress.RunProgress` (the pipeline's, or the training loop's own
when it runs alone). The run's time left is an upper bound, since early stopping may end it sooner. Off a
terminal each epoch ends with a plain line: its time, its losses and the time left.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from custseq.progress import Bar, RunProgress, duration_text


@contextlib.contextmanager
def training_display(progress: bool | RunProgress, main: bool) -> Iterator[RunProgress]:
    """The display a training run draws on: ``progress`` itself when the caller shows one, else one of its own on
    stderr (shown when ``progress`` is True); nothing shows on processes other than rank 0 (``main`` False)."""
    if isinstance(progress, RunProgress) and main:
        yield progress
        return
    with RunProgress(enabled=bool(progress) and main) as shown:
        yield shown


class TrainingProgress:
    """The bars of one training run: the run (``description``, epoch k/N) and, below it, the current epoch.

    Parameters
    ----------
    shown : RunProgress
        The display to draw on.
    description : str
        What is trained, e.g. ``pre-training``.
    epochs : int
        At most this many epochs.
    first_epoch : int
        0-based epoch the run starts at (after a resume, the epochs already done).
    batches : int
        Batches per epoch.
    """

    def __init__(self, shown: RunProgress, description: str, epochs: int, first_epoch: int, batches: int) -> None:
        self.shown, self.description, self.epochs, self.batches = shown, description, epochs, batches
        self.run = shown.bar(
            description, epochs * batches, completed=first_epoch * batches, unit="batches",
            info=f"epoch {first_epoch + 1}/{epochs}", bound=True, every_s=0,
        )  # fmt: skip

    def start_epoch(self, epoch: int) -> EpochProgress:
        """The bar of ``epoch`` (0-based), below the run's; its clock starts now."""
        label = f"{self.description} epoch {epoch + 1}/{self.epochs}"
        bar = self.shown.bar("  this epoch", self.batches, unit="batches", plain_label=label)
        if self.run.animated:
            self.run.advance(0, info=f"epoch {epoch + 1}/{self.epochs}")
        return EpochProgress(self, bar, epoch, time.perf_counter())

    def close(self, stopped_early: bool, patience: int) -> None:
        """Take the bars off; off a terminal, say why the run stopped before its last epoch."""
        if stopped_early:
            self.run.milestone(f"no improvement for {patience} epochs, stopped early", estimate=False)
        self.run.close()


@dataclass
class EpochProgress:
    """One epoch's bar on a :class:`TrainingProgress`, and the time the epoch started.

    Attributes
    ----------
    training : TrainingProgress
        The run's bars.
    bar : Bar
        This epoch's.
    epoch : int
        0-based.
    started : float
        ``time.perf_counter()`` when the epoch started.
    """

    training: TrainingProgress
    bar: Bar
    epoch: int
    started: float

    def show(self, loss_sum: torch.Tensor, items: int, stepped: bool) -> None:
        """Advance by one batch; after an optimizer step, in a live display, also show the mean loss and items/s."""
        info = None
        if stepped and self.bar.animated:  # .item() syncs the GPU: once per optimizer step, only while drawn live
            loss = loss_sum.item() / max(items, 1)
            info = f"loss {loss:.4f} · {items / (time.perf_counter() - self.started):,.0f}/s"
        self.bar.advance(info=info)
        self.training.run.advance()

    def finish(self, entry: dict[str, Any]) -> None:
        """Take the epoch's bar off; off a terminal, say what the epoch did (its history ``entry``) and the time
        left."""
        self.bar.close()
        val = "" if entry["val_loss"] is None else f", validation loss {entry['val_loss']:.4g}"
        self.training.run.milestone(
            f"epoch {self.epoch + 1}/{self.training.epochs} in {duration_text(entry['seconds'])}, "
            f"loss {entry['train_loss']:.4g}{val}"
        )
