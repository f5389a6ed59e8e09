"""A `custseq predict` stopped in the middle leaves its output folder absent or whole, and nothing in the temporary
folder: its work is in ``<out>.work``, kept for ``--resume`` (tests/e2e/test_resume.py) and removed by the next run."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.e2e.test_predict import AS_OF, TINY_TOML, _shop_rows

from custseq.io.atomic import remove_stale_work_folders, require_complete, staged_output, work_folder_beside
from custseq.io.run_files import RUN_FILE
from custseq.models.artifacts import read_manifest

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("kill-shop")
    (folder / "tiny.toml").write_text(TINY_TOML)
    _shop_rows().to_csv(folder / "shop.csv", index=False)
    return folder / "shop.csv", folder / "tiny.toml"


def _start_predict(shop: tuple[Path, Path], out: Path, tmp: Path) -> subprocess.Popen[str]:
    data, config = shop
    args = ["predict", str(data), "--horizon", "60d", "--as-of", AS_OF, "--config", str(config), "--out", str(out)]
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "custseq.cli", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _when_working(run: subprocess.Popen[str], out: Path, tmp: Path, timeout: float = 120) -> None:
    """Wait until the run holds its output folder and has a work folder: it is in the middle of its work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        staging = out.with_name(f"{out.name}.tmp-{run.pid}")
        if staging.is_dir() and work_folder_beside(out).is_dir():
            return
        if run.poll() is not None:
            pytest.fail(f"predict ended before it could be stopped: {run.stdout.read() if run.stdout else ''}")
        time.sleep(0.05)
    run.kill()
    pytest.fail("predict did not start its work in time")


def _previous_run(out: Path) -> None:
    with staged_output(out, command="predict", inputs="the previous run") as staging:
        assert staging is not None
        (staging / "metrics.json").write_text("previous")


def _left_beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


@pytest.mark.slow  # a predict process of its own (importing torch), stopped a few seconds in
def test_sigterm_in_the_middle_leaves_the_previous_run_whole_and_only_the_work_to_resume(shop, tmp_path):
    out, tmp = tmp_path / "out" / "run", tmp_path / "tmp"
    tmp.mkdir()
    _previous_run(out)
    run = _start_predict(shop, out, tmp)
    _when_working(run, out, tmp)
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 143, output
    assert "terminated (SIGTERM)" in output and "Traceback" not in output
    assert require_complete(out, "test").inputs == "the previous run"
    assert (out / "metrics.json").read_text() == "previous"
    assert _left_beside(out) == ["run.work"] and list(tmp.iterdir()) == []


@pytest.mark.slow
def test_after_sigkill_the_next_run_cleans_what_was_left_and_the_folder_is_absent_meanwhile(shop, tmp_path):
    out, tmp = tmp_path / "out" / "run", tmp_path / "tmp"
    tmp.mkdir()
    run = _start_predict(shop, out, tmp)
    _when_working(run, out, tmp)
    run.kill()
    run.communicate(timeout=60)
    assert not out.exists()  # absent, not partial
    assert f"run.tmp-{run.pid}" in _left_beside(out) and list(tmp.iterdir()) == []  # what SIGKILL cannot clean
    with staged_output(out, command="predict", inputs="next") as staging:  # the next run into the same folder
        assert staging is not None
        # the killed run's lock taken over, its staging gone, its work left for predict (--resume or not)
        assert _left_beside(out) == ["run.lock", staging.name, "run.work"]
    assert (out / RUN_FILE).is_file() and _left_beside(out) == ["run.work"]


# --- stops at random moments -------------------------------------------------------------------------------------

KILLS = 6  # alternately SIGKILL and SIGTERM, in a seeded order, each at a seeded moment of the run
KILL_SEED = 17
REPORT_LINE_END = "report.html)"  # the end of predict's last line, "Outputs in … report.html)"
LONGEST_DELAY = 10.0  # seconds after the run holds its folders: validation, windows, training, scoring, the report


def kill_moments(seed: int = KILL_SEED, kills: int = KILLS) -> list[tuple[signal.Signals, float]]:
    """The signals and the delays (seconds after the run holds its folders), the same for a seed."""
    rng = random.Random(seed)
    signals = [signal.SIGKILL, signal.SIGTERM] * (kills // 2) + [signal.SIGKILL] * (kills % 2)
    rng.shuffle(signals)
    return [(s, round(rng.uniform(0.0, LONGEST_DELAY), 2)) for s in signals]


class _Lines:
    """The run's output lines as they come, read by a thread (the pipe never fills up)."""

    def __init__(self, run: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert run.stdout is not None
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(run.stdout.readline, "")), daemon=True)
        self._thread.start()

    def stage(self) -> str:
        done = [line.strip() for line in list(self.lines) if line.strip().startswith("✓")]
        return done[-1] if done else "(before the first stage ended)"

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def _work_folders(tmp: Path) -> list[str]:
    """custseq's work folders in the temporary folder (torch keeps a compile cache of its own there)."""
    return sorted(p.name for p in tmp.glob("custseq-*"))


def assert_whole(out: Path) -> None:
    """``out`` has its completeness marker and every file the marker implies reads whole."""
    record = require_complete(out, "test")
    assert record.status == "complete"
    names = {p.name for p in out.iterdir()}
    assert {"predictions.parquet", "predictions.csv", "metrics.json", "model"} <= names, names
    for path in out.rglob("*"):
        if path.is_file():
            assert path.stat().st_size > 0, path
            if path.suffix == ".parquet":
                pq.read_table(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
    scored = pq.read_table(out / "predictions.parquet").num_rows
    with open(out / "predictions.csv", newline="") as f:
        assert sum(1 for _ in csv.reader(f)) - 1 == scored
    assert json.loads((out / "metrics.json").read_text())["customers_scored"] == scored
    read_manifest(out / "model")
    if (out / "report.html").exists():
        assert (out / "report.html").read_text().rstrip().endswith("</html>")


def stop_at(shop: tuple[Path, Path], out: Path, tmp: Path, how: signal.Signals, delay: float) -> dict[str, object]:
    """Start a predict into ``out``, stop it ``delay`` seconds into its work, and check what it left."""
    run = _start_predict(shop, out, tmp)
    lines = _Lines(run)
    _when_working(run, out, tmp)
    staging = out.with_name(f"{out.name}.tmp-{run.pid}")
    # A run that holds the folder has cleaned what killed runs left: stale staging folders and work folders.
    assert [p.name for p in out.parent.glob(f"{out.name}.tmp-*")] == [staging.name]
    assert [p for p in _work_folders(tmp) if not p.startswith(f"custseq-predict-{run.pid}-")] == []
    time.sleep(delay)
    stage = lines.stage()
    if run.poll() is None:
        run.send_signal(how)
    run.wait(timeout=120)
    output = lines.text()
    # A signal after the run's last line (its folder already swapped in) may still meet the interpreter on its way
    # out, with the default action: that run had finished.
    finished = run.returncode == 0 or (run.returncode == -how and output.rstrip().endswith(REPORT_LINE_END))
    assert "Traceback" not in output, output
    if how == signal.SIGTERM and not finished:
        assert run.returncode == 143 and "terminated (SIGTERM)" in output, output
        assert not staging.exists() and _work_folders(tmp) == []  # a stopped run removes its own folders
    elif not finished:
        assert run.returncode == -signal.SIGKILL, output
    if out.exists():
        assert_whole(out)
    return {"signal": how.name, "delay": delay, "stage": stage, "finished": finished, "out": out.exists()}


@pytest.mark.slow  # six predict processes of their own, each stopped up to 10 s into its work
def test_stops_at_random_moments_leave_the_output_absent_or_whole(shop, tmp_path):
    out, tmp = tmp_path / "out" / "run", tmp_path / "tmp"
    tmp.mkdir()
    seen = [stop_at(shop, out, tmp, how, delay) for how, delay in kill_moments()]
    assert {s["signal"] for s in seen} == {"SIGKILL", "SIGTERM"}
    if not any(s["out"] for s in seen):
        assert not out.exists()  # absent, never partial, until a run finishes
    with staged_output(out, command="predict", inputs="next") as staging:  # the next run cleans the last kill
        assert staging is not None and [p.name for p in out.parent.glob("run.tmp-*")] == [staging.name]
    remove_stale_work_folders(tmp)
    # a run stopped after the last finished one leaves its work beside the output, for --resume
    assert _work_folders(tmp) == [] and _left_beside(out) in ([], ["run.work"])
