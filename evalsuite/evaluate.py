"""Scoring: token stream + window plan + runner -> per-target NLL and a RunResult. No printing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from .errors import ScoringError
from .journal import Journal
from .windows import Window


class Runner(Protocol):
    name: str
    vocab_size: int

    def nll(self, input_ids: np.ndarray, targets: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Policy:
    """The window policy; recorded with every result."""

    window: int
    stride: int
    bos: bool
    max_tokens: int | None
    label_shift: str = "logits[i] predict token[i+1]; token 0 is context only"


@dataclass(frozen=True)
class RunResult:
    model: str
    variant: str
    runner: str
    dataset: str
    split: str
    window: int
    stride: int
    bos: bool
    max_tokens: int | None
    tokens_in_stream: int
    tokens_scored: int
    windows: int
    nll_sum: float
    nll_mean: float
    ppl: float
    seconds: float
    tokens_per_s: float  # over the tokens scored in this run (journal-reused ones excluded)
    reused_tokens: int = 0  # targets taken from the per-window journal (resumed or repeated run)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def score_stream(
    runner: Runner,
    tokens: np.ndarray,
    windows: list[Window],
    on_window: Callable[[int], None] | None = None,
    journal: Journal | None = None,
    indices: list[int] | None = None,
) -> np.ndarray:
    """Per-target NLL (float64 [n_tokens]; entry t is -log p(token t | context), NaN where unscored).

    Scores `windows[i]` for i in `indices` (default: all). With a journal, windows it already holds
    are taken from it and new ones are appended to it."""
    nll = np.full(tokens.shape[0], np.nan, dtype=np.float64)
    for i in range(len(windows)) if indices is None else indices:
        w = windows[i]
        if journal is not None and i in journal.done:
            nll[w.first_target : w.end] = journal.done[i]
            if on_window is not None:
                on_window(w.n_targets)
            continue
        inputs = tokens[w.start : w.end - 1]
        targets = tokens[w.first_target : w.end]
        where = f"{runner.name} window {i} (tokens {w.start}..{w.end - 1})"
        try:
            nll[w.first_target : w.end] = runner.nll(inputs, targets)
        except ScoringError as err:
            raise ScoringError(f"{where}: {err}") from None
        except Exception as err:  # a runtime failure mid-run fails the run, never passes it
            raise ScoringError(f"{where} failed: {type(err).__name__}: {str(err)[:300]}") from None
        if journal is not None:
            journal.append(i, nll[w.first_target : w.end])
        if on_window is not None:
            on_window(w.n_targets)
    return nll


def summarize(nll: np.ndarray, windows: list[Window], **fields: Any) -> RunResult:
    """RunResult from per-target NLL over `windows`: float64 sums, PPL = exp(mean NLL)."""
    scored = np.concatenate([nll[w.first_target : w.end] for w in windows])
    total = float(np.sum(scored, dtype=np.float64))
    mean = total / scored.shape[0]
    seconds = float(fields.pop("seconds"))
    fresh = scored.shape[0] - int(fields.get("reused_tokens", 0))
    return RunResult(
        tokens_scored=int(scored.shape[0]),
        windows=len(windows),
        nll_sum=total,
        nll_mean=mean,
        ppl=math.exp(mean),
        seconds=seconds,
        tokens_per_s=fresh / seconds if seconds > 0 and fresh > 0 else 0.0,
        **fields,
    )


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
