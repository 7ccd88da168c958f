"""Where to add (README, Architecture), shown from the test suite without touching the package: a
perplexity check is one CheckSpec row, a task metric one MetricSpec, a kind of task's checks one
function in verdict.TASK_KINDS, and a whole kind of evaluation one task_api.EvalTask class in
suite.TASKS plus its checks. Each is registered here the way a module of the package would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalsuite.config import load_suite
from evalsuite.gate import checks as ppl_checks
from evalsuite.gate import task_checks, verdict
from evalsuite.gate.checks import Check, CheckSpec, Pair
from evalsuite.gate.task_results import run_record, task_record, with_metrics
from evalsuite.scoring import task_metrics as tm

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "baselines" / "smollm2-135m-instruct.json"


def test_a_perplexity_check_is_one_row(monkeypatch: pytest.MonkeyPatch) -> None:
    doc, suite = json.loads(BASELINE.read_text()), load_suite(None)
    stock = verdict.compare(doc, suite)

    def doubled(p: Pair) -> float | None:
        kld = p.metric("kld_mean")
        return None if kld is None else 2 * kld

    toy = CheckSpec("toy_kld_x2", "max_kld_mean", "max", doubled)
    monkeypatch.setattr(ppl_checks, "PPL_LIMITS", (*ppl_checks.PPL_LIMITS, toy))
    added = [c for c in verdict.compare(doc, suite) if c.name == "toy_kld_x2"]
    # one per variant x dataset, beside the stock checks (which are unchanged), read like them
    assert len(added) == len(suite.variants) * 2
    kld = {(c.variant, c.dataset): c for c in stock if c.name == "kld_mean"}
    for c in added:
        assert c.value == 2 * kld[(c.variant, c.dataset)].value and c.threshold == kld[(c.variant, c.dataset)].threshold
        assert c.passed is (c.value <= c.threshold)
    assert [c for c in verdict.compare(doc, suite) if c.name != "toy_kld_x2"] == stock
    assert any(not c.passed for c in added)  # the doubled KLD exceeds the AWQ or RTN limit: the gate would fail


def _section(metrics: tuple[str, ...]) -> dict:
    outline = [tm.Example(g, (3, 4, 5), (3, 4, 5), False) for g in (0, 1, 2, 0, 1)]
    rng = np.random.default_rng(0)
    lanes = {("base", "ort"): -rng.exponential(size=(5, 3)), ("int4", "ort"): -rng.exponential(size=(5, 3))}
    runs = [run_record("toy", v, r, {i: np.stack([ll[i], np.zeros(3)], axis=1) for i in range(5)}, 0.0, 0, 0, False)
            for (v, r), ll in lanes.items()]
    task = task_record("toy", "toy", metrics, None, "test", "here", "", "0" * 64, "0" * 64, 1, outline)
    return with_metrics({"schema": 1, "tasks": [task], "runs": runs})


def first_choice(ex: tm.Example, s: np.ndarray) -> float:
    """A toy metric: the answer picked is the first choice."""
    return float(int(np.argmax(s[:, 0])) == 0)


def test_a_task_metric_is_one_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tm.METRICS, "first_choice", tm.MetricSpec("first_choice", True, "mean", first_choice))
    section = _section(("acc", "first_choice"))
    base, int4 = (r["metrics"] for r in section["runs"])
    scores = [np.asarray(s)[:, 0] for s in section["runs"][0]["scores"]]
    assert base["first_choice"] == np.mean([np.argmax(s) == 0 for s in scores])
    assert "first_choice_stderr" in base and "dfirst_choice" in int4 and "dacc" in int4  # paired like acc
    suite = load_suite(None)
    assert task_checks.consistency(section, suite).passed  # the gate re-derives it from the scores
    forged = {**section, "runs": [{**section["runs"][0], "metrics": {**base, "first_choice": 1.5}},
                                  *section["runs"][1:]]}
    check = task_checks.consistency(forged, suite)
    assert not check.passed and "first_choice" in check.detail


def test_a_kind_of_task_is_one_checks_function(monkeypatch: pytest.MonkeyPatch) -> None:
    doc, suite = json.loads(BASELINE.read_text()), load_suite(None)

    def toy_task(doc: dict, suite: object, content: dict | None) -> list[Check]:
        runs = doc.get("runs", [])
        return [Check("toy_runs", "*", "*", float(len(runs)), 1.0, "min", len(runs) >= 1)]

    monkeypatch.setattr(verdict, "TASK_KINDS", (*verdict.TASK_KINDS, toy_task))
    got = verdict.compare(doc, suite)
    toy = [c for c in got if c.name == "toy_runs"]
    assert len(toy) == 1 and toy[0].passed and toy[0].value == len(doc["runs"])
    monkeypatch.setattr(verdict, "TASK_KINDS", (verdict.perplexity_checks,))  # perplexity alone: no task checks
    assert not any(c.name.startswith("task") for c in verdict.compare(doc, suite))


class FirstTokens:
    """A toy kind of evaluation (task_api.EvalTask), registered from the test suite: the mean NLL of
    one fixed token sequence on every lane, through the same runners the other kinds use, with its
    own document section and its own check."""

    name = "toy_first_tokens"
    IDS = np.arange(3, 40, dtype=np.int64)

    def __init__(self, suite: object, data_dir: object) -> None:
        self.runs: list[dict] = []

    def tokenize(self, source: object) -> None: ...
    def check(self, shard: object) -> None: ...
    def vocab_needed(self) -> int: return int(self.IDS.max()) + 1
    def data(self) -> dict: return {}
    def bound(self) -> dict: return {}
    def parity(self, reference: object, base: object, source: object, progress: object) -> list: return []

    def score(self, group: list, ctx: object, progress: object) -> None:
        from evalsuite.scoring.tokenstats import solo_stats

        for variant, runner in group:
            k = len(self.IDS) - 1
            nll = solo_stats(runner.logits(self.IDS[:-1], k), self.IDS[1:])[:, 0]
            self.runs.append({"variant": variant, "runner": runner.name, "nll": float(nll.mean())})

    def contribution(self, shard: object) -> object:
        from evalsuite.task_api import Contribution

        return Contribution(sections={self.name: {"runs": self.runs}})


def toy_checks(doc: dict, suite: object, content: dict | None) -> list[Check]:
    """Each variant's toy NLL within 1 nat of its base lane's; a missing section fails closed."""
    from evalsuite.gate.checks import make_check

    runs = {(r["variant"], r["runner"]): r["nll"] for r in doc.get(FirstTokens.name, {}).get("runs", [])}
    roles = suite.roles  # type: ignore[attr-defined]
    base = runs.get((roles.base_variant, roles.base))
    return [make_check("toy_nll_drift", v.name, "toy", None if base is None or (v.name, roles.base) not in runs
                       else abs(runs[(v.name, roles.base)] - base), 1.0, "max")
            for v in suite.variants]  # type: ignore[attr-defined]


def test_a_kind_of_evaluation_is_one_class_and_two_registrations(
        prepared_cache: Path, ci_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from evalsuite import suite as pipeline
    from evalsuite.cli import main

    cache = tmp_path / "cache"
    shutil.copytree(prepared_cache, cache, symlinks=True)
    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    monkeypatch.setattr(pipeline, "TASKS", (*pipeline.TASKS, FirstTokens))
    monkeypatch.setattr(verdict, "TASK_KINDS", (*verdict.TASK_KINDS, toy_checks))
    out = tmp_path / "gate.json"
    assert main(["gate", "--config", str(ci_suite), "-q", "--json-out", str(out)]) == 0
    doc = json.loads(out.read_text())
    lanes = [(r["variant"], r["runner"]) for r in doc[FirstTokens.name]["runs"]]
    assert lanes == [("base", "torch"), ("base", "ort"), ("rtn", "ort")]  # every lane, the pipeline's order
    nll = {lane: r["nll"] for lane, r in zip(lanes, doc[FirstTokens.name]["runs"], strict=True)}
    assert abs(nll[("base", "torch")] - nll[("base", "ort")]) < 1e-3  # the same model on two runtimes
    (toy,) = [c for c in doc["checks"] if c["name"] == "toy_nll_drift"]
    assert toy["passed"] and toy["value"] == abs(nll[("rtn", "ort")] - nll[("base", "ort")])
    assert {c["name"] for c in doc["checks"]} > {"toy_nll_drift", "result_present", "rel_dppl"}  # beside the stock
    # Shards of a kind merge cannot combine are refused, never merged as shard 0's partial section.
    for i in (0, 1):
        assert main(["eval", "--config", str(ci_suite), "-q", "--shard", f"{i}/2",
                     "--json-out", str(tmp_path / f"s{i}.json")]) == 0
    assert main(["merge", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"),
                 "--json-out", str(tmp_path / "merged.json")]) == 2
    assert "holds section(s) toy_first_tokens that merge cannot combine" in capsys.readouterr().err
    assert not (tmp_path / "merged.json").exists()
