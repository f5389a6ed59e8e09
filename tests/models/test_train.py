"""The training loop: schedule, accumulation, clipping, early stopping, exact resume and DDP, on a toy regression."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from custseq.config import TrainConfig
from custseq.errors import ArtifactError, ConfigError
from custseq.models.checkpoints import CHECKPOINT_FILE, load_checkpoint
from custseq.models.distributed import shard_indices
from custseq.models.history import LOG_FILE
from custseq.models.optimization import lr_factor
from custseq.models.train import train

TRUE_W = torch.tensor([1.5, -2.0, 0.5])
TRUE_B = 0.3
TIMING = ("seconds", "items_per_s")


@dataclass
class Batch:
    x: torch.Tensor  # (B, 3)
    y: torch.Tensor  # (B,)
    scripted_loss: float | None = None  # early-stopping test: the validation loss to report

    def to(self, device: torch.device) -> Batch:
        return Batch(self.x.to(device), self.y.to(device), self.scripted_loss)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Output:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float]


class Regression(torch.nn.Module):
    """y ≈ x·w + b, zero-initialised (no global RNG), with optional input dropout to exercise the seeds."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(3, 1)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
        self.snapshots: list[torch.Tensor] = []  # weights seen by each scripted validation

    def forward(self, batch: Batch) -> Output:
        pred = self.linear(self.dropout(batch.x)).squeeze(-1)  # (B,)
        loss = torch.nn.functional.mse_loss(pred, batch.y)
        if batch.scripted_loss is not None:
            self.snapshots.append(self.linear.weight.detach().clone())
            loss = torch.tensor(batch.scripted_loss)
        return Output(loss, {"mae": (pred - batch.y).abs().mean(), "batch_items": float(len(batch))})


def make_data(n: int, seed: int = 0, noise: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x @ TRUE_W + TRUE_B + noise * torch.randn(n, generator=g)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int | None):
    """make_train_batches over (x, y): shuffled per epoch with shard_indices, or in order when seed is None."""

    def make(epoch: int, rank: int, world_size: int) -> list[Batch]:
        idx = torch.arange(len(y)) if seed is None else torch.from_numpy(shard_indices(len(y), epoch, seed, 0, 1))
        return [Batch(x[idx[i : i + batch_size]], y[idx[i : i + batch_size]]) for i in range(0, len(idx), batch_size)]

    return make


def whole(x: torch.Tensor, y: torch.Tensor):
    return lambda rank, world_size: [Batch(x, y)]


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 16, "learning_rate": 0.05, "weight_decay": 0.0, "patience": 50, "device": "cpu"}
    return TrainConfig(**(base | kw))


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


# --- learning ---------------------------------------------------------------------------------------------


def test_loss_falls_and_weights_approach_the_truth():
    x, y = make_data(128)
    model = Regression()
    c = cfg(epochs=40, seed=0, min_delta=0.0)
    result = train(model, batches(x, y, c.batch_size, c.seed), None, c, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 1e-3 * losses[0]
    assert torch.allclose(model.linear.weight[0], TRUE_W, atol=0.01)
    assert model.linear.bias.item() == pytest.approx(TRUE_B, abs=0.01)
    # Without validation the training loss is monitored; with min_delta 0 the best epoch is the lowest one.
    assert result.best_val_loss == min(losses) and result.best_epoch == int(np.argmin(losses))
    assert all(h["val_loss"] is None for h in result.history)
    assert result.epochs_run == 40 and not result.stopped_early
    assert not model.training  # handed back in eval mode


# --- schedule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps_per_epoch", [None, 8])
def test_logged_lr_follows_warmup_then_cosine(steps_per_epoch):
    x, y = make_data(32)
    c = cfg(epochs=5, batch_size=8, grad_accumulation=2, warmup_fraction=0.2, learning_rate=0.1)
    result = train(Regression(), batches(x, y, 8, None), None, c, steps_per_epoch=steps_per_epoch, progress=False)
    # 4 batches, 2 optimizer steps per epoch; the schedule is sized from the 4 counted (10 steps in all)
    # or the 8 told (20 steps), with 20% warm-up. The logged lr is that of each epoch's last step.
    total = 5 * math.ceil((steps_per_epoch or 4) / 2)
    expected = [0.1 * lr_factor(2 * e + 1, total, int(0.2 * total)) for e in range(5)]
    assert [h["lr"] for h in result.history] == pytest.approx(expected, rel=1e-12)
    assert expected[0] == pytest.approx(0.1 * 1 / (0.2 * total))  # the warm-up ramp is visible


# --- accumulation and clipping ---------------------------------------------------------------------------


def test_accumulating_two_batches_equals_one_double_batch():
    x, y = make_data(32)
    small, big = Regression(), Regression()
    r_small = train(small, batches(x, y, 8, None), None, cfg(epochs=3, grad_accumulation=2), progress=False)
    r_big = train(big, batches(x, y, 16, None), None, cfg(epochs=3, grad_accumulation=1), progress=False)
    for a, b in zip(small.parameters(), big.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.equal(small.linear.weight, torch.zeros(1, 3))  # it did learn
    assert [h["train_loss"] for h in r_small.history] == pytest.approx([h["train_loss"] for h in r_big.history])
    assert [h["lr"] for h in r_small.history] == [h["lr"] for h in r_big.history]


def test_history_reports_grad_norm_before_clipping():
    x, y = make_data(32)
    result = train(Regression(), batches(x, y, 32, None), None, cfg(epochs=1, clip_norm=1e-3), progress=False)
    # One step from zero weights: the gradient of the MSE is far larger than the clip.
    g = -2 * torch.cat([(x * y[:, None]).mean(0), y.mean()[None]])
    assert result.history[0]["grad_norm"] == pytest.approx(g.norm().item(), rel=1e-5)


# --- early stopping ---------------------------------------------------------------------------------------


def test_early_stopping_stops_at_patience_and_restores_the_best_weights():
    x, y = make_data(32)
    script = iter([1.0, 0.8, 0.85, 0.79995, 0.9, 0.1, 0.1])  # 0.79995 is within min_delta 1e-4 of 0.8
    model = Regression()
    c = cfg(epochs=7, patience=3, min_delta=1e-4)
    result = train(model, batches(x, y, 8, None), lambda r, w: [Batch(x, y, next(script))], c, progress=False)
    assert result.stopped_early and result.epochs_run == 5  # bad epochs 2, 3, 4
    assert result.best_epoch == 1 and result.best_val_loss == pytest.approx(0.8)
    assert [h["val_loss"] for h in result.history] == pytest.approx([1.0, 0.8, 0.85, 0.79995, 0.9])
    assert torch.equal(model.linear.weight, model.snapshots[1])
    assert not torch.equal(model.linear.weight, model.snapshots[4])


# --- reproducibility, checkpoints, resume -----------------------------------------------------------------


def run_dropout(seed: int, out_dir: Path | None = None, fail_at: int | None = None, resume: bool = False):
    x, y = make_data(48)
    c = cfg(epochs=4, seed=seed, batch_size=8, grad_accumulation=2, learning_rate=0.02)
    make = batches(x, y, 8, seed)

    def maybe_fail(epoch: int, rank: int, world_size: int) -> list[Batch]:
        if epoch == fail_at:
            raise RuntimeError("simulated crash")
        return make(epoch, rank, world_size)

    model = Regression(dropout=0.2)
    result = train(model, maybe_fail, whole(x, y), c, out_dir=out_dir, resume=resume, progress=False)
    return model, result


def test_same_seed_same_weights_other_seed_other_weights():
    a, ra = run_dropout(seed=0)
    b, rb = run_dropout(seed=0)
    c, _ = run_dropout(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert without_timing(ra.history) == without_timing(rb.history)
    assert not torch.equal(a.linear.weight, c.linear.weight)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    straight, r_straight = run_dropout(seed=0, out_dir=tmp_path / "straight")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_dropout(seed=0, out_dir=tmp_path / "resumed", fail_at=2)
    assert len((tmp_path / "resumed" / LOG_FILE).read_text().splitlines()) == 2
    resumed, r_resumed = run_dropout(seed=0, out_dir=tmp_path / "resumed", resume=True)

    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters(), strict=True))
    assert without_timing(r_straight.history) == without_timing(r_resumed.history)
    assert (r_resumed.best_epoch, r_resumed.epochs_run) == (r_straight.best_epoch, 4)
    a, b = (
        load_checkpoint(tmp_path / "straight" / CHECKPOINT_FILE),
        load_checkpoint(tmp_path / "resumed" / CHECKPOINT_FILE),
    )
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # last epoch's weights, not only best
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    moments = [(a["optimizer"]["state"][i]["exp_avg_sq"], b["optimizer"]["state"][i]["exp_avg_sq"]) for i in (0, 1)]
    assert all(torch.equal(m, n) for m, n in moments)
    lines = [json.loads(s) for s in (tmp_path / "resumed" / LOG_FILE).read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [0, 1, 2, 3]
    assert [e["train_loss"] for e in lines] == [h["train_loss"] for h in r_straight.history]

    # Resuming a finished run trains nothing more and hands back the same best weights.
    again, r_again = run_dropout(seed=0, out_dir=tmp_path / "resumed", fail_at=0, resume=True)
    assert r_again.epochs_run == 4 and torch.equal(again.linear.weight, resumed.linear.weight)


def test_checkpoint_is_plain_data_and_the_log_has_one_line_per_epoch(tmp_path):
    model, result = run_dropout(seed=0, out_dir=tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)  # no arbitrary pickles
    assert state["next_epoch"] == 4 and state["best_epoch"] == result.best_epoch
    assert torch.equal(state["best_state"]["linear.weight"], model.linear.weight)
    assert set(state["rng"][0]) == {"torch", "cuda", "numpy", "python"}
    assert [h["epoch"] for h in state["history"]] == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE, LOG_FILE]  # no .tmp left behind
    lines = [json.loads(s) for s in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert without_timing(lines) == without_timing(result.history)
    assert {"train_mae", "val_mae", "grad_norm"} <= set(lines[0])
    # Metrics are item-weighted means: 48 items in batches of 8, validated as one batch of 48.
    assert (lines[0]["train_batch_items"], lines[0]["val_batch_items"]) == (8.0, 48.0)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_checkpoint_raises_artifact_error_naming_the_file(tmp_path, damage):
    run_dropout(seed=0, out_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint")
    with pytest.raises(ArtifactError, match=r"checkpoint .*checkpoint\.pt is corrupted"):
        run_dropout(seed=0, out_dir=tmp_path, resume=True)


def test_a_checkpoint_linked_to_a_device_is_refused_unread(tmp_path):
    from custseq.models.checkpoints import load_checkpoint

    (tmp_path / CHECKPOINT_FILE).symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match="is not a regular file"):
        load_checkpoint(tmp_path / CHECKPOINT_FILE)


def test_resume_with_other_settings_is_refused(tmp_path):
    run_dropout(seed=0, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"other training settings \(seed: 0 -> 1\)"):
        run_dropout(seed=1, out_dir=tmp_path, resume=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"resume": True}, "resume=True needs out_dir"), ({"steps_per_epoch": 0}, "steps_per_epoch must be >= 1")],
)
def test_bad_arguments_raise_config_error(kwargs, message):
    x, y = make_data(8)
    with pytest.raises(ConfigError, match=message):
        train(Regression(), batches(x, y, 8, None), None, cfg(), progress=False, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_config_error():
    x, y = make_data(8)
    with pytest.raises(ConfigError, match="'cuda' asks for CUDA, which is not available"):
        train(Regression(), batches(x, y, 8, None), None, cfg(device="cuda"), progress=False)


def test_progress_bar_and_log_lines(caplog):
    x, y = make_data(32)
    with caplog.at_level(logging.INFO, logger="custseq.models.train"):
        result = train(Regression(), batches(x, y, 8, 0), whole(x, y), cfg(epochs=2), description="toy")
    assert result.epochs_run == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["toy 1/2", "toy 2/2"]


@pytest.fixture
def not_a_terminal(monkeypatch):
    """stderr as pytest captures it, whatever the environment forces (FORCE_COLOR in some CI)."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


def test_progress_off_a_terminal_is_a_line_per_epoch_with_the_time_left(capsys, not_a_terminal):
    x, y = make_data(32)
    train(Regression(), batches(x, y, 8, 0), whole(x, y), cfg(epochs=3), description="toy")
    said = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in said] == ["toy: epoch 1/3", "toy: epoch 2/3", "toy: epoch 3/3"]
    assert re.fullmatch(
        r"toy: epoch 1/3 in [\d.]+ s, loss [\d.]+, validation loss [\d.]+; up to [\d.]+ s left", said[0]
    )
    assert "left" not in said[2]  # nothing left after the last epoch

    train(Regression(), batches(x, y, 8, 0), whole(x, y), cfg(epochs=3), description="toy", progress=False)
    assert capsys.readouterr().err == ""


def test_progress_says_when_training_stops_early(capsys, not_a_terminal):
    x, y = make_data(32)
    script = iter([1.0, 1.0, 1.0])
    train(Regression(), batches(x, y, 8, None), lambda r, w: [Batch(x, y, next(script))], cfg(epochs=5, patience=2),
          description="toy")  # fmt: skip
    said = capsys.readouterr().err.splitlines()
    assert said[-1] == "toy: no improvement for 2 epochs, stopped early" and len(said) == 4


# --- DDP --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # 6-13 s on 2 CPU cores, nearly all of it three processes importing torch
def test_torchrun_two_gloo_ranks_agree_and_only_rank0_writes(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    results.mkdir()
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    worker = Path(__file__).with_name("ddp_worker.py")
    # --standalone: a local rendezvous on a free port, so parallel test runs do not collide.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker)]
    done = subprocess.run([*cmd, str(out), str(results)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    r0, r1 = (torch.load(results / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    assert torch.equal(r0["val_loss"], r1["val_loss"]) and r0["best_epoch"] == r1["best_epoch"] == 7
    assert r0["train_loss"][-1] < 0.05 * r0["train_loss"][0]
    assert sorted(p.name for p in (out / "rank0").iterdir()) == [CHECKPOINT_FILE, LOG_FILE]
    assert not (out / "rank1").exists()
    assert load_checkpoint(out / "rank0" / CHECKPOINT_FILE)["world_size"] == 2


def test_early_stopping_follows_the_score_function(tmp_path):
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.4])  # best at epoch 1; patience 2 stops after epoch 3
    weights_at = []

    def score(model):
        weights_at.append(model.linear.weight.detach().clone())
        return next(scores)

    x, y = make_data(64)
    model = Regression()
    result = train(model, batches(x, y, 16, seed=0), whole(x, y), cfg(epochs=5, patience=2), progress=False,
                   score_fn=score)  # fmt: skip
    assert result.best_epoch == 1 and result.epochs_run == 4 and result.stopped_early
    assert [h["val_score"] for h in result.history] == [0.5, 0.9, 0.7, 0.6]
    assert torch.equal(model.linear.weight, weights_at[1])
