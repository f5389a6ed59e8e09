"""BTYD features (``FeatureConfig.btyd``): BG/NBD expected purchases against lifetimes, the columns prepare
writes, a failed fit, the scoring features, and leakage safety (STYLE P6)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from lifetimes import BetaGeoFitter

import custseq
from custseq.config import EngineConfig, FeatureConfig, RunConfig, SequenceConfig, with_window
from custseq.datasets.synthetic import generate_transactions
from custseq.errors import TrainingError
from custseq.features import btyd
from custseq.features.btyd import (
    BTYD_FEATURE_COLUMNS,
    BgNbdParams,
    add_btyd_features,
    bgnbd_expected_purchases,
)
from custseq.features.matrix import fit_tabular, transform_tabular
from custseq.io.run_files import BgNbdFit, BtydFailed, PreparedWindow
from custseq.io.tables import Tables
from custseq.pipelines.prepare import prepare_scoring_sequences

AS_OF = "2023-06-24"  # the last day of the synthetic log below
# One DuckDB thread, as in test_leakage: identical inputs give bit-identical features, so identical BG/NBD fits.
CONFIG = RunConfig(
    features=FeatureConfig(btyd=True),
    sequence=SequenceConfig(max_events=16, shard_customers=512),
    engine=EngineConfig(threads=1),
)
PUBLISHED = BgNbdParams(r=0.2426, alpha=4.4135, a=0.7929, b=2.4258)  # Fader, Hardie & Lee (2005), weeks


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    """About 1,000 customers over 18 months (2022-01-04 to 2023-06-24)."""
    return generate_transactions(6000, seed=3, days=540).to_pandas()


@pytest.fixture(scope="module")
def prepared(transactions, tmp_path_factory):
    return custseq.prepare(transactions, out=tmp_path_factory.mktemp("on"), as_of=AS_OF, horizon="90d", config=CONFIG)


def _windows(result):
    return (result.plan.scoring, *result.plan.training)


def _entries(result) -> dict[str, PreparedWindow]:
    return {w.as_of: w for w in result.summary.windows}


def test_expected_purchases_match_lifetimes():
    s = pd.read_csv(Path(lifetimes.__file__).parent / "datasets" / "cdnow_customers_summary.csv")
    x, t_x, T = (s[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))
    theirs = BetaGeoFitter()
    theirs.params_ = pd.Series(dataclasses.asdict(PUBLISHED))
    for t in (1.0, 39.0, 78.0):
        expected = theirs.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T)
        assert np.allclose(bgnbd_expected_purchases(PUBLISHED, x, t_x, T, t), expected, rtol=1e-9)


def test_expected_purchases_stay_finite_where_lifetimes_gives_nan():
    # a + b < 1 (fits with little dropout, e.g. Online Retail) and no repeat purchase: lifetimes' 2F1 has a
    # negative third parameter and returns NaN from a horizon of about a year on.
    params = BgNbdParams(r=0.61, alpha=95.3, a=0.2, b=0.6)
    x, t_x, T = np.zeros(1), np.zeros(1), np.full(1, 365.0)
    theirs = BetaGeoFitter()
    theirs.params_ = pd.Series(dataclasses.asdict(params))
    with np.errstate(all="ignore"):
        assert np.isnan(theirs.conditional_expected_number_of_purchases_up_to_time(1000.0, x, t_x, T)).all()
    short = theirs.conditional_expected_number_of_purchases_up_to_time(90.0, x, t_x, T)
    ours = np.concatenate([bgnbd_expected_purchases(params, x, t_x, T, t) for t in (90.0, 365.0, 1000.0, 3000.0)])
    assert ours[0] == pytest.approx(short[0], rel=1e-9)
    assert np.all(np.isfinite(ours)) and np.all(np.diff(ours) > 0)
    assert ours[2] == pytest.approx(1.0461488221, rel=1e-8)  # mpmath, 50 digits, the paper's equation (10)


def test_every_window_has_btyd_features_in_range(prepared):
    entries = _entries(prepared)
    assert len(entries) >= 5
    compared = 0
    for window in _windows(prepared):
        features = prepared.features(window).to_pandas()
        entry = entries[window.key].btyd_features
        assert isinstance(entry, BgNbdFit) and entry.model == "BG/NBD", window.key
        p_alive, purchases = features["btyd_p_alive"], features["btyd_expected_purchases"]
        assert p_alive.between(0, 1).all() and (p_alive < 1).any(), window.key
        assert np.isfinite(purchases).all() and (purchases >= 0).all(), window.key
        # the columns are lifetimes' P(alive) and expected purchases for the fit recorded in prepare.json
        oracle = BetaGeoFitter()
        oracle.params_ = pd.Series({k: getattr(entry, k) for k in ("r", "alpha", "a", "b")})
        rfm = [features[c] for c in ("frequency", "recency", "T")]
        assert np.allclose(p_alive, oracle.conditional_probability_alive(*rfm), atol=1e-9)
        with np.errstate(all="ignore"):
            theirs = oracle.conditional_expected_number_of_purchases_up_to_time(window.horizon_days, *rfm).to_numpy()
        finite = np.isfinite(theirs)  # lifetimes' NaN when a + b < 1 (see above) hits x = 0 in some windows here
        assert np.allclose(purchases[finite], theirs[finite], rtol=1e-9), window.key
        compared += finite.sum()
    assert compared > 2000


def test_more_recent_buyers_look_more_alive(prepared):
    features = prepared.features(prepared.plan.scoring).to_pandas()
    repeat = features[features["frequency"] >= 2]
    recent = repeat["days_since_last_purchase"] < repeat["days_since_last_purchase"].median()
    assert repeat.loc[recent, "btyd_p_alive"].mean() > repeat.loc[~recent, "btyd_p_alive"].mean() + 0.2


def test_switch_off_changes_nothing(prepared, transactions, tmp_path):
    config = dataclasses.replace(CONFIG, features=FeatureConfig(btyd=False))
    off = custseq.prepare(transactions, out=tmp_path, as_of=AS_OF, horizon="90d", config=config)
    assert all(entry.btyd_features is None for entry in off.summary.windows)
    for window in _windows(prepared):
        assert off.features(window).equals(prepared.features(window).drop_columns(list(BTYD_FEATURE_COLUMNS)))


def test_the_tabular_matrix_reads_the_btyd_columns(prepared):
    spec = fit_tabular([prepared.features(w) for w in prepared.plan.training])
    assert set(BTYD_FEATURE_COLUMNS) <= set(spec.numeric)
    assert not set(BTYD_FEATURE_COLUMNS) & set(spec.missing_indicators)  # every fit worked: nothing missing


def test_a_failed_fit_leaves_the_columns_missing_and_says_so(prepared, transactions, tmp_path, monkeypatch):
    penalties = []

    def diverge(x, t_x, T, penalizer):
        penalties.append(penalizer)
        raise TrainingError("BG/NBD did not fit these customers: diverged")

    monkeypatch.setattr(btyd, "fit_bgnbd", diverge)
    failed = custseq.prepare(transactions, out=tmp_path, as_of=AS_OF, horizon="90d", config=CONFIG)
    windows = _windows(failed)
    assert penalties == [0.001, 0.01, 0.1] * len(windows)  # each window retried with 10x and 100x penalties
    for entry in failed.summary.windows:
        assert entry.btyd_features == BtydFailed(model="BG/NBD", error="BG/NBD did not fit these customers: diverged")
    for window in windows:
        features = failed.features(window)
        assert all(features.column(c).null_count == features.num_rows for c in BTYD_FEATURE_COLUMNS)

    # A model trained on windows where the fit worked still reads a window where it failed (missing -> mean), and
    # one trained with a failed window gets missing indicators.
    good, bad = prepared.features(prepared.plan.validation), failed.features(failed.plan.scoring)
    spec = fit_tabular([good])
    inputs = transform_tabular(spec, bad)
    assert np.isfinite(inputs.values).all()
    assert np.all(inputs.values[:, spec.numeric.index("btyd_p_alive")] == 0)
    spec = fit_tabular([good, bad])
    assert set(BTYD_FEATURE_COLUMNS) <= set(spec.missing_indicators)
    indicator = spec.column_names.index("btyd_p_alive__missing")
    assert transform_tabular(spec, bad).values[:, indicator].tolist() == [1.0] * bad.num_rows


def test_add_btyd_features_on_an_empty_window():
    empty = pa.table({c: pa.array([], pa.float64()) for c in ("frequency", "recency", "T")})
    table, summary = add_btyd_features(empty, 90)
    assert table.num_rows == 0 and table.column_names[-2:] == list(BTYD_FEATURE_COLUMNS)
    assert isinstance(summary, BtydFailed)


def test_scoring_features_equal_the_prepared_scoring_window(prepared, transactions, tmp_path):
    # `custseq score` builds the features of new data itself; with the same rows and cutoff they must be the
    # ones the model was trained on.
    scoring = prepare_scoring_sequences(
        Tables.of(transactions), with_window(CONFIG, as_of=AS_OF), tmp_path, vocab=prepared.vocab, with_features=True
    )
    assert scoring.window == prepared.plan.scoring
    ours = pq.read_table(tmp_path / "features.parquet")
    assert ours.equals(prepared.features(prepared.plan.scoring))


def _change_the_future(tx: pd.DataFrame, at: dt.datetime) -> pd.DataFrame:
    """Every row at or after ``at`` changes: amounts x10, a third deleted, rows added for old and new customers."""
    at = pd.Timestamp(at)
    tx = tx.copy()
    future = tx["ts"] >= at
    assert future.sum() > 100 and (~future).sum() > 100
    tx.loc[future, "amount"] *= 10
    tx = tx.drop(tx.index[future][::3])
    old = tx[tx["ts"] < at].drop_duplicates("customer_id").head(80)
    added = pd.concat(
        [
            old.assign(ts=at + pd.Timedelta(days=2), order_id="future-old-" + old["order_id"]),
            old.assign(ts=at, customer_id="NEW-" + old["customer_id"], order_id="future-new-" + old["order_id"]),
        ]
    )
    return pd.concat([added, tx], ignore_index=True)


def test_future_rows_do_not_move_btyd_features(prepared, transactions, tmp_path):
    at = dt.datetime(2022, 11, 15, 12, 34)
    after = custseq.prepare(
        _change_the_future(transactions, at), out=tmp_path, as_of=AS_OF, horizon="90d", config=CONFIG
    )
    assert after.plan.scoring == prepared.plan.scoring and after.plan.training == prepared.plan.training
    before_entries, after_entries = _entries(prepared), _entries(after)
    past = [w for w in _windows(prepared) if w.cutoff <= at]
    later = [w for w in _windows(prepared) if w.cutoff > at]
    assert len(past) >= 2 and len(later) >= 2
    for window in past:
        before, changed = prepared.features(window), after.features(window)
        for column in BTYD_FEATURE_COLUMNS:
            assert before.column(column).equals(changed.column(column)), (window.key, column)
        assert before_entries[window.key].btyd_features == after_entries[window.key].btyd_features
    for window in later:  # the change is real: windows that may see it moved
        before, changed = prepared.features(window), after.features(window)
        assert changed.num_rows > before.num_rows
        assert before_entries[window.key].btyd_features != after_entries[window.key].btyd_features
        assert not pc.all(pc.is_in(changed.column("btyd_p_alive"), before.column("btyd_p_alive"))).as_py()


def test_the_fit_on_distinct_patterns_is_the_fit_on_every_customer():
    """Customers sharing (frequency, recency, T) are fitted once, weighted by their number: the same parameters."""
    rng = np.random.default_rng(7)
    T = rng.integers(30, 400, 6000).astype(float)
    x = rng.poisson(1.5, 6000).astype(float)
    t_x = np.where(x > 0, np.floor(rng.uniform(0, 1, 6000) * T), 0.0)
    assert len(np.unique(np.stack([x, t_x, T], axis=1), axis=0)) < 5000  # some customers share a pattern
    every = BetaGeoFitter(penalizer_coef=0.001).fit(x, t_x, T).params_
    fitted = btyd.fit_bgnbd(x, t_x, T, penalizer=0.001)
    np.testing.assert_allclose([fitted.r, fitted.alpha, fitted.a, fitted.b], every[["r", "alpha", "a", "b"]], rtol=1e-6)
