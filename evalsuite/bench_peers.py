"""The peers a user would pick instead, timed in the bench's own run on the same text, as ratios.

- lm-evaluation-harness's HF backend, rolling log-likelihood (`loglikelihood_rolling`, what its
  wikitext task runs), when `EVALSUITE_LMEVAL_PYTHON` names a Python with lm-eval 0.4 (a scratch
  venv; never a dependency). Its windows are disjoint `max_length` blocks (each token scored once,
  forwarded once); the bench sets `max_length` to the suite's window.
- llama.cpp's `llama-perplexity` on the same text when the binary is on PATH (or named by
  `EVALSUITE_LLAMA_PERPLEXITY`), on the GGUF named by `EVALSUITE_LLAMA_GGUF` (else the model's own
  GGUF, when its source is one): chunks of the window, the second half of each scored, as
  llama.cpp always does. Whole-process wall time, against evalsuite's whole process (bench_stages).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from evalsuite.bench_tasks import LMEVAL_ENV, run_lmeval

LLAMA_ENV, LLAMA_GGUF_ENV = "EVALSUITE_LLAMA_PERPLEXITY", "EVALSUITE_LLAMA_GGUF"
FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+)")

ROLLING_CHILD = r"""
import json, sys, time
import torch
path, threads, window, text_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
start = time.perf_counter()
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
lm = HFLM(pretrained=path, dtype="float32", batch_size=1, device="cpu", max_length=window)
loaded = time.perf_counter() - start
text = open(text_file, encoding="utf-8").read()
tokens = len(lm.tok_encode(text))
start = time.perf_counter()
out = lm.loglikelihood_rolling([Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=0)],
                               disable_tqdm=True)
print(json.dumps({"seconds": time.perf_counter() - start, "load_seconds": loaded, "tokens": tokens,
                  "loglikelihood": float(out[0])}))
"""


def lmeval_rolling(python: str, model: Path, text: str, threads: int, window: int) -> dict[str, Any]:
    """lm-eval's rolling log-likelihood of `text` (scored tokens/s, model load excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text.txt"
        path.write_text(text, encoding="utf-8")
        out = run_lmeval(python, ROLLING_CHILD, [str(model), str(threads), str(window), str(path)], threads)
    if "seconds" in out:
        out["tokens_per_s"] = out["tokens"] / out["seconds"]
    return out


def llama_binary() -> str | None:
    return shutil.which(os.environ.get(LLAMA_ENV, "llama-perplexity"))


def llama_perplexity(binary: str, gguf: Path, text: str, threads: int, window: int, chunks: int) -> dict[str, Any]:
    """`llama-perplexity` on `text`, whole process timed: its final PPL and scored tokens/s."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text.txt"
        path.write_text(text, encoding="utf-8")
        cmd = [binary, "-m", str(gguf), "-f", str(path), "-c", str(window), "-b", str(window), "-t", str(threads),
               "--chunks", str(chunks)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
        seconds = time.perf_counter() - start
    found = FINAL.search(proc.stdout + proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"error": f"llama-perplexity failed (exit {proc.returncode}): {tail}", "gguf": str(gguf)}
    scored = chunks * (window - window // 2)
    return {"gguf": gguf.name, "seconds": seconds, "ppl": float(found.group(1)), "chunks": chunks,
            "scored_tokens": scored, "tokens_per_s": scored / seconds}


def peers(model: Path, text: str, llama_text: str, threads: int, window: int, chunks: int) -> dict[str, Any]:
    """Every peer available here (each entry says why it is missing otherwise): lm-eval on `text`,
    llama.cpp on `llama_text` (`chunks` chunks of `window` tokens)."""
    out: dict[str, Any] = {"window": window}
    python = os.environ.get(LMEVAL_ENV)
    out["lmeval_rolling"] = lmeval_rolling(python, model, text, threads, window) if python else \
        {"error": f"not measured (set {LMEVAL_ENV} to a Python with lm-eval 0.4)"}
    binary = llama_binary()
    named = os.environ.get(LLAMA_GGUF_ENV, "")
    if binary is None:
        out["llama"] = {"error": "not measured (no llama-perplexity on PATH; README: Performance)"}
    elif not named or not Path(named).is_file():
        out["llama"] = {"error": f"not measured (set {LLAMA_GGUF_ENV} to a GGUF file of the model)"}
    else:
        out["llama"] = llama_perplexity(binary, Path(named), llama_text, threads, window, chunks)
    return out


def peer_lines(p: dict[str, Any], lanes: dict[str, float], whole_process: float | None) -> list[str]:
    """Ratios: each evalsuite lane's scored tokens/s over lm-eval's; llama.cpp's whole process over ours."""
    lines = []
    ref = p["lmeval_rolling"]
    if "tokens_per_s" in ref:
        lines.append(f"peers: lm-eval HF rolling log-likelihood (disjoint {p['window']}-token windows, batch 1): "
                     f"{ref['tokens_per_s']:.0f} scored tok/s on {ref['tokens']:,} tokens")
        lines += [f"  {name}: {tps:.0f} tok/s = {tps / ref['tokens_per_s']:.2f} x lm-eval"
                  for name, tps in lanes.items()]
    else:
        lines.append(f"peers: lm-eval HF rolling: {ref['error']}")
    llama = p["llama"]
    if "seconds" in llama:
        line = (f"peers: llama-perplexity ({llama['gguf']}, {llama['chunks']} chunks of {p['window']}): "
                f"{llama['seconds']:.1f} s whole process, PPL {llama['ppl']:.4f}")
        if whole_process:
            line += (f"; evalsuite's warm ORT-only process = {whole_process / llama['seconds']:.2f} x its time "
                     "(target 0.6)")
        lines.append(line)
    else:
        lines.append(f"peers: llama-perplexity: {llama['error']}")
    return lines
