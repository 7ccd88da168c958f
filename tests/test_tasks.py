"""Accuracy tasks: prompts, request tokenization, scoring and metrics, on synthetic inputs and the
tiny random Llama; custom tasks and task data refused before any model work (subprocess CLI)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evalsuite.data import task_prompts as tp
from evalsuite.data import tasks
from evalsuite.errors import DataError
from evalsuite.scoring import loglik
from evalsuite.scoring import task_metrics as tm


def ex(gold: int, choices: list[str], single: bool = False) -> tm.Example:
    return tm.Example(gold, tuple(len(c) for c in choices), tuple(len(c.encode()) for c in choices), single)


def top2_margin(logits: np.ndarray) -> float:
    """The smallest gap between the best and second-best logit over the rows: below ~1e-4 the argmax
    may differ between CPUs or code paths (other summation order), so equality is not asserted there."""
    top = np.sort(np.asarray(logits, dtype=np.float64), axis=-1)[:, -2:]
    return float(np.min(top[:, 1] - top[:, 0]))


def scores(lls: list[float], greedy: list[float] | None = None) -> np.ndarray:
    return np.column_stack([lls, greedy or [0.0] * len(lls)]).astype(np.float64)


# --- prompts: lm-eval 0.4's stock strings ----------------------------------------------------------

def test_hellaswag_preprocess_matches_lm_eval() -> None:
    row = {"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
           "endings": ["is using [title] wrap.", "is  ripping tiles off."], "label": "1"}
    e = tp.hellaswag(0, row)
    assert e.requests[0] == tp.Request("Roof shingle removal: A man is sitting on a roof. He", " is using. wrap.")
    assert e.requests[1].continuation == " is ripping tiles off."
    assert e.gold == 1 and e.choices == ("is using. wrap.", "is ripping tiles off.")


def test_winogrande_partial_scoring() -> None:
    e = tp.winogrande(0, {"sentence": "Sarah beat Maria so _ got the prize.", "option1": "Sarah",
                          "option2": "Maria", "answer": "2"})
    assert [r.context for r in e.requests] == ["Sarah beat Maria so Sarah", "Sarah beat Maria so Maria"]
    assert {r.continuation for r in e.requests} == {" got the prize."}
    assert e.gold == 1 and e.choices == ("Sarah beat Maria so Sarah", "Sarah beat Maria so Maria")


@pytest.mark.parametrize(("builder", "row", "context", "first", "gold"), [
    pytest.param(tp.arc, {"question": "Q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"},
                 "Question: Q?\nAnswer:", " a", 1, id="arc"),
    pytest.param(tp.piqa, {"goal": "G", "sol1": "x", "sol2": "y", "label": 0}, "Question: G\nAnswer:", " x", 0,
                 id="piqa"),
    pytest.param(tp.lambada, {"text": "a b c word"}, "a b c", " word", 0, id="lambada"),
    pytest.param(tp.boolq, {"passage": "P", "question": "is it", "answer": True}, "P\nQuestion: is it?\nAnswer:",
                 " no", 1, id="boolq"),
    pytest.param(tp.sciq, {"support": "  S", "question": "Q", "distractor1": "d1", "distractor2": "d2",
                           "distractor3": "d3", "correct_answer": "c"}, "S\nQuestion: Q\nAnswer:", " d1", 3, id="sciq"),
    pytest.param(tp.copa, {"premise": "It rained.", "choice1": "We got wet.", "choice2": "X.", "question": "effect",
                           "label": 0}, "It rained therefore", "  we got wet.", 0, id="copa"),
    pytest.param(tp.openbookqa, {"question_stem": "S", "choices": {"text": ["a", "b"], "label": ["A", "B"]},
                                 "answerKey": " B"}, "S", " a", 1, id="openbookqa"),
])
def test_stock_prompts(builder: object, row: dict, context: str, first: str, gold: int) -> None:
    e = builder(0, row)  # type: ignore[operator]
    assert e.requests[0].context == context and e.requests[0].continuation == first and e.gold == gold


def test_every_stock_task_loads_pinned_data() -> None:
    for name, spec in tasks.STOCK.items():
        data = tasks.load_task(name, 3)
        assert len(data.examples) == 3 and data.sha256 == spec.sha256, name
        assert all(0 <= e.gold < len(e.requests) or len(e.requests) == 1 for e in data.examples)
    assert tasks.load_task("hellaswag", 2).identity() != tasks.load_task("hellaswag", 3).identity()


def test_altered_task_data_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tasks.olmo_root()
    assert root is not None
    spec = tasks.STOCK["arc_easy"]
    copy = tmp_path / "olmo" / spec.local
    shutil.copytree(root / spec.local, copy)
    monkeypatch.setenv("EVALSUITE_TASK_DATA", str(tmp_path / "olmo"))
    assert tasks.load_task("arc_easy", 2).sha256 == spec.sha256  # the same bytes elsewhere: fine
    state = copy / "state.json"
    state.write_text(state.read_text() + " ")
    with pytest.raises(DataError, match="altered"):
        tasks.load_task("arc_easy", 2)


def test_hub_path_with_a_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub code path (datasets.load_dataset) on a local folder of the hub repository's layout."""
    import datasets

    local = tasks.load_task("arc_easy", None)
    root = tasks.olmo_root()
    assert root is not None
    ds = datasets.load_from_disk(str(root / tasks.STOCK["arc_easy"].local))
    folder = tmp_path / "allenai" / "ai2_arc" / "ARC-Easy"
    folder.mkdir(parents=True)
    ds.to_parquet(str(folder / "validation-00000-of-00001.parquet"))
    monkeypatch.setenv("EVALSUITE_TASK_SOURCE", "hub")
    monkeypatch.setenv("EVALSUITE_TASK_HUB_DIR", str(tmp_path))
    hub = tasks.load_task("arc_easy", None)
    assert hub.origin.startswith("hub") and hub.identity() == local.identity()


# --- tokenization as lm-eval's HFLM._encode_pair ---------------------------------------------------

def test_encode_pair_moves_trailing_space_and_uses_prefix_for_empty_context(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ctx, cont = loglik.encode_pair(tok, "the quick ", "brown fox", 0)
    whole = loglik.encode(tok, "the quick brown fox")
    assert ctx == loglik.encode(tok, "the quick") and ctx + cont == whole
    assert loglik.encode_pair(tok, "", " fox", 7) == ([7], loglik.encode(tok, " fox"))
    assert loglik.prefix_token(tok) == tok.bos_token_id


def test_request_loglikelihood_equals_direct_transformers(tiny_llama_dir: Path) -> None:
    """Sum of log-softmax at the continuation positions of one full forward (1e-5: float32 logits,
    float64 reduction here vs float32 in torch)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.models.torch_runner import TorchRunner

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    example = tp.multiple_choice(0, "the quick brown", ["fox jumps", "dog"], 0)
    (tokd,) = loglik.tokenize_examples(tok, [example], 512)
    got = loglik.score_example(TorchRunner(tiny_llama_dir), tokd)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    for j, req in enumerate(example.requests):
        ctx, cont = loglik.encode_pair(tok, req.context, req.continuation, None)
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        want = float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))
        greedy = all(int(logp[len(ctx) - 1 + i].argmax()) == t for i, t in enumerate(cont))
        assert math.isclose(got[j, 0], want, abs_tol=1e-5)
        if float(logp[len(ctx) - 1 :].sort(-1).values[:, -2:].diff(dim=-1).min()) > 1e-4:  # no near-tie argmax
            assert bool(got[j, 1]) == greedy


# --- metrics ---------------------------------------------------------------------------------------

def test_acc_and_acc_norm_follow_lm_eval() -> None:
    e = ex(1, ["a", "bbbb"])  # bbbb loses on raw log-likelihood, wins per character
    s = scores([-2.0, -4.0])
    assert tm.acc(e, s) == 0.0 and tm.acc_norm(e, s) == 1.0 and tm.acc_bytes(e, s) == 1.0
    assert tm.acc(ex(0, ["x", "y"]), scores([-1.0, -1.0])) == 1.0  # a tie: np.argmax takes the first


def test_solo_metrics_and_stderr() -> None:
    examples = [ex(0, ["a", "b"]) for _ in range(4)]
    lanes = [scores([-1.0, -2.0]), scores([-3.0, -2.0]), scores([-1.0, -2.0]), scores([-1.0, -2.0])]
    m = tm.solo(["acc"], examples, lanes)
    assert m["acc"] == 0.75 and math.isclose(m["acc_stderr"], float(np.std([1, 0, 1, 1], ddof=1)) / 2)
    lam = [ex(0, [" w"], single=True)] * 2
    m = tm.solo(["acc", "perplexity"], lam, [scores([-1.0], [1.0]), scores([-3.0], [0.0])])
    assert m["acc"] == 0.5 and math.isclose(m["perplexity"], math.exp(2.0))


def test_paired_deltas_flips_and_choice_kl() -> None:
    examples = [ex(0, ["a", "b"]) for _ in range(4)]
    base = [scores([-1.0, -2.0])] * 4
    cand = [scores([-1.0, -2.0]), scores([-3.0, -2.0]), scores([-1.0, -2.0]), scores([-3.0, -2.0])]
    p = tm.paired(["acc"], examples, base, cand)
    assert p["dacc"] == -0.5 and p["flips"] == 2 and p["flip_rate"] == 0.5
    half = tm.Z95 * float(np.std([0, -1, 0, -1], ddof=1)) / 2
    assert math.isclose(p["dacc_ci95_low"], -0.5 - half) and math.isclose(p["dacc_ci95_high"], -0.5 + half)
    assert tm.paired(["acc"], examples, base, base)["choice_kl_mean"] == 0.0
    assert p["choice_kl_mean"] > 0


def test_parity_stats() -> None:
    examples = [ex(0, ["a", "b"]), ex(1, ["a", "b"])]
    ref = [scores([-1.0, -2.0]), scores([-1.0, -1.5])]
    ort = [scores([-1.0, -2.0 + 1e-5]), scores([-1.6, -1.5])]
    p = tm.parity(examples, ref, ort)
    assert math.isclose(p["max_abs_dll"], 0.6) and p["answer_agree"] == 0.5


# --- bad input: one line, exit 2, before any model work --------------------------------------------

def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVALSUITE_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "evalsuite", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def write_task(tmp_path: Path, rows: list[dict] | None, **over: object) -> Path:
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) if rows is not None else "")
    cfg = {"data_files": "mine.jsonl", "context": "Q: {question}\nA:", "choices": "options", "gold": "label", **over}
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
    (tmp_path / "mine.toml").write_text("\n".join(lines) + "\n")
    return tmp_path / "mine.toml"


ROWS = [{"question": "1+1", "options": ["2", "3"], "label": 0}, {"question": "2+2", "options": ["5", "4"], "label": 1}]



def test_custom_task_examples(tmp_path: Path) -> None:
    from evalsuite.data.custom_task import load_custom_task

    data = load_custom_task(write_task(tmp_path, ROWS), None)
    assert [e.gold for e in data.examples] == [0, 1]
    assert data.examples[0].requests[0] == tp.Request("Q: 1+1\nA:", " 2")
    named = [{**r, "label": r["options"][r["label"]]} for r in ROWS]  # gold given as the choice's text
    assert [e.gold for e in load_custom_task(write_task(tmp_path, named), 1).examples] == [0]


@pytest.mark.parametrize(("rows", "over", "message"), [
    pytest.param(None, {}, "is empty", id="empty-file"),
    pytest.param([{"question": "q", "label": 0}], {}, "no column 'options'", id="missing-choices-column"),
    pytest.param([{"options": ["a", "b"], "label": 0}], {}, "no column 'question'", id="missing-context-column"),
    pytest.param([{"question": "q", "options": ["a", "b"], "label": 2}], {}, "gold 2", id="gold-out-of-range"),
    pytest.param([{"question": "q", "options": ["a", "b"], "label": "c"}], {}, "gold 'c'", id="gold-not-a-choice"),
    pytest.param([{"question": "q", "options": ["a"], "label": 0}], {}, "at least two", id="one-choice"),
    pytest.param(ROWS, {"colour": "red"}, "unknown key 'colour'", id="unknown-key"),
])
def test_custom_task_bad_input_exit_2(tmp_path: Path, rows: list[dict] | None, over: dict, message: str) -> None:
    toml = write_task(tmp_path, rows, **over)
    proc = run_cli(["validate", "--task", str(toml)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.onnx"))


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--task", "hellaswagg"], "unknown task 'hellaswagg'", id="unknown-task"),
    pytest.param(["--task", "hellaswag", "--limit", "0"], "--limit must be at least 1", id="limit-0"),
    pytest.param(["--task", "nowhere/mine.toml"], "config file not found", id="missing-task-toml"),
])
def test_task_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_cli(["eval", *args], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_task_data_altered_exit_2_before_model_work(tmp_path: Path) -> None:
    root = tasks.olmo_root()
    assert root is not None
    spec = tasks.STOCK["copa"]
    shutil.copytree(root / spec.local, tmp_path / "olmo" / spec.local)
    arrow = next((tmp_path / "olmo" / spec.local).glob("*.arrow"))
    blob = bytearray(arrow.read_bytes())
    blob[-100] ^= 1
    arrow.write_bytes(bytes(blob))
    env_proc = subprocess.run([sys.executable, "-m", "evalsuite", "eval", "--task", "copa"], cwd=tmp_path,
                              env={**os.environ, "EVALSUITE_TASK_DATA": str(tmp_path / "olmo"),
                                   "EVALSUITE_CACHE": str(tmp_path / "cache")},
                              capture_output=True, text=True, timeout=300)
    assert env_proc.returncode == 2 and "altered" in env_proc.stderr, env_proc.stderr
    assert not (tmp_path / "cache" / "onnx").exists()


def test_limit_in_suite_toml_must_be_positive() -> None:
    from evalsuite.task_config import TaskCfg

    with pytest.raises(ValueError, match="limit must be at least 1"):
        TaskCfg(name="hellaswag", limit=0)


@pytest.mark.parametrize("lane", ["torch", "ort"])
def test_context_once_equals_whole_forward(tiny_llama_dir: Path, fp32_dir: Path, lane: str) -> None:
    """The shared context forwarded once (torch: with every choice's rest in one masked forward; ORT: its
    KV cache extended per choice) gives each choice's log-likelihood of a whole forward within 1e-5
    nats (other shapes, other summation order; measured 0 to ~1e-6 here), the same greedy flags, and
    feeds fewer tokens."""
    from transformers import AutoTokenizer

    from evalsuite.models.ort_runner import OrtRunner
    from evalsuite.models.torch_runner import TorchRunner

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    examples = [tp.multiple_choice(0, "the quick brown fox jumps over", ["the lazy dog .", "a stitch", "nine"], 1),
                tp.winogrande(1, {"sentence": "a stitch in _ saves nine .", "option1": "time", "option2": "the fox",
                                  "answer": "1"})]
    runner = TorchRunner(tiny_llama_dir) if lane == "torch" else OrtRunner(fp32_dir)
    for tokd in loglik.tokenize_examples(tok, examples, 512):
        assert loglik.shared_prefix(tokd) > 0
        whole = np.array([loglik.score_request(runner, i, t) for i, t in zip(tokd.inputs, tokd.targets, strict=True)])
        once = loglik.score_example(runner, tokd)
        np.testing.assert_allclose(once[:, 0], whole[:, 0], atol=1e-5, rtol=0)
        for j, (i, t) in enumerate(zip(tokd.inputs, tokd.targets, strict=True)):
            if top2_margin(runner.logits(i, len(t))) > 1e-4:  # a near-tie argmax may flip between paths
                assert once[j, 1] == whole[j, 1]
        assert loglik.forwarded_tokens([tokd]) < sum(len(i) for i in tokd.inputs)
        # The packed path was taken. torch: one masked forward; ORT: the context, then every choice's rest
        shared = loglik.shared_prefix(tokd)
        packed = runner.logits_packed(tokd.inputs[0][:shared], [i[shared:] for i in tokd.inputs],
                                      [len(t) for t in tokd.targets])
        assert packed is not None
    if lane == "torch":  # a sliding-window model's masks are not the runner's to give: whole forwards
        runner.model.config.sliding_window = 4
        tokd = loglik.tokenize_examples(tok, examples[:1], 512)[0]
        assert runner.logits_packed(tokd.inputs[0][:2], [i[2:] for i in tokd.inputs], [1] * len(tokd.inputs)) is None
        pairs = zip(tokd.inputs, tokd.targets, strict=True)
        whole = np.array([loglik.score_request(runner, i, t)[0] for i, t in pairs])
        np.testing.assert_array_equal(loglik.score_example(runner, tokd)[:, 0], whole)


@pytest.mark.parametrize("section", [
    pytest.param({"schema": 1, "tasks": [], "runs": [None]}, id="run-null"),
    pytest.param({"schema": 1, "tasks": [], "runs": ["x"]}, id="run-string"),
    pytest.param({"schema": 1, "tasks": [], "runs": [{"task": "t", "variant": "base", "runner": "ort", "scores": [],
                                                      "seconds": [None]}]}, id="seconds-list"),
    pytest.param({"schema": 1, "tasks": [{"task": "t", "name": "t", "metrics": [["acc"]], "examples": 0,
                                          "outline": [], "outline_sha256": "", "requests_sha256": "",
                                          "data_sha256": ""}], "runs": []}, id="unhashable-metric"),
])
def test_malformed_task_sections_are_named_not_crashed(section: dict) -> None:
    """Found by the results fuzz test (tests/test_hostile_inputs.py): a run that is not an object
    used to raise AttributeError; a list as a metric name TypeError."""
    from evalsuite.gate.task_results import section_problem

    problem = section_problem(section)
    assert isinstance(problem, str) and problem.startswith("tasks.")
