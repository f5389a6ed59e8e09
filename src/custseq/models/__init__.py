"""The sequence encoder, its heads and losses, training, and model artifacts."""

import os

# OpenMP threads that spin while waiting lose 3x or more of PyTorch's CPU speed as soon as another process
# wants a core (measured: 12.7k -> 4.4k sequences/s with one busy core on 2 cores; 12.3k when passive).
# Takes effect only if torch is not imported yet; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
