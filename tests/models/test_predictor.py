"""The final predictor: choice on validation customers, conformal intervals, carried horizons, safe round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from custseq.baselines import boosted
from custseq.baselines.base import WindowTables
from custseq.baselines.tabular import LightGBMRich
from custseq.config import FinetuneConfig, PredictorConfig
from custseq.errors import ArtifactError, SchemaError
from custseq.features.matrix import fit_tabular
from custseq.metrics import normalized_gini, roc_auc
from custseq.models.finetune import WindowScores, apply_predictor
from custseq.models.group_calibration import GroupCorrection, GroupRule
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


def test_boosted_heads_predict_in_row_chunks_exactly_as_at_once(monkeypatch):
    windows = [TrainingWindow(_window(s), None) for s in (0, 1)]
    spec = fit_tabular([w.tables.features for w in windows])
    predictor, _ = fit_predictor(windows, spec, FAST, FinetuneConfig(), seed=0, horizon_days=90)
    head = predictor.boosted["boosted-features"]
    test = _window(7)
    whole = head.predict(test.features)
    monkeypatch.setattr(boosted, "PREDICT_ROWS", 64)  # 1,500 rows: 24 chunks, the last one short
    chunked = head.predict(test.features)
    for a, b in zip(whole, chunked, strict=True):
        assert a.shape == (1500,) and np.array_equal(a, b)
    assert all(len(part) == 0 for part in head.predict(test.features.slice(0, 0)))


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

    def overflowing(features, horizon_days, fit=None):
        fitted = predict_btyd(features, horizon_days, fit=fit)
        fitted.value[:3] = np.inf  # what BG/NBD's expected purchases do on some young windows
        return fitted

    monkeypatch.setattr(predictor_module, "predict_btyd", overflowing)
    windows = [TrainingWindow(_window(0), None)]
    _, choice = fit_predictor(windows, fit_tabular([windows[0].tables.features]), FAST, FinetuneConfig(),
                              seed=0, horizon_days=90)  # fmt: skip
    assert "btyd" not in choice.candidates and "non-finite" in choice.skipped["btyd"]
    assert choice.value.first == "boosted-features"


# --- group corrections ([audit] recalibrate_groups) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> Predictor:
    windows = [TrainingWindow(_window(0), None)]
    predictor, _ = fit_predictor(windows, fit_tabular([windows[0].tables.features]), FAST, FinetuneConfig(),
                                 seed=0, horizon_days=90)  # fmt: skip
    return predictor


def _with_corrections(predictor: Predictor, *corrections: GroupCorrection) -> Predictor:
    return Predictor.from_json({**predictor.to_json(), "group_corrections": [c.to_json() for c in corrections]})


OLD = GroupCorrection("tenure", "300–400", GroupRule("T", "range", low=300.0), churn_shift=1.0, value_factor=1.5)


def test_without_corrections_the_predictions_are_what_they_were(fitted):
    saved = fitted.to_json()
    assert saved["group_corrections"] == []
    del saved["group_corrections"]  # a predictor.json written before group corrections existed
    legacy = Predictor.from_json(saved)
    assert legacy.group_corrections == ()
    test = _window(7).features
    for k, v in legacy.predict(test, None).items():
        assert np.array_equal(v, fitted.predict(test, None)[k]), k  # to the bit


def test_a_group_correction_moves_its_customers_only_and_round_trips(fitted):
    corrected = _with_corrections(fitted, OLD)
    assert corrected.group_corrections == (OLD,)
    test = _window(7).features
    before, after = fitted.predict(test, None), corrected.predict(test, None)
    inside = test.column("T").to_numpy() > 300
    assert 0 < inside.sum() < len(inside)
    for k in before:
        assert np.array_equal(after[k][~inside], before[k][~inside]), k  # everyone else: to the bit
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    np.testing.assert_allclose(logit(after["churn_probability"][inside]),
                               logit(before["churn_probability"][inside]) + 1.0, rtol=1e-9)  # fmt: skip
    np.testing.assert_allclose(after["clv_expected"][inside], before["clv_expected"][inside] * 1.5, rtol=1e-12)
    again = Predictor.from_json(json.loads(json.dumps(corrected.to_json()))).predict(test, None)
    for k, v in after.items():
        assert np.array_equal(again[k], v), k


def test_a_customer_in_two_corrected_groups_gets_both(fitted):
    flag = GroupCorrection("vip", "1", GroupRule("profile_vip", "value", ("1",)), churn_shift=-0.5, value_factor=2.0)
    test = _window(7).features
    vip = (np.arange(test.num_rows) % 3 == 0).astype(int)
    test = test.append_column("profile_vip", pa.array(vip))
    before = fitted.predict(test, None)
    after = _with_corrections(fitted, OLD, flag).predict(test, None)
    both = (test.column("T").to_numpy() > 300) & (vip == 1)
    assert both.any()
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    np.testing.assert_allclose(logit(after["churn_probability"][both]),
                               logit(before["churn_probability"][both]) + 0.5, rtol=1e-9)  # shifts add  # fmt: skip
    np.testing.assert_allclose(after["clv_expected"][both], before["clv_expected"][both] * 3.0, rtol=1e-12)


def test_score_applies_the_saved_corrections(fitted):
    """``score`` goes through apply_predictor (the saved model's predictor on a window's scores)."""
    corrected = Predictor.from_json(json.loads(json.dumps(_with_corrections(fitted, OLD).to_json())))
    test = _window(7)
    ids = test.customer_ids
    n = len(ids)
    scores = WindowScores(ids, {"churn_probability": np.full(n, 0.5), "clv_expected": np.ones(n)}, np.zeros((n, 2)))
    scored = apply_predictor(corrected, scores, test.features)
    direct = corrected.predict(test.features, None)
    for k, v in direct.items():
        assert np.array_equal(scored.columns[k], v), k
    uncorrected = fitted.predict(test.features, None)["churn_probability"]
    assert not np.array_equal(scored.columns["churn_probability"], uncorrected)


def test_a_correction_whose_column_is_missing_or_corrupted_is_refused(fitted):
    region = GroupCorrection("region", "north", GroupRule("profile_region", "value", ("north",)), 0.3, 1.0)
    with pytest.raises(SchemaError, match=r"features lack that column; score with the customers table"):
        _with_corrections(fitted, region).predict(_window(7).features, None)
    broken = {**fitted.to_json(), "group_corrections": [{"attribute": "region"}]}
    with pytest.raises(ArtifactError, match=r"group correction is incomplete"):
        Predictor.from_json(broken)
