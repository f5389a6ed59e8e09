"""The retention profit simulation: hand-computed profits and curves, the orderings' invariants, ProfitConfig."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest

from custseq.config import ProfitConfig, RunConfig, config_from_dict, config_to_dict, load_config
from custseq.errors import ConfigError, SchemaError
from custseq.scoring.profit import ORDERINGS, BestContact, contact_profit, retained_value, simulate_retention

# c = 1, f = 10, s = 0.5, t = 0.2
CAMPAIGN = ProfitConfig(contact_cost=1.0, offer_cost=10.0, save_rate=0.5, take_rate=0.2)


@pytest.fixture
def predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "churn_probability": [0.8, 0.5, 0.99, 0.05],
            "clv_expected": [20.0, 30.0, 0.1, 95.0],
        }
    )


# v = clv / (1 − p), the multiplier capped at 20:  a 20 / 0.2 = 100; b 30 / 0.5 = 60; c 0.1 · 20 = 2 (not 0.1 · 100);
# d 95 / 0.95 = 100.  π = p · s · v − c − f · (p · s + (1 − p) · t):
#   a: 0.8 · 0.5 · 100 − 1 − 10 · (0.4 + 0.2 · 0.2)     = 40 − 1 − 4.4    = 34.6
#   b: 0.5 · 0.5 · 60 − 1 − 10 · (0.25 + 0.5 · 0.2)     = 15 − 1 − 3.5    = 10.5
#   c: 0.99 · 0.5 · 2 − 1 − 10 · (0.495 + 0.01 · 0.2)   = 0.99 − 1 − 4.97 = −4.98
#   d: 0.05 · 0.5 · 100 − 1 − 10 · (0.025 + 0.95 · 0.2) = 2.5 − 1 − 2.15  = −0.65
VALUES = [100.0, 60.0, 2.0, 100.0]
PROFITS = [34.6, 10.5, -4.98, -0.65]


def test_retained_value_divides_by_retention_with_a_cap(predictions):
    value = retained_value(predictions["churn_probability"], predictions["clv_expected"], CAMPAIGN)
    assert value == pytest.approx(VALUES)
    assert retained_value([1.0], [3.0], CAMPAIGN) == pytest.approx([60.0])  # p = 1: the cap, not a division by 0


def test_contact_profit_matches_the_hand_computation(predictions):
    assert contact_profit(predictions["churn_probability"], VALUES, CAMPAIGN) == pytest.approx(PROFITS)


def test_without_take_rate_only_kept_customers_cost_an_offer():
    cfg = ProfitConfig(contact_cost=2.0, offer_cost=5.0, save_rate=0.4, take_rate=0.0)
    # 0.5 · 0.4 · 50 − 2 − 5 · 0.5 · 0.4 = 10 − 2 − 1 = 7; p = 0: nobody to keep, only the contact: −2
    assert contact_profit([0.5, 0.0], [50.0, 80.0], cfg) == pytest.approx([7.0, -2.0])


def test_the_curves_match_the_hand_computation(predictions):
    sim = simulate_retention(predictions, CAMPAIGN)
    curve = sim.curve
    assert list(curve.columns) == ["k", "share_contacted", *(f"profit_{o}" for o in ORDERINGS)]
    assert curve["k"].tolist() == [0, 1, 2, 3, 4]
    assert curve["share_contacted"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    # by saved value: a, b, d, c; by churn: c (0.99), a, b, d
    assert curve["profit_saved_value"].to_numpy() == pytest.approx([0, 34.6, 45.1, 44.45, 39.47])
    assert curve["profit_churn_probability"].to_numpy() == pytest.approx([0, -4.98, 29.62, 40.12, 39.47])
    assert curve["profit_random"].to_numpy() == pytest.approx([0, 9.8675, 19.735, 29.6025, 39.47])
    assert sim.contact_profit == pytest.approx(PROFITS)


def test_the_best_k_of_each_ordering(predictions):
    best = simulate_retention(predictions, CAMPAIGN).best
    assert best.keys() == set(ORDERINGS)
    assert best["saved_value"] == BestContact(k=2, profit=pytest.approx(45.1))
    assert best["churn_probability"] == BestContact(k=3, profit=pytest.approx(40.12))
    assert best["random"] == BestContact(k=4, profit=pytest.approx(39.47))


def test_the_random_curve_is_the_mean_over_every_order(predictions):
    profits = np.array(PROFITS)
    orders = list(itertools.permutations(range(4)))
    mean_curve = np.mean([np.concatenate([[0.0], np.cumsum(profits[list(o)])]) for o in orders], axis=0)
    assert simulate_retention(predictions, CAMPAIGN).curve["profit_random"].to_numpy() == pytest.approx(mean_curve)


def test_no_ordering_beats_the_saved_value_ordering():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 50
        predictions = pd.DataFrame(
            {"customer_id": np.arange(n), "churn_probability": rng.uniform(size=n), "clv_expected": rng.gamma(1, 30, n)}
        )
        sim = simulate_retention(predictions)
        best = sim.best["saved_value"]
        assert best.profit >= max(sim.best[o].profit for o in ORDERINGS)
        assert best.profit == pytest.approx(sim.contact_profit[sim.contact_profit > 0].sum())
        assert best.k == (sim.contact_profit > 0).sum()


def test_when_every_contact_loses_contacting_nobody_is_best(predictions):
    sim = simulate_retention(predictions, ProfitConfig(contact_cost=1000.0))
    assert all(sim.best[o] == BestContact(k=0, profit=0.0) for o in ORDERINGS)


def test_a_churn_probability_outside_zero_one_is_refused(predictions):
    predictions.loc[1, "churn_probability"] = np.nan
    with pytest.raises(SchemaError, match=re.escape("churn_probability must be a probability in [0, 1]; 1 row(s)")):
        simulate_retention(predictions)


def test_profit_config_defaults_follow_verbraken_2013():
    cfg = ProfitConfig()
    assert (cfg.contact_cost, cfg.offer_cost, cfg.save_rate, cfg.take_rate) == (1.0, 10.0, 0.3, 1.0)
    assert cfg.max_value_multiplier == 20.0
    assert RunConfig().profit == cfg


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"contact_cost": -1.0}, "contact_cost and offer_cost must be >= 0, got -1.0 and 10.0"),
        ({"save_rate": 1.5}, "save_rate must be a share in [0, 1], got 1.5"),
        ({"take_rate": -0.1}, "take_rate must be a share in [0, 1], got -0.1"),
        ({"max_value_multiplier": 0.5}, "max_value_multiplier must be at least 1, got 0.5"),
    ],
)
def test_bad_profit_settings_are_refused_with_the_value(setting, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ProfitConfig(**setting)


def test_a_toml_profit_section_changes_only_what_it_names(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[profit]\noffer_cost = 2.5\ntake_rate = 0.1\n")
    cfg = load_config(path).profit
    assert (cfg.offer_cost, cfg.take_rate, cfg.contact_cost, cfg.save_rate) == (2.5, 0.1, 1.0, 0.3)


def test_a_bad_toml_profit_value_is_a_config_error(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[profit]\nsave_rate = 2\n")
    with pytest.raises(ConfigError, match=re.escape("save_rate must be a share in [0, 1], got 2")):
        load_config(path)


def test_profit_round_trips_through_a_dict():
    cfg = RunConfig(profit=ProfitConfig(contact_cost=0.5, save_rate=0.2, take_rate=0.0))
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg


def test_the_value_heads_own_conditional_mean_is_the_value_if_retained():
    """clv_if_active (E[value | a purchase]) wins where finite; the capped ratio is the fallback."""
    cfg = ProfitConfig(contact_cost=1.0, offer_cost=10.0, save_rate=0.3, take_rate=1.0, max_value_multiplier=20.0)
    churn, clv = np.array([0.96, 0.5, 0.2]), np.array([16.0, 10.0, 40.0])
    own = np.array([50.0, np.nan, 45.0])
    assert retained_value(churn, clv, cfg, own) == pytest.approx([50.0, 20.0, 45.0])  # 10 / (1 − 0.5) = 20
    assert retained_value(churn, clv, cfg) == pytest.approx([320.0, 20.0, 50.0])  # 16 · 20 (the cap), 40 / 0.8
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "churn_probability": churn, "clv_expected": clv,
                          "clv_if_active": own})  # fmt: skip
    # π_a = 0.96 · 0.3 · 50 − 1 − 10 · (0.96 · 0.3 + 0.04 · 1) = 14.4 − 1 − 3.28 = 10.12
    assert simulate_retention(frame, cfg).contact_profit[0] == pytest.approx(10.12)


def test_the_value_if_retained_is_capped_by_the_customers_own_past_rate():
    cfg = ProfitConfig()
    churn, expected = np.array([0.97, 0.5, 0.5]), np.array([26.0, 40.0, 40.0])
    if_active = expected / np.maximum(1 - churn, 0.05)  # 520 for the near-certain leaver
    past = np.array([6.4, 300.0, np.nan])  # 39 a year over a 60-day horizon; a big spender; unknown
    value = retained_value(churn, expected, cfg, if_active, past)
    assert value.tolist() == pytest.approx([26.0, 80.0, 80.0])  # max(past, expected) caps only the first
    assert retained_value(churn, expected, cfg, if_active).tolist() == pytest.approx(if_active.tolist())


def test_amounts_carry_the_currency_when_it_is_set():
    from custseq.scoring.profit import money

    assert money(185566.4, "EUR") == "185,566 EUR" and money(185566.4, None) == "185,566"
    with pytest.raises(ConfigError, match="currency must be a short code"):
        ProfitConfig(currency="   ")
