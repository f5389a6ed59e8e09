"""The synthetic shop: deterministic, its planted effects are in the tables, and custseq finds them."""

from __future__ import annotations

import datetime as dt
import tempfile
import time

import pyarrow.compute as pc
import pytest
from sklearn.metrics import roc_auc_score

import custseq
from custseq.baselines.base import WindowTables
from custseq.baselines.tabular import LightGBMRich
from custseq.config import EngineConfig, PredictorConfig, RunConfig, SequenceConfig, WindowConfig
from custseq.datasets.shop import Shop, ShopEffects, generate_shop
from custseq.errors import ConfigError
from custseq.text.sentiment import sentiment_scores

HORIZON = 60
CONFIG = RunConfig(
    window=WindowConfig(horizon_days=HORIZON, max_train_windows=3),
    sequence=SequenceConfig(max_events=8),
    engine=EngineConfig(threads=1),
)
# Gains in churn AUC over the customers who bought in the horizon before the cutoff, at this size and these
# settings (LightGBM on custseq's features). Seeds 0-9 of the default shop: + events over purchases 0.030 to 0.061
# (mean 0.048), + text over + events 0.025 to 0.053 (mean 0.033). Seeds 0-5 of a shop without the complaints
# (complaint_share = base_complaint_share): + text over + events -0.007 to +0.002. The margins sit between.
N_CUSTOMERS = 1200
MIN_EVENTS_GAIN = 0.015
TEXT_GAIN = 0.012


def test_the_same_seed_gives_the_same_shop():
    a, b, c = generate_shop(200, seed=1), generate_shop(200, seed=1), generate_shop(200, seed=2)
    assert a.transactions.equals(b.transactions) and a.events.equals(b.events) and a.lapses.equals(b.lapses)
    assert not a.transactions.equals(c.transactions)
    assert a.transactions.column_names == ["customer_id", "ts", "amount"]
    assert a.events.column_names == ["customer_id", "ts", "event", "text"]
    assert set(a.events.column("event").to_pylist()) == {"login", "page_view", "support_ticket", "review"}


def test_texts_belong_to_tickets_and_reviews_only():
    events = generate_shop(300, seed=0).events.to_pandas()
    has_text = events["text"].notna()
    assert (has_text == events["event"].isin(["support_ticket", "review"])).all()


def test_dissatisfied_customers_complain_before_they_lapse():
    effects = ShopEffects()
    shop = generate_shop(3000, seed=0, effects=effects)
    events = shop.events.to_pandas().join(shop.lapses.to_pandas().set_index("customer_id"), on="customer_id")
    texts = events[events["text"].notna()].copy()
    texts["negative"] = sentiment_scores(texts["text"].tolist()) <= -0.05
    warning = (texts["ts"] < texts["lapse"]) & (texts["ts"] >= texts["lapse"] - dt.timedelta(days=effects.warning_days))
    planted = texts[warning & texts["dissatisfied"]]["negative"].mean()
    elsewhere = texts[~(warning & texts["dissatisfied"])]["negative"].mean()
    assert len(texts[warning & texts["dissatisfied"]]) > 300
    # Complaint shares 0.9 and 0.1, as VADER reads them: it finds about 3 complaints in 4 negative (the others
    # have no sentiment word, "my parcel is lost", or a misleading one, "no answer from support"), which the text
    # vector is there for.
    assert planted > 0.6 and elsewhere < 0.15
    tickets_per_day = texts[texts["event"] == "support_ticket"].groupby(warning & texts["dissatisfied"]).size()
    assert tickets_per_day.index.tolist() == [False, True]  # tickets in both: their count alone tells nothing


def test_drifting_customers_browse_more_before_they_lapse_and_buy_nothing_after():
    effects = ShopEffects()
    shop = generate_shop(3000, days=540, start="2023-01-01", seed=0, effects=effects)
    lapses = shop.lapses.to_pandas().set_index("customer_id")
    tx = shop.transactions.to_pandas().join(lapses, on="customer_id")
    assert (tx["ts"] < tx["lapse"]).all() and (tx["ts"] >= tx["arrival"]).all()
    # Drifting customers who lapse inside the data with two warning periods of history: page views in the last
    # warning period before the lapse against the one before it.
    w = dt.timedelta(days=effects.warning_days)
    chosen = lapses[~lapses["dissatisfied"] & (lapses["lapse"] - 2 * w >= lapses["arrival"])
                    & (lapses["lapse"] < dt.datetime(2023, 1, 1) + dt.timedelta(days=540))]  # fmt: skip
    views = shop.events.to_pandas().join(chosen, on="customer_id", how="inner")
    views = views[views["event"] == "page_view"]
    warning = ((views["ts"] >= views["lapse"] - w) & (views["ts"] < views["lapse"])).sum()
    before = ((views["ts"] >= views["lapse"] - 2 * w) & (views["ts"] < views["lapse"] - w)).sum()
    assert len(chosen) > 200 and before > 1000
    assert warning / before == pytest.approx(effects.browse_lift, rel=0.1)


def test_wrong_arguments_are_named():
    with pytest.raises(ConfigError, match="at least one customer"):
        generate_shop(0)
    with pytest.raises(ConfigError, match="shares from 0 to 1"):
        ShopEffects(complaint_share=1.5)


def churn_auc(shop: Shop, inputs: str) -> float:
    """Churn AUC among recently active customers: LightGBM on the features custseq builds from ``inputs``."""
    as_of = (pc.max(shop.transactions.column("ts")).as_py() - dt.timedelta(days=HORIZON)).date()
    events = {"purchases": None, "+ events": shop.events.drop_columns(["text"]), "+ text": shop.events}[inputs]
    with tempfile.TemporaryDirectory() as out:
        layout = custseq.prepare(shop.transactions, events=events, out=out, as_of=as_of, config=CONFIG).layout
        train = [WindowTables.read(w, HORIZON) for w in layout.training]
        test = WindowTables.read(layout.scoring, HORIZON)
    churn = LightGBMRich(seed=0, config=PredictorConfig(n_jobs=1)).fit(train).predict(test).churn_probability
    active = test.features.column("purchase_days_last_h").to_numpy() > 0
    return float(roc_auc_score(test.label_arrays()[0][active], churn[active]))


@pytest.mark.slow
def test_custseq_finds_the_planted_browsing_in_the_events_and_complaints_in_the_texts():
    started = time.perf_counter()
    shop = generate_shop(N_CUSTOMERS, seed=0)
    aucs = {inputs: churn_auc(shop, inputs) for inputs in ("purchases", "+ events", "+ text")}
    assert aucs["+ events"] - aucs["purchases"] > MIN_EVENTS_GAIN, aucs
    assert aucs["+ text"] - aucs["+ events"] > TEXT_GAIN, aucs
    # The control: the same shop with complaints no likelier before a lapse. Only the texts differ (the draws
    # before them are the same), and they then add nothing: the gain above is the planted effect, not a leak.
    control = generate_shop(N_CUSTOMERS, seed=0, effects=ShopEffects(complaint_share=0.1))
    assert control.transactions.equals(shop.transactions)
    assert control.events.drop_columns(["text"]).equals(shop.events.drop_columns(["text"]))
    assert abs(churn_auc(control, "+ text") - aucs["+ events"]) < TEXT_GAIN
    assert time.perf_counter() - started < 90  # a guard against a runaway; about 10 s on 2 idle cores
