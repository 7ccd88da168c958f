"""Per-token statistics from logits rows, shared by every runner.

Logits are float32 `[k, vocab]` rows where row i predicts `targets[i]`. Log-softmax is done in
float64 in row chunks, so the extra memory is `chunk_rows x vocab x 8` bytes whatever k is.
"""

from __future__ import annotations

import numpy as np

from evalsuite.errors import ScoringError

CHUNK_ROWS = 128


def nll_from_logits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood (nats, float64 `[k]`) of `targets` (`[k]` int) under `logits` `[k, V]`.

    Raises ScoringError when any logit in a scored row is NaN or +-Inf: such a window must fail the
    gate, never quietly count as a number.
    """
    if logits.ndim != 2 or logits.shape[0] != targets.shape[0]:
        raise ScoringError(
            f"runner returned logits of shape {logits.shape} for {targets.shape[0]} targets; "
            "the model's output is not per-position logits"
        )
    out = np.empty(targets.shape[0], dtype=np.float64)
    for lo in range(0, targets.shape[0], CHUNK_ROWS):
        rows = logits[lo : lo + CHUNK_ROWS].astype(np.float64)
        if not np.isfinite(rows).all():
            bad = lo + int(np.argwhere(~np.isfinite(rows).all(axis=1))[0, 0])
            raise ScoringError(
                f"non-finite logits (NaN/Inf) at scored row {bad}; the model overflows "
                "(try fp32 or another variant)"
            )
        peak = rows.max(axis=1, keepdims=True)
        lse = np.log(np.exp(rows - peak).sum(axis=1)) + peak[:, 0]
        picked = rows[np.arange(rows.shape[0]), targets[lo : lo + CHUNK_ROWS]]
        out[lo : lo + CHUNK_ROWS] = lse - picked
    return out
