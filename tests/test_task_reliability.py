"""Accuracy tasks under sharding, interruption and edits: `merge` of `--shard i/n` task sections equals
the unsharded run bit for bit, a forged shard is refused (one line, exit 2), kill -9 mid-task resumes
per example to identical scores, a corrupted journal record is rescored, and `gate --results` fails a
document whose task numbers were edited. The real CLI in a subprocess, on the tiny random Llama.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
Doc = dict[str, Any]
LIMIT = 6
# torch reference, ORT base and one int4 variant: parity and paired metrics are merged too.
SUITE = """[model]
source = "{model}"
[eval]
datasets = []
runners = {runners}
window = 64
stride = 32
{variants}[thresholds]
max_top1_drop = 1.0
[[tasks]]
name = "arc_easy"
limit = {limit}
[[tasks]]
name = "lambada_openai"
limit = {limit}
[task_thresholds]
max_acc_drop = 1.0
"""


def cli(args: list[str], cache: Path, data_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVALSUITE_CACHE": str(cache), "EVALSUITE_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(REPO)}
    env.pop("EVALSUITE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "evalsuite", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-2000:]


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in err, err


def suite_file(folder: Path, model: Path, runners: str = '["torch", "ort"]', limit: int = LIMIT) -> Path:
    path = folder / "suite.toml"
    variants = '[[variants]]\nname = "rtn"\nmethod = "rtn"\nblock_size = 32\naccuracy_level = 4\n'
    path.write_text(SUITE.format(model=model, runners=runners, limit=limit,
                                 variants=variants if "ort" in runners else ""))
    return path


def read(path: Path) -> Doc:
    out: Doc = json.loads(path.read_text())
    return out


@pytest.fixture(scope="module")
def sharded(tiny_llama_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An unsharded run and its two shards (scored again: the journal is emptied in between)."""
    folder = tmp_path_factory.mktemp("task-shards")
    cache, suite = folder / "cache", suite_file(folder, tiny_llama_dir)
    ok(cli(["eval", "--config", str(suite), "-q", "--json-out", str(folder / "full.json")], cache, data_dir))
    for journal in (cache / "journal").glob("*"):
        journal.unlink()  # keep the ONNX builds, score every example again in the shards
    for i in range(2):
        ok(cli(["eval", "--config", str(suite), "-q", "--shard", f"{i}/2", "--json-out", str(folder / f"s{i}.json")],
               cache, data_dir))
    return {"folder": folder, "cache": cache, "suite": suite, "data_dir": data_dir}


def merge(sharded: dict[str, Any], docs: list[Doc], name: str = "merged.json") -> subprocess.CompletedProcess[str]:
    folder = sharded["folder"]
    paths = []
    for i, doc in enumerate(docs):
        paths.append(folder / f"forged-{i}.json")
        paths[-1].write_text(json.dumps(doc))
    return cli(["merge", *map(str, paths), "--json-out", str(folder / name)], sharded["cache"], sharded["data_dir"])


def test_task_shards_merge_bit_for_bit(sharded: dict[str, Any]) -> None:
    folder = sharded["folder"]
    s0, s1 = read(folder / "s0.json"), read(folder / "s1.json")
    assert s0["shard"] == {"index": 0, "count": 2} and "parity" not in s0["tasks"]
    assert all("metrics" not in r and r["indices"] == [0, 2, 4] and r["reused_examples"] == 0
               for r in s0["tasks"]["runs"])
    assert all(r["indices"] == [1, 3, 5] for r in s1["tasks"]["runs"])
    ok(cli(["merge", str(folder / "s1.json"), str(folder / "s0.json"), "--json-out", str(folder / "merged.json")],
           sharded["cache"], sharded["data_dir"]))
    full, merged = read(folder / "full.json")["tasks"], read(folder / "merged.json")["tasks"]
    # Exact equality is valid: the same machine and code score each example alone (no batching across
    # examples), JSON round-trips float64 exactly, and the metrics are derived by the same function.
    assert merged["tasks"] == full["tasks"]
    assert merged["parity"] == full["parity"] and len(full["parity"]) == 2
    assert len(merged["runs"]) == len(full["runs"]) == 6  # 2 tasks x (torch, ort, rtn)
    for a, b in zip(full["runs"], merged["runs"], strict=True):
        assert (a["task"], a["variant"], a["runner"], a["examples"]) == (b["task"], b["variant"], b["runner"], LIMIT)
        assert a["scores"] == b["scores"] and a["metrics"] == b["metrics"] and "indices" not in b
        assert a["forwarded_tokens"] == b["forwarded_tokens"]
    assert any("dacc" in r["metrics"] for r in merged["runs"])  # paired metrics of the variant
    gate = cli(["gate", "--config", str(sharded["suite"]), "--results", str(folder / "merged.json"), "--no-baseline"],
               sharded["cache"], sharded["data_dir"])
    ok(gate)


def _run(doc: Doc, task: str = "arc_easy", variant: str = "base", runner: str = "torch") -> Doc:
    runs = doc["tasks"]["runs"]
    out: Doc = next(r for r in runs if (r["task"], r["variant"], r["runner"]) == (task, variant, runner))
    return out


def _set(key: str, value: Any) -> Callable[[Doc, Doc], None]:
    def forge(s0: Doc, s1: Doc) -> None:
        _run(s0)[key] = value
    return forge


def _drop(key: str) -> Callable[[Doc, Doc], None]:
    def forge(s0: Doc, s1: Doc) -> None:
        del _run(s0)[key]
    return forge


def _other_indices(s0: Doc, s1: Doc) -> None:
    _run(s0)["indices"] = _run(s1)["indices"]


def _missing_run(s0: Doc, s1: Doc) -> None:
    s1["tasks"]["runs"].remove(_run(s1, "lambada_openai", "rtn", "ort"))


def _twice(s0: Doc, s1: Doc) -> None:
    s0["tasks"]["runs"].append(copy.deepcopy(_run(s0)))


def _other_limit(s0: Doc, s1: Doc) -> None:
    s1["tasks"]["tasks"][0]["limit"] = 7


def _other_outline(s0: Doc, s1: Doc) -> None:
    s1["tasks"]["tasks"][0]["outline_sha256"] = "0" * 64


def _lost_choice(s0: Doc, s1: Doc) -> None:
    _run(s0)["scores"][1].pop()


def _no_tasks(s0: Doc, s1: Doc) -> None:
    del s1["tasks"]


def _no_record_hash(s0: Doc, s1: Doc) -> None:
    del s0["tasks"]["tasks"][1]["requests_sha256"]


FORGERIES = {
    "other-shards-indices": (_other_indices, "holds examples [1, 3, 5], shard 0 of 2 of its 6 examples is [0, 2, 4]"),
    "duplicated-index": (_set("indices", [0, 2, 2]), "holds examples [0, 2, 2]"),
    "missing-indices": (_drop("indices"), "holds examples None"),
    "string-index": (_set("indices", ["0", 2, 4]), "holds examples ['0', 2, 4]"),
    "bool-index": (_set("indices", [False, 2, 4]), "holds examples [False, 2, 4]"),
    "float-index": (_set("indices", [0.0, 2, 4]), "holds examples [0.0, 2, 4]"),
    "run-missing-from-a-shard": (_missing_run, "task run lambada_openai/rtn/ort is in 1 of the 2 shards"),
    "run-twice": (_twice, "task run arc_easy/base/torch appears twice"),
    "other-task-record": (_other_limit, "shard 1/2 differs from shard 0/2 in task arc_easy.limit (6 vs 7)"),
    "forged-outline-hash": (_other_outline, "outline_sha256"),
    "record-without-requests-hash": (_no_record_hash, "a task record has no 'requests_sha256'"),
    "lost-choice-row": (_lost_choice, "an example's scores are not"),
    "string-seconds": (_set("seconds", "1.0"), "seconds is"),  # refused when read (task_results) or merged
    "negative-forwarded": (_set("forwarded_tokens", -1), "forwarded_tokens is -1"),
    "no-tasks-section": (_no_tasks, "shard 1/2 holds no tasks section"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forged_task_shard_is_refused(sharded: dict[str, Any], name: str) -> None:
    forge, needle = FORGERIES[name]
    s0, s1 = read(sharded["folder"] / "s0.json"), read(sharded["folder"] / "s1.json")
    forge(s0, s1)
    proc = merge(sharded, [s0, s1], f"{name}.json")
    one_line(proc, needle)
    assert not (sharded["folder"] / f"{name}.json").exists()


def _gate(sharded: dict[str, Any], doc: Doc, name: str) -> tuple[int, set[str]]:
    path, out = sharded["folder"] / f"{name}.json", sharded["folder"] / f"{name}-gate.json"
    path.write_text(json.dumps(doc))
    proc = cli(["gate", "--config", str(sharded["suite"]), "--results", str(path), "--no-baseline",
                "--json-out", str(out)], sharded["cache"], sharded["data_dir"])
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, {c["name"] for c in read(out)["checks"] if not c["passed"]}


def test_gate_fails_edited_task_numbers(sharded: dict[str, Any]) -> None:
    full = read(sharded["folder"] / "full.json")
    assert _gate(sharded, full, "as-scored") == (0, set())
    edited = copy.deepcopy(full)
    _run(edited, "arc_easy", "rtn", "ort")["metrics"]["acc"] += 0.5
    assert _gate(sharded, edited, "edited-acc") == (1, {"task_consistent"})
    dropped = copy.deepcopy(full)
    for run in dropped["tasks"]["runs"]:
        if run["task"] == "lambada_openai" and run["variant"] == "base":
            del run["scores"][2]  # one example gone from the base lanes
    code, failed = _gate(sharded, dropped, "dropped-example")
    assert code == 1 and "task_consistent" in failed


def task_journal_bytes(cache: Path) -> int:
    folder = cache / "journal"
    return sum(f.stat().st_size for f in folder.glob("task-*.ll")) if folder.is_dir() else 0


def test_kill_9_mid_task_then_resume_gives_identical_scores(tiny_llama_dir: Path, data_dir: Path,
                                                          tmp_path: Path) -> None:
    suite = suite_file(tmp_path, tiny_llama_dir, '["torch"]', limit=120)
    args = ["eval", "--config", str(suite), "--task", "arc_easy", "--threads", "1", "-q"]
    cache = tmp_path / "cache"
    env = {**os.environ, "EVALSUITE_CACHE": str(cache), "EVALSUITE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "evalsuite", *args, "--json-out", str(tmp_path / "killed.json")],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while task_journal_bytes(cache) < 20 * (8 + 16 * 4 + 8) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.json").exists()

    ok(cli([*args, "--json-out", str(tmp_path / "resumed.json")], cache, data_dir))
    ok(cli([*args, "--fresh", "--json-out", str(tmp_path / "fresh.json")], cache, data_dir))
    resumed, fresh = (read(tmp_path / f"{n}.json")["tasks"]["runs"][0] for n in ("resumed", "fresh"))
    assert 0 < resumed["reused_examples"] < resumed["examples"] == 120
    assert resumed["scores"] == fresh["scores"] and resumed["metrics"] == fresh["metrics"]  # bit for bit

    # A corrupted record (the last byte of example 0's scores) is discarded with a warning and rescored.
    (journal,) = (cache / "journal").glob("task-*.ll")
    n_choices = len(fresh["scores"][0])
    blob = bytearray(journal.read_bytes())
    blob[8 + 16 * n_choices - 1] ^= 0xFF
    journal.write_bytes(bytes(blob))
    again = cli([*args, "--json-out", str(tmp_path / "again.json")], cache, data_dir)
    ok(again)
    assert "corrupt record" in again.stderr and str(journal) in again.stderr
    rescored = read(tmp_path / "again.json")["tasks"]["runs"][0]
    assert rescored["reused_examples"] == 119
    assert rescored["scores"] == fresh["scores"] and rescored["metrics"] == fresh["metrics"]


def _first_run(f: Callable[[Doc], None]) -> Callable[[Doc], None]:
    return lambda doc: f(doc["tasks"]["runs"][0])


MALFORMED: dict[str, tuple[Callable[[Doc], None], int, str]] = {
    "no-scores": (_first_run(lambda r: r.pop("scores")), 2, "tasks.runs[0].scores is missing"),
    "string-loglik": (_first_run(lambda r: r["scores"][0][0].__setitem__(0, "a")), 2,
                      "tasks.runs[0].scores is not, per example, a list of [log-likelihood, greedy] numbers"),
    "outline-not-a-list": (lambda d: d["tasks"]["tasks"][0].__setitem__("outline", 5), 2,
                           "tasks.tasks[0].outline is missing or '5'"),
    "gold-out-of-range": (lambda d: d["tasks"]["tasks"][0]["outline"][0].__setitem__(0, 9), 2,
                          "tasks.tasks[0].outline is not a list of [gold, chars, bytes, single]"),
    "unknown-metric": (lambda d: d["tasks"]["tasks"][0].__setitem__("metrics", ["acc", "f1"]), 2,
                       "tasks.tasks[0].metrics names a metric outside"),
    "lost-choice-row": (_first_run(lambda r: r["scores"][0].pop()), 1, "3 scores for 4 choices"),
    "example-without-rows": (_first_run(lambda r: r["scores"].__setitem__(0, [])), 1, "0 scores for 4 choices"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_gate_refuses_or_fails_a_malformed_tasks_section(sharded: dict[str, Any], name: str) -> None:
    """A section the gate cannot read is a one-line exit 2; a readable one whose shapes are wrong fails
    `task_consistent` (exit 1); never an internal error."""
    forge, code, needle = MALFORMED[name]
    doc = read(sharded["folder"] / "full.json")
    assert len(_run(doc)["scores"][0]) == 4  # arc_easy's first example has 4 choices
    forge(doc)
    path, out = sharded["folder"] / f"{name}.json", sharded["folder"] / f"{name}-gate.json"
    path.write_text(json.dumps(doc))
    proc = cli(["gate", "--config", str(sharded["suite"]), "--results", str(path), "--no-baseline",
                "--json-out", str(out)], sharded["cache"], sharded["data_dir"])
    if code == 2:
        one_line(proc, needle)
        return
    assert proc.returncode == 1 and "internal error" not in proc.stderr, proc.stderr
    failed = {c["name"]: c["detail"] for c in read(out)["checks"] if not c["passed"]}
    assert needle in failed["task_consistent"], failed
