"""Per-token statistics from logits, computed window by window so full-vocabulary logits are never
stored: a window's logits `[k, V]` are reduced to a few float64 columns per token and dropped.

Columns for any runner (`SOLO`): nll (nats), top1 (1.0 when the argmax is the target), top5.
Columns of a variant scored in the same pass as the base (`PAIRED`) add, per token:
kl = KL(base || variant) in nats (exact, from both full rows), dp = p_variant(target) -
p_base(target), same_top = 1.0 when both argmaxes agree.
"""

from __future__ import annotations

import numpy as np

from .errors import ScoringError

SOLO = ("nll", "top1", "top5")
PAIRED = (*SOLO, "kl", "dp", "same_top")
CHUNK_ROWS = 64  # rows converted to float64 at a time: 64 x 49,152 x 8 B = 25 MB


def _log_softmax(rows: np.ndarray, first_row: int) -> np.ndarray:
    rows = rows.astype(np.float64)
    if not np.isfinite(rows).all():
        bad = first_row + int(np.argwhere(~np.isfinite(rows).all(axis=1))[0, 0])
        raise ScoringError(f"non-finite logits (NaN/Inf) at scored row {bad}; the model overflows "
                           "(try fp32 or another variant)")
    peak = rows.max(axis=1, keepdims=True)
    shifted = rows - peak
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _solo(logp: np.ndarray, targets: np.ndarray) -> np.ndarray:
    idx = np.arange(targets.shape[0])
    picked = logp[idx, targets]
    rank = (logp > picked[:, None]).sum(axis=1)  # how many tokens beat the target
    return np.stack([-picked, (rank == 0).astype(np.float64), (rank < 5).astype(np.float64)], axis=1)


def _check(logits: np.ndarray, targets: np.ndarray) -> None:
    if logits.ndim != 2 or logits.shape[0] != targets.shape[0]:
        raise ScoringError(f"runner returned logits of shape {logits.shape} for {targets.shape[0]} targets; "
                           "the model's output is not per-position logits")


def solo_stats(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 [k, len(SOLO)] from float32 logits [k, V] whose row i predicts targets[i]."""
    _check(logits, targets)
    out = np.empty((targets.shape[0], len(SOLO)))
    for lo in range(0, targets.shape[0], CHUNK_ROWS):
        out[lo : lo + CHUNK_ROWS] = _solo(_log_softmax(logits[lo : lo + CHUNK_ROWS], lo),
                                          targets[lo : lo + CHUNK_ROWS])
    return out


def paired_stats(base_logits: np.ndarray, logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 [k, len(PAIRED)]: the variant's SOLO columns plus kl, dp, same_top against the base."""
    _check(logits, targets)
    _check(base_logits, targets)
    out = np.empty((targets.shape[0], len(PAIRED)))
    for lo in range(0, targets.shape[0], CHUNK_ROWS):
        t = targets[lo : lo + CHUNK_ROWS]
        lv = _log_softmax(logits[lo : lo + CHUNK_ROWS], lo)
        lb = _log_softmax(base_logits[lo : lo + CHUNK_ROWS], lo)
        idx = np.arange(t.shape[0])
        kl = (np.exp(lb) * (lb - lv)).sum(axis=1)
        dp = np.exp(lv[idx, t]) - np.exp(lb[idx, t])
        same = (lv.argmax(axis=1) == lb.argmax(axis=1)).astype(np.float64)
        out[lo : lo + CHUNK_ROWS] = np.column_stack([_solo(lv, t), np.maximum(kl, 0.0), dp, same])
    return out
