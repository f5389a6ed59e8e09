"""Leakage safety (STYLE P6): changing the future never moves anything computed before it.

A realistic small dataset is prepared once; then every row at or after an instant M is perturbed
(amounts ×10, rows added for old and new customers, rows deleted, product values that exist only
in the future, events changed) and prepared again. For every window whose cutoff is at or before M,
features and sequences must be identical, and labels too when the window's label end is at or before M.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import custseq
from custseq.config import EngineConfig, FeatureConfig, RunConfig, SequenceConfig
from custseq.features.rfm import build_daily, build_features
from custseq.io.engine import connect
from custseq.sequences.build import read_sequences, write_sequences
from custseq.sequences.tokens import layout_for
from custseq.sequences.vocab import encode_tables, fit_vocab
from custseq.validate.tables import validate_tables
from custseq.windows import Window, cutoff_of

AS_OF = "2023-09-30"  # three months before the data end: the scoring window has observed labels too
# One DuckDB thread: with several, floating-point aggregates (the vocabulary's numeric statistics) can differ
# in the last bit from run to run on identical data, which is not what this test is about.
CONFIG = RunConfig(
    sequence=SequenceConfig(max_events=16, min_count=3, shard_customers=64), engine=EngineConfig(threads=1)
)
SCORING_CUTOFF = dt.datetime(2023, 10, 1)
VOCAB_CUTOFF = dt.datetime(2023, 7, 3)  # the latest training cutoff: t0 − 90 d


def make_data(seed: int = 0, n_customers: int = 300) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Transactions (orders of 1–3 lines), customer profiles and behaviour events over 2022–2023.

    Orders, quantities, costs, products, categories, refunds and times of day: every feature group has data.
    """
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp("2022-01-01"), pd.Timestamp("2023-12-31 23:00")
    products = [f"P{i:02d}" for i in range(40)]
    weights = 1 / np.arange(1, 41)
    weights /= weights.sum()
    tx, customers, events = [], [], []
    order = 0
    for c in range(n_customers):
        cid = f"c{c:04d}"
        first = start + pd.Timedelta(days=int(rng.integers(0, 500)))
        span = (min(end, first + pd.Timedelta(days=int(rng.integers(30, 800)))) - first).total_seconds()
        times = sorted(first + pd.to_timedelta(rng.uniform(0, span, int(rng.poisson(6)) + 1), unit="s").floor("min"))
        customers.append(
            {
                "customer_id": cid,
                "signup_ts": first - pd.Timedelta(days=int(rng.integers(0, 60))),
                "country": str(rng.choice(["DE", "FR", "US"])),
                "age": float(rng.integers(18, 80)),
            }
        )
        for ts in times:
            order += 1
            channel = str(rng.choice(["web", "store", "app"]))
            for _ in range(int(rng.integers(1, 4))):
                product = str(rng.choice(products, p=weights))
                quantity = int(rng.integers(1, 4))
                amount = round(float(rng.gamma(2.0, 15.0)) * quantity, 2)
                tx.append(
                    {
                        "customer_id": cid,
                        "ts": ts,
                        "amount": amount,
                        "product": product,
                        "category": f"C{int(product[1:]) % 6}",
                        "channel": channel,
                        "quantity": quantity,
                        "order_id": f"o{order}",
                        "is_refund": bool(rng.random() < 0.05),
                        "cost": round(amount * 0.6, 2),
                    }
                )
        for _ in range(int(rng.poisson(5))):
            ts = first + pd.Timedelta(seconds=float(rng.uniform(0, span + 30 * 86400)))
            if ts <= end:
                event = str(rng.choice(["login", "view", "cart", "support"], p=[0.4, 0.4, 0.15, 0.05]))
                events.append({"customer_id": cid, "ts": ts.floor("min"), "event": event})
    return pd.DataFrame(tx), pd.DataFrame(customers), pd.DataFrame(events)


def perturb_future(
    tx: pd.DataFrame, customers: pd.DataFrame, events: pd.DataFrame, at: dt.datetime, seed: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Change every table at or after ``at`` only; rows before ``at`` keep their values and relative order."""
    rng = np.random.default_rng(seed)
    at = pd.Timestamp(at)
    tx = tx.copy()
    future = tx["ts"] >= at
    assert future.sum() > 50 and (~future).sum() > 50  # the test needs both a past and a future
    tx.loc[future, ["amount", "cost"]] *= 10
    labels = tx.index[future]
    tx.loc[labels[::5], ["product", "category"]] = ["NEW-P", "NEW-C"]  # values only in the future
    tx.loc[labels[1::11], "is_refund"] = True
    tx = tx.drop(labels[2::7])  # delete rows

    old = sorted(tx.loc[tx["ts"] < at, "customer_id"].unique())[:60]
    new = [f"z{i:03d}" for i in range(40)]
    added = []
    for i, cid in enumerate(old + new):
        ts = at if i % 4 == 0 else at + pd.Timedelta(minutes=int(rng.integers(0, 200 * 24 * 60)))  # some exactly at M
        for line in range(int(rng.integers(1, 4))):
            added.append(
                {
                    "customer_id": cid,
                    "ts": ts,
                    "amount": float(rng.integers(1, 500)),
                    "product": "NEW-P" if line == 0 else "P00",
                    "category": "NEW-C",
                    "channel": "kiosk",
                    "quantity": 2,
                    "order_id": f"future-{i}",
                    "is_refund": False,
                    "cost": 1.0,
                }
            )
    # New rows go first, so every row id of the old rows shifts; the old rows keep their relative order.
    tx = pd.concat([pd.DataFrame(added), tx], ignore_index=True)

    events = events.copy()
    ev_labels = events.index[events["ts"] >= at]
    events.loc[ev_labels[::3], "event"] = "future-only-event"
    events = events.drop(ev_labels[1::4])
    extra = pd.DataFrame(
        {
            "customer_id": old[:20] + new[:20],
            "ts": [at + pd.Timedelta(hours=3 * i) for i in range(40)],
            "event": ["login"] * 40,
        }
    )
    events = pd.concat([extra, events], ignore_index=True)
    signups = pd.DataFrame(
        {"customer_id": new, "signup_ts": [at] * len(new), "country": ["DE", "FR"] * 20, "age": [30.0] * len(new)}
    )
    return tx, pd.concat([customers, signups], ignore_index=True), events


def assert_same(before: pa.Table, after: pa.Table, what: str) -> None:
    assert before.column_names == after.column_names, what
    differing = [c for c in before.column_names if not before.column(c).equals(after.column(c))]
    assert before.num_rows == after.num_rows and not differing, f"{what}: columns {differing} changed"


def same_columns_but_event_types(before: pa.Table, after: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Both tables with the columns they share, once it is checked that only per-event-type columns differ."""
    per_type = re.compile(r"^(event_.+_(n|last_30d|last_h)|days_since_last_event_.+)$")
    differ = set(before.column_names) ^ set(after.column_names)
    assert all(per_type.match(c) for c in differ), differ
    shared = [c for c in before.column_names if c in after.column_names]
    return before.select(shared), after.select(shared)


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def base(data, tmp_path_factory):
    tx, customers, events = data
    out = tmp_path_factory.mktemp("base")
    return custseq.prepare(tx, out=out, customers=customers, events=events, as_of=AS_OF, horizon="90d", config=CONFIG)


def test_plan_is_the_expected_one(base):
    # The cutoffs below are the ones the perturbations are aimed at.
    assert base.plan.scoring.cutoff == SCORING_CUTOFF
    assert base.plan.vocab_cutoff == VOCAB_CUTOFF
    assert len(base.plan.training) >= 4
    assert base.summary.sequence.token == "order"
    assert base.summary.tables["transactions"].rows_quarantined == 0


@pytest.mark.parametrize(
    "at",
    [SCORING_CUTOFF, VOCAB_CUTOFF, dt.datetime(2023, 2, 15, 12, 34)],
    ids=["at-scoring-cutoff", "at-vocab-cutoff", "mid-window"],
)
def test_future_changes_do_not_move_the_past(data, base, tmp_path, at):
    assert_future_changes_do_not_move_the_past(data, base, tmp_path, at, CONFIG)


@pytest.fixture(scope="module")
def ranged(data):
    """The settings that prepare the data in four ranges of customers (custseq.pipelines.ranges)."""
    tx, customers, events = data
    rows = len(tx) + len(customers) + len(events)
    return dataclasses.replace(CONFIG, engine=dataclasses.replace(CONFIG.engine, range_rows=rows // 4 + 1))


@pytest.fixture(scope="module")
def ranged_base(data, ranged, tmp_path_factory):
    tx, customers, events = data
    out = tmp_path_factory.mktemp("ranged")
    said: list[str] = []
    prepared = custseq.prepare(
        tx, out=out, customers=customers, events=events, as_of=AS_OF, horizon="90d", config=ranged,
        on_stage=said.append,
    )  # fmt: skip
    assert any("(4 ranges of customers)" in str(s) for s in said), said
    return prepared


@pytest.mark.parametrize(
    "at", [SCORING_CUTOFF, dt.datetime(2023, 2, 15, 12, 34)], ids=["at-scoring-cutoff", "mid-window"]
)
def test_future_changes_do_not_move_the_past_prepared_by_ranges(data, ranged_base, ranged, tmp_path, at):
    assert_future_changes_do_not_move_the_past(data, ranged_base, tmp_path, at, ranged)


def assert_future_changes_do_not_move_the_past(data, base, tmp_path, at: dt.datetime, config: RunConfig) -> None:
    """Rows changed, added and removed at and after ``at`` leave every output made before ``at`` as it was."""
    tx, customers, events = perturb_future(*data, at=at)
    after = custseq.prepare(
        tx, out=tmp_path, customers=customers, events=events, as_of=AS_OF, horizon="90d", config=config
    )
    assert after.plan.scoring == base.plan.scoring and after.plan.training == base.plan.training

    vocab_fixed = base.plan.vocab_cutoff <= at
    if vocab_fixed:
        assert after.vocab == base.vocab
        assert (tmp_path / "vocab.json").read_text() == (base.out_dir / "vocab.json").read_text()
        assert "NEW-P" not in after.vocab.values["product"]
    else:
        assert after.vocab != base.vocab  # fitted on every row up to the vocabulary cutoff, so it saw the change

    checked = {"features": 0, "sequences": 0, "labels": 0}
    for window in (base.plan.scoring, *base.plan.training):
        if window.cutoff <= at:
            before_f, after_f = base.features(window), after.features(window)
            if not vocab_fixed:  # which event types get columns is fitted with the vocabulary; their values are not
                before_f, after_f = same_columns_but_event_types(before_f, after_f)
            assert_same(before_f, after_f, f"features {window.key}")
            checked["features"] += 1
            if vocab_fixed:
                assert_same(base.sequences(window), after.sequences(window), f"sequences {window.key}")
                checked["sequences"] += 1
        if window.end <= at:
            assert_same(base.labels(window), after.labels(window), f"labels {window.key}")
            checked["labels"] += 1
    assert checked["features"] >= 3 and checked["labels"] >= 2
    assert checked["sequences"] >= (len(base.plan.training) if vocab_fixed else 0)

    # The perturbation is real: outputs that may see it did change.
    straddling = next(w for w in (base.plan.scoring, *base.plan.training) if w.cutoff <= at < w.end)
    assert not base.labels(straddling).equals(after.labels(straddling))
    later = [w for w in (base.plan.scoring, *base.plan.training) if w.cutoff > at]
    assert all(not base.features(w).equals(after.features(w)) for w in later)


def test_the_compared_features_hold_every_group(base):
    # The comparisons above are of whole tables; this makes sure they hold values of every feature group.
    features = base.features(base.plan.scoring)
    columns = [
        "transactions_last_365d", "spend_trend_7d", "overdue_ratio", "ipt_recent_mean", "weekday_entropy",
        "hour_entropy", "spend_cv", "basket_std_amount", "basket_mean_quantity", "product_repeat_rate",
        "product_entropy", "favourite_category_share", "category_entropy", "refund_rate", "profile_age",
        "n_events", "btyd_p_alive",
    ]  # fmt: skip
    empty = [c for c in columns if c not in features.column_names or features.column(c).null_count == len(features)]
    assert empty == []
    assert pc.max(features.column("hour_entropy")).as_py() > 0  # timestamps with a time of day


def test_vocab_is_fitted_before_the_latest_training_cutoff(base):
    assert base.vocab.fitted_before == VOCAB_CUTOFF.isoformat()
    assert base.summary.sequence.vocab_fitted_before == VOCAB_CUTOFF.isoformat()


def test_sequences_with_a_fixed_vocab_ignore_the_future(data, tmp_path):
    # With the vocabulary held fixed, sequences of any window depend only on rows before its cutoff,
    # even when the perturbation lies before the vocabulary cutoff.
    window = Window(dt.datetime(2023, 2, 15, 12, 34), 90)
    cfg = CONFIG.sequence
    out = {}
    vocab = None
    for name, tables in (("base", data), ("after", perturb_future(*data, at=window.cutoff))):
        con = connect(CONFIG.engine)
        clean = validate_tables(con, tables[0], events=tables[2]).tables
        tx, ev = clean["transactions"], clean["events"]
        if vocab is None:
            vocab = fit_vocab(con, layout_for(tx, ev, cfg.token), tx, ev, VOCAB_CUTOFF, cfg)
        else:
            encode_tables(con, vocab, tx, ev)
        n = build_features(con, tx, window, FeatureConfig()).num_rows
        out[name] = read_sequences(write_sequences(con, vocab, window, cfg, tmp_path / name, n))
    assert out["base"].num_rows > 100
    assert_same(out["base"], out["after"], "sequences")


def test_labels_and_features_cover_the_same_customers(base):
    for window in base.plan.training:
        ids = base.features(window).column("customer_id")
        assert ids.equals(base.labels(window).column("customer_id"))
        assert set(ids.to_pylist()) <= set(base.sequences(window).column("customer_id").to_pylist())


def test_future_row_with_time_of_day_does_not_change_past_duplicates():
    window = Window(cutoff_of(dt.date(2024, 2, 29)), 30)
    past = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-02-01", "2024-01-15"]),
            "amount": [10.0, 10.0, 20.0, 5.0],  # dates only, no order id: the identical pair is two purchases
        }
    )
    future = pd.DataFrame({"customer_id": ["b"], "ts": [pd.Timestamp("2024-03-15 12:30")], "amount": [1.0]})
    tables = []
    for df in (past, pd.concat([past, future], ignore_index=True)):
        con = connect()
        tx = validate_tables(con, df).tables["transactions"]
        tables.append(build_features(con, tx, window, FeatureConfig()))
        # As prepare does: the daily tables built once up to a later cutoff, which sees the time of day.
        daily = build_daily(con, tx, dt.datetime(2024, 4, 1))
        tables.append(build_features(con, tx, window, FeatureConfig(), daily=daily))
    assert tables[0].column("total_spend").to_pylist() == [40.0, 5.0]
    assert tables[0].column("hour_entropy").null_count == 2  # dates only before the cutoff: no hour of day
    for other in tables[1:]:
        assert_same(tables[0], other, "features")


def test_output_folders_hold_every_window(base):
    keys = sorted(p.name for p in Path(base.out_dir, "windows").iterdir())
    assert keys == sorted(w.key for w in (base.plan.scoring, *base.plan.training))
