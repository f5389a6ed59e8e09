"""custseq's MLflow pyfunc model: a saved model folder in, predictions.csv's columns out, nothing pickled.

MLflow builds it from code (:mod:`custseq.export.mlflow_model` calls ``set_model``); the weights and settings
travel as the model's artifact :data:`MODEL_ARTIFACT`, custseq's own safetensors and JSON files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from custseq.errors import ConfigError
from custseq.export.scorer import SavedScorer

MODEL_ARTIFACT = "custseq_model"  # the model folder, under the MLflow model's artifacts/
AS_OF_PARAM = "as_of"


class CustseqPyfuncModel(PythonModel):
    """``predict(transactions, params={"as_of": "YYYY-MM-DD"})`` -> one row per customer, as ``custseq score``."""

    def __init__(self) -> None:
        self._scorer: SavedScorer | None = None

    def load_context(self, context: Any) -> None:
        self._scorer = SavedScorer.load(Path(context.artifacts[MODEL_ARTIFACT]))

    # A DataFrame hint is one MLflow infers no schema from (the signature is ours), and without a hint MLflow warns
    # "Add type hints to the `predict` method" when the model is saved
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self._scorer is None:
            raise ConfigError("the custseq MLflow model was not loaded; load it with mlflow.pyfunc.load_model")
        as_of = (params or {}).get(AS_OF_PARAM) or None  # None or "": the data's last day
        return self._scorer.predict(model_input, as_of=as_of)
