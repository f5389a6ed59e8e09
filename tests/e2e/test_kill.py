"""A `custseq predict` stopped in the middle leaves its output folder absent or whole, and nothing in the temporary
folder: its work is in ``<out>.work``, kept for ``--resume`` (tests/e2e/test_resume.py) and removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.e2e.test_predict import AS_OF, TINY_TOML, _shop_rows

from custseq.io.atomic import require_complete, staged_output, work_folder_beside
from custseq.io.run_files import RUN_FILE

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
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
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
