"""Per-window results persisted as scoring goes, so an interrupted run resumes where it stopped
and a repeated run with the same inputs scores nothing again.

One append-only file per (runner identity, token stream, window plan, evalsuite version, scoring
code fingerprint). Record layout, little endian: `int64 window index`, then `n_targets x width`
float64 per-token columns, row-major (n_targets is known from the plan; width from the columns the
lane keeps, see tokenstats.py), then an 8-byte blake2b digest of the index and the columns.
A record whose digest does not match is discarded (one warning line naming the file) and its
window scored again; a record cut short by `kill -9` is dropped. Each record is flushed and fsynced.

Any number of processes (shards or not) may share a journal: every read and append holds an
exclusive `filelock` on `<journal>.lock`, and appends go through O_APPEND, so records never
interleave and a reader never sees half a record from a live writer.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from evalsuite import __version__
from evalsuite.cache import cache_root, key_of
from evalsuite.data.windows import Window

FORMAT = 2
DIGEST = 8
# The code that computes what a record holds: a change to any of these never reuses old records.
# The runners are in it: how their logits are computed (the graph edit, packed requests) is too.
SCORING_CODE = ("data/windows.py", "scoring/lanes.py", "scoring/tokenstats.py", "scoring/metrics.py",
                "scoring/journal.py", "models/ort_runner.py", "models/torch_runner.py", "models/logits_tail.py")
_fingerprint: list[str] = []


def code_fingerprint() -> str:
    """sha256 over the source of the scoring code (memoised per process)."""
    if not _fingerprint:
        root = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for rel in SCORING_CODE:
            digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
        _fingerprint.append(digest.hexdigest())
    return _fingerprint[0]


def journal_path(identity: dict[str, Any], tokens: np.ndarray, windows: list[Window]) -> Path:
    bounds = np.asarray([(w.start, w.first_target, w.end) for w in windows], np.int64)
    plan = hashlib.sha256(bounds.tobytes()).hexdigest()
    toks = hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int64).tobytes()).hexdigest()
    key = {"runner": identity, "tokens": toks, "plan": plan, "evalsuite": __version__,
           "code": code_fingerprint(), "format": FORMAT}
    return cache_root() / "journal" / f"{key_of(key)}.nll"


def record_digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=DIGEST).digest()


class Journal:
    def __init__(self, path: Path, windows: list[Window], width: int = 1) -> None:
        self.path = path
        self.windows = windows
        self.width = width
        self.done: dict[int, np.ndarray] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(path) + ".lock")
        with self.lock:
            self._load()
        self.fh = open(path, "ab")  # noqa: SIM115 (closed in close()); O_APPEND: safe beside other writers

    def _load(self) -> None:
        """Load good records; rewrite the file without bad or torn ones (caller holds the lock)."""
        if not self.path.exists():
            return
        blob = self.path.read_bytes()
        good, bad, pos = [], 0, 0
        while pos + 8 <= len(blob):
            index = int(np.frombuffer(blob, "<i8", 1, pos)[0])
            if not 0 <= index < len(self.windows):
                bad += 1  # the framing cannot be trusted past a bad index
                break
            end = pos + 8 + 8 * self.windows[index].n_targets * self.width
            if end + DIGEST > len(blob):
                break  # torn tail (kill -9 mid-append): dropped silently
            if record_digest(blob[pos:end]) == blob[end : end + DIGEST]:
                if index not in self.done:
                    self.done[index] = np.frombuffer(blob, "<f8", (end - pos - 8) // 8, pos + 8).copy()
                good.append(blob[pos : end + DIGEST])
            else:
                bad += 1
            pos = end + DIGEST
        if bad:
            print(f"evalsuite: warning: journal {self.path} had {bad} corrupt record(s); discarded, "
                  "their windows are scored again", file=sys.stderr)
        if pos != len(blob) or bad:  # in place, not a rename: other writers keep appending to this file
            with open(self.path, "r+b") as fh:
                fh.write(b"".join(good))
                fh.truncate()
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, index: int, values: np.ndarray) -> None:
        """`values`: the window's float64 columns flattened row-major (n_targets x width)."""
        flat = np.asarray(values, "<f8").reshape(-1)
        body = np.int64(index).astype("<i8").tobytes() + flat.tobytes()
        with self.lock:
            self.fh.write(body + record_digest(body))
            self.fh.flush()
            os.fsync(self.fh.fileno())
        self.done[index] = flat

    def close(self) -> None:
        self.fh.close()
