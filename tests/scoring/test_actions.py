"""Action plans against hand-written plans, catalogue validation, and the proposal hit rate and baselines."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from custseq.config import ActionConfig
from custseq.errors import ConfigError, SchemaError
from custseq.models.next_event import NextItems
from custseq.scoring import actions
from custseq.scoring.actions import (
    MIN_ITEM_PROBABILITY,
    SHIPPED_CATALOGUES,
    Condition,
    catalogue_from_dict,
    catalogue_name,
    hit_rate_at_k,
    load_catalogue,
    next_items_column,
    plan_actions,
    popularity_proposals,
    repeat_last_proposals,
)
from custseq.scoring.products import Products
from custseq.scoring.segments import SEGMENTS

CATALOGUE = {
    "retention": [
        {"when": {"segment": ["hibernating"], "min_churn_probability": 0.9}, "actions": ["call", "voucher 20%"]},
        {"when": {"segment": ["hibernating", "at_risk"]}, "actions": ["win-back email", "voucher 10%", "survey"]},
        {"when": {"min_clv_expected": 100}, "actions": ["account manager", "free shipping", "survey"]},
        {"when": {}, "actions": ["re-engage", "discount", "survey"]},
    ],
    "growth": [
        {"when": {"segment": ["champion"], "max_value_score": 150}, "actions": ["referral", "VIP", "review"]},
        {"when": {}, "actions": ["newsletter", "Recommend B", "loyalty"]},
    ],
    "item_action": "Recommend {item}",
}


def _items(*pairs: tuple[str, float]) -> str:
    return json.dumps([{"item": i, "probability": p} for i, p in pairs])


def _plan(rows: list[dict], **cfg) -> list[list[tuple[str, str]]]:
    """(kind, action) of every planned action, per customer."""
    predictions = pd.DataFrame(rows)
    for column, default in (("segment", "loyal"), ("clv_expected", 10.0), ("value_score", 100.0)):
        if column not in predictions:
            predictions[column] = default
    out = plan_actions(predictions, ActionConfig(**cfg), catalogue_from_dict(CATALOGUE))
    return [[(a["kind"], a["action"]) for a in json.loads(plan)] for plan in out["next_actions"]]


def test_churn_exactly_at_the_threshold_is_not_flagged_and_just_above_is():
    predictions = pd.DataFrame(
        {"churn_probability": [0.5, 0.5 + 1e-9, 0.2], "segment": "at_risk", "clv_expected": 1.0, "value_score": 100.0}
    )
    out = plan_actions(predictions, ActionConfig(retention_threshold=0.5), catalogue_from_dict(CATALOGUE))
    assert out["retention_flag"].tolist() == [False, True, False]
    kinds = [{a["kind"] for a in json.loads(p)} for p in out["next_actions"]]
    assert kinds == [{"growth"}, {"retention"}, {"growth"}]
    assert predictions.columns.tolist() == ["churn_probability", "segment", "clv_expected", "value_score"]  # a copy


def test_replace_gives_retention_only_and_augment_adds_the_models_items():
    row = {"churn_probability": 0.95, "segment": "hibernating", "next_items": _items(("A", 0.4), ("B", 0.2))}
    # the first rule matches (hibernating, churn >= 0.9) and has two actions
    assert _plan([row], k=3, mode="replace") == [[("retention", "call"), ("retention", "voucher 20%")]]
    assert _plan([row], k=3, mode="augment") == [  # one retention touch, the products still on offer
        [("retention", "call"), ("item", "Recommend A"), ("item", "Recommend B")]
    ]
    assert _plan([row], k=4, mode="augment")[0][3:] == [("retention", "voucher 20%")]  # then the rule's others


def test_unflagged_customers_get_the_models_items_topped_up_with_growth_actions():
    rows = [
        {"churn_probability": 0.1, "next_items": _items(("A", 0.5))},
        {"churn_probability": 0.1, "next_items": _items(("A", 0.5), ("C", 0.3), ("D", 0.1), ("E", 0.05))},
        {"churn_probability": 0.1, "next_items": None},
        {"churn_probability": 0.1, "next_items": "[]"},
        {"churn_probability": 0.1, "next_items": pd.NA},
    ]
    plans = _plan(rows, k=3)
    assert plans[0] == [("item", "Recommend A"), ("growth", "newsletter"), ("growth", "Recommend B")]
    assert plans[1] == [("item", "Recommend A"), ("item", "Recommend C"), ("item", "Recommend D")]
    assert (
        plans[2] == plans[3] == plans[4] == [("growth", "newsletter"), ("growth", "Recommend B"), ("growth", "loyalty")]
    )


def test_items_carry_their_probability_and_other_actions_none():
    predictions = pd.DataFrame(
        {"churn_probability": [0.1], "segment": ["loyal"], "clv_expected": [1.0], "value_score": [100.0],
         "next_items": [_items(("A", 0.25))]}
    )  # fmt: skip
    plan = json.loads(plan_actions(predictions, ActionConfig(k=2), catalogue_from_dict(CATALOGUE))["next_actions"][0])
    assert plan == [
        {"action": "Recommend A", "kind": "item", "item": "A", "probability": 0.25},
        {"action": "newsletter", "kind": "growth", "item": None, "probability": None},
    ]


def test_plans_never_repeat_an_item_or_an_action():
    # item B's action text equals the growth action "Recommend B"; item A is proposed twice
    row = {"churn_probability": 0.1, "next_items": _items(("A", 0.5), ("A", 0.2), ("B", 0.1))}
    assert _plan([row], k=4) == [
        [("item", "Recommend A"), ("item", "Recommend B"), ("growth", "newsletter"), ("growth", "loyalty")]
    ]


def test_the_first_matching_rule_wins():
    rows = [
        {"churn_probability": 0.95, "segment": "hibernating", "clv_expected": 500.0},  # rules 0, 1, 2 and 3 hold
        {"churn_probability": 0.90, "segment": "hibernating", "clv_expected": 500.0},  # 0.90 >= 0.9: inclusive
        {"churn_probability": 0.89, "segment": "hibernating", "clv_expected": 500.0},  # rules 1, 2 and 3
        {"churn_probability": 0.89, "segment": "loyal", "clv_expected": 100.0},  # rule 2 (>= 100), 3
        {"churn_probability": 0.89, "segment": "loyal", "clv_expected": 99.0},  # only the catch-all
    ]
    firsts = [plan[0][1] for plan in _plan(rows)]
    assert firsts == ["call", "call", "win-back email", "account manager", "re-engage"]
    growth = [
        {"churn_probability": 0.1, "segment": "champion", "value_score": 150.0},
        {"churn_probability": 0.1, "segment": "champion", "value_score": 150.1},
    ]
    assert [plan[0][1] for plan in _plan(growth)] == ["referral", "newsletter"]


def test_a_missing_column_or_a_bad_probability_is_named():
    catalogue = catalogue_from_dict(CATALOGUE)
    with pytest.raises(SchemaError, match=r"lack column\(s\) \['value_score'\]"):
        plan_actions(pd.DataFrame({"churn_probability": [0.1], "segment": ["new"], "clv_expected": [1.0]}),
                     ActionConfig(), catalogue)  # fmt: skip
    with pytest.raises(SchemaError, match=r"churn_probability must be a probability in \[0, 1\]; 1 row"):
        _plan([{"churn_probability": 1.5}])
    with pytest.raises(SchemaError, match="next_items of row 1 is not valid JSON"):
        _plan([{"churn_probability": 0.1, "next_items": "[]"}, {"churn_probability": 0.1, "next_items": "[{"}])
    with pytest.raises(SchemaError, match="next_items of row 0 must hold objects"):
        _plan([{"churn_probability": 0.1, "next_items": json.dumps([{"probability": 0.3}])}])
    with pytest.raises(SchemaError, match="next_items of row 0 must be a JSON list"):
        _plan([{"churn_probability": 0.1, "next_items": "{}"}])


def test_next_items_column_round_trips_into_item_actions():
    items = NextItems("product", ["a", "b"], [["X", "Y"], ["Y", "Z"]], np.array([[0.5, 0.25], [0.6, 0.1]]))
    column = next_items_column(items)
    assert json.loads(column[1]) == [{"item": "Y", "probability": 0.6}, {"item": "Z", "probability": 0.1}]
    plans = _plan([{"churn_probability": 0.0, "next_items": text} for text in column], k=2)
    assert plans == [
        [("item", "Recommend X"), ("item", "Recommend Y")],
        [("item", "Recommend Y"), ("item", "Recommend Z")],
    ]


def test_an_item_at_probability_zero_is_never_proposed():
    items = NextItems("product", ["a"], [["X", "Y", "Z"]], np.array([[0.5, 0.0004, 0.0]]))
    assert json.loads(next_items_column(items)[0]) == [{"item": "X", "probability": 0.5}]
    saved = json.dumps([{"item": "X", "probability": 0.5}, {"item": "Y", "probability": 0.0}])  # an older file
    plans = _plan([{"churn_probability": 0.0, "next_items": saved}], k=2)
    assert plans[0][0] == ("item", "Recommend X") and ("item", "Recommend Y") not in plans[0]


# --------------------------------------------------------------------------- catalogues


@pytest.mark.parametrize("name", ["retail", "grocery", "subscription"])
def test_the_shipped_catalogues_load_by_name_and_cover_every_segment(name):
    catalogue = load_catalogue(name)
    assert catalogue.source.endswith(SHIPPED_CATALOGUES[name])
    assert catalogue.retention[-1].when == Condition() and catalogue.growth[-1].when == Condition()
    texts = " ".join(a for rule in (*catalogue.retention, *catalogue.growth) for a in rule.actions).lower()
    if name != "retail":
        assert "shipping" not in texts  # a grocery or a subscription does not ship orders
    assert catalogue_name(name) == f"{name} (shipped with custseq)" and catalogue_name(None).startswith("retail")


def test_an_unknown_catalogue_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="retail, grocery, subscription"):
        load_catalogue("groceries")


def _with(**changes) -> dict:
    return json.loads(json.dumps(CATALOGUE)) | changes


@pytest.mark.parametrize(
    ("catalogue", "message"),
    [
        (_with(extra=1), r"unknown key\(s\) \['extra'\]; allowed: \['retention', 'growth', 'item_action'\]"),
        (_with(growth=[{"when": {}, "actions": ["a"], "why": "x"}]), r"growth\[0\]: unknown key\(s\) \['why'\]"),
        (_with(growth=[{"when": {"segments": ["new"]}, "actions": ["a"]}, {"when": {}, "actions": ["b"]}]),
         r"growth\[0\]\.when: unknown condition\(s\) \['segments'\]"),
        (_with(growth=[{"when": {"segment": ["new"]}, "actions": ["a"]}]), "growth must end with a catch-all rule"),
        (_with(growth=[{"when": {}, "actions": ["a"]}, {"when": {"segment": ["new"]}, "actions": ["b"]}]),
         "growth must end with a catch-all rule"),
        (_with(growth=[{"when": {}, "actions": ["a"]}, {"when": {}, "actions": ["b"]}]),
         r"growth\[0\] is a catch-all before the last rule"),
        (_with(retention=[{"when": {}, "actions": []}]), r"retention\[0\]\.actions must be a non-empty list"),
        (_with(retention=[{"when": {}, "actions": ["a", "a"]}]), r"retention\[0\]\.actions repeats 'a'"),
        (_with(retention=[{"when": {"segment": ["attriers"]}, "actions": ["a"]}, {"when": {}, "actions": ["b"]}]),
         r"unknown segment\(s\) \['attriers'\]"),
        (_with(retention=[{"when": {"min_clv_expected": "100"}, "actions": ["a"]}, {"when": {}, "actions": ["b"]}]),
         r"min_clv_expected must be a finite number, got '100'"),
        (_with(retention=[{"when": {"min_churn_probability": 0.8, "max_churn_probability": 0.5}, "actions": ["a"]},
                          {"when": {}, "actions": ["b"]}]),
         r"min_churn_probability \(0.8\) is above max_churn_probability \(0.5\)"),
        (_with(retention=[]), "retention must be a non-empty list of rules"),
        ({"retention": CATALOGUE["retention"]}, "lacks the 'growth' rule list"),
        (_with(item_action="Recommend"), "item_action must be a text with the placeholder"),
        (_with(item_action="Recommend {item} {x}"), "may hold only the placeholder"),
    ],
)  # fmt: skip
def test_catalogue_errors_name_the_file_and_the_problem(tmp_path, catalogue, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(catalogue))
    with pytest.raises(ConfigError, match=message) as raised:
        load_catalogue(path)
    assert str(path) in str(raised.value)


def test_unreadable_or_unparsable_catalogues_are_named(tmp_path):
    (tmp_path / "bad.json").write_text('{"retention": [')
    with pytest.raises(ConfigError, match=r"action catalogue .*bad\.json is not valid JSON"):
        load_catalogue(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("retention: [\n")
    with pytest.raises(ConfigError, match=r"action catalogue .*bad\.yaml is not valid YAML"):
        load_catalogue(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="cannot read action catalogue"):
        load_catalogue(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match=r"must be a \.json, \.yaml or \.yml file"):
        load_catalogue(tmp_path / "actions.toml")


def test_a_yaml_catalogue_reads_like_the_same_json(tmp_path):
    text = """
retention:
  - when: {segment: [hibernating, at_risk], min_churn_probability: 0.9}
    actions: [call, voucher 20%]
  - when: {}
    actions: [re-engage]
growth:
  - when: {}
    actions: [newsletter]
item_action: "Buy {item} again"
"""
    (tmp_path / "actions.yml").write_text(text)
    catalogue = load_catalogue(tmp_path / "actions.yml")
    same = catalogue_from_dict(
        {
            "retention": [
                {"when": {"segment": ["hibernating", "at_risk"], "min_churn_probability": 0.9},
                 "actions": ["call", "voucher 20%"]},
                {"when": {}, "actions": ["re-engage"]},
            ],
            "growth": [{"when": {}, "actions": ["newsletter"]}],
            "item_action": "Buy {item} again",
        },
        source=str(tmp_path / "actions.yml"),
    )  # fmt: skip
    assert catalogue == same


def test_the_default_catalogue_names_every_segment_in_both_lists():
    catalogue = load_catalogue(None)
    for rules in (catalogue.retention, catalogue.growth):
        named = {s for rule in rules for s in (rule.when.segment or ())}
        assert named == set(SEGMENTS)
        assert all(len(rule.actions) >= 3 for rule in rules)  # k = 3 by default
    # every segment gets 3 actions in either mode, flagged or not
    predictions = pd.DataFrame(
        {"churn_probability": [0.9] * len(SEGMENTS) + [0.1] * len(SEGMENTS), "segment": list(SEGMENTS) * 2,
         "clv_expected": 10.0, "value_score": 105.0}
    )  # fmt: skip
    out = plan_actions(predictions, ActionConfig(), catalogue)
    assert [len(json.loads(p)) for p in out["next_actions"]] == [3] * len(predictions)


# --------------------------------------------------------------------------- hit rate and baselines


def test_hit_rate_at_k_against_hand_values():
    proposals = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"], ["x", "y", "z"], ["b"]]
    actual = [{"a"}, {"f", "q"}, {"q"}, set(), {"b", "c"}]
    # customer 4 has no actual items and is left out; hits @1: 0, 4; @2: 0, 4; @3: 0, 1, 4
    assert hit_rate_at_k(proposals, actual, k=1) == pytest.approx(2 / 4)
    assert hit_rate_at_k(proposals, actual, k=2) == pytest.approx(2 / 4)
    assert hit_rate_at_k(proposals, actual, k=3) == pytest.approx(3 / 4)
    assert np.isnan(hit_rate_at_k([["a"]], [set()]))
    with pytest.raises(SchemaError, match="proposals has 2 customers but actual 1"):
        hit_rate_at_k([["a"], ["b"]], [{"a"}])


CUTOFF = dt.datetime(2024, 1, 10)
# customer, ts, order, item, amount
HISTORY = pd.DataFrame(
    [
        ("1", "2024-01-01", "o1", "A", 5.0), ("1", "2024-01-01", "o1", "B", 1.0),
        ("1", "2024-01-05", "o2", "C", 2.0), ("1", "2024-01-05", "o2", "D", 9.0), ("1", "2024-01-05", "o2", "C", 8.0),
        ("2", "2024-01-02", "o3", "A", 1.0), ("2", "2024-01-02", "o3", "B", 1.0),
        ("3", "2024-01-03", None, "B", 3.0), ("3", "2024-01-03", None, "A", 4.0),
        ("3", "2024-01-09", "o5", "A", 1.0), ("3", "2024-01-09", "o5", "A", 1.0),
        ("1", "2024-01-10", "o9", "Z", 99.0), ("2", "2024-01-11", "o9", "Z", 99.0),  # at or after the cutoff
    ],
    columns=["customer_id", "ts", "order_id", "item", "amount"],
)  # fmt: skip


def test_popularity_counts_orders_before_the_cutoff():
    # orders holding A: o1, o3, the 2024-01-03 order of customer 3, o5 = 4; B: o1, o3, the 01-03 order = 3;
    # C and D: o2 = 1 each, tie broken by the item text; Z lies at or after the cutoff
    assert popularity_proposals(HISTORY, CUTOFF, ["1", "9"], k=3) == [["A", "B", "C"], ["A", "B", "C"]]


def test_repeat_last_takes_the_last_order_by_amount_then_popular_items():
    proposals = repeat_last_proposals(HISTORY, CUTOFF, ["1", "2", "3", "9"], k=3)
    assert proposals == [
        ["C", "D", "A"],  # o2: C 2 + 8 = 10 > D 9, then the most popular A
        ["A", "B", "C"],  # o3: A and B tie at 1, by text; then C
        ["A", "B", "C"],  # o5 (A only), then popular B, C
        ["A", "B", "C"],  # no history: popularity
    ]
    assert repeat_last_proposals(HISTORY, dt.datetime(2024, 1, 4), ["3"], k=2) == [["A", "B"]]  # order without id


def test_rows_after_the_cutoff_do_not_move_the_baselines():
    future = pd.DataFrame(
        [("1", "2024-01-10", "o10", "Q", 1e6)] * 5, columns=["customer_id", "ts", "order_id", "item", "amount"]
    )
    changed = pd.concat([HISTORY, future], ignore_index=True)
    ids = ["1", "2", "3"]
    assert repeat_last_proposals(changed, CUTOFF, ids) == repeat_last_proposals(HISTORY, CUTOFF, ids)
    assert popularity_proposals(changed, CUTOFF, ids) == popularity_proposals(HISTORY, CUTOFF, ids)


def test_a_catalogue_nested_too_deep_is_a_config_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deep"):
        load_catalogue(path)


def test_next_items_text_is_what_json_dumps_of_the_entries_gives():
    rng = np.random.default_rng(0)
    values = ["A", 'B"q', "Ünï\\code", "tab\there", "xxx", "84029G", "ctrl\x01"]
    rows = [list(rng.choice(values, 4, replace=False)) for _ in range(300)]
    probabilities = np.sort(rng.random((300, 4)) ** 3, axis=1)[:, ::-1]
    probabilities[::7, 2] = 0.0
    probabilities[::11] = [1.0, 1e-7, np.nan, 0.123456789]
    items = NextItems("product", [str(i) for i in range(300)], rows, probabilities)
    products = Products(names={"A": 'Apple "Pink"', "Ünï\\code": "Nüsse"}, excluded=frozenset({"xxx"}))

    def dumped(products=None, k=None, level="item"):  # the entries as dicts, through json.dumps
        names = products.names if products is not None and level == "item" else {}
        excluded = products.excluded if products is not None and level == "item" else frozenset()
        column = []
        for row, probs in zip(items.items, items.probabilities, strict=True):
            kept = [
                {"item": item, "probability": round(float(p), 6)}
                | ({"name": names[item]} if item in names else {})
                | ({"level": "category"} if level == "category" else {})
                for item, p in zip(row, probs, strict=True)
                if p >= MIN_ITEM_PROBABILITY and item not in excluded
            ]
            column.append(json.dumps(kept[:k] if k is not None else kept, ensure_ascii=False))
        return column

    for settings in ({}, {"products": products}, {"products": products, "k": 2}, {"k": 0}, {"level": "category"},
                     {"products": products, "level": "category", "k": 3}):  # fmt: skip
        assert next_items_column(items, **settings) == dumped(**settings)


def test_plans_are_exactly_the_json_dumps_text_of_their_actions():
    next_items = [
        json.dumps([{"item": 'B"q', "probability": 0.25}, {"item": "Ünï", "probability": 0.0123456}]),
        json.dumps([{"item": "A", "probability": 0.5, "level": "category"}]),
        "[]",
        None,
        json.dumps([{"item": "A", "probability": None}, {"item": "xxx", "probability": 0.4}, {"item": "Ünï"}]),
    ]
    predictions = pd.DataFrame({
        "churn_probability": [0.2, 0.9, 0.1, 0.95, 0.3], "segment": ["loyal", "at_risk", "new", "hibernating", "new"],
        "clv_expected": [10.0, 5.0, 1.0, 0.0, 2.0], "value_score": [50.0, 20.0, 5.0, 0.0, 9.0],
        "next_items": next_items,
    })  # fmt: skip
    products = Products(names={"A": 'Apple "Pink"', "Ünï": "Nüsse"}, excluded=frozenset({"xxx"}))
    for mode, named in (("replace", None), ("augment", None), ("replace", products), ("augment", products)):
        plans = plan_actions(predictions, ActionConfig(mode=mode, k=4), load_catalogue(), named)["next_actions"]
        assert all(text == json.dumps(json.loads(text), ensure_ascii=False) for text in plans)
        assert any('B\\"q' in text for text in plans) and any("0.0123456" in text for text in plans)
        last = json.loads(plans.iloc[4])
        assert [a["item"] for a in last if a["kind"] == "item"] == (["A", "Ünï"] if named else ["A", "xxx", "Ünï"])
        assert all(a["probability"] is None for a in last if a["item"] != "xxx")
        if named:
            assert 'Recommend Apple \\"Pink\\"' in plans.iloc[4] and "Nüsse" in plans.iloc[4]


def test_plans_made_in_chunks_equal_plans_made_at_once(monkeypatch):
    predictions = pd.DataFrame(
        {
            "churn_probability": [0.1, 0.95, 0.5, 0.7, 0.2],
            "segment": ["loyal", "hibernating", "at_risk", "new", "champion"],
            "next_items": [None, _items(("A", 0.5), ("B", 0.25)), None, _items(("A", 0.5)), None],
        },
        index=[10, 11, 12, 13, 14],
    ).assign(clv_expected=150.0, value_score=120.0)
    at_once = plan_actions(predictions, ActionConfig(k=3), catalogue_from_dict(CATALOGUE))
    monkeypatch.setattr(actions, "PLAN_CHUNK_ROWS", 2)
    in_chunks = plan_actions(predictions, ActionConfig(k=3), catalogue_from_dict(CATALOGUE))
    pd.testing.assert_frame_equal(in_chunks, at_once)
    assert in_chunks.index.tolist() == [10, 11, 12, 13, 14] and in_chunks["next_actions"].dtype == "str"
    assert json.loads(in_chunks["next_actions"].iloc[3])[0]["kind"] == "retention"  # churn 0.7 > 0.5: flagged
