"""``fit-head``: a user's per-customer label learnt from custseq's embeddings as of the labels' date.

The labels say what became of each customer after an as-of date (fraud found, an upsell, a category bought);
the embeddings and features are built from the rows up to the end of that day only, with the saved model, as
``custseq score`` builds them. The head is compared in a customer-level K-fold with the features alone and a
trivial baseline, then fitted on every labelled customer and saved.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from custseq.baselines.boosted import BoostedInputs
from custseq.config import RunConfig
from custseq.config.downstream import HeadConfig
from custseq.downstream.artifacts import save_head
from custseq.downstream.crossval import Candidate, cross_validate
from custseq.downstream.head import FittedHead, fit_model, kind_for
from custseq.downstream.inputs import CustomerInputs, customer_inputs
from custseq.downstream.labels import HeadLabels, read_labels
from custseq.errors import SchemaError
from custseq.features.matrix import fit_tabular
from custseq.io.tables import Tables
from custseq.models.finetune import load_churn_value
from custseq.pipelines.predict import saved_data_config
from custseq.pipelines.score import refuse_partial_run

EMBEDDINGS, WITH_FEATURES, FEATURES = "embeddings", "embeddings+features", "features"


def fit_head(
    model_dir: Path | str,
    tables: Tables,
    labels: Path | str | pd.DataFrame,
    cfg: HeadConfig,
    *,
    label_column: str | None = None,
    as_of: dt.date | None = None,
    data_config: RunConfig | None = None,
    out: Path | str | None = None,
) -> FittedHead:
    """Fit a head on ``labels`` with the embeddings (and features) of a model saved by ``predict``.

    Parameters
    ----------
    model_dir
        The model folder (``<predict out>/model``).
    tables
        The data the labelled customers' history comes from.
    labels
        ``customer_id`` and the label (CSV, Parquet or a frame); see :func:`read_labels`.
    cfg
        The task and the head's settings.
    label_column
        The label's column when the file has several besides ``customer_id``.
    as_of
        The date the labels refer to (inclusive): inputs read rows up to the end of that day only. Default the
        last day in the data.
    data_config
        How to read the data (default: the model's own data settings).
    out
        The head folder to write (None: not saved).

    Raises
    ------
    SchemaError
        If the labels are unusable: wrong columns, values that do not fit the task, too few known customers or
        too few per class.
    ArtifactError
        If the model folder is missing or corrupted.
    """
    refuse_partial_run(Path(model_dir))
    model, saved, manifest = load_churn_value(model_dir)
    head_labels = read_labels(labels, cfg.task, label_column=label_column, max_classes=cfg.max_classes)
    data_cfg = data_config or saved_data_config(saved["data"])
    inputs = customer_inputs(model, data_cfg, tables, as_of)
    used, unknown = _known(head_labels, inputs)
    _check_enough(used, unknown, inputs, cfg)
    rows = inputs.rows_of(used.customer_ids)
    features, embeddings = inputs.features.take(rows), inputs.embeddings[rows]
    spec = fit_tabular([features])
    dim = embeddings.shape[1]
    head_inputs = BoostedInputs.of(spec, dim) if cfg.with_features else BoostedInputs((), {}, dim)
    name = WITH_FEATURES if cfg.with_features else EMBEDDINGS
    n_classes, kind = len(used.classes), kind_for(len(used.customer_ids), cfg)
    candidates = [Candidate(name, head_inputs), Candidate(FEATURES, BoostedInputs.of(spec, 0))]
    metrics = cross_validate(candidates, features, embeddings, used.values, n_classes, kind, cfg)
    x = head_inputs.matrix(features, embeddings)
    fitted = fit_model(x, used.values, n_classes, kind, len(head_inputs.numeric), cfg)
    counts = {
        "labelled_customers": len(head_labels.customer_ids) + head_labels.rows_without_label,
        "used_customers": len(used.customer_ids),
        "unknown_customers": len(unknown),
        "rows_without_label": head_labels.rows_without_label,
    }
    if n_classes:
        counts |= {f"class_{c}": int(n) for c, n in zip(used.classes, _class_counts(used), strict=True)}
    head = FittedHead(
        cfg, used.name, used.classes, head_inputs, kind, fitted, manifest.weights_sha256, inputs.as_of.isoformat(),
        metrics, counts,
    )  # fmt: skip
    if out is not None:
        save_head(head, out)
    return head


def _known(labels: HeadLabels, inputs: CustomerInputs) -> tuple[HeadLabels, list[str]]:
    """The labels of customers with history before the cutoff, and the ids of the others."""
    known = set(inputs.customer_ids)
    keep = np.array([i for i, c in enumerate(labels.customer_ids) if c in known], dtype=np.int64)
    unknown = [c for c in labels.customer_ids if c not in known]
    return labels.take(keep), unknown


def _check_enough(used: HeadLabels, unknown: list[str], inputs: CustomerInputs, cfg: HeadConfig) -> None:
    cutoff = (inputs.as_of + dt.timedelta(days=1)).isoformat()
    if not used.customer_ids:
        seen = inputs.customer_ids[:3]
        raise SchemaError(
            f"none of the {len(unknown)} labelled customers has a transaction before {cutoff} in the data (labels "
            f"e.g. {unknown[:3]}; the data's customers e.g. {seen}): check that the labels' customer_id values are "
            "written as in the data and that --as-of is the date the labels refer to"
        )
    if len(used.customer_ids) < cfg.min_labels:
        raise SchemaError(
            f"only {len(used.customer_ids)} labelled customers have history before {cutoff} ({len(unknown)} others "
            f"unknown); a head needs at least {cfg.min_labels}"
        )
    if used.classes:
        counts = dict(zip(used.classes, _class_counts(used), strict=True))
        few = {c: n for c, n in counts.items() if n < cfg.min_per_class}
        if few:
            raise SchemaError(
                f"too few customers of class(es) {few} among the {len(used.customer_ids)} usable labels (each class "
                f"needs at least {cfg.min_per_class}, one per fold); add labels, or merge rare classes"
            )


def _class_counts(labels: HeadLabels) -> list[int]:
    return [int(n) for n in np.bincount(labels.values, minlength=len(labels.classes))]
