"""The training history: one entry per epoch, and the JSON-lines log file that keeps it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

LOG_FILE = "train_log.jsonl"


def history_entry(
    epoch: int, t: dict[str, float], v: dict[str, float] | None, lr: float, seconds: float, train_seconds: float
) -> dict[str, Any]:
    """One epoch's entry of :attr:`~custseq.models.train.TrainResult.history`, from its summed losses and metrics.

    Parameters
    ----------
    epoch : int
        0-based epoch.
    t, v : dict of str to float
        Training and validation sums over all ranks: ``loss`` and ``items``, ``metric:<m>`` item-weighted,
        and for training ``grad_norm`` and ``steps``; ``v`` is None without validation.
    lr : float
        The learning rate of the epoch's last optimizer step.
    seconds, train_seconds : float
        Wall time of the whole epoch and of its training part.

    Returns
    -------
    dict
        ``epoch``, ``train_loss``, ``val_loss``, ``lr``, ``grad_norm``, ``seconds``, ``items_per_s`` and
        ``train_<m>`` / ``val_<m>`` for every metric, as item-weighted means (NaN where nothing was counted).
    """
    entry: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": _ratio(t["loss"], t["items"]),
        "val_loss": _ratio(v["loss"], v["items"]) if v is not None else None,
        "lr": lr,
        "grad_norm": _ratio(t["grad_norm"], t["steps"]),
        "seconds": seconds,
        "items_per_s": t["items"] / train_seconds if train_seconds > 0 else math.nan,
    }
    for prefix, sums in (("train", t), ("val", v or {})):
        for key, value in sums.items():
            if key.startswith("metric:"):
                entry[f"{prefix}_{key.removeprefix('metric:')}"] = _ratio(value, sums["items"])
    return entry


def write_log(path: Path, history: list[dict]) -> None:
    """Write ``history`` to ``path`` as JSON lines, replacing the file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(_json_line(entry) for entry in history))
    os.replace(tmp, path)


def append_log(path: Path, entry: dict[str, Any]) -> None:
    """Add one epoch's ``entry`` to the JSON-lines log at ``path``."""
    with path.open("a") as f:
        f.write(_json_line(entry))


def _json_line(entry: dict[str, Any]) -> str:
    """One strict-JSON line: non-finite numbers become null."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in entry.items()}
    return json.dumps(clean) + "\n"


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan
