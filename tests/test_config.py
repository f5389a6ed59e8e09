"""Config: horizons, dates, TOML/JSON files and the checks every config dataclass runs on construction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import pytest

from custseq.config import (
    ColumnsConfig,
    EngineConfig,
    FeatureConfig,
    RunConfig,
    SequenceConfig,
    ValidationConfig,
    WindowConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_date,
    parse_horizon,
    with_seed,
)
from custseq.errors import ConfigError

# --- parse_horizon ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, days",
    [
        ("90d", 90),
        ("90", 90),
        (" 90 D ", 90),
        ("13w", 91),
        ("6m", 183),  # 6 × 365.25/12 = 182.625
        ("1m", 30),  # 30.44
        ("1y", 365),
        ("2y", 730),
        ("1.5w", 10),  # 10.5 rounds half to even
        (30, 30),
        (1, 1),
    ],
)
def test_parse_horizon(text, days):
    assert parse_horizon(text) == days


@pytest.mark.parametrize("text", ["ninety", "90x", "-5d", "", "d", "90 days", True])
def test_parse_horizon_refuses_text_it_does_not_understand(text):
    message = f"horizon {text!r} is not understood; write a number of days or a number with a unit, e.g. 90d"
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_horizon(text)


@pytest.mark.parametrize("text", [0, -3, "0d", "0.4d"])
def test_parse_horizon_refuses_less_than_a_day(text):
    with pytest.raises(ConfigError, match=re.escape(f"horizon must be at least one day, got {text!r}")):
        parse_horizon(text)


# --- parse_date ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "1997-09-30",
        " 1997-09-30 ",
        "1997-09-30 23:59:00",
        "1997-09-30T10:00",
        dt.date(1997, 9, 30),
        dt.datetime(1997, 9, 30, 23, 59),
    ],
)
def test_parse_date(value):
    assert parse_date(value) == dt.date(1997, 9, 30)


@pytest.mark.parametrize("value", ["30/09/1997", "1997-13-01", "yesterday", ""])
def test_parse_date_refuses_other_formats_naming_the_setting(value):
    with pytest.raises(
        ConfigError, match=re.escape(f"as-of {value!r} is not a date; write it as YYYY-MM-DD, e.g. 1997-09-30")
    ):
        parse_date(value, "as-of")


def test_parse_date_refuses_trailing_garbage():
    with pytest.raises(ConfigError):
        parse_date("1997-09-301")


# --- load_config --------------------------------------------------------------------------------------------------

TOML_TEXT = """
[columns]
detect = false

[columns.transactions]
customer_id = "CustomerID"
amount = "Quantity*UnitPrice"

[columns.events]
ts = "When"

[validation]
max_abs_amount = 1e6
duplicates = "quarantine"
future_rows = "quarantine"
currencies = ["GBP", "EUR"]
ts_format = "%d/%m/%Y"

[window]
as_of = "2011-12-09"
horizon_days = "13w"
stride_days = 30

[features]
recent_windows_days = [7, 30]

[sequence]
max_events = 64
token = "line"

[engine]
threads = 2
memory_limit = "2GB"
"""

EXPECTED = RunConfig(
    columns=ColumnsConfig(
        transactions={"customer_id": "CustomerID", "amount": "Quantity*UnitPrice"},
        events={"ts": "When"},
        detect=False,
    ),
    validation=ValidationConfig(
        max_abs_amount=1e6,
        duplicates="quarantine",
        future_rows="quarantine",
        currencies=("GBP", "EUR"),
        ts_format="%d/%m/%Y",
    ),
    window=WindowConfig(as_of=dt.date(2011, 12, 9), horizon_days=91, stride_days=30),
    features=FeatureConfig(recent_windows_days=(7, 30)),
    sequence=SequenceConfig(max_events=64, token="line"),
    engine=EngineConfig(threads=2, memory_limit="2GB"),
)


def test_load_config_from_toml(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text(TOML_TEXT)
    assert load_config(path) == EXPECTED


def test_load_config_from_json(tmp_path):
    path = tmp_path / "custseq.json"
    path.write_text(json.dumps(config_to_dict(EXPECTED)))
    assert load_config(path) == EXPECTED


def test_empty_toml_file_gives_the_defaults(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("")
    assert load_config(path) == RunConfig()


def test_config_round_trips_through_a_dict():
    data = config_to_dict(EXPECTED)
    assert data["window"]["as_of"] == "2011-12-09"
    assert data["validation"]["currencies"] == ["GBP", "EUR"]
    assert config_from_dict(RunConfig, json.loads(json.dumps(data))) == EXPECTED


def test_unknown_top_level_section_names_the_allowed_ones(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[windows]\nhorizon_days = 30\n")
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"unknown setting(s) ['windows'] in {path}; "
            "allowed: ['actions', 'audit', 'baselines', 'columns', 'engine', 'features', 'model', 'profit', "
            "'prospects', 'report', 'segments', 'sequence', 'text', 'validation', 'value_score', 'window']"
        ),
    ):
        load_config(path)


def test_unknown_nested_key_names_the_section_and_the_allowed_keys(tmp_path):
    path = tmp_path / "custseq.json"
    path.write_text(json.dumps({"validation": {"max_amount": 5}}))
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"unknown setting(s) ['max_amount'] in {path}.validation; allowed: ['currencies', 'duplicates', "
            "'far_past_years', 'future_rows', 'max_abs_amount', 'max_date', 'max_days_after_as_of', 'min_date', "
            "'mixed_currencies', 'ts_format']"
        ),
    ):
        load_config(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("validation = 3\n", "{path}.validation must be a table of settings (key = value), got an integer"),
        (
            "[features]\nrecent_windows_days = 7\n",
            "{path}: [features] recent_windows_days must be a list of integers, got 7 (an integer)",
        ),
        ('[engine]\nthreads = "two"\n', "{path}: [engine] threads must be an integer, got 'two' (a string)"),
        ('[window]\nhorizon_days = "soon"\n', "{path}: [window] horizon_days: horizon 'soon' is not understood"),
        ('[window]\nas_of = "09/12/2011"\n', "{path}.window.as_of '09/12/2011' is not a date"),
        ('[validation]\nduplicates = "sometimes"\n', "duplicates must be auto, quarantine or keep, got 'sometimes'"),
        ("[window]\nhorizon_days = 0\n", "horizon must be at least one day, got 0"),
    ],
)
def test_bad_values_in_a_file_are_config_errors(tmp_path, text, message):
    path = tmp_path / "custseq.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message.format(path=path))):
        load_config(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[model.finetune_training]\nepochs = "3"\n', "[model.finetune_training] epochs must be an integer, got '3'"),
        ("[model.finetune_training]\nepochs = 2.5\n", "[model.finetune_training] epochs must be an integer, got 2.5"),
        (
            "[model.finetune_training]\nepochs = true\n",
            "[model.finetune_training] epochs must be an integer, got True (true/false)",
        ),
        ('[validation]\nmax_abs_amount = "big"\n', "[validation] max_abs_amount must be a number, got 'big'"),
        (
            "[validation]\nmax_abs_amount = [1, 2]\n",
            "[validation] max_abs_amount must be a number, got [1, 2] (a list)",
        ),
        ('[window]\nhorizon_days = "ninety"\n', "[window] horizon_days: horizon 'ninety' is not understood"),
        ("[window]\nhorizon_days = [90]\n", "[window] horizon_days: horizon [90] is not understood"),
        ("[report]\nenabled = 1\n", "[report] enabled must be true or false, got 1 (an integer)"),
        ("[sequence]\ntoken = 3\n", "[sequence] token must be one of 'auto', 'order', 'line', got 3"),
        ("[columns.transactions]\namount = 3\n", "[columns.transactions] amount must be a string, got 3"),
        ('[features]\nrecent_windows_days = [7, "x"]\n', "[features] recent_windows_days[1] must be an integer"),
        ("[profit]\ncurrency = {a = 1}\n", "[profit] currency must be a string, got {'a': 1} (a table)"),
    ],
)
def test_a_wrong_type_names_the_key_and_the_type(tmp_path, text, message):
    path = tmp_path / "custseq.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_config(path)


def test_numbers_are_converted_to_the_fields_type(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_text("[validation]\nmax_abs_amount = 1000\n")
    value = load_config(path).validation.max_abs_amount
    assert value == 1000.0 and isinstance(value, float)


@pytest.mark.parametrize("suffix, text", [(".toml", "a = {}\n"), (".json", '{{"a": {}}}')])
def test_a_config_nested_too_deep_is_a_config_error(tmp_path, suffix, text):
    n = 100_000
    path = tmp_path / f"custseq{suffix}"
    path.write_text(text.format("[" * n + "]" * n))
    with pytest.raises(ConfigError, match="nested too deep"):
        load_config(path)


def test_a_config_that_is_not_utf8_says_encoding(tmp_path):
    path = tmp_path / "custseq.toml"
    path.write_bytes('[profit]\ncurrency = "€"\n'.encode("cp1252"))
    with pytest.raises(ConfigError, match="not UTF-8 text \\(an encoding problem\\); save it as UTF-8"):
        load_config(path)


def test_missing_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config file {path}: No such file or directory")):
        load_config(path)


@pytest.mark.parametrize("name, kind", [("custseq.toml", "toml"), ("custseq.json", "json"), ("custseq", "TOML")])
def test_unparsable_config_file_names_its_format(tmp_path, name, kind):
    path = tmp_path / name
    path.write_text("[window\nhorizon_days = ")
    with pytest.raises(ConfigError, match=re.escape(f"config file {path} is not valid {kind}: ")):
        load_config(path)


# --- dataclass checks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (ValidationConfig, {"max_abs_amount": 0}, "max_abs_amount must be above 0 and at most 1e+12, got 0"),
        (
            ValidationConfig,
            {"max_abs_amount": float("nan")},
            "max_abs_amount must be above 0 and at most 1e+12, got nan",
        ),
        (ValidationConfig, {"duplicates": "drop"}, "duplicates must be auto, quarantine or keep, got 'drop'"),
        (ValidationConfig, {"future_rows": "drop"}, "future_rows must be keep or quarantine, got 'drop'"),
        (WindowConfig, {"horizon_days": 0}, "horizon_days must be 1 to 36525 (100 years), got 0"),
        (WindowConfig, {"horizon_days": 36_500_000}, "horizon_days must be 1 to 36525 (100 years), got 36500000"),
        (WindowConfig, {"stride_days": 0}, "stride_days must be 1 to 36525 (100 years), got 0"),
        (WindowConfig, {"as_of": dt.date(9999, 12, 31)}, "as_of 9999-12-31 is not a plausible date"),
        (WindowConfig, {"max_train_windows": 0}, "max_train_windows must be at least 1, got 0"),
        (WindowConfig, {"min_history_days": -1}, "min_history_days must be 0 to 36525 (100 years), got -1"),
        (FeatureConfig, {"recent_windows_days": ()}, "recent_windows_days must be positive days, got ()"),
        (FeatureConfig, {"recent_windows_days": (0, 30)}, "recent_windows_days must be positive days, got (0, 30)"),
        (SequenceConfig, {"max_events": 0}, "max_events must be at least 1, got 0"),
        (SequenceConfig, {"token": "word"}, "token must be auto, order or line, got 'word'"),
        (SequenceConfig, {"min_count": 0}, "min_count, max_vocab and shard_customers must be at least 1"),
        (SequenceConfig, {"shard_customers": 0}, "min_count, max_vocab and shard_customers must be at least 1"),
    ],
)
def test_invalid_settings_are_refused_on_construction(cls, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cls(**kwargs)


def test_boundary_settings_are_accepted():
    assert WindowConfig(horizon_days=1, stride_days=1, max_train_windows=1, min_history_days=0).horizon_days == 1
    assert SequenceConfig(max_events=1, min_count=1, max_vocab=1, shard_customers=1).max_events == 1
    assert FeatureConfig(recent_windows_days=(1,)).recent_windows_days == (1,)


def test_configs_are_frozen():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.window = WindowConfig(horizon_days=30)
    changed = dataclasses.replace(cfg, window=WindowConfig(horizon_days=30))
    assert (cfg.window.horizon_days, changed.window.horizon_days) == (90, 30)


def test_predictor_candidates_are_checked():
    from custseq.config import PredictorConfig

    with pytest.raises(ConfigError, match=r"unknown or none \['xgb'\]; choose from network, boosted"):
        PredictorConfig(candidates=("network", "xgb"))
    with pytest.raises(ConfigError, match="blend_step"):
        PredictorConfig(blend_step=0.7)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_numpy_and_torch_cannot_take_is_a_config_error(seed):
    with pytest.raises(ConfigError, match="seed must be a whole number from 0 to 4294967295"):
        with_seed(RunConfig(), seed)
