"""CI reports on synthetic gate results: the Markdown summary rendered by a real Markdown parser
(markdown-it-py, GFM tables) and the JUnit XML validated against the Ant JUnit schema
(tests/data/junit-ant.xsd, xmlschema) and read back by junitparser."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import junitparser
import pytest
import xmlschema
from markdown_it import MarkdownIt
from test_gate import GOOD, SUITE, mutate

from evalsuite.config import load_suite
from evalsuite.gate.checks import Check
from evalsuite.gate.verdict import compare
from evalsuite.report import ci
from evalsuite.report.junit import is_error, junit

XSD = Path(__file__).parent / "data" / "junit-ant.xsd"
KINDS = ["good", "abs", "rel", "missing", "scoring-error", "parity-logit", "parity-missing"]


def checks_for(tmp_path: Path, kind: str) -> tuple[dict[str, Any], list[Check]]:
    (tmp_path / "s.toml").write_text(SUITE)
    doc = copy.deepcopy(GOOD) if kind == "good" else mutate(kind)
    return doc, compare(doc, load_suite(tmp_path / "s.toml"))


def tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header cells, body rows) of every table markdown-it renders, as inline text."""
    out: list[tuple[list[str], list[list[str]]]] = []
    row: list[str] | None = None
    for tok in MarkdownIt("commonmark").enable("table").parse(md):
        if tok.type == "table_open":
            out.append(([], []))
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "inline" and row is not None:
            row.append(tok.content)
        elif tok.type == "tr_close" and row is not None:
            header, body = out[-1]
            (body.append(row) if header else header.extend(row))
            row = None
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_markdown_renders_every_cell(tmp_path: Path, kind: str) -> None:
    doc, checks = checks_for(tmp_path, kind)
    # hostile text in a detail: a pipe, a newline, markup
    checks.append(Check("rel_dppl", "rtn", "ptb", None, 0.1, "max", False, detail="error: a | b\n*boom* <x>"))
    found = tables(ci.markdown(doc, checks))
    assert len(found) == 3 if doc.get("variants") else 2
    for header, body in found:
        assert body and all(len(r) == len(header) for r in body), (header, body)
    header, body = found[-1]
    assert header[:7] == ["check", "variant", "dataset", "value", "threshold", "margin", "result"]
    assert len(body) == len(checks)
    assert [r[6] for r in body] == ["PASS" if c.passed else "FAIL" for c in checks]
    assert any(r[0] == "ORT vs torch max |Δlogit|" for r in body)  # the escaped pipe stays in its cell
    html = MarkdownIt("commonmark").enable("table").render(ci.markdown(doc, checks))
    assert "<td>ORT vs torch max |Δlogit|</td>" in html and "<em>" not in html and "<x>" not in html


def test_markdown_cached_runs_and_policy_read_naturally(tmp_path: Path) -> None:
    doc, checks = checks_for(tmp_path, "good")
    doc["runs"][0] |= {"reused_tokens": doc["runs"][0]["tokens_scored"], "tokens_per_s": 0.0}
    md = ci.markdown(doc, checks)
    _, runs = tables(md)[0]
    assert runs[0][6] == "cached" and runs[1][6] == f"{doc['runs'][1]['tokens_per_s']:.0f}"
    assert "no BOS token" in md and "BOS False" not in md
    assert "BOS token prepended" in ci.markdown({**doc, "policy": {**doc["policy"], "bos": True}}, checks)


@pytest.mark.parametrize("kind", KINDS)
def test_junit_validates_and_parses(tmp_path: Path, kind: str) -> None:
    doc, checks = checks_for(tmp_path, kind)
    path = tmp_path / "j.xml"
    path.write_text(junit(checks, doc))
    xmlschema.XMLSchema(XSD).validate(path)  # raises on any violation
    parsed = junitparser.JUnitXml.fromfile(str(path))  # a <testsuite> root comes back wrapped
    suites = list(parsed) if isinstance(parsed, junitparser.JUnitXml) else [parsed]
    assert len(suites) == 1
    suite = suites[0]
    assert suite.hostname and suite.timestamp
    cases = list(suite)
    assert len(cases) == suite.tests == len(checks)
    errors = {(c.classname, c.name) for c in cases if any(isinstance(r, junitparser.Error) for r in c.result)}
    failures = {(c.classname, c.name) for c in cases if any(isinstance(r, junitparser.Failure) for r in c.result)}
    assert errors == {(f"{c.variant}.{c.dataset}", c.name) for c in checks if is_error(c)}
    assert failures == {(f"{c.variant}.{c.dataset}", c.name) for c in checks if not c.passed and not is_error(c)}
    assert (suite.errors, suite.failures) == (len(errors), len(failures))
    assert all(c.time is not None and c.time >= 0 for c in cases)
    props = {p.name: p.value for p in suite.properties()}
    for c in checks:  # passing cases carry their values too
        assert props[f"{c.variant}.{c.dataset}.{c.name}.threshold"] == str(c.threshold)
        assert props[f"{c.variant}.{c.dataset}.{c.name}.value"] == ("" if c.value is None else str(c.value))


@pytest.mark.parametrize(("kind", "errors", "failures"), [
    pytest.param("good", set(), set(), id="pass"),
    pytest.param("abs", set(), {"abs_dppl", "rel_dppl"}, id="threshold-miss-is-failure"),
    pytest.param("scoring-error", {"scoring", "result_present", "abs_dppl", "rel_dppl"}, {"result_complete"},
                 id="crash-is-error"),
    pytest.param("missing", {"result_present", "abs_dppl", "rel_dppl"}, set(), id="missing-result-is-error"),
])
def test_junit_error_or_failure(tmp_path: Path, kind: str, errors: set[str], failures: set[str]) -> None:
    _, checks = checks_for(tmp_path, kind)
    assert {c.name for c in checks if is_error(c)} == errors
    assert {c.name for c in checks if not c.passed and not is_error(c)} == failures


def test_junit_without_required_attributes_is_rejected(tmp_path: Path) -> None:
    """The schema is not a rubber stamp: the same document without hostname fails validation."""
    doc, checks = checks_for(tmp_path, "abs")
    broken = junit(checks, doc).replace(' hostname="', ' host="')
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        xmlschema.XMLSchema(XSD).validate(broken)
    assert dataclasses.is_dataclass(checks[0])
