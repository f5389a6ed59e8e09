"""Scores for every customer: predictions, embeddings and the artefacts a user reads."""
