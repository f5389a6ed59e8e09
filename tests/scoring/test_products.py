"""The products table: ids, names and exclusions read from common column names, used by proposals and plans."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from custseq.config import ActionConfig
from custseq.errors import ConfigError
from custseq.models.next_event import NextItems
from custseq.scoring.actions import load_catalogue, next_items_column, plan_actions
from custseq.scoring.products import load_products, products_from_frame

CATALOGUE = load_catalogue()


def test_ids_names_and_exclusions_are_read_from_the_usual_column_names(tmp_path):
    path = tmp_path / "products.csv"
    pd.DataFrame({"StockCode": ["85123A", "POST", "22423"], "Description": ["HEART T-LIGHT HOLDER", "POSTAGE", ""],
                  "Exclude": ["", "yes", "0"]}).to_csv(path, index=False)  # fmt: skip
    products = load_products(path)
    assert products.names == {"85123A": "HEART T-LIGHT HOLDER", "POST": "POSTAGE"}  # an empty name is no name
    assert products.excluded == {"POST"}
    assert products.label("85123A") == "HEART T-LIGHT HOLDER (85123A)" and products.label("22423") == "22423"


def test_categories_are_read_from_the_usual_column_names_and_empty_ones_left_out():
    products = products_from_frame(pd.DataFrame({"SKU": ["a", "b", "c"], "Department": ["Bakery", " ", "Dairy "]}))
    assert products.categories == {"a": "Bakery", "c": "Dairy"} and products.names == {}
    assert products_from_frame(pd.DataFrame({"sku": ["a"]})).categories == {}  # no category column: none


def test_a_table_without_an_id_column_says_which_names_are_accepted():
    with pytest.raises(ConfigError, match="no product id column: name it one of product_id, product, item"):
        products_from_frame(pd.DataFrame({"code": ["a"]}), "p.csv")


def test_excluded_products_are_never_proposed_and_named_ones_read_by_name():
    products = products_from_frame(pd.DataFrame({"product_id": ["fuel", "milk", "bread"], "name": ["", "Milk 1l", ""],
                                                 "exclude": ["true", "", ""]}))  # fmt: skip
    items = NextItems("product", ["a"], [["fuel", "milk", "bread", "eggs"]], np.array([[0.5, 0.2, 0.1, 0.05]]))
    entries = json.loads(next_items_column(items, products, k=2)[0])
    assert entries == [{"item": "milk", "probability": 0.2, "name": "Milk 1l"}, {"item": "bread", "probability": 0.1}]
    saved = json.dumps([{"item": "fuel", "probability": 0.5}, {"item": "milk", "probability": 0.2}])  # older file
    planned = plan_actions(pd.DataFrame({"churn_probability": [0.1], "segment": ["loyal"], "clv_expected": [1.0],
                                         "value_score": [110.0], "next_items": [saved]}),
                           ActionConfig(k=2), CATALOGUE, products)  # fmt: skip
    actions = [a["action"] for a in json.loads(planned["next_actions"].iloc[0])]
    assert actions[0] == "Recommend Milk 1l (milk)" and not any("fuel" in a for a in actions)
