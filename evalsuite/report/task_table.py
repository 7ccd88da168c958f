"""The accuracy-task rows of a results document, as text cells shared by the rich table (terminal.py)
and the Markdown summary (ci.py). Nothing is computed here: every number is a stored metric of the
document's `tasks` section (gate/task_results.py), only formatted; the verdict is read from the checks.
"""

from __future__ import annotations

from typing import Any

from evalsuite.gate.checks import Check
from evalsuite.gate.task_checks import TASK_LIMITS
from evalsuite.gate.task_results import find
from evalsuite.roles import Roles, of_document

TASK_COLUMNS = ("task", "variant", "runner", "examples", "acc %", "acc_norm %", "perplexity", "Δacc pts",
                "Δacc 95% CI", "flips", "choice KL", "result")
NUMERIC = frozenset(TASK_COLUMNS[3:-1])  # right-aligned
# Checks of a whole task (or of every task): they hold for each of its rows.
TASK_WIDE = frozenset({"task_results", "binding_tasks", "binding_task_data", "task_consistent"})
# Every check name of gate/task_checks.py (result_present, reused, is a task check when it names a task).
TASK_CHECKS = TASK_WIDE | {"task_parity_max_abs_dll", "task_parity_answer_agree"} | {s.name for s in TASK_LIMITS}
NONE = "—"


def task_labels(doc: dict[str, Any]) -> list[str]:
    """The labels of the document's tasks, in their recorded order."""
    section = doc.get("tasks")
    return [t["task"] for t in section.get("tasks", [])] if isinstance(section, dict) else []


def lanes(section: dict[str, Any], task: str, variants: list[str], roles: Roles) -> list[tuple[str, str]]:
    """(variant, runner) of every row of `task`: the base lanes scored, each configured variant on ORT
    (a row even when its run is missing), then any other lane the document holds."""
    present = [(r["variant"], r["runner"]) for r in section.get("runs", []) if r["task"] == task]
    base = roles.base_variant
    out = [lane for lane in ((base, roles.reference), (base, roles.base)) if lane in present]
    out += [(v, roles.base) for v in variants]
    return out + [lane for lane in present if lane not in out]


def lane_checks(checks: list[Check], task: str, variant: str, runner: str, roles: Roles) -> list[Check]:
    """The checks judging one task x lane: its own (a base lane's are named base/RUNNER, parity's base)
    and the task-wide integrity checks."""
    own = {variant} if not roles.is_base(variant) else {variant, roles.who(variant, runner)}
    return [c for c in checks if (c.dataset == task and c.variant in own)
            or (c.name in TASK_WIDE and c.variant == "*" and c.dataset in (task, "*"))]


def task_rows(doc: dict[str, Any], checks: list[Check]) -> list[dict[str, Any]]:
    """One row per task x lane: the run's stored metrics (None when the run is missing) and the verdict
    (None when no check judges the row, as in `eval`)."""
    section = doc.get("tasks")
    if not isinstance(section, dict):
        return []
    variants, roles = list(doc.get("variants") or {}), of_document(doc)
    rows = []
    for task in task_labels(doc):
        for variant, runner in lanes(section, task, variants, roles):
            run = find(section, task, variant, runner)
            mine = lane_checks(checks, task, variant, runner, roles)
            rows.append({"task": task, "variant": variant, "runner": runner,
                         "examples": run.get("examples") if run else None,
                         "metrics": (run.get("metrics") or {}) if run else None,
                         "passed": all(c.passed for c in mine) if mine else None})
    return rows


def _pct(m: dict[str, Any], key: str) -> str:
    """A share with its standard error, in percent: 45.0 ± 11.4."""
    if m.get(key) is None:
        return NONE
    err = m.get(f"{key}_stderr")
    return f"{100 * m[key]:.1f}" + (f" ± {100 * err:.1f}" if err is not None else "")


def _ppl(m: dict[str, Any]) -> str:
    if m.get("perplexity") is None:
        return NONE
    err = m.get("perplexity_stderr")
    return f"{m['perplexity']:.2f}" + (f" ± {err:.2f}" if err is not None else "")


def _paired(m: dict[str, Any]) -> list[str]:
    """Δacc (points), its paired 95 % interval, flips (count and rate), choice KL: — where not stored."""
    d, lo, hi = m.get("dacc"), m.get("dacc_ci95_low"), m.get("dacc_ci95_high")
    flips, rate, kl = m.get("flips"), m.get("flip_rate"), m.get("choice_kl_mean")
    return [f"{100 * d:+.1f}" if d is not None else NONE,
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" if lo is not None and hi is not None else NONE,
            f"{flips:.0f} ({100 * rate:.1f}%)" if flips is not None and rate is not None else NONE,
            f"{kl:.4f}" if kl is not None else NONE]


def verdict_cell(row: dict[str, Any]) -> str:
    return NONE if row["passed"] is None else "PASS" if row["passed"] else "FAIL"


def task_cells(row: dict[str, Any]) -> list[str]:
    """Text cells for TASK_COLUMNS."""
    head = [row["task"], row["variant"], row["runner"]]
    m = row["metrics"]
    if m is None:
        return [*head, *[NONE] * (len(TASK_COLUMNS) - 4), verdict_cell(row)]
    return [*head, str(row["examples"]) if row["examples"] is not None else NONE, _pct(m, "acc"),
            _pct(m, "acc_norm"), _ppl(m), *_paired(m), verdict_cell(row)]
