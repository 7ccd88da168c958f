"""Interruption (kill -9 mid-run, then resume), determinism, atomic result files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _sigint_default() -> None:
    """A shell's background job (`pytest &` without job control) starts with SIGINT ignored, and
    Python keeps an ignored SIGINT ignored: the run under test would never see the Ctrl-C a user's
    foreground run gets (measured: the SIGINT test exited 0 under `nohup pytest &`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def evalsuite(args: list[str], cache: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EVALSUITE_CACHE": str(cache), "EVALSUITE_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "evalsuite", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default if os.name == "posix" else None)


def finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]


def journal_records(cache: Path) -> int:
    files = list((cache / "journal").glob("*.nll")) if (cache / "journal").is_dir() else []
    return sum(f.stat().st_size for f in files)


def test_kill_9_then_resume_gives_identical_numbers(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    args = ["eval", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset", "wikitext2",
            "--max-tokens", "6000", "--window", "64", "--stride", "8", "--threads", "1"]
    cache = tmp_path / "cache"
    proc = evalsuite([*args, "--json-out", str(tmp_path / "killed.json")], cache, data_dir)
    deadline = time.monotonic() + 300
    while journal_records(cache) < 20 * (8 + 8 * 8) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.json").exists()  # no result file that looks complete

    finish(evalsuite([*args, "--json-out", str(tmp_path / "resumed.json")], cache, data_dir))
    finish(evalsuite([*args, "--fresh", "--json-out", str(tmp_path / "fresh.json")], cache, data_dir))
    finish(evalsuite([*args, "--fresh", "--json-out", str(tmp_path / "again.json")], cache, data_dir))
    resumed, fresh, again = (json.loads((tmp_path / f"{n}.json").read_text())["runs"][0]
                             for n in ("resumed", "fresh", "again"))
    assert 0 < resumed["reused_tokens"] < resumed["tokens_scored"]
    assert resumed["ppl"] == fresh["ppl"] == again["ppl"]  # bit for bit
    assert resumed["nll_sum"] == fresh["nll_sum"]


def test_repeated_run_reuses_everything(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    args = ["eval", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset", "ptb",
            "--max-tokens", "600", "--window", "64", "--stride", "32"]
    for name in ("one", "two"):
        finish(evalsuite([*args, "--json-out", str(tmp_path / f"{name}.json")], tmp_path / "c", data_dir))
    one, two = (json.loads((tmp_path / f"{n}.json").read_text())["runs"][0] for n in ("one", "two"))
    assert one["reused_tokens"] == 0 and two["reused_tokens"] == two["tokens_scored"] == 599
    assert one["ppl"] == two["ppl"]


def test_torn_journal_tail_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from evalsuite.data.windows import plan_windows
    from evalsuite.scoring.journal import Journal

    windows = plan_windows(40, 8, 4)
    path = tmp_path / "j.nll"
    j = Journal(path, windows)
    j.append(0, np.arange(8, dtype=np.float64))
    j.append(1, np.ones(4))
    j.close()
    with open(path, "ab") as fh:
        fh.write(b"\x02\x00\x00\x00\x00\x00\x00\x00\x01\x02")  # window 2, cut short
    again = Journal(path, windows)
    assert sorted(again.done) == [0, 1] and again.done[0].tolist() == list(range(8))
    again.append(2, np.zeros(4))
    again.close()
    assert sorted(Journal(path, windows).done) == [0, 1, 2]


def test_shards_merge_bit_for_bit(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.cli import main

    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    args = ["eval", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset", "wikitext2",
            "--dataset", "ptb", "--max-tokens", "900", "--window", "64", "--stride", "48", "--fresh"]
    assert main([*args, "--json-out", str(tmp_path / "full.json")]) == 0
    for i in range(3):
        assert main([*args, "--shard", f"{i}/3", "--json-out", str(tmp_path / f"s{i}.json")]) == 0
    shard0 = json.loads((tmp_path / "s0.json").read_text())
    assert shard0["complete"] is False and shard0["shard"] == {"index": 0, "count": 3}
    shards = [str(tmp_path / f"s{i}.json") for i in (2, 0, 1)]
    assert main(["merge", *shards, "--json-out", str(tmp_path / "merged.json")]) == 0
    full = json.loads((tmp_path / "full.json").read_text())["runs"]
    merged = json.loads((tmp_path / "merged.json").read_text())["runs"]
    for a, b in zip(full, merged, strict=True):
        assert (a["dataset"], a["tokens_scored"], a["windows"]) == (b["dataset"], b["tokens_scored"], b["windows"])
        assert a["ppl"] == b["ppl"] and a["nll_sum"] == b["nll_sum"]  # bit for bit
    assert main(["merge", *shards[:2], "--json-out", str(tmp_path / "bad.json")]) == 2  # incomplete set


def test_nan_logits_fail_the_run_and_name_the_window(tmp_path: Path, data_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from tiny import make_tiny_llama, make_tiny_tokenizer

    from evalsuite.cli import main

    model = make_tiny_llama()
    with torch.no_grad():
        model.lm_head.weight[7] = float("inf")  # every logit row gets an Inf (and Inf-Inf = NaN)
    model.save_pretrained(tmp_path / "nan-model")
    make_tiny_tokenizer().save_pretrained(tmp_path / "nan-model")
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "c"))
    out = tmp_path / "r.json"
    code = main(["eval", "--model", str(tmp_path / "nan-model"), "--runner", "torch", "--dataset", "ptb",
                 "--max-tokens", "100", "--window", "32", "--stride", "32", "--data-dir", str(data_dir),
                 "--json-out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "non-finite logits" in err and "window 0" in err
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and doc["runs"] == []
