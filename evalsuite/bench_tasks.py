"""`evalsuite bench`, accuracy tasks: HellaSwag examples per second, each lane against lm-eval's HF backend.

On the same first `n` HellaSwag validation examples, tokenized as lm-eval does (`scoring/loglik.py`):
- each lane (torch reference, ORT base) scoring as the suite does (shared context forwarded once:
  torch with every choice's rest in the same masked forward, ORT with each choice over its KV
  cache) and scoring every request whole (lm-eval's HF cost model: context +
  continuation for every choice), alternated twice in this process, the faster of each kept;
- lm-eval's own `HFLM.loglikelihood` (batch 1, fp32, the same threads) on the same request strings,
  when `EVALSUITE_LMEVAL_PYTHON` names a Python that has lm-eval 0.4 (a scratch venv: lm-eval is never a
  dependency of evalsuite). Its log-likelihoods are compared with the torch lane's as a check that both
  scored the same thing.
Times exclude model loading (each side's load is reported apart). Ratios, never absolute targets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET_ORT = 4.0  # ORT base lane vs lm-eval HF, examples/s (issue 26)
TARGET_TORCH = 2.0  # torch reference lane vs lm-eval HF
LMEVAL_ENV = "EVALSUITE_LMEVAL_PYTHON"

LMEVAL_CHILD = r"""
import json, sys, time
import torch
path, threads, requests_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(threads)
start = time.perf_counter()
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
lm = HFLM(pretrained=path, dtype="float32", batch_size=1, device="cpu")
loaded = time.perf_counter() - start
pairs = json.load(open(requests_file))
reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(c, x), idx=i) for i, (c, x) in enumerate(pairs)]
start = time.perf_counter()
out = lm.loglikelihood(reqs, disable_tqdm=True)
print(json.dumps({"seconds": time.perf_counter() - start, "load_seconds": loaded,
                  "loglikelihoods": [float(r[0]) for r in out]}))
"""


def _alternated(fns: list[Callable[[], Any]], rounds: int = 2) -> list[tuple[float, Any]]:
    """Run the functions in turn, `rounds` times; each one's fastest wall time and its last result
    (alternating spreads a load change over all of them rather than onto one)."""
    best: list[tuple[float, Any]] = [(float("inf"), None)] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            out = fn()
            best[i] = (min(best[i][0], time.perf_counter() - start), out)
    return best


def run_lmeval(python: str, script: str, args: list[str], threads: int) -> dict[str, Any]:
    """Run an lm-eval child script offline in the given Python; its last stdout line is JSON."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([python, "-c", script, *args], env=env, capture_output=True, text=True, timeout=3600,
                          check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"error": f"lm-eval child failed (exit {proc.returncode}): {tail}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def lmeval_child(python: str, model: Path, threads: int, pairs: list[list[str]]) -> dict[str, Any]:
    """lm-eval's HF backend on the request strings, in the given Python (a scratch venv)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "requests.json"
        reqs.write_text(json.dumps(pairs))
        return run_lmeval(python, LMEVAL_CHILD, [str(model), str(threads), str(reqs)], threads)


def task_speed(model: Path, base_onnx: Path, threads: int, n: int = 40) -> dict[str, Any]:
    """Examples per second on the first n HellaSwag examples: suite path, whole requests, lm-eval."""
    from transformers import AutoTokenizer

    from evalsuite.data.tasks import load_task
    from evalsuite.models.ort_runner import OrtRunner
    from evalsuite.models.torch_runner import TorchRunner
    from evalsuite.scoring import loglik

    examples = load_task("hellaswag", n).examples
    tokenized = loglik.tokenize_examples(AutoTokenizer.from_pretrained(model), examples, 8192)
    pairs = [[r.context, r.continuation] for e in examples for r in e.requests]
    lanes: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    makers: list[tuple[str, Callable[[], Any]]] = [("torch reference", lambda: TorchRunner(model, threads)),
                                                   ("ORT base", lambda: OrtRunner(base_onnx, "cpu", threads))]
    for label, make in makers:
        start = time.perf_counter()
        runner = make()
        load = time.perf_counter() - start

        def shared(r: Any = runner) -> list[np.ndarray]:
            return [loglik.score_example(r, t) for t in tokenized]

        def whole(r: Any = runner) -> list[tuple[float, bool]]:
            return [loglik.score_request(r, i, t) for tk in tokenized for i, t in zip(tk.inputs, tk.targets,
                                                                                       strict=True)]

        (shared_s, rows), (whole_s, _) = _alternated([shared, whole])
        scores[label] = np.concatenate([row[:, 0] for row in rows])
        lanes[label] = {"load_seconds": load, "seconds": shared_s, "whole_request_seconds": whole_s,
                        "examples_per_s": n / shared_s, "whole_request_examples_per_s": n / whole_s}
    out: dict[str, Any] = {"task": "hellaswag", "examples": n, "requests": len(pairs), "threads": threads,
                           "forwarded_tokens": loglik.forwarded_tokens(tokenized),
                           "lmeval_forwarded_tokens": sum(int(i.shape[0]) for t in tokenized for i in t.inputs),
                           "lanes": lanes}
    python = os.environ.get(LMEVAL_ENV)
    if python:
        ref = lmeval_child(python, model, threads, pairs)
        if "seconds" in ref:
            ref["examples_per_s"] = n / ref["seconds"]
            ref["max_abs_dll_vs_torch"] = float(np.abs(np.asarray(ref.pop("loglikelihoods"))
                                                       - scores["torch reference"]).max())
        out["lmeval"] = ref
    return out


def task_lines(t: dict[str, Any]) -> list[str]:
    """One line per lane: examples/s, vs whole requests, vs lm-eval (with the issue's targets)."""
    lines = [f"tasks ({t['task']}, first {t['examples']}, {t['requests']} requests, {t['threads']} threads): "
             f"{t['forwarded_tokens']:,} tokens forwarded vs lm-eval's {t['lmeval_forwarded_tokens']:,} "
             f"({t['lmeval_forwarded_tokens'] / t['forwarded_tokens']:.2f} x fewer)"]
    ref = t.get("lmeval", {})
    for label, lane in t["lanes"].items():
        line = (f"  {label}: {lane['examples_per_s']:.2f} examples/s = "
                f"{lane['examples_per_s'] / lane['whole_request_examples_per_s']:.2f} x its whole-request scoring")
        if "examples_per_s" in ref:
            target = TARGET_ORT if label.startswith("ORT") else TARGET_TORCH
            ratio = lane["examples_per_s"] / ref["examples_per_s"]
            line += (f", {ratio:.2f} x lm-eval HF ({'meets' if ratio >= target else 'MISSES'} the {target:g} x "
                     "target)")
        lines.append(line)
    if "examples_per_s" in ref:
        lines.append(f"  lm-eval HF (batch 1): {ref['examples_per_s']:.2f} examples/s; its log-likelihoods vs the "
                     f"torch lane: max |d| {ref['max_abs_dll_vs_torch']:.1e} nats")
    elif ref:
        lines.append(f"  lm-eval HF: {ref.get('error')}")
    else:
        lines.append(f"  lm-eval HF: not measured (set {LMEVAL_ENV} to a Python with lm-eval 0.4)")
    return lines


if __name__ == "__main__":  # python -m evalsuite.bench_tasks MODEL ONNX THREADS N: the task rows alone
    print("\n".join(task_lines(task_speed(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]),
                                          int(sys.argv[4])))))
