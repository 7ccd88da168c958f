"""`evaluate()`: resolve the model, load texts, plan windows, run every runner. Returns data only."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import data, model_source
from .config import Suite
from .errors import DataError
from .quiet import quiet_transformers
from .evaluate import Runner, RunResult, score_stream, summarize
from .windows import Window, check_policy, plan_windows

PACKAGES = ("evalsuite", "torch", "transformers", "onnxruntime", "onnxruntime-genai", "numpy", "tokenizers")


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def stop(self) -> None: ...


class NullProgress:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class Stream:
    """One dataset's token stream (already truncated to max_tokens) and its window plan."""

    text: data.Text
    tokens: np.ndarray  # int64 [n]
    windows: list[Window]

    @property
    def label(self) -> str:
        return self.text.dataset if self.text.split == "test" else f"{self.text.dataset}:{self.text.split}"


@dataclass
class Evaluation:
    suite: Suite
    runs: list[RunResult] = field(default_factory=list)
    nll: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)  # (variant, runner, dataset)
    provenance: dict[str, Any] = field(default_factory=dict)


def load_texts(suite: Suite, data_dir: Path | None) -> list[data.Text]:
    """Check the policy and load every text before any model work, so bad input fails fast."""
    check_policy(suite.eval.window, suite.eval.stride)
    return [data.load_text(ref, data_dir) for ref in suite.eval.datasets]


def load_streams(suite: Suite, source: model_source.ModelSource, texts: list[data.Text]) -> list[Stream]:
    from transformers import AutoTokenizer

    quiet_transformers()
    ev = suite.eval
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    streams = []
    for text in texts:
        tokens = data.tokenize(text, tokenizer, source.tokenizer_id, ev.bos)
        if ev.max_tokens is not None:
            tokens = tokens[: ev.max_tokens]
        if tokens.shape[0] < 2:
            raise DataError(f"dataset '{text.dataset}' has {tokens.shape[0]} token(s) after --max-tokens; "
                            "at least 2 are needed")
        streams.append(Stream(text, tokens, plan_windows(int(tokens.shape[0]), ev.window, ev.stride)))
    return streams


def make_runners(suite: Suite, source: model_source.ModelSource) -> Iterator[tuple[str, Runner]]:
    """(variant name, runner) pairs, created one at a time so only one model is in memory."""
    ev = suite.eval
    if "torch" in ev.runners:
        from .torch_runner import TorchRunner

        yield "base", TorchRunner(source.path, ev.threads, suite.model.trust_remote_code)
    if "ort" in ev.runners:
        from .onnx_export import build_onnx
        from .ort_runner import OrtRunner

        yield "base", OrtRunner(build_onnx(source.path, "fp32"), ev.provider, ev.threads)


def evaluate(suite: Suite, data_dir: Path | None, progress: Progress | None = None) -> Evaluation:
    progress = progress or NullProgress()
    texts = load_texts(suite, data_dir)
    source = model_source.resolve(suite.model.source, suite.model.trust_remote_code)
    streams = load_streams(suite, source, texts)
    out = Evaluation(suite, provenance=provenance(source, streams))
    for variant, runner in make_runners(suite, source):
        for stream in streams:
            result, nll = run_one(runner, variant, stream, suite, progress)
            out.runs.append(result)
            out.nll[(variant, runner.name, stream.label)] = nll
        del runner
    return out


def run_one(runner: Runner, variant: str, stream: Stream, suite: Suite, progress: Progress
            ) -> tuple[RunResult, np.ndarray]:
    ev = suite.eval
    progress.start(f"{variant}/{runner.name} {stream.label}", sum(w.n_targets for w in stream.windows))
    start = time.perf_counter()
    try:
        nll = score_stream(runner, stream.tokens, stream.windows, progress.advance)
    finally:
        progress.stop()
    result = summarize(
        nll, stream.windows, seconds=time.perf_counter() - start, model=suite.model.source,
        variant=variant, runner=runner.name, dataset=stream.label, split=stream.text.split,
        window=ev.window, stride=ev.stride, bos=ev.bos, max_tokens=ev.max_tokens,
        tokens_in_stream=int(stream.tokens.shape[0]),
    )
    return result, nll


def provenance(source: model_source.ModelSource, streams: list[Stream]) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "model": {"source": source.name, "kind": source.kind, "path": str(source.path),
                  "origin_sha256": source.origin_sha256, "tokenizer_sha256": source.tokenizer_id},
        "data": {s.label: {"source": s.text.source, "text_sha256": s.text.sha256,
                           "file_sha256": s.text.meta.get("file_sha256")} for s in streams},
        "packages": versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
