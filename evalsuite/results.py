"""Results JSON: the document the gate, baselines and reports read. Written atomically."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .cache import atomic_write_text
from .suite import Evaluation

SCHEMA_VERSION = 1
WINDOW_POLICY = (
    "sliding windows: each window feeds <= window tokens; logits[i] predict token[i+1]; the first "
    "window scores all its positions, each later one the next `stride` tokens; every token after "
    "the first of the stream is scored exactly once; NLL summed in float64; PPL = exp(mean NLL)"
)


def to_document(ev: Evaluation) -> dict[str, Any]:
    e = ev.suite.eval
    return {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "policy": {"window": e.window, "stride": e.stride, "bos": e.bos, "max_tokens": e.max_tokens,
                   "description": WINDOW_POLICY},
        "runs": [r.to_json() for r in ev.runs],
        "provenance": ev.provenance,
    }


def write(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n")
