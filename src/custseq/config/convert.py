"""Configs to and from plain dicts: JSON-ready output, and input checked and converted field by field."""

from __future__ import annotations

import contextlib
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


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config", *, _keys: tuple[str, ...] = ()) -> Any:
    """Build a config dataclass from a plain dict, checking every value against its field's type and converting
    nested sections, tuples and dates.

    Raises
    ------
    ConfigError
        On an unknown key (naming the allowed ones), or a value of the wrong type (naming the key, as
        ``[model.finetune_training] epochs``, and the type it takes).
    """
    if not isinstance(data, dict):
        got = "nothing (null)" if data is None else _value_kind(data)
        raise ConfigError(f"{_dotted(where, _keys)} must be a table of settings (key = value), got {got}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"unknown setting(s) {unknown} in {_dotted(where, _keys)}; allowed: {sorted(known)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        factory = fields[name].default_factory
        keys = (*_keys, name)
        if dataclasses.is_dataclass(hints[name]) and factory is not dataclasses.MISSING:
            # A partial section changes only the settings it names, starting from this field's own default
            # (ModelConfig's training defaults differ from TrainConfig's).
            built = config_from_dict(hints[name], value, where, _keys=keys)
            given = {key: getattr(built, key) for key in value}
            kwargs[name] = dataclasses.replace(factory(), **given)
        else:
            kwargs[name] = _convert(hints[name], value, _Key(where, keys))
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{_dotted(where, _keys)}: {e}") from None


@dataclasses.dataclass(frozen=True)
class _Key:
    """Where a value sits, for messages: the file (or other source) and the key path."""

    where: str
    keys: tuple[str, ...]

    def __str__(self) -> str:
        *section, name = self.keys
        return f"{self.where}: [{'.'.join(section)}] {name}" if section else f"{self.where}: {name}"


def _dotted(where: str, keys: tuple[str, ...]) -> str:
    return ".".join((where, *keys))


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dt.date: "a date"}


def _convert(hint: Any, value: Any, key: _Key) -> Any:
    """``value`` checked against (and converted to) the type ``hint`` of the setting at ``key``."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, key.where, _keys=key.keys)
    if key.keys[-1] == "horizon_days" and value is not None:
        try:
            return parse_horizon(value)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e}") from None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:
            return _convert(arms[0], value, key)
        for arm in arms:
            with contextlib.suppress(ConfigError):
                return _convert(arm, value, key)
        raise _wrong_type(key, value, " or ".join(_describe_type(a) for a in arms))
    if hint is Any or hint is object:
        return value
    if hint is dt.date:
        return parse_date(value, f"{key.where}.{'.'.join(key.keys)}") if _is_scalar(value) else _fail(key, value, hint)
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        return value if type(value) in kinds else _fail(key, value, hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _wrong_type(key, value, _describe_type(hint))
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise _wrong_type(key, value, _describe_type(hint))
        return tuple(_convert(t, v, _Key(key.where, (*key.keys[:-1], f"{key.keys[-1]}[{i}]")))
                     for i, (t, v) in enumerate(zip(items, value, strict=True)))  # fmt: skip
    if origin is dict:
        key_type, value_type = args or (Any, Any)
        if not isinstance(value, dict):
            raise _wrong_type(key, value, _describe_type(hint))
        return {_convert(key_type, k, key): _convert(value_type, v, _Key(key.where, (*key.keys, str(k))))
                for k, v in value.items()}  # fmt: skip
    if hint is bool:
        return value if isinstance(value, bool) else _fail(key, value, hint)
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _fail(key, value, hint)
    if hint is float:
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _fail(key, value, hint)
        )
    if hint is str:
        return value if isinstance(value, str) else _fail(key, value, hint)
    return value


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | dt.date) and not isinstance(value, bool)


def _describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe_type(a) for a in args)})"
    if origin is dict:
        return f"a table of {_plural(args[1]) if args else 'values'}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args if a is not type(None))
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}.get(
        hint, _describe_type(hint)
    )


def _wrong_type(key: _Key, value: Any, expected: str) -> ConfigError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "…"
    return ConfigError(f"{key} must be {expected}, got {shown} ({_value_kind(value)})")


def _fail(key: _Key, value: Any, hint: Any) -> Any:
    raise _wrong_type(key, value, _describe_type(hint))


def _value_kind(value: Any) -> str:
    kinds = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a table", type(None): "null"}  # fmt: skip
    return kinds.get(type(value), type(value).__name__)
