"""Stages of a run for progress reporting, usable from every layer without importing the reports.

A progress object has `start(label, total, unit)`, `advance(n)` and `stop()` (suite.Progress;
report/progress.py and report/terminal.py implement it). `stage()` brackets one piece of work
(a build, a search, a scoring pass); total 0 means "no count known" (a builder subprocess):
the plain-log progress then prints heartbeats with the elapsed time only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def _ignore(n: int) -> None:
    pass


@contextlib.contextmanager
def stage(progress: Any, label: str, total: int = 0, unit: str = "") -> Iterator[Callable[[int], None]]:
    """Report `label` as running until the block ends; yields the `advance(n)` callback."""
    if progress is None:
        yield _ignore
        return
    progress.start(label, total, unit)
    try:
        yield progress.advance
    finally:
        progress.stop()


class NullProgress:
    """A progress sink that shows nothing (library use, `--progress none`)."""

    def start(self, label: str, total: int, unit: str = "") -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass
