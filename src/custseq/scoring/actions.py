"""Next-best-action plans: retention actions for likely churners, likely next items and growth actions otherwise.

A customer whose churn probability is strictly above ``ActionConfig.retention_threshold``, or who is a lapsed
regular (:mod:`custseq.scoring.lapse`), is flagged for retention and gets the actions of the first matching
rule of the catalogue's ``retention`` list (``replace`` mode), or its first retention action followed by the
next-event model's items, then its other retention actions (``augment`` mode: one retention touch, and the
products still on offer). Everyone else gets the model's likeliest next items as item actions, topped up to
``k`` with the actions of the first matching ``growth`` rule. Plans never repeat an action or an item. Where
products are too sparse to propose one by one, the items are their categories (:mod:`custseq.scoring.item_level`)
and the item action reads "Recommend an item from the category X".

An action catalogue (JSON or YAML) looks like::

    {"retention": [{"when": {"segment": ["hibernating"], "min_churn_probability": 0.8},
                    "actions": ["Win-back email with 20% off", "..."]},
                   ...,
                   {"when": {}, "actions": ["..."]}],
     "growth": [... the same shape, ending with a catch-all rule ...],
     "item_action": "Recommend {item}"}

A rule's ``when`` holds every condition it names (bounds are inclusive): ``segment`` (a list of
:data:`~custseq.scoring.segments.SEGMENTS`), ``min_``/``max_churn_probability``, ``min_``/``max_clv_expected``
and ``min_``/``max_value_score``. The first rule that holds wins, and the last rule of each list must be a
catch-all (``"when": {}``) so that every customer gets actions. custseq ships three (:data:`SHIPPED_CATALOGUES`,
chosen by name): ``retail`` (the default, ``data/actions.json``), ``grocery`` and ``subscription``.

This module also measures proposals: :func:`hit_rate_at_k`, with two baselines for next-item proposals,
:func:`popularity_proposals` and :func:`repeat_last_proposals`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from custseq.config import ActionConfig
from custseq.errors import ConfigError, SchemaError
from custseq.models.next_event import NextItems
from custseq.scoring.products import Products
from custseq.scoring.segments import SEGMENTS

KINDS = ("retention", "item", "growth")
ITEM_LEVELS = ("item", "category")  # what a next_items entry is: a product (or other item), or a category
CATALOGUE_KEYS = ("retention", "growth", "item_action")
RULE_KEYS = ("when", "actions")
DEFAULT_ITEM_ACTION = "Recommend {item}"
CATEGORY_ITEM = "an item from the category {category}"  # how a proposed category reads as the {item} of an action
PLAN_CHUNK_ROWS = 100_000  # plans made, and turned into Arrow text, this many customers at a time
MIN_ITEM_PROBABILITY = 0.001  # a likelier-than-1-in-1,000 next item, or none: never propose an item at p = 0.0
HISTORY_COLUMNS = ("customer_id", "ts", "order_id", "item", "amount")  # what the proposal baselines read


@dataclass(frozen=True)
class Condition:
    """When a catalogue rule applies; an unset condition always holds, bounds are inclusive."""

    segment: tuple[str, ...] | None = None
    min_churn_probability: float | None = None
    max_churn_probability: float | None = None
    min_clv_expected: float | None = None
    max_clv_expected: float | None = None
    min_value_score: float | None = None
    max_value_score: float | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The prediction columns this condition reads."""
        names = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return tuple(dict.fromkeys(name.removeprefix("min_").removeprefix("max_") for name in names))

    def holds(self, predictions: pd.DataFrame) -> np.ndarray:
        """Whether the condition holds on each row (a missing value fails a bound)."""
        result = np.ones(len(predictions), dtype=bool)
        if self.segment is not None:
            result &= predictions["segment"].isin(self.segment).to_numpy()
        for f in fields(self):
            bound = getattr(self, f.name)
            if f.name == "segment" or bound is None:
                continue
            values = predictions[f.name[4:]].to_numpy(dtype=float)
            result &= values >= bound if f.name.startswith("min_") else values <= bound
        return result


@dataclass(frozen=True)
class Rule:
    """A condition and the actions it calls for, best first."""

    when: Condition
    actions: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    """An action catalogue: retention and growth rules (each list ending with a catch-all) and the item action."""

    retention: tuple[Rule, ...]
    growth: tuple[Rule, ...]
    item_action: str = DEFAULT_ITEM_ACTION  # an action text with the placeholder {item}
    source: str = "catalogue"  # where it was read from, for messages


SHIPPED_CATALOGUES = {
    "retail": "actions.json",  # e-commerce and retail: discounts, shipping, account managers (the default)
    "grocery": "grocery.json",  # frequent baskets: coupons on usual items, points, weekly specials; no shipping
    "subscription": "subscription.json",  # plans: pause instead of cancel, renewal offers, onboarding
}  # name -> file in custseq/scoring/data
DEFAULT_CATALOGUE = "retail"


def default_catalogue_path() -> Path:
    """Path of the catalogue shipped with custseq."""
    return shipped_catalogue_path(DEFAULT_CATALOGUE)


def shipped_catalogue_path(name: str) -> Path:
    return Path(str(resources.files("custseq.scoring") / "data" / SHIPPED_CATALOGUES[name]))


def catalogue_name(path: str | Path | None) -> str:
    """How a catalogue setting reads in outputs: a shipped name, or the file."""
    if path is None:
        return f"{DEFAULT_CATALOGUE} (shipped with custseq, the default)"
    return f"{path} (shipped with custseq)" if str(path) in SHIPPED_CATALOGUES else str(path)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and validate an action catalogue (JSON, or YAML with a ``.yaml``/``.yml`` suffix).

    Parameters
    ----------
    path : str or Path, optional
        A catalogue file, or the name of one shipped with custseq (:data:`SHIPPED_CATALOGUES`: ``retail``,
        ``grocery``, ``subscription``); None reads the default (``retail``).

    Returns
    -------
    Catalogue

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or breaks a rule of the format (this module's docstring); the
        message names the file and the offending entry.
    """
    if path is None or str(path) in SHIPPED_CATALOGUES:
        path = shipped_catalogue_path(DEFAULT_CATALOGUE if path is None else str(path))
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(
            f"action catalogue {path} must be a .json, .yaml or .yml file, or one of the shipped catalogues "
            f"{', '.join(SHIPPED_CATALOGUES)}"
        )
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read action catalogue {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        kind = "JSON" if suffix == ".json" else "YAML"
        raise ConfigError(f"action catalogue {path} is not valid {kind}: {e}") from None
    except RecursionError:
        raise ConfigError(f"action catalogue {path} is nested too deep (lists inside lists thousands of levels "
                          "down); a catalogue is a few tables of actions and rules") from None  # fmt: skip
    return catalogue_from_dict(data, source=str(path))


def catalogue_from_dict(data: Any, source: str = "catalogue") -> Catalogue:
    """Build and validate a :class:`Catalogue` from parsed JSON/YAML; ``source`` names it in messages.

    Raises
    ------
    ConfigError
        On an unknown key, a missing list, a rule list without a final catch-all (or with a catch-all
        before the end, which would hide the rules after it), empty or repeated actions, an unknown
        segment, a bound that is not a number, or an item action without the ``{item}`` placeholder.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"action catalogue {source} must be an object/mapping, got {type(data).__name__}")
    if unknown := sorted(set(data) - set(CATALOGUE_KEYS)):
        raise ConfigError(f"action catalogue {source}: unknown key(s) {unknown}; allowed: {list(CATALOGUE_KEYS)}")
    lists = {}
    for kind in ("retention", "growth"):
        if kind not in data:
            raise ConfigError(f"action catalogue {source} lacks the {kind!r} rule list")
        lists[kind] = _rules(data[kind], f"action catalogue {source}: {kind}")
    item_action = data.get("item_action", DEFAULT_ITEM_ACTION)
    if not isinstance(item_action, str) or "{item}" not in item_action:
        raise ConfigError(
            f"action catalogue {source}: item_action must be a text with the placeholder {{item}}, got {item_action!r}"
        )
    try:
        item_action.format(item="x")
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"action catalogue {source}: item_action {item_action!r} may hold only the placeholder {{item}} ({e!r}); "
            "write other braces as {{ and }}"
        ) from None
    return Catalogue(lists["retention"], lists["growth"], item_action, source)


def _rules(data: Any, where: str) -> tuple[Rule, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{where} must be a non-empty list of rules, got {data!r}")
    rules = tuple(_rule(entry, f"{where}[{i}]") for i, entry in enumerate(data))
    catch_alls = [i for i, rule in enumerate(rules) if rule.when == Condition()]
    if not catch_alls or catch_alls[-1] != len(rules) - 1:
        raise ConfigError(
            f'{where} must end with a catch-all rule ({{"when": {{}}, "actions": [...]}}) so that every '
            "customer gets actions"
        )
    if len(catch_alls) > 1:
        raise ConfigError(
            f"{where}[{catch_alls[0]}] is a catch-all before the last rule; the rules after it never match"
        )
    return rules


def _rule(data: Any, where: str) -> Rule:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object with 'when' and 'actions', got {data!r}")
    if unknown := sorted(set(data) - set(RULE_KEYS)):
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {list(RULE_KEYS)}")
    if missing := [key for key in RULE_KEYS if key not in data]:
        raise ConfigError(f'{where} lacks {missing}; write "when": {{}} for a rule that always applies')
    actions = data["actions"]
    if not isinstance(actions, list) or not actions:
        raise ConfigError(f"{where}.actions must be a non-empty list of action texts, got {actions!r}")
    for action in actions:
        if not isinstance(action, str) or not action.strip():
            raise ConfigError(f"{where}.actions must hold non-empty texts, got {action!r}")
    if len(set(actions)) < len(actions):
        repeated = next(a for a in actions if actions.count(a) > 1)
        raise ConfigError(f"{where}.actions repeats {repeated!r}")
    return Rule(_condition(data["when"], f"{where}.when"), tuple(actions))


def _condition(data: Any, where: str) -> Condition:
    allowed = [f.name for f in fields(Condition)]
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object of conditions (or {{}} for always), got {data!r}")
    if unknown := sorted(set(data) - set(allowed)):
        raise ConfigError(f"{where}: unknown condition(s) {unknown}; allowed: {allowed}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "segment":
            if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
                raise ConfigError(f"{where}.segment must be a non-empty list of segment names, got {value!r}")
            if unknown_segments := [s for s in value if s not in SEGMENTS]:
                raise ConfigError(f"{where}.segment: unknown segment(s) {unknown_segments}; known: {list(SEGMENTS)}")
            kwargs[name] = tuple(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{where}.{name} must be a finite number, got {value!r}")
            kwargs[name] = float(value)
    for column in ("churn_probability", "clv_expected", "value_score"):
        low, high = kwargs.get(f"min_{column}"), kwargs.get(f"max_{column}")
        if low is not None and high is not None and low > high:
            raise ConfigError(f"{where}: min_{column} ({low}) is above max_{column} ({high}); no customer can match")
    return Condition(**kwargs)


def plan_actions(
    predictions: pd.DataFrame, cfg: ActionConfig, catalogue: Catalogue, products: Products | None = None
) -> pd.DataFrame:
    """Each customer's next best actions and retention flag.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per customer with ``churn_probability`` and the columns the catalogue's conditions read
        (``segment``, ``clv_expected``, ``value_score``); optionally ``next_items``, a JSON list of
        ``{"item": str, "probability": float}`` per row, likeliest first (:func:`next_items_column`), where
        an entry with ``"level": "category"`` is a category ("Recommend an item from the category X");
        missing, null or empty means no items.
    cfg : ActionConfig
        ``k`` actions per customer, the retention threshold and the mode.
    catalogue : Catalogue
        The rules (:func:`load_catalogue`).
    products : Products, optional
        Names the items of item actions (:mod:`custseq.scoring.products`) and leaves excluded ones out.

    Returns
    -------
    pandas.DataFrame
        A copy of ``predictions`` with ``retention_flag`` (churn probability strictly above the threshold, or
        ``lapsed_regular`` true)
        and ``next_actions``: a JSON list of up to ``k`` objects ``{"action", "kind", "item", "probability"}``
        (``kind`` one of :data:`KINDS`; ``item`` and ``probability`` are null except for item actions).
        Flagged customers get the first matching retention rule's actions (``replace``), or in ``augment``
        mode its first action, the model's items, then its other actions; the others get the model's items,
        then the first matching growth
        rule's actions. A plan has ``k`` actions unless fewer are available, and no repeats.

    Raises
    ------
    SchemaError
        If a needed column is missing, a churn probability is missing or outside [0, 1], or a ``next_items``
        value is not a JSON list of items.
    """
    needed = {"churn_probability"} | {c for r in (*catalogue.retention, *catalogue.growth) for c in r.when.columns}
    if missing := sorted(needed - set(predictions.columns)):
        raise SchemaError(
            f"predictions lack column(s) {missing} that the action plan (catalogue {catalogue.source}) reads; "
            f"found {list(predictions.columns)}"
        )
    churn = predictions["churn_probability"].to_numpy(dtype=float)
    if (outside := ~((churn >= 0) & (churn <= 1))).any():  # NaN fails both comparisons
        raise SchemaError(
            f"churn_probability must be a probability in [0, 1]; {int(outside.sum())} row(s) are not "
            f"(e.g. {churn[outside][0]})"
        )
    flagged = retention_flags(predictions, cfg)
    retention = first_matching_rule(catalogue.retention, predictions)
    growth = first_matching_rule(catalogue.growth, predictions)
    raw_items = predictions["next_items"] if "next_items" in predictions else pd.Series([None] * len(predictions))
    plan = _Planner.of(cfg, catalogue, products)
    chunks = []
    for start in range(0, len(predictions), PLAN_CHUNK_ROWS):
        raws = raw_items.iloc[start : start + PLAN_CHUNK_ROWS].tolist()
        texts = [plan.text(row, flagged[row], retention[row], growth[row], raw) for row, raw in enumerate(raws, start)]
        chunks.append(pa.array(texts, pa.string()))
    out = predictions.copy()
    out["retention_flag"] = flagged
    out["next_actions"] = text_column(chunks, out.index)
    return out


def retention_flags(predictions: pd.DataFrame, cfg: ActionConfig) -> np.ndarray:
    """``retention_flag``: churn probability strictly above the retention threshold, or a lapsed regular."""
    flagged = predictions["churn_probability"].to_numpy(dtype=float) > cfg.retention_threshold
    if "lapsed_regular" in predictions:  # overdue by their own rhythm: at risk whatever the churn model says
        flagged |= predictions["lapsed_regular"].fillna(False).to_numpy(dtype=bool)
    return np.asarray(flagged, dtype=bool)


def text_column(chunks: list[pa.Array], index: pd.Index) -> pd.Series:
    """Texts made chunk by chunk as one pandas text column (pandas' own ``str``, backed by these Arrow chunks): the
    Python strings of each chunk are freed as soon as it is made, so a million plans take their bytes rather than
    a million objects alive at once."""
    column = pa.chunked_array(chunks, pa.string()).to_pandas()
    column.index = index
    return column


@dataclass(frozen=True)
class _Step:
    """One action of a plan, with its JSON object as ``json.dumps(_action(...), ensure_ascii=False)`` writes it."""

    action: str
    item: str | None
    json: str


def _step(text: str, kind: str, item: str | None = None, probability: float | None = None) -> _Step:
    return _Step(text, item, json.dumps(_action(text, kind, item, probability), ensure_ascii=False))


@dataclass
class _Planner:
    """One customer's plan as JSON text (:func:`plan_actions`).

    A million plans are a million texts: each rule's actions and each item's action are turned into JSON once, and
    a plan joins them (the text ``json.dumps`` gives for the plan's list of :func:`_action` objects)."""

    cfg: ActionConfig
    retention: list[list[_Step]]  # each retention rule's actions
    growth: list[list[_Step]]
    item_action: str
    label: Callable[[str], str]  # an item's name in an action
    excluded: frozenset[str]  # products never proposed
    item_steps: dict[tuple[str, str], tuple[str, str]]  # (item, level) -> its action text and JSON up to probability

    @classmethod
    def of(cls, cfg: ActionConfig, catalogue: Catalogue, products: Products | None) -> _Planner:
        label, excluded = (str, frozenset[str]()) if products is None else (products.label, products.excluded)
        rules = [[[_step(text, kind) for text in rule.actions] for rule in group]
                 for group, kind in ((catalogue.retention, "retention"), (catalogue.growth, "growth"))]  # fmt: skip
        return cls(cfg, rules[0], rules[1], catalogue.item_action, label, excluded, {})

    def text(self, row: int, flagged: bool, retention: int, growth: int, raw: Any) -> str:
        items = [
            self._item_step(item, probability, level)
            for item, probability, level in next_item_entries(raw, row)
            if (probability is None or probability >= MIN_ITEM_PROBABILITY)
            and (level == "category" or item not in self.excluded)  # a category's sum left its excluded products out
        ]
        if flagged:
            plan = self.retention[retention]
            if self.cfg.mode == "augment":
                plan = plan[:1] + items + plan[1:]
        else:
            plan = items + self.growth[growth]
        return "[" + ", ".join(step.json for step in _first_distinct(plan, self.cfg.k)) + "]"

    def _item_step(self, item: str, probability: float | None, level: str) -> _Step:
        known = self.item_steps.get((item, level))
        if known is None:
            text = self.item_action.format(item=_item_label(item, level, self.label))
            head = json.dumps(_action(text, "item", item, None), ensure_ascii=False)
            known = self.item_steps[(item, level)] = text, head[: -len("null}")]
        text, head = known
        if probability is None or not math.isfinite(probability):
            return _step(text, "item", item, probability)
        return _Step(text, item, f"{head}{probability!r}}}")  # json writes a float as its repr


def first_matching_rule(rules: Sequence[Rule], predictions: pd.DataFrame) -> np.ndarray:
    """Index of the first rule whose condition holds, per row (the last rule must be a catch-all)."""
    conditions = [rule.when.holds(predictions) for rule in rules]
    return np.select(conditions, np.arange(len(rules)), default=len(rules) - 1)


def _action(text: str, kind: str, item: str | None = None, probability: float | None = None) -> dict[str, Any]:
    return {"action": text, "kind": kind, "item": item, "probability": probability}


def _first_distinct(plan: list[_Step], k: int) -> list[_Step]:
    """The first ``k`` actions, skipping a repeated action text or item."""
    texts: set[str] = set()
    items: set[str] = set()
    kept = []
    for step in plan:
        if step.action in texts or step.item in items:
            continue
        texts.add(step.action)
        if step.item is not None:
            items.add(step.item)
        kept.append(step)
        if len(kept) == k:
            break
    return kept


def _item_label(item: str, level: str, label: Callable[[str], str]) -> str:
    return CATEGORY_ITEM.format(category=item) if level == "category" else label(item)


def parse_next_items(raw: Any, row: int = 0) -> list[tuple[str, float | None]]:
    """The (item, probability) pairs of one ``next_items`` value (JSON text or a list); None, NaN, NA or "" gives none.

    Raises
    ------
    SchemaError
        If the value is not a JSON list of objects with a text ``item`` and a numeric or null ``probability``.
    """
    return [(item, probability) for item, probability, _ in next_item_entries(raw, row)]


def next_item_entries(raw: Any, row: int = 0) -> list[tuple[str, float | None, str]]:
    """The (item, probability, level) of each entry of one ``next_items`` value, as :func:`parse_next_items`;
    the level is ``"item"`` or ``"category"`` (``"item"`` when the entry does not say).

    Raises
    ------
    SchemaError
        As :func:`parse_next_items`, and if an entry's ``level`` is neither ``"item"`` nor ``"category"``.
    """
    if isinstance(raw, str):
        if not raw:
            return []
        try:
            entries = json.loads(raw)
        except json.JSONDecodeError as e:
            raise SchemaError(f"next_items of row {row} is not valid JSON ({e}): {raw!r}") from None
    elif isinstance(raw, list):
        entries = raw
    elif raw is None or pd.isna(raw):  # None, NaN or NA: a customer the next-event model did not score
        return []
    else:
        entries = raw  # refused below
    if not isinstance(entries, list):
        raise SchemaError(f"next_items of row {row} must be a JSON list of items, got {raw!r}")
    pairs = []
    for entry in entries:
        item = entry.get("item") if isinstance(entry, dict) else None
        probability = entry.get("probability") if isinstance(entry, dict) else None
        valid_p = probability is None or (isinstance(probability, int | float) and not isinstance(probability, bool))
        level = entry.get("level", "item") if isinstance(entry, dict) else None
        if not isinstance(item, str) or not item or not valid_p:
            raise SchemaError(
                f'next_items of row {row} must hold objects {{"item": text, "probability": number}}, got {entry!r}'
            )
        if level not in ITEM_LEVELS:
            raise SchemaError(f"next_items of row {row}: level must be one of {list(ITEM_LEVELS)}, got {entry!r}")
        pairs.append((item, None if probability is None else float(probability), level))
    return pairs


def next_items_column(
    items: NextItems, products: Products | None = None, k: int | None = None, level: str = "item"
) -> list[str]:
    """The ``next_items`` JSON text of each customer of ``items``, in its (customer id) order; items below
    :data:`MIN_ITEM_PROBABILITY` and products excluded by ``products`` are left out, at most ``k`` kept, and
    each entry carries the product's ``name`` when ``products`` knows it.

    With ``level="category"``, ``items`` holds categories (:mod:`custseq.scoring.item_level`, whose sums
    already left the excluded products out): each entry is ``{"item": category, "probability": p, "level":
    "category"}``.

    Join it to predictions by customer id, e.g.
    ``predictions.merge(pd.DataFrame({"customer_id": items.customer_ids, "next_items": next_items_column(items)}),
    how="left")``; customers without a sequence then have no items.
    """
    if level not in ITEM_LEVELS:
        raise ConfigError(f"level must be one of {list(ITEM_LEVELS)}, got {level!r}")
    categories = level == "category"
    excluded = products.excluded if products is not None and not categories else frozenset()
    names = products.names if products is not None and not categories else {}
    # each entry's JSON written from its parts, the item's text escaped once per item: what json.dumps of the entry
    # dicts gives (the same separators; a float's repr is json's), in less than half the time
    level_part = ', "level": "category"' if categories else ""
    parts: dict[str, tuple[str, str]] = {}  # item -> its entry's text before and after the probability
    column = []
    for row, probs in zip(items.items, items.probabilities, strict=True):
        entries: list[str] = []
        for item, p in zip(row, probs, strict=True):
            if k is not None and len(entries) >= k:
                break
            if not p >= MIN_ITEM_PROBABILITY or item in excluded:  # NaN is left out too
                continue
            if item not in parts:
                name = f', "name": {json.dumps(names[item], ensure_ascii=False)}' if item in names else ""
                parts[item] = ('{"item": ' + json.dumps(item, ensure_ascii=False) + ', "probability": ',
                               name + level_part + "}")  # fmt: skip
            before, after = parts[item]
            rounded = round(float(p), 6)
            entries.append(before + (repr(rounded) if math.isfinite(rounded) else json.dumps(rounded)) + after)
        column.append("[" + ", ".join(entries) + "]")
    return column


# --------------------------------------------------------------------------- measuring proposals


def hit_rate_at_k(proposals: Sequence[Sequence[str]], actual: Sequence[set[str]], k: int = 3) -> float:
    """Share of customers with at least one of their first ``k`` proposals among their actual items.

    Parameters
    ----------
    proposals : sequence of sequences of str
        Each customer's proposed items, best first.
    actual : sequence of sets of str
        Each customer's actual items (e.g. the products of the first order after the cutoff), in the same
        order. Customers with an empty set are left out (nothing could be hit).
    k : int
        Proposals counted per customer.

    Returns
    -------
    float
        The hit rate in [0, 1]; NaN when no customer has an actual item.

    Raises
    ------
    SchemaError
        If ``proposals`` and ``actual`` differ in length.
    ConfigError
        If ``k`` is below 1.
    """
    if len(proposals) != len(actual):
        raise SchemaError(f"proposals has {len(proposals)} customers but actual {len(actual)}; give one per customer")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    hits = [bool(set(list(p)[:k]) & a) for p, a in zip(proposals, actual, strict=True) if a]
    return float(np.mean(hits)) if hits else float("nan")


def popularity_proposals(
    history: pd.DataFrame, cutoff: dt.datetime, customer_ids: Sequence[str], k: int = 3
) -> list[list[str]]:
    """The ``k`` items in most orders before ``cutoff``, the same list for every customer.

    Parameters
    ----------
    history : pandas.DataFrame
        Purchase lines with :data:`HISTORY_COLUMNS` (``customer_id``, ``ts``, ``order_id``, ``item``,
        ``amount``); rows at or after ``cutoff`` are ignored. A missing ``order_id`` makes the customer's
        lines with the same ``ts`` one order.
    cutoff : datetime
        The first instant not used.
    customer_ids : sequence of str
        The customers to propose for.
    k : int
        Items per customer.

    Returns
    -------
    list of lists of str
        One list per customer of ``customer_ids``; ties in popularity go to the smaller item text.
    """
    ranked = _popular(_orders_before(history, cutoff), k)
    return [list(ranked) for _ in customer_ids]


def repeat_last_proposals(
    history: pd.DataFrame, cutoff: dt.datetime, customer_ids: Sequence[str], k: int = 3
) -> list[list[str]]:
    """Each customer's items of their last order before ``cutoff``, largest amount first, then popular items.

    Parameters are those of :func:`popularity_proposals`. The last order is the one with the latest ``ts``
    (ties: the largest ``order_id``); an item's amount is its summed amount in that order (ties: the smaller
    item text). Customers without history, or with fewer than ``k`` items in the last order, are topped up
    with the most popular items they do not already have.
    """
    orders = _orders_before(history, cutoff)
    popular = _popular(orders, k)
    started = orders.groupby(["customer_id", "order_id"], sort=False)["ts"].min().rename("started").reset_index()
    last = started.sort_values(["customer_id", "started", "order_id"]).drop_duplicates("customer_id", keep="last")
    lines = orders.merge(last[["customer_id", "order_id"]], on=["customer_id", "order_id"])
    # as_index=False gives a DataFrame; pandas-stubs types the result as a Series
    by_item = cast(pd.DataFrame, lines.groupby(["customer_id", "item"], as_index=False)["amount"].sum())
    by_item = by_item.sort_values(["customer_id", "amount", "item"], ascending=[True, False, True])
    own = by_item.groupby("customer_id")["item"].agg(list).to_dict()
    proposals = []
    for cid in customer_ids:
        items = own.get(str(cid), [])[:k]
        items += [item for item in popular if item not in items][: k - len(items)]
        proposals.append(items)
    return proposals


def _orders_before(history: pd.DataFrame, cutoff: dt.datetime) -> pd.DataFrame:
    if missing := [c for c in HISTORY_COLUMNS if c not in history.columns]:
        raise SchemaError(f"history lacks column(s) {missing}; found {list(history.columns)}")
    rows = history.loc[pd.to_datetime(history["ts"]) < pd.Timestamp(cutoff), list(HISTORY_COLUMNS)].copy()
    rows["customer_id"] = rows["customer_id"].astype(str)
    rows["item"] = rows["item"].astype(str)
    rows["ts"] = pd.to_datetime(rows["ts"])
    same_time = "ts:" + rows["ts"].astype(str)
    rows["order_id"] = rows["order_id"].astype(object).where(rows["order_id"].notna(), same_time).astype(str)
    return rows


def _popular(orders: pd.DataFrame, k: int) -> list[str]:
    counts = orders.drop_duplicates(["customer_id", "order_id", "item"])["item"].value_counts()
    ranked = counts.rename("n").rename_axis("item").reset_index().sort_values(["n", "item"], ascending=[False, True])
    return ranked["item"].head(k).tolist()
