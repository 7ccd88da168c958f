"""`evalsuite bench`: throughput, memory and overhead, measured (never asserted in unit tests).

- Per runner (torch reference, ORT base, each configured variant), in a fresh child process on
  identical windows: tokens/s and the child's own peak RSS (Linux `VmHWM`).
- Batch 1, 4 and 8 on the ORT base and the torch reference, on a stream cut so that every window
  after the first falls in a full batch of 8 (a shorter budget would measure partial batches).
- Peak RSS of the ORT base at two dataset lengths (1x and 4x the token budget): it must not grow
  with the dataset, only with window x vocab.
- The suite's ORT throughput as a ratio of bare `InferenceSession.run` on the same inputs, same
  session, same threads (target >= 0.95).
- The MatMul ceiling of this CPU at the model's shapes and each lane's fraction of it
  (`bench_ceiling.py`); HellaSwag examples/s per lane against lm-eval's HF backend (`bench_tasks.py`).
- Optionally the wall time of the default `evalsuite gate` run from a cold and a warm cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.bench_ceiling import ceiling, ceiling_lines, read_pass, read_pass_line
from evalsuite.bench_peers import peer_lines, peers
from evalsuite.bench_stages import STARTUP_TOKENS, TimedRun, gate_timing, stage_lines, startup, startup_lines
from evalsuite.bench_tasks import task_lines, task_speed
from evalsuite.data.windows import plan_windows
from evalsuite.models.onnx_files import resolve_onnx

TARGET_RATIO = 0.95
BATCHES = (1, 4, 8)  # batch sizes measured on the ORT base and the torch reference
TARGET_COLD_S, TARGET_WARM_S = 300.0, 30.0  # issue 26: tasks budget included


def peak_rss_mb() -> float:
    """This process's own peak resident set, in MB.

    `ru_maxrss` survives fork + exec: a child started by a parent holding 3.5 GB reports at least
    3.5 GB whatever it uses itself (measured: 1,513 MB for a 13 MB child of a 1.5 GB parent). Linux's
    `VmHWM` belongs to the child's own address space; other systems fall back to `ru_maxrss`."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # not on Windows; there the fallback fails loudly rather than guessing

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def full_batches(n: int, window: int, stride: int, batch: int) -> bool:
    """Whether every group of `batch_groups` over an n-token stream is a full batch (a first window
    of its own shape may run alone)."""
    from evalsuite.data.windows import plan_windows
    from evalsuite.scoring.lanes import batch_groups

    windows = plan_windows(n, window, stride)
    groups = batch_groups(windows, list(range(len(windows))), batch)
    return all(len(g) == batch for g in groups if g != [0])


def batch_stream_length(window: int, stride: int, at_least: int) -> int:
    """Tokens for the batch comparison: the shortest stream of at least `at_least` tokens whose
    windows all fall in full batches for every size in BATCHES (partial batches measure less)."""
    step = BATCHES[-1] * stride
    for groups in range(1, 100_000):
        for n in sorted({groups * step + 1, window + groups * step + 1}):
            if n >= at_least and all(full_batches(n, window, stride, b) for b in BATCHES):
                return n
    raise ValueError(f"no stream length fills batches of {BATCHES} at window {window}, stride {stride}")


def child(kind: str, path: str, tokens_file: str, window: int, stride: int, threads: int,
          batch: int = 1) -> dict[str, Any]:
    """Runs inside the child process: score the windows with one runner; report speed and RSS."""
    from evalsuite.data.windows import plan_windows
    from evalsuite.scoring.lanes import new_lane, score_lanes

    tokens = np.load(tokens_file)
    windows = plan_windows(int(tokens.shape[0]), window, stride)
    if kind == "torch":
        from evalsuite.models.torch_runner import TorchRunner

        runner: Any = TorchRunner(Path(path), threads)
    else:
        from evalsuite.models.ort_runner import OrtRunner

        runner = OrtRunner(Path(path), "cpu", threads)
    lane = new_lane(runner, "bench", False, int(tokens.shape[0]))
    start = time.perf_counter()
    score_lanes([lane], tokens, windows, list(range(len(windows))), batch_size=batch)
    seconds = time.perf_counter() - start
    scored = sum(w.n_targets for w in windows)
    return {"tokens": scored, "seconds": seconds, "tokens_per_s": scored / seconds,
            "peak_rss_mb": peak_rss_mb(),
            "ppl": float(np.exp(np.nanmean(lane.cols[1:, 0]))), "error": lane.error}


def run_child(kind: str, path: Path, tokens: np.ndarray, window: int, stride: int, threads: int,
              batch: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        tfile = Path(tmp) / "tokens.npy"
        np.save(tfile, tokens)
        cmd = [sys.executable, "-m", "evalsuite.bench", kind, str(path), str(tfile), str(window), str(stride),
               str(threads), str(batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["child failed"])[-1]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def overhead(onnx_dir: Path, tokens: np.ndarray, window: int, stride: int, threads: int,
             repeats: int = 3) -> dict[str, float]:
    """Seconds for bare session.run vs the suite's scoring of the same windows, same session.

    Each window is timed bare and through the suite back to back, `repeats` times, keeping each
    one's fastest: on a shared 2-core VM, throughput drifts by 30 % over minutes, and timing the two
    paths in separate passes measured the drift rather than the overhead."""
    from evalsuite.data.windows import plan_windows
    from evalsuite.models.ort_runner import OrtRunner
    from evalsuite.scoring.lanes import new_lane, score_lanes

    plain = OrtRunner(onnx_dir, "cpu", threads, tail=False)  # the model file exactly as given
    runner = OrtRunner(onnx_dir, "cpu", threads)
    windows = plan_windows(int(tokens.shape[0]), window, stride)
    bare, suite = [float("inf")] * len(windows), [float("inf")] * len(windows)
    for _ in range(repeats):
        lane = new_lane(runner, "bench", False, int(tokens.shape[0]))
        for i, w in enumerate(windows):
            start = time.perf_counter()
            plain.session.run(["logits"], plain.feeds(tokens[w.start : w.end - 1]))
            bare[i] = min(bare[i], time.perf_counter() - start)
            start = time.perf_counter()
            score_lanes([lane], tokens, windows, [i])
            suite[i] = min(suite[i], time.perf_counter() - start)
    return {"bare_seconds": sum(bare), "suite_seconds": sum(suite), "ratio": sum(bare) / sum(suite),
            "head_sliced": float(runner.keep)}


def overhead_batched(onnx_dir: Path, tokens: np.ndarray, window: int, stride: int, threads: int,
                     batch: int, repeats: int = 3) -> dict[str, float]:
    """Bare batched session.run vs the suite's batched scoring of the same groups, same session."""
    from evalsuite.data.windows import plan_windows
    from evalsuite.models.ort_runner import OrtRunner
    from evalsuite.scoring.lanes import batch_groups, new_lane, score_lanes

    plain = OrtRunner(onnx_dir, "cpu", threads, tail=False)
    runner = OrtRunner(onnx_dir, "cpu", threads)
    windows = plan_windows(int(tokens.shape[0]), window, stride)
    groups = batch_groups(windows, list(range(len(windows))), batch)
    bare, suite = [float("inf")] * len(groups), [float("inf")] * len(groups)
    for _ in range(repeats):
        lane = new_lane(runner, "bench", False, int(tokens.shape[0]))
        for g, idx in enumerate(groups):
            ids = np.stack([tokens[windows[i].start : windows[i].end - 1] for i in idx])
            start = time.perf_counter()
            plain.session.run(["logits"], plain.feeds(ids))
            bare[g] = min(bare[g], time.perf_counter() - start)
            start = time.perf_counter()
            score_lanes([lane], tokens, windows, idx, batch_size=batch)
            suite[g] = min(suite[g], time.perf_counter() - start)
    return {"batch": float(batch), "bare_seconds": sum(bare), "suite_seconds": sum(suite),
            "ratio": sum(bare) / sum(suite)}


def awq_search_timing(folder: Path) -> dict[str, Any]:
    """Search seconds (total, per decoder layer) recorded in an AWQ folder when it was searched."""
    info = json.loads((folder / "awq_info.json").read_text())
    layers = info.get("layer_seconds") or []
    cal = info["calibration"]
    return {"search_seconds": info["search_seconds"], "layers": len(layers),
            "seconds_per_layer": sum(layers) / len(layers) if layers else None,
            "max_layer_seconds": max(layers, default=None), "calibration": f"{cal['samples']} x {cal['seq_len']}"}


def bench(suite: Any, data_dir: Path | None, max_tokens: int, timing_args: list[str] | None,
          task_examples: int = 0) -> dict[str, Any]:
    """All measurements as data (printing is the caller's)."""
    import dataclasses

    from evalsuite.cpu import cpu_info
    from evalsuite.models import source as model_source
    from evalsuite.ppl_task import load_streams, load_texts
    from evalsuite.quant.variants import build_variant
    from evalsuite.runners import build_base_onnx

    n_batch = batch_stream_length(suite.eval.window, suite.eval.stride, max_tokens)
    ev = dataclasses.replace(suite.eval, datasets=suite.eval.datasets[:1],
                             max_tokens=max(4 * max_tokens, n_batch, 2 * STARTUP_TOKENS))
    suite = dataclasses.replace(suite, eval=ev)
    source = model_source.resolve(suite.model.source, suite.model.trust_remote_code)
    stream = load_streams(suite, source, load_texts(suite, data_dir))[0]
    long_tokens, tokens = stream.tokens[: 4 * max_tokens], stream.tokens[:max_tokens]
    batch_tokens = stream.tokens[:n_batch]
    threads = ev.threads or os.cpu_count() or 1
    base_onnx = build_base_onnx(suite, source)
    targets: list[tuple[str, str, Path]] = [("torch reference", "torch", source.path), ("ORT base", "ort", base_onnx)]
    searches = []
    for v in suite.variants:
        info = build_variant(source, v, suite, data_dir)
        targets.append((f"ORT {v.name}", "ort", Path(info["path"])))
        if info.get("awq_hf_folder"):
            searches.append({"variant": v.name, **awq_search_timing(Path(info["awq_hf_folder"]))})
    rows = []
    for label, kind, path in targets:
        rows.append({"runner": label, **run_child(kind, path, tokens, ev.window, ev.stride, threads)})
    n_batch = int(batch_tokens.shape[0])
    for batch in BATCHES:  # batch 1 again, on the same tokens as the batched rows
        for label, kind, path in targets[:2]:
            rows.append({"runner": f"{label}, batch {batch} ({n_batch} tok)", "lane": label, "batch": batch,
                         **run_child(kind, path, batch_tokens, ev.window, ev.stride, threads, batch)})
    long_row = {"runner": f"ORT base, {long_tokens.shape[0]} tokens",
                **run_child("ort", base_onnx, long_tokens, ev.window, ev.stride, threads)}
    # The memory figure: one window of 2,048 tokens (2,048 x vocab float32 logits at once).
    wide = long_tokens[: min(2049, long_tokens.shape[0])]
    wide_row = {"runner": f"ORT base, window {wide.shape[0] - 1}",
                **run_child("ort", base_onnx, wide, int(wide.shape[0]) - 1, int(wide.shape[0]) - 1, threads)}
    out: dict[str, Any] = {
        "dataset": stream.label, "tokens": int(tokens.shape[0]), "window": ev.window, "stride": ev.stride,
        "threads": threads, "cpu": cpu_info(), "runners": rows, "rss_long": long_row, "rss_wide": wide_row,
        "overhead": overhead(base_onnx, tokens, ev.window, ev.stride, threads),
        "overhead_batched": overhead_batched(base_onnx, batch_tokens, ev.window, ev.stride, threads, BATCHES[-1]),
        "batch_tokens": n_batch,
        "logits_mb_per_window": ev.window * stream.tokenizer_vocab * 4 / 1e6,
        "logits_mb_window_2048": 2048 * stream.tokenizer_vocab * 4 / 1e6, "awq_search": searches,
    }
    plan = plan_windows(int(tokens.shape[0]), ev.window, ev.stride)
    out["ceiling"] = ceiling(resolve_onnx(base_onnx), ev.window, ev.stride, len(plan),
                             sum(w.end - w.first_target for w in plan), threads)
    out["read_pass"] = {**read_pass(ev.window - 1, stream.tokenizer_vocab), "windows": float(len(plan))}
    if task_examples:
        out["tasks"] = task_speed(source.path, base_onnx, threads, task_examples)
    if timing_args is not None:
        out["startup"] = startup(suite.model.source)
        out["eval_timing"] = gate_timing(timing_args)
    out["peers"] = _peers(source, stream.tokens, tokens, threads, ev.window)
    out["verdicts"] = verdicts(out)
    return out


def _peers(source: Any, stream: np.ndarray, tokens: np.ndarray, threads: int, window: int) -> dict[str, Any]:
    """lm-eval on the bench's tokens (as text), llama.cpp on the startup case's: 2 x 5,120 tokens in
    chunks of the window, each scoring its second half, 5,120 targets like evalsuite's 5,119."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source.path)
    chunks = int(min(stream.shape[0], 2 * STARTUP_TOKENS)) // window
    return peers(source.path, str(tok.decode(tokens.tolist())), str(tok.decode(stream[: chunks * window].tolist())),
                 threads, window, chunks)


def verdicts(b: dict[str, Any]) -> list[str]:
    """One line per target or measured fact."""
    cpu = b["cpu"]
    lines = [f"CPU: {cpu['model']} ({cpu['cores']} cores; MLAS-relevant ISA: {', '.join(cpu['isa']) or 'none'})"]
    ratio = b["overhead"]["ratio"]
    lines.append(f"suite ORT throughput = {ratio:.3f} x bare session.run "
                 f"({'meets' if ratio >= TARGET_RATIO else 'MISSES'} the {TARGET_RATIO} target)")
    if "read_pass" in b:
        lines.append(read_pass_line(b["read_pass"], b["overhead"], int(b["read_pass"]["windows"])))
    batched = b.get("overhead_batched")
    if batched:
        lines.append(f"batched (batch {batched['batch']:.0f}): suite = {batched['ratio']:.3f} x bare batched "
                     "session.run")
    base: dict[str, Any] = next((r for r in b["runners"] if r["runner"] == "ORT base"), {})
    if "peak_rss_mb" in base and "peak_rss_mb" in b["rss_long"]:
        grow = b["rss_long"]["peak_rss_mb"] - base["peak_rss_mb"]
        lines.append(f"ORT base peak RSS {base['peak_rss_mb']:.0f} MB at {b['tokens']} tokens, "
                     f"{b['rss_long']['peak_rss_mb']:.0f} MB at 4x the tokens ({grow:+.0f} MB): bounded by "
                     f"window x vocab ({b['logits_mb_per_window']:.0f} MB of logits per window; "
                     f"{b['logits_mb_window_2048']:.0f} MB at window 2048)")
    wide = b.get("rss_wide", {})
    if "peak_rss_mb" in wide and "peak_rss_mb" in base:
        lines.append(f"{wide['runner']}: peak RSS {wide['peak_rss_mb']:.0f} MB "
                     f"({wide['peak_rss_mb'] - base['peak_rss_mb']:+.0f} MB over window {b['window']})")
    fp32 = base.get("tokens_per_s")
    for r in b["runners"]:
        if r["runner"].startswith("ORT ") and "batch" not in r and r["runner"] != "ORT base" and fp32 \
                and "tokens_per_s" in r:
            rel = r["tokens_per_s"] / fp32
            lines.append(f"{r['runner']}: {r['tokens_per_s']:.0f} tok/s = {rel:.2f} x fp32 "
                         f"({'slower' if rel < 1 else 'faster'} than fp32 on this CPU)")
    lines += batch_lines(b)
    if "ceiling" in b:
        lines += ceiling_lines(b["ceiling"], b["runners"])
    if "tasks" in b:
        lines += task_lines(b["tasks"])
    for a in b.get("awq_search", []):
        per = f"{a['seconds_per_layer']:.2f} s per layer (max {a['max_layer_seconds']:.2f})" \
            if a["seconds_per_layer"] is not None else "no per-layer record"
        lines.append(f"AWQ search {a['variant']}: {a['search_seconds']:.0f} s, {a['layers']} layers, {per}, "
                     f"{a['calibration']} calibration tokens (recorded when searched)")
    if "startup" in b:
        lines += startup_lines(b["startup"])
    if "peers" in b:
        lanes = {r["runner"]: r["tokens_per_s"] for r in b["runners"][:2] if "tokens_per_s" in r}
        lines += peer_lines(b["peers"], lanes, b.get("startup", {}).get("seconds"))
    timing = b.get("eval_timing")
    if timing:
        lines.append(f"default gate: cold {timing['cold_seconds']:.0f} s (target {TARGET_COLD_S:.0f}, exit "
                     f"{timing['cold_exit']}), warm {timing['warm_seconds']:.0f} s (target {TARGET_WARM_S:.0f}, "
                     f"exit {timing['warm_exit']})")
        for label in ("cold", "warm"):
            if label in timing:
                lines += ["  " + x for x in stage_lines(f"{label} gate", TimedRun.from_json(timing[label]))]
    return lines


def batch_lines(b: dict[str, Any]) -> list[str]:
    """Per runner: batched tok/s as a multiple of batch 1 on the same tokens."""
    rows = [r for r in b["runners"] if "batch" in r and "tokens_per_s" in r]
    lines = []
    for name in dict.fromkeys(r["lane"] for r in rows):
        mine = {r["batch"]: r["tokens_per_s"] for r in rows if r["lane"] == name}
        if 1 in mine and len(mine) > 1:
            rel = ", ".join(f"batch {k} {v:.0f} tok/s = {v / mine[1]:.2f} x" for k, v in mine.items() if k != 1)
            lines.append(f"{name}: batch 1 {mine[1]:.0f} tok/s; {rel} batch 1 ({b.get('batch_tokens')} tokens)")
    return lines


if __name__ == "__main__":
    kind_, path_, tokens_, window_, stride_, threads_, batch_ = sys.argv[1:8]
    print(json.dumps(child(kind_, path_, tokens_, int(window_), int(stride_), int(threads_), int(batch_))))
