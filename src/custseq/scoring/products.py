"""An optional products table: names for the items custseq proposes, and items never to propose.

A shop's product ids mean little to a reader ("85123A"), and some products are no recommendation at all
(fuel, carrier bags, deposits, postage). ``--products FILE`` (CSV or Parquet; ``[actions] products`` in the
config) gives a row per product:

* the product id — a column named ``product_id``, ``product``, ``item``, ``sku`` or ``stockcode`` (any case),
  matching the values of the transactions' item field (product, or category when that is what is proposed);
* a name — ``name``, ``product_name``, ``description`` or ``title`` (optional);
* a category — ``category``, ``product_category``, ``department`` or ``category_id`` (optional): what is
  proposed when products are too sparse to propose one by one (:mod:`custseq.scoring.item_level`);
* ``exclude`` — true/1/yes for a product never to propose (optional).

Plans, contacts and the report then show "Recommend WHITE HANGING HEART T-LIGHT HOLDER (85123A)" rather than
the bare id, and excluded products are left out of the proposals (the next likeliest take their place).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from custseq.errors import ConfigError

ID_COLUMNS = ("product_id", "product", "item", "sku", "stockcode", "stock_code")
NAME_COLUMNS = ("name", "product_name", "description", "title")
CATEGORY_COLUMNS = ("category", "product_category", "productcategory", "department", "category_id", "categoryid")
EXCLUDE_COLUMN = "exclude"
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "x"})


@dataclass(frozen=True)
class Products:
    """Names and categories of products by id, and the ids never to propose."""

    names: dict[str, str] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()
    categories: dict[str, str] = field(default_factory=dict)  # product id -> category, where the table gives one

    def label(self, item: str) -> str:
        """How an item reads in a plan: its name and id, or the id alone."""
        name = self.names.get(item)
        return f"{name} ({item})" if name and name != item else item


def load_products(path: str | Path) -> Products:
    """Read a products table (CSV, CSV.GZ or Parquet).

    Raises
    ------
    ConfigError
        If the file cannot be read or has no product id column (the message lists the accepted names).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"the products table {path} does not exist (--products: a CSV or Parquet file with "
                          "product_id, and optionally name, category and exclude)")  # fmt: skip
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the products table {path}: {type(e).__name__}: {e}") from None
    return products_from_frame(frame, str(path))


def products_from_frame(frame: pd.DataFrame, source: str = "products") -> Products:
    """A :class:`Products` from a DataFrame with the columns of this module's docstring."""
    by_name = {str(c).strip().lower(): c for c in frame.columns}
    id_column = next((by_name[c] for c in ID_COLUMNS if c in by_name), None)
    if id_column is None:
        raise ConfigError(
            f"the products table {source} has no product id column: name it one of {', '.join(ID_COLUMNS)} "
            f"(found {', '.join(map(str, frame.columns))})"
        )
    ids = frame[id_column].fillna("").astype(str).str.strip()
    excluded: frozenset[str] = frozenset()
    if EXCLUDE_COLUMN in by_name:
        flags = frame[by_name[EXCLUDE_COLUMN]].fillna("").astype(str).str.strip().str.lower().isin(TRUE_WORDS)
        excluded = frozenset(ids[flags.to_numpy()])
    names = _text_by_id(frame, ids, next((by_name[c] for c in NAME_COLUMNS if c in by_name), None))
    categories = _text_by_id(frame, ids, next((by_name[c] for c in CATEGORY_COLUMNS if c in by_name), None))
    return Products(names, excluded, categories)


def _text_by_id(frame: pd.DataFrame, ids: pd.Series, column: object | None) -> dict[str, str]:
    """The non-empty texts of ``column`` by product id (none without the column)."""
    if column is None:
        return {}
    text = frame[column].fillna("").astype(str).str.strip()
    return {i: t for i, t in zip(ids, text, strict=True) if i and t}
