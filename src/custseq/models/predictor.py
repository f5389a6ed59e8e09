"""From the fine-tuned network to the final predictions: candidates, a choice on validation, calibrated levels.

Issue 15's procedure, shared by ``predict``, ``score`` and ``evaluate`` (so evaluate's custseq row is what
predict delivers):

1. **Candidates** (:class:`custseq.config.PredictorConfig`): the network; the boosted head on the rich
   features, BTYD quantities and the network's embedding; the boosted head on the features alone; BTYD.
   The boosted heads learn from the training customers of every training window (the network's own split).
2. **Choice** on the validation customers of the latest training window, never on a test window: per task
   the best candidate (churn ROC AUC, value normalized Gini), or its best blend with one other candidate
   (churn in logit space, value on each candidate's total-matched scale) when the blend is better.
3. **Levels** on the same customers: churn calibrated (isotonic or Platt), value scaled so that its total
   matches theirs, and P10/P50/P90 from split-conformal quantiles of actual / predicted per churn bin (so a
   likely churner's P10 may legitimately be 0).
4. **Refit** (optional, ``refit_on_validation``): the chosen boosted heads fitted again on every non-test
   customer, validation ones included, with the rounds they chose.
5. **Group corrections** (optional, ``[audit] recalibrate_groups``; fitted by ``predict``'s bias audit after
   the choice): a churn logit shift and a value factor per flagged customer group
   (:mod:`custseq.models.group_calibration`), applied after the levels and before the intervals. A carried
   horizon keeps the churn correction (it is carried with the rest) but takes its value from BG/NBD.

A :class:`Predictor` is plain JSON (LightGBM's text format inside): nothing is unpickled when it is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from custseq.baselines.base import WindowTables
from custseq.baselines.boosted import BoostedHead, BoostedInputs, early_stopping_mask, fit_boosted, refit_boosted
from custseq.baselines.btyd import BtydFit, predict_btyd
from custseq.config import FinetuneConfig, PredictorConfig
from custseq.errors import ArtifactError, TrainingError
from custseq.features.btyd import (
    DEFAULT_PENALIZER,
    BgNbdParams,
    bgnbd_expected_purchases,
    bgnbd_no_purchase_probability,
    fit_bgnbd,
    with_penalizer_fallback,
)
from custseq.features.matrix import TabularSpec, as_float
from custseq.io.run_files import CandidateValidation, ChosenBlend, ModelChoice
from custseq.metrics import brier, normalized_gini, roc_auc
from custseq.models.calibration import Calibrator, fit_calibrator
from custseq.models.group_calibration import GroupCorrection, apply_corrections, corrections_from_json
from custseq.sequences.batch import split_mask

PREDICTOR_FORMAT = 1
BOOSTED = ("boosted", "boosted-features")
MIN_PER_BIN = 50  # conformal bins with fewer validation customers are merged into their neighbour
BLEND_MARGIN = 5e-4  # a blend replaces the best single candidate only if it beats it by more than this


@dataclass(frozen=True)
class Blend:
    """``weight`` × ``first`` + (1 − weight) × ``second`` (churn in logit space); second None: first alone."""

    first: str
    second: str | None = None
    weight: float = 1.0

    @property
    def members(self) -> tuple[str, ...]:
        return (self.first,) if self.second is None else (self.first, self.second)

    def describe(self) -> str:
        if self.second is None:
            return self.first
        return f"{self.weight:.1f} × {self.first} + {1 - self.weight:.1f} × {self.second}"

    def record(self) -> ChosenBlend:
        return ChosenBlend(first=self.first, second=self.second, weight=self.weight, description=self.describe())


@dataclass(frozen=True)
class Intervals:
    """Split-conformal multipliers of the expected value: per churn-probability bin, P10/P50/P90 of actual/pred."""

    edges: tuple[float, ...]  # inner bin edges on the calibrated churn probability (len = bins - 1)
    multipliers: tuple[tuple[float, float, float], ...]  # per bin

    def apply(self, churn: np.ndarray, value: np.ndarray) -> dict[str, np.ndarray]:
        bins = np.searchsorted(np.asarray(self.edges), churn, side="right")
        m = np.asarray(self.multipliers)[bins]
        p10, p50, p90 = (value * m[:, k] for k in range(3))
        return {"clv_p10": p10, "clv_p50": np.maximum(p50, p10), "clv_p90": np.maximum(p90, np.maximum(p50, p10))}


@dataclass
class Predictor:
    """The fitted combination: which candidates, their weights, boosted heads and calibrated levels."""

    churn: Blend
    value: Blend
    boosted: dict[str, BoostedHead]
    value_scales: dict[str, float]  # per candidate, applied before blending
    churn_calibrator: Calibrator
    value_scale: float
    intervals: Intervals
    horizon_days: int
    carry_to_days: int | None = None  # a longer horizon the predictions are carried to (see carry_to_horizon)
    lapsed_churn_rate: float | None = None  # churn of the training windows' lapsed regulars (scoring.lapse)
    group_corrections: tuple[GroupCorrection, ...] = ()  # per flagged audit group ([audit] recalibrate_groups)
    # BG/NBD + Gamma-Gamma of the population predict scored; None: fitted on whatever table is predicted
    btyd_fit: BtydFit | None = None

    @property
    def members(self) -> tuple[str, ...]:
        """The candidates the predictions need, each once."""
        return tuple(dict.fromkeys((*self.churn.members, *self.value.members)))

    @property
    def needs_network(self) -> bool:
        return "network" in self.members or any(self.boosted[b].inputs.embedding_dim for b in self.boosted)

    def predict(self, features: pa.Table, network: NetworkOutputs | None) -> dict[str, np.ndarray]:
        """The prediction columns for the customers of ``features`` (in its row order)."""
        candidates = candidate_predictions(
            features, network, self.boosted, self.members, self.horizon_days, btyd_fit=self.btyd_fit
        )
        churn = self.churn_calibrator(_combine_churn(candidates, self.churn))
        value = self.value_scale * _combine_value(candidates, self.value, self.value_scales)
        churn, value = apply_corrections(self.group_corrections, features, churn, value)  # before the intervals
        columns = {"churn_probability": churn, "clv_expected": value}
        columns |= self.intervals.apply(churn, value)
        if self.carry_to_days is not None and self.carry_to_days != self.horizon_days:
            columns = self._carried(columns, features, self.carry_to_days)
        columns["clv_if_active"] = columns["clv_expected"] / np.clip(1.0 - columns["churn_probability"], 0.05, None)
        return columns

    def _carried(self, columns: dict[str, np.ndarray], features: pa.Table, days: int) -> dict[str, np.ndarray]:
        """Churn carried to ``days`` (:func:`carry_to_horizon`); value over ``days`` from BG/NBD + Gamma-Gamma.

        A carried horizon means the only labelled windows lie far before the scoring date, on younger
        customers: carried value measured 0.18 of the actual total and nGini 0.54 on CDNOW 273 d, where the
        label-free BTYD model, made for this question, gave 0.86 and 0.68. Both use one BG/NBD fit on the
        window's own history.

        Raises
        ------
        TrainingError
            If BG/NBD cannot be fitted on these customers.
        """
        btyd = predict_btyd(features, days, fit=self.btyd_fit)
        if not isinstance(btyd.params, BgNbdParams):  # predict_btyd fits BG/NBD; guards the type
            raise TrainingError(f"carrying a horizon needs BG/NBD, got {type(btyd.params).__name__}")
        churn = carry_to_horizon(columns, features, self.horizon_days, days, btyd.params)["churn_probability"]
        value = np.clip(btyd.value, 0, None)
        return {"churn_probability": churn, "clv_expected": value} | self.intervals.apply(churn, value)

    @property
    def output_horizon_days(self) -> int:
        """The horizon the predictions speak about (the carried one, when carried)."""
        return self.carry_to_days or self.horizon_days

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": PREDICTOR_FORMAT,
            "churn": vars(self.churn),
            "value": vars(self.value),
            "boosted": {k: v.to_json() for k, v in self.boosted.items()},
            "value_scales": self.value_scales,
            "churn_calibrator": self.churn_calibrator.to_json(),
            "value_scale": self.value_scale,
            "intervals": {
                "edges": list(self.intervals.edges),
                "multipliers": [list(m) for m in self.intervals.multipliers],
            },
            "horizon_days": self.horizon_days,
            "carry_to_days": self.carry_to_days,
            "lapsed_churn_rate": self.lapsed_churn_rate,
            "group_corrections": [c.to_json() for c in self.group_corrections],
            "btyd_fit": self.btyd_fit.to_json() if self.btyd_fit is not None else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Predictor:
        if not isinstance(d, dict) or d.get("format_version") != PREDICTOR_FORMAT:
            raise ArtifactError(f"predictor.json of an unknown format (this custseq reads {PREDICTOR_FORMAT})")
        try:
            intervals = Intervals(
                tuple(float(e) for e in d["intervals"]["edges"]),
                tuple((float(a), float(b), float(c)) for a, b, c in d["intervals"]["multipliers"]),
            )
            predictor = cls(
                Blend(**d["churn"]), Blend(**d["value"]),
                {k: BoostedHead.from_json(v) for k, v in d["boosted"].items()},
                {k: float(v) for k, v in d["value_scales"].items()}, Calibrator.from_json(d["churn_calibrator"]),
                float(d["value_scale"]), intervals, int(d["horizon_days"]),
                None if d.get("carry_to_days") is None else int(d["carry_to_days"]),
                None if d.get("lapsed_churn_rate") is None else float(d["lapsed_churn_rate"]),
                corrections_from_json(d.get("group_corrections")),
                None if d.get("btyd_fit") is None else BtydFit.from_json(d["btyd_fit"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"predictor.json is incomplete or corrupted: {e!r}") from None
        if len(intervals.multipliers) != len(intervals.edges) + 1:
            raise ArtifactError("predictor.json: interval bins and edges do not match")
        return predictor


@dataclass(frozen=True)
class NetworkOutputs:
    """The network's calibrated churn probability, expected value and embedding, in a feature table's row order."""

    churn_probability: np.ndarray
    clv_expected: np.ndarray
    embeddings: np.ndarray


@dataclass(frozen=True)
class TrainingWindow:
    """A labelled training window and, when a network was fitted, its outputs for the window's customers."""

    tables: WindowTables
    network: NetworkOutputs | None


def fit_predictor(
    windows: Sequence[TrainingWindow],
    spec: TabularSpec,
    cfg: PredictorConfig,
    split: FinetuneConfig,
    *,
    seed: int,
    horizon_days: int,
) -> tuple[Predictor, ModelChoice]:
    """Fit the candidates, choose per task on the validation customers of ``windows[0]``, calibrate, refit.

    ``split`` is the network's customer split (validation, test and label fractions): the boosted heads train
    on the same customers as the network and are judged on the same validation customers.

    Raises
    ------
    TrainingError
        If no candidate could be fitted, or the latest window has no validation customers.
    """
    has_network = all(w.network is not None for w in windows)
    parts = [_parts(w.tables.customer_ids, split) for w in windows]
    validation = parts[0][1]
    if validation.sum() == 0:
        raise TrainingError("no validation customers in the latest training window to choose the predictor on")
    skipped: dict[str, str] = {}
    heads = _fit_heads(windows, parts, spec, cfg, seed, has_network, skipped)
    latest = windows[0]
    val_tables = _rows(latest.tables, validation)
    val_network = _network_rows(latest.network, validation)
    names = [c for c in cfg.candidates if c != "network" or has_network]
    if "network" in cfg.candidates and not has_network:
        skipped["network"] = "no network was fitted"
    candidates = _validation_candidates(val_tables, val_network, heads, names, horizon_days, skipped)
    if not candidates:
        raise TrainingError(f"no predictor candidate could be fitted: {skipped}")
    churned, value = val_tables.label_arrays()
    figures = {n: _figures(churned, value, c) for n, c in candidates.items()}
    scales = {n: _total_scale(value, c[1]) for n, c in candidates.items()}
    churn_blend = _choose(candidates, churned, 0, roc_auc, cfg.blend_step, {})
    value_blend = _choose(candidates, value, 1, normalized_gini, cfg.blend_step, scales)
    raw_churn = _combine_churn(candidates, churn_blend)
    raw_value = _combine_value(candidates, value_blend, scales)
    calibrator = fit_calibrator(churned, raw_churn, split.calibration)
    churn_p = calibrator(raw_churn)
    value_scale = _total_scale(value, raw_value) if cfg.calibrate_total else 1.0
    intervals = fit_intervals(churn_p, value_scale * raw_value, value, cfg.interval_bins)
    coverage = _cross_fitted_coverage(churn_p, value_scale * raw_value, value, cfg.interval_bins, seed)
    used = {b: heads[b] for b in BOOSTED if b in heads and b in (*churn_blend.members, *value_blend.members)}
    if cfg.refit_on_validation:
        used = _refit(used, windows, parts, cfg, seed)
    predictor = Predictor(
        churn_blend, value_blend, used, {n: scales[n] for n in scales}, calibrator, value_scale, intervals,
        horizon_days,
    )  # fmt: skip
    record = ModelChoice(
        validation_customers=int(validation.sum()),
        candidates=figures,
        skipped=skipped,
        churn=churn_blend.record(),
        value=value_blend.record(),
        churn_auc=roc_auc(churned, churn_p),
        value_gini=normalized_gini(value, raw_value),
        churn_calibration=calibrator.method,
        value_scale=value_scale,
        interval_below_p10=coverage["below_p10"],
        interval_above_p90=coverage["above_p90"],
        boosted_rounds={k: v.rounds for k, v in heads.items()},
    )
    return predictor, record


def candidate_predictions(
    features: pa.Table,
    network: NetworkOutputs | None,
    boosted: dict[str, BoostedHead],
    names: Sequence[str],
    horizon_days: int,
    *,
    btyd_fit: BtydFit | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(churn probability, value) per candidate for the customers of ``features`` (BG/NBD + Gamma-Gamma with
    ``btyd_fit``, else fitted on ``features``).

    Raises
    ------
    TrainingError
        If a candidate cannot predict these customers (BTYD does not fit them, no network outputs).
    """
    out = {}
    for name in names:
        if name == "network":
            if network is None:
                raise TrainingError("the predictor uses the network, but no network outputs were given")
            out[name] = (network.churn_probability, network.clv_expected)
        elif name == "btyd":
            btyd = predict_btyd(features, horizon_days, fit=btyd_fit)
            if not (np.isfinite(btyd.value).all() and np.isfinite(btyd.churn_probability).all()):
                raise TrainingError("BG/NBD + Gamma-Gamma gives non-finite predictions here (a degenerate fit)")
            out[name] = (np.clip(btyd.churn_probability, 1e-6, 1 - 1e-6), np.clip(btyd.value, 0, None))
        else:
            head = boosted[name]
            embeddings = network.embeddings if network is not None and head.inputs.embedding_dim else None
            out[name] = head.predict(features, embeddings)
    return out


CARRIED_BY = (
    "churn: BG/NBD's per-customer time profile; value: BG/NBD + Gamma-Gamma over the requested horizon "
    "(both fitted on the scoring window's own history, no labels)"
)


def carry_to_horizon(
    columns: dict[str, np.ndarray], features: pa.Table, trained: int, target: int, params: BgNbdParams | None = None
) -> dict[str, np.ndarray]:
    """Predictions over ``trained`` days carried to ``target`` days with each customer's BG/NBD time profile.

    Value and its quantiles are multiplied by E[purchases in target] / E[purchases in trained]; churn by
    P(no purchase in target) / P(no purchase in trained) — the chance that a customer quiet for the trained
    horizon stays quiet for the rest. BG/NBD is fitted on the window's own pre-cutoff RFM summary, unless its
    ``params`` are given.

    Raises
    ------
    TrainingError
        If BG/NBD cannot be fitted on these customers.
    """
    x, t_x, big_t = (as_float(features.column(c)) for c in ("frequency", "recency", "T"))
    fit = params or with_penalizer_fallback(lambda p: fit_bgnbd(x, t_x, big_t, p), DEFAULT_PENALIZER)[0]
    short = bgnbd_expected_purchases(fit, x, t_x, big_t, trained)
    long = bgnbd_expected_purchases(fit, x, t_x, big_t, target)
    growth = np.where(short > 1e-9, long / np.where(short > 1e-9, short, 1.0), target / trained)
    quiet_short = bgnbd_no_purchase_probability(fit, x, t_x, big_t, trained)
    quiet_long = bgnbd_no_purchase_probability(fit, x, t_x, big_t, target)
    stays_quiet = np.clip(quiet_long / np.clip(quiet_short, 1e-12, None), 0.0, 1.0)
    out = {k: v * growth for k, v in columns.items() if k.startswith("clv_")}
    out["churn_probability"] = np.clip(columns["churn_probability"] * stays_quiet, 1e-6, 1 - 1e-6)
    return out


def fit_intervals(churn: np.ndarray, predicted: np.ndarray, actual: np.ndarray, bins: int) -> Intervals:
    """Split-conformal multipliers: per churn-probability bin, finite-sample quantiles of actual / predicted.

    Each bin's upper multiplier is the ⌈(n+1)·0.9⌉-th smallest ratio of its n customers, so a new customer
    exchangeable with them exceeds its P90 with probability at most 0.10; the P10 one is the ⌊(n+1)·0.1⌋-th.
    """
    ok = predicted > 0
    ratio = np.where(ok, np.clip(actual, 0, None) / np.where(ok, predicted, 1.0), 0.0)
    edges = _bin_edges(churn, bins)
    index = np.searchsorted(edges, churn, side="right")
    multipliers = []
    for b in range(len(edges) + 1):
        r = np.sort(ratio[index == b])
        n = len(r)
        if n == 0:
            multipliers.append((0.0, 1.0, 1.0))
            continue
        k_low, k_high = math.floor((n + 1) * 0.1), math.ceil((n + 1) * 0.9)  # 1-based order statistics
        low = r[k_low - 1] if k_low >= 1 else 0.0
        high = r[min(k_high, n) - 1]
        multipliers.append((float(low), float(np.median(r)), float(high)))
    return Intervals(tuple(float(e) for e in edges), tuple(multipliers))


def _bin_edges(churn: np.ndarray, bins: int) -> np.ndarray:
    """Quantile edges of churn with at least MIN_PER_BIN customers per bin (fewer bins on small data)."""
    bins = max(1, min(bins, len(churn) // MIN_PER_BIN))
    if bins == 1:
        return np.zeros(0)
    return np.unique(np.quantile(churn, np.linspace(0, 1, bins + 1)[1:-1]))


def _cross_fitted_coverage(churn: np.ndarray, predicted: np.ndarray, actual: np.ndarray, bins: int,
                           seed: int) -> dict[str, float]:  # fmt: skip
    """Share of validation customers below P10 and above P90, each half judged by intervals fitted on the other."""
    fold = np.random.default_rng(seed).permutation(len(actual)) % 2
    below = above = 0
    for k in (0, 1):
        fitted = fit_intervals(churn[fold != k], predicted[fold != k], actual[fold != k], bins)
        q = fitted.apply(churn[fold == k], predicted[fold == k])
        below += int((actual[fold == k] < q["clv_p10"]).sum())
        above += int((actual[fold == k] > q["clv_p90"]).sum())
    n = max(len(actual), 1)
    return {"below_p10": below / n, "above_p90": above / n}


def _parts(ids: list[str], split: FinetuneConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, not test) masks of the network's customer split."""
    train = split_mask(ids, "train", split.validation_fraction, split.test_fraction, split.label_fraction)
    validation = split_mask(ids, "validation", split.validation_fraction, split.test_fraction)
    test = split_mask(ids, "test", split.validation_fraction, split.test_fraction)
    return train, validation, ~test


def _fit_heads(
    windows: Sequence[TrainingWindow],
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    spec: TabularSpec,
    cfg: PredictorConfig,
    seed: int,
    has_network: bool,
    skipped: dict[str, str],
) -> dict[str, BoostedHead]:
    heads = {}
    for name in (b for b in BOOSTED if b in cfg.candidates):
        if name == "boosted" and not has_network:
            skipped[name] = "no network embedding"
            continue
        inputs = BoostedInputs.of(spec, _embedding_dim(windows) if name == "boosted" else 0)
        x, churned, value, ids = _stack(windows, [p[0] for p in parts], inputs)
        if len(np.unique(churned)) < 2:
            skipped[name] = "the training customers all churned or all stayed"
            continue
        heads[name] = fit_boosted(inputs, x, churned, value, early_stopping_mask(ids, cfg.early_stopping_fraction),
                                  cfg, seed)  # fmt: skip
    return heads


def _refit(
    heads: dict[str, BoostedHead],
    windows: Sequence[TrainingWindow],
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    cfg: PredictorConfig,
    seed: int,
) -> dict[str, BoostedHead]:
    out = {}
    for name, head in heads.items():
        x, churned, value, _ = _stack(windows, [p[2] for p in parts], head.inputs)
        out[name] = refit_boosted(head, x, churned, value, cfg, seed)
    return out


def _embedding_dim(windows: Sequence[TrainingWindow]) -> int:
    network = windows[0].network
    return 0 if network is None else int(network.embeddings.shape[1])


def _stack(
    windows: Sequence[TrainingWindow], masks: list[np.ndarray], inputs: BoostedInputs
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    xs, churn, value, ids = [], [], [], []
    for w, mask in zip(windows, masks, strict=True):
        rows = _rows(w.tables, mask)
        net = _network_rows(w.network, mask)
        xs.append(inputs.matrix(rows.features, net.embeddings if net is not None and inputs.embedding_dim else None))
        c, v = rows.label_arrays()
        churn.append(c)
        value.append(v)
        ids.extend(rows.customer_ids)
    return np.concatenate(xs), np.concatenate(churn), np.concatenate(value), ids


def _rows(tables: WindowTables, mask: np.ndarray) -> WindowTables:
    keep = pa.array(mask)
    labels = tables.labels.filter(keep) if tables.labels is not None else None
    return WindowTables(tables.features.filter(keep), labels, tables.horizon_days)


def _network_rows(network: NetworkOutputs | None, mask: np.ndarray) -> NetworkOutputs | None:
    if network is None:
        return None
    return NetworkOutputs(network.churn_probability[mask], network.clv_expected[mask], network.embeddings[mask])


def _validation_candidates(
    tables: WindowTables,
    network: NetworkOutputs | None,
    heads: dict[str, BoostedHead],
    names: list[str],
    horizon_days: int,
    skipped: dict[str, str],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        if name in BOOSTED and name not in heads:
            continue
        try:
            out |= candidate_predictions(tables.features, network, heads, [name], horizon_days)
        except TrainingError as e:
            skipped[name] = str(e)
    return out


def _figures(churned: np.ndarray, value: np.ndarray, prediction: tuple[np.ndarray, np.ndarray]) -> CandidateValidation:
    p, v = prediction
    total = float(np.clip(value, 0, None).sum())
    return CandidateValidation(
        churn_auc=_finite(roc_auc(churned, p)),
        churn_brier=_finite(brier(churned, p)),
        value_gini=_finite(normalized_gini(value, v)),
        value_total_ratio=_finite(float(v.sum()) / total) if total > 0 else None,
    )


def _finite(x: float) -> float | None:
    return round(float(x), 6) if math.isfinite(x) else None


def _total_scale(actual: np.ndarray, predicted: np.ndarray) -> float:
    """actual / predicted total, within [0.1, 10] (a wild ratio says the validation window is unusual)."""
    total = float(predicted.sum())
    if total <= 0:
        return 1.0
    return float(np.clip(np.clip(actual, 0, None).sum() / total, 0.1, 10.0))


def _choose(
    candidates: dict[str, tuple[np.ndarray, np.ndarray]],
    target: np.ndarray,
    task: int,
    metric: Any,
    step: float,
    scales: dict[str, float],
) -> Blend:
    """The best single candidate by ``metric``, or its best blend with one other when that is better."""

    def score(blend: Blend) -> float:
        combined = _combine_value(candidates, blend, scales) if task == 1 else _combine_churn(candidates, blend)
        m = metric(target, combined)
        return float(m) if math.isfinite(m) else -math.inf

    singles = {name: score(Blend(name)) for name in candidates}
    best = Blend(max(singles, key=lambda n: singles[n]))
    best_score = singles[best.first]
    if step <= 0:
        return best
    weights = np.round(np.arange(step, 1.0 - step / 2, step), 6)
    for other in (n for n in candidates if n != best.first):
        for w in weights:
            blend = Blend(best.first, other, float(w))
            s = score(blend)
            if s > best_score + BLEND_MARGIN:
                best, best_score = blend, s
    return best


def _combine_churn(candidates: dict[str, tuple[np.ndarray, np.ndarray]], blend: Blend) -> np.ndarray:
    first = candidates[blend.first][0]
    if blend.second is None:
        return first
    logit = blend.weight * _logit(first) + (1 - blend.weight) * _logit(candidates[blend.second][0])
    return 1.0 / (1.0 + np.exp(-logit))


def _combine_value(
    candidates: dict[str, tuple[np.ndarray, np.ndarray]], blend: Blend, scales: dict[str, float]
) -> np.ndarray:
    first = scales.get(blend.first, 1.0) * candidates[blend.first][1]
    if blend.second is None:
        return first
    second = scales.get(blend.second, 1.0) * candidates[blend.second][1]
    return blend.weight * first + (1 - blend.weight) * second


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
