"""JUnit XML of a gate (Ant JUnit schema): one testcase per check, errors told apart from failures.

- A threshold miss (or a failed integrity check) is a `<failure>`: the model was judged and lost.
- A check that could not be judged because scoring crashed or a result is missing is an `<error>`:
  CI tools then show a broken run, not a quality regression.
- Counts are computed from the cases. The Ant schema allows no properties inside a testcase, so each
  check's value, threshold and margin are suite properties named `<classname>.<check>.<field>`; the
  failure/error message repeats them.
"""

from __future__ import annotations

import datetime as dt
import socket
import xml.etree.ElementTree as ET
from typing import Any

from evalsuite.gate.checks import Check
from evalsuite.report.ci import BOOLEAN, NAMES, bound, fmt

ERROR_CHECKS = {"scoring", "result_present"}


def is_error(check: Check) -> bool:
    """True when the check failed because it had nothing to judge (crash, missing result)."""
    if check.passed:
        return False
    if check.name in ERROR_CHECKS or check.detail.startswith("error:"):
        return True
    return check.value is None and check.name not in BOOLEAN


def classname(check: Check) -> str:
    return f"{check.variant}.{check.dataset}".replace(":", "_")


def check_seconds(check: Check, doc: dict[str, Any]) -> float:
    """Seconds spent scoring what the check judges (its variant's runs on its dataset); 0 when none."""
    variant, _, runner = check.variant.partition("/")  # baseline checks name "base/torch"
    runs = [r for r in doc.get("runs", []) if r.get("variant") == variant and r.get("dataset") == check.dataset
            and runner in ("", r.get("runner"))]
    return round(sum(float(r.get("seconds") or 0.0) for r in runs), 3)


def _properties(suite: ET.Element, checks: list[Check], doc: dict[str, Any]) -> None:
    props = ET.SubElement(suite, "properties")

    def add(name: str, value: Any) -> None:
        ET.SubElement(props, "property", name=name, value="" if value is None else str(value))

    pol = doc.get("policy") or {}
    for key in ("window", "stride", "bos", "max_tokens"):
        add(f"policy.{key}", pol.get(key))
    for c in checks:
        stem = f"{classname(c)}.{c.name}"
        add(f"{stem}.value", c.value)
        add(f"{stem}.threshold", c.threshold)
        add(f"{stem}.direction", c.direction)
        add(f"{stem}.margin", c.margin)


def junit(checks: list[Check], doc: dict[str, Any] | None = None, hostname: str | None = None,
          timestamp: dt.datetime | None = None) -> str:
    doc = doc or {}
    errors = [c for c in checks if is_error(c)]
    failures = [c for c in checks if not c.passed and not is_error(c)]
    times = {id(c): check_seconds(c, doc) for c in checks}
    stamp = (timestamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    attrs = {"name": "evalsuite.gate", "tests": str(len(checks)), "failures": str(len(failures)),
             "errors": str(len(errors)), "skipped": "0", "time": f"{sum(times.values()):.3f}",
             "timestamp": stamp, "hostname": hostname or socket.gethostname() or "localhost"}
    suite = ET.Element("testsuite", attrs)  # the root: the Ant schema gives <testsuites> no attributes
    _properties(suite, checks, doc)
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=classname(c), name=c.name, time=f"{times[id(c)]:.3f}")
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
