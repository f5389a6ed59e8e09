"""Reading a user's labels: columns, classes, numbers, and every refusal naming the values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custseq.downstream.labels import read_labels
from custseq.errors import DataReadError, SchemaError


def frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_binary_labels_put_the_positive_class_last_and_count_empty_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("customer_id,fraud\n007,Yes\n008,no\n009,\n010,Yes\n")
    labels = read_labels(path, "classification")
    assert labels.name == "fraud"
    assert labels.customer_ids == ("007", "008", "010")  # ids stay text: leading zeros kept
    assert labels.classes == ("no", "Yes")  # yes is the positive class, though "Yes" sorts before "no"
    assert labels.values.tolist() == [1, 0, 1]
    assert labels.rows_without_label == 1


def test_zero_one_written_as_floats_is_one_pair_with_one_positive():
    labels = read_labels(frame(customer_id=["a", "b", "c"], y=[1.0, 0.0, 1.0]), "classification")
    assert labels.classes == ("0", "1")
    assert labels.values.tolist() == [1, 0, 1]


def test_float_ids_from_a_column_with_gaps_read_as_integers():
    labels = read_labels(frame(customer_id=[12346.0, None, 12347.0], y=[1.5, 2.0, 3.0]), "regression")
    assert labels.customer_ids == ("12346", "12347") and labels.rows_without_label == 1


def test_names_sort_and_several_classes_are_kept():
    labels = read_labels(frame(customer_id=["a", "b", "c", "d"], tier=["gold", "bronze", "silver", "gold"]),
                         "classification")  # fmt: skip
    assert labels.classes == ("bronze", "gold", "silver")
    assert labels.values.tolist() == [1, 0, 2, 1]


def test_regression_labels_are_numbers(tmp_path):
    path = tmp_path / "labels.parquet"
    frame(customer_id=["a", "b"], spend=[1.5, 20.0]).to_parquet(path)
    labels = read_labels(path, "regression")
    assert labels.classes == () and labels.task == "regression"
    np.testing.assert_array_equal(labels.values, [1.5, 20.0])


def test_label_column_picks_one_of_several():
    data = frame(customer_id=["a", "b"], x=[1, 0], y=[3.0, 4.0])
    assert read_labels(data, "regression", label_column="y").values.tolist() == [3.0, 4.0]
    with pytest.raises(SchemaError, match=r"2 columns besides customer_id \(\['x', 'y'\]\); name the label"):
        read_labels(data, "regression")
    with pytest.raises(SchemaError, match=r"no label column 'z'"):
        read_labels(data, "regression", label_column="z")


@pytest.mark.parametrize(
    ("data", "task", "message"),
    [
        (frame(id=["a"], y=[1]), "classification", r"no 'customer_id' column \(found \['id', 'y'\]\)"),
        (frame(customer_id=["a", "a", "b"], y=[1, 0, 1]), "classification", r"more than one label row"),
        (frame(customer_id=["a", "b"], y=["1", "x"]), "regression", r"not finite numbers \(e\.g\. \['x'\]\)"),
        (frame(customer_id=["a", "b"], y=[0.5, 1.0]), "classification", r"not whole \(e\.g\. \['0\.5'\]\).*regression"),
        (frame(customer_id=["a", "b"], y=[1, 1]), "classification", r"every label of 'y' is '1'"),
        (frame(customer_id=list("abcdef"), y=list(range(6))), "classification", r"6 distinct values \(at most 5"),
        (frame(customer_id=["a", "b"], y=[None, None]), "regression", r"no row has both a customer_id and a 'y'"),
    ],
)  # fmt: skip
def test_unusable_labels_are_refused_with_the_values(data, task, message):
    with pytest.raises(SchemaError, match=message):
        read_labels(data, task, max_classes=5)


def test_a_missing_or_unknown_file_is_a_read_error(tmp_path):
    with pytest.raises(DataReadError, match="not found"):
        read_labels(tmp_path / "none.csv", "classification")
    (tmp_path / "labels.xlsx").write_text("x")
    with pytest.raises(DataReadError, match="unknown format"):
        read_labels(tmp_path / "labels.xlsx", "classification")
