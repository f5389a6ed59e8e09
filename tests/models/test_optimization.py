"""The optimizer set-up: the warm-up + cosine schedule, parameter groups and the clipped step, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from custseq.models.optimization import clip_and_step, lr_factor, optimizer_param_groups

# --- schedule ---------------------------------------------------------------------------------------------


def test_lr_factor_hand_computed():
    # 20 steps, 2 of warm-up: 0, 1/2, then 0.5 (1 + cos(π (s - 2) / 18)).
    assert [lr_factor(s, 20, 2) for s in (0, 1, 2)] == [0.0, 0.5, 1.0]
    assert lr_factor(5, 20, 2) == pytest.approx(0.5 * (1 + math.sqrt(3) / 2))  # p = 1/6
    assert lr_factor(11, 20, 2) == pytest.approx(0.5)  # p = 1/2
    assert lr_factor(20, 20, 2) == 0.0 and lr_factor(25, 20, 2) == 0.0
    assert lr_factor(0, 1, 0) == 1.0  # no warm-up: the first step gets the full rate


# --- parameter groups -------------------------------------------------------------------------------------


def test_weight_decay_spares_biases_norms_and_embeddings():
    model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups = optimizer_param_groups(model, 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert [tuple(p.shape) for p in groups[0]["params"]] == [(4, 4)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for n, p in model.named_parameters() if n != "1.weight"}


def test_discriminative_learning_rates_scale_the_named_modules():
    model = torch.nn.Sequential()
    model.add_module("encoder", torch.nn.Linear(3, 3))
    model.add_module("head", torch.nn.Linear(3, 1))
    groups = optimizer_param_groups(model, 0.01, 1e-3, {"encoder.": 0.1})
    by_lr = {}
    for g in groups:
        by_lr.setdefault(g["lr"], []).extend(g["params"])
    assert sorted(by_lr) == [pytest.approx(1e-4), 1e-3]
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in by_lr[min(by_lr)]} == encoder_ids
    assert {g["weight_decay"] for g in groups if any(p.ndim < 2 for p in g["params"])} == {0.0}


# --- clipping ---------------------------------------------------------------------------------------------


def test_clipping_caps_the_update_at_clip_norm():
    lin = torch.nn.Linear(4, 1)
    sgd = torch.optim.SGD(lin.parameters(), lr=1.0)
    constant = torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: 1.0)

    def step(w_grad: float, b_grad: float, clip: float) -> tuple[float, torch.Tensor]:
        before = torch.cat([p.detach().flatten().clone() for p in lin.parameters()])
        lin.weight.grad = torch.full_like(lin.weight, w_grad)
        lin.bias.grad = torch.full_like(lin.bias, b_grad)
        norm = clip_and_step(lin.parameters(), sgd, constant, None, clip)
        after = torch.cat([p.detach().flatten() for p in lin.parameters()])
        assert all(p.grad is None for p in lin.parameters())
        return norm.item(), before - after

    norm, delta = step(3.0, 8.0, clip=2.0)  # ‖g‖ = √(4·9 + 64) = 10 → scaled by 2/10
    assert norm == pytest.approx(10.0)
    assert delta.norm().item() == pytest.approx(2.0, rel=1e-5)
    assert torch.allclose(delta, torch.tensor([0.6, 0.6, 0.6, 0.6, 1.6]), atol=1e-5)
    norm, delta = step(0.25, 0.5, clip=2.0)  # ‖g‖ = √(0.25 + 0.25) < 2: untouched
    assert norm == pytest.approx(math.sqrt(0.5))
    assert torch.allclose(delta, torch.tensor([0.25, 0.25, 0.25, 0.25, 0.5]))
