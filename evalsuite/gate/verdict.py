"""`compare(doc, suite) -> list[Check]`: the gate's verdict as data. Pure: no I/O, no printing.

Order: integrity first (binding.py: is this exactly the configured, complete run with plausible
values?), then each kind of task's checks (TASK_KINDS): for perplexity one `result_present` check
per configured runner and variant on every dataset, then parity and the PPL_LIMITS checks
(checks.py); for accuracy tasks task_checks.py; then one failing check per recorded scoring error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalsuite.config import Suite, dataset_labels
from evalsuite.gate.binding import integrity_checks
from evalsuite.gate.checks import Check, error_for, find_run, make_check, parity_checks, variant_checks
from evalsuite.gate.task_checks import task_checks


def perplexity_checks(doc: dict[str, Any], suite: Suite, content: dict[str, Any] | None = None) -> list[Check]:
    """The perplexity task's checks: per dataset, presence, parity and each variant's PPL_LIMITS."""
    checks: list[Check] = []
    runners, roles = suite.eval.runners, suite.roles
    base_runner = roles.comparator(runners)
    for ds in dataset_labels(suite):
        checks += presence_checks(doc, suite, ds)
        if roles.parity(runners):
            checks += parity_checks(doc, suite, ds)
        for v in suite.variants:
            checks += variant_checks(doc, v.name, ds, base_runner, suite.thresholds.limits(v.name, ds), roles)
    return checks


TaskChecks = Callable[[dict[str, Any], Suite, dict[str, Any] | None], list[Check]]
# Each kind of task's checks, in report order: perplexity (datasets), then accuracy tasks
# (task_checks.py). A new kind of task adds its checks function here.
TASK_KINDS: tuple[TaskChecks, ...] = (perplexity_checks, task_checks)


def compare(doc: dict[str, Any], suite: Suite, content: dict[str, Any] | None = None) -> list[Check]:
    """Every check of `doc` against `suite`. `content`: identities of what the suite names *now*
    (see identity.content_identity), compared with the document's when gating a stored results file."""
    checks: list[Check] = integrity_checks(doc, suite, content)
    for kind in TASK_KINDS:
        checks += kind(doc, suite, content)
    for err in doc.get("errors", []):
        checks.append(make_check("scoring", err["variant"], err.get("dataset") or "*", None, 0.0, "max",
                                 detail=f"error: {err['message']}"))
    return checks


def presence_checks(doc: dict[str, Any], suite: Suite, ds: str) -> list[Check]:
    """One `result_present` check per configured runner (base) and variant on `ds`, whatever the
    thresholds say: a configured pair can never end up with zero checks."""
    out = []
    for variant, runner in suite.roles.lanes(suite.eval.runners):
        run = find_run(doc, variant, runner, ds)
        who = suite.roles.who(variant, runner)
        detail = "" if run else (error_for(doc, variant, ds) or f"no {runner} result for {who} on {ds}")
        out.append(Check("result_present", who, ds, 1.0 if run else None, 1.0, "min", run is not None,
                         detail=detail))
    return out


def verdict(checks: list[Check]) -> bool:
    """True only when there is at least one check and every check passed."""
    return bool(checks) and all(c.passed for c in checks)
