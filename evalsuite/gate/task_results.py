"""The `tasks` section of a results document, and the re-derivation of every task number from it.

A document keeps, per task, what was scored (`tasks`: name, limit, split, data and requests sha256,
and each example's outline: gold, choice lengths), and per lane the raw per-request scores
(`runs[].scores`: per example, [log-likelihood, is_greedy] per choice). Every metric, paired
difference and parity figure is computed from those by `derive`, both when the document is written
and when the gate reads it back, so an edited number never passes as measured.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalsuite.roles import Roles
from evalsuite.scoring import task_metrics as tm

TASKS_SCHEMA = 1
Key = tuple[str, str, str]  # (task, variant, runner)


def outline_sha256(outline: Sequence[tm.Example]) -> str:
    body = json.dumps([e.to_json() for e in outline], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def task_record(label: str, name: str, metrics: Sequence[str], limit: int | None, split: str, origin: str,
                note: str, data_sha256: str, requests_sha256: str, prompt_version: int,
                outline: Sequence[tm.Example]) -> dict[str, Any]:
    return {"task": label, "name": name, "metrics": list(metrics), "limit": limit, "examples": len(outline),
            "split": split, "origin": origin, "note": note, "data_sha256": data_sha256,
            "requests_sha256": requests_sha256, "prompt_version": prompt_version,
            "outline_sha256": outline_sha256(outline), "outline": [e.to_json() for e in outline]}


def run_record(task: str, variant: str, runner: str, scores: dict[int, np.ndarray], seconds: float,
               reused: int, forwarded: int, sharded: bool) -> dict[str, Any]:
    indices = sorted(scores)
    out: dict[str, Any] = {"task": task, "variant": variant, "runner": runner, "examples": len(indices),
                           "seconds": round(seconds, 3), "reused_examples": reused, "forwarded_tokens": forwarded,
                           "scores": [scores[i].tolist() for i in indices]}
    if sharded:
        out["indices"] = indices
    return out


def outlines(section: dict[str, Any]) -> dict[str, list[tm.Example]]:
    return {t["task"]: [tm.Example.from_json(e) for e in t["outline"]] for t in section.get("tasks", [])}


def lane_scores(run: dict[str, Any]) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in run["scores"]]


def find(section: dict[str, Any], task: str, variant: str, runner: str) -> dict[str, Any] | None:
    for run in section.get("runs", []):
        if (run["task"], run["variant"], run["runner"]) == (task, variant, runner):
            return run
    return None


def base_runner(section: dict[str, Any], task: str, roles: Roles) -> str | None:
    """The lane variants are compared with: the ORT base, else the torch reference."""
    for runner in (roles.base, roles.reference):
        if find(section, task, roles.base_variant, runner) is not None:
            return runner
    return None


def derive(section: dict[str, Any], roles: Roles | None = None
           ) -> tuple[dict[Key, dict[str, float]], dict[str, dict[str, float]]]:
    """Every run's metrics (paired ones for variants) and every task's ORT-vs-torch parity, computed
    from the stored scores. Complete (unsharded) documents only: each run covers every example.
    `roles`: the document's (roles.of_document); default today's."""
    roles = roles or Roles()
    shapes = outlines(section)
    names = {t["task"]: t["metrics"] for t in section.get("tasks", [])}
    metrics: dict[Key, dict[str, float]] = {}
    parity: dict[str, dict[str, float]] = {}
    for task, outline in shapes.items():
        base_name = base_runner(section, task, roles)
        base = fitted(find(section, task, roles.base_variant, base_name) if base_name else None, outline)
        for run in section.get("runs", []):
            scores = fitted(run, outline) if run["task"] == task else None
            if scores is None:
                continue
            m = tm.solo(names[task], outline, scores)
            if not roles.is_base(run["variant"]) and base is not None:
                m |= tm.paired(names[task], outline, base, scores)
            metrics[(task, run["variant"], run["runner"])] = m
        ref, ort = (fitted(find(section, task, roles.base_variant, r), outline) for r in (roles.reference, roles.base))
        if ref is not None and ort is not None:
            parity[task] = tm.parity(outline, ref, ort)
    return metrics, parity


def fitted(run: dict[str, Any] | None, outline: Sequence[tm.Example]) -> list[np.ndarray] | None:
    """The run's scores when it covers every example with one row per choice, else None (no metrics:
    the task checks name the shape problem)."""
    if run is None or not outline or len(run["scores"]) != len(outline):
        return None
    scores = lane_scores(run)
    return scores if all(s.shape[0] == len(e.chars) for s, e in zip(scores, outline, strict=True)) else None


def with_metrics(section: dict[str, Any]) -> dict[str, Any]:
    """The section with each run's `metrics` and the `parity` list filled in by `derive`."""
    metrics, parity = derive(section)
    runs = [{**r, "metrics": metrics.get((r["task"], r["variant"], r["runner"]), {})} for r in section["runs"]]
    return {**section, "runs": runs, "parity": [{"task": t, **p} for t, p in parity.items()]}


def same_numbers(a: dict[str, float], b: dict[str, Any], rel: float = 1e-9) -> str | None:
    """None when `b` holds exactly `a`'s metrics (up to float formatting), else the first difference.
    The stored values went through JSON (shortest repr round-trips exactly), so 1e-9 is generous."""
    if set(a) != set(b):
        return f"metrics {sorted(set(a) ^ set(b))[:3]} differ in presence"
    for k, v in a.items():
        w = b[k]
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isclose(v, w, rel_tol=rel,
                                                                                        abs_tol=1e-12):
            return f"{k} is {w!r}, the scores give {v!r}"
    return None


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


RECORD_TYPES: dict[str, tuple[type, ...]] = {"task": (str,), "name": (str,), "metrics": (list,),
                                              "limit": (int, type(None)), "examples": (int,),
                                              "outline_sha256": (str,), "outline": (list,)}
RUN_TYPES: dict[str, tuple[type, ...]] = {"task": (str,), "variant": (str,), "runner": (str,), "scores": (list,),
                                          "seconds": (int, float)}


def _typed(item: Any, types: dict[str, tuple[type, ...]], where: str) -> str | None:
    if not isinstance(item, dict):
        return f"{where} is not an object"
    for key, want in types.items():
        value = item.get(key)
        if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
            return f"{where}.{key} is missing or {str(value)[:40]!r}, not {want[0].__name__}"
    return None


def _outline_ok(items: list[Any]) -> bool:
    try:
        return all(0 <= e.gold < len(e.chars) == len(e.nbytes) for e in map(tm.Example.from_json, items))
    except (TypeError, ValueError):
        return False


def section_problem(section: Any) -> str | None:
    """None when the `tasks` section has every field `derive` and the task checks read, with its type
    (values are judged by the checks: a dropped example fails `task_consistent`), else the first problem."""
    if not isinstance(section, dict) or section.get("schema") != TASKS_SCHEMA:
        return f"'tasks' is not a schema {TASKS_SCHEMA} tasks section"
    for field in ("tasks", "runs", "parity"):
        if not isinstance(section.get(field, []), list):
            return f"tasks.{field} is not a list"
    for i, rec in enumerate(section.get("tasks", [])):
        problem = _typed(rec, RECORD_TYPES, f"tasks.tasks[{i}]")
        if problem is None and not all(isinstance(m, str) and m in tm.METRICS for m in rec["metrics"]):
            problem = f"tasks.tasks[{i}].metrics names a metric outside {', '.join(tm.METRICS)}"
        if problem is None and not _outline_ok(rec["outline"]):
            problem = f"tasks.tasks[{i}].outline is not a list of [gold, chars, bytes, single]"
        if problem:
            return problem
    for i, run in enumerate(section.get("runs", [])):
        problem = _typed(run, RUN_TYPES, f"tasks.runs[{i}]")
        if problem:  # not an object, or a field of the wrong type: nothing else can be read
            return problem
        rows = [r for s in run["scores"] for r in (s if isinstance(s, list) else [None])]
        if problem is None and not all(isinstance(r, list) and len(r) == 2 and all(map(_num, r)) for r in rows):
            problem = f"tasks.runs[{i}].scores is not, per example, a list of [log-likelihood, greedy] numbers"
        metrics = run.get("metrics", {})
        if problem is None and not (isinstance(metrics, dict) and all(map(_num, metrics.values()))):
            problem = f"tasks.runs[{i}].metrics holds a value that is not a number"
        if problem:
            return problem
    return next((f"tasks.parity[{i}] is not an object naming its task" for i, p in
                 enumerate(section.get("parity", [])) if not isinstance(p, dict) or not isinstance(p.get("task"), str)),
                None)
