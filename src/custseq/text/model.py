"""The text model: TF-IDF of words and word pairs, projected by a truncated SVD, plus VADER's sentiment.

Fitted on training texts only and kept as plain JSON (terms, idf weights and SVD components as numbers), so
that scoring re-applies exactly the fitted transform without pickle and without scikit-learn's fitted objects:
``vector = normalise_l2(counts · idf) · componentsᵀ``, which is what ``TfidfVectorizer`` followed by
``TruncatedSVD.transform`` computes. The vector always has ``svd_dims`` entries; dimensions beyond what the
training texts support (a tiny vocabulary) stay zero, so the columns never depend on the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from custseq.config import TextConfig
from custseq.errors import ArtifactError
from custseq.text.sentiment import METHOD, sentiment_scores

TEXT_FORMAT = 1
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of two or more letters or digits


@dataclass(frozen=True)
class TextModel:
    """A fitted text model; tuples (not arrays) so that two models compare and hash by value."""

    terms: tuple[str, ...]  # TF-IDF vocabulary, column order
    idf: tuple[float, ...]  # one weight per term
    components: tuple[tuple[float, ...], ...]  # (svd_dims, len(terms)); rows past the fitted rank are zero
    ngram_max: int
    fitted_before: str  # ISO instant: only texts before it were used
    n_texts: int  # training texts the TF-IDF and SVD were fitted on
    sentiment: str = METHOD
    format_version: int = TEXT_FORMAT

    @property
    def svd_dims(self) -> int:
        return len(self.components)

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The SVD vector of each text, (len(texts), svd_dims); zeros for a text without a known term."""
        if not self.terms or not texts:
            return np.zeros((len(texts), self.svd_dims))
        counts = CountVectorizer(
            vocabulary={t: i for i, t in enumerate(self.terms)},
            ngram_range=(1, self.ngram_max),
            token_pattern=TOKEN_PATTERN,
            dtype=np.float64,
        ).transform(texts)
        tfidf = normalize(counts.multiply(np.asarray(self.idf)).tocsr(), norm="l2")
        return np.asarray(tfidf @ np.asarray(self.components).T)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Sentiment, then the SVD vector, of each text: (len(texts), 1 + svd_dims)."""
        return np.column_stack([sentiment_scores(texts), self.vectors(texts)])

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "sentiment": self.sentiment,
            "fitted_before": self.fitted_before,
            "n_texts": self.n_texts,
            "ngram_max": self.ngram_max,
            "terms": list(self.terms),
            "idf": list(self.idf),
            "components": [list(row) for row in self.components],
        }

    @classmethod
    def from_json(cls, d: Any) -> TextModel:
        """Read :meth:`to_json`'s dict back.

        Raises
        ------
        ArtifactError
            If the dict is of another format, incomplete, or its arrays do not fit together.
        """
        if not isinstance(d, dict) or d.get("format_version") != TEXT_FORMAT:
            found = d.get("format_version") if isinstance(d, dict) else type(d).__name__
            raise ArtifactError(f"text model of format {found} cannot be read by this custseq (reads {TEXT_FORMAT})")
        try:
            model = cls(
                terms=tuple(str(t) for t in d["terms"]),
                idf=tuple(float(x) for x in d["idf"]),
                components=tuple(tuple(float(x) for x in row) for row in d["components"]),
                ngram_max=int(d["ngram_max"]),
                fitted_before=str(d["fitted_before"]),
                n_texts=int(d["n_texts"]),
                sentiment=str(d["sentiment"]),
            )
        except KeyError as e:
            raise ArtifactError(f"text model JSON is incomplete or corrupted: missing {e}") from None
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"text model JSON is incomplete or corrupted: {e}") from None
        if len(model.idf) != len(model.terms) or any(len(row) != len(model.terms) for row in model.components):
            raise ArtifactError(
                f"text model JSON is corrupted: {len(model.terms)} terms but {len(model.idf)} idf weights and "
                f"component rows of {sorted({len(row) for row in model.components})} numbers"
            )
        return model


def fit_text_model(texts: Sequence[str], cfg: TextConfig, fitted_before: str) -> TextModel:
    """Fit the TF-IDF vocabulary and weights, then the truncated SVD, on ``texts`` (training texts only).

    Terms are the ``cfg.max_terms`` most frequent words and word pairs found in at least ``cfg.min_texts``
    texts. With too few texts or terms for an SVD, the model has no terms and every vector is zero.
    """
    empty = np.zeros((cfg.svd_dims, 0))
    tfidf_fit = TfidfVectorizer(
        max_features=cfg.max_terms,
        min_df=min(cfg.min_texts, max(len(texts), 1)),
        ngram_range=(1, cfg.ngram_max),
        token_pattern=TOKEN_PATTERN,
        dtype=np.float64,
    )
    try:
        tfidf = tfidf_fit.fit_transform(texts)
    except ValueError:  # no text, or no term left ("empty vocabulary", "no terms remain")
        return _model((), np.zeros(0), empty, cfg, fitted_before, len(texts))
    order = sorted(tfidf_fit.vocabulary_, key=tfidf_fit.vocabulary_.__getitem__)
    rank = min(cfg.svd_dims, len(order) - 1, tfidf.shape[0] - 1)
    if rank < 1:
        return _model((), np.zeros(0), empty, cfg, fitted_before, len(texts))
    svd = TruncatedSVD(n_components=rank, random_state=cfg.seed).fit(tfidf)
    components = np.zeros((cfg.svd_dims, len(order)))
    components[:rank] = svd.components_
    return _model(tuple(order), tfidf_fit.idf_, components, cfg, fitted_before, len(texts))


def _model(
    terms: tuple[str, ...], idf: np.ndarray, components: np.ndarray, cfg: TextConfig, fitted_before: str, n: int
) -> TextModel:
    return TextModel(
        terms=terms,
        idf=tuple(float(x) for x in idf),
        components=tuple(tuple(float(x) for x in row) for row in components),
        ngram_max=cfg.ngram_max,
        fitted_before=fitted_before,
        n_texts=n,
    )
