"""`predict --resume`: a run stopped in the middle continues from its last finished stage, with the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.e2e.test_predict import AS_OF, TINY_TOML, _shop_rows
from typer.testing import CliRunner

import custseq
from custseq.cli import app
from custseq.config import RunConfig, load_config
from custseq.errors import ConfigError, EmptyTableError
from custseq.io.atomic import RESUME_FILE, OutputFolderError, Terminated, require_complete, work_folder_beside
from custseq.models import train as training
from custseq.pipelines import predict as predict_pipeline

SRC = Path(__file__).resolve().parents[2] / "src"
# two epochs of each training, so that a stop after the first leaves a checkpoint to continue from
RESUME_TOML = TINY_TOML.replace("pretrain_training]\nepochs = 1", "pretrain_training]\nepochs = 2").replace(
    "finetune_training]\nepochs = 2", "finetune_training]\nepochs = 3"
)
PREPARE_STAGE = "validating tables"  # the first stage of prepare: heard only when the windows are prepared


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, RunConfig]:
    folder = tmp_path_factory.mktemp("resume-shop")
    (folder / "tiny.toml").write_text(RESUME_TOML)
    _shop_rows().to_csv(folder / "shop.csv", index=False)
    return folder / "shop.csv", load_config(folder / "tiny.toml")


def _predict(shop: tuple[Path, RunConfig], out: Path, heard: list[str] | None = None, **kwargs) -> pd.DataFrame:
    data, config = shop
    return custseq.predict(
        data, horizon="60d", as_of=AS_OF, config=config, seed=0, out=out,
        on_stage=heard.append if heard is not None else None, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(shop, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    return _predict(shop, out), out


def _stop_at(monkeypatch, description: str, epoch: int) -> None:
    """Stop the run (as SIGTERM does) when the training ``description`` is about to run ``epoch``."""
    run_epoch = training._run_epoch

    def stopping(run, at, *args, **kwargs):
        if run.description == description and at == epoch:
            raise Terminated(signal.SIGTERM)
        return run_epoch(run, at, *args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", stopping)


def _epochs_run(monkeypatch) -> list[tuple[str, int]]:
    """The (training, epoch) pairs the run goes on to train, as they start."""
    run_epoch, ran = training._run_epoch, []

    def recording(run, at, *args, **kwargs):
        ran.append((run.description, at))
        return run_epoch(run, at, *args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", recording)
    return ran


def _finished(out: Path) -> list[str]:
    return json.loads((work_folder_beside(out) / RESUME_FILE).read_text())["finished"]


def test_a_successful_run_leaves_its_output_and_no_work_folder(uninterrupted):
    _, out = uninterrupted
    require_complete(out, "test")
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no out.work, no lock, no staging


def test_a_run_stopped_in_fine_tuning_resumes_after_its_last_epoch_with_the_same_predictions(
    shop, uninterrupted, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        _stop_at(patched, "fine-tuning", epoch=1)
        with pytest.raises(Terminated):
            _predict(shop, out)
    assert not out.exists()  # absent, not partial
    assert _finished(out) == ["prepared", "pre-training"]  # the work of the stopped run is kept for --resume
    assert (work_folder_beside(out) / "finetune" / "checkpoint.pt").is_file()

    heard: list[str] = []
    ran = _epochs_run(monkeypatch)
    resumed = _predict(shop, out, heard, resume=True)
    assert ran == [("fine-tuning", 1), ("fine-tuning", 2)]  # no epoch of pre-training, no epoch twice
    notes = [m for m in heard if m.startswith("resumed: ")]
    assert PREPARE_STAGE not in heard and "pre-training the sequence encoder (masked + next event)" in heard
    assert len(notes) == 3, heard
    assert notes[0].startswith("resumed: the windows prepared by the stopped run are used as they are")
    assert notes[1] == "resumed: pre-training had finished; its model is read back from its last checkpoint"
    assert notes[2] == "resumed: fine-tuning continues from its checkpoint after epoch 1 of at most 3"
    # Exactly equal: the checkpoints hold the weights, the optimiser and every random state, training on CPU is
    # deterministic, and the prepared windows are the same files, so the run goes on bit for bit.
    pd.testing.assert_frame_equal(resumed, uninterrupted[0], check_exact=True)
    require_complete(out, "test")
    assert not work_folder_beside(out).exists()


def test_a_run_stopped_in_pre_training_continues_it_from_its_checkpoint(shop, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        _stop_at(patched, "pre-training", epoch=1)
        with pytest.raises(Terminated):
            _predict(shop, out)
    assert _finished(out) == ["prepared"]
    heard: list[str] = []
    ran = _epochs_run(monkeypatch)
    resumed = _predict(shop, out, heard, resume=True)
    assert ran == [("pre-training", 1), ("fine-tuning", 0), ("fine-tuning", 1), ("fine-tuning", 2)]
    assert PREPARE_STAGE not in heard
    assert "resumed: pre-training continues from its checkpoint after epoch 1 of at most 2" in heard
    assert not any(m.startswith("resumed: fine-tuning") for m in heard)  # it had not started: from epoch 0
    pd.testing.assert_frame_equal(resumed, uninterrupted[0], check_exact=True)


def _stopped_in_prepare(shop, out: Path, monkeypatch) -> None:
    """A run stopped while preparing: its work folder has a resume.json and no stage finished."""
    with monkeypatch.context() as patched:
        patched.setattr(predict_pipeline, "prepare", _stop)
        with pytest.raises(Terminated):
            _predict(shop, out)
    assert _finished(out) == []


def _stop(*_args, **_kwargs):
    raise Terminated(signal.SIGTERM)


def test_resume_after_the_data_changed_is_refused(shop, tmp_path, monkeypatch):
    data = tmp_path / "shop.csv"
    data.write_bytes(shop[0].read_bytes())
    copy = (data, shop[1])
    out = tmp_path / "out"
    _stopped_in_prepare(copy, out, monkeypatch)
    with data.open("a") as f:
        f.write("k999,2023-10-01,12.5,p1\n")
    with pytest.raises(ConfigError, match=r"the data or settings changed since the stopped run.*without --resume"):
        _predict(copy, out, resume=True)
    assert (work_folder_beside(out) / RESUME_FILE).is_file()  # refused before touching it


def test_resume_with_other_settings_is_refused_on_the_command_line_too(shop, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _stopped_in_prepare(shop, out, monkeypatch)
    args = ["predict", str(shop[0]), "--horizon", "60d", "--as-of", AS_OF, "--out", str(out), "--seed", "7"]
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "the data or settings changed since the stopped run" in said and "Traceback" not in result.output


def test_resume_with_nothing_to_resume_starts_from_the_beginning_with_a_note(shop, tmp_path, monkeypatch):
    heard: list[str] = []
    out = tmp_path / "out"
    monkeypatch.setattr(predict_pipeline, "prepare", _stop)  # the start is all this test needs to see
    with pytest.raises(Terminated):
        _predict(shop, out, heard, resume=True)
    assert heard[0].startswith("nothing to resume in ") and heard[0].endswith("starting from the beginning")


def test_a_run_without_resume_starts_from_an_empty_work_folder(shop, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _stopped_in_prepare(shop, out, monkeypatch)
    left = work_folder_beside(out) / "prepared" / "half-written.parquet"
    left.parent.mkdir()
    left.write_text("")
    heard: list[str] = []
    monkeypatch.setattr(predict_pipeline, "prepare", _stop)
    with pytest.raises(Terminated):
        _predict(shop, out, heard)
    assert not left.exists() and _finished(out) == [] and not any(m.startswith("resumed") for m in heard)


def test_an_error_the_user_fixes_leaves_no_work_folder(shop, tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise EmptyTableError("no row passed validation")

    out = tmp_path / "out"
    monkeypatch.setattr(predict_pipeline, "prepare", refuse)
    with pytest.raises(EmptyTableError):
        _predict(shop, out)
    assert list(tmp_path.iterdir()) == []  # the fix changes the data, which --resume refuses: nothing to keep


def test_resume_needs_an_output_folder(shop):
    with pytest.raises(ConfigError, match="resume needs an output folder"):
        _predict(shop, None, resume=True)  # type: ignore[arg-type]


@pytest.fixture
def holding(tmp_path) -> Iterator[Path]:
    """Another process holding the lock of ``tmp_path / 'out'`` for the test."""
    out = tmp_path / "out"
    code = (
        "import sys, time; from custseq.io.atomic import staged_output\n"
        f"with staged_output({str(out)!r}, command='predict', inputs='x'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    yield out
    holder.kill()
    holder.wait()


def test_the_lock_of_the_output_covers_its_work_folder(shop, holding, tmp_path, monkeypatch):
    work = work_folder_beside(holding)
    work.mkdir()
    (work / RESUME_FILE).write_text(json.dumps({"finished": ["prepared"], "inputs": "x"}))
    with pytest.raises(OutputFolderError, match="another custseq run"):
        _predict(shop, holding, resume=True)
    with pytest.raises(OutputFolderError, match="another custseq run"):
        _predict(shop, holding)  # a run without --resume does not empty it either
    assert json.loads((work / RESUME_FILE).read_text())["inputs"] == "x"


def _start_cli_predict(shop: tuple[Path, RunConfig], config: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    args = ["predict", str(shop[0]), "--horizon", "60d", "--as-of", AS_OF, "--config", str(config),
            "--seed", "0", "--out", str(out), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-m", "custseq.cli", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.slow  # two predict processes of their own (importing torch), the first killed in fine-tuning
def test_a_sigkilled_predict_resumes_on_the_command_line_with_the_same_predictions(shop, uninterrupted, tmp_path):
    out, config = tmp_path / "out", tmp_path / "tiny.toml"
    config.write_text(RESUME_TOML)
    run = _start_cli_predict(shop, config, out)
    checkpoint = work_folder_beside(out) / "finetune" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    run.kill()
    output, _ = run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL, output
    assert not out.exists() and _finished(out) == ["prepared", "pre-training"]

    run = _start_cli_predict(shop, config, out, "--resume")
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    said = " ".join(output.split())
    assert "resumed: pre-training had finished" in said and "resumed: fine-tuning continues" in said
    predictions = pd.read_parquet(out / "predictions.parquet")
    expected = pd.read_parquet(uninterrupted[1] / "predictions.parquet")
    pd.testing.assert_frame_equal(predictions, expected, check_exact=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.toml"]
