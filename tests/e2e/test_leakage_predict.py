"""The past decides the predictions: rows after the as-of date — appended or put first, with new types in the extra
columns, new categories, timestamps written other ways, odd and new ids — leave every prediction as of that date
unchanged, with a fixed seed (issue 17, point 1; the same property for ``prepare``, byte for byte, is
tests/validate/test_future_rows_property.py).
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.e2e.test_predict import _shop_rows
from tests.fuzz.corpus import TINY_TOML

import custseq
from custseq.config import load_config

AS_OF = dt.date(2023, 10, 15)
HEADER = "customer_id,ts,amount,product,discount,region"


def past_lines() -> list[str]:
    """The tiny shop up to the as-of date: day-first timestamps, float-looking ids, a numeric and a categorical
    extra column."""
    rng = random.Random(1)
    rows = _shop_rows()
    rows = rows[rows["ts"] <= AS_OF]
    return [
        f"{1000 + int(r.customer_id[1:])}.0,{r.ts:%d/%m/%Y} {rng.randrange(8, 20):02d}:00,{r.amount},{r.product},"
        f"{rng.choice(['0', '0.1', '0.25'])},{rng.choice(['north', 'south'])}"
        for r in rows.itertuples()
    ]


def later_lines(seed: int, n: int = 300) -> list[str]:
    """Rows after the as-of date that would change the schema if they had a say."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        ts = dt.datetime(2023, 10, 17, 9) + dt.timedelta(days=rng.randrange(400), minutes=rng.randrange(900))
        epoch = str(int(ts.replace(tzinfo=dt.UTC).timestamp()))
        # Month-first only where the day is over 12: "11/05/2023" (5 November) IS 11 May in this day-first file, a
        # past row as far as any reader can tell; "11/25/2023" is no date here.
        month_first = f"{ts:%m/%d/%Y %H:%M}" if ts.day > 12 else f"{ts:%d/%m/%Y %H:%M}"
        written = rng.choice([f"{ts:%d/%m/%Y %H:%M}", month_first, ts.isoformat(), f"{ts:%m/%d/%y}", epoch,
                              f"{ts:%Y-%m-%d} Europe/Paris", "soon"])  # fmt: skip
        customer = rng.choice(["1003.0", "1017.0", "X1", "17.5", "NULL", "", "=1+1", f"new{rng.randrange(50)}"])
        amount = rng.choice(["12.5", "N/A", "1_000", "-3", "1e30", f"{rng.uniform(1, 300):.2f}"])
        product = rng.choice(["p1", "p9", "brand-new", "", "NULL"])
        discount = rng.choice(["N/A", "ten", "", "0.5", "1e3"])
        region = rng.choice(["west", "east", f"r{rng.randrange(1000)}", "", "north"])
        lines.append(",".join([customer, written, amount, product, discount, region]))
    return lines


def predictions(lines: list[str], folder: Path) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(TINY_TOML)
    path = folder / "tx.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    config = load_config(folder / "tiny.toml")
    return custseq.predict(path, horizon="60d", as_of=str(AS_OF), config=config, seed=0)


@pytest.fixture(scope="module")
def past_only(tmp_path_factory) -> pd.DataFrame:
    return predictions(past_lines(), tmp_path_factory.mktemp("past"))


def differences(past: pd.DataFrame, mutated: pd.DataFrame) -> list[str]:
    """The columns (or the customers) in which two prediction tables differ; floats compared to 1e-9."""
    if list(mutated.columns) != list(past.columns) or mutated["customer_id"].tolist() != past["customer_id"].tolist():
        return ["the columns or the customers"]
    found = []
    for column in past.columns:
        a, b = past[column], mutated[column]
        if pd.api.types.is_float_dtype(a):
            same = np.allclose(b.to_numpy(), a.to_numpy(), rtol=0, atol=1e-9, equal_nan=True)
        else:
            same = b.astype(str).tolist() == a.astype(str).tolist()
        if not same:
            found.append(column)
    return found


@pytest.mark.slow  # three predicts with a tiny model
@pytest.mark.parametrize("at_top", [False, True], ids=["appended", "put-first"])
def test_later_rows_change_no_prediction_as_of_the_past(past_only, at_top, tmp_path):
    later = later_lines(seed=int(at_top))
    mutated = predictions(later + past_lines() if at_top else past_lines() + later, tmp_path)
    assert len(past_only) == 200 and past_only["churn_probability"].nunique() > 100  # a model, not a constant
    assert differences(past_only, mutated) == []
