"""Apache Spark as the preparation engine (the ``[spark]`` extra).

Nothing here imports pyspark at import time: the modules that need it import it inside their functions, so that
``import custseq`` works without the extra.
"""
