"""The final predictor: choice on validation customers, conformal intervals, carried horizons, safe round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from custseq.baselines.base import WindowTables
from custseq.baselines.tabular import LightGBMRich
from custseq.config import FinetuneConfig, PredictorConfig
from custseq.errors import ArtifactError
from custseq.features.matrix import fit_tabular
from custseq.metrics import normalized_gini, roc_auc
from custseq.models.predictor import (
    Blend,
    NetworkOutputs,
    Predictor,
    TrainingWindow,
    _choose,
    carry_to_horizon,
    fit_intervals,
    fit_predictor,
)
from custseq.sequences.batch import split_mask

FAST = PredictorConfig(max_rounds=60, early_stopping_rounds=10, n_jobs=1)


def _window(seed: int, n: int = 1500, horizon: int = 90) -> WindowTables:
    """Customers whose churn and value follow their recency and frequency (BTYD columns included)."""
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(3, n).astype(float)
    T = rng.uniform(100, 400, n)
    recency = T * rng.uniform(0, 1, n) * (frequency > 0)
    monetary = rng.gamma(2, 20, n) * (frequency > 0)
    quiet = (T - recency) / T
    p_churn = 1 / (1 + np.exp(-(3 * quiet - 0.4 * frequency)))
    churned = rng.uniform(size=n) < p_churn
    value = np.where(churned, 0.0, monetary * rng.lognormal(0, 0.5, n) * (1 + frequency / 3))
    ids = [f"c{seed}_{i}" for i in range(n)]
    features = pa.table({
        "customer_id": ids, "frequency": frequency, "recency": recency, "T": T, "monetary_value": monetary,
        "days_since_last_purchase": T - recency, "noise": rng.normal(size=n),
    })  # fmt: skip
    labels = pa.table({"customer_id": ids, "churned": churned, "value": value})
    return WindowTables(features, labels, horizon)


def test_conformal_intervals_cover_new_customers():
    rng = np.random.default_rng(0)

    def sample(n):
        churn = rng.uniform(0.05, 0.95, n)
        predicted = rng.gamma(2, 50, n)
        actual = np.where(rng.uniform(size=n) < churn, 0.0, predicted * rng.lognormal(0, 0.8, n) / (1 - churn))
        return churn, predicted, actual

    fitted = fit_intervals(*sample(6000), bins=5)
    churn, predicted, actual = sample(20000)
    q = fitted.apply(churn, predicted)
    assert 0.08 <= (actual > q["clv_p90"]).mean() <= 0.12
    assert (actual < q["clv_p10"]).mean() <= 0.12
    assert (q["clv_p10"] <= q["clv_p50"]).all() and (q["clv_p50"] <= q["clv_p90"]).all()
    likely_churners = churn > 0.8
    assert (q["clv_p10"][likely_churners] == 0).all()  # most of them spend nothing: their P10 is 0


def test_choice_takes_the_better_candidate_and_blends_complementary_ones():
    rng = np.random.default_rng(1)
    signal = rng.normal(size=4000)
    churned = (signal + rng.normal(scale=0.5, size=4000) > 0).astype(float)
    value = np.exp(signal)
    good = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.8, size=4000))))
    also_good = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.8, size=4000))))
    weak = 1 / (1 + np.exp(-rng.normal(size=4000)))
    candidates = {"a": (weak, weak), "b": (good, value)}
    assert _choose(candidates, churned, 0, roc_auc, 0.1, {}) == Blend("b")
    assert _choose(candidates, value, 1, normalized_gini, 0.1, {}).first == "b"
    blend = _choose({"b": (good, value), "c": (also_good, value)}, churned, 0, roc_auc, 0.1, {})
    assert blend.second is not None and 0.2 <= blend.weight <= 0.8  # two independent errors average out
    assert _choose({"b": (good, value), "c": (also_good, value)}, churned, 0, roc_auc, 0.0, {}).second is None


def test_fit_predictor_chooses_on_validation_customers_and_round_trips():
    windows = [TrainingWindow(_window(s), None) for s in (0, 1)]
    spec = fit_tabular([w.tables.features for w in windows])
    split = FinetuneConfig()
    predictor, choice = fit_predictor(windows, spec, FAST, split, seed=0, horizon_days=90)
    validation = split_mask(windows[0].tables.customer_ids, "validation", split.validation_fraction)
    assert choice.validation_customers == int(validation.sum())
    assert set(choice.candidates) == {"boosted-features", "btyd"} and "network" in choice.skipped
    assert choice.churn.first in choice.candidates and choice.value.first in choice.candidates
    assert choice.churn_auc > 0.7 and choice.value_gini > 0.3  # the planted signal is found
    test = _window(7)
    columns = predictor.predict(test.features, None)
    churned, value = test.label_arrays()
    assert roc_auc(churned, columns["churn_probability"]) > 0.7
    assert 0.8 <= columns["clv_expected"].sum() / value.sum() <= 1.25  # levels calibrated on validation
    restored = Predictor.from_json(json.loads(json.dumps(predictor.to_json())))
    again = restored.predict(test.features, None)
    for k, v in columns.items():
        np.testing.assert_allclose(again[k], v, rtol=1e-12)


def test_predictor_json_refuses_tampering():
    windows = [TrainingWindow(_window(0), None)]
    predictor, _ = fit_predictor(windows, fit_tabular([windows[0].tables.features]), FAST, FinetuneConfig(),
                                 seed=0, horizon_days=90)  # fmt: skip
    saved = predictor.to_json()
    with pytest.raises(ArtifactError):
        Predictor.from_json({**saved, "format_version": 99})
    broken = json.loads(json.dumps(saved))
    broken["intervals"]["edges"].append(0.5)
    with pytest.raises(ArtifactError):
        Predictor.from_json(broken)


def test_network_candidate_needs_network_outputs():
    window = _window(0)
    n = window.features.num_rows
    rng = np.random.default_rng(0)
    churned, value = window.label_arrays()
    network = NetworkOutputs(np.clip(churned * 0.6 + rng.uniform(0, 0.4, n), 0.01, 0.99), value + 1.0,
                             rng.normal(size=(n, 4)))  # fmt: skip
    predictor, choice = fit_predictor([TrainingWindow(window, network)], fit_tabular([window.features]), FAST,
                                      FinetuneConfig(), seed=0, horizon_days=90)  # fmt: skip
    assert choice.churn.first == "network"  # the near-oracle network wins churn
    assert "boosted" in choice.candidates  # the embedding head ran
    assert predictor.needs_network


def test_carry_to_a_longer_horizon_grows_value_and_lowers_churn():
    window = _window(3)
    n = window.features.num_rows
    columns = {
        "churn_probability": np.full(n, 0.5), "clv_expected": np.full(n, 10.0),
        "clv_p10": np.zeros(n), "clv_p50": np.full(n, 5.0), "clv_p90": np.full(n, 30.0),
    }  # fmt: skip
    carried = carry_to_horizon(columns, window.features, 90, 270)
    assert (carried["clv_expected"] >= 10.0 - 1e-9).all() and carried["clv_expected"].mean() > 12
    assert (carried["churn_probability"] <= 0.5 + 1e-9).all() and carried["churn_probability"].mean() < 0.45
    assert (carried["clv_p10"] == 0).all() and (carried["clv_p90"] >= carried["clv_p50"]).all()


def test_lightgbm_rich_learns_the_planted_signal():
    model = LightGBMRich(seed=0, config=FAST).fit([_window(0), _window(1)])
    test = _window(9)
    p = model.predict(test)
    churned, value = test.label_arrays()
    assert roc_auc(churned, p.churn_probability) > 0.7 and normalized_gini(value, p.value) > 0.3


def test_a_degenerate_btyd_fit_is_skipped_not_chosen(monkeypatch):
    import custseq.models.predictor as predictor_module
    from custseq.baselines.btyd import predict_btyd

    def overflowing(features, horizon_days):
        fitted = predict_btyd(features, horizon_days)
        fitted.value[:3] = np.inf  # what BG/NBD's expected purchases do on some young windows
        return fitted

    monkeypatch.setattr(predictor_module, "predict_btyd", overflowing)
    windows = [TrainingWindow(_window(0), None)]
    _, choice = fit_predictor(windows, fit_tabular([windows[0].tables.features]), FAST, FinetuneConfig(),
                              seed=0, horizon_days=90)  # fmt: skip
    assert "btyd" not in choice.candidates and "non-finite" in choice.skipped["btyd"]
    assert choice.value.first == "boosted-features"
