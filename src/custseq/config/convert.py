"""Configs to and from plain dicts: JSON-ready output, and input checked and converted field by field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import types
import typing
from typing import Any

from custseq.config.parsing import parse_date, parse_horizon
from custseq.errors import ConfigError


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (dates as ISO strings, tuples as lists)."""

    def default(o: Any) -> Any:
        if isinstance(o, dt.date):
            return o.isoformat()
        raise TypeError(type(o))

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=default))


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build a config dataclass from a plain dict, converting nested sections, tuples and dates.

    Raises
    ------
    ConfigError
        On an unknown key (naming the allowed ones) or a value of the wrong shape.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table/object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"unknown setting(s) {unknown} in {where}; allowed: {sorted(known)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        factory = fields[name].default_factory
        if dataclasses.is_dataclass(hints[name]) and factory is not dataclasses.MISSING:
            # A partial section changes only the settings it names, starting from this field's own default
            # (ModelConfig's training defaults differ from TrainConfig's).
            built = config_from_dict(hints[name], value, f"{where}.{name}")
            given = {key: getattr(built, key) for key in value}
            kwargs[name] = dataclasses.replace(factory(), **given)
        else:
            kwargs[name] = _convert(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    # A resolved type hint is never a dataclass instance, so narrowing to a class changes nothing.
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
    if where.endswith(".horizon_days"):
        return parse_horizon(value)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if value is None:
        return None
    if hint is dt.date or dt.date in args:
        return parse_date(value, where)
    if origin is tuple or any(typing.get_origin(a) is tuple for a in args):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    if (
        origin in (typing.Union, types.UnionType)
        and args
        and args[0] in (int, float)
        and not isinstance(value, int | float)
    ):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return value
