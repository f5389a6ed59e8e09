"""BaselineConfig: its checks, and a ``[baselines]`` section of a config file."""

from __future__ import annotations

import re

import pytest

from custseq.config import BaselineConfig, RunConfig, config_from_dict, config_to_dict, load_config
from custseq.errors import ConfigError


def test_defaults_are_the_documented_settings():
    cfg = BaselineConfig()
    assert (cfg.lgbm_n_estimators, cfg.lgbm_learning_rate, cfg.lgbm_num_leaves) == (300, 0.05, 31)
    assert (cfg.cohort_cv, cfg.cohort_period, cfg.cv_folds) == (True, "month", 3)
    assert RunConfig().baselines == cfg


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"lgbm_n_estimators": 0}, "baseline settings {'lgbm_n_estimators': 0} must be at least 1"),
        ({"cv_max_rounds": -5}, "baseline settings {'cv_max_rounds': -5} must be at least 1"),
        ({"xgb_learning_rate": 0.0}, "xgb_learning_rate must be in (0, 1], got 0.0"),
        ({"lgbm_subsample": 1.5}, "lgbm_subsample must be in (0, 1], got 1.5"),
        ({"tweedie_variance_power": 2.0}, "tweedie_variance_power must be in (1, 2), got 2.0"),
        ({"n_jobs": 0}, "n_jobs must be -1 (all cores) or at least 1, got 0"),
        ({"cohort_period": "week"}, "cohort_period must be month or quarter, got 'week'"),
        ({"cv_folds": 1}, "cv_folds must be at least 2, got 1"),
        ({"smoothing_min_periods_trend": 3}, "smoothing_min_periods_trend must be at least 4"),
    ],
)
def test_bad_settings_are_refused_with_the_value(setting, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        BaselineConfig(**setting)


def test_a_toml_baselines_section_changes_only_what_it_names(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text('[baselines]\nlgbm_n_estimators = 500\ncohort_cv = false\ncohort_period = "quarter"\n')
    cfg = load_config(path).baselines
    assert (cfg.lgbm_n_estimators, cfg.cohort_cv, cfg.cohort_period) == (500, False, "quarter")
    assert cfg.xgb_n_estimators == BaselineConfig().xgb_n_estimators


def test_an_unknown_baselines_setting_is_named(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[baselines]\nlgbm_trees = 500\n")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['lgbm_trees'\] in .*\.baselines"):
        load_config(path)


def test_baselines_round_trip_through_a_dict():
    cfg = RunConfig(baselines=BaselineConfig(cv_folds=5, smoothing_period_days=28, n_jobs=2))
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg
