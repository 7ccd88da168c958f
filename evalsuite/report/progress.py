"""Progress for logs (no terminal): one line per stage start and end, and while a stage runs a
heartbeat with done/total, rate and ETA, so that no stage is silent for more than
`EVALSUITE_PROGRESS_INTERVAL` seconds (default 30). The heartbeat is due after 80 % of it (24 s):
the slack absorbs wake-up latency on a loaded machine, where a C call holding the GIL (the
tokenizer) can delay the thread (a 2-core box at load 19 printed up to 3.8 s late).

    [eval] awq-b32-acc4 AWQ search: 12/30 layers, 71 s, 0.17 layers/s, ETA 105 s

A background thread prints the heartbeat, so a stage without advance calls (an ONNX builder
subprocess, a GGUF export) still shows it is alive. `make_progress()` picks rich bars on a terminal,
these lines otherwise, or nothing (`--progress none` / `--quiet`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

from evalsuite.errors import UsageError
from evalsuite.stages import NullProgress

DEFAULT_INTERVAL = 30.0
PERIOD = 0.8  # fraction of the interval after which a heartbeat is due
MODES = ("auto", "rich", "plain", "none")


def heartbeat_interval() -> float:
    raw = os.environ.get("EVALSUITE_PROGRESS_INTERVAL", "")
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        raise UsageError(f"EVALSUITE_PROGRESS_INTERVAL must be seconds between 0.1 and 3600, got '{raw}'; "
                         "unset it for the default 30")
    return value


class PlainProgress:
    """suite.Progress as plain log lines (thread-safe; flushes every line)."""

    def __init__(self, prefix: str = "eval", stream: TextIO | None = None, interval: float | None = None) -> None:
        self.prefix, self.stream = prefix, stream or sys.stderr
        self.interval = interval if interval is not None else heartbeat_interval()
        self.period = PERIOD * self.interval  # a line is due after this much silence
        self.lock = threading.Lock()
        self.label, self.total, self.unit = "", 0, ""
        self.done, self.t0, self.last = 0, 0.0, 0.0
        self.halt = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, label: str, total: int, unit: str = "") -> None:
        self.stop()
        with self.lock:
            self.label, self.total, self.unit = label, max(0, int(total)), unit
            self.done, self.t0 = 0, time.monotonic()
            self.last = self.t0
        self._print(f"{label}: start" + (f" ({self.total:,} {unit})".rstrip() if self.total else ""))
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._beat_loop, name="evalsuite-heartbeat", daemon=True)
        self.thread.start()

    def advance(self, n: int) -> None:
        with self.lock:
            self.done += n
            due = time.monotonic() - self.last >= self.period
        if due:
            self._beat()

    def stop(self) -> None:
        thread, self.thread = self.thread, None
        if thread is None:
            return
        self.halt.set()
        thread.join()
        elapsed = time.monotonic() - self.t0
        count = f", {self.done:,}/{self.total:,} {self.unit}".rstrip() if self.total else ""
        self._print(f"{self.label}: done in {elapsed:.0f} s{count}")

    def _beat_loop(self) -> None:
        while True:
            with self.lock:
                wait = self.last + self.period - time.monotonic()
            if self.halt.wait(max(0.05, wait)):
                return
            with self.lock:
                due = time.monotonic() - self.last >= self.period
            if due:
                self._beat()

    def _beat(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.last = now
            line = status_line(self.label, self.done, self.total, self.unit, now - self.t0)
        self._print(line)

    def _print(self, message: str) -> None:
        print(f"[{self.prefix}] {message}", file=self.stream, flush=True)


def status_line(label: str, done: int, total: int, unit: str, elapsed: float) -> str:
    """'label: 12/30 layers, 71 s, 0.17 layers/s, ETA 105 s' (no count known: 'label: running, 71 s')."""
    if total <= 0:
        return f"{label}: running, {elapsed:.0f} s"
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{label}: {done:,}/{total:,} {unit}".rstrip(), f"{elapsed:.0f} s"]
    if rate > 0:
        parts += [f"{rate:.3g} {unit or 'units'}/s", f"ETA {max(0.0, (total - done) / rate):.0f} s"]
    else:
        parts.append("ETA unknown")
    return ", ".join(parts)


def make_progress(mode: str, prefix: str = "eval") -> Any:
    """rich bars on a terminal (auto), log lines without one, or nothing."""
    if mode not in MODES:
        raise UsageError(f"--progress must be one of {', '.join(MODES)}, got '{mode}'")
    interval = heartbeat_interval()
    rich = mode == "rich" or (mode == "auto" and sys.stderr.isatty())
    third_party_bars(rich)
    if mode == "none":
        return NullProgress()
    if rich:
        from evalsuite.report import terminal

        return terminal.RichProgress(terminal.console(stderr=True))
    return PlainProgress(prefix, interval=interval)


def third_party_bars(on: bool) -> None:
    """tqdm bars of libraries (hub downloads, the GGUF export) on a terminal; in a log they are one
    endless carriage-return line, so there the stage heartbeats replace them. Set before the
    libraries are imported; a value the user exported wins."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "0" if on else "1")
    if not on:
        os.environ.setdefault("TQDM_DISABLE", "1")
