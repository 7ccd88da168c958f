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


def base_runner(section: dict[str, Any], task: str) -> str | None:
    """The lane variants are compared with: the ORT base, else the torch reference."""
    for runner in ("ort", "torch"):
        if find(section, task, "base", runner) is not None:
            return runner
    return None


def derive(section: dict[str, Any]) -> tuple[dict[Key, dict[str, float]], dict[str, dict[str, float]]]:
    """Every run's metrics (paired ones for variants) and every task's ORT-vs-torch parity, computed
    from the stored scores. Complete (unsharded) documents only: each run covers every example."""
    shapes = outlines(section)
    names = {t["task"]: t["metrics"] for t in section.get("tasks", [])}
    metrics: dict[Key, dict[str, float]] = {}
    parity: dict[str, dict[str, float]] = {}
    for task, outline in shapes.items():
        base_name = base_runner(section, task)
        base = find(section, task, "base", base_name) if base_name else None
        for run in section.get("runs", []):
            if run["task"] != task or len(run["scores"]) != len(outline) or not outline:
                continue
            scores = lane_scores(run)
            m = tm.solo(names[task], outline, scores)
            if run["variant"] != "base" and base is not None and len(base["scores"]) == len(outline):
                m |= tm.paired(names[task], outline, lane_scores(base), scores)
            metrics[(task, run["variant"], run["runner"])] = m
        ref, ort = find(section, task, "base", "torch"), find(section, task, "base", "ort")
        if ref is not None and ort is not None and len(ref["scores"]) == len(ort["scores"]) == len(outline):
            parity[task] = tm.parity(outline, lane_scores(ref), lane_scores(ort))
    return metrics, parity


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
