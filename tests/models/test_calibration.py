"""Calibration maps: Platt recovers a known logistic distortion, isotonic is monotone, JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from custseq.errors import ArtifactError
from custseq.metrics import brier
from custseq.models.calibration import Calibrator, calibration_report, fit_calibrator


def _distorted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes with true probability q, and a raw score p = sigmoid(2 logit(q) + 1) (too confident, shifted)."""
    rng = np.random.default_rng(seed)
    logit_q = rng.normal(0, 1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit_q))).astype(float)
    p = 1 / (1 + np.exp(-(2 * logit_q + 1)))
    return y, p


def test_platt_recovers_the_inverse_distortion():
    y, p = _distorted(50_000)
    c = fit_calibrator(y, p, "platt")
    # logit(q) = (logit(p) - 1) / 2: a = 0.5, b = -0.5
    assert c.method == "platt"
    assert c.a == pytest.approx(0.5, abs=0.03) and c.b == pytest.approx(-0.5, abs=0.03)


def test_isotonic_is_monotone_and_improves_brier():
    y, p = _distorted(5_000)
    c = fit_calibrator(y, p, "auto")
    assert c.method == "isotonic"
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(c(grid)) >= 0)
    assert brier(y, c(p)) < brier(y, p)
    report = calibration_report(y, p, "auto")
    assert report["brier_after"] < report["brier_before"]


def test_auto_uses_platt_on_small_sets_and_identity_with_one_class():
    y, p = _distorted(300)
    assert fit_calibrator(y, p, "auto").method == "platt"
    assert fit_calibrator(np.ones(10), np.linspace(0, 1, 10)).method == "none"
    assert np.array_equal(Calibrator("none")(p), p)


def test_json_round_trip_and_corruption():
    y, p = _distorted(2_000)
    c = fit_calibrator(y, p, "isotonic")
    again = Calibrator.from_json(c.to_json())
    assert np.array_equal(again(p), c(p))
    with pytest.raises(ArtifactError, match="calibration"):
        Calibrator.from_json({"method": "magic", "x": [], "y": [], "a": 1, "b": 0})
