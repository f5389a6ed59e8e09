"""Baselines without training: last-period behaviour, and BTYD fitted on the predicted window itself."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from custseq.baselines.base import BaselinePredictions, WindowTables
from custseq.baselines.btyd import predict_btyd, predict_pareto_nbd


class LastPeriod:
    """Naive: churn = no purchase in the last H days; value = the last H days' net spend (≥ 0)."""

    name = "last period"

    def fit(self, windows: Sequence[WindowTables]) -> LastPeriod:
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        f = window.features
        quiet = f.column("purchase_days_last_h").to_numpy(zero_copy_only=False) == 0
        spend = np.clip(f.column("spend_last_h").to_numpy(zero_copy_only=False).astype(np.float64), 0, None)
        return BaselinePredictions(window.customer_ids, quiet.astype(np.float64), spend)


class Btyd:
    """BG/NBD + Gamma-Gamma, fitted on the predicted window's own RFM summary (no labels needed)."""

    name = "BG/NBD + Gamma-Gamma"

    def fit(self, windows: Sequence[WindowTables]) -> Btyd:
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        p = predict_btyd(window.features, window.horizon_days)
        return BaselinePredictions(p.customer_ids, p.churn_probability, p.value)


class ParetoNbd:
    """Pareto/NBD + Gamma-Gamma, fitted on the predicted window's own RFM summary (no labels needed)."""

    name = "Pareto/NBD + Gamma-Gamma"

    def fit(self, windows: Sequence[WindowTables]) -> ParetoNbd:
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        p = predict_pareto_nbd(window.features, window.horizon_days)
        return BaselinePredictions(p.customer_ids, p.churn_probability, p.value)
