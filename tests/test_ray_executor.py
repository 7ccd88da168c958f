"""`eval|gate --executor ray --shards N` on a local Ray cluster (`ray.init(num_cpus=2)`) with the tiny CI
suite (tests/ci_suite.py): the merged numbers, accuracy tasks included, are the unsharded run's to the
last bit; a Ray worker killed mid-shard (SIGKILL, after its shard had scored windows) is run again and
the gate's result is still exact; a shard that fails for good fails the command with its error and no
result file (never a partial PASS); every misuse is one line, exit 2, before any model work."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from evalsuite.cli import main

REPO = Path(__file__).resolve().parent.parent
# The kill tests score 3,000 tokens (the suite: 900): a shard then scores for seconds, and the kill lands
# inside its scoring, after its first window is journaled.
LONGER = ("--max-tokens", "3000")
TASKS = '[[tasks]]\nname = "arc_easy"\nlimit = 6\n[task_thresholds]\nmax_acc_drop = 1.0\n'  # 3 examples a shard


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster of 2 CPUs; its workers import this checkout."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'evalsuite[ray]')")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *([before] if before else [])])
    with warnings.catch_warnings():  # Ray 2.5x: a tip about a future default for num_gpus=0 tasks
        warnings.simplefilter("ignore", FutureWarning)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture
def cache(prepared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The driver's cache: a copy of the prepared one, as $EVALSUITE_CACHE."""
    folder = tmp_path / "driver-cache"
    shutil.copytree(prepared_cache, folder, symlinks=True)
    monkeypatch.setenv("EVALSUITE_CACHE", str(folder))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return folder


@pytest.fixture(scope="module")
def tasks_suite(ci_suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CI suite plus an accuracy task: the same prepared cache key (tasks are not cached)."""
    folder = tmp_path_factory.mktemp("ray-tasks-suite")
    shutil.copy(ci_suite.with_name("corpus.txt"), folder / "corpus.txt")
    (folder / "suite.toml").write_text(ci_suite.read_text() + TASKS)
    return folder / "suite.toml"


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """Everything but wall times (and what they derive): runs, tasks, parity, binding, checks."""
    drop = ("seconds", "tokens_per_s", "reused_tokens")
    out = {k: doc.get(k) for k in ("parity", "binding", "errors", "complete", "checks", "passed")}
    out["runs"] = [{k: v for k, v in r.items() if k not in drop} for r in doc["runs"]]
    if "tasks" in doc:
        out["tasks"] = {**doc["tasks"], "runs": [{k: v for k, v in r.items() if k != "seconds"}
                                                 for r in doc["tasks"]["runs"]]}
    return out


def unsharded(command: str, suite: Path, prepared: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch,
              *extra: str) -> dict:
    """The same command scored here, in one run, on its own copy of the prepared cache."""
    folder = tmp / f"single-{command}"
    shutil.copytree(prepared, folder, symlinks=True)
    with monkeypatch.context() as m:
        m.setenv("EVALSUITE_CACHE", str(folder))
        out = tmp / f"single-{command}.json"
        assert main([command, "--config", str(suite), *extra, "-q", "--json-out", str(out)]) == 0
    doc: dict = json.loads(out.read_text())
    return doc


def run_id(err: str) -> str:
    found = re.search(r"ray: run (\w+)", err)
    assert found, err
    return found.group(1)


def one_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("evalsuite: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_ray_shards_merge_to_the_unsharded_numbers_tasks_included(
        ray_cluster: Any, cache: Path, tasks_suite: Path, prepared_cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    want = unsharded("eval", tasks_suite, prepared_cache, tmp_path, monkeypatch)
    capsys.readouterr()
    before = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))
    out = tmp_path / "ray.json"
    assert main(["eval", "--config", str(tasks_suite), "--executor", "ray", "--shards", "2", "--json-out",
                 str(out)]) == 0
    err = capsys.readouterr().err
    got = json.loads(out.read_text())
    assert got["merged_from"] == 2 and got["complete"] is True and got["shard"] is None
    assert {(r["variant"], r["runner"]) for r in got["runs"]} == {("base", "torch"), ("base", "ort"), ("rtn", "ort")}
    assert len(got["tasks"]["runs"]) == 3 and all(r["examples"] == 6 for r in got["tasks"]["runs"])
    assert comparable(got) == comparable(want)  # bit for bit: NLL sums, PPL, KLD, task scores and metrics
    for i in range(2):
        assert re.search(rf"shard {i}/2 scored on .* \(CPU 1\)", err), err  # the default request reached Ray
    assert "built" not in err  # the seeded caches held everything: no shard built or tokenized
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) == before  # object store: untouched
    assert not Path(tempfile.gettempdir(), f"evalsuite-ray-{run_id(err)}").exists()  # worker caches removed


class Killer(threading.Thread):
    """SIGKILLs the Ray worker running shard `shard` once its `evalsuite eval` child has journaled a window
    (mid-shard), then watches for the retry's new child."""

    def __init__(self, shard: str) -> None:
        super().__init__(daemon=True)
        self.shard, self.done = shard, threading.Event()
        self.victim: psutil.Process | None = None
        self.retried = False

    def children(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if "evalsuite" in cmd and "eval" in cmd and self.shard in cmd and p.pid != os.getpid():
                found.append(p)
        return found

    def scored_a_window(self, child: psutil.Process) -> bool:
        try:
            journal = Path(child.environ()["EVALSUITE_CACHE"]) / "journal"
            return child.is_running() and any(f.stat().st_size > 0 for f in journal.glob("*.nll"))
        except (psutil.Error, KeyError, OSError):
            return False

    def run(self) -> None:
        while not self.done.is_set():
            for child in self.children():
                if self.victim is None and self.scored_a_window(child):
                    self.victim = child
                    child.parent().kill()  # the Ray worker; its child dies with it (PR_SET_PDEATHSIG)
                elif self.victim is not None and child.pid != self.victim.pid:
                    self.retried = True
                    return
            time.sleep(0.05)


def test_a_worker_killed_mid_shard_is_retried_and_the_gate_is_exact(
        ray_cluster: Any, cache: Path, ci_suite: Path, prepared_cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    want = unsharded("gate", ci_suite, prepared_cache, tmp_path, monkeypatch, *LONGER)
    assert want["passed"] is True and want["runs"][0]["tokens_scored"] > 2000
    capsys.readouterr()
    killer = Killer("0/2")
    killer.start()
    out = tmp_path / "gate.json"
    try:
        code = main(["gate", "--config", str(ci_suite), *LONGER, "--executor", "ray", "--shards", "2",
                     "--worker-cache", "shared", "--cpus-per-shard", "0.5", "--json-out", str(out)])
    finally:
        killer.done.set()
        killer.join(10)
    err = capsys.readouterr().err
    assert killer.victim is not None and killer.retried, "shard 0's worker was not killed mid-shard and retried"
    _, alive = psutil.wait_procs([killer.victim], timeout=15)
    assert not alive  # the orphaned child died with its worker
    assert code == 0, err
    assert comparable(json.loads(out.read_text())) == comparable(want)  # runs, checks, PASS: bit for bit
    assert re.search(r"shard 0/2 scored on .* \(CPU 0\.5\)", err), err  # the request reached Ray as given
    assert not Path(tempfile.gettempdir(), f"evalsuite-ray-{run_id(err)}").exists()


def test_a_shard_lost_for_good_fails_the_gate_with_no_result(
        ray_cluster: Any, cache: Path, ci_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    killer = Killer("1/2")
    killer.start()
    outs = [tmp_path / "gate.json", tmp_path / "gate.xml", tmp_path / "gate.md"]
    try:
        code = main(["gate", "--config", str(ci_suite), *LONGER, "--executor", "ray", "--shards", "2", "--retries", "0",
                     "--json-out", str(outs[0]), "--junit", str(outs[1]), "--markdown", str(outs[2])])
    finally:
        killer.done.set()
        killer.join(10)
    captured = capsys.readouterr()
    assert killer.victim is not None
    assert code == 1
    one_line(captured.err, "shard 1/2 failed for good", "Ray ran it 1 time(s)")
    assert not any(p.exists() for p in outs) and "PASS" not in captured.out
    # the killed task and the cancelled one never reached their cleanup: the driver swept their caches
    assert not Path(tempfile.gettempdir(), f"evalsuite-ray-{run_id(captured.err)}").exists()


def test_a_shard_that_fails_fails_the_run_with_its_own_error(
        ray_cluster: Any, cache: Path, ci_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"  # 40 tokens: one window, so shard 1 of 2 has nothing to score
    code = main(["eval", "--config", str(ci_suite), "--executor", "ray", "--shards", "2", "--max-tokens", "40",
                 "--json-out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    one_line(err, "shard 1/2 failed for good", "--shard 1/2 leaves 0 token(s)", "exit 2 on")
    assert not out.exists() and not Path(tempfile.gettempdir(), f"evalsuite-ray-{run_id(err)}").exists()


def test_a_request_no_node_can_hold_is_refused(ray_cluster: Any, cache: Path, ci_suite: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    for flag, value, message in (("--gpus-per-shard", "1", "asks for 1 GPU but the largest node of the Ray "
                                  "cluster has 0"),
                                 ("--cpus-per-shard", "3", "asks for 3 CPU but the largest node of the Ray "
                                  "cluster has 2")):
        assert main(["eval", "--config", str(ci_suite), "--executor", "ray", "--shards", "2", flag, value,
                     "--json-out", str(out)]) == 2
        one_line(capsys.readouterr().err, message)
    assert not out.exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(("argv", "message"), [
    pytest.param(["--shards", "2"], "--shards needs --executor ray", id="shards-without-executor"),
    pytest.param(["--address", "auto"], "--address needs --executor ray", id="address-without-executor"),
    pytest.param(["--worker-cache", "shared"], "--worker-cache needs --executor ray", id="cache-without-executor"),
    pytest.param(["--executor", "ray"], "needs --shards N", id="no-shards"),
    pytest.param(["--executor", "ray", "--shards", "0"], "--shards must be at least 1", id="zero-shards"),
    pytest.param(["--executor", "ray", "--shards", "-3"], "--shards must be at least 1", id="negative-shards"),
    pytest.param(["--executor", "ray", "--shards", "2", "--shard", "0/2"], "does not take --shard", id="with-shard"),
    pytest.param(["--executor", "ray", "--shards", "2", "--fresh"], "does not take --fresh", id="fresh"),
    pytest.param(["--executor", "ray", "--shards", "2", "--retries", "-1"], "--retries must be at least 0",
                 id="negative-retries"),
    pytest.param(["--executor", "ray", "--shards", "2", "--address", "nowhere"], "is not HOST:PORT",
                 id="address-not-host-port"),
    pytest.param(["--executor", "ray", "--shards", "2", "--address", "127.0.0.1:{port}"],
                 "no Ray cluster answers there", id="unreachable-address"),
    pytest.param(["--executor", "rays"], "invalid choice", id="unknown-executor"),
])
def test_misuse_is_one_line_exit_2_before_model_work(argv: list[str], message: str, ci_suite: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    argv = [a.replace("{port}", str(closed_port())) for a in argv]
    for command in ("eval", "gate"):
        assert main([command, "--config", str(ci_suite), *argv, "--json-out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_without_the_extra_ray_is_one_line_exit_2(ci_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is not installed
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    assert main(["gate", "--config", str(ci_suite), "--executor", "ray", "--shards", "2"]) == 2
    err = capsys.readouterr().err
    assert "needs Ray, which is not installed" in err and "evalsuite[ray]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cache").exists()


def test_a_cache_prepared_for_another_suite_is_refused(ci_suite: Path, cache: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Checked by the driver (prepare.verify) before Ray is joined: no cluster is needed to refuse it."""
    pytest.importorskip("ray")
    other = tmp_path / "other.toml"
    shutil.copy(ci_suite.with_name("corpus.txt"), tmp_path / "corpus.txt")
    other.write_text(ci_suite.read_text().replace('method = "rtn"', 'method = "rtn"\nblock_size = 64'))
    assert main(["eval", "--config", str(other), "--executor", "ray", "--shards", "2"]) == 2
    one_line(capsys.readouterr().err, "was prepared for another suite")
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "empty"))
    assert main(["gate", "--config", str(ci_suite), "--executor", "ray", "--shards", "2"]) == 2
    one_line(capsys.readouterr().err, "holds no prepared suite")


def test_shard_jobs_get_every_run_option_as_given() -> None:
    """The options a shard job is given parse back to the driver's own (a new run option travels too)."""
    import argparse

    from evalsuite.cli_args import add_run_args, build_parser
    from evalsuite.cli_ray import DRIVER_SET, shard_argv

    argv = ["eval", "--model", "m", "--dataset", "wikitext2", "--dataset", "x.toml:test", "--text", "a b.txt",
            "--per-document", "--no-bos", "--window", "64", "--stride", "32", "--max-tokens", "100", "--runner", "ort",
            "--runner", "torch", "--task", "arc_easy", "--limit", "3", "--provider", "cpu", "--threads", "2",
            "--batch-size", "4", "--torch-device", "cpu"]
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(["eval", *shard_argv(args)])
    probe = argparse.ArgumentParser(add_help=False)
    add_run_args(probe)
    defaults = {a.dest: a.default for a in probe._actions if a.dest not in DRIVER_SET}
    assert {d: getattr(again, d) for d in defaults} == {d: getattr(args, d) for d in defaults}
    unset = [d for d, default in defaults.items() if getattr(args, d) == default]
    assert not unset, f"the test gives every option a shard job is passed; add {unset}"
    assert shard_argv(build_parser().parse_args(["eval"])) == []
