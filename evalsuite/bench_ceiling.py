"""`evalsuite bench`: the hardware ceiling a lane's tokens/s is measured against.

ONNX Runtime's own MatMul throughput is timed at every weight shape of the model (a one-node graph
[m, K] x [K, N] per distinct shape, m = the window, the bench's threads, best of several runs). The
FLOPs a scored token costs follow from the shapes and the window plan: every forwarded token runs the
decoder's MatMuls, only scored positions run the lm_head (the suite slices the head to them,
`models/logits_tail.py`), counted on the bench's own window plan (its windows and scored tokens).
The ceiling is the scored tokens/s those MatMuls alone would allow at the measured rates; a lane's
fraction of it is its measured tokens/s over that. Attention (GroupQueryAttention) and the norms are
not MatMuls with weights and are left out of the ceiling: at window 512 on SmolLM2-135M attention adds
about 7 % to the MatMul FLOPs, so fractions are slightly optimistic, never pessimistic.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_FRACTION = 0.8  # fp32 base lane, issue 26


def weight_shapes(model_file: Path) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """(K, N) of every fp32 MatMul with a constant weight, and the lm_head's (found by its name)."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    dims = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    shapes, head = [], None
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(dims.get(node.input[1], ())) != 2:
            continue
        k, n = dims[node.input[1]]
        if "lm_head" in node.name:
            head = (k, n)
        else:
            shapes.append((k, n))
    return shapes, head


def matmul_seconds(k: int, n: int, m: int, threads: int, repeats: int = 5) -> float:
    """Best wall seconds of one ONNX Runtime MatMul [m, K] x [K, N] (fp32, constant weight)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((m, k), dtype=np.float32)
    session.run(None, {"x": x})
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        best = min(best, time.perf_counter() - start)
    return best


def ceiling(model_file: Path, window: int, stride: int, windows: int, scored: int, threads: int) -> dict[str, Any]:
    """MatMul-only scored tokens/s ceiling of the bench's own plan: `windows` windows of `window` tokens
    through the decoder, the lm_head on the `scored` positions (timed at m = stride, scaled)."""
    shapes, head = weight_shapes(model_file)
    per_shape = {s: matmul_seconds(s[0], s[1], window, threads) for s in sorted(set(shapes))}
    decoder_s = sum(per_shape[s] for s in shapes)  # one window through every decoder MatMul
    head_s = matmul_seconds(head[0], head[1], stride, threads) * scored / stride if head else 0.0
    flops = windows * sum(2 * window * k * n for k, n in shapes) + (2 * scored * head[0] * head[1] if head else 0)
    seconds = windows * decoder_s + head_s
    return {"window": window, "stride": stride, "windows": windows, "scored": scored, "threads": threads,
            "matmuls": len(shapes) + (head is not None), "gflop_per_scored_token": flops / scored / 1e9,
            "gflops": flops / seconds / 1e9, "tokens_per_s": scored / seconds,
            "shapes": [{"k": k, "n": n, "gflops": 2 * window * k * n / t / 1e9} for (k, n), t in per_shape.items()]}


def ceiling_lines(c: dict[str, Any], runners: list[dict[str, Any]]) -> list[str]:
    """The ceiling and each lane's scored tokens/s as a fraction of it."""
    lines = [f"MatMul ceiling (ONNX Runtime fp32 MatMul at the model's {c['matmuls']} weight shapes, m = "
             f"{c['window']}, {c['threads']} threads): {c['gflops']:.1f} GFLOP/s, "
             f"{c['gflop_per_scored_token']:.3f} GFLOP per scored token ({c['windows']} windows of {c['window']}, "
             f"{c['scored']} scored) -> {c['tokens_per_s']:.0f} scored tok/s"]
    for r in runners:
        if "tokens_per_s" in r and "batch" not in r:
            frac = r["tokens_per_s"] / c["tokens_per_s"]
            note = ""
            if r["runner"] == "ORT base":
                note = f" ({'meets' if frac >= TARGET_FRACTION else 'MISSES'} the {TARGET_FRACTION} target)"
            lines.append(f"  {r['runner']}: {r['tokens_per_s']:.0f} tok/s = {frac:.2f} of the fp32 ceiling{note}")
    return lines


def read_pass(rows: int, vocab: int, repeats: int = 5) -> dict[str, float]:
    """The memory-bandwidth bound of the per-token statistics: one read pass (a max per row, one
    core) over a window's float32 logits [rows, vocab], rewritten before each timing so it starts
    where the runtime's fresh output would (written, not yet read); fastest of `repeats`. Every
    statistic needs at least this one pass, so (suite - bare) per window over it says how many
    passes' worth the suite spends beyond the model's run."""
    x = np.empty((rows, vocab), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        x.fill(1.0)
        start = time.perf_counter()
        x.max(axis=1)
        best = min(best, time.perf_counter() - start)
    mb = x.nbytes / 1e6
    return {"rows": float(rows), "vocab": float(vocab), "mb": mb, "seconds": best, "gb_per_s": mb / 1e3 / best}


def read_pass_line(bound: dict[str, float], overhead: dict[str, float], windows: int) -> str:
    extra = (overhead["suite_seconds"] - overhead["bare_seconds"]) / max(1, windows)
    return (f"memory bound: one read pass over a window's logits ({bound['rows']:.0f} x {bound['vocab']:.0f}, "
            f"{bound['mb']:.0f} MB) takes {1e3 * bound['seconds']:.0f} ms ({bound['gb_per_s']:.1f} GB/s, one core); "
            f"the suite spends {1e3 * extra:+.0f} ms per window beyond bare session.run "
            f"= {extra / bound['seconds']:+.1f} passes")
