"""Per-customer event sequences: vocabularies, tokens, and the Parquet shards later stages stream."""
