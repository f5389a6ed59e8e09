"""Churn and value losses and task weighting against hand-computed values and library oracles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from custseq.models.losses import (
    TaskWeighting,
    focal_loss,
    smooth_l1_log1p,
    uncertainty_weighted_loss,
    zero_inflated_lognormal_mean,
    zero_inflated_lognormal_nll,
    zero_inflated_lognormal_quantile,
)


def test_focal_loss_hand_computed():
    # positive at p = 0.5: 0.25 * 0.5^2 * ln 2
    assert focal_loss(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    # negative with logit 2: p_t = 1 - σ(2) = 0.1192029; 0.75 * 0.8807971^2 * 2.1269280 = 1.2375586
    assert focal_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(1.2375586, rel=1e-6)


def test_focal_loss_reduces_to_half_bce_and_respects_weights():
    logits, targets = torch.tensor([-1.0, 0.3, 2.5]), torch.tensor([0.0, 1.0, 1.0])
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    assert focal_loss(logits, targets, gamma=0.0, alpha=0.5).item() == pytest.approx(0.5 * bce.item())
    weight = torch.tensor([0.0, 1.0, 0.0])
    only_middle = focal_loss(logits[1:2], targets[1:2])
    assert focal_loss(logits, targets, weight=weight).item() == pytest.approx(only_middle.item())


def test_smooth_l1_on_log1p_hand_computed():
    value = torch.tensor([math.e - 1, 0.0, -5.0])  # log1p: 1, 0, and a net refund counted as 0
    loss = smooth_l1_log1p(torch.tensor([0.0, 3.0, 0.5]), value)
    assert loss.item() == pytest.approx((0.5 + 2.5 + 0.125) / 3)


def test_zero_inflated_lognormal_nll_hand_computed_and_against_torch():
    zero = zero_inflated_lognormal_nll(
        torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0])
    )
    assert zero.item() == pytest.approx(math.log(2))
    v = torch.tensor([math.e])
    positive = zero_inflated_lognormal_nll(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.0]), v)
    assert positive.item() == pytest.approx(math.log(2) + 1 + 0.5 * math.log(2 * math.pi))
    logit, mu, log_sigma = torch.tensor([0.7]), torch.tensor([2.0]), torch.tensor([-0.3])
    value = torch.tensor([12.5])
    oracle = -F.logsigmoid(logit) - torch.distributions.LogNormal(mu, log_sigma.exp()).log_prob(value)
    assert zero_inflated_lognormal_nll(logit, mu, log_sigma, value).item() == pytest.approx(oracle.item(), rel=1e-6)


def test_zero_inflated_lognormal_mean_and_quantiles():
    zeros = torch.zeros(1)
    assert zero_inflated_lognormal_mean(zeros, zeros, zeros).item() == pytest.approx(0.5 * math.exp(0.5))
    # P(value = 0) = 0.5: below it the quantile is 0; above, the lognormal's quantile at (q - 0.5) / 0.5
    assert zero_inflated_lognormal_quantile(zeros, zeros, zeros, 0.4).item() == 0.0
    assert zero_inflated_lognormal_quantile(zeros, zeros, zeros, 0.75).item() == pytest.approx(1.0, abs=1e-5)
    assert zero_inflated_lognormal_quantile(zeros, zeros, zeros, 0.9).item() == pytest.approx(
        math.exp(0.8416212), rel=1e-5
    )


def test_zero_inflated_lognormal_quantiles_match_sampling():
    generator = torch.Generator().manual_seed(0)
    logit, mu, log_sigma = torch.tensor([1.2]), torch.tensor([3.0]), torch.tensor([0.2])
    n = 200_000
    positive = torch.rand(n, generator=generator) < torch.sigmoid(logit)
    draws = torch.exp(mu + log_sigma.exp() * torch.randn(n, generator=generator)) * positive
    for level in (0.1, 0.5, 0.9):
        expected = torch.quantile(draws, level).item()
        got = zero_inflated_lognormal_quantile(logit, mu, log_sigma, level).item()
        assert got == pytest.approx(expected, rel=0.02, abs=1e-3)
    assert zero_inflated_lognormal_mean(logit, mu, log_sigma).item() == pytest.approx(draws.mean().item(), rel=0.01)


def test_uncertainty_weighting_hand_computed():
    losses, log_var = torch.tensor([1.0, 2.0]), torch.tensor([0.0, math.log(2)])
    # 0.5·1·1 + 0 + 0.5·(1/2)·2 + 0.5·ln 2
    assert uncertainty_weighted_loss(losses, log_var).item() == pytest.approx(1.0 + 0.5 * math.log(2))
    weighting = TaskWeighting(2, "uncertainty")
    with torch.no_grad():
        weighting.log_var.copy_(log_var)
    assert weighting(losses).item() == pytest.approx(1.0 + 0.5 * math.log(2))
    weighting(losses).backward()
    assert torch.allclose(weighting.log_var.grad, torch.tensor([0.5 - 0.5, 0.5 - 0.5 * 0.5 * 2]))


def test_fixed_and_variance_weighting_hand_computed():
    fixed = TaskWeighting(2, "fixed", fixed=(1.0, 0.5))
    assert fixed(torch.tensor([2.0, 4.0])).item() == pytest.approx(4.0)
    variance = TaskWeighting(2, "variance", momentum=0.5)
    variance.train()
    variance(torch.tensor([1.0, 1.0]))  # first losses set the mean; variance starts at 1
    combined = variance(torch.tensor([1.0, 3.0]))  # delta (0, 2): var = 0.5·1 + 0.25·(0, 4) = (0.5, 1.5)
    assert torch.allclose(variance.weights(), torch.tensor([1.5, 0.5]))  # 1/(2 var) = (1, 1/3), rescaled to sum 2
    assert combined.item() == pytest.approx(1.5 * 1.0 + 0.5 * 3.0)
    variance.eval()
    before = variance.weights().clone()
    variance(torch.tensor([10.0, 0.0]))
    assert torch.equal(variance.weights(), before)  # evaluation does not update the estimate


def test_unknown_weighting_is_refused():
    with pytest.raises(ValueError, match="uncertainty, fixed or variance"):
        TaskWeighting(2, "magic")
