"""Strict JSON reading: every file read back is hostile.

`read_json` turns anything that is not a plain, finite, reasonably sized JSON document into the
caller's one-line error (exit 2): a missing or unreadable file, non-UTF-8 bytes, bad syntax, NaN or
Infinity literals (and numbers that overflow to them), integers beyond 64 bits, nesting deep
enough to exhaust the recursion limit, or a top level of the wrong kind. A UTF-8 BOM is accepted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError

MAX_INT = 2**63 - 1  # every integer evalsuite stores fits an int64


class _Bad(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _Bad(f"{name} is not a number JSON allows")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad(f"number {text[:20]} overflows a float")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(value := int(text)) > MAX_INT:
        raise _Bad(f"integer {text[:20]}{'...' if len(text) > 20 else ''} is beyond 64 bits")
    return value


def loads(text: str) -> Any:
    """Parse `text` strictly; ValueError (one line) on anything `read_json` refuses."""
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _Bad:
        raise
    except RecursionError:
        raise _Bad("nested too deeply") from None
    except json.JSONDecodeError as err:
        raise _Bad(f"{err.msg} at line {err.lineno} column {err.colno}") from None


def read_json(path: Path, error: type[EvalsuiteError], what: str, fix: str, top: type = object) -> Any:
    """The document in `path`, or `error("<what> <path> ...; <fix>")`. `top`: the top level's type
    (dict: an object, list: an array); anything else is refused with the same one line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} not found; {fix}") from None
    except OSError as err:
        raise error(f"cannot read {what} {path} ({err.strerror or type(err).__name__}); {fix}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{what} {path} is not UTF-8 (byte {err.start}); {fix}") from None
    try:
        doc = loads(text)
    except ValueError as err:
        raise error(f"{what} {path} is not valid JSON ({_one_line(err)}); {fix}") from None
    if top is not object and not isinstance(doc, top):
        kind = "a JSON object" if top is dict else "a JSON array" if top is list else top.__name__
        raise error(f"{what} {path} is not {kind} (its top level is a {type(doc).__name__}); {fix}")
    return doc


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__
