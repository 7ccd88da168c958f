"""Progress for logs: stage lines and heartbeats written while a stage runs, not only at the end."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalsuite.errors import UsageError
from evalsuite.report.progress import PlainProgress, make_progress, status_line
from evalsuite.stages import stage

REPO = Path(__file__).resolve().parent.parent
SUITE = """
[eval]
runners = ["ort"]

[[variants]]
name = "awq"
method = "awq"
block_size = 32

[variants.calibration]
samples = 2
seq_len = 32

[thresholds]
max_rel_dppl = 10.0
"""


@pytest.mark.parametrize(("done", "total", "elapsed", "want"), [
    pytest.param(12, 30, 71.0, "awq: 12/30 layers, 71 s, 0.169 layers/s, ETA 106 s", id="count"),
    pytest.param(0, 30, 5.0, "awq: 0/30 layers, 5 s, ETA unknown", id="nothing-done"),
    pytest.param(0, 0, 42.4, "awq: running, 42 s", id="no-total"),
])
def test_status_line(done: int, total: int, elapsed: float, want: str) -> None:
    assert status_line("awq", done, total, "layers", elapsed) == want


def test_heartbeat_without_advance_calls() -> None:
    """A stage with no advance calls (a builder subprocess) still prints from the background thread."""
    out = io.StringIO()
    progress = PlainProgress("eval", out, interval=0.1)
    with stage(progress, "build", 0):
        time.sleep(0.55)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[eval] build: start" and re.fullmatch(r"\[eval\] build: done in \d+ s", lines[-1])
    beats = [ln for ln in lines[1:-1] if re.fullmatch(r"\[eval\] build: running, \d+ s", ln)]
    assert 2 <= len(beats) == len(lines) - 2  # at most one per interval: ~5 in 0.55 s


def test_advance_prints_at_most_once_per_interval() -> None:
    out = io.StringIO()
    progress = PlainProgress("eval", out, interval=3600)
    progress.start("score", 100, "tok")
    for _ in range(100):
        progress.advance(1)
    progress.stop()
    assert out.getvalue().splitlines() == ["[eval] score: start (100 tok)", "[eval] score: done in 0 s, 100/100 tok"]


@pytest.mark.parametrize("value", ["0", "abc", "-1", "99999"])
def test_bad_interval_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EVALSUITE_PROGRESS_INTERVAL", value)
    with pytest.raises(UsageError, match="EVALSUITE_PROGRESS_INTERVAL"):
        make_progress("plain")


def test_log_file_shows_progress_during_the_build(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """The CLI with stdout/stderr to a file (as in CI): heartbeat lines of the ONNX build stage are in
    the file while the build still runs, and every stage has its start and end line."""
    log = tmp_path / "log.txt"
    (tmp_path / "s.toml").write_text(SUITE)
    env = {**os.environ, "EVALSUITE_CACHE": str(tmp_path / "cache"), "EVALSUITE_PROGRESS_INTERVAL": "0.3"}
    cmd = [sys.executable, "-m", "evalsuite", "eval", "--config", str(tmp_path / "s.toml"),
           "--model", str(tiny_llama_dir), "--runner", "ort", "--progress", "plain",
           "--dataset", "ptb", "--max-tokens", "64", "--window", "32", "--stride", "16", "--threads", "1",
           "--data-dir", str(data_dir)]
    build = "[eval] ORT base: fp32 ONNX build"
    seen_during = False
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        while proc.poll() is None:
            text = log.read_text()
            beats = [ln for ln in text.splitlines() if ln.startswith(build) and ": running, " in ln]
            if beats and f"{build}" in text and not any(ln.startswith(build) and "done in" in ln
                                                       for ln in text.splitlines()):
                seen_during = proc.poll() is None
                if seen_during:
                    break
            time.sleep(0.1)
        assert proc.wait(timeout=600) == 0, log.read_text()
    assert seen_during, log.read_text()
    text = log.read_text()
    assert re.search(r"^\[eval\] awq: AWQ search: done in \d+ s, (\d+)/\1 layers$", text, re.M), text
    for label in ("model ", "tokenize datasets", "ORT base: fp32 ONNX build", "awq: AWQ search",
                  "awq: int4 ONNX build", "score base/ort, awq · ptb"):
        assert re.search(rf"^\[eval\] {re.escape(label)}.*: start", text, re.M), text
        assert re.search(rf"^\[eval\] {re.escape(label)}.*: done in \d+ s", text, re.M), text


@pytest.mark.parametrize(("on", "hub", "tqdm"), [(True, "0", None), (False, "1", "1")], ids=["terminal", "log"])
def test_library_bars_follow_the_mode(on: bool, hub: str, tqdm: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.report.progress import third_party_bars

    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    third_party_bars(on)
    assert (os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"), os.environ.get("TQDM_DISABLE")) == (hub, tqdm)
    monkeypatch.setenv("TQDM_DISABLE", "0")  # what the user exported wins
    third_party_bars(False)
    assert os.environ["TQDM_DISABLE"] == "0"
