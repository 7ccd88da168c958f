"""Scoring: token stream + window plan + runners -> per-token statistics and RunResults. No printing.

A *lane* is one runner scored over the plan. Lanes scored together share each window: lane 0 is
the base, and a paired lane (a quantized variant) is compared with the base's logits of the same
window (KL, Δp, same top token) before both are dropped, so no full-vocabulary logits are stored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from evalsuite.data.windows import Window
from evalsuite.errors import ScoringError
from evalsuite.scoring.journal import Journal
from evalsuite.scoring.tokenstats import PAIRED, SOLO, paired_stats, solo_stats


class Runner(Protocol):
    name: str
    vocab_size: int
    identity: dict[str, Any] | None

    def logits(self, input_ids: np.ndarray, k: int) -> np.ndarray:
        """input_ids int64 [m] -> float32 logits [k, V] of the last k positions."""
        ...


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
    metrics: dict[str, float] = field(default_factory=dict)  # see metrics.py

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Lane:
    runner: Runner
    variant: str
    paired: bool  # PAIRED columns against lane 0 (else SOLO)
    cols: np.ndarray  # float64 [n_tokens, C]; row t = stats of target t; NaN where not scored
    journal: Journal | None = None
    error: str | None = None
    reused: int = 0
    seconds: float = 0.0  # time in this lane's runner and statistics (not the shared base logits)

    @property
    def columns(self) -> tuple[str, ...]:
        return PAIRED if self.paired else SOLO


def new_lane(runner: Runner, variant: str, paired: bool, n_tokens: int) -> Lane:
    width = len(PAIRED if paired else SOLO)
    return Lane(runner, variant, paired, np.full((n_tokens, width), np.nan))


def score_lanes(lanes: list[Lane], tokens: np.ndarray, windows: list[Window], indices: list[int],
                on_window: Callable[[int], None] | None = None) -> None:
    """Fill each lane's `cols` for windows[i], i in indices. A lane that fails gets `error` set and
    is skipped from then on; if lane 0 (the base) fails, every paired lane fails with it."""
    for i in indices:
        w = windows[i]
        todo = []
        for lane in lanes:
            if lane.error is None and lane.journal is not None and i in lane.journal.done:
                lane.cols[w.first_target : w.end] = lane.journal.done[i].reshape(w.n_targets, -1)
                lane.reused += w.n_targets
            elif lane.error is None:
                todo.append(lane)
        if todo:
            _score_window(lanes[0], todo, tokens, w, i)
        if on_window is not None:
            on_window(w.n_targets)


def _score_window(base: Lane, todo: list[Lane], tokens: np.ndarray, w: Window, i: int) -> None:
    inputs, targets = tokens[w.start : w.end - 1], tokens[w.first_target : w.end]
    base_logits = None
    if base in todo or any(lane.paired for lane in todo):
        start = time.perf_counter()
        base_logits = _logits(base, inputs, w, i)
        base.seconds += time.perf_counter() - start
        if base_logits is None:  # base failed: nothing can be compared with it
            for lane in todo:
                lane.error = lane.error or f"base failed: {base.error}"
            return
    for lane in todo:
        start = time.perf_counter()
        logits = base_logits if lane is base else _logits(lane, inputs, w, i)
        if logits is None:
            continue
        try:
            if lane.paired:
                assert base_logits is not None
                vals = paired_stats(base_logits, logits, targets)
            else:
                vals = solo_stats(logits, targets)
        except ScoringError as err:
            lane.error = f"{_where(lane, w, i)}: {err}"
            continue
        lane.cols[w.first_target : w.end] = vals
        lane.seconds += time.perf_counter() - start
        if lane.journal is not None:
            lane.journal.append(i, vals.reshape(-1))


def _logits(lane: Lane, inputs: np.ndarray, w: Window, i: int) -> np.ndarray | None:
    try:
        return lane.runner.logits(inputs, w.n_targets)
    except Exception as err:  # a runtime failure mid-run fails that lane, never passes it
        lane.error = f"{_where(lane, w, i)} failed: {type(err).__name__}: {str(err)[:300]}"
        return None


def _where(lane: Lane, w: Window, i: int) -> str:
    return f"{lane.variant}/{lane.runner.name} window {i} (tokens {w.start}..{w.end - 1})"


def score_stream(runner: Runner, tokens: np.ndarray, windows: list[Window]) -> np.ndarray:
    """Per-target NLL (float64 [n_tokens], NaN at token 0) of one runner over a whole plan."""
    lane = new_lane(runner, "base", False, int(tokens.shape[0]))
    score_lanes([lane], tokens, windows, list(range(len(windows))))
    if lane.error is not None:
        raise ScoringError(lane.error)
    return lane.cols[:, 0]


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
