"""Outputs whole or absent (custseq.io.atomic): staging and swap, the lock, the marker, work folders, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseq.errors import ArtifactError
from custseq.io import atomic
from custseq.io.atomic import (
    OutputFolderError,
    Terminated,
    fingerprint,
    remove_stale_work_folders,
    require_complete,
    staged_output,
    terminate_as_exception,
    work_folder,
)
from custseq.io.run_files import RUN_FILE, RunFolder, neutralised, read_csv, restored


class Boom(Exception):
    pass


def _write(folder: Path | None, text: str) -> None:
    assert folder is not None
    (folder / "metrics.json").write_text(text)
    (folder / "model").mkdir()
    (folder / "model" / "weights.pt").write_text(text)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _start_into(out: Path) -> None:
    with staged_output(out, command="predict", inputs="refused"):
        raise AssertionError("the block must not run")


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


# --- staging and swap --------------------------------------------------------------------------------------------


def test_a_finished_block_puts_the_folder_in_place_with_its_marker_and_nothing_beside_it(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs=fingerprint("data")) as staging:
        assert staging is not None and staging.parent == tmp_path and staging.name == f"run.tmp-{os.getpid()}"
        _write(staging, "first")
        assert not out.exists()  # nothing visible until the end
    record = require_complete(out, "custseq report")
    assert (record.command, record.status, record.inputs) == ("predict", "complete", fingerprint("data"))
    assert (out / "model" / "weights.pt").read_text() == "first"
    assert _siblings(out) == []  # no staging folder, no lock


def test_an_error_in_the_middle_leaves_no_folder_when_there_was_none(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Boom), staged_output(out, command="predict", inputs="x") as staging:
        _write(staging, "half")
        raise Boom
    assert not out.exists() and _siblings(out) == []


@pytest.mark.parametrize("stop", [Boom, KeyboardInterrupt, Terminated])
def test_an_error_or_a_stop_in_the_middle_leaves_the_previous_run_whole(tmp_path, stop):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs="old") as staging:
        _write(staging, "old")
    with pytest.raises(stop), staged_output(out, command="predict", inputs="new") as staging:
        _write(staging, "new")
        raise stop
    assert require_complete(out, "custseq report").inputs == "old"
    assert (out / "metrics.json").read_text() == "old" and _siblings(out) == []


def test_a_second_run_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs="old") as staging:
        _write(staging, "old")
        assert staging is not None
        (staging / "history.json").write_text("only the old run has it")
    with staged_output(out, command="score", inputs="new") as staging:
        _write(staging, "new")
    assert not (out / "history.json").exists()  # no old file beside the new ones
    assert RunFolder(out).read_run().command == "score" and (out / "metrics.json").read_text() == "new"


def test_the_two_rename_swap_puts_the_previous_folder_back_if_the_second_rename_fails(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs="old") as staging:
        _write(staging, "old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # no renameat2: the portable path
    real_rename = os.rename

    def failing_second(src, dst):
        if Path(src).name.startswith("run.tmp-"):
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", failing_second)
    with pytest.raises(OSError, match="disk gone"), staged_output(out, command="predict", inputs="new") as staging:
        _write(staging, "new")
    assert (out / "metrics.json").read_text() == "old" and _siblings(out) == []


def test_keep_starts_from_a_copy_of_the_folder(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs="p") as staging:
        _write(staging, "predicted")
    with staged_output(out, command="evaluate", inputs="e", keep=True) as staging:
        assert staging is not None and not (staging / RUN_FILE).exists()
        (staging / "evaluation.json").write_text("{}")
    assert {p.name for p in out.iterdir()} == {"metrics.json", "model", "evaluation.json", RUN_FILE}


def test_what_a_killed_run_left_beside_the_folder_is_cleaned_and_a_folder_caught_between_renames_put_back(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs="old") as staging:
        _write(staging, "old")
    dead = _dead_pid()
    out.rename(tmp_path / f"run.old-{dead}")  # killed between the two renames of a swap
    (tmp_path / f"run.tmp-{dead}").mkdir()  # and its staging folder
    (tmp_path / "run.tmp-notapid").mkdir()  # not custseq's: left alone
    with staged_output(out, command="predict", inputs="new") as staging:
        assert (out / "metrics.json").read_text() == "old"  # put back before the new run starts
        _write(staging, "new")
    assert _siblings(out) == ["run.tmp-notapid"]


def test_no_folder_means_nothing_is_staged():
    with staged_output(None, command="predict", inputs="x") as staging:
        assert staging is None


# --- what may be replaced ----------------------------------------------------------------------------------------


def test_a_folder_of_someone_elses_files_is_never_replaced(tmp_path):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.docx").write_text("years of work")
    with pytest.raises(OutputFolderError, match=r"thesis\.docx.*new or empty folder"):
        _start_into(out)
    assert (out / "thesis.docx").exists() and _siblings(out) == []


def test_a_file_of_ones_own_in_a_finished_run_is_never_removed_and_a_run_that_adds_to_the_folder_keeps_it(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs="x") as staging:
        _write(staging, "x")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"notes\.txt"):
        _start_into(out)
    with staged_output(out, command="evaluate", inputs="e", keep=True) as staging:
        assert staging is not None
        (staging / "evaluation.json").write_text("{}")
    assert (out / "notes.txt").read_text() == "mine" and (out / "evaluation.json").exists()


def test_an_empty_folder_or_one_an_older_custseq_wrote_is_replaced_but_a_file_is_refused(tmp_path):
    empty, older, file = tmp_path / "empty", tmp_path / "older", tmp_path / "file"
    empty.mkdir()
    older.mkdir()
    (older / "predictions.parquet").write_text("partial")
    file.write_text("x")
    for out in (empty, older):
        with staged_output(out, command="predict", inputs="x") as staging:
            _write(staging, "new")
        assert not (out / "predictions.parquet").exists() and (out / RUN_FILE).is_file()
    with pytest.raises(OutputFolderError, match="is a file"), staged_output(file, command="predict", inputs="x"):
        pass


def test_an_unwritable_place_is_a_clear_error_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputFolderError, match=r"cannot write --out .*a-file/run: .*a-file is a file, not a folder"):
        _start_into(tmp_path / "a-file" / "run")


# --- the lock ----------------------------------------------------------------------------------------------------


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, command="predict", inputs="first") as staging:
        with pytest.raises(OutputFolderError, match=rf"another custseq run \(process {os.getpid()}\) is writing"):
            _start_into(out)
        _write(staging, "first")
    assert RunFolder(out).read_run().inputs == "first"
    with staged_output(out, command="predict", inputs="second") as staging:  # free again afterwards
        _write(staging, "second")
    assert RunFolder(out).read_run().inputs == "second"


def test_a_lock_held_by_another_live_process_is_refused(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"""
import sys
from custseq.io.atomic import staged_output
with staged_output({str(out)!r}, command="predict", inputs="x"):
    print("held", flush=True)
    sys.stdin.readline()
"""],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": _src()},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputFolderError, match=rf"process {holder.pid}"):
            _start_into(out)
    finally:
        holder.communicate("\n", timeout=30)
    assert RunFolder(out).read_run().inputs == "x"


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "run.lock").write_text(str(_dead_pid()))  # left by a run killed with SIGKILL
    with staged_output(out, command="predict", inputs="x") as staging:
        _write(staging, "x")
    assert RunFolder(out).read_run().inputs == "x" and _siblings(out) == []


def test_without_flock_a_lock_file_of_a_dead_process_is_taken_over_and_a_live_one_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "fcntl", None)
    out = tmp_path / "run"
    (tmp_path / "run.lock").write_text(str(_dead_pid()))
    with staged_output(out, command="predict", inputs="x") as staging:
        assert (tmp_path / "run.lock").read_text() == str(os.getpid())
        with pytest.raises(OutputFolderError, match="another custseq run"):
            _start_into(out)
        _write(staging, "x")
    assert not (tmp_path / "run.lock").exists()


# --- readers -----------------------------------------------------------------------------------------------------


def test_a_folder_without_its_marker_is_refused_by_its_readers(tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "predictions.parquet").write_text("half")
    with pytest.raises(ArtifactError, match=r"has no run\.json.*custseq plan refuses it"):
        require_complete(partial, "custseq plan")
    with pytest.raises(ArtifactError, match="is not a folder"):
        require_complete(tmp_path / "absent", "custseq report")
    (partial / RUN_FILE).write_text('{"format_version": 1}')
    with pytest.raises(ArtifactError, match="custseq_version"):
        require_complete(partial, "custseq report")


# --- work folders and signals ------------------------------------------------------------------------------------


def test_a_work_folder_is_removed_at_the_end_and_a_dead_runs_one_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"custseq-predict-{_dead_pid()}-abc"
    live = tmp_path / f"custseq-predict-{os.getppid()}-def"  # a run still going on
    other = tmp_path / "custseq-predict-old"  # no pid: not ours to judge
    for folder in (stale, live, other):
        folder.mkdir()
    with pytest.raises(Boom), work_folder("predict") as work:
        assert work.parent == tmp_path and work.name.startswith(f"custseq-predict-{os.getpid()}-")
        assert not stale.exists() and live.exists() and other.exists()
        raise Boom
    assert not work.exists()
    given = tmp_path / "mine"
    with work_folder("predict", given) as work:
        assert work == given
    assert given.exists()  # a folder the user named is kept
    assert remove_stale_work_folders(tmp_path) == []


def test_sigterm_becomes_an_exception_in_the_block_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), terminate_as_exception():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):  # the handler runs between bytecodes
            pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_that_a_library_turns_into_its_own_error_is_still_a_stop():
    def query() -> None:  # what DuckDB does when a signal handler raises during a query
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):
                pass
        except Terminated:
            raise RuntimeError("Query interrupted") from None

    with pytest.raises(Terminated) as stop, terminate_as_exception():
        query()
    assert stop.value.args == (signal.SIGTERM,) and isinstance(stop.value.__cause__, RuntimeError)
    with pytest.raises(RuntimeError, match="not a stop"), terminate_as_exception():
        raise RuntimeError("not a stop")  # without a signal, an error stays an error


def test_sigterm_that_lands_in_a_finalizer_still_stops_the_block_without_a_printed_traceback(capsys):

    class SignalledWhileCollected:
        def __del__(self) -> None:  # the handler runs here, where Python would print the exception and drop it
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**5):
                pass

    hook = sys.unraisablehook
    with pytest.raises(Terminated), terminate_as_exception():
        SignalledWhileCollected()  # collected at once
        time.sleep(5)  # the signal sent again stops the block here
    assert "Traceback" not in capsys.readouterr().err
    assert sys.unraisablehook is hook


# --- CSV cells ---------------------------------------------------------------------------------------------------

HOSTILE = ["=1+1", "+x", "-x", "@SUM(A1)", "\tx", "\rx", "'quoted", "plain", "a=b"]


def test_text_cells_a_spreadsheet_would_run_are_quoted_and_read_back_exactly():
    assert [neutralised(t) for t in HOSTILE] == [
        "'=1+1", "'+x", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "''quoted", "plain", "a=b"
    ]  # fmt: skip
    assert [restored(neutralised(t)) for t in HOSTILE] == HOSTILE
    assert restored("=1+1") == "=1+1" and restored("'plain") == "'plain"  # a spreadsheet dropped or kept the quote


def test_every_csv_of_a_run_folder_is_neutralised_but_parquet_and_numbers_keep_their_values(tmp_path):
    folder = RunFolder(tmp_path / "run")
    n = len(HOSTILE)
    predictions = pd.DataFrame({
        "customer_id": HOSTILE, "churn_probability": [0.5] * n, "clv_expected": [-3.5] + [1.0] * (n - 1),
        "segment": pd.Categorical(["-lapsed"] + ["new"] * (n - 1)),
        "next_items": ['[{"item": "=cmd", "probability": 0.5}]'] * n,
    })  # fmt: skip
    folder.write_predictions(predictions)
    folder.write_review(predictions[["customer_id", "clv_expected"]].drop(index=5))  # no carriage return
    folder.write_contacts(predictions[["customer_id", "segment"]].assign(rank=range(-1, n - 1)))
    lines = (folder.path / "predictions.csv").read_text().splitlines()
    assert lines[1].startswith('"\'=1+1",0.5,-3.5,"\'-lapsed",') and lines[2].startswith('"\'+x"')
    raw = pq.read_table(folder.path / "predictions.parquet")
    assert raw.column("customer_id").to_pylist() == HOSTILE  # Parquet keeps the raw values
    assert raw.column("clv_expected").type == pa.float64() and raw.column("clv_expected")[0].as_py() == -3.5
    review = (folder.path / "review.csv").read_text()
    assert "\n'=1+1,-3.5\n" in review and "\n'@SUM(A1),1.0\n" in review and "\nplain,1.0\n" in review
    contacts = (folder.path / "contacts.csv").read_text().splitlines()
    assert contacts[1] == '"\'=1+1","\'-lapsed",-1'  # a carriage return among the cells: text quoted
    assert folder.read_review()["customer_id"].tolist() == HOSTILE[:5] + HOSTILE[6:]
    assert folder.read_contacts()["customer_id"].tolist() == HOSTILE
    assert folder.read_contacts()["rank"].tolist() == list(range(-1, n - 1))
    assert read_csv(folder.path / "predictions.csv")["customer_id"].tolist() == HOSTILE


def _src() -> str:
    return str(Path(atomic.__file__).resolve().parents[2])
