"""The head's models and folds on planted data (no custseq model): both kinds, every task, save and load."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from custseq.baselines.boosted import BoostedInputs
from custseq.config.downstream import HeadConfig
from custseq.downstream.artifacts import load_head, save_head
from custseq.downstream.crossval import BASELINE, Candidate, cross_validate, head_metrics, trivial
from custseq.downstream.head import FittedHead, fit_model
from custseq.errors import ArtifactError, ConfigError

N, D = 240, 4


@pytest.fixture(scope="module")
def planted():
    """A feature that says nothing and an embedding whose first dimension decides the class / value."""
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(N, D)).astype(np.float32)
    features = pa.table({"customer_id": [f"c{i}" for i in range(N)], "noise": rng.exponential(10, N)})
    z = embeddings[:, 0]
    return {
        "features": features, "embeddings": embeddings,
        "binary": (z > 0).astype(np.int64),
        "multiclass": np.digitize(z, [-0.5, 0.5]).astype(np.int64),
        "regression": 3.0 * z + rng.normal(scale=0.3, size=N),
    }  # fmt: skip


def head_of(kind: str, task: str, y: np.ndarray, planted: dict, classes: tuple[str, ...]) -> FittedHead:
    cfg = HeadConfig(task=task, with_features=True, rounds=40)  # type: ignore[arg-type]
    inputs = BoostedInputs(("noise",), {}, D)
    x = inputs.matrix(planted["features"], planted["embeddings"])
    model = fit_model(x, y, len(classes), kind, 1, cfg)  # type: ignore[arg-type]
    return FittedHead(cfg, "y", classes, inputs, kind, model, "sha", "2023-09-30", {"embeddings": {"auc": 1.0}}, {})  # type: ignore[arg-type]


CASES = [
    ("binary", "classification", ("0", "1")),
    ("multiclass", "classification", ("low", "mid", "high")),
    ("regression", "regression", ()),
]


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
@pytest.mark.parametrize(("target", "task", "classes"), CASES)
def test_each_kind_learns_the_planted_signal_and_reloads_identically(planted, tmp_path, kind, target, task, classes):
    y = planted[target]
    head = head_of(kind, task, y, planted, classes)
    columns = head.columns(planted["features"], planted["embeddings"])
    if task == "regression":
        assert np.corrcoef(columns["head_y"], y)[0, 1] > 0.9
    elif len(classes) == 2:
        assert np.mean((columns["head_y"] > 0.5) == y) > 0.9
    else:
        probabilities = np.column_stack([columns[f"head_y_p_{c}"] for c in classes])
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
        assert np.mean(columns["head_y"] == np.array(classes)[y]) > 0.8
    save_head(head, tmp_path / "head")
    again = load_head(tmp_path / "head")
    inputs = (planted["features"], planted["embeddings"])
    np.testing.assert_array_equal(again.predict(*inputs), head.predict(*inputs))
    assert (again.kind, again.classes, again.label, again.config) == (kind, classes, "y", head.config)


def test_cross_validation_ranks_the_embedding_above_the_noise_feature_and_the_baseline(planted):
    cfg = HeadConfig(task="classification", rounds=40)
    with_embedding = Candidate("embeddings", BoostedInputs((), {}, D))
    noise = Candidate("features", BoostedInputs(("noise",), {}, 0))
    metrics = cross_validate([with_embedding, noise], planted["features"], planted["embeddings"], planted["binary"],
                             2, "lightgbm", cfg)  # fmt: skip
    assert metrics[BASELINE]["auc"] == 0.5  # a constant ranks nobody
    assert metrics["embeddings"]["auc"] > 0.95
    assert 0.35 < metrics["features"]["auc"] < 0.65  # noise stays near chance
    assert metrics["embeddings"]["log_loss"] < metrics[BASELINE]["log_loss"] < metrics["features"]["log_loss"] + 0.2


def test_trivial_baseline_and_metrics_match_hand_computed_values():
    y_train = np.array([0, 0, 0, 1])
    np.testing.assert_array_equal(trivial(y_train, 2, 2), [0.25, 0.25])
    np.testing.assert_array_equal(trivial(np.array([1.0, 3.0]), 0, 3), [2.0, 2.0, 2.0])
    assert head_metrics(np.array([1.0, 3.0]), np.array([2.0, 2.0]), 0) == {"rmse": 1.0, "mae": 1.0}
    binary = head_metrics(np.array([0, 1]), np.array([0.2, 0.6]), 2)
    assert binary["auc"] == 1.0 and binary["accuracy"] == 1.0
    assert binary["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_a_changed_model_file_is_refused(planted, tmp_path):
    head = head_of("linear", "classification", planted["binary"], planted, ("0", "1"))
    save_head(head, tmp_path / "head")
    coefficients = json.loads((tmp_path / "head" / "linear.json").read_text())
    coefficients["intercept"] = [5.0]
    (tmp_path / "head" / "linear.json").write_text(json.dumps(coefficients))
    with pytest.raises(ArtifactError, match="changed since the head was saved"):
        load_head(tmp_path / "head")


def test_saving_over_a_folder_of_other_files_is_refused(planted, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    head = head_of("linear", "regression", planted["regression"], planted, ())
    with pytest.raises(ArtifactError, match="not a head folder"):
        save_head(head, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_head_settings_are_checked():
    with pytest.raises(ConfigError, match="--task must be classification or regression, got 'ranking'"):
        HeadConfig(task="ranking")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"min_per_class \(3\) must be at least folds \(5\)"):
        HeadConfig(min_per_class=3)
