"""Results JSON on disk: the schema version, the window-policy text, and strict read / atomic write.
The document itself is assembled by the pipeline (`suite.to_document`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite.cache import atomic_write_text
from evalsuite.errors import DataError

SCHEMA_VERSION = 2  # 2: `binding` (what the suite asked for and what was scored)
WINDOW_POLICY = (
    "sliding windows: each window feeds <= window tokens; logits[i] predict token[i+1]; the first "
    "window scores all its positions, each later one the next `stride` tokens; every token after "
    "the first of the stream is scored exactly once; NLL summed in float64; PPL = exp(mean NLL)"
)


def read(path: Path, what: str) -> dict[str, Any]:
    """Load a results or baseline JSON; InputError-style one-line messages when it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{what} file not found: {path}; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{what} file {path} is not valid JSON ({err}); regenerate it") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION or "runs" not in doc:
        raise DataError(f"{what} file {path} is not an evalsuite results document "
                        f"(schema_version {SCHEMA_VERSION}); regenerate it with --json-out")
    return doc


def write(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n")
