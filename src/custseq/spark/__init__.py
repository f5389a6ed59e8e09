"""Apache Spark: batch scoring and TorchDistributor training (the ``[spark]`` extra)."""
