"""The currency of the data: from the currency column, else from the amount column's name; never guessed."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

import custseq
from custseq.config import ColumnsConfig, ProfitConfig, RunConfig, ValidationConfig
from custseq.errors import SchemaError


def _rows(currencies: list[str] | None, amount_column: str = "amount") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i % 40}" for i in range(n)],
            "ts": [dt.date(2023, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 300, n)],
            amount_column: rng.gamma(2.0, 10.0, n).round(2),
        }
    )
    if currencies is not None:
        frame["currency"] = [currencies[i % len(currencies)] for i in range(n)]
    return frame


def _prepared(frame: pd.DataFrame, tmp_path, config: RunConfig | None = None):
    return custseq.prepare(frame, out=tmp_path / "prepared", horizon="30d", config=config).summary


def test_one_code_in_the_currency_column_names_the_currency(tmp_path):
    summary = _prepared(_rows(["eur"]), tmp_path)
    assert summary.config.profit.currency == "EUR"
    assert "amounts are in EUR (the currency column)" in summary.notes


def test_several_codes_are_an_error_naming_them_and_the_ways_out(tmp_path):
    with pytest.raises(SchemaError) as e:
        _prepared(_rows(["EUR", "EUR", "usd"]), tmp_path)
    message = str(e.value)
    assert "transactions hold amounts in 2 currencies (EUR 67%, USD 33%)" in message
    assert "convert the amounts to one currency first" in message
    assert '[validation] mixed_currencies = "allow"' in message


def test_several_codes_allowed_name_none_and_say_so(tmp_path):
    config = RunConfig(validation=ValidationConfig(mixed_currencies="allow"))
    summary = _prepared(_rows(["EUR", "EUR", "USD"]), tmp_path, config)
    assert summary.config.profit.currency is None
    [note] = [n for n in summary.notes if "several currencies" in n]
    assert "EUR 67%, USD 33%" in note and "convert them to one currency" in note


def test_only_rows_up_to_the_as_of_date_count(tmp_path):
    frame = _rows(["EUR"])
    later = frame.head(30).assign(ts=dt.date(2024, 1, 1), currency="USD")
    summary = custseq.prepare(
        pd.concat([frame, later]), out=tmp_path / "prepared", horizon="30d", as_of="2023-10-27"
    ).summary
    assert summary.config.profit.currency == "EUR"


def test_a_common_code_in_the_amount_column_name(tmp_path):
    config = RunConfig(columns=ColumnsConfig(transactions={"amount": "Revenue (GBP)"}))
    summary = _prepared(_rows(None, "Revenue (GBP)"), tmp_path, config)
    assert summary.config.profit.currency == "GBP"
    assert "amounts are in GBP (from the column name 'Revenue (GBP)')" in summary.notes


@pytest.mark.parametrize("name", ["amount", "amount_all", "total_try"])  # ALL, TRY: words, not read as codes
def test_no_currency_is_invented(tmp_path, name):
    config = RunConfig(columns=ColumnsConfig(transactions={"amount": name}))
    summary = _prepared(_rows(None, name), tmp_path, config)
    assert summary.config.profit.currency is None
    assert not any("currenc" in n or "amounts are in" in n for n in summary.notes)


def test_the_users_currency_wins(tmp_path):
    config = RunConfig(profit=ProfitConfig(currency="CHF"))
    summary = _prepared(_rows(["EUR"]), tmp_path, config)
    assert summary.config.profit.currency == "CHF"
