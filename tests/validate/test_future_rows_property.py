"""The past decides the schema: no change to rows after the as-of date — added at the top or the bottom, with new
types, timestamp formats, category values or ids — changes a byte of what ``prepare`` writes for the past.

A property test (hypothesis, derandomised): a small day-first CSV shop is prepared as of 2023-06-30, then again
with arbitrary later rows; every window's features, sequences and labels (all label periods end by the as-of
date), the daily spend and the vocabulary must be equal.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import custseq
from custseq.config import FeatureConfig, RunConfig, WindowConfig

AS_OF = dt.date(2023, 6, 30)
FIRST_LATER_DAY = dt.datetime(2023, 7, 2)  # a day after the cutoff: no zone offset brings a later row into the past
HEADER = "customer_id,ts,amount,discount,region"
REGIONS = ("north", "south", "east")
CONFIG = RunConfig(
    window=WindowConfig(as_of=AS_OF, horizon_days=30, max_train_windows=2),
    features=FeatureConfig(btyd=False),
)


def past_lines() -> list[str]:
    """A day-first shop with float-looking ids and numeric and categorical extras, up to the as-of date."""
    rng = random.Random(0)
    start = dt.datetime(2023, 1, 1, 9)
    lines = []
    for i in range(240):
        ts = start + dt.timedelta(days=rng.randrange(181), minutes=rng.randrange(600))
        if i == 0:
            ts = dt.datetime(2023, 6, 30, 18)  # the last day of the data is the as-of date
        customer = f"{1000 + rng.randrange(30)}.0"
        amount = round(rng.uniform(1, 90), 2)
        discount, region = rng.choice(("0", "0.1", "0.25")), rng.choice(REGIONS)
        lines.append(f"{customer},{ts:%d/%m/%Y %H:%M},{amount},{discount},{region}")
    return lines


def written(ts: dt.datetime, how: str) -> str:
    """A later timestamp written one way or another (all of them read, under their own format, after as-of)."""
    return {
        "day_first": f"{ts:%d/%m/%Y %H:%M}",
        "month_first": f"{ts:%m/%d/%Y %H:%M}",
        "iso": ts.isoformat(sep=" "),
        "iso_zone": f"{ts:%Y-%m-%dT%H:%M:%S}+05:30",
        "zone_name": f"{ts:%Y-%m-%d %H:%M:%S} Europe/Paris",
        "compact": f"{ts:%Y%m%d}",
        "epoch_s": str(int(ts.replace(tzinfo=dt.UTC).timestamp())),
        "epoch_ms": str(int(ts.replace(tzinfo=dt.UTC).timestamp()) * 1000),
        "two_digit_year": f"{ts:%m/%d/%y}",
        "dotted": f"{ts:%d.%m.%Y}",
        "text": "soon",
        "empty": "",
    }[how]


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzXYZ_-", min_size=1, max_size=8)
later_row = st.tuples(
    st.one_of(st.sampled_from(["1003.0", "1017.0", "X1", "17.5", "NULL", "N/A", "2000.0", ""]), WORD),
    st.datetimes(min_value=FIRST_LATER_DAY, max_value=dt.datetime(2025, 12, 31)),
    st.sampled_from(
        [
            "day_first",
            "month_first",
            "iso",
            "iso_zone",
            "zone_name",
            "compact",
            "epoch_s",
            "epoch_ms",
            "two_digit_year",
            "dotted",
            "text",
            "empty",
        ]
    ),
    st.one_of(st.sampled_from(["12.5", "N/A", "1_000", "", "-3", "inf"]), WORD),
    st.one_of(st.sampled_from(["N/A", "0.5", "", "1e3", "ten"]), WORD),
    st.one_of(st.sampled_from(["north", "west", "", "NULL"]), WORD),
)


def later_line(row: tuple[str, dt.datetime, str, str, str, str]) -> str:
    customer, ts, how, amount, discount, region = row
    return ",".join([customer, written(ts, how), amount, discount, region])


def prepared_outputs(lines: list[str], folder: Path) -> dict[str, pa.Table | str]:
    path = folder / "tx.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    result = custseq.prepare(path, out=folder / "out", config=CONFIG)
    windows = [result.plan.scoring, *result.plan.training]
    assert all(w.cutoff + dt.timedelta(days=w.horizon_days) <= result.plan.scoring.cutoff for w in windows[1:])
    outputs: dict[str, pa.Table | str] = {"vocab": (result.out_dir / "vocab.json").read_text()}
    for w in windows:
        outputs[f"{w.key}/features"] = result.features(w)
        outputs[f"{w.key}/sequences"] = result.sequences(w)
        if w in result.plan.training:
            outputs[f"{w.key}/labels"] = result.labels(w)
    outputs["daily_spend"] = pq.read_table(next(result.out_dir.glob("daily*.parquet")))
    return outputs


@pytest.fixture(scope="module")
def past_only() -> dict[str, pa.Table | str]:
    with tempfile.TemporaryDirectory() as folder:
        return prepared_outputs(past_lines(), Path(folder))


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(later_row, min_size=1, max_size=40), at_top=st.booleans())
def test_later_rows_change_nothing_prepared_for_the_past(past_only, rows, at_top):
    later = [later_line(r) for r in rows]
    lines = later + past_lines() if at_top else past_lines() + later
    with tempfile.TemporaryDirectory() as folder:
        outputs = prepared_outputs(lines, Path(folder))
    assert outputs.keys() == past_only.keys()
    for name, table in past_only.items():
        assert outputs[name] == table if isinstance(table, str) else outputs[name].equals(table), name
