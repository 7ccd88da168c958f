"""JUnit XML of a gate (Ant JUnit schema): one testcase per check, errors told apart from failures.

- A threshold miss (or a failed integrity check) is a `<failure>`: the model was judged and lost.
- A check that could not be judged because scoring crashed or a result is missing is an `<error>`:
  CI tools then show a broken run, not a quality regression.
- Counts are computed from the cases. The Ant schema allows no properties inside a testcase, so each
  check's value, threshold and margin are suite properties named `<classname>.<check>.<field>`; the
  failure/error message repeats them.
- Cases group by classname VARIANT.DATASET; an accuracy task's checks by VARIANT.task.TASK (a
  `result_present` on a label that is both a task's and a dataset's stays VARIANT.DATASET).
"""

from __future__ import annotations

import datetime as dt
import socket
import xml.etree.ElementTree as ET
from typing import Any

from evalsuite.gate.checks import Check
from evalsuite.report.ci import BOOLEAN, NAMES, bound, fmt
from evalsuite.report.task_table import TASK_CHECKS, task_labels

ERROR_CHECKS = {"scoring", "result_present"}


def is_error(check: Check) -> bool:
    """True when the check failed because it had nothing to judge (crash, missing result)."""
    if check.passed:
        return False
    if check.name in ERROR_CHECKS or check.detail.startswith("error:"):
        return True
    return check.value is None and check.name not in BOOLEAN


def task_only(doc: dict[str, Any]) -> frozenset[str]:
    """Labels naming a task of the document and no dataset of its runs (a `result_present` on one of
    them judges a task)."""
    return frozenset(task_labels(doc)) - {r.get("dataset") for r in doc.get("runs", [])}


def is_task(check: Check, tasks: frozenset[str]) -> bool:
    return check.name in TASK_CHECKS or (check.name == "result_present" and check.dataset in tasks)


def classname(check: Check, tasks: frozenset[str] = frozenset()) -> str:
    """VARIANT.DATASET; a task's checks group as VARIANT.task.TASK (`tasks`: task_only(doc))."""
    where = f"task.{check.dataset}" if is_task(check, tasks) else check.dataset
    return f"{check.variant}.{where}".replace(":", "_")


def check_seconds(check: Check, doc: dict[str, Any], tasks: frozenset[str] = frozenset()) -> float:
    """Seconds spent scoring what the check judges (its variant's runs on its dataset or task); 0 when none."""
    variant, _, runner = check.variant.partition("/")  # baseline checks name "base/torch"
    if is_task(check, tasks):
        section = doc.get("tasks")
        pool = [r for r in section.get("runs", []) if r.get("task") == check.dataset] \
            if isinstance(section, dict) else []
    else:
        pool = [r for r in doc.get("runs", []) if r.get("dataset") == check.dataset]
    runs = [r for r in pool if r.get("variant") == variant and runner in ("", r.get("runner"))]
    seconds = [r.get("seconds") for r in runs]
    return round(sum(float(x) for x in seconds if isinstance(x, (int, float)) and not isinstance(x, bool)), 3)


def _properties(suite: ET.Element, checks: list[Check], doc: dict[str, Any]) -> None:
    props = ET.SubElement(suite, "properties")

    def add(name: str, value: Any) -> None:
        ET.SubElement(props, "property", name=name, value="" if value is None else str(value))

    pol = doc.get("policy") or {}
    for key in ("window", "stride", "bos", "max_tokens"):
        add(f"policy.{key}", pol.get(key))
    tasks = task_only(doc)
    for c in checks:
        stem = f"{classname(c, tasks)}.{c.name}"
        add(f"{stem}.value", c.value)
        add(f"{stem}.threshold", c.threshold)
        add(f"{stem}.direction", c.direction)
        add(f"{stem}.margin", c.margin)


def junit(checks: list[Check], doc: dict[str, Any] | None = None, hostname: str | None = None,
          timestamp: dt.datetime | None = None) -> str:
    doc = doc or {}
    errors = [c for c in checks if is_error(c)]
    failures = [c for c in checks if not c.passed and not is_error(c)]
    tasks = task_only(doc)
    times = {id(c): check_seconds(c, doc, tasks) for c in checks}
    stamp = (timestamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    attrs = {"name": "evalsuite.gate", "tests": str(len(checks)), "failures": str(len(failures)),
             "errors": str(len(errors)), "skipped": "0", "time": f"{sum(times.values()):.3f}",
             "timestamp": stamp, "hostname": hostname or socket.gethostname() or "localhost"}
    suite = ET.Element("testsuite", attrs)  # the root: the Ant schema gives <testsuites> no attributes
    _properties(suite, checks, doc)
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=classname(c, tasks), name=c.name, time=f"{times[id(c)]:.3f}")
        if c.passed:
            continue
        label = NAMES.get(c.name, c.name)
        msg = f"{label} = {fmt(c.name, c.value)}, threshold {bound(c)}" + (f": {c.detail}" if c.detail else "")
        tag, kind = ("error", "scoring" if c.name != "result_present" else "missing") if is_error(c) \
            else ("failure", "threshold" if c.name not in BOOLEAN else "integrity")
        node = ET.SubElement(case, tag, message=msg, type=kind)
        node.text = c.detail or msg
    ET.SubElement(suite, "system-out").text = ""
    ET.SubElement(suite, "system-err").text = ""
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
