"""The report's counts of next actions and next items, read from JSON texts or parsed lists."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from custseq.io.run_files import RunFolder
from custseq.report.analysis import action_counts, item_counts, list_entries


def _action(text, kind, item=None, probability=None):
    return {"action": text, "kind": kind, "item": item, "probability": probability}


PLANS = [
    [_action("Call", "retention"), _action("Recommend A", "item", "A", 0.5)],
    [
        _action("Recommend A", "item", "A", 0.25),
        _action("Recommend B", "item", "B", 0.125),
        _action("Call", "retention"),
    ],
    [],
    None,
    [_action("Newsletter", "growth")],
]


def test_actions_are_counted_per_customer_with_their_first_places_and_mean_probability(tmp_path):
    texts = pd.Series([None if p is None else json.dumps(p) for p in PLANS])
    counts = action_counts(pd.DataFrame({"next_actions": texts}))
    by_action = counts.set_index("action")
    assert by_action.loc["Recommend A", ["customers", "first"]].tolist() == [2, 1]
    assert math.isclose(by_action.loc["Recommend A", "mean_probability"], 0.375)
    assert by_action.loc["Call", ["kind", "customers", "first"]].tolist() == ["retention", 2, 1]
    assert by_action.loc["Newsletter", "share"] == 1 / 5 and by_action.loc["Newsletter", "item"] == ""
    assert np.isnan(by_action.loc["Call", "mean_probability"])
    assert counts["kind"].tolist() == ["growth", "item", "item", "retention"]  # by kind, most common first
    parsed = pd.Series([np.nan if p is None else p for p in PLANS], dtype=object)  # lists, as read from Parquet
    pd.testing.assert_frame_equal(action_counts(pd.DataFrame({"next_actions": parsed})), counts)
    folder = RunFolder(tmp_path)  # as the report reads a run folder: Arrow lists, no JSON at all
    folder.write_predictions(pd.DataFrame({"customer_id": [str(i) for i in range(5)], "next_actions": texts}))
    arrow = folder.read_predictions(lists="arrow")
    assert isinstance(arrow["next_actions"].dtype, pd.ArrowDtype)
    pd.testing.assert_frame_equal(action_counts(arrow), counts)
    assert folder.read_predictions()["next_actions"].map(_parsed).tolist() == texts.map(_parsed).tolist()


def _parsed(text):
    return json.loads(text) if isinstance(text, str) else None


def test_items_count_each_customer_once_and_fall_back_to_the_name():
    items = [
        [{"item": "A", "probability": 0.5}, {"item": "A", "probability": 0.1}, {"item": "B", "probability": 0.1}],
        [{"name": "Tea", "probability": 0.3}],  # no item id: known by its name
        [{"item": "B", "probability": 0.2}],
        "",
    ]
    texts = pd.Series([t if isinstance(t, str) else json.dumps(t) for t in items])
    counts = item_counts(pd.DataFrame({"next_items": texts}))
    assert counts.to_dict("list") == {"item": ["B", "A", "Tea"], "customers": [2, 1, 1], "share": [0.5, 0.25, 0.25]}
    entries = list_entries(texts, ("item", "probability"))
    assert entries["row"].tolist() == [0, 0, 0, 1, 2] and entries["rank"].tolist() == [0, 1, 2, 0, 0]
    assert list_entries(pd.Series([None, "[]"]), ("item",)).empty
