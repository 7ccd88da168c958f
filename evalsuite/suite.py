"""`evaluate()`: resolve the model, load texts, plan windows, run every runner. Returns data only."""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evalsuite.cache import package_versions, sweep_stale
from evalsuite.config import DatasetCfg, Suite, is_path_ref, run_label
from evalsuite.cpu import cpu_info
from evalsuite.data import corpora, documents, sources
from evalsuite.data.windows import Plan, Window, check_policy, document_plan, shard_windows
from evalsuite.errors import DataError, ModelError, ScoringError, UsageError
from evalsuite.gate import results
from evalsuite.models import source as model_source
from evalsuite.quant.support import check_variants
from evalsuite.runners import KINDS, RunnerKind
from evalsuite.schema import PACKAGES, RunRecord, error
from evalsuite.scoring.journal import Journal, journal_path
from evalsuite.scoring.lanes import Lane, Runner, new_lane, score_lanes, summarize
from evalsuite.scoring.metrics import paired_metrics, solo_metrics, unit_metrics
from evalsuite.scoring.parity import export_notes, parity_stats
from evalsuite.scoring.tokenstats import SOLO
from evalsuite.stages import NullProgress, stage
from evalsuite.task_suite import TaskLane, TaskSet, load_tasks, score_task_lanes, task_document
from evalsuite.task_suite import prepare as prepare_tasks


class Progress(Protocol):
    """Stages of the run (stages.stage): total 0 when no count is known (e.g. an ONNX build)."""

    def start(self, label: str, total: int, unit: str = "tok") -> None: ...
    def advance(self, n: int) -> None: ...
    def stop(self) -> None: ...


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


@dataclass
class Evaluation:
    suite: Suite
    runs: list[RunRecord] = field(default_factory=list)
    cols: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)  # (variant, runner, dataset)
    parity: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # {variant, runner, dataset|None, message}
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> build info (path, size)
    provenance: dict[str, Any] = field(default_factory=dict)
    resume: bool = True
    shard: tuple[int, int] | None = None
    scored_windows: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    identities: dict[str, Any] = field(default_factory=dict)  # "base_onnx", "variants": what was scored
    task_sets: list[TaskSet] = field(default_factory=list)  # accuracy tasks (task_suite.py)
    task_lanes: list[TaskLane] = field(default_factory=list)


def evaluate(suite: Suite, data_dir: Path | None, progress: Progress | None = None,
             resume: bool = True, shard: tuple[int, int] | None = None) -> Evaluation:
    """Score every runner and variant. Config/input errors raise; a runner that fails to build or
    score is recorded in `errors` (its checks then fail) and the others still run.

    The torch reference is scored alone; the ORT base and every variant are scored together,
    window by window, so each variant is compared with the base's logits of the same window.
    With `resume`, per-window results already journaled for the same runner, tokens and windows
    are reused (an interrupted or repeated run only scores what is missing). With `shard=(i, n)`
    only every n-th window from i is scored; `scoring/merge.py` combines the n shards (each run
    records its plan, so per-document streams merge as exactly as one-stream ones)."""
    progress = progress or NullProgress()
    sweep_stale()
    texts = load_texts(suite, data_dir)
    task_sets = load_tasks(suite.tasks)
    with stage(progress, f"model {suite.model.source}: resolve (GGUF export / download when not cached)"):
        source = model_source.resolve(suite.model.source, suite.model.trust_remote_code)
    check_positions(suite, source.path)
    check_variants(suite.variants, source.path)
    with stage(progress, "tokenize datasets"):
        streams = load_streams(suite, source, texts)
        prepare_tasks(task_sets, source.path)
    check_shard(streams, shard)
    out = Evaluation(suite, provenance=provenance(source, streams), resume=resume, shard=shard, task_sets=task_sets)
    out.identities["data"] = {s.label: s.text.sha256 for s in streams}  # every dataset's text is bound
    out.provenance["data_dir"] = str(data_dir) if data_dir else None
    roles = suite.roles
    reference = None
    if roles.reference in suite.eval.runners:
        reference = _base_runner(out, KINDS[roles.reference], source, streams, progress)
        if reference is not None:
            _score_group(out, [(roles.base_variant, reference)], streams, progress)
    if roles.base in suite.eval.runners:
        kind = KINDS[roles.base]
        base = _base_runner(out, kind, source, streams, progress)
        if base is not None:
            out.identities["base_onnx"] = base.identity["model"] if base.identity else None
        if reference is not None and base is not None and (shard is None or shard[0] == 0):
            label = f"{kind.name.upper()} vs {roles.reference} logit parity"
            with stage(progress, label, len(streams), "datasets") as advance:
                out.parity = [_advanced(parity_stats(reference, base, s, suite.parity.sample_windows), advance)
                              for s in streams]
            export_notes(out.parity, source.path, base.model, suite.eval.window)
        del reference
        if base is None:  # nothing to compare the variants with: record them as not scored
            for variant in suite.variants:
                out.errors.append(error(variant.name, kind.name, None,
                                        f"not built: the {kind.name.upper()} base model failed (see its error)"))
            return out
        group = [(roles.base_variant, base)]
        for variant in suite.variants:
            runner = _guarded(out, variant.name, kind.name, lambda v=variant: _checked(
                _variant_runner(suite, source, v, out, data_dir, progress), streams))
            if runner is not None:
                group.append((variant.name, runner))
        _score_group(out, group, streams, progress)
    return out  # without the base runner no variant is scored: the gate then fails their checks


def _base_runner(out: Evaluation, kind: RunnerKind, source: model_source.ModelSource, streams: list[Stream],
                 progress: Progress) -> Any:
    """The base model on `kind`'s runner (a Runner; the base runner's also names its `model` file),
    or None (its error recorded)."""
    with stage(progress, kind.stage):
        return _guarded(out, out.suite.roles.base_variant, kind.name,
                        lambda: _checked(kind.base(out.suite, source), streams))


def _advanced(item: Any, advance: Any) -> Any:
    advance(1)
    return item


def _checked(runner: Runner, streams: list[Stream]) -> Runner:
    """Refuse a runner whose logits are narrower than the tokenizer's vocabulary."""
    need = max((s.tokenizer_vocab for s in streams), default=0)
    if runner.vocab_size < need:
        raise ModelError(f"the {runner.name} model outputs {runner.vocab_size} logits but the tokenizer has "
                         f"{need} tokens; the model and tokenizer do not belong together")
    return runner


def check_positions(suite: Suite, hf_dir: Path | None, gguf: Path | None = None) -> None:
    """Refuse windows and AWQ calibration sequences longer than the model's positions before any
    build or scoring (every runner; an HF folder, a given ONNX folder or a GGUF header says them)."""
    from evalsuite.models.positions import check_lengths, limits

    lengths = [(suite.eval.window, "window", "--window")]
    lengths += [(v.calibration.seq_len, f"variant '{v.name}' calibration seq_len", "seq_len =")
                for v in suite.variants if v.method == "awq"]
    check_lengths(lengths, limits(hf_dir, suite.model.onnx, gguf))


def _variant_runner(suite: Suite, source: model_source.ModelSource, variant: Any, out: Evaluation,
                    data_dir: Path | None, progress: Progress | None = None) -> Runner:
    from evalsuite.quant.variants import build_variant

    make = KINDS[suite.roles.base].onnx
    if make is None:
        raise ModelError(f"the {suite.roles.base} runner scores no ONNX variant")
    info = build_variant(source, variant, suite, data_dir, progress)
    runner = make(suite, Path(info["path"]))
    info["identity"] = runner.identity["model"] if runner.identity else None
    out.variants[variant.name] = info
    return runner


def _guarded(out: Evaluation, variant: str, runner: str, make: Any) -> Any:
    """Build a runner; on a model/scoring error record it and return None (fail closed later)."""
    try:
        return make()
    except (ModelError, ScoringError) as err:
        out.errors.append(error(variant, runner, None, str(err)))
        return None


def _score_group(out: Evaluation, group: list[tuple[str, Runner]], streams: list[Stream],
                 progress: Progress) -> None:
    """Score runners together on each stream: the first is the base, the others are paired with it."""
    for stream in streams:
        indices = shard_indices(len(stream.windows), out.shard)
        n = int(stream.tokens.shape[0])
        lanes = [new_lane(r, v, i > 0, n) for i, (v, r) in enumerate(group)]
        if out.resume:
            for lane in lanes:
                lane.journal = _journal(lane, lanes[0], stream)
        names = ", ".join(out.suite.roles.who(v, r.name) for v, r in group)
        progress.start(f"score {names} · {stream.label}", sum(stream.windows[i].n_targets for i in indices), "tok")
        start = time.perf_counter()
        try:
            score_lanes(lanes, stream.tokens, stream.windows, indices, progress.advance, out.suite.eval.batch_size)
        finally:
            progress.stop()
            for lane in lanes:
                if lane.journal is not None:
                    lane.journal.close()
        wall = time.perf_counter() - start
        out.provenance.setdefault("wall_seconds", {})[f"{names} · {stream.label}"] = round(wall, 3)
        for lane in lanes:
            _collect(out, lane, lanes[0], stream, indices, lane.seconds)
    if out.task_sets:
        task_lanes, errors = score_task_lanes(group, out.task_sets, progress, out.resume, out.shard, out.suite.roles)
        out.task_lanes += task_lanes
        out.errors += errors


def _journal(lane: Lane, base: Lane, stream: Stream) -> Journal | None:
    identity = getattr(lane.runner, "identity", None)
    if identity is None:
        return None
    if lane.paired:
        identity = {**identity, "paired_with": getattr(base.runner, "identity", None)}
    key = {"identity": identity, "columns": lane.columns}
    return Journal(journal_path(key, stream.tokens, stream.windows), stream.windows, len(lane.columns))


def _collect(out: Evaluation, lane: Lane, base: Lane, stream: Stream, indices: list[int], seconds: float) -> None:
    if lane.error is not None:
        out.errors.append(error(lane.variant, lane.runner.name, stream.label, lane.error))
        return
    ev = out.suite.eval
    windows = [stream.windows[i] for i in indices]
    metrics = solo_metrics(lane.cols[:, : len(SOLO)], windows)
    # A shard's run carries its per-window rows, so `merge` can recombine the shards exactly.
    rows = {} if out.shard is None else {"shard_windows": indices, "shard_cols": [
        lane.cols[w.first_target : w.end].tolist() for w in windows]}
    if out.shard is None:  # word/byte units need the whole scored span; merge adds them for shards
        metrics |= unit_metrics(float(np.nansum(lane.cols[:, 0])), stream.words, stream.bytes)
    else:
        metrics |= {"words": float(stream.words), "bytes": float(stream.bytes)}
    if lane.paired:
        metrics |= paired_metrics(lane.cols, base.cols[:, 0], windows)
    run = summarize(
        lane.cols[:, 0], windows, seconds=seconds, reused_tokens=lane.reused, metrics=metrics,
        model=out.suite.model.source, variant=lane.variant, runner=lane.runner.name, dataset=stream.label,
        split=stream.text.split, window=ev.window, stride=ev.stride, bos=ev.bos, max_tokens=ev.max_tokens,
        tokens_in_stream=int(stream.tokens.shape[0]), **rows,
        documents=None if stream.plan.documents is None else list(stream.plan.documents),
    )
    out.runs.append(run)
    out.cols[run.key] = lane.cols
    out.scored_windows[run.key] = indices


def check_shard(streams: list[Stream], shard: tuple[int, int] | None) -> None:
    """Every shard must score at least 2 tokens of every stream (an empty shard is a usage error)."""
    for s in streams:
        targets = sum(s.windows[i].n_targets for i in shard_indices(len(s.windows), shard))
        if shard is not None and targets < 2:
            raise UsageError(f"--shard {shard[0]}/{shard[1]} leaves {targets} token(s) of {s.label} to score "
                             f"({len(s.windows)} windows); at least 2 are needed: use fewer shards")


def shard_indices(n_windows: int, shard: tuple[int, int] | None) -> list[int]:
    everything = list(range(n_windows))
    return everything if shard is None else shard_windows(everything, *shard)


def provenance(source: model_source.ModelSource, streams: list[Stream]) -> dict[str, Any]:
    versions = package_versions(PACKAGES)
    return {
        "model": {"source": source.name, "kind": source.kind, "path": str(source.path),
                  "origin_sha256": source.origin_sha256, "tokenizer_sha256": source.tokenizer_id},
        "data": {s.label: {"source": s.text.source, "text_sha256": s.text.sha256,
                           "file_sha256": s.text.meta.get("file_sha256"),
                           **({"documents": s.documents} if s.documents else {})} for s in streams},
        "packages": versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_info(),
    }


def to_document(ev: Evaluation) -> dict[str, Any]:
    """The results document (assembled by gate/results.document from what the pipeline scored)."""
    tasks = task_document(ev.task_sets, ev.task_lanes, ev.shard) if ev.task_sets else None
    return results.document(ev.suite, ev.runs, parity=ev.parity, variants=ev.variants, errors=ev.errors,
                            identities=ev.identities, provenance=ev.provenance, shard=ev.shard, tasks=tasks)
