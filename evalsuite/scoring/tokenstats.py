"""Per-token statistics from logits, computed window by window so full-vocabulary logits are never
stored: a window's logits `[k, V]` are reduced to a few float64 columns per token and dropped.

Columns for any runner (`SOLO`): nll (nats), top1 (1.0 when the argmax is the target), top5.
Columns of a variant scored in the same pass as the base (`PAIRED`) add, per token:
kl = KL(base || variant) in nats (from both full rows), dp = p_variant(target) -
p_base(target), same_top = 1.0 when both argmaxes agree.

Precision: logits arrive as float32. Each row is shifted by its max (so exp <= 1), exponentiated
in float32 and summed in float64 (`row_sums`); log-sum-exp, NLL and KL are then formed in float64
(NLL from the target's raw logit, KL's cross term sum p_b (s_b - s_v) from the shifted logits),
and every total over tokens is float64. The float32 exp contributes ~1e-7 relative error per term
(measured: KL within 4.3e-7 relative, 3e-8 nats, of an all-float64 reference), far under the 1e-4
ORT-vs-torch parity tolerance. NLL measured within 2.5e-9 relative of that reference on the tiny
test model (5.1e-8 when it was formed from the target's shifted, rounded logit). Skipping the
shift where exp cannot overflow was measured and rejected: the row max's own exp then carries its
~1 ulp error into log-sum-exp (1.3e-4 relative NLL error on confidently right tokens; the shifted
max is exactly exp(0) = 1).

Cost (Gemma 3's 1,023 x 262,144 window, real logits, both cores of the loaded AVX2 VM): 0.41 s,
from 0.63 s before the chunks kept their scratch arrays and the rank came from group maxima. What
remains, by pass: the float32 exp ~37 %, the float64 sum ~25 %, the group-max pass that first
reads the logits from memory ~22 %, the shift ~11 %, the min ~5 %, the columns ~3 %.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from evalsuite.errors import ScoringError

SOLO = ("nll", "top1", "top5")
PAIRED = (*SOLO, "kl", "dp", "same_top")
CHUNK_BYTES = 2 << 20  # logits reduced at a time per thread: each temporary stays in cache (16 MB L3 here);
# 10 rows of 49,152 or 2 of 262,144. Measured (loaded AVX2 VM): 1.3-1.9x faster than 64-row chunks.
GROUP = 1024  # rank groups: group j holds the columns j, j + GROUP, j + 2 GROUP, ... (see _rank)
_POOL: ThreadPoolExecutor | None = None
_LOCAL = threading.local()  # per-thread scratch arrays and ONNX Runtime bindings


def scratch(slot: int, rows: int, width: int) -> np.ndarray:
    """This thread's float32 [rows, width] scratch array `slot`, kept from chunk to chunk: allocating
    each chunk's 2 MiB temporaries afresh (page faults) measured 4x the cost of the arithmetic."""
    bufs: dict[int, np.ndarray] = _LOCAL.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.shape[1] != width or buf.shape[0] < rows:
        buf = bufs[slot] = np.empty((rows, width), dtype=np.float32)
    return buf[:rows]


_EXP: list[object] = []  # [session] once built, [None] when ONNX Runtime is not installed


def exp32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 exp (into `out`, C-contiguous float32 of x's shape, when given) through ONNX Runtime's
    MLAS kernel when it is installed: measured 1.33 G elements/s on one AVX2 core against numpy's
    0.28 (64 x 262,144 rows), the largest cost of a large vocabulary's statistics. Both are within
    ~1 ulp of the true exp; numpy's is used without ONNX Runtime."""
    if not _EXP:
        _EXP.append(_exp_session())
    session: Any = _EXP[0]
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x) if out is None else out
    if session is None:
        return np.exp(x, out=out)
    binding = _LOCAL.__dict__.get("binding")
    if binding is None or binding[0] is not session:
        binding = _LOCAL.binding = (session, session.io_binding())
    io = binding[1]
    io.bind_cpu_input("x", x)
    io.bind_output("y", "cpu", 0, np.float32, list(x.shape), out.ctypes.data)
    session.run_with_iobinding(io)
    return out


def _exp_session() -> object | None:
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    node = helper.make_node("Exp", ["x"], ["y"])
    graph = helper.make_graph([node], "exp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the chunks already run on every core (_chunks)
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def row_sums(e: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float64 [r] row sums of float32 [r, V], every term converted to float64. (float32 partial
    sums were measured 25 % faster on one core but raised the KL error tenfold, to 2.5e-7 nats;
    einsum's float64 loop measured 25 % faster than `sum(dtype=float64)`.)"""
    return np.einsum("ij->i", e, dtype=np.float64, out=out)


def _finite(values: np.ndarray, first_row: int) -> None:
    """Raise on the first row (of `values`, [r] or [r, c]) holding a NaN or an infinity. Checking
    each logit row's max and min suffices: finite logits give finite NLL, KL and Δp."""
    bad = ~np.isfinite(values)
    if values.ndim > 1:
        bad = bad.any(axis=1)
    if bad.any():
        row = first_row + int(np.argmax(bad))
        raise ScoringError(f"non-finite logits (NaN/Inf) at scored row {row}; the model overflows "
                           "(try fp32 or another variant)")


class Rows:
    """One runner's window of logits [k, V] and what its chunks reduce it to, row by row: the row
    max and min, the maxima of the rank groups and the float64 sum of exp(x - max). The chunks run
    only these passes over the vocabulary; the columns are formed once per window (`_solo_cols`),
    which keeps numpy's per-call overhead (~100 us a chunk of 2 rows measured) off the chunk loop."""

    def __init__(self, logits: np.ndarray) -> None:
        self.x = np.ascontiguousarray(logits, dtype=np.float32)
        k, vocab = self.x.shape
        n = vocab // GROUP if vocab >= 2 * GROUP else 0
        self.main = n * GROUP  # columns in groups of `n`; group j holds j, j + GROUP, j + 2 GROUP, ...
        self.grouped = self.x[:, : self.main].reshape(k, n, GROUP)
        self.tail = self.x[:, self.main :]  # the columns past the last full group: groups of one
        self.groups = np.empty((k, GROUP if n else 0), dtype=np.float32)  # each group's max
        self.peak, self.low = np.empty(k, dtype=np.float32), np.empty(k, dtype=np.float32)
        self.total = np.empty(k)  # float64 sum of exp(x - peak)

    def lse(self) -> np.ndarray:
        return np.log(self.total) + self.peak

    def reduce(self, lo: int, hi: int, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Reduce rows [lo, hi); returns their x - peak and exp of it (this thread's scratch slots
        `slot + 1` and `slot`). Raises on the first row holding a NaN or an infinity."""
        x, peak = self.x[lo:hi], self.peak[lo:hi]
        if self.main:  # the group maxima take the one pass from memory; the row max comes from them
            np.maximum.reduce(self.grouped[lo:hi], axis=1, out=self.groups[lo:hi])
            self.groups[lo:hi].max(axis=1, out=peak)
            if self.tail.shape[1]:
                np.maximum(peak, self.tail[lo:hi].max(axis=1), out=peak)
        else:
            x.max(axis=1, out=peak)
        low = x.min(axis=1, out=self.low[lo:hi])  # NaN propagates through max and min; +-inf shows in one
        if not math.isfinite(float(peak.sum(dtype=np.float64) - low.sum(dtype=np.float64))):  # no overflow
            _finite(np.column_stack([peak, low]), lo)
        shifted = np.subtract(x, peak[:, None], out=scratch(slot + 1, *x.shape))
        e = exp32(shifted, scratch(slot, *x.shape))
        row_sums(e, out=self.total[lo:hi])
        return shifted, e


def _rank(r: Rows, picked: np.ndarray) -> np.ndarray:
    """How many tokens beat each row's target, exact below 5 (5 or more may read 5). A group whose
    max beats the target holds at least one such token, so 5 such groups settle it; otherwise only
    the (at most 4) groups that beat it are counted in full."""
    beats = r.groups > picked[:, None]
    rank = beats.sum(axis=1) + np.count_nonzero(r.tail > picked[:, None], axis=1)
    rows, cols = np.nonzero(beats & (rank < 5)[:, None])
    if rows.size:
        extra = np.count_nonzero(r.grouped[rows, :, cols] > picked[rows, None], axis=1) - 1
        np.add.at(rank, rows, extra)
    return np.minimum(rank, 5)


def _argmax(r: Rows) -> np.ndarray:
    """Each row's first column holding its max, found from the group maxima."""
    first = np.full(r.x.shape[0], r.x.shape[1], dtype=np.int64)
    rows, cols = np.nonzero(r.groups == r.peak[:, None])
    if rows.size:
        at = np.argmax(r.grouped[rows, :, cols] == r.peak[rows, None], axis=1)
        np.minimum.at(first, rows, at * GROUP + cols)
    rows, cols = np.nonzero(r.tail == r.peak[:, None])
    np.minimum.at(first, rows, cols + r.main)
    return first


def _solo_cols(r: Rows, targets: np.ndarray) -> np.ndarray:
    picked = r.x[np.arange(targets.shape[0]), targets]
    rank = _rank(r, picked)
    nll = r.lse() - picked.astype(np.float64)
    return np.stack([nll, (rank == 0).astype(np.float64), (rank < 5).astype(np.float64)], axis=1)


def _check(logits: np.ndarray, targets: np.ndarray) -> None:
    if logits.ndim != 2 or logits.shape[0] != targets.shape[0]:
        raise ScoringError(f"runner returned logits of shape {logits.shape} for {targets.shape[0]} targets; "
                           "the model's output is not per-position logits")


def chunk_rows(vocab: int, lanes: int = 1) -> int:
    """Rows per chunk: CHUNK_BYTES of logits per lane (a paired chunk holds two lanes' scratch)."""
    return max(1, CHUNK_BYTES // (4 * max(1, vocab) * lanes))


def _chunks(n: int, rows: int, fill: Callable[[int, int], None]) -> None:
    """Run fill(lo, hi) for each `rows`-row chunk, spread over the cores: the model is idle while a
    window's logits are reduced, and numpy releases the GIL in these loops. Chunks write disjoint
    rows, so results do not depend on the thread count; errors surface for the first bad chunk."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="tokenstats")
    list(_POOL.map(lambda lo: fill(lo, min(n, lo + rows)), range(0, n, rows)))


def solo_stats(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 [k, len(SOLO)] from float32 logits [k, V] whose row i predicts targets[i]."""
    _check(logits, targets)
    r = Rows(logits)

    def fill(lo: int, hi: int) -> None:
        r.reduce(lo, hi, 0)

    _chunks(targets.shape[0], chunk_rows(logits.shape[1]), fill)
    return _solo_cols(r, targets)


def paired_stats(base_logits: np.ndarray, logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 [k, len(PAIRED)]: the variant's SOLO columns plus kl, dp, same_top against the base.
    With s = x - peak and p_b = e_b / total_b, KL = sum p_b (log p_b - log p_v) = E_pb[s_b - s_v]
    - log total_b + log total_v."""
    _check(logits, targets)
    _check(base_logits, targets)
    v, b = Rows(logits), Rows(base_logits)
    cross = np.empty(targets.shape[0])

    def fill(lo: int, hi: int) -> None:
        sv, ev = v.reduce(lo, hi, 0)
        sb, eb = b.reduce(lo, hi, 2)
        diff = np.subtract(sb, sv, out=ev)  # the variant's exp is summed already
        row_sums(np.multiply(diff, eb, out=diff), out=cross[lo:hi])

    _chunks(targets.shape[0], chunk_rows(logits.shape[1], 2), fill)
    idx = np.arange(targets.shape[0])
    kl = cross / b.total - np.log(b.total) + np.log(v.total)
    lse_v, lse_b = v.lse(), b.lse()
    dp = np.exp(v.x[idx, targets] - lse_v) - np.exp(b.x[idx, targets] - lse_b)
    same = (_argmax(v) == _argmax(b)).astype(np.float64)
    return np.column_stack([_solo_cols(v, targets), np.maximum(kl, 0.0), dp, same])
