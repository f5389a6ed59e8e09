"""Feature tables to model inputs: fitted on training windows, missing-aware, JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from custseq.errors import ArtifactError, SchemaError
from custseq.features.matrix import TabularSpec, fit_tabular, missing_inputs_message, transform_tabular


def _table(spend, gap, plan, ids=None):
    n = len(spend)
    return pa.table(
        {
            "customer_id": ids or [f"c{i}" for i in range(n)],
            "cutoff": pa.array([0] * n, pa.int64()),
            "total_spend": pa.array(spend, pa.float64()),
            "ipt_mean": pa.array(gap, pa.float64()),
            "profile_plan": pa.array(plan, pa.string()),
        }
    )


TRAIN = [
    _table([0.0, math.e - 1, math.e**2 - 1], [1.0, None, 3.0], ["gold", "gold", None]),
    _table([math.e - 1], [2.0], ["silver"]),
]


def test_fit_uses_signed_log1p_statistics_and_marks_missing_columns():
    spec = fit_tabular(TRAIN, min_count=2)
    assert spec.numeric == ("total_spend", "ipt_mean")
    # total_spend in log1p space: 0, 1, 2, 1 -> mean 1, std sqrt(0.5)
    assert spec.means[0] == pytest.approx(1.0) and spec.stds[0] == pytest.approx(math.sqrt(0.5))
    assert spec.missing_indicators == ("ipt_mean",)
    assert spec.categorical == {"profile_plan": ("gold",)}  # silver seen once < min_count
    assert spec.width == 3 and spec.column_names[-1] == "ipt_mean__missing"


def test_transform_standardises_fills_missing_and_maps_unknown_categories():
    spec = fit_tabular(TRAIN, min_count=2)
    inputs = transform_tabular(spec, _table([math.e**2 - 1, -1.0], [None, 3.0], ["gold", "platinum"], ids=["a", "b"]))
    assert inputs.customer_ids == ["a", "b"]
    z = (2.0 - 1.0) / math.sqrt(0.5)
    assert inputs.values[0, 0] == pytest.approx(z, rel=1e-6)
    assert inputs.values[1, 0] == pytest.approx((-math.log(2) - 1.0) / math.sqrt(0.5), rel=1e-6)  # refunds: negative
    assert inputs.values[0, 1] == 0.0 and inputs.values[0, 2] == 1.0  # missing -> 0 and flagged
    assert inputs.values[1, 2] == 0.0
    assert inputs.categories["profile_plan"].tolist() == [2, 1]  # gold = first value, platinum unknown
    assert inputs.values.dtype == np.float32


def test_constant_column_gets_unit_std_and_missing_column_is_an_error():
    spec = fit_tabular([_table([5.0, 5.0], [1.0, 1.0], ["a", "a"])])
    assert spec.stds == (1.0, 1.0)
    with pytest.raises(SchemaError, match=r"inputs the data lack: it needs the transaction columns behind the "
                       r"features \['ipt_mean'\] \(map them with --column ROLE=COLUMN\)"):  # fmt: skip
        transform_tabular(spec, _table([1.0], [1.0], ["a"]).drop_columns(["ipt_mean"]))


def test_a_missing_input_is_named_by_the_table_that_brings_it():
    message = missing_inputs_message(["profile_age", "profile_region", "n_events", "days_since_last_event"])
    assert message == (
        "this model was trained with inputs the data lack: it needs customer profiles with age, region "
        "(--customers FILE; customers= in Python); and behaviour events (--events FILE; events= in Python)"
    )


def test_json_round_trip_and_refusals(tmp_path):
    spec = fit_tabular(TRAIN, min_count=1)
    spec.save(tmp_path / "tabular.json")
    assert TabularSpec.load(tmp_path / "tabular.json") == spec
    broken = json.loads((tmp_path / "tabular.json").read_text()) | {"format_version": 99}
    (tmp_path / "bad.json").write_text(json.dumps(broken))
    with pytest.raises(ArtifactError, match="format 99"):
        TabularSpec.load(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text((tmp_path / "tabular.json").read_text()[:20])
    with pytest.raises(ArtifactError, match="cannot read"):
        TabularSpec.load(tmp_path / "cut.json")


def test_fit_on_real_features_produces_finite_inputs():
    import datetime as dt

    from custseq.config import FeatureConfig
    from custseq.datasets import load_cdnow
    from custseq.features.rfm import build_features
    from custseq.io.engine import connect
    from custseq.validate.tables import validate_tables
    from custseq.windows import Window, cutoff_of

    con = connect()
    tx = validate_tables(con, load_cdnow()).tables["transactions"]
    train = build_features(con, tx, Window(cutoff_of(dt.date(1997, 9, 30)), 90), FeatureConfig())
    score = build_features(con, tx, Window(cutoff_of(dt.date(1997, 12, 31)), 90), FeatureConfig())
    inputs = transform_tabular(fit_tabular([train]), score)
    assert inputs.values.shape == (23_570, fit_tabular([train]).width)
    assert np.isfinite(inputs.values).all()
    assert abs(float(transform_tabular(fit_tabular([train]), train).values[:, 0].mean())) < 1e-4  # centred on training
