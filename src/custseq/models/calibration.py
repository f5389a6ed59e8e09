"""Calibration of churn probabilities on the validation window: isotonic regression or Platt scaling.

The focal loss and any class re-weighting move predicted probabilities away from observed rates; a
monotone map fitted on held-out customers brings them back without changing the ranking (isotonic may
tie neighbouring scores). The fitted map is plain numbers, saved as JSON with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from custseq.errors import ArtifactError
from custseq.metrics import brier

METHODS = ("auto", "isotonic", "platt", "none")
MIN_ISOTONIC = 1000  # "auto" uses isotonic regression from this many validation customers, Platt below
# An isotonic bin whose validation customers all churned would say 100%; no model knows that well.
ISOTONIC_LIMITS = (0.001, 0.999)


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw to calibrated churn probability."""

    method: str  # isotonic, platt or none
    x: tuple[float, ...] = ()  # isotonic: knots (raw probabilities) and their calibrated values
    y: tuple[float, ...] = ()
    a: float = 1.0  # platt: sigmoid(a * logit(p) + b)
    b: float = 0.0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(p, self.x, self.y)
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))
        return p

    def to_json(self) -> dict:
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "a": self.a, "b": self.b}

    @classmethod
    def from_json(cls, d: dict) -> Calibrator:
        try:
            c = cls(d["method"], tuple(map(float, d["x"])), tuple(map(float, d["y"])), float(d["a"]), float(d["b"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"calibration JSON is incomplete or corrupted: {e!r}") from None
        if c.method not in METHODS[1:] or len(c.x) != len(c.y):
            raise ArtifactError(f"calibration JSON is invalid (method {c.method!r}, {len(c.x)} knots)")
        return c


def fit_calibrator(churned: np.ndarray, p: np.ndarray, method: str = "auto") -> Calibrator:
    """Fit the map on validation outcomes ``churned`` (0/1) and raw probabilities ``p``.

    With only one class in ``churned`` there is nothing to fit, and the identity is returned.
    """
    if method not in METHODS:
        raise ValueError(f"calibration must be one of {METHODS}, got {method!r}")
    y = np.asarray(churned, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if method == "none" or not 0 < y.sum() < len(y):
        return Calibrator("none")
    if method == "auto":
        method = "isotonic" if len(y) >= MIN_ISOTONIC else "platt"
    if method == "isotonic":
        iso = IsotonicRegression(y_min=ISOTONIC_LIMITS[0], y_max=ISOTONIC_LIMITS[1], out_of_bounds="clip").fit(p, y)
        return Calibrator("isotonic", tuple(iso.X_thresholds_.tolist()), tuple(iso.y_thresholds_.tolist()))
    lr = LogisticRegression(C=1e6).fit(_logit(p).reshape(-1, 1), y)
    return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def calibration_report(churned: np.ndarray, p: np.ndarray, method: str, seed: int = 0) -> dict[str, float]:
    """Brier score before and after calibration, the "after" one cross-fitted (2 folds) so it is honest.

    Each half of the validation customers is calibrated with a map fitted on the other half.
    """
    y = np.asarray(churned, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    fold = np.random.default_rng(seed).permutation(len(y)) % 2
    after = np.empty_like(p)
    for k in (0, 1):
        fitted = fit_calibrator(y[fold != k], p[fold != k], method)
        after[fold == k] = fitted(p[fold == k])
    return {"brier_before": brier(y, p), "brier_after": brier(y, after) if len(y) else math.nan}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
