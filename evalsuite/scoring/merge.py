"""Combine `--shard i/n` results into exactly the numbers of a single unsharded run.

Each shard's runs carry `shard_windows` (plan indices) and `shard_cols` (per-window rows of the
per-token columns; JSON floats round-trip float64 exactly). Merging rebuilds each run's columns
over the whole plan and summarizes them the way an unsharded run does, so PPL matches bit for bit.
The plan is the run's own (`schema.plan_of`): one stream, or a per-document run's documents.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evalsuite.data.windows import Window
from evalsuite.errors import DataError
from evalsuite.roles import of_document
from evalsuite.schema import RUN_KEY, RUN_META, plan_of
from evalsuite.scoring.lanes import summarize
from evalsuite.scoring.metrics import paired_metrics, solo_metrics, unit_metrics
from evalsuite.scoring.tokenstats import PAIRED, SOLO


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    check_shards(docs)
    roles = of_document(docs[0])  # check_shards: every shard has the same binding and roles
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for doc in docs:
        for run in doc["runs"]:
            groups.setdefault(_key(run), []).append(run)
    rebuilt = {key: rebuild(key, parts, len(docs)) for key, parts in groups.items()}
    runs = []
    for (variant, _runner, dataset), (cols, windows, parts) in rebuilt.items():
        metrics = solo_metrics(cols[:, : len(SOLO)], windows)
        base = rebuilt.get((roles.base_variant, roles.base, dataset))
        if not roles.is_base(variant) and base is not None:
            metrics |= paired_metrics(cols, base[0][:, 0], windows)
        meta = {k: parts[0][k] for k in RUN_META if k in parts[0]}  # `documents`: per-document runs only
        units = parts[0].get("metrics", {})
        if "words" in units and "bytes" in units:
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
    for doc in docs:
        shard = doc.get("shard")
        if not isinstance(shard, dict):
            raise DataError("a file to merge is not a shard result; produce each with --shard i/n --json-out")
        index, count = shard.get("index"), shard.get("count")
        if not (isinstance(index, int) and isinstance(count, int) and _is_int(index) and _is_int(count)
                and 0 <= index < count):
            raise DataError(f"a shard file records shard {index!r}/{count!r}, not i/n with 0 <= i < n; "
                            "produce each with --shard i/n --json-out")
    counts = {d["shard"]["count"] for d in docs}
    indices = sorted(d["shard"]["index"] for d in docs)
    if len(counts) != 1 or indices != list(range(counts.pop())):
        raise DataError(f"shards {indices} do not form a complete set 0..n-1; merge one file per shard")
    if any(d["policy"] != docs[0]["policy"] for d in docs):
        raise DataError("shards were run with different window policies; rerun them with one config")
    for doc in docs[1:]:  # suite, policy, model and every variant's settings and identity
        where = first_difference(docs[0].get("binding"), doc.get("binding"), "binding")
        if where:
            raise DataError(f"shard {doc['shard']['index']} differs from shard {docs[0]['shard']['index']} in "
                            f"{where}; rerun all shards from one config")
    data = [(d.get("provenance") or {}).get("data") for d in docs]
    if any(x != data[0] for x in data):
        raise DataError("shards scored different data; rerun them from one config")
    for doc in docs:
        check_shard_runs(doc)


def _key(run: dict[str, Any]) -> tuple[str, str, str]:
    variant, runner, dataset = (run[k] for k in RUN_KEY)
    return variant, runner, dataset


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_shard_runs(doc: dict[str, Any]) -> None:
    """Re-derive what a shard's runs claim: each run once, its windows exactly `shard_windows(plan, i, n)`,
    one row of finite numbers per target, and its summary (NLL sum, PPL, counts) from those rows."""
    index, count = doc["shard"]["index"], doc["shard"]["count"]
    seen: set[tuple[str, str, str]] = set()
    roles = of_document(doc)
    for run in doc["runs"]:
        key = _key(run)
        where = f"shard {index}/{count}: run {'/'.join(key)}"
        if key in seen:
            raise DataError(f"{where} appears twice in the file; rerun that shard")
        seen.add(key)
        have, rows = run.get("shard_windows"), run.get("shard_cols")
        # Counted, not planned, before the rows are checked: a forged stream length plans nothing.
        plan = plan_of(run)  # the run's own plan: one stream, or its documents end to end
        want = range(index, plan.count(), count)
        if not isinstance(have, list) or len(have) != len(want) or have != list(want):
            raise DataError(f"{where} holds windows {str(have)[:60]}, shard {index} of {count} of its "
                            f"{want.stop} windows is {str(list(want[:8]))[:60]}; rerun that shard")
        if not isinstance(rows, list) or len(rows) != len(want):
            raise DataError(f"{where} has no per-window rows (shard_cols) for its windows; rerun that shard")
        windows = plan.windows()
        width = len(SOLO if roles.is_base(run["variant"]) else PAIRED)
        scored = [_window_rows(where, windows[i], part, width) for i, part in zip(want, rows, strict=True)]
        _check_summary(where, run, np.concatenate([r[:, 0] for r in scored]), len(want))


def _window_rows(where: str, w: Window, part: Any, width: int) -> np.ndarray:
    try:
        arr = np.asarray(part, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.empty((0, 0))
    if arr.shape != (w.n_targets, width) or not np.isfinite(arr).all():
        raise DataError(f"{where}: the rows of window {w.first_target}..{w.end - 1} are not {w.n_targets} rows of "
                        f"{width} finite numbers; rerun that shard")
    return arr


def _check_summary(where: str, run: dict[str, Any], nll: np.ndarray, n_windows: int) -> None:
    """The run's summary must be its rows' (1e-9 relative: the same float64 sum, at most reordered)."""
    total = float(np.sum(nll, dtype=np.float64))
    mean = total / nll.shape[0]
    ok = (run["tokens_scored"] == nll.shape[0] and run["windows"] == n_windows
          and math.isclose(run["nll_sum"], total, rel_tol=1e-9) and math.isclose(run["ppl"], math.exp(mean),
                                                                                rel_tol=1e-9))
    if not ok:
        raise DataError(f"{where} says {run['tokens_scored']} tokens, {run['windows']} windows, NLL sum "
                        f"{run['nll_sum']!r}, PPL {run['ppl']!r}; its rows give {nll.shape[0]}, {n_windows}, "
                        f"{total!r}, {math.exp(mean)!r}; rerun that shard")


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
    if len(parts) != n_shards:  # each shard holds a run at most once (check_shard_runs)
        raise DataError(f"run {'/'.join(key)} is in {len(parts)} of the {n_shards} shards; rerun the shards "
                        "it is missing from")
    first = parts[0]
    if any(p.get(k) != first.get(k) for p in parts for k in RUN_META):
        raise DataError(f"run {'/'.join(key)} scored another stream or policy in some shard; rerun all shards "
                        "from one config")
    windows = plan_of(first).windows()
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
