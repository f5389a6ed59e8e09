"""Apache Spark (the ``[spark]`` extra): the preparation engine (:mod:`custseq.spark.prepare`), batch scoring
(:mod:`custseq.spark.scoring`) and training through TorchDistributor (:mod:`custseq.spark.distributor`).

Nothing here imports pyspark at import time: the modules that need it import it inside their functions, so that
``import custseq`` works without the extra. Importing this package makes ``engine.name = "spark"`` available to
:func:`custseq.pipelines.prepare.prepare` (the command line imports it).
"""

from __future__ import annotations

from typing import Any

from custseq.pipelines.prepare import ENGINES, PrepareResult


def _prepare_on_spark(*args: Any, **kwargs: Any) -> PrepareResult:
    from custseq.spark.prepare import prepare_on_spark

    return prepare_on_spark(*args, **kwargs)


ENGINES["spark"] = _prepare_on_spark
