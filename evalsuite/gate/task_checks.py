"""The gate's checks on accuracy tasks, as data. Pure: `task_checks(doc, suite, content)`.

Integrity first: the document's tasks are the configured ones (name, limit, prompt version), their
data and requests are what the suite names now (`content`, when gating a stored file), every run
covers every example with one score row per choice, and every stored number equals what its scores
give (task_results.derive). Then one `result_present` per task x lane, ORT-vs-torch parity, and the
variant limits of TASK_LIMITS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from evalsuite.config import BaselineCfg, Suite
from evalsuite.gate.checks import Check, make_check
from evalsuite.gate.task_results import derive, find, lane_scores, outline_sha256, outlines, same_numbers
from evalsuite.roles import of_document
from evalsuite.task_config import TaskLimits, task_limits


@dataclass(frozen=True)
class LimitSpec:
    """A variant limit: check `name` compares `value` (from the paired metrics) with `limit`."""

    name: str
    limit: str  # TaskLimits field
    metric: str  # the paired metric's stem: drop = -(d{metric}); or a paired key as is
    drop: bool  # True: base - variant of a higher-is-better metric, read through the interval


TASK_LIMITS = (
    LimitSpec("task_acc_drop", "max_acc_drop", "acc", True),
    LimitSpec("task_acc_norm_drop", "max_acc_norm_drop", "acc_norm", True),
    LimitSpec("task_flip_rate", "max_flip_rate", "flip_rate", False),
)


def _yes(name: str, who: str, task: str, ok: bool, detail: str = "") -> Check:
    return Check(name, who, task, 1.0 if ok else None, 1.0, "min", ok, detail=detail if not ok else "")


def task_checks(doc: dict[str, Any], suite: Suite, content: dict[str, Any] | None = None) -> list[Check]:
    if not suite.tasks:
        return []
    section = doc.get("tasks")
    if not isinstance(section, dict):
        return [_yes("task_results", "*", "*", False, "the document holds no task results; score the tasks")]
    roles = suite.roles
    checks = integrity(section, suite, content)
    metrics, parity = derive(section, roles)
    for cfg in suite.tasks:
        checks += presence(section, suite, cfg.label)
        if roles.parity(suite.eval.runners):
            checks += parity_checks(parity.get(cfg.label), suite, cfg.label)
        base = roles.comparator(suite.eval.runners)
        for v in suite.variants:
            paired = (metrics.get((cfg.label, v.name, roles.base))
                      if find(section, cfg.label, roles.base_variant, base) else None)
            checks += limit_checks(paired, task_limits(suite.task_thresholds, cfg, v.name), v.name, cfg.label,
                                   task_metric_names(section, cfg.label))
    return checks


def integrity(section: dict[str, Any], suite: Suite, content: dict[str, Any] | None) -> list[Check]:
    records = {t["task"]: t for t in section.get("tasks", [])}
    out = []
    for cfg in suite.tasks:
        rec = records.get(cfg.label)
        want = {"name": cfg.name, "limit": cfg.limit}
        diff = [k for k, v in want.items() if rec is not None and rec.get(k) != v]
        detail = ("task not scored" if rec is None else
                  f"scored with {diff[0]} = {rec.get(diff[0])!r}, the suite asks {want[diff[0]]!r}" if diff else "")
        out.append(_yes("binding_tasks", "*", cfg.label, rec is not None and not diff, detail))
        if rec is not None and content is not None:
            out.append(data_binding(rec, (content.get("tasks") or {}).get(cfg.label), cfg.label))
    out.append(consistency(section, suite))
    return out


def data_binding(rec: dict[str, Any], now: dict[str, Any] | None, task: str) -> Check:
    keys = ("data_sha256", "requests_sha256", "outline_sha256", "prompt_version")
    if now is None or "error" in now:
        return _yes("binding_task_data", "*", task, False,
                    f"the task's data cannot be read now: {(now or {}).get('error', 'not loaded')}")
    diff = [k for k in keys if rec.get(k) != now.get(k)]
    return _yes("binding_task_data", "*", task, not diff,
                f"{diff[0]} differs: results scored other data, prompts or examples" if diff else "")


def consistency(section: dict[str, Any], suite: Suite) -> Check:
    """Every run covers every example of its task, one [ll, greedy] row per choice, plausible values,
    and every stored metric equals its re-derivation."""
    problem = _shape_problem(section)
    if problem is None:
        metrics, parity = derive(section, suite.roles)
        for run in section.get("runs", []):
            got = metrics.get((run["task"], run["variant"], run["runner"]), {})
            problem = problem or _named(run, same_numbers(got, run.get("metrics") or {}))
        for p in section.get("parity", []):
            problem = problem or _named({"task": p.get("task"), "variant": "parity", "runner": ""},
                                        same_numbers(parity.get(p.get("task"), {}),
                                                     {k: v for k, v in p.items() if k != "task"}))
    return _yes("task_consistent", "*", "*", problem is None, f"{problem}; regenerate the results")


def _named(run: dict[str, Any], problem: str | None) -> str | None:
    return None if problem is None else f"{run['task']} {run['variant']}/{run['runner']}: {problem}"


def _shape_problem(section: dict[str, Any]) -> str | None:
    shapes = outlines(section)
    for t in section.get("tasks", []):
        if outline_sha256(shapes[t["task"]]) != t.get("outline_sha256") or len(shapes[t["task"]]) != t["examples"]:
            return f"task {t['task']}: its example outline does not match its hash or count"
    for run in section.get("runs", []):
        outline, who = shapes.get(run["task"]), f"{run['task']} {run['variant']}/{run['runner']}"
        if outline is None:
            return f"run {who} names a task that is not recorded"
        if len(run["scores"]) != len(outline):
            return f"{who} holds {len(run['scores'])} of {len(outline)} examples"
        for ex, s in zip(outline, lane_scores(run), strict=True):
            if s.shape[0] != len(ex.chars):
                return f"{who}: {s.shape[0]} scores for {len(ex.chars)} choices"
            if not all(math.isfinite(v) and v <= 1e-6 for v in s[:, 0]) or not set(s[:, 1].tolist()) <= {0.0, 1.0}:
                return f"{who}: implausible scores (log-probability > 0, non-finite, or a greedy flag not 0/1)"
    return None


def presence(section: dict[str, Any], suite: Suite, task: str) -> list[Check]:
    out = []
    for variant, runner in suite.roles.lanes(suite.eval.runners):
        who = suite.roles.who(variant, runner)
        ok = find(section, task, variant, runner) is not None
        out.append(_yes("result_present", who, task, ok, f"no {runner} result for {who} on task {task}"))
    return out


def parity_checks(stats: dict[str, float] | None, suite: Suite, task: str) -> list[Check]:
    p, out, name = suite.task_parity, [], suite.roles.base_variant
    detail = "" if stats else "torch or ORT base task run missing"
    if p.max_abs_dll is not None:
        out.append(make_check("task_parity_max_abs_dll", name, task, stats["max_abs_dll"] if stats else None,
                              p.max_abs_dll, "max", detail=detail))
    if p.min_answer_agree is not None:
        out.append(make_check("task_parity_answer_agree", name, task, stats["answer_agree"] if stats else None,
                              p.min_answer_agree, "min", detail=detail))
    return out


def task_metric_names(section: dict[str, Any], task: str) -> set[str] | None:
    """The metrics the task's record declares; None when there is no record (nothing is skipped)."""
    rec = next((t for t in section.get("tasks", []) if t.get("task") == task), None)
    return set(rec.get("metrics") or []) if rec else None


def limit_checks(paired: dict[str, float] | None, limits: TaskLimits, variant: str, task: str,
                 defined: set[str] | None = None) -> list[Check]:
    """The variant limits of TASK_LIMITS; a limit on a metric the task does not define (winogrande's
    acc_norm) is not applicable, any other missing input fails."""
    out = []
    for spec in TASK_LIMITS:
        threshold = getattr(limits, spec.limit)
        if threshold is None or (spec.drop and defined is not None and spec.metric not in defined):
            continue
        key = f"d{spec.metric}" if spec.drop else spec.metric
        value, detail = _value(paired if paired is None or key in paired else None, spec, limits.interval or "point")
        out.append(make_check(spec.name, variant, task, value, threshold, "max", detail=detail or
                              ("" if paired else "no paired result for this variant/task")))
    return out


def _value(paired: dict[str, float] | None, spec: LimitSpec, interval: Literal["point", "lower", "upper"]
           ) -> tuple[float | None, str]:
    if paired is None:
        return None, ""
    if not spec.drop:
        return paired[spec.metric], ""
    point = -paired[f"d{spec.metric}"]
    if interval == "point":
        return point, ""
    bound = paired.get(f"d{spec.metric}_ci95_{'high' if interval == 'lower' else 'low'}")
    if bound is None:
        return None, f"no paired interval for interval = '{interval}'"
    return -bound, f"{interval} bound of the paired 95% CI (estimate {point:+.4g})"


def task_baseline_checks(doc: dict[str, Any], baseline: dict[str, Any], cfg: BaselineCfg, name: str) -> list[Check]:
    """Each task lane's acc vs the stored baseline's lane on the same examples and prompts
    (requests sha256): it may fall by at most `max_acc_regression`."""
    ours, theirs = doc.get("tasks"), baseline.get("tasks")
    if not isinstance(ours, dict):
        return []
    theirs = theirs if isinstance(theirs, dict) else {}
    mine = {t["task"]: t.get("requests_sha256") for t in ours.get("tasks", [])}
    stored = {t["task"]: t.get("requests_sha256") for t in theirs.get("tasks", [])}
    out, roles = [], of_document(doc)
    for run in ours.get("runs", []):
        who = roles.who(run["variant"], run["runner"])
        match = find(theirs, run["task"], run["variant"], run["runner"])
        acc = (run.get("metrics") or {}).get("acc")
        ref = (match.get("metrics") or {}).get("acc") if match is not None else None
        if match is None:
            value, detail = None, f"no entry for this task lane in baseline {name}"
        elif stored.get(run["task"]) != mine.get(run["task"]):
            value, detail = None, f"baseline {name} scored other examples or prompts"
        else:
            value = ref - acc if isinstance(ref, (int, float)) and isinstance(acc, (int, float)) else None
            detail = f"baseline {name}"
        out.append(make_check("task_baseline_acc_drop", who, run["task"], value, cfg.max_acc_regression, "max",
                              ref if isinstance(ref, (int, float)) else None, detail))
    return out
