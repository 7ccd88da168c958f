"""Output paths checked before any work: a run never fails after minutes of scoring on a path."""

from __future__ import annotations

import os
from pathlib import Path

from evalsuite.errors import UsageError


def check_writable(path: Path, what: str | None = None) -> None:
    """Fail before scoring, not after minutes of work, when the output cannot be written."""
    if path.expanduser().is_dir():
        raise UsageError(f"cannot write {what or path}: {path} is a folder; give a file path")
    parent = path.expanduser().resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {parent} is missing or not writable; "
                         "choose another output path")


def check_folder(path: Path, what: str) -> None:
    """An output folder: an existing folder, or a new one whose parent is writable."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder; give a folder path")
    if not path.exists():
        check_writable(path)
