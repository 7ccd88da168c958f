"""Combine the `tasks` sections of `--shard i/n` results into exactly the section of one unsharded run.

A shard's task lane scores examples i, i+n, ... (`shard_windows` over the task's examples) and its run
carries those `indices`. Merging checks every shard against what it must hold (the same task records
in every shard; each run once per shard, in every shard, its indices exactly the shard's examples,
one finite [log-likelihood, greedy] row per choice), puts the scores back in example order and
derives every metric and parity figure with `with_metrics`, as an unsharded run does: the merged
numbers equal the unsharded run's bit for bit (JSON floats round-trip float64 exactly).

Any malformed or inconsistent shard is a DataError (one line, exit 2), never a traceback.
"""

from __future__ import annotations

import math
from typing import Any

from evalsuite.data.windows import shard_windows
from evalsuite.errors import DataError
from evalsuite.gate.results import KNOWN_KEYS
from evalsuite.gate.task_results import TASKS_SCHEMA, outline_sha256, with_metrics
from evalsuite.scoring import task_metrics as tm
from evalsuite.scoring.merge import first_difference

Key = tuple[str, str, str]  # (task, variant, runner)
RERUN = "rerun that shard"
RECORD_KEYS = ("task", "name", "limit", "examples", "data_sha256", "requests_sha256", "outline_sha256",
               "outline", "metrics", "prompt_version")


def merge_shards(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The document of one unsharded run from its shard documents (read with `results.read(..., "shard")`):
    the perplexity runs (`scoring.merge`) and the tasks section. What `evalsuite merge` and
    `--executor ray` both write."""
    from evalsuite.scoring.merge import merge

    doc = {k: v for k, v in merge(docs).items() if k != "tasks"}  # shard 0's section is partial
    for shard in docs:  # after merge(): the shard set is checked
        unknown = sorted(set(shard) - KNOWN_KEYS)
        if unknown:  # shard 0's copy of a section merge cannot combine would pass as the whole
            raise DataError(f"{_where(shard)} holds section(s) {', '.join(unknown)} that merge cannot combine "
                            "across shards; score that task unsharded")
    tasks = merge_tasks(docs)  # after merge(): the shard set is checked
    return doc if tasks is None else {**doc, "tasks": tasks}


def merge_tasks(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The merged `tasks` section of shard documents already checked by `scoring.merge.check_shards`
    (each has a valid `shard` and together they form 0..n-1); None when no shard holds tasks."""
    docs = sorted(docs, key=lambda d: d["shard"]["index"])
    sections = [d.get("tasks") for d in docs]
    if all(s is None for s in sections):
        return None
    for doc, section in zip(docs, sections, strict=True):
        where = _where(doc)
        if not isinstance(section, dict):
            raise DataError(f"{where} holds no tasks section while other shards do; rerun all shards from one config")
        if section.get("schema") != TASKS_SCHEMA or not isinstance(section.get("tasks"), list) \
                or not isinstance(section.get("runs"), list):
            raise DataError(f"{where}: its tasks section is not schema {TASKS_SCHEMA} with 'tasks' and 'runs' "
                            f"lists; {RERUN}")
    records = check_records(docs)
    examples = {r["task"]: tm_outline(r) for r in records}
    parts: dict[Key, list[dict[str, Any]]] = {}
    order: list[Key] = []
    for doc in docs:
        for key, run in check_runs(doc, examples).items():
            if key not in parts:
                order.append(key)
            parts.setdefault(key, []).append(run)
    runs = [combine(key, parts[key], len(docs)) for key in order]
    return with_metrics({"schema": TASKS_SCHEMA, "tasks": records, "runs": runs})


def _where(doc: dict[str, Any]) -> str:
    return f"shard {doc['shard']['index']}/{doc['shard']['count']}"


def check_records(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every shard records the same tasks, each record well formed and its outline hash re-derived."""
    first = docs[0]["tasks"]["tasks"]
    labels: set[str] = set()
    for rec in first:
        _check_record(_where(docs[0]), rec)
        if rec["task"] in labels:
            raise DataError(f"{_where(docs[0])}: task {rec['task']} is recorded twice; {RERUN}")
        labels.add(rec["task"])
    for doc in docs[1:]:
        other = doc["tasks"]["tasks"]
        if not isinstance(other, list) or len(other) != len(first):
            raise DataError(f"{_where(doc)} records {len(other)} tasks, {_where(docs[0])} {len(first)}; "
                            "rerun all shards from one config")
        for a, b in zip(first, other, strict=True):
            diff = first_difference(a, b, f"task {a['task']}") if isinstance(b, dict) else f"task {a['task']}"
            if diff:
                raise DataError(f"{_where(doc)} differs from {_where(docs[0])} in {diff[:200]}; rerun all shards "
                                "from one config")
    return first


def _check_record(where: str, rec: Any) -> None:
    if not isinstance(rec, dict) or any(k not in rec for k in RECORD_KEYS):
        missing = [k for k in RECORD_KEYS if not isinstance(rec, dict) or k not in rec]
        raise DataError(f"{where}: a task record has no {missing[0]!r}; {RERUN}")
    if not isinstance(rec["task"], str) or not _is_int(rec["examples"]) or not isinstance(rec["outline"], list):
        raise DataError(f"{where}: task record {str(rec['task'])[:40]!r} has a malformed task, examples or outline; "
                        f"{RERUN}")
    if not isinstance(rec["metrics"], list) or not rec["metrics"] or any(m not in tm.METRICS for m in rec["metrics"]):
        raise DataError(f"{where}: task {rec['task']}: metrics {str(rec['metrics'])[:60]} are not a list of "
                        f"{', '.join(tm.METRICS)}; {RERUN}")
    outline = tm_outline(rec)
    if len(outline) != rec["examples"] or outline_sha256(outline) != rec["outline_sha256"]:
        raise DataError(f"{where}: task {rec['task']}: its outline does not match its example count or "
                        f"outline_sha256; {RERUN}")


def tm_outline(rec: dict[str, Any]) -> list[tm.Example]:
    try:
        out = [tm.Example.from_json(e) for e in rec["outline"]]
    except (TypeError, ValueError):
        out = []
    if len(out) != len(rec["outline"]) or not all(
            0 <= e.gold < len(e.chars) == len(e.nbytes) for e in out):
        raise DataError(f"task {str(rec.get('task'))[:40]}: its outline is malformed (each example: gold, choice "
                        "lengths in characters and bytes, single); rerun the shards")
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_runs(doc: dict[str, Any], examples: dict[str, list[tm.Example]]) -> dict[Key, dict[str, Any]]:
    """A shard's task runs by key: each once, on a recorded task, scoring exactly this shard's examples."""
    index, count = doc["shard"]["index"], doc["shard"]["count"]
    out: dict[Key, dict[str, Any]] = {}
    for run in doc["tasks"]["runs"]:
        if not isinstance(run, dict) or not all(isinstance(run.get(k), str) for k in ("task", "variant", "runner")):
            raise DataError(f"{_where(doc)}: a task run has no task, variant or runner name; {RERUN}")
        key: Key = (run["task"], run["variant"], run["runner"])
        where = f"{_where(doc)}: task run {'/'.join(key)}"
        if key in out:
            raise DataError(f"{where} appears twice in the file; {RERUN}")
        outline = examples.get(run["task"])
        if outline is None:
            raise DataError(f"{where} names a task the shard does not record; {RERUN}")
        want = shard_windows(list(range(len(outline))), index, count)
        have = run.get("indices")
        if not isinstance(have, list) or not all(_is_int(i) for i in have) or have != want:
            raise DataError(f"{where} holds examples {str(have)[:60]}, shard {index} of {count} of its "
                            f"{len(outline)} examples is {str(want[:8])[:60]}; {RERUN}")
        _check_fields(where, run, len(want))
        _check_scores(where, run["scores"], [outline[i] for i in want])
        out[key] = run
    return out


def _check_fields(where: str, run: dict[str, Any], n: int) -> None:
    scores = run.get("scores")
    if not _is_int(run.get("examples")) or run["examples"] != n or not isinstance(scores, list) or len(scores) != n:
        raise DataError(f"{where} says {run.get('examples')!r} examples and holds "
                        f"{len(scores) if isinstance(scores, list) else 'no'} scores for its "
                        f"{n} examples; {RERUN}")
    for k in ("seconds", "reused_examples", "forwarded_tokens"):
        value: Any = run.get(k)
        if not _is_num(value) or value < 0 or (k != "seconds" and not _is_int(value)):
            raise DataError(f"{where}: {k} is {value!r}, not a non-negative {'number' if k == 'seconds' else 'integer'}"
                            f"; {RERUN}")


def _check_scores(where: str, scores: list[Any], outline: list[tm.Example]) -> None:
    """One [log-likelihood <= 0, greedy 0/1] row of finite numbers per choice of each example."""
    for s, ex in zip(scores, outline, strict=True):
        rows = s if isinstance(s, list) else None
        ok = rows is not None and len(rows) == len(ex.chars) and all(
            isinstance(r, list) and len(r) == 2 and _is_num(r[0]) and r[0] <= 1e-6 and r[1] in (0, 1)
            and _is_num(r[1]) for r in rows)
        if not ok:
            raise DataError(f"{where}: an example's scores are not {len(ex.chars)} rows of [log-likelihood <= 0, "
                            f"greedy 0/1]; {RERUN}")


def combine(key: Key, parts: list[dict[str, Any]], n_shards: int) -> dict[str, Any]:
    """The run over every example, its scores back in example order (parts are in shard order)."""
    if len(parts) != n_shards:  # each shard holds a run at most once (check_runs)
        raise DataError(f"task run {'/'.join(key)} is in {len(parts)} of the {n_shards} shards; rerun the shards "
                        "it is missing from")
    by_index = {i: s for part in parts for i, s in zip(part["indices"], part["scores"], strict=True)}
    scores = [by_index[i] for i in range(len(by_index))]
    task, variant, runner = key
    return {"task": task, "variant": variant, "runner": runner, "examples": len(scores),
            "seconds": round(sum(p["seconds"] for p in parts), 3),
            "reused_examples": sum(p["reused_examples"] for p in parts),
            "forwarded_tokens": sum(p["forwarded_tokens"] for p in parts), "scores": scores}
