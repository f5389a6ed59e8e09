"""The file MLflow's models-from-code runs to build custseq's pyfunc model; ``export_mlflow`` copies it into each
exported model. Never imported by custseq itself: importing it registers a model with MLflow."""

from mlflow.models import set_model

from custseq.export.mlflow_pyfunc import CustseqPyfuncModel

set_model(CustseqPyfuncModel())
