"""A saved model in other platforms' formats: MLflow's pyfunc (:mod:`~custseq.export.mlflow_export`).

Importing this package imports no platform; each export imports its own (an optional extra) when it runs.
"""
