"""Results JSON on disk: the schema version, the window-policy text, and strict read / atomic write.
The document itself is assembled by the pipeline (`suite.to_document`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite.cache import atomic_write_text
from evalsuite.errors import DataError
from evalsuite.gate import consistency
from evalsuite.jsonio import read_json
from evalsuite.roles import problem as roles_problem

SCHEMA_VERSION = 2  # 2: `binding` (what the suite asked for and what was scored)
WINDOW_POLICY = (
    "sliding windows: each window feeds <= window tokens; logits[i] predict token[i+1]; the first "
    "window scores all its positions, each later one the next `stride` tokens; every token after "
    "the first of the stream is scored exactly once; NLL summed in float64; PPL = exp(mean NLL)"
)


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


# Types of a run's fields (results.to_json of scoring.lanes.RunResult). A `reference_only` document
# (published numbers) needs only the identity and the PPL; every other one needs every field.
_NUM, _INT, _OPT_INT = (int, float), (int,), (int, type(None))
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "variant": (str,), "runner": (str,), "dataset": (str,), "ppl": _NUM, "model": (str,), "split": (str,),
    "window": _INT, "stride": _INT, "bos": (bool,), "max_tokens": _OPT_INT, "tokens_in_stream": _INT,
    "tokens_scored": _INT, "windows": _INT, "nll_sum": _NUM, "nll_mean": _NUM, "seconds": _NUM,
    "tokens_per_s": _NUM, "reused_tokens": _INT, "metrics": (dict,),  # these two last: optional
}
REFERENCE_FIELDS = ("variant", "runner", "dataset", "ppl")
LIST_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "errors": {"variant": (str,), "runner": (str,), "message": (str,), "dataset": (str, type(None))},
    "parity": {"dataset": (str,), "max_abs_dlogit": _NUM, "top1_agree": _NUM},
}


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
    required = REFERENCE_FIELDS if reference else tuple(RUN_FIELDS)[:-2]  # both have defaults
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
