"""The one sliding-window planner, shared by every runner. Pure: token counts in, windows out.

Policy (recorded with every result):
- The token stream is scored left to right; token 0 is never a target (it has no context). With
  `bos = true` the tokenizer's BOS id is put in front of the stream first, so the text's first
  token becomes target 1.
- Label shift: the logits at input position i predict token i + 1. A window feeds the input
  tokens `[start, end - 1)` (at most `window` of them) and scores the targets
  `[first_target, end)`, which are predicted by the last `end - first_target` logit rows.
- The first window feeds `window` tokens and scores all of them shifted by one (targets 1..L);
  each later window scores the next `stride` targets, so every target after token 0 is scored
  exactly once and the first target of a later window has `window - stride + 1` tokens of context
  (all of them near the start of the stream, where fewer exist).
- `stride == window` gives disjoint input windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import TypeVar

from evalsuite.errors import DataError, UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    """Input tokens `[start, end - 1)`; scored targets `[first_target, end)` (absolute positions)."""

    start: int
    first_target: int
    end: int

    @property
    def n_inputs(self) -> int:
        return self.end - 1 - self.start

    @property
    def n_targets(self) -> int:
        return self.end - self.first_target


def check_policy(window: int, stride: int) -> None:
    """Raise UsageError unless 1 <= stride <= window."""
    if window <= 0:
        raise UsageError(f"window must be a positive number of tokens, got {window}; use e.g. --window 512")
    if stride <= 0 or stride > window:
        raise UsageError(
            f"stride must be between 1 and the window ({window}), got {stride}; use e.g. --stride {max(1, window // 2)}"
        )


def plan_windows(n_tokens: int, window: int, stride: int) -> list[Window]:
    """Windows covering targets 1..n_tokens-1 exactly once (see the module docstring)."""
    check_policy(window, stride)
    if n_tokens < 2:
        raise DataError(
            f"only {n_tokens} token(s) to score; at least 2 are needed (raise --max-tokens or use more text)"
        )
    windows: list[Window] = []
    first, end = 1, min(window, n_tokens - 1) + 1
    while True:
        windows.append(Window(start=max(0, end - 1 - window), first_target=first, end=end))
        if end == n_tokens:
            return windows
        first, end = end, min(end + stride, n_tokens)


def window_count(n_tokens: int, window: int, stride: int) -> int:
    """len(plan_windows(n_tokens, window, stride)), counted without planning (O(1) for any length)."""
    check_policy(window, stride)
    if n_tokens < 2:
        raise DataError(f"only {n_tokens} token(s) to score; at least 2 are needed")
    return 1 + max(0, -(-(n_tokens - 1 - window) // stride))


def shard_windows(windows: list[T], index: int, count: int) -> list[T]:
    """The deterministic shard `index` of `count` (0-based): every count-th window from index."""
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"shard must be i/n with 0 <= i < n, got {index}/{count}; use e.g. --shard 0/2")
    return windows[index::count]


def plan_documents(bounds: list[tuple[int, int]], window: int, stride: int) -> list[Window]:
    """Per-document scoring: the stream is documents laid end to end, each `[start, stop)` beginning
    with its prefix token. Each document is planned on its own (`plan_windows`, shifted to `start`),
    so no window crosses a document and each document's first token is predicted from its prefix
    alone: lm-evaluation-harness's rolling loglikelihood when `stride == window`. Documents with no
    target (a prefix only) are skipped."""
    check_policy(window, stride)
    out: list[Window] = []
    for start, stop in bounds:
        if stop - start >= 2:
            out += [Window(start + w.start, start + w.first_target, start + w.end)
                    for w in plan_windows(stop - start, window, stride)]
    if not out:
        raise DataError("no document has a token to score; use more text or raise --max-tokens")
    return out


@dataclass(frozen=True)
class Plan:
    """A stream's window plan as its runs record it: one stream of `n_tokens` (`documents` None:
    `plan_windows`), or documents laid end to end, `documents` their token counts, each beginning
    with its prefix token (`plan_documents`). The lengths are all a merge or a check needs to plan
    the same windows again."""

    n_tokens: int
    window: int
    stride: int
    documents: tuple[int, ...] | None = None

    def bounds(self) -> list[tuple[int, int]]:
        """Each document's `[start, stop)` (documents only)."""
        assert self.documents is not None
        return [(end - n, end) for n, end in zip(self.documents, accumulate(self.documents), strict=True)]

    def windows(self) -> list[Window]:
        if self.documents is None:
            return plan_windows(self.n_tokens, self.window, self.stride)
        return plan_documents(self.bounds(), self.window, self.stride)

    def count(self) -> int:
        """len(self.windows()), counted without planning."""
        if self.documents is None:
            return window_count(self.n_tokens, self.window, self.stride)
        check_policy(self.window, self.stride)
        return sum(window_count(n, self.window, self.stride) for n in self.documents if n >= 2)

    def targets(self) -> int:
        """Tokens the plan scores: every token of a stream but the first (of each document)."""
        if self.documents is None:
            return self.n_tokens - 1
        return sum(n - 1 for n in self.documents if n >= 2)


def document_plan(bounds: list[tuple[int, int]], window: int, stride: int) -> Plan:
    """The Plan of documents `[start, stop)` laid end to end from token 0 (documents.clipped_bounds)."""
    if any(start != (bounds[i - 1][1] if i else 0) for i, (start, _) in enumerate(bounds)):
        raise DataError("per-document bounds are not laid end to end from token 0; clear the token cache")
    n = bounds[-1][1] if bounds else 0
    return Plan(n, window, stride, tuple(stop - start for start, stop in bounds))
