"""Fine-tune, save, load and apply the churn + value model on the windows of a ``prepare`` output.

Temporal training (DESIGN §3): samples are (customer, cutoff) pairs from every training window. A stable
share of customers (``FinetuneConfig.validation_fraction``, by id hash, the same in every window) is held
out; their rows in the latest training window are the validation set. Early stopping follows the
validation composite of churn AUC and value normalized Gini; the churn probabilities are then calibrated
on the same validation customers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file as save_safetensors_file

from custseq.config import EncoderConfig, FinetuneConfig, ModelConfig, TrainConfig
from custseq.errors import ArtifactError, TrainingError
from custseq.features.matrix import TabularSpec, fit_tabular, transform_tabular
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.metrics import churn_value_metrics
from custseq.models.artifacts import Manifest, configs_from_json, data_fingerprint, load_model, save_model
from custseq.models.calibration import Calibrator, calibration_report, fit_calibrator
from custseq.models.distributed import is_main_process, world_size_from_env
from custseq.models.encoder import SequenceEncoder
from custseq.models.lstm import LstmEncoder, build_encoder
from custseq.models.multitask import QUANTILES, CustomerBatch, MultiTaskModel
from custseq.models.predictor import NetworkOutputs, Predictor
from custseq.models.pretrain import load_pretrained, model_vocab
from custseq.models.prospects import ProspectModel
from custseq.models.samples import SampleStream, WindowLookups, fit_sample_weights
from custseq.models.train import TrainResult, train
from custseq.progress import RunProgress
from custseq.sequences.batch import SequenceStream, split_mask
from custseq.sequences.vocab import SequenceVocab

MODEL_TYPE = "custseq-churn-value"
CONFIG_CLASSES = {"encoder": EncoderConfig, "finetune": FinetuneConfig, "train": TrainConfig}
VOCAB_DEPENDENT = ("embed.fields.", "embed.numeric.")  # encoder weights sized by one dataset's vocabulary
PREDICTION_COLUMNS = (
    "churn_probability", "clv_expected", *(f"clv_p{round(q * 100)}" for q in QUANTILES), "clv_if_active"
)  # fmt: skip
log = logging.getLogger(__name__)


@dataclass
class ChurnValueModel:
    """A fine-tuned model with everything needed to score: vocabulary, tabular spec and calibration.

    ``predictor`` (issue 15) turns the network's outputs and the window's features into the final predictions;
    without one, the network's own (calibrated) outputs are the predictions.
    """

    network: MultiTaskModel
    vocab: SequenceVocab
    tabular: TabularSpec
    calibrator: Calibrator
    horizon_days: int
    predictor: Predictor | None = None
    prospects: ProspectModel | None = None  # people with events and no purchase yet: their own model

    @property
    def max_events(self) -> int:
        return self.network.encoder.cfg.max_events

    @property
    def output_horizon_days(self) -> int:
        """The horizon of the predictions: the trained one, or the longer one the predictor carries them to."""
        return self.predictor.output_horizon_days if self.predictor is not None else self.horizon_days


@dataclass
class FitResult:
    """A fine-tuned model and how it was obtained."""

    model: ChurnValueModel
    metrics: dict[str, float]  # on the validation customers, with calibrated probabilities
    result: TrainResult  # the training loop's history and best epoch
    cutoffs: list[str]  # as-of dates of the training windows, latest first
    pretrained: bool  # whether the encoder started from a pre-trained one


@dataclass
class WindowScores:
    """Predictions for every customer of one window, sorted by customer id."""

    customer_ids: list[str]
    columns: dict[str, np.ndarray]  # PREDICTION_COLUMNS -> (N,)
    embeddings: np.ndarray  # (N, D)
    churned: np.ndarray | None = None  # the window's labels, when it has them
    value: np.ndarray | None = None

    def table(self) -> pa.Table:
        data = {"customer_id": pa.array(self.customer_ids, pa.string())}
        data |= {k: pa.array(v.astype(np.float64)) for k, v in self.columns.items()}
        return pa.table(data)

    def embedding_table(self) -> pa.Table:
        data = {"customer_id": pa.array(self.customer_ids, pa.string())}
        data |= {f"e{j}": pa.array(self.embeddings[:, j].astype(np.float32)) for j in range(self.embeddings.shape[1])}
        return pa.table(data)


def finetune_prepared(
    prepared: PreparedWindows,
    cfg: ModelConfig,
    *,
    encoder_dir: Path | None = None,
    transfer: bool = False,
    work_dir: Path | None = None,
    resume: bool = False,
    progress: bool | RunProgress = True,
    trained: Path | None = None,
) -> FitResult:
    """Fine-tune the multi-task model on the training windows of ``prepared``.

    ``encoder_dir`` is a pre-trained encoder (:func:`custseq.models.pretrain.pretrain_prepared`); without it
    the encoder starts from random weights. With ``transfer`` it may come from other data (another
    vocabulary): see :func:`transfer_encoder`. ``resume`` continues from the checkpoint in ``work_dir``
    (:func:`custseq.models.train.train`). The model is returned calibrated, with its validation metrics.

    ``trained`` is the file a distributed fine-tuning's rank 0 wrote (:func:`finetune_rank`): its weights and
    training history are taken instead of training here, and the calibration and metrics follow as usual.
    """
    setup = _setup(prepared, cfg, encoder_dir, transfer)
    if trained is None:
        result = _train(setup, cfg.finetune_training, work_dir, resume, progress)
    else:
        result = load_trained(setup.network, trained)
    return _finish(setup, cfg, result, encoder_dir is not None)


def finetune_rank(
    prepared: PreparedWindows,
    cfg: ModelConfig,
    out: Path,
    *,
    encoder_dir: Path | None = None,
    transfer: bool = False,
    work_dir: Path | None = None,
    resume: bool = False,
) -> None:
    """One ``torchrun`` process of a distributed fine-tuning: train on this rank's share, rank 0 writes ``out``.

    ``out`` holds the best weights and the training history, which :func:`finetune_prepared` (``trained=out``)
    turns into the calibrated model in the parent process.
    """
    setup = _setup(prepared, cfg, encoder_dir, transfer)
    result = _train(setup, cfg.finetune_training, work_dir, resume, progress=False)
    if is_main_process():
        save_trained(setup.network, result, out)


@dataclass
class _Setup:
    """Everything fine-tuning needs before its training loop: the data, the network and the sample streams."""

    vocab: SequenceVocab
    spec: TabularSpec
    windows: list[WindowFolder]
    horizon_days: int
    network: MultiTaskModel
    train_stream: SampleStream
    val_stream: SampleStream  # every validation customer: calibration and the reported metrics
    epoch_val_stream: SampleStream  # those each epoch reads (FinetuneConfig.max_epoch_validation_customers)


def _setup(prepared: PreparedWindows, cfg: ModelConfig, encoder_dir: Path | None, transfer: bool) -> _Setup:
    ft, training = cfg.finetune, cfg.finetune_training
    vocab = SequenceVocab.load(prepared.vocab_file)
    windows = list(prepared.training)
    validation = windows[0]
    spec = fit_tabular([pq.read_table(w.features) for w in windows])
    weights = fit_sample_weights([_training_labels(w, ft) for w in windows], ft)
    torch.manual_seed(training.seed)
    encoder = _encoder(encoder_dir, cfg.encoder, vocab, transfer)
    network = MultiTaskModel(encoder, spec.width, spec.category_sizes(), ft)
    lookups = WindowLookups(spec)  # read once for every epoch; the validation window is a training window too
    train_stream = SampleStream(
        tuple(windows), vocab, spec, encoder.cfg.max_events, training.batch_size, seed=training.seed,
        holdout="train", holdout_fraction=ft.validation_fraction, test_fraction=ft.test_fraction,
        label_fraction=ft.label_fraction, weights=weights, max_batches=training.max_batches_per_epoch,
        lookups=lookups,
    )  # fmt: skip
    val_stream = SampleStream(
        (validation,), vocab, spec, encoder.cfg.max_events, 1024, shuffle=False, seed=training.seed,
        holdout="validation", holdout_fraction=ft.validation_fraction, test_fraction=ft.test_fraction,
        lookups=lookups,
    )  # fmt: skip
    if train_stream.n_batches() == 0:
        raise TrainingError("no training customers left after the validation, test and label-fraction holdouts")
    if val_stream.n_batches() == 0:
        raise TrainingError(
            "no validation customers in the latest training window; the data have too few customers to "
            "fine-tune and validate a model (raise model.finetune.validation_fraction or add data)"
        )
    epoch_val_stream = epoch_validation(val_stream, ft)
    return _Setup(vocab, spec, windows, prepared.horizon_days, network, train_stream, val_stream, epoch_val_stream)


def epoch_validation(val_stream: SampleStream, ft: FinetuneConfig) -> SampleStream:
    """The validation customers each epoch reads: all of them, or a stable subset by id hash when they are more
    than ``ft.max_epoch_validation_customers`` (the customers whose hash falls in a narrower validation band)."""
    cap = ft.max_epoch_validation_customers
    customers = val_stream.customers()
    if cap is None or customers <= cap:
        return val_stream
    return dataclasses.replace(val_stream, holdout_fraction=ft.validation_fraction * cap / customers)


def _train(
    setup: _Setup, training: TrainConfig, work_dir: Path | None, resume: bool, progress: bool | RunProgress
) -> TrainResult:
    """The shared training loop (:func:`custseq.models.train.train`), on this rank's share under ``torchrun``."""
    ft = setup.network.cfg
    train_stream, val_stream = setup.train_stream, setup.epoch_val_stream
    processes = world_size_from_env()
    if train_stream.n_batches(processes) == 0:
        raise TrainingError(
            f"{train_stream.n_batches()} training batches cannot be shared by {processes} processes; lower "
            "model.finetune_training.batch_size or the number of processes"
        )
    return train(
        setup.network,
        lambda epoch, rank, world: train_stream.batches(epoch, rank, world),
        # every rank evaluates all validation customers, as score_fn does: the means summed over ranks are theirs
        lambda rank, world: val_stream.batches(),
        training,
        out_dir=work_dir,
        steps_per_epoch=train_stream.n_batches(processes),
        resume=resume,
        progress=progress,
        description="fine-tuning",
        score_fn=lambda m: _validation_composite(m, val_stream),
        lr_scales={"encoder.": ft.encoder_lr_scale} if ft.encoder_mode == "discriminative" else None,
    )


def _finish(setup: _Setup, cfg: ModelConfig, result: TrainResult, pretrained: bool) -> FitResult:
    """Calibrate the trained network on the validation customers and measure it there."""
    ft, training = cfg.finetune, cfg.finetune_training
    network, vocab = setup.network, setup.vocab
    raw = _predict_stream(network, setup.val_stream, Calibrator("none"))
    churned, value = _labels(raw)
    calibrator = fit_calibrator(churned, raw.columns["churn_probability"], ft.calibration)
    report = calibration_report(churned, raw.columns["churn_probability"], ft.calibration, seed=training.seed)
    model = ChurnValueModel(network, vocab, setup.spec, calibrator, setup.horizon_days)
    calibrated = calibrator(raw.columns["churn_probability"])
    metrics = churn_value_metrics(churned, calibrated, value, raw.columns["clv_expected"])
    metrics |= {f"churn_{k}": v for k, v in report.items()}
    metrics |= {"best_epoch": float(result.best_epoch), "validation_customers": float(len(raw.customer_ids))}
    cutoffs = [w.key for w in setup.windows]
    return FitResult(model, metrics, result, cutoffs, pretrained)


def save_trained(network: torch.nn.Module, result: TrainResult, path: Path) -> None:
    """Write a trained network's weights (safetensors) with its :class:`TrainResult` (JSON, in the file's
    metadata) to ``path``, read by :func:`load_trained`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # copies on the CPU: contiguous, and no two names share storage (safetensors refuses shared tensors)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in network.state_dict().items()}
    partial = path.with_name(path.name + ".partial")
    save_safetensors_file(state, str(partial), metadata={"result": json.dumps(dataclasses.asdict(result))})
    partial.replace(path)


def load_trained(network: torch.nn.Module, path: Path) -> TrainResult:
    """Load the weights :func:`save_trained` wrote into ``network`` (left in eval mode); their training result.

    Raises
    ------
    ArtifactError
        If ``path`` is missing, unreadable or does not fit the network.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
            result = TrainResult(**json.loads((f.metadata() or {})["result"]))
        network.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, SafetensorError) as e:
        raise ArtifactError(f"{path}: the distributed fine-tuning left no usable weights ({e})") from None
    network.eval()
    return result


def score_window(
    model: ChurnValueModel, window: WindowFolder, batch_size: int = 1024, part: str = "all"
) -> WindowScores:
    """Calibrated predictions and embeddings for the customers of a window folder (features + sequences).

    ``part`` = train / validation / test scores only that part of the model's own customer split.
    """
    ft = model.network.cfg
    stream = SampleStream(
        (window,), model.vocab, model.tabular, model.max_events, batch_size, shuffle=False, holdout=part,
        holdout_fraction=ft.validation_fraction, test_fraction=ft.test_fraction,
    )  # fmt: skip
    scores = _predict_stream(model.network, stream, model.calibrator)
    if model.predictor is None:
        return scores
    return apply_predictor(model.predictor, scores, pq.read_table(window.features))


def score_tables(
    model: ChurnValueModel, features: pa.Table, sequences: pa.Table, batch_size: int = 1024
) -> WindowScores:
    """:func:`score_window` for a window held in memory: its features and the sequences of one shard.

    The customers are batched as :func:`score_window` batches that shard's file, so the numbers are the same.
    """
    stream = SequenceStream((), model.vocab, model.max_events, batch_size, shuffle=False)
    inputs = transform_tabular(model.tabular, features)
    rows_of = {c: i for i, c in enumerate(inputs.customer_ids)}
    values = torch.from_numpy(inputs.values)
    categories = {k: torch.from_numpy(v) for k, v in inputs.categories.items()}

    def batches() -> Iterator[CustomerBatch]:
        for events in stream.table_batches(sequences):
            try:
                rows = torch.tensor([rows_of[c] for c in events.customer_ids], dtype=torch.long)
            except KeyError as e:
                raise TrainingError(f"customer {e} has a sequence but no features") from None
            yield CustomerBatch(events, values[rows], {k: v[rows] for k, v in categories.items()})

    scores = _predict_batches(model.network, batches(), model.calibrator)
    if model.predictor is None:
        return scores
    return apply_predictor(model.predictor, scores, features)


def apply_predictor(predictor: Predictor, scores: WindowScores, features: pa.Table) -> WindowScores:
    """The predictor's columns for the scored customers (embeddings and labels kept)."""
    index = {c: i for i, c in enumerate(features.column("customer_id").to_pylist())}
    try:
        rows = np.array([index[c] for c in scores.customer_ids], dtype=np.int64)
    except KeyError as e:
        raise TrainingError(f"customer {e} has a sequence but no features; run prepare again") from None
    network = NetworkOutputs(scores.columns["churn_probability"], scores.columns["clv_expected"], scores.embeddings)
    columns = predictor.predict(features.take(pa.array(rows)), network)
    return WindowScores(scores.customer_ids, columns, scores.embeddings, scores.churned, scores.value)


def save_churn_value(
    path: Path, fit: FitResult, cfg: ModelConfig, data_config: dict[str, Any], fingerprint: str
) -> Manifest:
    """Write the model directory: weights (safetensors), configs, tabular spec and calibration (JSON)."""
    model = fit.model
    weighting = model.network.weighting
    config = {
        "encoder": model.network.encoder.cfg,
        "finetune": cfg.finetune,
        "train": cfg.finetune_training,
        "tabular": model.tabular.to_json(),
        "calibration": model.calibrator.to_json(),
        "horizon_days": model.horizon_days,
        "data": data_config,
    }
    if model.predictor is not None:
        config["predictor"] = model.predictor.to_json()
    if model.prospects is not None:
        config["prospects"] = model.prospects.to_json()
    extra = {
        "task_weighting": {"mode": weighting.mode, "weights": [float(w) for w in weighting.weights()]},
        "pretrained": fit.pretrained,
        "history": fit.result.history,
    }
    return save_model(
        path, model.network.cpu(), config, model.vocab, model_type=MODEL_TYPE, data_fingerprint=fingerprint,
        cutoffs=fit.cutoffs, metrics=fit.metrics, extra=extra,
    )  # fmt: skip


def load_churn_value(path: Path | str) -> tuple[ChurnValueModel, dict[str, Any], Manifest]:
    """Load a model directory written by :func:`save_churn_value`; also returns its config.json dict."""
    module, config, vocab, manifest = load_model(Path(path), _build, expected_type=MODEL_TYPE)
    network = cast(MultiTaskModel, module)  # built by _build; load_model returns an nn.Module
    if vocab is None:  # _build has already refused a model without one
        raise ArtifactError(f"{path}: a churn-value model needs its vocab.json")
    try:
        spec = TabularSpec.from_json(config["tabular"])
        calibrator = Calibrator.from_json(config["calibration"])
        horizon = int(config["horizon_days"])
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path}: config.json lacks the model's {e}; save the model again") from None
    predictor = Predictor.from_json(config["predictor"]) if "predictor" in config else None
    prospects = ProspectModel.from_json(config["prospects"]) if "prospects" in config else None
    return ChurnValueModel(network, vocab, spec, calibrator, horizon, predictor, prospects), config, manifest


def fingerprint_of(prepared: PreparedWindows) -> str:
    """The training data's fingerprint for a model's manifest: the prepare summary and the vocabulary."""
    return data_fingerprint([prepared.summary_file.read_bytes(), prepared.vocab_file.read_bytes()])


def _build(config: dict[str, Any], vocab: SequenceVocab | None) -> MultiTaskModel:
    if vocab is None:
        raise ArtifactError("a churn-value model needs its vocab.json")
    cfgs = configs_from_json(config, CONFIG_CLASSES)
    spec = TabularSpec.from_json(config["tabular"])
    encoder = _fresh_encoder(cfgs["encoder"], vocab)
    return MultiTaskModel(encoder, spec.width, spec.category_sizes(), cfgs["finetune"])


def _fresh_encoder(cfg: EncoderConfig, vocab: SequenceVocab) -> SequenceEncoder | LstmEncoder:
    sizes = {f.name: vocab.size(f.name) for f in vocab.layout.categorical()}
    return build_encoder(cfg, sizes, len(vocab.layout.numeric()))


def _encoder(
    encoder_dir: Path | None, cfg: EncoderConfig, vocab: SequenceVocab, transfer: bool = False
) -> SequenceEncoder | LstmEncoder:
    if encoder_dir is None:
        return _fresh_encoder(cfg, vocab)
    if transfer:
        return transfer_encoder(encoder_dir, vocab)
    if model_vocab(encoder_dir).to_json() != vocab.to_json():
        raise ArtifactError(
            f"the pre-trained encoder in {encoder_dir} was fitted with another vocabulary "
            "(to start from an encoder pre-trained on other data, transfer it)"
        )
    pretrained, _ = load_pretrained(encoder_dir)
    return pretrained.encoder


def transfer_encoder(encoder_dir: Path, vocab: SequenceVocab) -> SequenceEncoder | LstmEncoder:
    """An encoder for ``vocab`` that starts from one pre-trained on other data (cross-domain transfer).

    Everything that does not depend on the vocabulary is copied — the Transformer layers, the time,
    calendar, token-type and position embeddings, the [MASK] vector and the norms; the per-field
    embeddings and the numeric projection (their fields and sizes belong to the other data) start fresh.
    """
    pretrained, _ = load_pretrained(encoder_dir)
    source = pretrained.encoder
    target = _fresh_encoder(source.cfg, vocab)
    own = target.state_dict()
    copied = {
        name: tensor
        for name, tensor in source.state_dict().items()
        if not name.startswith(VOCAB_DEPENDENT) and name in own and own[name].shape == tensor.shape
    }
    target.load_state_dict(copied, strict=False)
    log.info("transferred %d of %d encoder tensors from %s", len(copied), len(own), encoder_dir)
    return target


def _training_labels(window: WindowFolder, ft: FinetuneConfig) -> pa.Table:
    labels = pq.read_table(window.labels)
    ids = labels.column("customer_id").to_pylist()
    keep = split_mask(ids, "train", ft.validation_fraction, ft.test_fraction, ft.label_fraction)
    return labels.filter(pa.array(keep))


def _validation_composite(network: torch.nn.Module, stream: SampleStream) -> float:
    # train() calls score_fn with the model it was given: finetune_prepared's MultiTaskModel.
    scores = _predict_stream(cast(MultiTaskModel, network), stream, Calibrator("none"))
    churned, value = _labels(scores)
    return churn_value_metrics(churned, scores.columns["churn_probability"], value,
                               scores.columns["clv_expected"])["composite"]  # fmt: skip


def _labels(scores: WindowScores) -> tuple[np.ndarray, np.ndarray]:
    """The labels (churned, value) of validation scores; the validation window is a labelled training window."""
    if scores.churned is None or scores.value is None:
        raise TrainingError("the validation customers have no labels; the latest training window lacks labels.parquet")
    return scores.churned, scores.value


def _predict_stream(network: MultiTaskModel, stream: SampleStream, calibrator: Calibrator) -> WindowScores:
    return _predict_batches(network, stream.batches(), calibrator)


@torch.no_grad()
def _predict_batches(network: MultiTaskModel, batches: Iterable[CustomerBatch], calibrator: Calibrator) -> WindowScores:
    network.eval()
    device = next(network.parameters()).device
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in PREDICTION_COLUMNS}
    embeddings, churned, value = [], [], []
    for batch in batches:
        out = network(batch.to(device))
        for k, v in network.predict_values(out).items():
            parts[k].append(v.double().cpu().numpy().copy())  # copies: a view would keep its batch's tensors
        embeddings.append(out.embedding.float().cpu().numpy().copy())
        ids.extend(batch.events.customer_ids)
        if batch.churned is not None:
            churned.append(batch.churned.numpy())
            value.append(cast(torch.Tensor, batch.value).numpy())  # a labelled batch has both labels
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    columns = {k: np.concatenate(v)[order] if v else np.zeros(0) for k, v in parts.items()}
    columns["churn_probability"] = calibrator(columns["churn_probability"])
    dim = network.encoder.dim
    matrix = np.concatenate(embeddings)[order] if embeddings else np.zeros((0, dim), np.float32)
    labels = churned and len(churned) == len(embeddings)
    return WindowScores(
        [ids[i] for i in order], columns, matrix,
        np.concatenate(churned)[order] if labels else None, np.concatenate(value)[order] if labels else None,
    )  # fmt: skip
