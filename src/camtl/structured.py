"""Strict conversion between plain dicts (YAML) and typed dataclasses.

We write this small converter ourselves rather than use dacite/pydantic because every
error must be one line naming the full key path (``training.sampler.name``) and the
allowed values, and the dataclasses must stay plain so they round-trip to YAML.

A field with ``metadata={"inline": True}`` (a dict) holds the keys of the mapping that no
other field names, as they are, and writes its items back beside the other fields: the
dataclass's ``validate`` checks and converts them (``model.<encoder kind>``, whose keys
the registered encoder kinds decide).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin

from camtl.errors import ConfigError

T = TypeVar("T")
# numbers in exponent form that YAML 1.1 reads as text for want of a dot (5e-5, 1E3)
_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _describe(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, path: str, where: str = "") -> Any:
    """Convert ``value`` to type ``tp``; raise ConfigError naming ``path`` on mismatch."""
    prefix = f"{where}: " if where else ""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, path, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[-1]
            if len(errors) == 1
            else f"{prefix}key '{path}': {value!r} is not a valid value "
            f"(expected {' or '.join(_describe(a) for a in args)})"
        )
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{prefix}key '{path}': {value!r} is not allowed "
                f"(allowed: {', '.join(map(repr, allowed))})"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{prefix}key '{path}': expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [convert(item_tp, v, f"{path}[{i}]", where) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{prefix}key '{path}': expected a mapping, got {value!r}")
        _, val_tp = get_args(tp) or (str, Any)
        return {str(k): convert(val_tp, v, f"{path}.{k}", where) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(
                f"{prefix}key '{path}': {value!r} is not allowed "
                f"(allowed: {', '.join(repr(m.value) for m in tp)})"
            ) from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{prefix}key '{path}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{prefix}key '{path}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            # YAML 1.1 (PyYAML) reads 5e-5 as text, wanting 5.0e-5: take what was meant
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{prefix}key '{path}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}key '{path}': expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Any, path: str = "", where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys by their path."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"from_dict: {cls!r} is not a dataclass")
    prefix = f"{where}: " if where else ""
    shown = path or "<top level>"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}key '{shown}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    inline = next((name for name, f in fields.items() if f.metadata.get("inline")), None)
    if inline is not None:
        del fields[inline]
    unknown = [k for k in data if k not in fields]
    if unknown and inline is None:
        key = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{prefix}unknown key '{key}' (known keys: {', '.join(fields)})")
    kwargs: dict[str, Any] = {} if inline is None else {inline: {k: data[k] for k in unknown}}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = convert(hints[name], data[name], sub, where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}missing required key '{sub}'")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path, where)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data form of a dataclass tree (enums as values), fit for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = to_dict(getattr(obj, f.name))
            if f.metadata.get("inline"):
                data.update(value)
            else:
                data[f.name] = value
        return data
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
