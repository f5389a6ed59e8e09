"""Every command builds its config one way: the default, then the --config file, then the command's options.

Each command's pipeline is replaced by a recorder, so these tests read the exact config a command would run
with, without training anything.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from custseq.cli import app
from custseq.config import RunConfig
from custseq.errors import CustseqError

runner = CliRunner()

FILE = """
[window]
horizon_days = 30
as_of = "2023-05-31"

[sequence]
max_events = 12

[validation]
max_abs_amount = 500.0

[model]
pretraining = false

[model.encoder]
d_model = 16
n_layers = 1

[model.pretrain]
mask_rate = 0.3

[model.pretrain_training]
epochs = 2
batch_size = 32

[actions]
k = 2
retention_threshold = 0.7

[report]
interactive = false

[audit]
recalibrate_groups = true
"""


class Stop(CustseqError):
    """Raised by the recorder once it has the config: the command exits 2 without running anything."""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "custseq.toml"
    path.write_text(FILE)
    return path


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every pipeline entry point replaced by one that records its config and stops."""
    seen: dict[str, Any] = {}

    def recorder(name: str, position: int):
        def record(*args: Any, **kwargs: Any) -> None:
            seen[name] = args[position]
            raise Stop("recorded")

        return record

    import custseq.cli.data
    import custseq.pipelines.evaluate
    import custseq.pipelines.plan
    import custseq.pipelines.predict
    import custseq.pipelines.pretrain
    import custseq.pipelines.score
    import custseq.pipelines.validate

    monkeypatch.setattr(custseq.pipelines.validate, "validate", recorder("validate", 1))
    monkeypatch.setattr(custseq.cli.data, "prepare", recorder("prepare", 1))
    monkeypatch.setattr(custseq.pipelines.predict, "predict", recorder("predict", 1))
    monkeypatch.setattr(custseq.pipelines.score, "score", recorder("score", 2))
    monkeypatch.setattr(custseq.pipelines.evaluate, "evaluate", recorder("evaluate", 1))
    monkeypatch.setattr(custseq.pipelines.pretrain, "pretrain", recorder("pretrain", 1))
    monkeypatch.setattr(custseq.pipelines.pretrain, "embed_customers", recorder("embed", 2))
    monkeypatch.setattr(custseq.pipelines.plan, "replan", recorder("plan", 1))
    return seen


def _run(args: list[str], seen: dict[str, Any], name: str) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "recorded" in result.output, result.output + repr(result.exception)
    return seen[name]


@pytest.fixture
def data(tmp_path: Path) -> str:
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,ts,amount\na,2023-01-01,10\n")
    return str(path)


@pytest.mark.parametrize("command", ["validate", "prepare", "predict", "evaluate", "pretrain", "embed"])
def test_without_a_file_the_defaults_hold(command, data, recorded, tmp_path):
    extra = ["--model", str(tmp_path)] if command == "embed" else []
    out = [] if command == "validate" else ["--out", str(tmp_path / "o")]
    cfg = _run([command, data, *out, *extra], recorded, command)
    default = RunConfig()
    assert cfg.window == default.window and cfg.sequence == default.sequence
    assert cfg.model.encoder == default.model.encoder and cfg.audit.recalibrate_groups is False


@pytest.mark.parametrize("command", ["validate", "prepare", "predict", "evaluate", "pretrain", "embed"])
def test_the_file_overrides_the_defaults(command, data, config_file, recorded, tmp_path):
    extra = ["--model", str(tmp_path)] if command == "embed" else []
    out = [] if command == "validate" else ["--out", str(tmp_path / "o")]
    cfg = _run([command, data, *out, "--config", str(config_file), *extra], recorded, command)
    assert cfg.window.horizon_days == 30 and cfg.window.as_of == dt.date(2023, 5, 31)
    assert cfg.sequence.max_events == 12 and cfg.validation.max_abs_amount == 500.0
    assert cfg.model.encoder.d_model == 16 and cfg.model.encoder.n_layers == 1
    assert cfg.model.pretrain.mask_rate == 0.3 and cfg.model.pretraining is False
    assert cfg.actions.k == 2 and cfg.report.interactive is False and cfg.audit.recalibrate_groups is True


def test_pretrain_honours_the_files_model_section(data, config_file, recorded, tmp_path):
    # the bug this guards: the pretrain flags rebuilt the model configs and dropped the file's [model]
    cfg = _run(["pretrain", data, "--out", str(tmp_path / "m"), "--config", str(config_file)], recorded, "pretrain")
    training = cfg.model.pretrain_training
    assert (training.epochs, training.batch_size) == (2, 32)
    assert training.patience == 15  # what the file leaves unsaid keeps pretrain's own default (TrainConfig's)


def test_pretrain_flags_override_the_file(data, config_file, recorded, tmp_path):
    args = ["pretrain", data, "--out", str(tmp_path / "m"), "--config", str(config_file), "--d-model", "32",
            "--epochs", "5", "--mask-rate", "0.15", "--objectives", "masked", "--horizon", "45d"]  # fmt: skip
    cfg = _run(args, recorded, "pretrain")
    assert cfg.model.encoder.d_model == 32 and cfg.model.encoder.d_ff == 64
    assert cfg.model.encoder.n_layers == 1  # from the file: no flag given
    assert cfg.model.pretrain_training.epochs == 5 and cfg.model.pretrain_training.batch_size == 32
    assert cfg.model.pretrain.mask_rate == 0.15 and cfg.model.pretrain.objectives == ("masked",)
    assert cfg.window.horizon_days == 45 and cfg.window.as_of == dt.date(2023, 5, 31)


def test_pretrain_defaults_train_longer_than_predicts_step(data, recorded, tmp_path):
    cfg = _run(["pretrain", data, "--out", str(tmp_path / "m")], recorded, "pretrain")
    assert cfg.model.pretrain_training.epochs == 30 != RunConfig().model.pretrain_training.epochs


@pytest.mark.parametrize("command", ["validate", "prepare", "predict", "evaluate", "embed"])
def test_flags_override_the_file(command, data, config_file, recorded, tmp_path):
    extra = ["--model", str(tmp_path)] if command == "embed" else []
    out = [] if command == "validate" else ["--out", str(tmp_path / "o")]
    horizon = [] if command in ("validate", "embed") else ["--horizon", "45d"]
    args = [command, data, *out, "--config", str(config_file), "--as-of", "2023-04-30", *horizon, *extra]
    cfg = _run(args, recorded, command)
    assert cfg.window.as_of == dt.date(2023, 4, 30)
    assert cfg.window.horizon_days == (30 if not horizon else 45)


def test_prepare_and_validate_options_reach_their_sections(data, config_file, recorded, tmp_path):
    prepared = _run(["prepare", data, "--out", str(tmp_path / "o"), "--config", str(config_file), "--max-events",
                     "20", "--stride", "7", "--token", "line"], recorded, "prepare")  # fmt: skip
    assert (prepared.sequence.max_events, prepared.sequence.token, prepared.window.stride_days) == (20, "line", 7)
    checked = _run(["validate", data, "--config", str(config_file), "--max-abs-amount", "99", "--forbid-future"],
                   recorded, "validate")  # fmt: skip
    assert checked.validation.max_abs_amount == 99 and checked.validation.future_rows == "quarantine"


def test_predict_seed_and_no_pretraining(data, recorded, tmp_path):
    cfg = _run(["predict", data, "--out", str(tmp_path / "o"), "--seed", "7", "--no-pretraining"], recorded, "predict")
    assert cfg.model.pretraining is False
    assert cfg.model.pretrain_training.seed == cfg.model.finetune_training.seed == 7


def test_score_uses_the_models_settings_unless_given(data, config_file, recorded, tmp_path):
    assert _run(["score", data, "--model", str(tmp_path)], recorded, "score") is None
    given = _run(["score", data, "--model", str(tmp_path), "--config", str(config_file)], recorded, "score")
    assert given.sequence.max_events == 12


def test_plan_options_override_the_file(config_file, recorded, tmp_path):
    actions = _run(["plan", str(tmp_path), "--config", str(config_file), "--k", "4"], recorded, "plan")
    assert (actions.k, actions.retention_threshold) == (4, 0.7)
