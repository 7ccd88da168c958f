"""Where a run's wall time goes: an `evalsuite` command timed stage by stage from its plain progress
lines, as the parent receives them (`[gate] LABEL: start` ... `[gate] LABEL: done in N s`).

The parent timestamps every line on arrival, so the stages' seconds come from one clock with
sub-second resolution (the child's own "done in N s" is rounded to whole seconds). What comes before
the first stage (interpreter start, imports, argument and suite checks, preflight) is `before_first`;
what comes after the last (gate checks, reports, writing results) is `after_last`. The first stage
that scores (`score ...` or `task ...`) marks the time to the first window.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LINE = re.compile(r"^\[[\w-]+\] (?P<label>.+?): (?P<kind>start|done in \d+ s)")
SCORING = ("score ", "task ")


@dataclass(frozen=True)
class Stage:
    label: str
    seconds: float


@dataclass(frozen=True)
class TimedRun:
    seconds: float  # the whole process, launch to exit
    exit: int
    before_first: float  # launch -> the first stage's start line
    to_first_window: float | None  # launch -> the first scoring stage's start line
    after_last: float  # the last stage's end -> exit
    stages: list[Stage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TimedRun:
        return cls(**{**d, "stages": [Stage(**s) for s in d.get("stages", [])]})


def parse(events: list[tuple[float, str]], total: float, exit_code: int) -> TimedRun:
    """Stages from (seconds since launch, stderr line) pairs; heartbeats and other lines are skipped."""
    open_at: dict[str, float] = {}
    stages: list[Stage] = []
    first = first_window = None
    last_end = 0.0
    for t, line in events:
        m = LINE.match(line)
        if m is None:
            continue
        label = m["label"]
        if m["kind"] == "start":
            open_at[label] = t
            first = t if first is None else first
            if first_window is None and label.startswith(SCORING):
                first_window = t
        elif label in open_at:
            stages.append(Stage(label, t - open_at.pop(label)))
            last_end = t
    return TimedRun(total, exit_code, first if first is not None else total, first_window,
                    total - last_end if stages else 0.0, stages)


def timed(args: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> TimedRun:
    """Run `python -m evalsuite ARGS --progress plain` and time it stage by stage."""
    cmd = [sys.executable, "-m", "evalsuite", *args, "--progress", "plain"]
    # No heartbeats: they are skipped anyway, and one hour between them keeps the child's thread asleep.
    full_env = {**(env if env is not None else os.environ), "EVALSUITE_PROGRESS_INTERVAL": "3600"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env,
                            cwd=cwd)
    assert proc.stderr is not None
    events = [(time.perf_counter() - start, line.rstrip("\n")) for line in proc.stderr]
    code = proc.wait()
    return parse(events, time.perf_counter() - start, code)


def stage_lines(name: str, run: TimedRun, top: int = 6) -> list[str]:
    """'NAME: 125.3 s (exit 0): before the first stage 3.1 s, LABEL 40.2 s, ..., after the last 1.0 s'."""
    parts = [f"before the first stage {run.before_first:.1f} s"]
    parts += [f"{s.label} {s.seconds:.1f} s" for s in sorted(run.stages, key=lambda s: -s.seconds)[:top]]
    rest = sum(s.seconds for s in sorted(run.stages, key=lambda s: -s.seconds)[top:])
    if rest:
        parts.append(f"{len(run.stages) - top} more stages {rest:.1f} s")
    parts.append(f"after the last {run.after_last:.1f} s")
    return [f"{name}: {run.seconds:.1f} s (exit {run.exit}); " + "; ".join(parts)]


def gate_timing(args: list[str]) -> dict[str, Any]:
    """`evalsuite gate ARGS` from an empty cache, then again warm, each timed stage by stage."""
    import tempfile

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "EVALSUITE_CACHE": cache}
        for label in ("cold", "warm"):
            run = timed(["gate", *args], env)
            # a timing of a run that failed early means nothing: the exit travels with it
            out[f"{label}_seconds"], out[f"{label}_exit"], out[label] = run.seconds, run.exit, run.to_json()
    return out


STARTUP_TOKENS = 5120  # the case: 5,119 WikiText-2 targets, window 512, stride 256, ORT fp32 only
TARGET_FIRST_WINDOW_S = 2.0


def startup_suite(source: str, tokens: int) -> str:
    """A suite of the base model's ORT fp32 lane alone on the first `tokens` WikiText-2 tokens."""
    return (f"[model]\nsource = {json.dumps(source)}\n\n[eval]\ndatasets = [\"wikitext2\"]\nwindow = 512\n"
            f"stride = 256\nmax_tokens = {tokens}\nbos = false\nrunners = [\"ort\"]\n")


def startup(source: str, tokens: int = STARTUP_TOKENS, runs: int = 3) -> dict[str, Any]:
    """A warm ORT-only run's time to its first window and its whole process: one run to warm the
    caches, then `runs` timed ones; the fastest of each (the machine's noise only ever adds time)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "startup.toml"
        cfg.write_text(startup_suite(source, tokens))
        cmd = ["eval", "--config", str(cfg), "--json-out", str(Path(tmp) / "startup.json")]
        warmup = timed(cmd, _no_journal(Path(tmp) / "warmup"))
        if warmup.exit != 0:
            return {"error": f"warm-up run exited {warmup.exit}", "tokens": tokens}
        timed_runs = [timed(cmd, _no_journal(Path(tmp) / f"run{i}")) for i in range(runs)]
    first = [r.to_first_window for r in timed_runs if r.to_first_window is not None]
    best = min(timed_runs, key=lambda r: r.seconds)
    return {"tokens": tokens, "runs": runs, "seconds": best.seconds, "to_first_window": min(first) if first else None,
            "exit": max(r.exit for r in timed_runs), "fastest": best.to_json()}


def _no_journal(root: Path) -> dict[str, str]:
    """An environment whose cache holds this machine's models, builds and token streams (linked) but
    an empty per-window journal: a warm run that still scores every window, as a first run would."""
    from evalsuite.cache import cache_root

    real = cache_root()
    (root / "journal").mkdir(parents=True)
    for kind in ("models", "onnx", "awq", "tokens"):
        (real / kind).mkdir(parents=True, exist_ok=True)
        (root / kind).symlink_to(real / kind, target_is_directory=True)
    return {**os.environ, "EVALSUITE_CACHE": str(root)}


def startup_lines(s: dict[str, Any]) -> list[str]:
    if "error" in s:
        return [f"startup: not measured ({s['error']})"]
    first = s["to_first_window"]
    verdict = "" if first is None else \
        f" ({'meets' if first <= TARGET_FIRST_WINDOW_S else 'MISSES'} the {TARGET_FIRST_WINDOW_S:.0f} s target)"
    head = (f"startup (warm, ORT fp32 lane alone, {s['tokens'] - 1:,} WikiText-2 targets, fastest of {s['runs']}): "
            f"first window after {first:.2f} s{verdict}, whole process {s['seconds']:.2f} s")
    return [head, *["  " + x for x in stage_lines("fastest run", TimedRun.from_json(s["fastest"]))]]
