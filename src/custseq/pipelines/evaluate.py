"""Evaluate: custseq, its ablations and its baselines on the same rows, over several seeds.

The data are prepared once (see :mod:`custseq.evaluation.protocol` for the two protocols); every method is
trained on the same training rows, chooses its F1 threshold on the same validation rows and is scored on
the same test rows. Stochastic methods run once per seed, deterministic ones once. Each method is
compared with custseq at the same label fraction: a paired t-test over seeds (SeqPreMT) and, on the first
seed, a per-customer paired bootstrap of the churn AUC.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from custseq.baselines.base import BaselinePredictions, WindowTables
from custseq.baselines.cohort import cohort_forecast, cohort_wape, compare_by_cohort, signup_cohorts
from custseq.baselines.tabular import LightGBM
from custseq.config import ModelConfig, RunConfig, config_to_dict, with_seed
from custseq.errors import ConfigError, TrainingError
from custseq.evaluation.methods import COHORT_SMOOTHING, DEFAULT_METHODS, EMBEDDINGS, Method, reference_of, resolve
from custseq.evaluation.protocol import PROTOCOLS, Split, make_split, protocol_finetune
from custseq.evaluation.stats import paired_bootstrap_auc, paired_t_test
from custseq.io.atomic import describe_tables, fingerprint, staged_output, work_folder
from custseq.io.engine import connect
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.io.run_files import (
    AucBootstrap,
    Comparison,
    EvaluationDetails,
    EvaluationResult,
    MeanStd,
    RunFolder,
)
from custseq.io.tables import Tables
from custseq.metrics import METRICS, best_f1_threshold, churn_value_metrics, f1_at, mean_std_text
from custseq.models.combine import fit_final_predictor
from custseq.models.finetune import ChurnValueModel, WindowScores, finetune_prepared, score_window
from custseq.models.predictor import CARRIED_BY
from custseq.models.pretrain import pretrain_prepared
from custseq.pipelines.prepare import PrepareResult, prepare
from custseq.progress import RunProgress
from custseq.validate.tables import validate_into
from custseq.windows import data_span, longest_trainable_horizon

NETWORK_CANDIDATES = frozenset({"network", "boosted"})  # predictor candidates that need the fine-tuned network
REPORTED = ("churn_auc", "churn_pr_auc", "churn_f1", "churn_brier", "value_rmse", "value_mae", "value_mape",
            "value_gini", "value_spearman", "value_top_decile_share", "composite", "cohort_wape",
            "seconds")  # fmt: skip
log = logging.getLogger(__name__)
Say = Callable[[str], None]


def evaluate(
    tables: Tables,
    config: RunConfig,
    *,
    protocol: str = "temporal",
    seeds: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
    methods: list[str] | tuple[str, ...] = DEFAULT_METHODS,
    ablations: list[str] | tuple[str, ...] = (),
    label_fractions: list[float] | tuple[float, ...] = (1.0,),
    transfer_from: Tables | None = None,
    out: Path | str | None = None,
    progress: bool = False,
    on_stage: Say | None = None,
) -> EvaluationResult:
    """Compare custseq with the chosen baselines, ablations and studies on one dataset.

    Parameters
    ----------
    tables, config
        The data, and every setting: ``config.window`` gives the as-of date (default: the data's last day) and
        the horizon.
    protocol
        ``temporal`` (test window one horizon before ``as_of``) or ``customer-split`` (70/15/15 customers).
    ablations
        custseq variants to add, e.g. ``no-pretraining`` (see :data:`custseq.evaluation.methods.ABLATIONS`).
    label_fractions
        Label-efficiency study: every method is also fine-tuned on these shares of the training customers
        (pre-training still sees all of them).
    transfer_from
        Another dataset's tables: adds ``custseq[transfer]``, pre-trained there and fine-tuned here.
    progress
        Show each stage with its duration, a bar over the seeds and methods and the training bars, with their
        time left, on stderr (:class:`~custseq.progress.RunProgress`).
    on_stage
        Hears each stage start, shown or not.

    Raises
    ------
    ConfigError
        On an unknown protocol, method or ablation, or an empty seed list.
    CustseqError
        On bad input or windows that cannot be built.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    if not seeds:
        raise ConfigError("evaluate needs at least one seed")
    runs = resolve(methods, ablations, label_fractions, transfer_from is not None)
    cfg = dataclasses.replace(
        config,
        window=dataclasses.replace(config.window, require_training=False),  # label-free methods run regardless
        model=dataclasses.replace(config.model, finetune=protocol_finetune(protocol, config.model.finetune)),
    )
    transfer = describe_tables(transfer_from) if transfer_from else None
    inputs = fingerprint(describe_tables(tables), config_to_dict(cfg), protocol, seeds, methods, ablations,
                         label_fractions, transfer)  # fmt: skip
    # a staging copy of `out` (evaluate may add to a predict folder): it becomes `out` at the end, run.json last
    staged = staged_output(out, command="evaluate", inputs=inputs, keep=True)
    shown = RunProgress(progress, on_stage=on_stage)
    with shown, work_folder("evaluate") as work, staged as staging:
        say = shown.stage
        say(f"preparing the windows ({protocol} protocol)")
        if protocol == "temporal":
            cfg = dataclasses.replace(cfg, window=dataclasses.replace(cfg.window, as_of=_test_as_of(tables, cfg)))
        prepared = prepare(tables, cfg, work / "prepared")
        split = make_split(prepared.layout, protocol, cfg.model.finetune)
        carry = _carried(tables, cfg, prepared, work, say) if protocol == "temporal" and not split.windows else None
        source = _prepare_transfer_source(transfer_from, cfg, work, say) if transfer_from is not None else None
        runner = _Runner(split, prepared.layout, work, cfg, source, carry, shown)
        per_seed, first = _run_methods(runner, runs, seeds, COHORT_SMOOTHING in methods, shown)
        result = _result(protocol, seeds, label_fractions, runs, cfg, split, prepared, runner, carry, per_seed, first)
        if staging is not None:
            folder = RunFolder(staging)
            folder.write_evaluation(result, markdown=markdown(result))
            tests = _test_predictions(split.test, {m: p for m, p in first.items() if m in per_seed})
            folder.write_test_predictions(tests)
    return result


def _result(
    protocol: str,
    seeds: list[int] | tuple[int, ...],
    label_fractions: list[float] | tuple[float, ...],
    runs: list[Method],
    cfg: RunConfig,
    split: Split,
    prepared: PrepareResult,
    runner: _Runner,
    carry: _Carry | None,
    per_seed: dict[str, list[dict[str, float]]],
    first: dict[str, BaselinePredictions],
) -> EvaluationResult:
    churned, _ = split.test.label_arrays()
    return EvaluationResult(
        protocol=protocol,
        as_of=split.test_folder.key,
        horizon_days=split.horizon_days,
        seeds=tuple(seeds),
        summary=_summary(per_seed),
        per_seed={m: tuple(r) for m, r in per_seed.items()},
        comparisons=_compare(per_seed, churned, {m: p.churn_probability for m, p in first.items()}),
        skipped=dict(runner.skipped),
        details=EvaluationDetails(
            test_customers=len(churned),
            test_churn_rate=float(churned.mean()) if len(churned) else math.nan,
            training_windows=tuple(w.features.num_rows for w in split.windows),
            label_fractions=tuple(sorted(set(label_fractions), reverse=True)),
            deterministic=tuple(sorted({m.name for m in runs if m.deterministic})),
            config=cfg.model,
            tables=prepared.summary.tables,  # rows in, used and quarantined per table
            trained_horizon_days=carry.split.horizon_days if carry is not None else None,
            carried_by=CARRIED_BY if carry is not None else None,
        ),
    )


def _run_methods(
    runner: _Runner, runs: list[Method], seeds: list[int] | tuple[int, ...], cohorts: bool, shown: RunProgress
) -> tuple[dict[str, list[dict[str, float]]], dict[str, BaselinePredictions]]:
    """Each method's test metrics per seed (methods that could not run left out), and its first seed's
    test predictions."""
    per_seed: dict[str, list[dict[str, float]]] = {m.name: [] for m in runs}
    first: dict[str, BaselinePredictions] = {}
    if cohorts:
        shown.stage("cohort exponential smoothing")
        try:
            per_seed[COHORT_SMOOTHING] = [runner.cohort_smoothing()] * len(seeds)
        except TrainingError as e:
            runner.skipped[COHORT_SMOOTHING] = str(e)
    bar = shown.bar("evaluate", len(seeds) * len(runs), unit="runs (seeds × methods)")
    for seed in seeds:
        for method in runs:
            bar.advance(0, info=f"seed {seed}: {method.name}")
            if method.name not in runner.skipped:
                if not (method.deterministic and seed != seeds[0]):  # those ran once, on the first seed
                    shown.stage(f"seed {seed}: {method.name}")
                outcome = runner.run(method, seed)
                if outcome is not None:
                    per_seed[method.name].append(outcome[0])
                    first.setdefault(method.name, outcome[1])
            bar.advance()
    bar.close()
    return {m: r for m, r in per_seed.items() if r and m not in runner.skipped}, first


def _summary(per_seed: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, MeanStd]]:
    """method -> metric -> mean and standard deviation over seeds."""
    return {
        method: {
            k: MeanStd(mean=float(np.mean([r[k] for r in runs])), std=float(np.std([r[k] for r in runs])))
            for k in REPORTED
            if k in runs[0]
        }
        for method, runs in per_seed.items()
    }


def _test_as_of(tables: Tables, cfg: RunConfig) -> dt.date:
    """One horizon before the scoring date (the last day in the data unless ``cfg.window.as_of`` says otherwise)."""
    days = cfg.window.horizon_days
    if cfg.window.as_of is not None:
        end = cfg.window.as_of
    else:
        con = connect(cfg.engine)
        try:
            report = validate_into(con, tables, cfg)
            end = data_span(con, report.tables["transactions"].sql_name)[1].date()
        finally:
            con.close()
    return end - dt.timedelta(days=days)


@dataclass(frozen=True)
class _Carry:
    """custseq's training rows when no training window fits the test horizon: the longest horizon that fits,
    prepared as of the same test date; its predictions are carried to the test horizon as ``predict`` does."""

    layout: PreparedWindows
    split: Split  # its test window holds the same customers, labelled over the shorter horizon (unused)


def _carried(tables: Tables, cfg: RunConfig, prepared: PrepareResult, work: Path, say: Say) -> _Carry | None:
    """The shorter-horizon training rows custseq carries from, or None when not even a short horizon fits."""
    plan = prepared.plan
    shorter = longest_trainable_horizon(plan.data_start, plan.data_end, cfg.window)
    if shorter is None or shorter == cfg.window.horizon_days:
        return None
    say(
        f"no training window fits {cfg.window.horizon_days} days before the test window: custseq trains on "
        f"{shorter} days and carries its predictions by BG/NBD, as predict does"
    )
    window = dataclasses.replace(cfg.window, horizon_days=shorter)
    short = prepare(tables, dataclasses.replace(cfg, window=window), work / "prepared-short")
    return _Carry(short.layout, make_split(short.layout, "temporal", cfg.model.finetune))


def _prepare_transfer_source(source: Tables, cfg: RunConfig, work: Path, say: Say) -> PreparedWindows:
    say("preparing the transfer source's windows")
    no_columns = dataclasses.replace(cfg, columns=dataclasses.replace(cfg.columns, transactions={}))
    window = dataclasses.replace(no_columns.window, as_of=None)  # the source's own last day
    return prepare(source, dataclasses.replace(no_columns, window=window), work / "transfer-source").layout


class _Runner:
    """Runs each method on the split; caches pre-trained encoders and custseq models per seed."""

    def __init__(
        self,
        split: Split,
        layout: PreparedWindows,
        work: Path,
        cfg: RunConfig,
        transfer_source: PreparedWindows | None,
        carry: _Carry | None = None,
        progress: RunProgress | None = None,
    ) -> None:
        self.split, self.work, self.cfg, self.transfer_source = split, work, cfg, transfer_source
        self.carry = carry
        self.progress: bool | RunProgress = progress or False  # the training bars of the networks
        self.skipped: dict[str, str] = {}
        self._encoders: dict[str, tuple[Path, float]] = {}  # pre-training settings -> (model dir, seconds)
        self._models: dict[tuple[str, int], ChurnValueModel] = {}  # (method, seed) -> fitted network
        self._deterministic: dict[str, tuple[dict[str, float], BaselinePredictions]] = {}
        self.layout = layout
        self._folders = self.layout.training
        self._test_cohorts = signup_cohorts(split.test.features, cfg.baselines.cohort_period)

    def cohort_smoothing(self) -> dict[str, float]:
        """Exponential smoothing of each signup cohort's revenue, against the test window's cohort totals.

        Needs the daily spend ``prepare`` wrote and a test window holding every customer (temporal protocol).
        """
        started = time.perf_counter()
        if self.split.test_part != "all":
            raise TrainingError("cohort totals need every customer of the test window (temporal protocol only)")
        spend = pq.read_table(self.layout.daily_spend_file).to_pandas()
        cutoff = dt.datetime.combine(dt.date.fromisoformat(self.split.test_folder.key), dt.time()) + dt.timedelta(1)
        forecast = cohort_forecast(spend, cutoff, self.split.horizon_days, self.cfg.baselines)
        _, value = self.split.test.label_arrays()
        actual = compare_by_cohort(self._test_cohorts, value, value).totals["actual"]
        wape = cohort_wape(forecast.set_index("cohort")["forecast"], actual)
        return {"cohort_wape": wape, "seconds": time.perf_counter() - started}

    def run(self, method: Method, seed: int) -> tuple[dict[str, float], BaselinePredictions] | None:
        """(test metrics, test predictions), or None when the method cannot run (then in skipped)."""
        if method.deterministic and method.name in self._deterministic:
            return self._deterministic[method.name]
        started = time.perf_counter()
        predictions: tuple[np.ndarray | None, BaselinePredictions]
        try:
            if method.needs_labels and not self.split.windows and not (self.carry and method.final_predictor):
                carried = ", custseq (carried from a shorter horizon)" if self.carry else ""
                raise TrainingError(
                    "no training window fits before the test window (the horizon is too long for the history); "
                    f"only label-free methods (last period, BTYD){carried} can run"
                )
            if method.is_network:
                predictions, extra_seconds = self._network(method, seed)
            elif method.name.split("@")[0] == EMBEDDINGS:
                predictions, extra_seconds = self._embeddings(method, seed), 0.0
            else:
                predictions, extra_seconds = self._baseline(method, seed), 0.0
        except TrainingError as e:
            self.skipped[method.name] = str(e)
            return None
        validation, test = predictions
        churned, value = self.split.test.label_arrays()
        metrics = method_metrics(churned, test.churn_probability, value, test.value)
        labelled = self.split.validation
        threshold = (
            best_f1_threshold(labelled.label_arrays()[0], validation)
            if validation is not None and labelled is not None
            else math.nan
        )
        metrics["churn_f1"] = f1_at(churned, test.churn_probability, threshold)
        metrics["cohort_wape"] = compare_by_cohort(self._test_cohorts, value, test.value).wape
        metrics["seconds"] = time.perf_counter() - started + extra_seconds
        if method.deterministic:
            self._deterministic[method.name] = (metrics, test)
        return metrics, test

    def _baseline(self, method: Method, seed: int) -> tuple[np.ndarray | None, BaselinePredictions]:
        s = self.split
        if method.baseline is None:
            raise TrainingError(f"{method.name} is not a baseline")
        model = method.baseline(seed, self.cfg.baselines).fit(s.train(method.label_fraction))
        validation = model.predict(s.validation).churn_probability if s.validation is not None else None
        return validation, _aligned(model.predict(s.test), s.test)

    def _network(self, method: Method, seed: int) -> tuple[tuple[np.ndarray, BaselinePredictions], float]:
        if method.variant is None:
            raise TrainingError(f"{method.name} is not a network")
        m = with_seed(dataclasses.replace(self.cfg, model=method.variant(self.cfg.model)), seed).model
        m = dataclasses.replace(m, finetune=dataclasses.replace(m.finetune, label_fraction=method.label_fraction))
        if method.final_predictor and not set(m.predictor.candidates) & NETWORK_CANDIDATES:
            return self._features_only(m), 0.0
        layout, split = self._training_rows()
        encoder_dir, pretrain_seconds = self._encoder(m, transfer=method.transfer)
        fit = finetune_prepared(
            layout, m, encoder_dir=encoder_dir, transfer=method.transfer,
            work_dir=self.work / "finetune", progress=self.progress,
        )  # fmt: skip
        if method.final_predictor:  # what predict delivers: the candidates, the choice on validation, the levels
            fit.model.predictor, _ = fit_final_predictor(layout, fit.model, m)
        if method.name == reference_of(method.name):  # emb+lightgbm reads custseq's model of the same seed
            self._models[(method.name, seed)] = fit.model
        validation = score_window(fit.model, layout.training[0], part="validation")
        if self.carry is not None and fit.model.predictor is not None:
            fit.model.predictor.carry_to_days = self.split.horizon_days
        test = score_window(fit.model, split.test_folder, part=split.test_part)
        if split.validation is None:
            raise TrainingError("no validation window: the network needs one to choose its F1 threshold")
        val_p = _by_ids(validation, split.validation.customer_ids)["churn_probability"]
        return (val_p, _aligned(_as_predictions(test), self.split.test)), pretrain_seconds

    def _features_only(self, m: ModelConfig) -> tuple[np.ndarray, BaselinePredictions]:
        """custseq's predictor without a network (the no-sequence ablation): validation churn, test predictions."""
        layout, split = self._training_rows()
        if split.validation is None:
            raise TrainingError("no validation window: the predictor is chosen on one")
        predictor, _ = fit_final_predictor(layout, None, m)
        validation = predictor.predict(split.validation.features, None)["churn_probability"]
        if self.carry is not None:
            predictor.carry_to_days = self.split.horizon_days
        test = predictor.predict(split.test.features, None)
        predictions = BaselinePredictions(split.test.customer_ids, test["churn_probability"], test["clv_expected"])
        return validation, _aligned(predictions, self.split.test)

    def _training_rows(self) -> tuple[PreparedWindows, Split]:
        """What custseq trains on: this split's windows, or the shorter horizon's it carries from."""
        return (self.carry.layout, self.carry.split) if self.carry is not None else (self.layout, self.split)

    def _embeddings(self, method: Method, seed: int) -> tuple[np.ndarray, BaselinePredictions]:
        """LightGBM on custseq's embeddings + the RFM features (custseq's model of the same seed).

        As in CASPR, the training rows' embeddings come from a model fitted on those rows' labels.
        """
        key = (reference_of(method.name), seed)
        if key not in self._models:
            raise TrainingError(f"{EMBEDDINGS} needs custseq's model: add custseq to the methods")
        model = self._models[key]
        windows = [_with_embeddings(model, w, f) for w, f in zip(self.split.windows, self._folders, strict=True)]
        test_window = _with_embeddings(model, self.split.test_window, self.split.test_folder)
        augmented = dataclasses.replace(self.split, windows=tuple(windows), test_window=test_window)
        booster = LightGBM(seed=seed, config=self.cfg.baselines).fit(augmented.train(method.label_fraction))
        if augmented.validation is None:
            raise TrainingError(f"{EMBEDDINGS} needs a validation window")
        predictions = booster.predict(augmented.validation).churn_probability
        return predictions, _aligned(booster.predict(augmented.test), augmented.test)

    def _encoder(self, m: ModelConfig, transfer: bool) -> tuple[Path | None, float]:
        """A pre-trained encoder for these settings, seed included (trained once), or None without pre-training."""
        if not m.pretraining:
            return None, 0.0
        prepared = self.transfer_source if transfer else self._training_rows()[0]
        if prepared is None:
            raise TrainingError("transfer needs a source dataset")
        settings = [str(prepared.root), *(config_to_dict(c) for c in (m.encoder, m.pretrain, m.pretrain_training))]
        key = json.dumps(settings, sort_keys=True)
        if key in self._encoders:  # pre-trained for another method of this seed: count its time here too
            return self._encoders[key]
        started = time.perf_counter()
        folder = self.work / f"pretrained-{len(self._encoders)}"
        pretrain_prepared(
            prepared, folder, encoder=m.encoder, pretrain=m.pretrain, training=m.pretrain_training,
            work_dir=self.work / "pretrain", progress=self.progress,
        )  # fmt: skip
        self._encoders[key] = (folder, time.perf_counter() - started)
        return folder, 0.0  # already inside this method's wall time


def _by_ids(scores: WindowScores, ids: list[str]) -> dict[str, np.ndarray]:
    """The score columns in the order of ``ids`` (every id must have been scored)."""
    index = {c: i for i, c in enumerate(scores.customer_ids)}
    try:
        rows = np.array([index[c] for c in ids], dtype=np.int64)
    except KeyError as e:
        raise TrainingError(f"customer {e} of the evaluation rows was not scored") from None
    return {k: v[rows] for k, v in scores.columns.items()}


def _as_predictions(scores: WindowScores) -> BaselinePredictions:
    c = scores.columns
    return BaselinePredictions(scores.customer_ids, c["churn_probability"], c["clv_expected"])


def _aligned(p: BaselinePredictions, window: WindowTables) -> BaselinePredictions:
    """Predictions in the window's customer order."""
    ids = window.customer_ids
    if p.customer_ids == ids:
        return p
    index = {c: i for i, c in enumerate(p.customer_ids)}
    try:
        rows = np.array([index[c] for c in ids], dtype=np.int64)
    except KeyError as e:
        raise TrainingError(f"test customer {e} was not scored") from None
    return BaselinePredictions(ids, p.churn_probability[rows], p.value[rows])


def _with_embeddings(model: ChurnValueModel, window: WindowTables, folder: WindowFolder) -> WindowTables:
    """The window's features with the model's customer embedding appended as numeric columns ``emb_j``."""
    scores = score_window(model, folder)
    index = {c: i for i, c in enumerate(scores.customer_ids)}
    rows = np.array([index[c] for c in window.customer_ids], dtype=np.int64)
    features = window.features
    for j in range(scores.embeddings.shape[1]):
        features = features.append_column(f"emb_{j}", pa.array(scores.embeddings[rows, j].astype(np.float64)))
    return dataclasses.replace(window, features=features)


def method_metrics(
    churned: np.ndarray, churn_p: np.ndarray, value: np.ndarray, value_p: np.ndarray
) -> dict[str, float]:
    """Every reported metric but F1 and seconds: churn, value, MAPE on positive values, Spearman."""
    m = churn_value_metrics(churned, churn_p, value, value_p)
    positive = value > 0
    m["value_mape"] = (
        float(np.mean(np.abs(value_p[positive] - value[positive]) / value[positive])) if positive.any() else math.nan
    )
    m["value_spearman"] = float(stats.spearmanr(value, value_p).statistic) if len(value) > 1 else math.nan
    return m


def _test_predictions(test: WindowTables, first: dict[str, BaselinePredictions]) -> pa.Table:
    """test_predictions.parquet: the test customers' labels and each method's first-seed predictions."""
    churned, value = test.label_arrays()
    columns = {"customer_id": test.customer_ids, "churned": churned.astype(bool), "value": value.astype(float)}
    for method, p in first.items():
        columns[f"{method}:churn_probability"] = np.asarray(p.churn_probability, dtype=float)
        columns[f"{method}:clv_expected"] = np.asarray(p.value, dtype=float)
    return pa.table(columns)


def markdown(result: EvaluationResult) -> str:
    """evaluation.md: the summary table (labels and formats of :data:`custseq.metrics.METRICS`) and the tests."""
    columns = REPORTED
    d = result.details
    seeds = len(result.seeds)
    spread = (
        "mean ± std over seeds (methods that do not depend on the seed ran once)."
        if seeds > 1
        else "1 seed: no spread and no t-test (give several --seeds for both)."
    )
    lines = [
        f"# custseq evaluate: {result.protocol} protocol, test as of {result.as_of}, horizon {result.horizon_days} "
        f"days, seeds {list(result.seeds)}",
        "",
        f"{d.test_customers} test customers (churn rate {d.test_churn_rate:.3f}); {spread}",
        "",
        *_carried_lines(result),
        "| method | " + " | ".join(METRICS[c].label for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method, s in result.summary.items():
        lines.append(f"| {method} | " + " | ".join(mean_std_text(c, s.get(c), seeds) for c in columns) + " |")
    if result.comparisons:
        lines += [
            "",
            "| method vs custseq | ΔAUC (t-test p) | ΔnGini (t-test p) | ΔAUC bootstrap 95% (p) |",
            "|---|---|---|---|",
        ]
        for name, c in result.comparisons.items():
            b = c.auc_bootstrap
            lines.append(
                f"| {name} vs {c.reference} | {c.churn_auc_difference:+.3f} {_p_text(c.churn_auc_p)} | "
                f"{c.value_gini_difference:+.3f} {_p_text(c.value_gini_p)} | "
                f"{b.difference:+.3f} [{b.low:+.3f}, {b.high:+.3f}] ({b.p_value:.3g}) |"
            )
        lines.append("\nDifferences are custseq minus the method: positive means custseq is ahead.")
    lines += [f"\n{name} was not run: {why}" for name, why in result.skipped.items()]
    return "\n".join(lines) + "\n"


def _p_text(p: float) -> str:
    return f"({p:.3g})" if math.isfinite(p) else "(1 seed: no t-test)"


def _carried_lines(result: EvaluationResult) -> list[str]:
    d = result.details
    if d.trained_horizon_days is None:
        return []
    return [
        f"No training window fits {result.horizon_days} days before the test window: custseq trained on "
        f"{d.trained_horizon_days} days and carried its predictions ({d.carried_by}).",
        "",
    ]


def _compare(
    per_seed: dict[str, list[dict[str, float]]], churned: np.ndarray, first: dict[str, np.ndarray]
) -> dict[str, Comparison]:
    """Paired t-tests over seeds, and a paired bootstrap of the AUC on the first seed's test customers."""
    out = {}
    for name, runs in per_seed.items():
        reference = reference_of(name)
        if name == reference or reference not in per_seed or "churn_auc" not in runs[0]:
            continue
        ours = per_seed[reference]
        tests: dict[str, float] = {}
        for metric in ("churn_auc", "value_gini", "composite"):
            a, b = [r[metric] for r in ours], [r[metric] for r in runs]
            tests[f"{metric}_difference"] = float(np.mean(a) - np.mean(b))
            tests[f"{metric}_p"] = paired_t_test(a, b)
        bootstrap = AucBootstrap(**paired_bootstrap_auc(churned, first[reference], first[name], n_boot=500))
        out[name] = Comparison(reference=reference, auc_bootstrap=bootstrap, **tests)
    return out
