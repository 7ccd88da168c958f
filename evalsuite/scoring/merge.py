"""Combine `--shard i/n` results into exactly the numbers of a single unsharded run.

Each shard's runs carry `shard_windows` (plan indices) and `shard_cols` (per-window rows of the
per-token columns; JSON floats round-trip float64 exactly). Merging rebuilds each run's columns
over the whole plan and summarizes them the way an unsharded run does, so PPL matches bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite.data.windows import Window, plan_windows
from evalsuite.errors import DataError
from evalsuite.scoring.lanes import summarize
from evalsuite.scoring.metrics import paired_metrics, solo_metrics, unit_metrics
from evalsuite.scoring.tokenstats import SOLO

RUN_META = ("model", "variant", "runner", "dataset", "split", "window", "stride", "bos", "max_tokens",
            "tokens_in_stream")


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    check_shards(docs)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for doc in docs:
        for run in doc["runs"]:
            groups.setdefault((run["variant"], run["runner"], run["dataset"]), []).append(run)
    rebuilt = {key: rebuild(key, parts, len(docs)) for key, parts in groups.items()}
    runs = []
    for (variant, _runner, dataset), (cols, windows, parts) in rebuilt.items():
        metrics = solo_metrics(cols[:, : len(SOLO)], windows)
        base = rebuilt.get(("base", "ort", dataset))
        if variant != "base" and base is not None:
            metrics |= paired_metrics(cols, base[0][:, 0], windows)
        meta = {k: parts[0][k] for k in RUN_META}
        units = parts[0].get("metrics", {})
        if "words" in units:
            metrics |= unit_metrics(float(np.nansum(cols[:, 0])), int(units["words"]), int(units["bytes"]))
        runs.append(summarize(cols[:, 0], windows, seconds=sum(p["seconds"] for p in parts),
                              reused_tokens=sum(p.get("reused_tokens", 0) for p in parts),
                              metrics=metrics, **meta).to_json())
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
    if any(d["policy"] != docs[0]["policy"] for d in docs):
        raise DataError("shards were run with different window policies; rerun them with one config")
    for doc in docs[1:]:  # suite, policy, model and every variant's settings and identity
        where = first_difference(docs[0].get("binding"), doc.get("binding"), "binding")
        if where:
            raise DataError(f"shard {doc['shard']['index']} differs from shard {docs[0]['shard']['index']} in "
                            f"{where}; rerun all shards from one config")
    data = [d["provenance"].get("data") for d in docs]
    if any(x != data[0] for x in data):
        raise DataError("shards scored different data; rerun them from one config")


def first_difference(a: Any, b: Any, path: str) -> str:
    """Dotted path of the first place where `a` and `b` differ ('' when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if where:
                return where
        return ""
    return "" if a == b else f"{path} ({a!r} vs {b!r})"


def rebuild(key: tuple[str, str, str], parts: list[dict[str, Any]], n_shards: int
            ) -> tuple[np.ndarray, list[Window], list[dict[str, Any]]]:
    """The run's per-token columns over the whole plan, from its shards."""
    if len(parts) != n_shards:
        raise DataError(f"run {'/'.join(key)} is missing from {n_shards - len(parts)} shard(s); "
                        "rerun the failed shards")
    first = parts[0]
    windows = plan_windows(first["tokens_in_stream"], first["window"], first["stride"])
    width = len(first["shard_cols"][0][0])
    cols = np.full((first["tokens_in_stream"], width), np.nan)
    seen: set[int] = set()
    for part in parts:
        for i, rows in zip(part["shard_windows"], part["shard_cols"], strict=True):
            cols[windows[i].first_target : windows[i].end] = np.asarray(rows, dtype=np.float64)
            seen.add(i)
    if seen != set(range(len(windows))):
        raise DataError(f"run {'/'.join(key)}: shards cover {len(seen)} of {len(windows)} windows")
    return cols, windows, parts
