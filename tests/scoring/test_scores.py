"""The value score: hand-computed raw scores and boosts, monotonicity, bounds, the formula, ValueScoreConfig."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from custseq.config import RunConfig, ValueScoreConfig, config_from_dict, config_to_dict, load_config
from custseq.errors import ConfigError, SchemaError
from custseq.scoring.scores import (
    hyperscore,
    rank_normalise,
    raw_value_score,
    score_spread,
    value_score_formula,
    value_score_range,
    value_scores,
)


@pytest.fixture
def predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": [10, 11, 12, 13], "churn_probability": [0.1, 0.5, 0.9, 0.3], "clv_expected": [10, 40, 20, 20]},
        index=list("wxyz"),
    )


@pytest.fixture
def features() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [13, 12, 11, 10], "purchase_days_last_h": [0, 1, 3, 0]})


def test_rank_normalise_shares_ties_and_tops_at_one():
    assert rank_normalise([10, 20, 20, 40]).tolist() == [0.25, 0.625, 0.625, 1.0]


def test_raw_score_matches_the_hand_computation(predictions, features):
    # ranks / 4:  value [0.25, 1, 0.625, 0.625], retention 1 − churn [1, 0.5, 0.25, 0.75],
    # engagement (matched by id: 0, 3, 1, 0) [0.375, 1, 0.75, 0.375]; weights 0.5, 0.3, 0.2
    raw = raw_value_score(predictions, features, ValueScoreConfig())
    assert raw == pytest.approx([0.5, 0.85, 0.5375, 0.6125])


def test_weights_count_only_relative_to_each_other(predictions, features):
    halves = raw_value_score(predictions, features, ValueScoreConfig(0.5, 0.5, 0.0))
    ones = raw_value_score(predictions, features, ValueScoreConfig(1.0, 1.0, 0.0))
    assert halves == pytest.approx(ones)
    assert halves == pytest.approx([(0.25 + 1) / 2, (1 + 0.5) / 2, (0.625 + 0.25) / 2, (0.625 + 0.75) / 2])


@pytest.mark.parametrize(
    "raw, expected",
    [
        (1.0, 150.0),  # σ(0) = 1/2
        (0.5, 120.0),  # σ(2 · ln 0.5) = 0.25 / 1.25 = 0.2
        (0.25, 100 * (1 + 0.0625 / 1.0625)),
        (0.8, 100 * (1 + 0.64 / 1.64)),
    ],
)
def test_hyperscore_matches_the_hand_computation(raw, expected):
    assert hyperscore([raw])[0] == pytest.approx(expected, rel=1e-12)


def test_hyperscore_with_other_parameters():
    # β = 1, γ = 0, κ = 1: 100 · (1 + V / (V + 1)); V = 1 gives 150, V = 0.25 gives 120
    cfg = ValueScoreConfig(beta=1.0, gamma=0.0, kappa=1.0)
    assert hyperscore([1.0, 0.25], cfg) == pytest.approx([150.0, 120.0])
    assert value_score_range(cfg) == pytest.approx((100.0, 150.0))


def test_the_default_score_spreads_customers_where_the_old_one_piled_them_at_100():
    """A grocery-like log: most customers rarely buy (engagement 0), values heavy-tailed, churn spread."""
    rng = np.random.default_rng(4)
    n = 5000
    predictions = pd.DataFrame({"customer_id": np.arange(n), "churn_probability": rng.beta(2, 5, n),
                                "clv_expected": rng.lognormal(3, 1.5, n) * (rng.uniform(size=n) > 0.3)})  # fmt: skip
    engagement = np.where(rng.uniform(size=n) < 0.6, 0, rng.poisson(4, n))
    features = pd.DataFrame({"customer_id": np.arange(n), "purchase_days_last_h": engagement})
    shown = value_scores(predictions, features).round(2)  # as predictions.csv and the report show them
    assert shown.value_counts(normalize=True).iloc[0] <= 0.01
    spread = score_spread(value_scores(predictions, features), predictions["clv_expected"])
    assert spread.modal_share <= 0.01 and spread.rank_correlation_with_value > 0.7
    old = ValueScoreConfig(beta=5.0, gamma=-math.log(2), kappa=2.0)
    assert value_scores(predictions, features, old).round(2).value_counts(normalize=True).iloc[0] > 0.1


def test_hyperscore_rises_strictly_with_the_raw_score():
    grid = np.linspace(0.1, 1.0, 91)
    assert (np.diff(hyperscore(grid)) > 0).all()


def test_scores_stay_within_the_bounds_and_the_top_customer_reaches_the_maximum():
    low, high = value_score_range()
    assert (low, high) == (100.0, pytest.approx(150.0))
    rng = np.random.default_rng(0)
    n = 200
    predictions = pd.DataFrame(
        {"customer_id": np.arange(n), "churn_probability": rng.uniform(size=n), "clv_expected": np.arange(n) * 1.0}
    )
    predictions.loc[n - 1, "churn_probability"] = 0.0  # the most valuable, most loyal, most engaged customer
    features = pd.DataFrame({"customer_id": np.arange(n), "purchase_days_last_h": np.arange(n)})
    scores = value_scores(predictions, features)
    assert ((scores > low) & (scores <= high)).all()
    assert scores.iloc[-1] == pytest.approx(high)


def test_value_scores_follow_the_predictions_index(predictions, features):
    scores = value_scores(predictions, features)
    assert scores.name == "value_score" and list(scores.index) == list("wxyz")
    assert scores.to_numpy() == pytest.approx(hyperscore([0.5, 0.85, 0.5375, 0.6125]))
    assert scores.idxmax() == "x"


@pytest.mark.parametrize("raw", [0.0, 1.5, float("nan")])
def test_hyperscore_refuses_raw_scores_outside_zero_one(raw):
    with pytest.raises(ValueError, match=re.escape("raw value scores must be in (0, 1]; 1 are not")):
        hyperscore([0.5, raw])


def test_a_missing_engagement_column_is_named(predictions, features):
    with pytest.raises(SchemaError, match=re.escape("lacks column(s) ['purchase_days_last_h']")):
        value_scores(predictions, features.drop(columns="purchase_days_last_h"))


def test_the_formula_shows_the_parameters():
    assert value_score_formula() == (
        "value_score = 100 · [1 + σ(2 · ln V + 0)^1], σ(x) = 1 / (1 + e^(−x)); "
        "V = 0.5 · r(clv_expected) + 0.3 · r(1 − churn_probability) + 0.2 · r(purchase_days_last_h), "
        "r = average rank / number of customers"
    )
    other = value_score_formula(ValueScoreConfig(2.0, 1.0, 1.0, beta=3.0, gamma=0.5, kappa=1.5))
    assert other.startswith("value_score = 100 · [1 + σ(3 · ln V + 0.5)^1.5]")
    assert "V = 0.5 · r(clv_expected) + 0.25 · r(1 − churn_probability) + 0.25 · r(purchase_days_last_h)" in other


def test_value_score_config_defaults():
    cfg = ValueScoreConfig()
    assert (cfg.value_weight, cfg.retention_weight, cfg.engagement_weight) == (0.5, 0.3, 0.2)
    assert (cfg.beta, cfg.gamma, cfg.kappa) == (2.0, 0.0, 1.0)
    assert RunConfig().value_score == cfg


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"value_weight": -0.1}, "value score weights must be >= 0 with a positive sum"),
        ({"value_weight": 0, "retention_weight": 0, "engagement_weight": 0}, "with a positive sum"),
        ({"beta": 0.0}, "beta and kappa must be > 0 for the score to rise with V, got beta=0.0, kappa=1.0"),
        ({"kappa": -1.0}, "got beta=2.0, kappa=-1.0"),
        ({"gamma": float("inf")}, "gamma must be a finite number, got inf"),
    ],
)
def test_bad_value_score_settings_are_refused(setting, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ValueScoreConfig(**setting)


def test_a_toml_value_score_section_changes_only_what_it_names(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[value_score]\nbeta = 3\nengagement_weight = 0.0\n")
    cfg = load_config(path).value_score
    assert (cfg.beta, cfg.engagement_weight, cfg.value_weight, cfg.kappa) == (3, 0.0, 0.5, 1.0)


def test_a_bad_toml_value_score_value_is_a_config_error(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text('[value_score]\nkappa = "two"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: [value_score] kappa must be a number, got 'two'")):
        load_config(path)


def test_value_score_round_trips_through_a_dict():
    cfg = RunConfig(value_score=ValueScoreConfig(0.6, 0.4, 0.0, beta=4.0))
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg
