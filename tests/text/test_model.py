"""The text model: the fitted transform equals scikit-learn's, survives JSON exactly, and reads sentiment offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from custseq.config import TextConfig
from custseq.errors import ArtifactError, ConfigError
from custseq.text.model import TextModel, fit_text_model
from custseq.text.sentiment import sentiment_scores

TEXTS = [
    "my parcel never arrived and nobody answers",
    "the parcel arrived two weeks late, very disappointed",
    "delivery was late again, I want a refund",
    "great shoes, fast delivery, will buy again",
    "love the jacket, great quality",
    "question about my invoice",
    "how do I change my address",
    "thanks for the quick answer",
    "terrible service, the courier lost my order",
    "the lamp is perfect, thank you",
] * 3
CONFIG = TextConfig(svd_dims=4, max_terms=200, min_texts=2)


def test_vectors_are_tfidf_then_truncated_svd_as_scikit_learn_computes_them():
    model = fit_text_model(TEXTS, CONFIG, "2024-01-01T00:00:00")
    tfidf = TfidfVectorizer(max_features=200, min_df=2, ngram_range=(1, 2))
    svd = TruncatedSVD(n_components=4, random_state=0)
    expected = svd.fit_transform(tfidf.fit_transform(TEXTS))
    unseen = ["the courier lost my parcel", "an entirely unknown sentence"]
    assert np.allclose(model.vectors(TEXTS), expected, atol=1e-12)
    assert np.allclose(model.vectors(unseen), svd.transform(tfidf.transform(unseen)), atol=1e-12)
    assert model.vectors(["zzz qqq"]).tolist() == [[0.0] * 4]  # no known term: the zero vector
    assert model.n_texts == len(TEXTS) and model.fitted_before == "2024-01-01T00:00:00"


def test_json_round_trip_is_exact():
    model = fit_text_model(TEXTS, CONFIG, "2024-01-01T00:00:00")
    again = TextModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again == model
    assert np.array_equal(again.transform(TEXTS), model.transform(TEXTS))


def test_too_few_texts_give_zero_vectors_of_the_configured_width():
    for texts in ([], ["just one text"], ["a", "b"]):  # nothing, one text, no word of two letters
        model = fit_text_model(texts, CONFIG, "2024-01-01T00:00:00")
        assert model.terms == () and model.svd_dims == 4
        assert model.transform(["my parcel never arrived"]).shape == (1, 5)
        assert model.vectors(["my parcel never arrived"]).tolist() == [[0.0] * 4]


def test_a_small_vocabulary_pads_the_vector_with_zero_dimensions():
    model = fit_text_model(["late parcel", "late parcel", "great parcel", "great parcel"], CONFIG, "x")
    vectors = model.vectors(["late parcel", "great parcel"])
    assert vectors.shape == (2, 4)
    assert np.abs(vectors[:, 0]).max() > 0 and not vectors[:, len(model.terms) - 1 :].any()


def test_sentiment_is_vaders_compound_score():
    # The examples of VADER's README (vaderSentiment 3.3.2) with their published compound scores.
    published = ["VADER is smart, handsome, and funny.", "VADER is not smart, handsome, nor funny."]
    assert sentiment_scores(published).tolist() == [0.8316, -0.7424]
    texts = ["terrible service, very disappointed", "love it, great quality", "how do I change my address"]
    scores = sentiment_scores(texts)
    assert scores[0] < -0.5 and scores[1] > 0.5 and scores[2] == 0.0


def test_a_corrupted_model_is_refused_with_what_is_wrong():
    good = fit_text_model(TEXTS, CONFIG, "x").to_json()
    with pytest.raises(ArtifactError, match="format 2 cannot be read"):
        TextModel.from_json({**good, "format_version": 2})
    with pytest.raises(ArtifactError, match="missing 'idf'"):
        TextModel.from_json({k: v for k, v in good.items() if k != "idf"})
    with pytest.raises(ArtifactError, match="idf weights"):
        TextModel.from_json({**good, "idf": good["idf"][:-1]})


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="svd_dims must be 1 to 256, got 0"):
        TextConfig(svd_dims=0)
    with pytest.raises(ConfigError, match="feature_days"):
        TextConfig(feature_days=())
    with pytest.raises(ConfigError, match="negative_below is a sentiment from -1 to 1, got 2"):
        TextConfig(negative_below=2)
