"""Strict TOML -> frozen dataclass loading. Unknown keys and wrong types are errors, never silence.

Supported field types: str, int, float (ints accepted), bool, Literal[...] of str, `X | None`,
tuple[T, ...], dict[str, T] and nested dataclasses. Field defaults make keys optional.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from evalsuite.errors import ConfigError

T = TypeVar("T")
MAX_INT = 2**63 - 1  # TOML integers are 64-bit; tomllib alone would accept any size


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}; check the path") from None
    except (tomllib.TOMLDecodeError, RecursionError) as err:
        raise ConfigError(f"malformed TOML in {path}: {' '.join(str(err).split()) or 'nested too deeply'}; "
                          "fix the syntax") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path} ({err.strerror or type(err).__name__}); "
                          "check the path") from None


def load(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a TOML table; `where` names the place for messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f"; allowed: {', '.join(fields)}"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            values[name] = convert(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key '{name}'")
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:  # __post_init__ validation
        raise ConfigError(f"{where}: {err}") from None


def convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return load(tp, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        for option in options[:-1]:  # `str | tuple[str, ...]`: the first type the value fits
            try:
                return convert(option, value, where)
            except ConfigError:
                continue
        return convert(options[-1], value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        _expect(isinstance(value, list), where, "an array", value)
        return tuple(convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _expect(isinstance(value, dict), where, "a table", value)
        return {k: convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool), where, "a number", value)
        finite = math.isfinite(value) if isinstance(value, float) else abs(value) <= MAX_INT
        _expect(finite, where, "a finite number", value)
        return float(value)
    if tp is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), where, "an integer", value)
        _expect(abs(value) <= MAX_INT, where, "an integer of at most 64 bits", value)
        return value
    if tp is bool:
        _expect(isinstance(value, bool), where, "true or false", value)
        return value
    if tp is str:
        _expect(isinstance(value, str), where, "a string", value)
        return value
    raise TypeError(f"unsupported config field type {tp!r} at {where}")


def _expect(ok: bool, where: str, what: str, value: Any) -> None:
    if not ok:
        shown = repr(value)
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} "
                          f"{shown if len(shown) <= 60 else shown[:57] + '...'}")
