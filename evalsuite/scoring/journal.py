"""Per-window results persisted as scoring goes, so an interrupted run resumes where it stopped
and a repeated run with the same inputs scores nothing again.

One append-only file per (runner identity, token stream, window plan). Record layout, little endian:
`int64 window index` then `n_targets x width` float64 per-token columns, row-major (n_targets is
known from the plan; width from the columns the lane keeps, see tokenstats.py). A record
cut short by `kill -9` is ignored and overwritten. Each record is flushed and fsynced.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.cache import cache_root, key_of
from evalsuite.data.windows import Window


def journal_path(identity: dict[str, Any], tokens: np.ndarray, windows: list[Window]) -> Path:
    bounds = np.asarray([(w.start, w.first_target, w.end) for w in windows], np.int64)
    plan = hashlib.sha256(bounds.tobytes()).hexdigest()
    toks = hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int64).tobytes()).hexdigest()
    return cache_root() / "journal" / f"{key_of({'runner': identity, 'tokens': toks, 'plan': plan})}.nll"


class Journal:
    def __init__(self, path: Path, windows: list[Window], width: int = 1) -> None:
        self.path = path
        self.windows = windows
        self.width = width
        self.done: dict[int, np.ndarray] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        valid = self._read()
        self.fh = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 (closed in close())
        self.fh.truncate(valid)  # drop a torn tail record
        self.fh.seek(valid)

    def _read(self) -> int:
        """Load complete records; return the byte length of the valid prefix."""
        if not self.path.exists():
            return 0
        blob = self.path.read_bytes()
        pos = 0
        while pos + 8 <= len(blob):
            index = int(np.frombuffer(blob, "<i8", 1, pos)[0])
            if not 0 <= index < len(self.windows):
                break
            n = self.windows[index].n_targets * self.width
            if pos + 8 + 8 * n > len(blob):
                break
            self.done[index] = np.frombuffer(blob, "<f8", n, pos + 8).copy()
            pos += 8 + 8 * n
        return pos

    def append(self, index: int, values: np.ndarray) -> None:
        """`values`: the window's float64 columns flattened row-major (n_targets x width)."""
        flat = np.asarray(values, "<f8").reshape(-1)
        self.fh.write(np.int64(index).astype("<i8").tobytes() + flat.tobytes())
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.done[index] = flat

    def close(self) -> None:
        self.fh.close()
