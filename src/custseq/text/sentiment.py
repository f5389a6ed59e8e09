"""Sentiment of short texts with VADER, from the lexicon the vaderSentiment package ships (no download).

Reference: Hutto & Gilbert (2014), "VADER: A parsimonious rule-based model for sentiment analysis of social
media text", ICWSM. The compound score is in [-1, 1]; VADER calls a text negative at or below -0.05.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

METHOD = "vader compound"  # what the saved text model records as its sentiment


def sentiment_scores(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound score of each text, in [-1, 1] (0 for a text without sentiment words)."""
    analyzer = SentimentIntensityAnalyzer()  # reads the packaged lexicon files (about 0.1 s)
    return np.fromiter((analyzer.polarity_scores(t)["compound"] for t in texts), dtype=np.float64, count=len(texts))
