"""No traceback anywhere in the CLI: every failure ends in one line, exit 2 for the user's input and exit 1 with
"please report" for a bug; ``--debug`` shows the traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from custseq.cli import app
from custseq.errors import ArtifactError, ConfigError
from custseq.models.artifacts import load_model, save_model

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src"
BUG = "this is a bug in custseq; please report it"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    start = pd.Timestamp("2023-01-01")
    rows = [
        {"customer_id": f"C{c:03d}", "ts": f"{start + pd.Timedelta(days=(c * 13 + k * 41) % 360):%Y-%m-%d}",
         "amount": 5.0 + c % 4}
        for c in range(30) for k in range(1 + c % 5)
    ]  # fmt: skip
    path = tmp_path / "shop.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _fails(args: list[str], code: int = 2) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # Rich wraps long lines


# --- the handler -------------------------------------------------------------------------------------------------


def _boom(*_args, **_kwargs):
    raise ZeroDivisionError("division by zero\nsecond line of a long message")


def test_an_unexpected_exception_is_one_line_asking_for_a_report(shop, tmp_path, monkeypatch):
    monkeypatch.setattr("custseq.cli.data.run_config", _boom)
    result = runner.invoke(app, ["validate", str(shop), "--quarantine-dir", str(tmp_path / "q")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: ZeroDivisionError: division by zero — {BUG} with the command and its --debug output"
    ]


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device"),
        RuntimeError('IO Error: Could not write file "/tmp/x/duckdb_temp_block": No space left on device'),
    ],
    ids=["arrow", "duckdb"],
)
def test_a_full_disk_is_one_line_saying_what_to_do_not_a_bug(shop, tmp_path, monkeypatch, error):
    def full(*_args, **_kwargs):
        raise error

    monkeypatch.setattr("custseq.cli.data.run_config", full)
    result = runner.invoke(app, ["validate", str(shop), "--quarantine-dir", str(tmp_path / "q")])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: the disk is full; free some space") and "temp_directory" in line
    assert "No space left on device" in line and "bug" not in line


def test_debug_prints_the_traceback_and_keeps_the_exit_code(shop, tmp_path, monkeypatch):
    monkeypatch.setattr("custseq.cli.data.run_config", _boom)
    result = runner.invoke(app, ["--debug", "validate", str(shop), "--quarantine-dir", str(tmp_path / "q")])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output and "_boom" in result.output
    monkeypatch.setenv("CUSTSEQ_DEBUG", "1")
    result = runner.invoke(app, ["validate", str(shop), "--quarantine-dir", str(tmp_path / "q")])
    assert result.exit_code == 1 and "Traceback" in result.output


def test_a_user_error_exits_2_with_its_message_and_debug_adds_the_traceback(tmp_path):
    args = ["validate", str(tmp_path / "missing.csv"), "--quarantine-dir", str(tmp_path / "q")]
    assert "error:" in _fails(args) and "missing.csv" in _fails(args)
    result = runner.invoke(app, ["--debug", *args])
    assert result.exit_code == 2 and "Traceback" in result.output


def test_ctrl_c_keeps_its_exit_code(shop, tmp_path, monkeypatch):
    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("custseq.cli.data.run_config", interrupt)
    result = runner.invoke(app, ["validate", str(shop), "--quarantine-dir", str(tmp_path / "q")])
    assert result.exit_code == 130 and "stopped: interrupted" in result.output


def test_usage_errors_are_still_clicks(shop):
    result = runner.invoke(app, ["prepare", str(shop), "--no-such-option"])
    assert result.exit_code == 2 and "No such option: --no-such-option" in result.output
    result = runner.invoke(app, ["prepare", str(shop), "--windows", "many", "--out", "x"])
    assert result.exit_code == 2 and "Invalid value for '--windows'" in result.output


def test_a_bug_in_a_real_process_prints_one_line_and_no_traceback(shop, tmp_path):
    script = (
        "import sys, custseq.cli, custseq.cli.data as d\n"
        "def boom(*a, **k): raise RuntimeError('internal state broke')\n"
        "d.run_config = boom\n"
        "sys.argv = ['custseq', *sys.argv[1:]]\n"
        "custseq.cli.main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    env.pop("CUSTSEQ_DEBUG", None)
    args = [sys.executable, "-c", script, "validate", str(shop), "--quarantine-dir", str(tmp_path / "q")]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: RuntimeError: internal state broke — {BUG} with the command and its --debug output"
    ]
    debug = subprocess.run([*args[:3], "--debug", *args[3:]], capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: RuntimeError: internal state broke")


# --- outputs checked before any work -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["prepare", "DATA", "--out", "OUT"],
        ["validate", "DATA", "--quarantine-dir", "OUT"],
        ["predict", "DATA", "--out", "OUT"],
        ["score", "DATA", "--model", "MODEL", "--out", "OUT"],
        ["pretrain", "DATA", "--out", "OUT"],
        ["evaluate", "DATA", "--out", "OUT"],
        ["embed", "DATA", "--model", "MODEL", "--out", "OUT/e.parquet"],
        ["plan", "MODEL", "--out", "OUT"],
    ],
)
def test_an_output_under_a_file_is_refused_before_the_data_is_read(command, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    out = str(a_file / "out")
    fill = {"DATA": str(tmp_path / "missing.csv"), "MODEL": str(tmp_path / "no-model"), "OUT": out}
    args = [fill.get(a, a).replace("OUT", out) for a in command]
    message = _fails(args)
    assert f"{a_file} is a file, not a folder" in message  # not "missing.csv": nothing was read


@pytest.mark.parametrize("option", ["--out", "--quarantine-dir"])
def test_an_output_that_cannot_be_written_is_refused(option, tmp_path):
    command = "prepare" if option == "--out" else "validate"
    message = _fails([command, str(tmp_path / "missing.csv"), option, "/proc/custseq-out"])
    assert f"cannot write {option} /proc/custseq-out" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    message = _fails(["prepare", str(tmp_path / "missing.csv"), "--out", str(locked / "out")])
    assert "cannot write --out" in message and "Permission denied" in message


def test_predict_refuses_a_folder_of_someone_elses_files_before_training(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("mine")
    message = _fails(["predict", str(tmp_path / "missing.csv"), "--out", str(out)])
    assert "holds files custseq does not write (thesis.docx)" in message


def test_a_name_too_long_is_refused(tmp_path):
    message = _fails(["prepare", str(tmp_path / "missing.csv"), "--out", str(tmp_path / ("x" * 300))])
    assert "cannot write --out" in message and "too long" in message


def test_embed_out_must_be_a_file(tmp_path):
    assert "is a folder; pass a file name" in _fails(["embed", "x.csv", "--model", "m", "--out", str(tmp_path)])


# --- config ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ('[model.finetune_training]\nepochs = "3"\n', "[model.finetune_training] epochs must be an integer, got '3'"),
        ('[window]\nhorizon_days = "ninety"\n', "[window] horizon_days: horizon 'ninety' is not understood"),
        ("[validation]\nmax_abs_amount = [1]\n", "[validation] max_abs_amount must be a number, got [1] (a list)"),
        ('[validation]\nmax_abs_amount = "big"\n', "[validation] max_abs_amount must be a number, got 'big'"),
        ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "is nested too deep"),
    ],
)
def test_config_errors_name_the_key_and_the_type(shop, tmp_path, text, message):
    config = tmp_path / "custseq.toml"
    config.write_text(text)
    assert message in _fails(["prepare", str(shop), "--out", str(tmp_path / "out"), "--config", str(config)])


def test_a_horizon_of_hundreds_of_digits_is_a_config_error(shop, tmp_path):
    message = _fails(["prepare", str(shop), "--out", str(tmp_path / "out"), "--horizon", "9" * 400 + "d"])
    assert "is too long; a horizon is at most 36525 days" in message


def test_token_order_without_an_order_id_names_the_column_and_the_fix(shop, tmp_path):
    message = _fails(["prepare", str(shop), "--out", str(tmp_path / "out"), "--token", "order"])
    assert "needs an order_id column" in message and "--column order_id=" in message and "--token line" in message


def test_max_abs_amount_beyond_exact_sums_is_refused():
    with pytest.raises(ConfigError, match="max_abs_amount must be above 0 and at most 1e\\+12, got 1e\\+30"):
        from custseq.config import ValidationConfig

        ValidationConfig(max_abs_amount=1e30)


# --- data --------------------------------------------------------------------------------------------------------


def test_a_file_that_is_not_utf8_says_encoding(shop, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(shop.read_text().replace("C001", "Cé01").encode("latin-1"))
    message = _fails(["validate", str(latin), "--quarantine-dir", str(tmp_path / "q")])
    assert "encoding" in message and "save the file as UTF-8" in message


def test_mixed_line_endings_are_named(shop, tmp_path):
    lines = shop.read_text().splitlines()
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(("\r\n".join(lines[:20]) + "\r\n" + "\n".join(lines[20:]) + "\n").encode())
    message = _fails(["validate", str(mixed), "--quarantine-dir", str(tmp_path / "q")])
    assert "mixed line endings" in message and "one kind of line ending" in message


def _validated(path: Path, tmp_path: Path, *extra: str) -> str:
    result = runner.invoke(app, ["validate", str(path), "--quarantine-dir", str(tmp_path / "q"), *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return " ".join(result.output.split())


def test_ragged_rows_are_quarantined(shop, tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(shop.read_text() + "C999,2023-02-02,3.0,extra\nC998\n")
    shown = _validated(ragged, tmp_path)
    assert "wrong_field_count │ 2" in shown


def test_float_ids_beyond_huge_integers_do_not_crash(shop, tmp_path):
    frame = pd.read_csv(shop)
    frame["customer_id"] = frame["customer_id"].str[1:].astype(float)
    frame.loc[frame["customer_id"] == 2.0, "customer_id"] = 1.8e38
    path = tmp_path / "ids.parquet"
    frame.to_parquet(path)
    shown = _validated(path, tmp_path)
    assert f"transactions: {len(frame)} rows, all passed validation" in shown


@pytest.mark.parametrize(
    "column, value, rule",
    [
        ("amount", "1e27", "absurd_amount"),
        ("quantity", "1e27", "unparsable_quantity"),
        ("quantity", "inf", "unparsable_quantity"),
    ],
)
def test_huge_numbers_are_quarantined(shop, tmp_path, column, value, rule):
    frame = pd.read_csv(shop, dtype=str).assign(quantity="1")
    frame.loc[len(frame)] = {"customer_id": "C005", "ts": "2023-03-03", "amount": "1.0", "quantity": "1"} | {
        column: value
    }
    path = tmp_path / "huge.csv"
    frame.to_csv(path, index=False)
    assert f"{rule} │ 1" in _validated(path, tmp_path)
    result = runner.invoke(app, ["prepare", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output + repr(result.exception)


# --- model folders -----------------------------------------------------------------------------------------------


def _build(config: dict, _vocab: object) -> torch.nn.Module:
    return torch.nn.Linear(config["n"], 1)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    save_model(path, torch.nn.Linear(3, 1), {"n": 3}, None, model_type="toy")
    load_model(path, _build)  # a good folder loads
    return path


def test_weights_linked_to_dev_zero_are_refused_unread(model_dir):
    (model_dir / "model.safetensors").unlink()
    (model_dir / "model.safetensors").symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match="is not a regular file"):
        load_model(model_dir, _build)


def test_weights_that_are_a_folder_are_refused(model_dir):
    (model_dir / "model.safetensors").unlink()
    (model_dir / "model.safetensors").mkdir()
    with pytest.raises(ArtifactError, match=r"model\.safetensors is a folder"):
        load_model(model_dir, _build)


def test_weights_larger_than_the_manifest_says_are_refused(model_dir):
    with open(model_dir / "model.safetensors", "ab") as f:
        f.truncate(10**9)  # sparse: a gigabyte on paper, nothing on disk
    with pytest.raises(ArtifactError, match="1,000,000,000 bytes but the manifest records"):
        load_model(model_dir, _build)


def test_a_json_file_linked_to_dev_zero_is_refused(model_dir):
    (model_dir / "config.json").unlink()
    (model_dir / "config.json").symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match=r"config\.json is not a regular file"):
        load_model(model_dir, _build)
