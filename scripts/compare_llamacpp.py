"""llama.cpp's chunk perplexity against evalsuite's ORT lane on the same tokens.

`llama-perplexity -c 512` cuts the text into 512-token chunks and, in each, scores tokens 257..511
from the logits at positions 256..510 (context from the chunk's start; no BOS for SmolLM2, whose
GGUF has add_bos false). This scores exactly those tokens with `OrtRunner` and prints the running
PPL after each chunk in llama.cpp's `[j]ppl` format, to set beside its output.

    python scripts/compare_llamacpp.py TEXT ONNX_DIR HF_DIR CHUNKS
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from evalsuite.models.ort_runner import OrtRunner
from evalsuite.scoring.tokenstats import solo_stats

CTX = 512


def main(text: Path, onnx_dir: Path, hf_dir: Path, chunks: int) -> None:
    tok = AutoTokenizer.from_pretrained(hf_dir)
    ids = np.asarray(tok(text.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"], dtype=np.int64)
    runner = OrtRunner(onnx_dir, "cpu", 2)
    nll: list[np.ndarray] = []
    running = []
    for j in range(chunks):
        chunk = ids[CTX * j : CTX * (j + 1)]
        logits = runner.logits(chunk, CTX // 2)[:-1]  # positions 256..510 predict tokens 257..511
        nll.append(solo_stats(logits, chunk[CTX // 2 + 1 :])[:, 0])
        running.append(float(np.exp(np.concatenate(nll).mean())))
    print(",".join(f"[{i + 1}]{v:.4f}" for i, v in enumerate(running)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
