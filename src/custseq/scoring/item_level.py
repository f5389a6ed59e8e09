"""Products or their categories: the level next items are proposed at, chosen by how often each would have hit.

A shop with thousands of products, most bought a handful of times, gives the next-event model little to go on:
its likeliest product is rarely the one bought next, and "Recommend 84029G" is a guess. The product's category
("Recommend an item from the category Lighting") is then the useful proposal. ``ActionConfig.item_level``
chooses:

* ``"item"`` or ``"category"``: that level, as set;
* ``"auto"`` (the default): measured on the latest training window. Each of its customers' actual next product
  (the first after its cutoff, read from the scoring window: :func:`~custseq.models.next_event.next_item_targets`)
  is held out, and both levels are proposed from the history before: the ``k`` likeliest products, and the ``k``
  likeliest categories (each product's probability summed per category). Category level is chosen when the
  products' hit@k is below ``ActionConfig.min_item_hit_rate`` (item proposals too rarely right to be useful) and
  the categories' hit@k is higher. The rates and the reason go to metrics.json (``actions.item_level``) and the
  report, and the decision is saved with the model so that ``score`` proposes at the same level.

Categories come from the products table's category column (:mod:`custseq.scoring.products`), else from the
transactions' own ``category`` field (each product's commonest category in the scoring window's sequences).
Without either (CDNOW and Online Retail have none), or when the proposed items are not products, there is no
category level: items are proposed, and the recorded reason says why.

At category level, an excluded product's probability is dropped before summing, a category all of whose
products are excluded is never proposed, and a category below
:data:`~custseq.scoring.actions.MIN_ITEM_PROBABILITY` is not proposed either. Only products in the model's
vocabulary add to a category (rarer ones share the unknown id, which is never proposed).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow.dataset as ds

from custseq.config import ActionConfig
from custseq.errors import ConfigError
from custseq.io.prepared import WindowFolder
from custseq.models.next_event import (
    ItemMixture,
    NextItems,
    ValueGroups,
    next_item_targets,
    propose_next,
)
from custseq.models.pretrain import PretrainModel
from custseq.scoring.actions import MIN_ITEM_PROBABILITY, next_items_column
from custseq.scoring.products import Products, load_products
from custseq.sequences.batch import shard_files
from custseq.sequences.vocab import FIRST_VALUE_ID, SequenceVocab

LEVELS = ("item", "category")
PRODUCT_FIELD = "product"  # the only item field with a coarser level
CATEGORY_FIELD = "category"  # the transactions' own category field, when the data contract has one
MIN_LEVEL_CUSTOMERS = 20  # fewer held-out next purchases than this: the levels are not compared (item level kept)
MAX_SPARE_ITEMS = 20  # extra proposals drawn so that excluded products can be left out
# held-out next purchases the levels are compared on (the first in shard order): a hit rate from 50,000 customers
# is within about 0.4 points of everyone's (95%); at a million customers, the same decision in 9 s instead of 50 s
MAX_LEVEL_CUSTOMERS = 50_000


@dataclass(frozen=True)
class Categories:
    """Each product's category, where they were read, and the categories that can be proposed."""

    of_item: dict[str, str]  # product id -> category
    source: str  # "the products table" or "the transactions' category field"
    groups: ValueGroups  # the category of each product of the vocabulary, excluded products in none


@dataclass(frozen=True)
class LevelHits:
    """Hit@k of both levels on held-out next purchases."""

    item: float  # share of customers whose next product is among the k proposed products
    category: float  # share whose next product's category is among the k proposed categories
    customers: int  # customers with a held-out next product (none excluded)


@dataclass(frozen=True)
class ItemLevel:
    """The level next items are proposed at, and why (metrics.json's ``actions.item_level``)."""

    level: str  # "item" or "category"
    reason: str  # one sentence for the report
    requested: str = "auto"  # ActionConfig.item_level
    category_source: str | None = None  # where the categories came from; None: there are none
    categories: int | None = None  # categories that can be proposed (some product not excluded)
    customers: int = 0  # held-out next purchases the hit rates were measured on (0: not measured)
    hit_rate_at_k: dict[str, float] = field(default_factory=dict)  # "item", "category"
    k: int = 0  # the k of hit_rate_at_k
    min_item_hit_rate: float | None = None  # the auto threshold it was decided with

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"the item level must be one of {list(LEVELS)}, got {self.level!r}")


def find_categories(
    item_field: str | None, vocab: SequenceVocab, window: WindowFolder, products: Products | None
) -> tuple[Categories | None, str]:
    """The products' categories, or None and why there are none.

    Parameters
    ----------
    item_field : str or None
        The field next items are proposed from (:func:`~custseq.models.next_event.item_field`).
    vocab : SequenceVocab
        The model's vocabulary.
    window : WindowFolder
        A window whose sequences give each product's category when the products table gives none.
    products : Products or None
        The products table: its categories win, and its excluded products belong to no category.
    """
    if item_field != PRODUCT_FIELD:
        return None, f"the proposed items are {item_field} values, not products: there is no category level"
    if products is not None and products.categories:
        of_item, source = products.categories, "the products table"
    elif vocab.values.get(CATEGORY_FIELD):
        of_item, source = categories_in_sequences(window, vocab), "the transactions' category field"
    else:
        return None, (
            "neither the transactions nor a products table give product categories, so there is no category level "
            "(give --products with a category column to have one)"
        )
    excluded = products.excluded if products is not None else frozenset()
    groups = category_groups(of_item, vocab.values[PRODUCT_FIELD], excluded)
    if not groups.names:
        return None, f"no product of the model's vocabulary has a category in {source}, or all such are excluded"
    return Categories(of_item, source, groups), ""


def categories_in_sequences(window: WindowFolder, vocab: SequenceVocab) -> dict[str, str]:
    """Each product's commonest category over the tokens of a window's sequences (ties: the commoner category).

    Tokens whose product or category is missing or rare (padding or the unknown id) are skipped.
    """
    files = [str(f) for f in shard_files(window.sequences)]
    if not files:
        return {}
    table = ds.dataset(files, format="parquet").to_table(columns=[PRODUCT_FIELD, CATEGORY_FIELD])
    products = table[PRODUCT_FIELD].combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    categories = table[CATEGORY_FIELD].combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    known = (products >= FIRST_VALUE_ID) & (categories >= FIRST_VALUE_ID)
    # each (product, category) pair as one number, in the pairs' order: a 1-D unique (axis=0 is 5x slower)
    width = int(categories.max(initial=0)) + 1
    keys, counts = np.unique(products[known] * width + categories[known], return_counts=True)
    pairs = np.stack([keys // width, keys % width], axis=1)
    # commonest first, then the lower category id (the commoner category in training): one row per product
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0])) if len(pairs) else np.zeros(0, dtype=np.int64)
    first = order[np.unique(pairs[order, 0], return_index=True)[1]] if len(pairs) else order
    names, groups = vocab.values[PRODUCT_FIELD], vocab.values[CATEGORY_FIELD]
    return {names[p - FIRST_VALUE_ID]: groups[c - FIRST_VALUE_ID] for p, c in pairs[first].tolist()}


def category_groups(of_item: Mapping[str, str], values: Sequence[str], excluded: frozenset[str]) -> ValueGroups:
    """The category of each product of ``values`` (the vocabulary's, in id order) for
    :func:`~custseq.models.next_event.propose_next`; excluded products and products without a category belong
    to none, and a category with no other product is not a group."""
    of_value = [None if v in excluded else of_item.get(v) for v in values]
    names = tuple(sorted({c for c in of_value if c is not None}))
    position = {name: i for i, name in enumerate(names)}
    return ValueGroups(names, np.array([position.get(c, -1) if c else -1 for c in of_value], dtype=np.int64))


def level_hit_rates(
    items: Mapping[str, Sequence[str]],
    categories: Mapping[str, Sequence[str]],
    next_item: Mapping[str, str],
    category_of: Mapping[str, str],
    k: int,
) -> LevelHits:
    """Hit@k of product and category proposals on each customer's held-out next product.

    Parameters
    ----------
    items, categories : mapping of customer id to proposals, best first
        The proposed products and categories.
    next_item : mapping of customer id to product
        The held-out next product; customers without proposals are left out.
    category_of : mapping of product to category
        A next product without a category counts as a category miss.
    k : int
        Proposals counted per customer.
    """
    customers = [c for c in next_item if c in items and c in categories]
    item_hits = [next_item[c] in items[c][:k] for c in customers]
    category_hits = [category_of.get(next_item[c]) in categories[c][:k] for c in customers]
    if not customers:
        return LevelHits(float("nan"), float("nan"), 0)
    return LevelHits(float(np.mean(item_hits)), float(np.mean(category_hits)), len(customers))


def choose_item_level(
    cfg: ActionConfig,
    categories: Categories | None,
    hits: LevelHits | None,
    *,
    without_categories: str = "there are no product categories",
) -> ItemLevel:
    """The level to propose at (this module's docstring), with the reason in one sentence.

    Parameters
    ----------
    cfg : ActionConfig
        ``item_level``, ``min_item_hit_rate`` and ``k``.
    categories : Categories or None
        None: item level, for the reason ``without_categories``.
    hits : LevelHits or None
        Both levels' hit@k on held-out next purchases; None when they could not be measured.
    """
    level = ItemLevel("item", "", cfg.item_level, k=cfg.k, min_item_hit_rate=cfg.min_item_hit_rate)
    if categories is None:
        asked = " (item_level = category was asked)" if cfg.item_level == "category" else ""
        return replace(level, reason=f"Items are proposed as products: {without_categories}{asked}.")
    level = replace(level, category_source=categories.source, categories=len(categories.groups.names))
    rates = ""
    if hits is not None and hits.customers > 0:
        rates = _rates_text(hits, cfg.k)
        level = replace(level, customers=hits.customers, hit_rate_at_k={"item": hits.item, "category": hits.category})
    if cfg.item_level != "auto":
        return replace(
            level, level=cfg.item_level, reason=f"{_proposed_as(cfg.item_level, categories)}, as set{rates}."
        )
    if hits is None or hits.customers < MIN_LEVEL_CUSTOMERS:
        n = hits.customers if hits is not None else 0
        return replace(level, reason=(
            f"Items are proposed as products: {n} held-out next purchases are too few (at least "
            f"{MIN_LEVEL_CUSTOMERS} needed) to compare them with their categories."
        ))  # fmt: skip
    if hits.item < cfg.min_item_hit_rate and hits.category > hits.item:
        return replace(level, level="category", reason=(
            f"{_proposed_as('category', categories)}: products are too sparse, the {cfg.k} likeliest products held "
            f"the next purchase of only {hits.item:.1%} of {hits.customers:,} held-out customers (below "
            f"{cfg.min_item_hit_rate:.1%}), the {cfg.k} likeliest categories that of {hits.category:.1%}."
        ))  # fmt: skip
    enough = hits.item >= cfg.min_item_hit_rate
    why = f"products hit at least {cfg.min_item_hit_rate:.1%}" if enough else "categories do no better"
    return replace(level, reason=f"Items are proposed as products{rates}: {why}.")


def decide_item_level(
    model: PretrainModel,
    vocab: SequenceVocab,
    window: WindowFolder,
    later_window: WindowFolder,
    item_field: str,
    cfg: ActionConfig,
    *,
    horizon_days: int,
    mixture: ItemMixture | None = None,
) -> ItemLevel:
    """Measure both levels on ``window``'s customers (next purchases read from ``later_window``; at most
    :data:`MAX_LEVEL_CUSTOMERS` of them) and choose.

    Use the windows the item mixture was fitted on (the latest training window and the scoring window): the
    held-out purchases lie before the scoring cutoff. The categories are read from ``later_window``.
    """
    products = load_products(cfg.products) if cfg.products else None
    categories, missing = find_categories(item_field, vocab, later_window, products)
    if categories is None:
        return choose_item_level(cfg, None, None, without_categories=missing)
    excluded = products.excluded if products is not None else frozenset()
    targets = next_item_targets(window, later_window, item_field, horizon_days)
    values = vocab.values[item_field]
    next_item = {
        c: values[i - FIRST_VALUE_ID]
        for c, i in zip(targets.customer_ids, targets.value_ids.tolist(), strict=True)
        if values[i - FIRST_VALUE_ID] not in excluded  # an excluded next purchase is no proposal's to hit
    }
    hits = None
    if next_item:
        spare = min(len(excluded), MAX_SPARE_ITEMS)
        propose = functools.partial(
            propose_next, model, vocab, window, item_field,
            mixture=mixture, customers=next_item.keys(), max_customers=MAX_LEVEL_CUSTOMERS,
        )  # fmt: skip
        items = propose(cfg.k + spare)
        groups = propose(cfg.k, groups=categories.groups)
        proposed = _kept(items, excluded, cfg.k), _kept(groups, frozenset(), cfg.k)
        hits = level_hit_rates(*proposed, next_item, categories.of_item, cfg.k)
    return choose_item_level(cfg, categories, hits)


def level_for_scoring(
    decided: ItemLevel | None, cfg: ActionConfig, categories: Categories | None, missing: str
) -> ItemLevel:
    """The level to score at: the one decided with the model when ``item_level`` is ``auto``, else the one set;
    item level when there are no categories now (e.g. ``score`` without the products table ``predict`` had)."""
    if decided is None:  # a model saved before levels were measured: nothing to decide auto with
        decided = choose_item_level(cfg, categories, None, without_categories=missing)
        if cfg.item_level == "auto" and categories is not None:
            decided = replace(decided, reason="Items are proposed as products: the model was saved without a level.")
    elif cfg.item_level not in ("auto", decided.level):
        reason = f"{_proposed_as(cfg.item_level, categories)}, as set."
        decided = replace(decided, level=cfg.item_level, requested=cfg.item_level, reason=reason)
    if decided.level == "category" and categories is None:
        reason = f"Items are proposed as products: {missing}."
        return replace(decided, level="item", category_source=None, categories=None, reason=reason)
    if decided.level == "category" and categories is not None:
        return replace(decided, category_source=categories.source)
    return decided


def next_items_for_plans(
    model: PretrainModel,
    vocab: SequenceVocab,
    window: WindowFolder,
    item_field: str,
    cfg: ActionConfig,
    products: Products | None,
    *,
    mixture: ItemMixture | None = None,
    decided: ItemLevel | None = None,
) -> tuple[dict[str, str], ItemLevel]:
    """Each customer's ``next_items`` JSON (by customer id) at the level to score at, and that level."""
    level = scoring_level(vocab, window, item_field, cfg, products, decided)
    return next_items_at(level, model, vocab, window, item_field, cfg, products, mixture=mixture), level.level


@dataclass(frozen=True)
class ScoringLevel:
    """The level a window's next items are proposed at, and the categories it proposes (None: products)."""

    level: ItemLevel
    categories: Categories | None


def scoring_level(
    vocab: SequenceVocab,
    window: WindowFolder,
    item_field: str,
    cfg: ActionConfig,
    products: Products | None,
    decided: ItemLevel | None,
) -> ScoringLevel:
    """The level to propose a window's next items at (:func:`level_for_scoring`), with the products' categories
    read from the products table or the whole window's sequences."""
    categories, missing = find_categories(item_field, vocab, window, products)
    level = level_for_scoring(decided, cfg, categories, missing)
    return ScoringLevel(level, categories if level.level == "category" else None)


def next_items_at(
    at: ScoringLevel,
    model: PretrainModel,
    vocab: SequenceVocab,
    window: WindowFolder,
    item_field: str,
    cfg: ActionConfig,
    products: Products | None,
    *,
    mixture: ItemMixture | None = None,
) -> dict[str, str]:
    """Each customer's ``next_items`` JSON (by customer id) at the level ``at``; ``window`` may be one shard of
    the window ``at`` was decided on (each customer's proposals are their own)."""
    if at.categories is not None:
        items = propose_next(model, vocab, window, item_field, cfg.k, mixture=mixture, groups=at.categories.groups)
        column = next_items_column(items, k=cfg.k, level="category")
    else:
        excluded = products.excluded if products is not None else frozenset()
        spare = min(len(excluded), MAX_SPARE_ITEMS)  # room for exclusions
        items = propose_next(model, vocab, window, item_field, cfg.k + spare, mixture=mixture)
        column = next_items_column(items, products, cfg.k)
    return dict(zip(items.customer_ids, column, strict=True))


def _kept(items: NextItems, excluded: frozenset[str], k: int) -> dict[str, list[str]]:
    """Each customer's first ``k`` proposals that are not excluded and not below the minimum probability."""
    return {
        c: [v for v, p in zip(row, probs, strict=True) if p >= MIN_ITEM_PROBABILITY and v not in excluded][:k]
        for c, row, probs in zip(items.customer_ids, items.items, items.probabilities, strict=True)
    }


def _rates_text(hits: LevelHits, k: int) -> str:
    return (
        f" (hit@{k} on {hits.customers:,} held-out next purchases: products {hits.item:.1%}, "
        f"categories {hits.category:.1%})"
    )


def _proposed_as(level: str, categories: Categories | None) -> str:
    if level == "item" or categories is None:
        return "Items are proposed as products"
    return f"Items are proposed as categories (from {categories.source})"
