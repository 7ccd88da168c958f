"""Combine `--shard i/n` results into exactly the numbers of a single unsharded run.

Each shard's runs carry `shard_windows` (plan indices) and `shard_nll` (per-window NLL lists; JSON
floats round-trip float64 exactly). Merging rebuilds the per-target NLL array of the whole plan and
summarizes it the same way an unsharded run does, so PPL matches bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DataError
from .evaluate import summarize
from .windows import plan_windows

RUN_META = ("model", "variant", "runner", "dataset", "split", "window", "stride", "bos", "max_tokens",
            "tokens_in_stream")


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    check_shards(docs)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for doc in docs:
        for run in doc["runs"]:
            groups.setdefault((run["variant"], run["runner"], run["dataset"]), []).append(run)
    runs = [merge_runs(key, parts, len(docs)) for key, parts in groups.items()]
    first = next(d for d in docs if d["shard"]["index"] == 0)
    errors = [e for d in docs for e in d.get("errors", [])]
    return {**first, "runs": runs, "errors": errors, "complete": not errors, "shard": None,
            "merged_from": len(docs)}


def check_shards(docs: list[dict[str, Any]]) -> None:
    if not docs:
        raise DataError("nothing to merge; give the JSON files written by each --shard i/n run")
    shards = [d.get("shard") for d in docs]
    if any(s is None for s in shards):
        raise DataError("a file to merge is not a shard result; produce each with --shard i/n --json-out")
    counts = {s["count"] for s in shards}  # type: ignore[index]
    indices = sorted(s["index"] for s in shards)  # type: ignore[index]
    if len(counts) != 1 or indices != list(range(counts.pop())):
        raise DataError(f"shards {indices} do not form a complete set 0..n-1; merge one file per shard")
    for key in ("policy",):
        if any(d[key] != docs[0][key] for d in docs):
            raise DataError("shards were run with different window policies; rerun them with one config")
    data = [d["provenance"].get("data") for d in docs]
    models = [d["provenance"].get("model", {}).get("origin_sha256") for d in docs]
    if any(x != data[0] for x in data) or any(m != models[0] for m in models):
        raise DataError("shards scored different data or models; rerun them from one config")


def merge_runs(key: tuple[str, str, str], parts: list[dict[str, Any]], n_shards: int) -> dict[str, Any]:
    if len(parts) != n_shards:
        raise DataError(f"run {'/'.join(key)} is missing from {n_shards - len(parts)} shard(s); "
                        "rerun the failed shards")
    meta = {k: parts[0][k] for k in RUN_META}
    windows = plan_windows(meta["tokens_in_stream"], meta["window"], meta["stride"])
    nll = np.full(meta["tokens_in_stream"], np.nan, dtype=np.float64)
    seen: set[int] = set()
    for part in parts:
        for i, values in zip(part["shard_windows"], part["shard_nll"], strict=True):
            w = windows[i]
            nll[w.first_target : w.end] = np.asarray(values, dtype=np.float64)
            seen.add(i)
    if seen != set(range(len(windows))):
        raise DataError(f"run {'/'.join(key)}: shards cover {len(seen)} of {len(windows)} windows")
    seconds = sum(p["seconds"] for p in parts)
    reused = sum(p.get("reused_tokens", 0) for p in parts)
    return summarize(nll, windows, seconds=seconds, reused_tokens=reused, **meta).to_json()
