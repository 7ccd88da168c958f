"""Gate reports as text: Markdown summary and JUnit XML (one testcase per check). No rich here."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .compare import Check

NAMES = {
    "abs_dppl": "ΔPPL",
    "rel_dppl": "ΔPPL %",
    "parity_rel_dppl": "ORT vs torch ΔPPL %",
    "parity_max_abs_dlogit": "ORT vs torch max |Δlogit|",
    "parity_top1_agree": "ORT vs torch top-1 agree",
    "baseline_rel_regression": "vs baseline ΔPPL %",
    "kld_mean": "KLD mean (nats)",
    "same_top": "same top token",
    "top1_drop": "top-1 acc drop",
    "scoring": "scoring",
}
PERCENT = {"rel_dppl", "parity_rel_dppl", "baseline_rel_regression", "parity_top1_agree", "same_top", "top1_drop"}


def fmt(name: str, value: float | None) -> str:
    if value is None:
        return "—"
    if name in PERCENT:
        return f"{100 * value:.2f}%" if name in ("parity_top1_agree", "same_top") else f"{100 * value:+.4g}%"
    return f"{value:+.4g}" if name.endswith("dppl") else f"{value:.4g}"


def bound(check: Check) -> str:
    op = "≤" if check.direction == "max" else "≥"
    return f"{op} {fmt(check.name, check.threshold).lstrip('+')}"


def verdict_line(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.passed]
    if not checks:
        return "FAIL: no checks ran (configure variants, parity or a baseline)"
    if not failed:
        return f"PASS: all {len(checks)} checks passed"
    first = failed[0]
    return f"FAIL: {len(failed)} of {len(checks)} checks failed (first: {first.variant}/{first.dataset} " \
           f"{NAMES.get(first.name, first.name)})"


def markdown(doc: dict[str, Any], checks: list[Check]) -> str:
    lines = ["## evalsuite gate", "", f"**{verdict_line(checks)}**", "",
             "| model | dataset | variant | runner | PPL | tokens | tok/s |", "|---|---|---|---|---:|---:|---:|"]
    for r in doc.get("runs", []):
        lines.append(f"| {r['model']} | {r['dataset']} | {r['variant']} | {r['runner']} | {r['ppl']:.4f} | "
                     f"{r['tokens_scored']} | {r['tokens_per_s']:.0f} |")
    lines += ["", "| check | variant | dataset | value | threshold | result |", "|---|---|---|---:|---:|---|"]
    for c in checks:
        result = "PASS" if c.passed else f"**FAIL**{' — ' + c.detail if c.detail else ''}"
        lines.append(f"| {NAMES.get(c.name, c.name)} | {c.variant} | {c.dataset} | {fmt(c.name, c.value)} | "
                     f"{bound(c)} | {result} |")
    for plot in doc.get("plots", []):
        lines += ["", f"![{Path(plot).stem}]({plot})"]
    pol = doc.get("policy", {})
    lines += ["", f"Window {pol.get('window')}, stride {pol.get('stride')}, BOS {pol.get('bos')}, "
                  f"max tokens {pol.get('max_tokens')}."]
    return "\n".join(lines) + "\n"


def junit(checks: list[Check]) -> str:
    failures = sum(not c.passed for c in checks)
    suite = ET.Element("testsuite", name="evalsuite.gate", tests=str(len(checks)), failures=str(failures),
                       errors="0", skipped="0")
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"evalsuite.{c.variant}.{c.dataset}", name=c.name)
        if not c.passed:
            msg = f"{NAMES.get(c.name, c.name)} = {fmt(c.name, c.value)}, threshold {bound(c)}"
            fail = ET.SubElement(case, "failure", message=msg, type="threshold")
            fail.text = c.detail or msg
    root = ET.Element("testsuites", tests=str(len(checks)), failures=str(failures))
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
