"""The gate on synthetic results documents: table-driven verdicts, exit codes and report formats."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from evalsuite.cli import main
from evalsuite.config import load_suite
from evalsuite.gate.verdict import compare, verdict

SUITE = """
[eval]
datasets = ["wikitext2", "ptb"]
runners = ["torch", "ort"]

[[variants]]
name = "rtn"
method = "rtn"

[thresholds]
max_abs_dppl = 2.0
max_rel_dppl = 0.10

[thresholds.variants.rtn.datasets.ptb]
max_abs_dppl = 5.0

[parity]
max_rel_dppl = 1e-4
max_abs_dlogit = 1e-2
min_top1_agree = 0.99
"""


def run(variant: str, runner: str, dataset: str, ppl: float) -> dict[str, Any]:
    """A consistent run (gate/consistency.py): 1023 targets of a 1024-token stream in 3 windows,
    nll_sum and nll_mean those of `ppl`."""
    import math

    return {"model": "m", "variant": variant, "runner": runner, "dataset": dataset, "split": "test",
            "window": 512, "stride": 256, "bos": False, "max_tokens": None, "tokens_in_stream": 1024,
            "tokens_scored": 1023, "windows": 3, "nll_sum": math.log(ppl) * 1023, "nll_mean": math.log(ppl),
            "ppl": ppl, "seconds": 1.0, "tokens_per_s": 1023.0}


def retarget(r: dict[str, Any], ppl: float) -> None:
    """Set a run's PPL keeping it consistent (its NLL follows)."""
    import math

    r.update(ppl=ppl, nll_mean=math.log(ppl), nll_sum=math.log(ppl) * r["tokens_scored"])


def binding(suite_text: str, model: str = "smollm2-135m-instruct") -> dict[str, Any]:
    """The `binding` a run of `suite_text` records: its settings, and the default model's identity."""
    import tomllib

    from evalsuite import tomlio
    from evalsuite.config import Suite
    from evalsuite.gate.binding import suite_binding
    from evalsuite.models.source import origin_sha256

    suite = tomlio.load(Suite, tomllib.loads(suite_text), "suite")
    return {"suite": suite_binding(suite), "content": {
        "model": {"origin_sha256": origin_sha256(model), "tokenizer_sha256": "t" * 64},
        "base_onnx": "b" * 20, "variants": {v.name: "k" * 20 for v in suite.variants},
        "data": {d: TEXTS[d] for d in suite.eval.datasets if d in TEXTS}}}


# The packaged texts' pinned sha256 (datasets_cfg/*.toml text_sha256): what the labels mean.
TEXTS = {"wikitext2": "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83",
         "ptb": "900cfc61a7a63afcd086c5e1cce90554764eae65cb2ca9f5d4cac47be5f0f394"}


BINDING = binding(SUITE)
GOOD: dict[str, Any] = {
    "schema_version": 2,
    "binding": BINDING,
    "complete": True,
    "shard": None,
    "provenance": {"model": {"source": "smollm2-135m-instruct", "origin_sha256": BINDING["content"]["model"][
        "origin_sha256"], "tokenizer_sha256": "t" * 64}, "data": {d: {"text_sha256": t} for d, t in TEXTS.items()}},
    "policy": {"window": 512, "stride": 256, "bos": False, "max_tokens": None},
    "runs": [run("base", "torch", "wikitext2", 20.0), run("base", "ort", "wikitext2", 20.0001),
             run("rtn", "ort", "wikitext2", 21.5), run("base", "torch", "ptb", 50.0),
             run("base", "ort", "ptb", 50.0), run("rtn", "ort", "ptb", 54.0)],
    "parity": [{"dataset": d, "max_abs_dlogit": 1e-4, "top1_agree": 1.0} for d in ("wikitext2", "ptb")],
    "variants": {"rtn": {"size_mb": 1.0}},
    "errors": [],
}


def mutate(kind: str) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    runs = doc["runs"]
    if kind == "abs":  # +2.5 PPL on wikitext2 > 2.0 (rel 12.5% fails too)
        retarget(runs[2], 22.5)
    elif kind == "rel":  # ptb: +5.2 PPL, over the ptb abs override (5.0) and +10.4% > 10%
        retarget(runs[5], 55.2)
    elif kind == "missing":
        del runs[5]
    elif kind == "scoring-error":
        del runs[2]
        doc["errors"] = [{"variant": "rtn", "runner": "ort", "dataset": "wikitext2",
                          "message": "non-finite logits (NaN/Inf) at scored row 3"}]
        doc["complete"] = False
    elif kind == "parity-ppl":
        retarget(runs[1], 20.01)
    elif kind == "parity-logit":
        doc["parity"][1]["max_abs_dlogit"] = 0.5
    elif kind == "parity-missing":
        doc["parity"] = []
    return doc


@pytest.mark.parametrize(
    ("kind", "passed", "failing"),
    [
        pytest.param("good", True, set(), id="pass"),
        pytest.param("abs", False, {("abs_dppl", "rtn", "wikitext2"), ("rel_dppl", "rtn", "wikitext2")},
                     id="fail-abs"),
        pytest.param("rel", False, {("abs_dppl", "rtn", "ptb"), ("rel_dppl", "rtn", "ptb")}, id="fail-rel"),
        pytest.param("missing", False, {("abs_dppl", "rtn", "ptb"), ("rel_dppl", "rtn", "ptb"),
                                        ("result_present", "rtn", "ptb")}, id="missing-result"),
        pytest.param("scoring-error", False, {("abs_dppl", "rtn", "wikitext2"), ("rel_dppl", "rtn", "wikitext2"),
                                              ("scoring", "rtn", "wikitext2"), ("result_present", "rtn", "wikitext2"),
                                              ("result_complete", "*", "*")}, id="scoring-error"),
        pytest.param("parity-ppl", False, {("parity_rel_dppl", "base", "wikitext2")}, id="parity-ppl"),
        pytest.param("parity-logit", False, {("parity_max_abs_dlogit", "base", "ptb")}, id="parity-logit"),
        pytest.param("parity-missing", False, {("parity_max_abs_dlogit", "base", d) for d in ("wikitext2", "ptb")}
                     | {("parity_top1_agree", "base", d) for d in ("wikitext2", "ptb")}, id="parity-missing"),
    ],
)
def test_compare(tmp_path: Path, kind: str, passed: bool, failing: set[tuple[str, str, str]]) -> None:
    (tmp_path / "s.toml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.toml")
    doc = GOOD if kind == "good" else mutate(kind)
    checks = compare(doc, suite)
    assert {(c.name, c.variant, c.dataset) for c in checks if not c.passed} == failing
    assert verdict(checks) is passed
    if kind == "rel":  # ptb: +5.2 PPL; abs limit overridden to 5.0 for ptb, rel 10.4% > 10%
        rel = next(c for c in checks if c.name == "rel_dppl" and c.dataset == "ptb")
        assert rel.value == pytest.approx(0.104) and rel.margin == pytest.approx(-0.004)


@pytest.mark.parametrize(("kind", "code"), [("good", 0), ("abs", 1), ("scoring-error", 1), ("parity-ppl", 1)])
def test_gate_exit_codes_and_reports(tmp_path: Path, kind: str, code: int, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s.toml").write_text(SUITE)
    (tmp_path / "r.json").write_text(json.dumps(GOOD if kind == "good" else mutate(kind)))
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    argv = ["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r.json"),
            "--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "g.md"),
            "--json-out", str(tmp_path / "out.json")]
    assert main(argv) == code
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["passed"] is (code == 0)
    assert all({"name", "passed", "value", "threshold", "direction"} <= set(c) for c in out["checks"])
    junit = ET.parse(tmp_path / "j.xml").getroot()
    cases = junit.findall(".//testcase")
    assert len(cases) == len(out["checks"])
    assert len(junit.findall(".//failure")) + len(junit.findall(".//error")) == sum(
        not c["passed"] for c in out["checks"])
    md = (tmp_path / "g.md").read_text()
    assert md.startswith("## evalsuite gate") and ("PASS" if code == 0 else "FAIL") in md
    assert summary.read_text() == md
    if kind == "good":  # the published-table row: base, variant, difference, size, verdict
        assert "| rtn | wikitext2 | 20.0001 | 21.5000 | +1.4999 (+7.50%) | — | — | — | 1.0 | PASS |" in md
    if kind == "scoring-error":  # the variant's missing wikitext2 run shows as a failed, empty row
        assert "| rtn | wikitext2 | — | — | — | — | — | — | — | FAIL |" in md
    assert ("PASS: all" if code == 0 else "FAIL:") in capsys.readouterr().out


def test_threshold_missing_for_declared_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.toml").write_text("[[variants]]\nname = 'awq'\nmethod = 'awq'\n")
    assert main(["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "x.json")]) == 2
    assert "no threshold for variant 'awq'" in capsys.readouterr().err


def test_no_checks_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text("[eval]\nrunners = ['torch']\n")
    (tmp_path / "r.json").write_text(json.dumps(GOOD))
    assert main(["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r.json")]) == 1


def test_baseline_regression(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(SUITE)
    (tmp_path / "r.json").write_text(json.dumps(GOOD))
    assert main(["baseline", "update", "--results", str(tmp_path / "r.json"), "--out", str(tmp_path / "b.json")]) == 0
    gate = ["gate", "--config", str(tmp_path / "s.toml"), "--baseline", str(tmp_path / "b.json")]
    assert main([*gate, "--results", str(tmp_path / "r.json")]) == 0
    worse = mutate("good")
    retarget(worse["runs"][0], 20.5)  # torch base 2.5% above its baseline (> 1%)
    (tmp_path / "w.json").write_text(json.dumps(worse))
    assert main([*gate, "--results", str(tmp_path / "w.json")]) == 1


@pytest.mark.parametrize("content", ["{not json", '{"runs": []}', "[]"], ids=["malformed", "no-schema", "list"])
def test_bad_results_file(tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.json").write_text(content)
    (tmp_path / "s.toml").write_text(SUITE)
    assert main(["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r.json")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_roles_are_recorded_and_old_documents_read_with_todays() -> None:
    """A document without a `roles` record (the committed baselines) reads as torch reference, ORT base,
    variant 'base', its ORT variants as candidates; a record round-trips; a malformed one is one line."""
    from evalsuite.gate import results
    from evalsuite.roles import Roles, of_document

    root = Path(__file__).resolve().parent.parent
    old = results.read(root / "baselines" / "smollm2-135m-instruct.json", "baseline")
    assert "roles" not in old
    want = tuple(dict.fromkeys(r["variant"] for r in old["runs"] if r["runner"] == "ort" and r["variant"] != "base"))
    assert of_document(old) == Roles("torch", "ort", "base", want) and want
    suite = load_suite(None)
    names = [v.name for v in suite.variants]
    assert suite.roles.to_json() == {"reference": "torch", "base": "ort", "base_variant": "base", "candidates": names}
    assert of_document({**old, "roles": suite.roles.to_json()}) == suite.roles
    for bad in ({"reference": "torch"}, {**suite.roles.to_json(), "candidates": ["base"]}, [1]):
        assert "roles" in (results.validate({**old, "roles": bad}) or "")
    assert results.validate({**old, "roles": suite.roles.to_json()}) is None


@pytest.mark.parametrize("field, value", [("base_variant", "fp32"), ("base", "torch"),
                                          ("candidates", ["rtn-b32-acc4"])],
                         ids=["base-variant", "base-runner", "candidates"])
def test_a_document_naming_other_roles_fails_the_suite_binding(field: str, value: object) -> None:
    """Consistency re-derives numbers by the document's roles: a document naming another base (or
    other candidates) than the suite's is of another run and fails binding_suite; today's roles pass."""
    from evalsuite.gate import results
    from evalsuite.gate.binding import integrity_checks

    root = Path(__file__).resolve().parent.parent
    old = results.read(root / "baselines" / "smollm2-135m-instruct.json", "baseline")
    suite = load_suite(None)

    def suite_binding_check(doc: dict[str, object]) -> object:
        return next(c for c in integrity_checks(doc, suite, None) if c.name == "binding_suite")

    assert suite_binding_check(old).passed and suite_binding_check({**old, "roles": suite.roles.to_json()}).passed
    forged = suite_binding_check({**old, "roles": {**suite.roles.to_json(), field: value}})
    assert not forged.passed and f"roles.{field}" in forged.detail
