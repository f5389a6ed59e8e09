"""The transient Rich progress bar of a training run: one task per epoch, with its loss and throughput."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


def progress_bar(enabled: bool) -> Progress:
    """A transient progress bar on stderr (epoch, batches, loss, items/s); it shows nothing unless ``enabled``."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[speed]:,.0f} items/s"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


@dataclass
class EpochProgress:
    """One epoch's task on a :func:`progress_bar`, and the time the epoch started.

    Attributes
    ----------
    bar : rich.progress.Progress
        The run's progress bar.
    task : rich.progress.TaskID
        This epoch's task on it.
    started : float
        ``time.perf_counter()`` when the epoch started.
    """

    bar: Progress
    task: TaskID
    started: float

    @classmethod
    def start(cls, bar: Progress, label: str, batches: int) -> EpochProgress:
        """Add a task of ``batches`` steps labelled ``label`` to ``bar``, and start the epoch's clock."""
        task = bar.add_task(label, total=batches, loss=math.nan, speed=0.0)
        return cls(bar, task, time.perf_counter())

    def show(self, loss_sum: torch.Tensor, items: int, stepped: bool) -> None:
        """Advance by one batch; after an optimizer step, also show the mean loss and items/s so far."""
        if self.bar.disable:
            return
        if stepped:  # .item() syncs the GPU: once per optimizer step, only while the bar shows
            loss = loss_sum.item() / max(items, 1)
            self.bar.update(self.task, advance=1, loss=loss, speed=items / (time.perf_counter() - self.started))
        else:
            self.bar.update(self.task, advance=1)

    def finish(self) -> None:
        """Remove the epoch's task from the bar (the bar is transient: finished epochs go to the log)."""
        self.bar.remove_task(self.task)
