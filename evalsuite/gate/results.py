"""Results JSON on disk: the schema version, the window-policy text, and strict read / atomic write.
The document itself is assembled by the pipeline (`suite.to_document`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite.cache import atomic_write_text
from evalsuite.errors import DataError
from evalsuite.gate import consistency

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
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{what} file not found: {path}; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{what} file {path} is not valid JSON ({err}); regenerate it") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION or "runs" not in doc:
        raise DataError(f"{what} file {path} is not an evalsuite results document "
                        f"(schema_version {SCHEMA_VERSION}); regenerate it with --json-out")
    problem = validate(doc)
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


def _bad(value: Any, types: tuple[type, ...]) -> bool:
    return not isinstance(value, types) or (isinstance(value, bool) and bool not in types)


def validate(doc: dict[str, Any]) -> str | None:
    """None when every field the gate reads is present with its type, else the first problem."""
    required = REFERENCE_FIELDS if doc.get("reference_only") else tuple(RUN_FIELDS)[:-2]  # both have defaults
    if not isinstance(doc["runs"], list):
        return "'runs' is not a list"
    for i, run in enumerate(doc["runs"]):
        if not isinstance(run, dict):
            return f"runs[{i}] is not an object"
        for key, types in RUN_FIELDS.items():
            if key not in run:
                if key in required:
                    return f"runs[{i}] has no '{key}'"
            elif _bad(run[key], types) and not (key not in required and run[key] is None):
                return f"runs[{i}].{key} is {run[key]!r}, not {'/'.join(t.__name__ for t in types)}"
        for name, value in (run.get("metrics") or {}).items():
            if _bad(value, _NUM):
                return f"runs[{i}].metrics.{name} is {value!r}, not a number"
    for field, keys in LIST_FIELDS.items():
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
