"""Scoring: token stream + window plan + runners -> per-token statistics and RunRecords. No printing.

A *lane* is one runner scored over the plan. Lanes scored together share each window: lane 0 is
the base, and a paired lane (a quantized variant) is compared with the base's logits of the same
window (KL, Δp, same top token) before both are dropped, so no full-vocabulary logits are stored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from evalsuite.data.windows import Window
from evalsuite.errors import ScoringError
from evalsuite.roles import BASE_VARIANT
from evalsuite.schema import RunRecord
from evalsuite.scoring.journal import Journal
from evalsuite.scoring.tokenstats import PAIRED, SOLO, paired_stats, solo_stats


class Runner(Protocol):
    name: str
    vocab_size: int
    identity: dict[str, Any] | None

    def logits(self, input_ids: np.ndarray, k: int) -> np.ndarray:
        """input_ids int64 [m] -> float32 logits [k, V] of the last k positions."""
        ...

    def logits_batch(self, input_ids: np.ndarray, k: int) -> np.ndarray:
        """input_ids int64 [b, m] (b windows of equal length) -> float32 logits [b, k, V]."""
        ...


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
                on_window: Callable[[int], None] | None = None, batch_size: int = 1) -> None:
    """Fill each lane's `cols` for windows[i], i in indices. A lane that fails gets `error` set and
    is skipped from then on; if lane 0 (the base) fails, every paired lane fails with it.
    With `batch_size` > 1, consecutive windows of the same shape run as one batch per runner."""
    for group in batch_groups(windows, indices, batch_size):
        todo: dict[int, list[Lane]] = {}
        for i in group:
            w = windows[i]
            todo[i] = []
            for lane in lanes:
                if lane.error is None and lane.journal is not None and i in lane.journal.done:
                    lane.cols[w.first_target : w.end] = lane.journal.done[i].reshape(w.n_targets, -1)
                    lane.reused += w.n_targets
                elif lane.error is None:
                    todo[i].append(lane)
        need = [i for i in group if todo[i]]
        if need:
            _score_batch(lanes, todo, tokens, windows, need)
        if on_window is not None:
            for i in group:
                on_window(windows[i].n_targets)


def batch_groups(windows: list[Window], indices: list[int], size: int) -> list[list[int]]:
    """Consecutive indices, at most `size` together, whose windows have the same input length and
    target count (the planner gives every window but the first and a ragged last the same shape)."""
    groups: list[list[int]] = []
    for i in indices:
        shape = (windows[i].n_inputs, windows[i].n_targets)
        last = groups[-1] if groups else None
        if last and len(last) < size and (windows[last[0]].n_inputs, windows[last[0]].n_targets) == shape:
            last.append(i)
        else:
            groups.append([i])
    return groups


def _score_batch(lanes: list[Lane], todo: dict[int, list[Lane]], tokens: np.ndarray, windows: list[Window],
                 need: list[int]) -> None:
    base = lanes[0]
    for_base = [i for i in need if base in todo[i] or any(lane.paired for lane in todo[i])]
    base_logits: dict[int, np.ndarray] = {}
    if for_base:
        start = time.perf_counter()
        got = _logits(base, tokens, windows, for_base)
        base.seconds += time.perf_counter() - start
        if got is None:  # base failed: nothing can be compared with it
            for i in need:
                for lane in todo[i]:
                    lane.error = lane.error or f"base failed: {base.error}"
            return
        base_logits = got
    for lane in lanes:
        mine = [i for i in need if lane in todo[i]]
        if not mine or lane.error is not None:
            continue
        start = time.perf_counter()
        logits = base_logits if lane is base else _logits(lane, tokens, windows, mine)
        if logits is None:
            continue
        for i in mine:
            if not _record(lane, windows[i], i, logits[i], base_logits.get(i), tokens):
                break
        lane.seconds += time.perf_counter() - start


def _record(lane: Lane, w: Window, i: int, logits: np.ndarray, base_logits: np.ndarray | None,
            tokens: np.ndarray) -> bool:
    """Reduce one window's logits to the lane's columns and journal them; False when the lane failed."""
    targets = tokens[w.first_target : w.end]
    try:
        if lane.paired:
            assert base_logits is not None
            vals = paired_stats(base_logits, logits, targets)
        else:
            vals = solo_stats(logits, targets)
    except ScoringError as err:
        lane.error = f"{_where(lane, w, i)}: {err}"
        return False
    lane.cols[w.first_target : w.end] = vals
    if lane.journal is not None:
        lane.journal.append(i, vals.reshape(-1))
    return True


def _logits(lane: Lane, tokens: np.ndarray, windows: list[Window], idx: list[int]) -> dict[int, np.ndarray] | None:
    """Logits [k, V] of each window in `idx` (same shape): one runner call, batched when several."""
    w = windows[idx[0]]
    try:
        if len(idx) == 1:
            return {idx[0]: lane.runner.logits(tokens[w.start : w.end - 1], w.n_targets)}
        batch = np.stack([tokens[windows[i].start : windows[i].end - 1] for i in idx])
        out = lane.runner.logits_batch(batch, w.n_targets)
        return {i: out[j] for j, i in enumerate(idx)}
    except Exception as err:  # a runtime failure mid-run fails that lane, never passes it
        lane.error = f"{_where(lane, w, idx[0])} failed: {type(err).__name__}: {str(err)[:300]}"
        return None


def _where(lane: Lane, w: Window, i: int) -> str:
    return f"{lane.variant}/{lane.runner.name} window {i} (tokens {w.start}..{w.end - 1})"


def score_stream(runner: Runner, tokens: np.ndarray, windows: list[Window], batch_size: int = 1) -> np.ndarray:
    """Per-target NLL (float64 [n_tokens], NaN at token 0) of one runner over a whole plan."""
    lane = new_lane(runner, BASE_VARIANT, False, int(tokens.shape[0]))
    score_lanes([lane], tokens, windows, list(range(len(windows))), batch_size=batch_size)
    if lane.error is not None:
        raise ScoringError(lane.error)
    return lane.cols[:, 0]


def summarize(nll: np.ndarray, windows: list[Window], **fields: Any) -> RunRecord:
    """RunRecord from per-target NLL over `windows`: float64 sums, PPL = exp(mean NLL)."""
    scored = np.concatenate([nll[w.first_target : w.end] for w in windows])
    total = float(np.sum(scored, dtype=np.float64))
    mean = total / scored.shape[0]
    seconds = float(fields.pop("seconds"))
    fresh = scored.shape[0] - int(fields.get("reused_tokens", 0))
    return RunRecord(
        tokens_scored=int(scored.shape[0]),
        windows=len(windows),
        nll_sum=total,
        nll_mean=mean,
        ppl=math.exp(mean),
        seconds=seconds,
        tokens_per_s=fresh / seconds if seconds > 0 and fresh > 0 else 0.0,
        **fields,
    )
