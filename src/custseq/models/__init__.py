"""The sequence encoder, its heads and losses, training, and model artifacts."""
