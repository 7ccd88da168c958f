"""Scoring: token stream + window plan + runner -> per-target NLL and a RunResult. No printing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from .errors import ScoringError
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
    tokens_per_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def score_stream(
    runner: Runner,
    tokens: np.ndarray,
    windows: list[Window],
    on_window: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Per-target NLL (float64 [n_tokens]; entry t is -log p(token t | context), entry 0 is NaN)."""
    nll = np.full(tokens.shape[0], np.nan, dtype=np.float64)
    for i, w in enumerate(windows):
        inputs = tokens[w.start : w.end - 1]
        targets = tokens[w.first_target : w.end]
        where = f"{runner.name} window {i} (tokens {w.start}..{w.end - 1})"
        try:
            nll[w.first_target : w.end] = runner.nll(inputs, targets)
        except ScoringError as err:
            raise ScoringError(f"{where}: {err}") from None
        except Exception as err:  # a runtime failure mid-run fails the run, never passes it
            raise ScoringError(f"{where} failed: {type(err).__name__}: {str(err)[:300]}") from None
        if on_window is not None:
            on_window(w.n_targets)
    return nll


def summarize(nll: np.ndarray, windows: list[Window], **fields: Any) -> RunResult:
    """RunResult from per-target NLL over `windows`: float64 sums, PPL = exp(mean NLL)."""
    scored = np.concatenate([nll[w.first_target : w.end] for w in windows])
    total = float(np.sum(scored, dtype=np.float64))
    mean = total / scored.shape[0]
    seconds = float(fields.pop("seconds"))
    return RunResult(
        tokens_scored=int(scored.shape[0]),
        windows=len(windows),
        nll_sum=total,
        nll_mean=mean,
        ppl=math.exp(mean),
        seconds=seconds,
        tokens_per_s=scored.shape[0] / seconds if seconds > 0 else float("inf"),
        **fields,
    )


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
