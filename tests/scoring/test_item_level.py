"""Products or their categories: the level chosen on held-out next purchases, categories from the products table or
the transactions, sums per category without excluded products, and the reason when there is no category level."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import custseq
from custseq.config import ActionConfig, EncoderConfig, PretrainConfig, ReportConfig, RunConfig, SequenceConfig
from custseq.errors import ConfigError
from custseq.io.run_files import ItemLevelInfo, RunFolder
from custseq.models.next_event import ItemMixture, group_sums, propose_next
from custseq.models.pretrain import PretrainModel
from custseq.report.data import ReportData
from custseq.report.sections import plans
from custseq.scoring import item_level
from custseq.scoring.actions import load_catalogue, plan_actions
from custseq.scoring.item_level import (
    MIN_LEVEL_CUSTOMERS,
    Categories,
    ItemLevel,
    LevelHits,
    category_groups,
    choose_item_level,
    decide_item_level,
    find_categories,
    level_for_scoring,
    level_hit_rates,
    next_items_for_plans,
)
from custseq.scoring.products import Products, load_products

AS_OF = "2023-03-25"
TINY = EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0, max_events=16)
AISLES = ("bakery", "dairy", "drinks", "fruit", "household", "snacks")  # more categories than k = 3
OWN = ItemMixture(0.8, 1e9, "", 0)  # mostly each customer's own history, by frequency
CATALOGUE = load_catalogue()


def _prepare(rows: list[dict], tmp_path_factory, name: str) -> custseq.PrepareResult:
    return custseq.prepare(
        pd.DataFrame(rows), out=tmp_path_factory.mktemp(name), as_of=AS_OF, horizon="30d",
        config=RunConfig(sequence=SequenceConfig(min_count=1)),
    )  # fmt: skip


def _popularity_model(result: custseq.PrepareResult) -> PretrainModel:
    """A next-event head that proposes by popularity whatever the history (weights zeroed, bias falling with the
    vocabulary id, which is by falling frequency)."""
    torch.manual_seed(0)
    model = PretrainModel(TINY, PretrainConfig(objectives=("next",)), result.vocab)
    head = model.next_head.categorical["product"]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(-0.01 * torch.arange(head.out_features, dtype=torch.float32))
    return model


def _windows(result: custseq.PrepareResult):
    return result.window(result.plan.training[0]), result.window(result.plan.scoring)


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> tuple[custseq.PrepareResult, PretrainModel]:
    """200 customers, each loyal to one of six aisles of 120 products and buying a random product of it each time:
    a product is rarely bought twice, its aisle (the transactions' category column) always."""
    rng = np.random.default_rng(5)
    rows = []
    for c in range(200):
        aisle, day = AISLES[c % len(AISLES)], int(rng.integers(0, 15))
        for _ in range(int(rng.integers(8, 14))):
            product = f"{aisle}-{int(rng.integers(120)):03d}"
            rows.append({"customer_id": f"s{c:03d}", "ts": dt.datetime(2023, 1, 1) + dt.timedelta(days=day),
                         "amount": 5.0, "product": product, "category": aisle})  # fmt: skip
            day += int(rng.integers(3, 8))
    result = _prepare(rows, tmp_path_factory, "sparse")
    return result, _popularity_model(result)


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> tuple[custseq.PrepareResult, PretrainModel]:
    """200 customers who always buy the same product out of 12 (two per aisle); no category column."""
    rng = np.random.default_rng(6)
    rows = []
    for c in range(200):
        product, day = f"{AISLES[c % 6]}-{(c // 6) % 2}", int(rng.integers(0, 15))
        for _ in range(int(rng.integers(8, 14))):
            rows.append({"customer_id": f"d{c:03d}", "ts": dt.datetime(2023, 1, 1) + dt.timedelta(days=day),
                         "amount": 5.0, "product": product})  # fmt: skip
            day += int(rng.integers(3, 8))
    result = _prepare(rows, tmp_path_factory, "dense")
    return result, _popularity_model(result)


def _aisle_products(result: custseq.PrepareResult, folder, excluded: frozenset[str] = frozenset()) -> str:
    """A products table (CSV) giving each product of the vocabulary its aisle (the text before the dash)."""
    values = result.vocab.values["product"]
    path = folder / "products.csv"
    pd.DataFrame({"product_id": values, "category": [v.split("-")[0] for v in values],
                  "exclude": ["yes" if v in excluded else "" for v in values]}).to_csv(path, index=False)  # fmt: skip
    return str(path)


# --- the choice, measured ---------------------------------------------------------------------------------------


def test_many_rare_products_in_few_categories_are_proposed_as_categories(sparse):
    result, model = sparse
    window, later = _windows(result)
    level = decide_item_level(model, result.vocab, window, later, "product", ActionConfig(), horizon_days=30,
                              mixture=OWN)  # fmt: skip
    assert level.level == "category" and level.requested == "auto", level
    assert level.category_source == "the transactions' category field" and level.categories == len(AISLES)
    assert level.customers >= MIN_LEVEL_CUSTOMERS and level.k == 3 and level.min_item_hit_rate == 0.1
    assert level.hit_rate_at_k["item"] < 0.05 < 0.9 < level.hit_rate_at_k["category"], level.hit_rate_at_k
    assert "too sparse" in level.reason and "categories (from the transactions' category field)" in level.reason


def test_products_bought_again_and_again_stay_items_even_with_categories(dense, tmp_path):
    result, model = dense
    window, later = _windows(result)
    cfg = ActionConfig(products=_aisle_products(result, tmp_path))
    level = decide_item_level(model, result.vocab, window, later, "product", cfg, horizon_days=30, mixture=OWN)
    assert level.level == "item" and level.category_source == "the products table", level
    assert level.hit_rate_at_k["item"] > 0.9 and level.customers >= MIN_LEVEL_CUSTOMERS  # measured 1.0
    assert "products hit at least 10.0%" in level.reason
    categories_set = dataclasses.replace(cfg, item_level="category")
    forced = decide_item_level(model, result.vocab, window, later, "product", categories_set, horizon_days=30,
                               mixture=OWN)  # fmt: skip
    assert forced.level == "category" and "as set" in forced.reason and forced.hit_rate_at_k == level.hit_rate_at_k


def test_the_levels_are_compared_on_at_most_max_level_customers(sparse, monkeypatch):
    result, model = sparse
    window, later = _windows(result)
    everyone = decide_item_level(model, result.vocab, window, later, "product", ActionConfig(), horizon_days=30,
                                 mixture=OWN)  # fmt: skip
    monkeypatch.setattr(item_level, "MAX_LEVEL_CUSTOMERS", MIN_LEVEL_CUSTOMERS)
    capped = decide_item_level(model, result.vocab, window, later, "product", ActionConfig(), horizon_days=30,
                               mixture=OWN)  # fmt: skip
    assert capped.customers == MIN_LEVEL_CUSTOMERS < everyone.customers, (capped.customers, everyone.customers)
    assert capped.level == everyone.level == "category"


def test_without_categories_items_stay_products_and_the_reason_says_so(dense, tmp_path):
    result, model = dense
    window, later = _windows(result)
    level = decide_item_level(model, result.vocab, window, later, "product", ActionConfig(item_level="category"),
                              horizon_days=30, mixture=OWN)  # fmt: skip
    assert level.level == "item" and level.category_source is None and level.customers == 0
    assert "neither the transactions nor a products table give product categories" in level.reason
    assert "item_level = category was asked" in level.reason
    categories, why = find_categories("channel", result.vocab, later, load_products(_aisle_products(result, tmp_path)))
    assert categories is None and "channel values, not products" in why


# --- proposals at category level --------------------------------------------------------------------------------


def test_category_probabilities_are_the_sums_of_their_products_without_the_excluded_ones(sparse, tmp_path):
    result, model = sparse
    _, later = _windows(result)
    values = result.vocab.values["product"]
    excluded = frozenset(v for v in values if v.startswith("snacks-") or v in ("dairy-000", "dairy-001"))
    table = load_products(_aisle_products(result, tmp_path, excluded))
    by_id, level = next_items_for_plans(model, result.vocab, later, "product", ActionConfig(k=6), table,
                                        mixture=OWN, decided=dataclasses.replace(_category_level(), k=6))  # fmt: skip
    assert level.level == "category" and level.category_source == "the products table"
    everything = propose_next(model, result.vocab, later, "product", k=len(values), mixture=OWN)
    for customer, items, p in list(zip(everything.customer_ids, everything.items, everything.probabilities,
                                       strict=True))[:40]:  # fmt: skip
        expected: dict[str, float] = {}
        for item, q in zip(items, p, strict=True):
            if item not in excluded:
                expected[item.split("-")[0]] = expected.get(item.split("-")[0], 0.0) + q
        entries = json.loads(by_id[customer])
        assert all(e["level"] == "category" for e in entries)
        assert "snacks" not in {e["item"] for e in entries}  # every product of the aisle is excluded: never proposed
        proposed = {e["item"]: e["probability"] for e in entries}
        assert set(proposed) == {c for c, q in expected.items() if q >= 0.001}
        for category, q in proposed.items():
            assert q == pytest.approx(expected[category], abs=2e-6)  # rounded to 6 decimals
        assert list(proposed.values()) == sorted(proposed.values(), reverse=True) and min(proposed.values()) > 0


def test_group_sums_drop_values_of_no_group_and_check_the_width():
    groups = category_groups({"a": "x", "b": "y", "c": "x", "d": "z"}, ["a", "b", "c", "d", "e"], frozenset({"d"}))
    assert groups.names == ("x", "y") and groups.of_value.tolist() == [0, 1, 0, -1, -1]  # z: its only product out
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]], dtype=torch.float64)
    np.testing.assert_allclose(group_sums(probs, groups).numpy(), [[0.4, 0.2]])
    with pytest.raises(ConfigError, match="cover 5 values but the field has 4"):
        group_sums(probs[:, :4], groups)


def test_plans_recommend_from_a_category_and_keep_older_entries_as_products():
    entries = [{"item": "bakery", "probability": 0.6, "level": "category"}, {"item": "milk", "probability": 0.2}]
    frame = pd.DataFrame({"churn_probability": [0.1], "segment": ["loyal"], "clv_expected": [1.0],
                          "value_score": [110.0], "next_items": [json.dumps(entries)]})  # fmt: skip
    products = Products(names={"bakery": "Bread rolls"}, excluded=frozenset({"bakery"}))  # a product id alike
    planned = plan_actions(frame, ActionConfig(k=3), CATALOGUE, products)
    actions = json.loads(planned["next_actions"].iloc[0])
    assert actions[0] == {"action": "Recommend an item from the category bakery", "kind": "item", "item": "bakery",
                          "probability": 0.6}  # fmt: skip
    assert actions[1]["action"] == "Recommend milk" and actions[2]["kind"] == "growth"


# --- the rule -----------------------------------------------------------------------------------------------------


def _category_level() -> ItemLevel:
    return ItemLevel("category", "Items are proposed as categories.", category_source="x", categories=6, k=3)


CATEGORIES = Categories({"a": "x"}, "the products table", category_groups({"a": "x"}, ["a"], frozenset()))


def test_hit_rates_count_a_next_product_without_a_category_as_a_miss():
    hits = level_hit_rates(
        items={"u": ["a", "b"], "v": ["c"], "w": ["a"]}, categories={"u": ["x"], "v": ["x"], "w": ["x"]},
        next_item={"u": "b", "v": "a", "w": "q", "gone": "a"}, category_of={"a": "x", "b": "y"}, k=1,
    )  # fmt: skip
    assert hits == LevelHits(item=0.0, category=1 / 3, customers=3)  # b is second; q has no category; gone unseen


@pytest.mark.parametrize(
    ("item", "category", "customers", "level", "said"),
    [
        (0.02, 0.40, 500, "category", "too sparse"),
        (0.02, 0.01, 500, "item", "categories do no better"),
        (0.30, 0.90, 500, "item", "products hit at least 10.0%"),
        (0.00, 1.00, MIN_LEVEL_CUSTOMERS - 1, "item", "too few"),
    ],
)
def test_auto_proposes_categories_only_when_products_hit_too_rarely_and_categories_more(
    item, category, customers, level, said
):
    chosen = choose_item_level(ActionConfig(), CATEGORIES, LevelHits(item, category, customers))
    assert chosen.level == level and said in chosen.reason, chosen.reason


def test_scoring_follows_the_saved_level_unless_set_and_falls_back_without_categories():
    saved = _category_level()
    assert level_for_scoring(saved, ActionConfig(), CATEGORIES, "").level == "category"
    assert level_for_scoring(saved, ActionConfig(item_level="item"), CATEGORIES, "").level == "item"
    gone = level_for_scoring(saved, ActionConfig(), None, "the products table has no category column")
    assert gone.level == "item" and gone.reason.endswith("the products table has no category column.")
    old = level_for_scoring(None, ActionConfig(), CATEGORIES, "")
    assert old.level == "item" and "saved without a level" in old.reason


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="item_level must be auto, item or category, got 'brand'"):
        ActionConfig(item_level="brand")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"min_item_hit_rate must be a share in \[0, 1\], got 5"):
        ActionConfig(min_item_hit_rate=5)


def test_the_reports_actions_section_says_the_level_in_one_sentence(tmp_path):
    samples = RunFolder(Path(__file__).parents[1] / "io" / "run_files" / "shop-predict")
    metrics = samples.read_metrics()
    level = dataclasses.asdict(_category_level()) | {"reason": "Items are proposed as categories (from x): sparse."}
    actions = dataclasses.replace(metrics.actions, item_level=ItemLevelInfo(**level))
    entries = json.dumps([{"item": "bakery", "probability": 0.6, "level": "category"}])
    predictions = pd.DataFrame({"customer_id": ["a"], "churn_probability": [0.1], "retention_flag": [False],
                                "next_items": [entries]})  # fmt: skip
    data = ReportData(tmp_path, metrics=dataclasses.replace(metrics, actions=actions), predictions=predictions)
    html = plans.actions(data, ReportConfig())
    assert "<p>Items are proposed as categories (from x): sparse.</p>" in html
    assert "Most common next categories" in html and "item level" not in html  # the record is told, not listed
    products = dataclasses.replace(metrics.actions, item_level=None)
    html = plans.actions(dataclasses.replace(data, metrics=dataclasses.replace(metrics, actions=products)),
                         ReportConfig())  # fmt: skip
    assert "Most common next items" in html and "Items are proposed" not in html


def test_each_products_category_is_its_commonest_over_the_sequences_tokens(tmp_path):
    """Against a plain count: unknown or padding ids skipped, ties to the lower category id, all shards read."""
    from collections import Counter
    from types import SimpleNamespace

    import pyarrow as pa
    import pyarrow.parquet as pq

    from custseq.io.prepared import WindowFolder
    from custseq.scoring.item_level import categories_in_sequences
    from custseq.sequences.vocab import FIRST_VALUE_ID

    rng = np.random.default_rng(4)
    n_products, n_categories = 40, 7
    window = WindowFolder(tmp_path)
    counts: Counter[tuple[int, int]] = Counter()
    for shard in range(3):
        lengths = rng.integers(1, 9, 50)
        products = [rng.integers(0, n_products + FIRST_VALUE_ID, n).tolist() for n in lengths]
        categories = [rng.integers(0, n_categories + FIRST_VALUE_ID, n).tolist() for n in lengths]
        for ps, cs in zip(products, categories, strict=True):
            counts.update((p, c) for p, c in zip(ps, cs, strict=True) if p >= FIRST_VALUE_ID and c >= FIRST_VALUE_ID)
        folder = window.sequences / f"shard={shard}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"product": products, "category": categories}), folder / "data_0.parquet")
    names = [f"p{i}" for i in range(n_products)]
    groups = [f"c{i}" for i in range(n_categories)]
    vocab = SimpleNamespace(values={"product": names, "category": groups})
    expected = {}
    for p in sorted({p for p, _ in counts}):
        best = min((c for q, c in counts if q == p), key=lambda c: (-counts[(p, c)], c))
        expected[names[p - FIRST_VALUE_ID]] = groups[best - FIRST_VALUE_ID]
    assert categories_in_sequences(window, vocab) == expected  # type: ignore[arg-type]
