"""Per-token statistics from logits, computed window by window so full-vocabulary logits are never
stored: a window's logits `[k, V]` are reduced to a few float64 columns per token and dropped.

Columns for any runner (`SOLO`): nll (nats), top1 (1.0 when the argmax is the target), top5.
Columns of a variant scored in the same pass as the base (`PAIRED`) add, per token:
kl = KL(base || variant) in nats (from both full rows), dp = p_variant(target) -
p_base(target), same_top = 1.0 when both argmaxes agree.

Precision: logits arrive as float32. Each row is shifted by its max (so exp <= 1), exponentiated
in float32 and summed in float64; log-sum-exp, NLL and KL are then formed in float64. The float32
exp contributes a relative error below 1e-7 per term, far under the 1e-4 ORT-vs-torch parity
tolerance, and keeps the per-window cost small beside the model's own run (see `nox -s bench`).
"""

from __future__ import annotations

import numpy as np

from .errors import ScoringError

SOLO = ("nll", "top1", "top5")
PAIRED = (*SOLO, "kl", "dp", "same_top")
CHUNK_ROWS = 64  # rows processed at a time: 64 x 49,152 x 4 B = 12.6 MB per temporary


def _shifted(rows: np.ndarray, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows - row max) in float32 [r, V] and log-sum-exp of the shifted rows in float64 [r]."""
    rows = np.asarray(rows, dtype=np.float32)
    peak = rows.max(axis=1, keepdims=True)
    if not np.isfinite(peak).all() or not np.isfinite(rows.min(axis=1)).all():
        bad = first_row + int(np.argwhere(~(np.isfinite(peak[:, 0]) & np.isfinite(rows.min(axis=1))))[0, 0])
        raise ScoringError(f"non-finite logits (NaN/Inf) at scored row {bad}; the model overflows "
                           "(try fp32 or another variant)")
    shifted = rows - peak
    lse = np.log(np.exp(shifted).sum(axis=1, dtype=np.float64))
    return shifted, lse


def _solo(shifted: np.ndarray, lse: np.ndarray, targets: np.ndarray) -> np.ndarray:
    idx = np.arange(targets.shape[0])
    picked = shifted[idx, targets]
    rank = (shifted > picked[:, None]).sum(axis=1)  # how many tokens beat the target
    nll = lse - picked.astype(np.float64)
    return np.stack([nll, (rank == 0).astype(np.float64), (rank < 5).astype(np.float64)], axis=1)


def _check(logits: np.ndarray, targets: np.ndarray) -> None:
    if logits.ndim != 2 or logits.shape[0] != targets.shape[0]:
        raise ScoringError(f"runner returned logits of shape {logits.shape} for {targets.shape[0]} targets; "
                           "the model's output is not per-position logits")


def solo_stats(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 [k, len(SOLO)] from float32 logits [k, V] whose row i predicts targets[i]."""
    _check(logits, targets)
    out = np.empty((targets.shape[0], len(SOLO)))
    for lo in range(0, targets.shape[0], CHUNK_ROWS):
        shifted, lse = _shifted(logits[lo : lo + CHUNK_ROWS], lo)
        out[lo : lo + CHUNK_ROWS] = _solo(shifted, lse, targets[lo : lo + CHUNK_ROWS])
    return out


def paired_stats(base_logits: np.ndarray, logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 [k, len(PAIRED)]: the variant's SOLO columns plus kl, dp, same_top against the base."""
    _check(logits, targets)
    _check(base_logits, targets)
    out = np.empty((targets.shape[0], len(PAIRED)))
    for lo in range(0, targets.shape[0], CHUNK_ROWS):
        t = targets[lo : lo + CHUNK_ROWS]
        sv, lse_v = _shifted(logits[lo : lo + CHUNK_ROWS], lo)
        sb, lse_b = _shifted(base_logits[lo : lo + CHUNK_ROWS], lo)
        idx = np.arange(t.shape[0])
        # KL = sum p_b (log p_b - log p_v) = E_pb[sb - sv] - lse_b + lse_v, with p_b = exp(sb - lse_b)
        pb_unnorm = np.exp(sb)
        cross = (pb_unnorm * (sb - sv)).sum(axis=1, dtype=np.float64) / pb_unnorm.sum(axis=1, dtype=np.float64)
        kl = cross - lse_b + lse_v
        dp = np.exp(sv[idx, t] - lse_v) - np.exp(sb[idx, t] - lse_b)
        same = (sv.argmax(axis=1) == sb.argmax(axis=1)).astype(np.float64)
        out[lo : lo + CHUNK_ROWS] = np.column_stack([_solo(sv, lse_v, t), np.maximum(kl, 0.0), dp, same])
    return out
