"""A saved model as an MLflow pyfunc model, built from code: no pickle.

The exported folder is a plain MLflow model (``MLmodel``, ``python_env.yaml``, ``requirements.txt``) holding
custseq's model folder (safetensors + JSON) under ``artifacts/`` and the small Python file
:mod:`custseq.export.mlflow_model` that MLflow runs to build the model when it loads it. Its signature describes
the transactions frame the model scores, from an input example: a few rows of the user's own data
(``example``), or rows built from the model's saved columns and vocabulary.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from custseq.config import RunConfig
from custseq.errors import ConfigError, CustseqError, DataReadError
from custseq.export.scorer import SavedScorer
from custseq.io.atomic import OutputFolderError
from custseq.pipelines.score import refuse_partial_run
from custseq.sequences.vocab import SequenceVocab
from custseq.version import __version__

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")  # the models-from-code file
EXAMPLE_ROWS = 20  # rows of --example kept as the input example
INSTALL_HINT = "pip install 'custseq[mlflow]'"
_PLAIN_NAME = re.compile(r"^\w+$")


def export_mlflow(model_dir: Path | str, out: Path | str, *, example: Path | str | None = None) -> Path:
    """Write the model in ``model_dir`` (``<predict out>/model``) as an MLflow pyfunc model in ``out``.

    Parameters
    ----------
    model_dir
        A model folder written by ``predict``.
    out
        The MLflow model folder to write; it must not exist.
    example
        A CSV or Parquet file of transactions like those the model scores; its first :data:`EXAMPLE_ROWS` rows
        become the input example, so the signature has the data's own column names and types. Without it the
        example is built from the model's saved columns and vocabulary (canonical or plainly mapped names).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ConfigError
        If MLflow is not installed, ``out`` exists, or the model maps its columns with expressions and no
        ``example`` is given.
    ArtifactError
        If ``model_dir`` is missing, corrupted or not a churn-value model.
    """
    mlflow = _mlflow()
    out = Path(out)
    if out.exists():
        raise OutputFolderError(f"--out {out} exists; pass a new folder for the MLflow model")
    arguments = pyfunc_arguments(model_dir, example=example)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # out appears whole or not at all
    try:
        mlflow.pyfunc.save_model(path=staging / "model", **arguments)
        (staging / "model").rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def log_mlflow(
    model_dir: Path | str,
    *,
    name: str = "custseq",
    example: Path | str | None = None,
    registered_model_name: str | None = None,
) -> Any:
    """Log the model in ``model_dir`` to the active MLflow run and tracking URI (the same pyfunc model as
    :func:`export_mlflow` writes), optionally registering it; returns MLflow's ``ModelInfo``.

    Raises
    ------
    ConfigError, ArtifactError
        As :func:`export_mlflow`.
    """
    mlflow = _mlflow()
    arguments = pyfunc_arguments(model_dir, example=example)
    return mlflow.pyfunc.log_model(name=name, registered_model_name=registered_model_name, **arguments)


def pyfunc_arguments(model_dir: Path | str, *, example: Path | str | None = None) -> dict[str, Any]:
    """What ``mlflow.pyfunc.save_model`` and ``log_model`` take to build custseq's model from code: the code
    file, the model folder as an artifact, the signature, the input example and the pip requirements."""
    from custseq.export.mlflow_pyfunc import MODEL_ARTIFACT

    model_dir = Path(model_dir)
    refuse_partial_run(model_dir)
    scorer = SavedScorer.load(model_dir)
    frame = example_rows(example) if example is not None else built_example(scorer.model.vocab, scorer.data_config)
    return {
        "python_model": str(MODEL_CODE),
        "artifacts": {MODEL_ARTIFACT: str(model_dir)},
        "signature": transactions_signature(frame, _example_predictions(scorer, frame), scorer.data_config),
        "input_example": frame,
        "pip_requirements": [f"custseq[mlflow]=={__version__}"],
    }


def _mlflow() -> ModuleType:
    """MLflow's pyfunc module, or a clear error naming the extra that installs it."""
    try:
        import mlflow.pyfunc
    except ImportError:
        raise ConfigError(f"exporting to MLflow needs MLflow: {INSTALL_HINT}") from None
    return mlflow


def transactions_signature(frame: pd.DataFrame, predictions: pd.DataFrame, data_cfg: RunConfig) -> Any:
    """The model's signature: the example's columns and types in (the customer id of any type: custseq takes
    text or integer ids), predictions.csv's columns out, and the optional parameter ``as_of`` (text)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.utils import _infer_schema  # infer_signature's own; its public form needs an output too

    from custseq.export.mlflow_pyfunc import AS_OF_PARAM

    id_column = _mapped_name(data_cfg, "customer_id")
    columns = [
        ColSpec(AnyType(), c.name, required=c.required) if c.name == id_column else c
        for c in _infer_schema(frame).inputs
    ]
    params = ParamSchema([ParamSpec(AS_OF_PARAM, "string", None)])
    return ModelSignature(inputs=Schema(columns), outputs=_infer_schema(predictions), params=params)


def example_rows(path: Path | str) -> pd.DataFrame:
    """The first :data:`EXAMPLE_ROWS` rows of a CSV or Parquet file, as pandas reads them.

    Raises
    ------
    DataReadError
        If the file is missing, of another format, or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataReadError(f"--example {path} does not exist; pass a CSV or Parquet file of transactions")
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, nrows=EXAMPLE_ROWS)
        if name.endswith((".parquet", ".pq")):
            return next(pq.ParquetFile(path).iter_batches(batch_size=EXAMPLE_ROWS)).to_pandas()
    except (OSError, ValueError, StopIteration) as e:
        raise DataReadError(f"cannot read --example {path}: {e}") from None
    raise DataReadError(f"--example {path}: use a .csv, .csv.gz or .parquet file")


def built_example(vocab: SequenceVocab, data_cfg: RunConfig) -> pd.DataFrame:
    """Three customers' transactions with every column the model reads, named as its saved mapping says:
    known category values, amounts near the training data's, dates up to the model's training as-of date.

    Raises
    ------
    ConfigError
        If the saved mapping computes a column (``amount=Quantity*UnitPrice``): only the user's rows can show it.
    """
    end = data_cfg.window.as_of or dt.date.today()
    days = [end - dt.timedelta(days=d) for d in (120, 75, 40, 10)]
    rows: dict[str, list[Any]] = {
        "customer_id": [f"c{i}" for i in (1, 1, 1, 2, 2, 3, 3, 3)],
        "ts": list(pd.to_datetime([days[0], days[1], days[3], days[0], days[2], days[1], days[2], days[3]])),
        "amount": [19.9, 35.0, 12.5, 60.0, 8.75, 22.0, 41.3, 15.0],
    }
    if vocab.layout.token == "order":
        rows["order_id"] = [f"o{i}" for i in range(8)]
    for f in vocab.layout.categorical("transactions"):
        known = vocab.values.get(f.name) or ("unknown",)
        rows[f.column] = [known[i % len(known)] for i in range(8)]
    for f in vocab.layout.numeric("transactions"):
        if f.column not in rows and f.column != "n_lines":
            rows[f.column] = [1.0 + i % 3 for i in range(8)]
    frame = pd.DataFrame(rows)
    return frame.rename(columns={role: _mapped_name(data_cfg, role) for role in frame.columns})


def _mapped_name(data_cfg: RunConfig, role: str) -> str:
    """The user's column for a transactions role: the saved mapping's, else the role's own (detected) name."""
    source = data_cfg.columns.transactions.get(role, role)
    if not _PLAIN_NAME.match(source):
        raise ConfigError(
            f"the model computes its {role} column as {source!r}; pass --example FILE with a few rows of the data "
            "it scores, so that the MLflow model's signature names their columns"
        )
    return source


def _example_predictions(scorer: SavedScorer, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's predictions for the input example (the signature's outputs), or why it cannot score a
    transactions frame alone (a model trained with customer profiles or events)."""
    try:
        return scorer.predict(frame)
    except CustseqError as e:
        raise type(e)(f"the MLflow model scores a transactions frame alone, and this model could not: {e}") from None
