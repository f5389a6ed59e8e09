"""Frozen dataclasses that write themselves to JSON and read themselves back, checked against their type hints.

A run file (``metrics.json``, ``profit.json``…, see :mod:`custseq.io.run_files`) is a tree of
:class:`JsonRecord` dataclasses. :meth:`JsonRecord.to_json` gives plain JSON values; :meth:`JsonRecord.from_json`
checks every key against its field's type and names the key that is missing, unknown or of the wrong type.
The conventions, the same for every record:

- a field whose default is ``None`` is an *optional key*: left out of the JSON when None, None when absent;
- a field typed ``X | None`` without a default is a *nullable value*: always written, ``null`` when None;
- a ``float`` that is not finite (NaN, ±inf) is written as ``null``, which strict JSON parsers accept, and
  ``null`` (or a NaN literal) reads back as NaN;
- an ``int`` accepts a whole float (``4.0``), since JSON has one kind of number;
- ``tuple[X, ...]`` is a JSON array and ``dict[str, X]`` a JSON object;
- a config dataclass of :mod:`custseq.config` is written with ``config_to_dict`` and read with
  ``config_from_dict``;
- ``A | B`` of two records is read as the first that fits.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, ClassVar, Self, cast

from custseq.config import config_from_dict, config_to_dict
from custseq.errors import ArtifactError, ConfigError


class InvalidRecord(ValueError):
    """A JSON value that does not fit its record: ``key`` is its dotted path, ``problem`` what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key or 'the top level'} {problem}")
        self.key = key
        self.problem = problem


class JsonRecord:
    """Base of the frozen dataclasses written as JSON objects (see the module's conventions)."""

    json_kind: ClassVar[type] = dict  # the JSON type this record is written as

    def to_json(self) -> Any:
        """Plain JSON values: dicts, lists, str, int, float (finite) and None."""
        return encode_fields(self)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """The record that ``data`` describes.

        Raises
        ------
        ArtifactError
            Naming the key that is missing, unknown or of the wrong type.
        """
        try:
            return cls.decode(data, "")
        except InvalidRecord as error:
            raise ArtifactError(f"{cls.__name__}: {error}") from None

    @classmethod
    def decode(cls, data: Any, key: str) -> Self:
        """Read the record at ``key`` (a dotted path, for errors); raises :class:`InvalidRecord`."""
        return cast(Self, decode_fields(cls, data, key))


# --- records ---------------------------------------------------------------------------------------------------


@functools.cache
def _fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls))


def _optional_key(f: dataclasses.Field[Any]) -> bool:
    return f.default is None


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def encode_fields(record: Any) -> dict[str, Any]:
    """A record's fields as a JSON object, optional keys that are None left out."""
    out = {}
    for f, hint in _fields(type(record)):  # type: ignore[arg-type]  # dataclass types are hashable; typeshed says type[Any] may not be
        value = getattr(record, f.name)
        if value is None and _optional_key(f):
            continue
        out[f.name] = encode(hint, value)
    return out


def decode_fields(cls: type, data: Any, key: str, ignore: frozenset[str] = frozenset()) -> Any:
    """Build dataclass ``cls`` from the JSON object ``data``, every field checked against its type hint."""
    if not isinstance(data, dict):
        raise InvalidRecord(key, f"must be a JSON object, got {_describe(data)}")
    fields = _fields(cls)
    known = {f.name for f, _ in fields}
    if unknown := [k for k in data if k not in known and k not in ignore]:
        raise InvalidRecord(_join(key, unknown[0]), f"is not a key of {cls.__name__}; known keys: {sorted(known)}")
    kwargs = {}
    for f, hint in fields:
        if f.name in data:
            kwargs[f.name] = decode(hint, data[f.name], _join(key, f.name))
        elif _required(f):
            raise InvalidRecord(_join(key, f.name), "is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:  # a __post_init__ check, e.g. of a config value
        raise InvalidRecord(key, f"is invalid: {error}") from None


def _join(key: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


# --- values ----------------------------------------------------------------------------------------------------


def encode(hint: Any, value: Any) -> Any:
    """``value`` (of type ``hint``) as plain JSON values."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        arms = [a for a in args if a is not type(None)]
        arm = next((a for a in arms if isinstance(a, type) and isinstance(value, a)), arms[0])
        return encode(arm, value)
    if origin is tuple:
        return [encode(args[0], v) for v in value]
    if origin is dict:
        return {str(k): encode(args[1], v) for k, v in value.items()}
    if isinstance(value, JsonRecord):
        return value.to_json()
    if dataclasses.is_dataclass(value):
        return config_to_dict(value)
    if hint is float:
        number = float(value)
        return number if math.isfinite(number) else None
    if hint is int:
        return int(value)
    if hint is bool:
        return bool(value)
    if hint is str:
        return str(value)
    raise TypeError(f"cannot write {hint!r} to JSON")


def decode(hint: Any, value: Any, key: str) -> Any:
    """The JSON ``value`` at ``key`` read as type ``hint``; raises :class:`InvalidRecord`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return _decode_union([a for a in args if a is not type(None)], type(None) in args, value, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise InvalidRecord(key, f"must be a list, got {_describe(value)}")
        return tuple(decode(args[0], v, _join(key, i)) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidRecord(key, f"must be a JSON object, got {_describe(value)}")
        return {k: decode(args[1], v, _join(key, k)) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, JsonRecord):
        return hint.decode(value, key)
    if dataclasses.is_dataclass(hint):
        try:
            return config_from_dict(hint, value, where=key)  # type: ignore[arg-type]  # is_dataclass narrows to instance | type; hint is a type here
        except ConfigError as error:
            raise InvalidRecord(key, f"holds invalid settings: {error}") from None
    return _decode_scalar(hint, value, key)


def _decode_union(arms: list[Any], nullable: bool, value: Any, key: str) -> Any:
    if value is None and nullable:
        return None
    problems = []
    for arm in arms:
        try:
            return decode(arm, value, key)
        except InvalidRecord as error:
            problems.append(error)
    if len(problems) == 1:
        raise problems[0]
    names = " or ".join(getattr(a, "__name__", str(a)) for a in arms)
    raise InvalidRecord(key, f"must be {names}: " + "; ".join(str(p) for p in problems))


def _decode_scalar(hint: type, value: Any, key: str) -> Any:
    if hint is float:
        if value is None:
            return math.nan  # written for NaN or infinity
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise InvalidRecord(key, f"must be a number, got {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InvalidRecord(key, f"must be an integer, got {_describe(value)}")
    if hint is bool or hint is str:
        if isinstance(value, hint):
            return value
        raise InvalidRecord(key, f"must be {'true or false' if hint is bool else 'a string'}, got {_describe(value)}")
    raise TypeError(f"cannot read {hint!r} from JSON")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
