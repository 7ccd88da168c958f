"""Results JSON on disk: assembled (`document`), strictly read and atomically written. The fields
and their types come from `evalsuite/schema.py`; this module only checks documents against them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalsuite.cache import atomic_write_text
from evalsuite.config import Suite
from evalsuite.errors import DataError
from evalsuite.gate import consistency
from evalsuite.jsonio import read_json
from evalsuite.roles import problem as roles_problem
from evalsuite.schema import (
    ERROR_FIELDS,
    PARITY_FIELDS,
    REFERENCE_FIELDS,
    REQUIRED_FIELDS,
    RUN_FIELDS,
    SCHEMA_VERSION,
    WINDOW_POLICY,
    Policy,
    RunRecord,
    documents_problem,
)

__all__ = ["KNOWN_KEYS", "SCHEMA_VERSION", "WINDOW_POLICY", "document", "read", "validate", "write"]

# Every top-level field evalsuite itself writes (document(), gate, merge, --plot, published baselines).
# Any other key is a task kind's own section (task_api.Contribution.sections).
KNOWN_KEYS = frozenset({
    "schema_version", "created", "policy", "roles", "runs", "parity", "variants", "errors", "binding", "tasks",
    "complete", "shard", "provenance", "checks", "passed", "plots", "merged_from", "reference_only",
})


def document(suite: Suite, runs: Sequence[RunRecord], *, parity: list[dict[str, Any]],
             variants: dict[str, dict[str, Any]], errors: list[dict[str, Any]], identities: dict[str, Any],
             provenance: dict[str, Any], shard: tuple[int, int] | None, tasks: dict[str, Any] | None,
             sections: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results document of a scoring run: what the suite asked for, what each lane scored
    (`runs`, the accuracy `tasks` section when there is one, and a further kind's own `sections`),
    what failed, and what was bound."""
    from evalsuite.gate.binding import suite_binding

    clash = sorted(set(sections or {}) & KNOWN_KEYS)
    if clash:
        raise ValueError(f"a task kind's section may not be named like a document field: {clash}")
    return {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "policy": Policy.of(suite.eval).to_json(),
        "roles": suite.roles.to_json(),
        "runs": [run.to_json() for run in runs],
        "parity": parity,
        "variants": variants,
        "errors": errors,
        "binding": {"suite": suite_binding(suite), "content": {
            "model": {k: provenance["model"][k] for k in ("origin_sha256", "tokenizer_sha256")},
            "base_onnx": identities.get("base_onnx"),
            "variants": {name: info.get("identity") for name, info in variants.items()},
            "data": identities.get("data", {})}},
        **({"tasks": tasks} if tasks is not None else {}),
        **(sections or {}),
        "complete": not errors and shard is None,
        "shard": {"index": shard[0], "count": shard[1]} if shard else None,
        "provenance": provenance,
    }


def read(path: Path, what: str, strict: bool | None = None) -> dict[str, Any]:
    """Load a results or baseline JSON; InputError-style one-line messages when it is not one.
    `strict` (default: for baselines and shards) also refuses a file whose values are inconsistent
    or implausible (gate/consistency.py); a results file being gated fails a named check instead."""
    if not Path(path).exists():
        raise DataError(f"{what} file not found: {path}; check the path")
    doc = read_json(Path(path), DataError, f"{what} file", "regenerate it with --json-out")
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION or "runs" not in doc:
        raise DataError(f"{what} file {path} is not an evalsuite results document "
                        f"(schema_version {SCHEMA_VERSION}); regenerate it with --json-out")
    problem = validate(doc) or (None if doc["runs"] or what != "baseline" else "it has no runs")
    if problem:
        raise DataError(f"{what} file {path} is malformed: {problem}; regenerate it with --json-out")
    if strict or (strict is None and what in ("baseline", "shard")):
        why = consistency.problem(doc)
        if why:
            raise DataError(f"{what} file {path} has inconsistent or implausible values: {why}; regenerate it")
    return doc


_NUM = (int, float)
LIST_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {"errors": ERROR_FIELDS, "parity": PARITY_FIELDS}


# Tables the gate, merge and the reports read, by path: absent is allowed (null only for `shard`); present, a table must
# have this shape ("dict of dicts": every value an object). A list where an object belongs, a string
# where a table of variants belongs: one line, exit 2, never an AttributeError later.
SHAPES: dict[tuple[str, ...], str] = {
    ("policy",): "object", ("binding",): "object", ("binding", "suite"): "object",
    ("binding", "content"): "object", ("binding", "suite", "variants"): "object of objects",
    ("binding", "content", "model"): "object", ("binding", "content", "variants"): "object",
    ("binding", "content", "data"): "object", ("provenance",): "object", ("provenance", "data"): "object of objects",
    ("provenance", "model"): "object", ("variants",): "object of objects", ("shard",): "object",
    ("plots",): "list of strings", ("checks",): "list of objects", ("complete",): "bool",
}


def shape_problem(doc: dict[str, Any]) -> str | None:
    for path, shape in SHAPES.items():
        value: Any = doc
        for key in path[:-1]:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, dict) or path[-1] not in value:
            continue
        value = value[path[-1]]
        if value is None and path == ("shard",):
            continue
        kind, _, inner = shape.partition(" of ")
        ok = isinstance(value, {"object": dict, "list": list, "bool": bool}[kind])
        items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
        if ok and inner:
            ok = all(isinstance(x, dict if inner == "objects" else str) for x in items)
        if not ok:
            return f"'{'.'.join(path)}' is {type(value).__name__}, not {'an' if shape[0] == 'o' else 'a'} {shape}"
    return None


def _bad(value: Any, types: tuple[type, ...]) -> bool:
    return not isinstance(value, types) or (isinstance(value, bool) and bool not in types)


def validate(doc: dict[str, Any]) -> str | None:
    """None when every field the gate reads is present with its type, else the first problem."""
    reference = bool(doc.get("reference_only"))  # published numbers: unknown fields are null
    required = REFERENCE_FIELDS if reference else REQUIRED_FIELDS
    if not isinstance(doc["runs"], list):
        return "'runs' is not a list"
    shape = shape_problem(doc) or roles_problem(doc.get("roles"))
    if shape:
        return shape
    for i, run in enumerate(doc["runs"]):
        if not isinstance(run, dict):
            return f"runs[{i}] is not an object"
        for key, types in RUN_FIELDS.items():
            if key not in run:
                if key in required:
                    return f"runs[{i}] has no '{key}'"
            elif _bad(run[key], types) and not (reference and run[key] is None):
                return f"runs[{i}].{key} is {run[key]!r}, not {'/'.join(t.__name__ for t in types)}"
        for name, value in (run.get("metrics") or {}).items():
            if _bad(value, _NUM):
                return f"runs[{i}].metrics.{name} is {value!r}, not a number"
        if documents_problem(run):
            return f"runs[{i}].{documents_problem(run)}"
    for name, info in (doc.get("variants") or {}).items():
        if _bad(info.get("size_mb"), (*_NUM, type(None))):
            return f"variants.{name}.size_mb is {info.get('size_mb')!r}, not a number"
    for field, keys in LIST_FIELDS.items():
        if field in doc and not isinstance(doc[field], list):
            return f"'{field}' is {type(doc[field]).__name__}, not a list"
        items = doc.get(field) or []
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            return f"'{field}' is not a list of objects"
        for i, item in enumerate(items):
            for key, types in keys.items():
                if _bad(item.get(key), types):
                    return f"{field}[{i}].{key} is missing or {item.get(key)!r}, not {types[0].__name__}"
    if "tasks" in doc:
        from evalsuite.gate.task_results import section_problem

        return section_problem(doc["tasks"])
    return None


def write(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n")
