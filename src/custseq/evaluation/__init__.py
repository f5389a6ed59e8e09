"""Back-tests of custseq against its baselines on the same windows and customers."""
