"""Perplexity as a task (task_api.EvalTask): texts -> token streams -> window plans -> per-token
columns on every lane -> one RunRecord per lane and dataset, plus the base's logit parity.

Requests are the windows of each stream (data/windows.py); every lane of a group scores the same
windows (scoring/lanes.py), journaled per window so an interrupted run resumes; reduction is
scoring/metrics.py; with `--shard i/n` a lane scores windows i, i+n, ... and `merge` recombines
them exactly from the per-window rows each shard's run carries.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.config import DatasetCfg, Suite, is_path_ref, run_label
from evalsuite.data import corpora, documents, sources
from evalsuite.data.windows import Plan, Window, check_policy, document_plan, shard_windows
from evalsuite.errors import DataError, UsageError
from evalsuite.models import source as model_source
from evalsuite.runners import KINDS
from evalsuite.schema import RunRecord, error
from evalsuite.scoring.journal import Journal, journal_path
from evalsuite.scoring.lanes import Lane, new_lane, score_lanes, summarize
from evalsuite.scoring.metrics import paired_metrics, solo_metrics, unit_metrics
from evalsuite.scoring.parity import export_notes, parity_stats
from evalsuite.scoring.tokenstats import SOLO
from evalsuite.stages import stage
from evalsuite.task_api import Contribution, Group, Progress, RunContext


@dataclass(frozen=True)
class Stream:
    """One dataset's token stream (already truncated to max_tokens) and its window plan."""

    text: corpora.Text
    tokens: np.ndarray  # int64 [n]
    plan: Plan  # recorded with each run (its documents, for per-document scoring)
    words: int  # whitespace words of the text the scored targets cover
    bytes: int  # UTF-8 bytes of that text
    tokenizer_vocab: int  # len(tokenizer): every runner must output at least this many logits
    documents: int = 0  # documents scored one by one (0: the text is one stream)
    windows: list[Window] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", self.plan.windows())

    @property
    def label(self) -> str:
        if self.text.label:
            return self.text.label
        return self.text.dataset if self.text.split == "test" else f"{self.text.dataset}:{self.text.split}"


def load_texts(suite: Suite, data_dir: Path | None) -> list[corpora.Text]:
    """Check the policy, the execution provider and the torch device, and load every text before
    any model work, so bad input fails fast: [eval] datasets (packaged names or dataset TOML paths),
    then [[datasets]] entries."""
    check_policy(suite.eval.window, suite.eval.stride)
    for kind in KINDS.values():  # each runner's device or provider, before any model work
        if kind.name in suite.eval.runners:
            kind.check(suite)
    texts = []
    for ref in suite.eval.datasets:
        label = run_label(ref)
        if is_path_ref(ref.partition(":")[0]):
            texts.append(sources.spec_file_text(ref, data_dir, label))
        else:
            texts.append(dataclasses.replace(corpora.load_text(ref, data_dir), label=label))
    return texts + [custom_text(cfg) for cfg in suite.datasets]


def custom_text(cfg: DatasetCfg) -> corpora.Text:
    if cfg.text is not None:
        return sources.text_file(cfg.text, cfg.run_label, cfg.sha256)
    if cfg.hub is not None:
        h = cfg.hub
        return sources.hub_text(h.path, h.name, h.split, h.column, h.revision, h.data_dir, cfg.join, cfg.run_label)
    return sources.data_files_text(cfg.files(), cfg.format, cfg.split, cfg.column, cfg.join, cfg.run_label)


def per_document(suite: Suite) -> list[bool]:
    """Whether each dataset (in load_texts order) is scored document by document."""
    flags = [suite.eval.documents] * len(suite.eval.datasets)
    return flags + [suite.eval.documents if d.documents is None else d.documents for d in suite.datasets]


def load_streams(suite: Suite, source: model_source.ModelSource, texts: list[corpora.Text]) -> list[Stream]:
    from evalsuite.models.tokenizer import LazyTokenizer

    ev = suite.eval
    tokenizer = LazyTokenizer(source.path)  # a cached token stream needs no transformers (nor torch)
    streams = []
    for text, docs in zip(texts, per_document(suite), strict=True):
        if docs:
            streams.append(document_stream(suite, text, tokenizer, source.tokenizer_id))
            continue
        tokens, ends = corpora.tokenize(text, tokenizer, source.tokenizer_id, ev.bos)
        if ev.max_tokens is not None:
            tokens = tokens[: ev.max_tokens]
        n = int(tokens.shape[0])
        if n < 3:
            raise DataError(f"dataset '{text.dataset}' has {n} token(s) after --max-tokens; "
                            "at least 3 are needed (2 scored tokens for an error bar)")
        words, nbytes = corpora.span_counts(text.text, ends, 1, n)
        streams.append(Stream(text, tokens, Plan(n, ev.window, ev.stride), words, nbytes, len(tokenizer)))
    return streams


def document_stream(suite: Suite, text: corpora.Text, tokenizer: Any, tokenizer_id: str) -> Stream:
    """Each row of `text` scored on its own from the prefix token (lm-eval rolling loglikelihood)."""
    ev = suite.eval
    tokens, ends, docs = documents.tokenize_documents(text, tokenizer, tokenizer_id)
    if ev.max_tokens is not None:
        tokens = tokens[: ev.max_tokens]
    n = int(tokens.shape[0])
    plan = document_plan(documents.clipped_bounds(docs, n), ev.window, ev.stride)
    words, nbytes, count = documents.document_counts(text, ends, docs, n)
    return Stream(text, tokens, plan, words, nbytes, len(tokenizer), documents=count)


def shard_indices(n_windows: int, shard: tuple[int, int] | None) -> list[int]:
    everything = list(range(n_windows))
    return everything if shard is None else shard_windows(everything, *shard)


class PerplexityTask:
    """The perplexity kind: every text of the suite, scored window by window on every lane."""

    name = "perplexity"

    def __init__(self, suite: Suite, data_dir: Path | None) -> None:
        self.suite = suite
        self.texts = load_texts(suite, data_dir)
        self.streams: list[Stream] = []
        self.runs: list[RunRecord] = []
        self.cols: dict[tuple[str, str, str], np.ndarray] = {}  # (variant, runner, dataset) -> columns
        self.scored_windows: dict[tuple[str, str, str], list[int]] = {}
        self.parity_records: list[dict[str, Any]] = []

    @classmethod
    def load(cls, suite: Suite, data_dir: Path | None) -> PerplexityTask:
        return cls(suite, data_dir)

    def tokenize(self, source: model_source.ModelSource) -> None:
        self.streams = load_streams(self.suite, source, self.texts)

    def check(self, shard: tuple[int, int] | None) -> None:
        """Every shard must score at least 2 tokens of every stream (an empty shard is a usage error)."""
        for s in self.streams:
            targets = sum(s.windows[i].n_targets for i in shard_indices(len(s.windows), shard))
            if shard is not None and targets < 2:
                raise UsageError(f"--shard {shard[0]}/{shard[1]} leaves {targets} token(s) of {s.label} to score "
                                 f"({len(s.windows)} windows); at least 2 are needed: use fewer shards")

    def vocab_needed(self) -> int:
        return max((s.tokenizer_vocab for s in self.streams), default=0)

    def data(self) -> dict[str, dict[str, Any]]:
        return {s.label: {"source": s.text.source, "text_sha256": s.text.sha256,
                          "file_sha256": s.text.meta.get("file_sha256"),
                          **({"documents": s.documents} if s.documents else {})} for s in self.streams}

    def bound(self) -> dict[str, str]:
        return {s.label: s.text.sha256 for s in self.streams}  # every dataset's text is bound

    def parity(self, reference: Any, base: Any, source: model_source.ModelSource,
               progress: Progress) -> list[dict[str, Any]]:
        label = f"{base.name.upper()} vs {reference.name} logit parity"
        with stage(progress, label, len(self.streams), "datasets") as advance:
            records = []
            for s in self.streams:
                records.append(parity_stats(reference, base, s, self.suite.parity.sample_windows))
                advance(1)
        export_notes(records, source.path, base.model, self.suite.eval.window)
        self.parity_records += records
        return records

    def score(self, group: Group, ctx: RunContext, progress: Progress) -> None:
        """Score the group's runners together on each stream: the first is the base, the others pair with it."""
        for stream in self.streams:
            indices = shard_indices(len(stream.windows), ctx.shard)
            lanes = [new_lane(r, v, i > 0, int(stream.tokens.shape[0])) for i, (v, r) in enumerate(group)]
            if ctx.resume:
                for lane in lanes:
                    lane.journal = _journal(lane, lanes[0], stream)
            names = ", ".join(ctx.suite.roles.who(v, r.name) for v, r in group)
            progress.start(f"score {names} · {stream.label}", sum(stream.windows[i].n_targets for i in indices), "tok")
            start = time.perf_counter()
            try:
                score_lanes(lanes, stream.tokens, stream.windows, indices, progress.advance, ctx.suite.eval.batch_size)
            finally:
                progress.stop()
                for lane in lanes:
                    if lane.journal is not None:
                        lane.journal.close()
            wall = time.perf_counter() - start
            ctx.provenance.setdefault("wall_seconds", {})[f"{names} · {stream.label}"] = round(wall, 3)
            for lane in lanes:
                self._collect(ctx, lane, lanes[0], stream, indices)

    def _collect(self, ctx: RunContext, lane: Lane, base: Lane, stream: Stream, indices: list[int]) -> None:
        if lane.error is not None:
            ctx.errors.append(error(lane.variant, lane.runner.name, stream.label, lane.error))
            return
        ev, shard = ctx.suite.eval, ctx.shard
        windows = [stream.windows[i] for i in indices]
        metrics = solo_metrics(lane.cols[:, : len(SOLO)], windows)
        # A shard's run carries its per-window rows, so `merge` can recombine the shards exactly.
        rows = {} if shard is None else {"shard_windows": indices, "shard_cols": [
            lane.cols[w.first_target : w.end].tolist() for w in windows]}
        if shard is None:  # word/byte units need the whole scored span; merge adds them for shards
            metrics |= unit_metrics(float(np.nansum(lane.cols[:, 0])), stream.words, stream.bytes)
        else:
            metrics |= {"words": float(stream.words), "bytes": float(stream.bytes)}
        if lane.paired:
            metrics |= paired_metrics(lane.cols, base.cols[:, 0], windows)
        run = summarize(
            lane.cols[:, 0], windows, seconds=lane.seconds, reused_tokens=lane.reused, metrics=metrics,
            model=ctx.suite.model.source, variant=lane.variant, runner=lane.runner.name, dataset=stream.label,
            split=stream.text.split, window=ev.window, stride=ev.stride, bos=ev.bos, max_tokens=ev.max_tokens,
            tokens_in_stream=int(stream.tokens.shape[0]), **rows,
            documents=None if stream.plan.documents is None else list(stream.plan.documents),
        )
        self.runs.append(run)
        self.cols[run.key] = lane.cols
        self.scored_windows[run.key] = indices

    def contribution(self, shard: tuple[int, int] | None) -> Contribution:
        return Contribution(runs=list(self.runs), parity=list(self.parity_records))


def _journal(lane: Lane, base: Lane, stream: Stream) -> Journal | None:
    identity = getattr(lane.runner, "identity", None)
    if identity is None:
        return None
    if lane.paired:
        identity = {**identity, "paired_with": getattr(base.runner, "identity", None)}
    key = {"identity": identity, "columns": lane.columns}
    return Journal(journal_path(key, stream.tokens, stream.windows), stream.windows, len(lane.columns))
