"""ORT base vs the torch reference at logit level on a few evenly spaced windows of each stream
(max |Δlogit|, top-1 agreement), with the known export/reference differences noted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PARITY_ROWS = 64  # logit rows compared at once (64 x 262,144 vocab x 8 B = 134 MB of float64)


def parity_stats(reference: Any, candidate: Any, stream: Any, n_windows: int) -> dict[str, Any]:
    """Logit-level comparison on `n_windows` evenly spaced windows: max |Δlogit|, top-1 agreement."""
    picks = sorted({round(i * (len(stream.windows) - 1) / max(1, n_windows - 1))
                    for i in range(min(n_windows, len(stream.windows)))})
    max_abs, agree, total = 0.0, 0, 0
    for i in picks:
        w = stream.windows[i]
        inputs = stream.tokens[w.start : w.end - 1]
        a, b = reference.logits(inputs, w.n_targets), candidate.logits(inputs, w.n_targets)
        for r in range(0, w.n_targets, PARITY_ROWS):  # row chunks: no window-sized float64 copies
            ra, rb = a[r : r + PARITY_ROWS], b[r : r + PARITY_ROWS]
            max_abs = max(max_abs, float(np.max(np.abs(ra.astype(np.float64) - rb))))
            agree += int(np.sum(ra.argmax(axis=1) == rb.argmax(axis=1)))
        total += w.n_targets
        del a, b
    return {"dataset": stream.label, "reference": reference.name, "candidate": candidate.name,
            "windows": picks, "positions": total, "max_abs_dlogit": max_abs, "top1_agree": agree / total}


def export_notes(parity: list[dict[str, Any]], hf_dir: Path, onnx_model: Path, window: int) -> None:
    """Add the known export/reference differences (models/families.py) to each parity record; the
    keys are absent when there are none, so the default model's records are unchanged."""
    from evalsuite.models.families import export_mismatches, parity_notes

    mismatches, notes = export_mismatches(hf_dir, onnx_model, window), parity_notes(hf_dir, window, onnx_model)
    for stats in parity:
        if mismatches:
            stats["export_mismatches"] = mismatches
        if notes:
            stats["notes"] = notes


