"""Training on several machines: the head's list of training jobs, and the machines that join them.

``custseq predict --nproc P --nnodes N --rendezvous HOST:PORT`` (the head) prepares the data and, for each
training step, announces the step's job file in ``<work>/jobs.jsonl`` before it starts its own P processes at
the rendezvous; ``custseq join OUT --nproc P --nnodes N --rendezvous HOST:PORT`` on each other machine follows
that list and starts its P processes for every job, until the head writes that training is over. torchrun's
c10d rendezvous (at HOST:PORT, the head) makes them one group of N × P ranks.

The work folder must be on a file system every machine sees at the same path: the processes read the prepared
shards from it, and rank 0, on whichever machine the rendezvous puts it, writes the step's result there.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custseq.errors import ConfigError, TrainingError

JOBS_FILE = "jobs.jsonl"  # in the head's work folder: a header line, then one line per job, then the end
POLL_SECONDS = 1.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Nodes:
    """The machines a training step runs on: this one alone, or ``count`` joined at a c10d rendezvous."""

    count: int = 1
    rendezvous: str | None = None  # HOST:PORT where the head's torchrun hosts the rendezvous (count > 1)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"nnodes must be at least 1 (machines for the training steps), got {self.count}")
        if self.count > 1 and not _is_endpoint(self.rendezvous):
            raise ConfigError(
                f"training on {self.count} machines needs --rendezvous HOST:PORT (the head machine's address and a "
                f"free port every machine can reach), got {repr(self.rendezvous) if self.rendezvous else 'none'}"
            )

    @property
    def several(self) -> bool:
        return self.count > 1

    def torchrun_options(self, nproc: int, run_id: str) -> list[str]:
        """torchrun's options for ``nproc`` processes on this machine: standalone, or at the rendezvous."""
        if not self.several:
            return ["--standalone", f"--nproc_per_node={nproc}"]
        return [
            f"--nnodes={self.count}", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d",
            f"--rdzv_endpoint={self.rendezvous}", f"--rdzv_id={run_id}",
        ]  # fmt: skip


def _is_endpoint(text: str | None) -> bool:
    host, _, port = (text or "").rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


class JobList:
    """The head's announcements (``jobs.jsonl``): ``{"run": ID}``, then ``{"job": PATH, "rdzv_id": ID}`` per
    training step in order, then ``{"end": true}`` (also after a failed step, so that joiners stop)."""

    def __init__(self, work_folder: Path) -> None:
        self.path = work_folder / JOBS_FILE
        self.run = uuid.uuid4().hex[:12]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write([{"run": self.run}], mode="w")

    def announce(self, job: Path, step: str) -> str:
        """Announce ``job`` to the joining machines; returns its rendezvous id."""
        rdzv_id = f"custseq-{self.run}-{step}"
        self._write([{"job": str(job.absolute()), "rdzv_id": rdzv_id}], mode="a")
        return rdzv_id

    def end(self) -> None:
        self._write([{"end": True}], mode="a")

    def _write(self, records: list[dict[str, Any]], mode: str) -> None:
        with self.path.open(mode) as f:
            f.writelines(json.dumps(r) + "\n" for r in records)


def read_job_list(path: Path) -> list[dict[str, Any]] | None:
    """The list's whole lines (a line being written is left for the next read); None without the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    entries = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        entries.append(json.loads(line))
    return entries


# Starts this machine's processes for one announced job and returns when they have ended.
JobRunner = Callable[[Path, str], None]


def join(
    work_folder: Path,
    run_job: JobRunner,
    *,
    wait_seconds: float | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> int:
    """Follow the head's job list in ``work_folder``: run every job it announces, in order, until its end.

    A list that has already ended when this starts is an earlier run's: it waits for the head to start a new
    one. Returns the number of jobs run. The head removes its work folder once its run is whole: a folder that
    disappears after a job ends the list too.

    Raises
    ------
    TrainingError
        If no run was announced within ``wait_seconds`` (None: wait as long as it takes), or the head started
        another run while this one was followed.
    """
    path = work_folder / JOBS_FILE
    earlier = _ended_run(read_job_list(path))
    started, run, done = time.monotonic(), None, 0
    while True:
        entries = read_job_list(path)
        if entries is None and done > 0:
            return done
        if not entries or entries[0].get("run") == earlier:  # nothing announced yet
            if wait_seconds is not None and time.monotonic() - started >= wait_seconds:
                raise TrainingError(f"no training run was announced in {path} within {wait_seconds:g} s")
            time.sleep(poll_seconds)
            continue
        if run is None:
            run = entries[0]["run"]
            log.info("following run %s of %s", run, path)
        elif entries[0]["run"] != run:
            raise TrainingError(f"the head started another run in {work_folder} while this machine followed one")
        for entry in entries[1 + done :]:
            if entry.get("end"):
                return done
            run_job(Path(entry["job"]), entry["rdzv_id"])
            done += 1
        time.sleep(poll_seconds)


def _ended_run(entries: list[dict[str, Any]] | None) -> str | None:
    """The run id of a list that has ended, or None."""
    if entries and any(e.get("end") for e in entries[1:]):
        return str(entries[0].get("run"))
    return None
