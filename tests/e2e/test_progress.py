"""`progress=True` in the Python API: stages with their durations and training epochs with the time left, on stderr.

Under pytest stderr is not a terminal, so the display speaks in plain lines, as in a script piped to a file.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

import custseq
from custseq.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig
from custseq.errors import ConfigError
from custseq.progress import Note

TINY = RunConfig(
    model=ModelConfig(
        encoder=EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, max_events=8),
        pretrain_training=TrainConfig(epochs=2, batch_size=64),
    )
)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """120 customers over a year, each buying every 8, 20 or 60 days on average until they stop."""
    rng = np.random.default_rng(5)
    out = []
    for c in range(120):
        day, gap, end = int(rng.integers(0, 60)), float(rng.choice([8, 20, 60])), int(rng.integers(120, 365))
        while day < end:
            ts = dt.date(2023, 1, 1) + dt.timedelta(days=day)
            out.append({"customer_id": f"k{c:03d}", "ts": ts, "amount": 20.0, "product": f"p{int(rng.integers(6))}"})
            day += max(1, int(rng.exponential(gap)))
    return pd.DataFrame(out)


@pytest.fixture
def not_a_terminal(monkeypatch):
    """stderr as pytest captures it, whatever the environment forces (FORCE_COLOR in some CI)."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


def test_pretrain_with_progress_prints_its_stages_and_epochs_with_the_time_left(rows, tmp_path, capsys, not_a_terminal):
    heard: list[str] = []
    custseq.pretrain(rows, out=tmp_path / "m", horizon="60d", config=TINY, progress=True, on_stage=heard.append)
    said = capsys.readouterr().err.splitlines()
    assert said[0] == "validating tables…" and re.fullmatch(r"✓ validating tables  [\d.]+ s", said[1])
    assert "pre-training the sequence encoder…" in said
    epochs = [line for line in said if line.startswith("pre-training: epoch")]
    assert len(epochs) == 2 and re.search(r"; up to [\d.]+ s left$", epochs[0])  # the last epoch has none left
    assert re.fullmatch(r"✓ pre-training the sequence encoder  [\d.]+ s", said[-1])
    stages = [m for m in heard if not isinstance(m, Note)]
    assert stages == [line.removesuffix("…") for line in said if line.endswith("…")]  # the listener hears each one

    custseq.pretrain(rows, out=tmp_path / "m2", horizon="60d", config=TINY)  # progress=False, the default
    assert capsys.readouterr().err == ""


def test_evaluate_with_progress_times_each_method_once_per_seed(rows, capsys, not_a_terminal):
    custseq.evaluate(rows, horizon="60d", config=TINY, seeds=[0, 1], methods=["logistic", "random-forest"],
                     progress=True)  # fmt: skip
    said = capsys.readouterr().err.splitlines()
    started = [line for line in said if line.startswith("seed ")]
    # logistic does not depend on the seed: it runs once, on the first seed
    assert started == ["seed 0: logistic…", "seed 0: random-forest…", "seed 1: random-forest…"]
    assert re.fullmatch(r"✓ seed 1: random-forest  [\d.]+ s", said[-1])


def test_prepare_refuses_a_function_as_progress_and_names_on_stage(rows, tmp_path):
    with pytest.raises(ConfigError, match="pass a function of each stage as on_stage"):
        custseq.prepare(rows, out=tmp_path, progress=print)  # type: ignore[arg-type]  # its type before on_stage
