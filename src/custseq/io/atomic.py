"""Outputs that are whole or absent, one writer per output folder, and work folders that do not outlive their run.

A command that writes an output folder (``predict``, ``score``, ``evaluate``, ``plan``) does so through
:func:`staged_output`::

    with staged_output(out, command="predict", inputs=fingerprint(...)) as staging:
        RunFolder(staging).write_predictions(...)  # every file goes to <out>.tmp-<pid>, beside out

On entry it takes ``<out>.lock`` (a second run into the same folder is refused while the first holds it), puts
back or removes what a killed run left beside ``out``, and creates the staging folder. On a normal exit it
writes ``run.json`` (:class:`~custseq.io.run_files.RunRecord`, the completeness marker) last and swaps the
staging folder into place; on an exception, Ctrl-C or SIGTERM (see :func:`terminate_as_exception`) it removes
the staging folder and leaves ``out`` as it was. Readers of a folder (``report``, ``plan``, ``score``) call
:func:`require_complete`, which refuses a folder without ``run.json``.

The swap is one ``renameat2(RENAME_EXCHANGE)`` on Linux. Elsewhere it is two renames (``out`` aside to
``<out>.old-<pid>``, the staging folder to ``out``); a kill between them leaves no ``out`` for an instant, and
the next run into ``out`` puts ``<out>.old-<pid>`` back before anything else.

Work folders (prepared windows, checkpoints) come from :func:`work_folder`: ``custseq-<kind>-<pid>-…`` in the
temporary folder, removed at the end, and removed by the next run when their process is gone (SIGKILL).

A run that can resume (``predict``) uses :func:`staged_run` instead: its work folder is ``<out>.work``, under the
same lock as ``out``, removed once ``out`` is in place and kept after a stop, a kill or an unexpected error, with
``resume.json`` (the inputs' fingerprint and the stages finished, :class:`ResumableWork`) so that the next run with
``resume`` continues from there; the next run without it starts from an empty one.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from custseq.errors import ArtifactError, ConfigError, CustseqError
from custseq.io.run_files import RUN_FILE, RUN_FILES, RunFileError, RunFolder, RunRecord
from custseq.io.tables import Tables
from custseq.version import __version__

try:
    import fcntl
except ImportError:  # Windows: a lock file created exclusively, holding its pid
    fcntl = None  # type: ignore[assignment]

COMPLETE = "complete"
RESUME_FILE = "resume.json"  # in a resumable work folder: the inputs' fingerprint and the stages finished
WORK_SUFFIX = ".work"  # <out>.work: the work folder of a run that can resume
_STALE = re.compile(r"\.(?:tmp|old)-\d+")  # what a run leaves beside its output folder
_WORK = re.compile(r"^custseq-[a-z]+-(\d+)-")  # a work folder in the temporary folder


class OutputFolderError(ConfigError):
    """An output folder that cannot be written now: another run holds it, or it is not custseq's to replace."""


REDELIVERY_SECONDS = 0.05  # a SIGTERM that fell in a finalizer is sent again after this


class Terminated(BaseException):  # like KeyboardInterrupt: a stop, not an error
    """SIGTERM, raised in the main thread so that every ``finally`` (staging, work folders) runs."""


# --- readers: a folder is whole only with its marker -------------------------------------------------------------


def require_complete(folder: Path | str, reader: str) -> RunRecord:
    """The ``run.json`` of a complete output folder.

    Parameters
    ----------
    folder : path
        An output folder of predict, score, evaluate or plan.
    reader : str
        The command that reads it, for the message (``"custseq report"``).

    Raises
    ------
    ArtifactError
        If the folder does not exist, has no ``run.json`` (a run stopped before the end, or a folder written
        by a custseq before 0.1.0's outputs carried one) or its ``run.json`` is unreadable or not complete.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; {reader} reads the --out folder of predict, score or evaluate")
    if not (folder / RUN_FILE).is_file():
        raise ArtifactError(
            f"{folder} has no {RUN_FILE}, so it is not a whole custseq output (a run stopped before its end, or "
            f"an older custseq wrote it); {reader} refuses it: run predict, score or evaluate into it again"
        )
    try:
        record = RunFolder(folder).read_run()
    except RunFileError as e:
        raise ArtifactError(f"{e}; {reader} refuses the folder") from None
    if record.status != COMPLETE:
        raise ArtifactError(f"{folder / RUN_FILE} says the run is {record.status!r}, not {COMPLETE!r}")
    return record


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-able parts (anything else by its ``str``): what a run read, in one short text."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def describe_tables(tables: Tables) -> dict[str, Any]:
    """What identifies the input tables without reading them: each file's path, size and modification time,
    a DuckDB table's name, an in-memory frame's columns, types and row count."""
    described: dict[str, Any] = {}
    for name, source in tables.present():
        if source.frame is not None:
            frame = source.frame
            schema = getattr(frame, "schema", None)
            dtypes = getattr(frame, "dtypes", None)
            described[name] = {"frame": str(schema if schema is not None else dtypes), "rows": len(frame)}
            continue
        files = []
        for path in source.paths:
            try:
                stat = path.stat()
                files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
            except OSError:
                files.append([str(path), None, None])
        described[name] = {"files": files, "table": source.duckdb_table}
    return described


# --- before any work: can the outputs be written? ----------------------------------------------------------------


def check_writable(path: Path | str, option: str = "--out", *, file: bool = False, replaces: bool = False) -> None:
    """Refuse, before any data is read, an output path that cannot be written, so that a run does not fail at its
    end (``predict`` after training).

    Parameters
    ----------
    path : path
        A folder (or, with ``file``, a file) the command writes; it need not exist yet.
    option : str
        The option that named it, for the message.
    file : bool
        ``path`` is a file (``embed --out``, ``report --out``), not a folder.
    replaces : bool
        The command replaces the whole folder (:func:`staged_output` without ``keep``): a folder holding files
        custseq does not write is refused now rather than after the work.

    Raises
    ------
    OutputFolderError
        If the path is not a valid name, is a file where a folder goes (or the reverse), lies under a file, or
        its folder (or the nearest one that exists) cannot be written.
    """
    try:
        out = Path(path).absolute()
        if file and out.is_dir():
            raise OutputFolderError(f"{option} {out} is a folder; pass a file name")
        if not file and out.exists() and not out.is_dir():
            raise OutputFolderError(f"{option} {out} is a file; pass a folder")
        _check_name_lengths(out, option)
        above = next(p for p in out.parents if p.exists())
        if not above.is_dir():
            raise OutputFolderError(f"cannot write {option} {out}: {above} is a file, not a folder")
        _probe_write(above)  # where the path is created, or where staging folder, lock and swap go beside it
        if not file and out.is_dir():
            _probe_write(out)
        if replaces and not file:
            _check_replaceable(out, keep=False)
    except OutputFolderError:
        raise
    except OSError as e:
        raise OutputFolderError(f"cannot write {option} {path}: {e.strerror or e}") from None
    except ValueError as e:  # an embedded NUL byte
        raise OutputFolderError(f"{option} {str(path)!r} is not a valid path: {e}") from None


def _check_name_lengths(out: Path, option: str) -> None:
    """Names (with the ``.tmp-<pid>`` suffix a staging folder adds) must fit the file system's limit."""
    existing = next(p for p in out.parents if p.exists())
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    for part in (*out.relative_to(existing).parts[:-1], f"{out.name}.tmp-{os.getpid()}"):
        if len(os.fsencode(part)) > limit:
            raise OutputFolderError(
                f"{option} {out}: the name {part[:40]!r}… is longer than this file system allows ({limit} bytes)"
            )


def _probe_write(folder: Path) -> None:
    """Create and remove a file in ``folder``: the one test of writability that holds for every user (root
    included) and file system (read-only mounts)."""
    fd, probe = tempfile.mkstemp(prefix=".custseq-write-check-", dir=folder)
    os.close(fd)
    os.unlink(probe)


# --- writers: stage, mark, swap ----------------------------------------------------------------------------------


@contextlib.contextmanager
def staged_output(out: Path | str | None, *, command: str, inputs: str, keep: bool = False) -> Iterator[Path | None]:
    """A staging folder beside ``out`` that becomes ``out``, with ``run.json``, when the block ends normally.

    Parameters
    ----------
    out : path or None
        The output folder; None: nothing is written and the block gets None.
    command : str
        What writes it (``"predict"``), for ``run.json``.
    inputs : str
        The inputs' :func:`fingerprint`, for ``run.json``.
    keep : bool
        Start from a copy of the current ``out`` (``evaluate`` adding to a predict folder, ``plan`` re-planning
        in place) instead of an empty folder.

    Raises
    ------
    OutputFolderError
        If another run holds ``out``, if ``out`` is a file or a folder holding files custseq does not write,
        or if the folder beside it cannot be written.
    """
    if out is None:
        yield None
        return
    out = Path(out).absolute()
    _check_replaceable(out, keep)
    with _locked(out):
        _recover(out)
        with _staging(out, command, inputs, keep) as staging:
            yield staging


@contextlib.contextmanager
def _staging(out: Path, command: str, inputs: str, keep: bool) -> Iterator[Path]:
    """The staging folder of :func:`staged_output`, under the lock of ``out``."""
    staging = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    started = _now()
    try:
        _start(staging, out, keep)
        yield staging
        RunFolder(staging).write_run(
            RunRecord(custseq_version=__version__, command=command, inputs=inputs, status=COMPLETE,
                      started=started, finished=_now())
        )  # fmt: skip
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a swap


def _check_replaceable(out: Path, keep: bool) -> None:
    """Refuse to replace a file, or a folder holding files custseq does not write (someone's own files, which a
    run that ``keep`` s the folder carries over)."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file; pass a folder")
    existing = next(p for p in out.parents if p.exists())
    if not existing.is_dir():
        raise OutputFolderError(f"cannot write --out {out}: {existing} is a file, not a folder")
    if keep or not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputFolderError(
            f"--out {out} holds files custseq does not write ({shown}) and custseq replaces the whole folder; "
            "pass a new or empty folder"
        )


def _start(staging: Path, out: Path, keep: bool) -> None:
    """An empty staging folder, or a copy of ``out`` without its ``run.json`` when ``keep``."""
    try:
        staging.parent.mkdir(parents=True, exist_ok=True)
        if keep and out.is_dir():
            shutil.copytree(out, staging, ignore=shutil.ignore_patterns(RUN_FILE))
        else:
            staging.mkdir()
    except OSError as e:
        raise OutputFolderError(f"cannot write beside --out {out}: {e.strerror or e}") from None


def _swap(staging: Path, out: Path) -> None:
    """``staging`` becomes ``out``; the previous ``out``, if any, is removed."""
    if not out.exists():
        os.rename(staging, out)
        return
    if _exchange(staging, out):  # staging now holds the previous out
        shutil.rmtree(staging, ignore_errors=True)
        return
    aside = out.with_name(f"{out.name}.old-{os.getpid()}")
    os.rename(out, aside)
    try:
        os.rename(staging, out)  # between the two renames no `out` exists; _recover puts `aside` back
    finally:
        if not out.exists():
            os.rename(aside, out)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(done == 0)


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _recover(out: Path) -> None:
    """What a killed run left beside ``out`` (called under the lock, so no live run owns any of it): the previous
    folder put back if the kill came between the two renames of a swap, staging folders removed."""
    for left in sorted(out.parent.glob(f"{glob.escape(out.name)}.*-*")):
        if not _STALE.fullmatch(left.name.removeprefix(out.name)):
            continue
        if left.name.startswith(f"{out.name}.old-") and not out.exists():
            os.rename(left, out)
        else:
            shutil.rmtree(left, ignore_errors=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --- runs that can resume: a work folder beside the output, with the stages it finished ---------------------------


@dataclass
class ResumableWork:
    """A work folder that a stopped run leaves for the next one, and what it holds (``resume.json``).

    ``resumed`` says whether this run continues an earlier one: its stages in ``finished`` are done (their outputs
    in ``folder`` are whole) and its training checkpoints may be continued; ``note`` says why a run asked to resume
    starts from the beginning instead.
    """

    folder: Path
    inputs: str
    finished: list[str] = field(default_factory=list)
    resumed: bool = False
    note: str | None = None

    def is_finished(self, stage: str) -> bool:
        """Whether ``stage`` finished in the run this one continues."""
        return self.resumed and stage in self.finished

    def finish(self, stage: str) -> None:
        """Record that ``stage`` has finished: its outputs in the folder are whole (written atomically)."""
        if stage not in self.finished:
            self.finished.append(stage)
        self._write()

    def _write(self) -> None:
        record = {"custseq_version": __version__, "inputs": self.inputs, "finished": self.finished}
        path = self.folder / RESUME_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)


def work_folder_beside(out: Path | str) -> Path:
    """``<out>.work``: where a run into ``out`` that can resume keeps its work files."""
    out = Path(out).absolute()
    return out.with_name(out.name + WORK_SUFFIX)


def open_resumable(folder: Path, inputs: str, *, resume: bool, clean: bool = True) -> ResumableWork:
    """The work folder ``folder`` for a run with these ``inputs`` (a :func:`fingerprint`).

    Without ``resume`` the folder starts empty (``clean``; else its files stay but no stage counts as
    finished). With it, the stages that the stopped run recorded in ``resume.json`` count as finished; with no
    ``resume.json`` (nothing ran, or the run ended well) the run starts from the beginning, with a note.

    Raises
    ------
    ConfigError
        If the stopped run read other inputs or settings (another fingerprint) or was another custseq version.
    """
    record = _read_resume(folder) if resume else None
    if record is not None and (record.get("inputs") != inputs or record.get("custseq_version") != __version__):
        raise ConfigError(
            f"cannot resume from {folder}: the data or settings changed since the stopped run (or custseq did, "
            f"{record.get('custseq_version')} then, {__version__} now); run without --resume to start over"
        )
    if record is None:
        if clean:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        note = f"nothing to resume in {folder} (no stopped run left its work there): starting from the beginning"
        work = ResumableWork(folder, inputs, note=note if resume else None)
        work._write()
        return work
    finished = [str(stage) for stage in record.get("finished", [])]
    return ResumableWork(folder, inputs, finished, resumed=True)


def _read_resume(folder: Path) -> dict[str, Any] | None:
    """The ``resume.json`` of ``folder``; None when there is none or it cannot be read (then nothing is resumed)."""
    try:
        record = json.loads((folder / RESUME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("finished"), list) else None


@contextlib.contextmanager
def staged_run(
    out: Path | str | None,
    *,
    command: str,
    inputs: str,
    work_dir: Path | str | None = None,
    resume: bool = False,
) -> Iterator[tuple[Path | None, ResumableWork]]:
    """:func:`staged_output` with a work folder that a stopped run leaves for ``resume``.

    The work folder is ``work_dir`` when given (kept, as in :func:`work_folder`), else ``<out>.work``
    (:func:`work_folder_beside`), which is created, resumed and removed under the lock of ``out`` — removed
    only once ``out`` is in place, so that a kill at any moment leaves either the whole output or the work to
    resume; kept after a stop (SIGTERM, Ctrl-C) or an unexpected error, removed after a
    :class:`~custseq.errors.CustseqError` (the user changes the data or settings, which a resumed run would
    refuse). Without ``out`` nor ``work_dir`` it is a temporary folder and nothing can be resumed.

    Raises
    ------
    ConfigError
        With ``resume`` but neither ``out`` nor ``work_dir``, or when the stopped run read other inputs.
    OutputFolderError
        As :func:`staged_output` (another run holds ``out``, which covers its work folder too).
    """
    if out is None and work_dir is None:
        if resume:
            raise ConfigError("resume needs an output folder (--out): the work of a stopped run is kept beside it")
        with work_folder(command) as tmp:
            yield None, open_resumable(tmp, inputs, resume=False)
        return
    if out is None:
        yield None, open_resumable(Path(work_dir or "."), inputs, resume=resume, clean=False)
        return
    out = Path(out).absolute()
    _check_replaceable(out, False)
    with _locked(out):
        _recover(out)
        beside = work_dir is None
        folder = work_folder_beside(out) if beside else Path(work_dir or ".")
        work = open_resumable(folder, inputs, resume=resume, clean=beside)
        try:
            with _staging(out, command, inputs, keep=False) as staging:
                yield staging, work
        except CustseqError:  # fixed by changing the data or settings, which a resumed run refuses: nothing to keep
            if beside:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if beside:
            shutil.rmtree(folder, ignore_errors=True)


# --- the lock ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``<out>.lock`` for the block: an exclusive ``flock`` (released by the system when a process dies, so
    a killed run's lock is simply taken over), the holder's pid inside for the message."""
    path = out.with_name(out.name + ".lock")
    if fcntl is None:
        with _locked_by_pid(path, out):
            yield
        return
    fd = _flock(path, out)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still held, so no other run holds a lock on the file being removed
        os.close(fd)


def _flock(path: Path, out: Path) -> int:
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputFolderError(f"cannot write beside --out {out}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise OutputFolderError(_busy(out, holder, path)) from None
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder removed between our open and our flock
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def _locked_by_pid(path: Path, out: Path) -> Iterator[None]:
    """Without ``flock``: a lock file created exclusively; one whose process is gone is taken over."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = path.read_text(errors="replace").strip() if path.exists() else ""
            if holder.isdigit() and pid_alive(int(holder)):
                raise OutputFolderError(_busy(out, holder, path)) from None
            path.unlink(missing_ok=True)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    raise OutputFolderError(_busy(out, "", path))


def _busy(out: Path, holder: str, path: Path) -> str:
    who = f"process {holder}" if holder.isdigit() else "another process"
    return f"another custseq run ({who}) is writing --out {out}; wait for it to end or pick another folder ({path})"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


# --- work folders and signals ------------------------------------------------------------------------------------


@contextlib.contextmanager
def work_folder(kind: str, path: Path | str | None = None) -> Iterator[Path]:
    """The given work folder (kept), or ``custseq-<kind>-<pid>-…`` in the temporary folder (removed afterwards,
    or by the next run if this process is killed)."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    remove_stale_work_folders()
    tmp = Path(tempfile.mkdtemp(prefix=f"custseq-{kind}-{os.getpid()}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_work_folders(root: Path | str | None = None) -> list[Path]:
    """Remove the work folders in ``root`` (default: the temporary folder) whose process is gone."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob("custseq-*-*-*"):
        found = _WORK.match(folder.name)
        if found and folder.is_dir() and not pid_alive(int(found.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread for the block, so that staging and work folders are
    removed as on Ctrl-C. Elsewhere than the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    received: list[int] = []

    def _raise(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        raise Terminated(signum)

    hook_before = sys.unraisablehook

    def _redeliver(unraisable: Any) -> None:
        """A stop raised inside a finalizer (``__del__``, a weakref callback), where Python prints it and drops it:
        the signal is sent again a moment later (not now: its handler would raise inside this hook), to stop the
        block at a point that can raise."""
        if isinstance(unraisable.exc_value, Terminated):
            again = threading.Timer(REDELIVERY_SECONDS, os.kill, (os.getpid(), signal.SIGTERM))
            again.daemon = True
            again.start()
            return
        hook_before(unraisable)

    before = signal.signal(signal.SIGTERM, _raise)
    sys.unraisablehook = _redeliver
    try:
        yield
    except Exception as e:
        if received:  # the signal met a library's own call (DuckDB: "Query interrupted"): still a stop, not a bug
            raise Terminated(received[0]) from e
        raise
    finally:
        sys.unraisablehook = hook_before
        signal.signal(signal.SIGTERM, before)
