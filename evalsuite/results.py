"""Results JSON: the document the gate, baselines and reports read. Written atomically."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .cache import atomic_write_text
from .errors import DataError
from .evaluate import RunResult
from .suite import Evaluation
from .windows import plan_windows

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
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "policy": {"window": e.window, "stride": e.stride, "bos": e.bos, "max_tokens": e.max_tokens,
                   "description": WINDOW_POLICY},
        "runs": [run_json(ev, r) for r in ev.runs],
        "parity": ev.parity,
        "variants": ev.variants,
        "errors": ev.errors,
        "complete": not ev.errors and ev.shard is None,
        "shard": {"index": ev.shard[0], "count": ev.shard[1]} if ev.shard else None,
        "provenance": ev.provenance,
    }


def run_json(ev: Evaluation, run: RunResult) -> dict[str, Any]:
    """A run's JSON; a shard's runs also carry their per-window NLL so `merge` can recombine them."""
    out = run.to_json()
    if ev.shard is not None:
        key = (run.variant, run.runner, run.dataset)
        cols, indices = ev.cols[key], ev.scored_windows[key]
        windows = plan_windows(run.tokens_in_stream, run.window, run.stride)
        out["shard_windows"] = indices
        out["shard_cols"] = [cols[windows[i].first_target : windows[i].end].tolist() for i in indices]
    return out


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
