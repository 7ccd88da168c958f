"""Reports of accuracy tasks on a synthetic document: its `tasks` section built from tiny per-request
scores (gate/task_results.py derives every metric), judged by the real gate, then rendered as the
Markdown "Accuracy tasks" table (markdown-it-py), the rich table and JUnit XML (Ant schema)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import junitparser
import numpy as np
import pytest
import xmlschema
from markdown_it import MarkdownIt
from rich.console import Console
from test_ci_report import XSD, tables
from test_gate import GOOD, SUITE, binding

from evalsuite.config import load_suite
from evalsuite.gate.checks import Check
from evalsuite.gate.task_results import run_record, task_record, with_metrics
from evalsuite.gate.verdict import compare
from evalsuite.report import ci, terminal
from evalsuite.report.junit import junit
from evalsuite.report.task_table import TASK_CHECKS, TASK_COLUMNS
from evalsuite.scoring import task_metrics as tm

TASK_SUITE = SUITE + """
[[tasks]]
name = "arc_easy"
limit = 4

[[tasks]]
name = "lambada_openai"
limit = 4

[task_thresholds]
max_acc_drop = 0.10
max_flip_rate = 0.30
"""
ARC = [tm.Example(g, (5, 7, 9, 11), (5, 7, 9, 11), False) for g in (0, 1, 2, 3)]
LAMBADA = [tm.Example(0, (6,), (6,), True) for _ in range(4)]


def choose(picks: list[int], n_choices: int = 4, noise: float = 0.0) -> dict[int, np.ndarray]:
    """Per example, [ll, greedy] per choice with the highest log-likelihood on `picks[i]`."""
    out = {}
    for i, pick in enumerate(picks):
        ll = -2.0 - 0.5 * np.arange(n_choices, dtype=np.float64)
        ll[pick] = -1.0 + noise
        out[i] = np.stack([ll, np.zeros(n_choices)], axis=1)
    return out


def greedy(flags: list[int], noise: float = 0.0) -> dict[int, np.ndarray]:
    """LAMBADA lanes: one continuation per example, greedy or not."""
    return {i: np.array([[-1.5 - i + noise, float(f)]]) for i, f in enumerate(flags)}


def section() -> dict[str, Any]:
    """Base right on every ARC example, the rtn variant wrong on the last (-25 points, one flip);
    on LAMBADA base and variant agree (3 of 4 greedy). ORT base = torch up to 1e-6 nats."""
    tasks = [task_record("arc_easy", "arc_easy", ["acc", "acc_norm"], 4, "validation", "synthetic", "",
                         "d" * 64, "r" * 64, 1, ARC),
             task_record("lambada_openai", "lambada_openai", ["acc", "perplexity"], 4, "test", "synthetic", "",
                         "e" * 64, "s" * 64, 1, LAMBADA)]
    lanes = [("arc_easy", "base", "torch", choose([0, 1, 2, 3])),
             ("arc_easy", "base", "ort", choose([0, 1, 2, 3], noise=1e-6)),
             ("arc_easy", "rtn", "ort", choose([0, 1, 2, 0])),
             ("lambada_openai", "base", "torch", greedy([1, 1, 1, 0])),
             ("lambada_openai", "base", "ort", greedy([1, 1, 1, 0], noise=1e-6)),
             ("lambada_openai", "rtn", "ort", greedy([1, 1, 1, 0], noise=-0.2))]
    runs = [run_record(t, v, r, s, 2.5, 0, 40, False) for t, v, r, s in lanes]
    return with_metrics({"schema": 1, "tasks": tasks, "runs": runs})


def gated(tmp_path: Path) -> tuple[dict[str, Any], list[Check]]:
    (tmp_path / "s.toml").write_text(TASK_SUITE)
    doc = {**copy.deepcopy(GOOD), "binding": binding(TASK_SUITE), "tasks": section()}
    return doc, compare(doc, load_suite(tmp_path / "s.toml"))


def metrics(doc: dict[str, Any], task: str, variant: str) -> dict[str, float]:
    return next(r["metrics"] for r in doc["tasks"]["runs"] if (r["task"], r["variant"], r["runner"])
                == (task, variant, "ort"))


def accuracy_table(md: str) -> tuple[list[str], list[list[str]]]:
    """The Accuracy tasks table's cells as read (markdown-it's inline source, backslash escapes undone)."""
    def text(cells: list[str]) -> list[str]:
        return [re.sub(r"\\(.)", r"\1", c) for c in cells]

    found = [(text(h), [text(r) for r in b]) for h, b in tables(md)]
    found = [t for t in found if t[0] == list(TASK_COLUMNS)]
    assert len(found) == 1, [t[0] for t in tables(md)]
    return found[0]


def test_task_checks_are_labelled_and_judge_the_document(tmp_path: Path) -> None:
    _, checks = gated(tmp_path)
    task = [c for c in checks if c.name in TASK_CHECKS]
    assert {c.name for c in task} >= {"binding_tasks", "task_consistent", "task_parity_max_abs_dll",
                                      "task_parity_answer_agree", "task_acc_drop", "task_flip_rate"}
    assert TASK_CHECKS.issubset(ci.NAMES) and all(not ci.NAMES[n].startswith("task_") for n in TASK_CHECKS)
    integrity = {"task_results", "binding_tasks", "binding_task_data", "task_consistent"}
    assert integrity.issubset(ci.BOOLEAN)
    assert (TASK_CHECKS - integrity - {"task_parity_max_abs_dll"}).issubset(ci.PERCENT)
    failed = {(c.name, c.variant, c.dataset) for c in checks if not c.passed}
    assert failed == {("task_acc_drop", "rtn", "arc_easy")}  # 25 points > 10; 1 flip in 4 <= 30 %
    drop = next(c for c in checks if c.name == "task_acc_drop" and c.dataset == "arc_easy")
    flips = next(c for c in checks if c.name == "task_flip_rate" and c.dataset == "arc_easy")
    assert (ci.fmt(drop.name, drop.value), ci.bound(drop)) == ("+25%", "≤ 10%")
    assert (ci.fmt(flips.name, flips.value), ci.bound(flips)) == ("25.00%", "≤ 30.00%")
    assert ci.fmt("binding_tasks", 1.0) == "yes" and ci.bound(next(c for c in task if c.name == "task_consistent")) \
        == "yes"


def test_markdown_accuracy_table(tmp_path: Path) -> None:
    doc, checks = gated(tmp_path)
    md = ci.markdown(doc, checks)
    assert "### Accuracy tasks" in md
    header, body = accuracy_table(md)
    assert all(len(r) == len(header) for r in body)
    assert [(r[0], r[1], r[2]) for r in body] == [(t, v, r) for t in ("arc_easy", "lambada_openai")
                                                  for v, r in (("base", "torch"), ("base", "ort"), ("rtn", "ort"))]
    col = {name: i for i, name in enumerate(header)}
    arc, lam = body[2], body[5]
    m = metrics(doc, "arc_easy", "rtn")
    assert arc[col["examples"]] == "4"
    assert arc[col["acc %"]] == f"75.0 ± {100 * m['acc_stderr']:.1f}"
    assert arc[col["Δacc pts"]] == "-25.0"
    assert arc[col["Δacc 95% CI"]] == f"[{100 * m['dacc_ci95_low']:+.1f}, {100 * m['dacc_ci95_high']:+.1f}]"
    assert arc[col["flips"]] == "1 (25.0%)" and arc[col["choice KL"]] == f"{m['choice_kl_mean']:.4f}"
    assert arc[col["perplexity"]] == "—" and arc[col["result"]] == "FAIL"
    lm = metrics(doc, "lambada_openai", "rtn")
    assert lam[col["acc_norm %"]] == "—" and lam[col["choice KL"]] == "—" and lam[col["Δacc pts"]] == "+0.0"
    assert lam[col["perplexity"]] == f"{lm['perplexity']:.2f} ± {lm['perplexity_stderr']:.2f}"
    assert lam[col["flips"]] == "0 (0.0%)" and lam[col["result"]] == "PASS"
    assert [r[col["result"]] for r in body if r[1] == "base"] == ["PASS"] * 4
    assert all(r[col["Δacc pts"]] == "—" for r in body if r[1] == "base")


def test_markdown_accuracy_table_escapes_hostile_names(tmp_path: Path) -> None:
    """A stored document may carry any text: a variant named with a pipe and markup stays one cell."""
    doc, _ = gated(tmp_path)
    hostile = "rtn | *x* <b>"
    doc["variants"] = {hostile: {"size_mb": 1.0}}
    for r in doc["tasks"]["runs"]:
        r["variant"] = hostile if r["variant"] == "rtn" else r["variant"]
    md = ci.markdown(doc, [])
    _, body = accuracy_table(md)
    assert all(len(r) == len(TASK_COLUMNS) for r in body)
    assert [r[1] for r in body if r[1] != "base"] == [hostile, hostile]
    assert all(r[-1] == "—" for r in body)  # no checks (eval): no verdict
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<em>" not in html and "<b>" not in html and "acc_norm %</th>" in html
    assert "<td>rtn | *x* &lt;b&gt;</td>" in html


def test_rich_accuracy_table(tmp_path: Path) -> None:
    doc, checks = gated(tmp_path)
    out = Console(record=True, width=200)
    terminal.print_accuracy(out, doc, checks)
    text = out.export_text()
    m = metrics(doc, "arc_easy", "rtn")
    assert "Accuracy tasks" in text and all(col in text for col in TASK_COLUMNS)
    line = next(ln for ln in text.splitlines() if "arc_easy" in ln and "rtn" in ln)
    assert "-25.0" in line and f"[{100 * m['dacc_ci95_low']:+.1f}, {100 * m['dacc_ci95_high']:+.1f}]" in line
    assert "1 (25.0%)" in line and "FAIL" in line
    quiet = Console(record=True, width=200)
    terminal.print_accuracy(quiet, copy.deepcopy(GOOD), [])
    assert quiet.export_text() == ""  # no tasks, no table


def test_junit_groups_task_checks(tmp_path: Path) -> None:
    doc, checks = gated(tmp_path)
    path = tmp_path / "j.xml"
    path.write_text(junit(checks, doc))
    xmlschema.XMLSchema(XSD).validate(path)
    parsed = junitparser.JUnitXml.fromfile(str(path))
    suite = next(iter(parsed)) if isinstance(parsed, junitparser.JUnitXml) else parsed
    cases = {(c.classname, c.name): c for c in suite}
    assert len(cases) == len(checks) == suite.tests  # a task's result_present never collides with a dataset's
    assert ("rtn.task.arc_easy", "task_acc_drop") in cases and ("base/ort.task.lambada_openai",
                                                               "result_present") in cases
    assert ("rtn.ptb", "result_present") in cases and ("*.task.*", "task_consistent") in cases
    failures = {k for k, c in cases.items() if any(isinstance(r, junitparser.Failure) for r in c.result)}
    assert failures == {("rtn.task.arc_easy", "task_acc_drop")} and suite.errors == 0
    assert cases[("rtn.task.arc_easy", "task_acc_drop")].time == pytest.approx(2.5)  # the variant lane's seconds
    assert cases[("base.task.arc_easy", "task_parity_max_abs_dll")].time == pytest.approx(5.0)  # both base lanes
