"""The pipeline: `evaluate()` loads every task kind's data (task_api.EvalTask; the registry
`TASKS`), resolves the model, builds each runner once and hands every group of lanes to every
kind. Returns data only; `to_document` assembles the results document from the kinds' parts."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.cache import package_versions, sweep_stale
from evalsuite.config import Suite
from evalsuite.cpu import cpu_info
from evalsuite.errors import ModelError, ScoringError
from evalsuite.gate import results
from evalsuite.models import source as model_source
from evalsuite.ppl_task import PerplexityTask
from evalsuite.quant.support import check_variants
from evalsuite.runners import KINDS, RunnerKind
from evalsuite.schema import PACKAGES, RunRecord, error
from evalsuite.scoring.lanes import Runner
from evalsuite.stages import NullProgress, stage
from evalsuite.task_api import Contribution, EvalTask, Group, Progress, RunContext
from evalsuite.task_suite import AccuracyTask, TaskLane, TaskSet

# Every kind of evaluation the pipeline runs, in scoring and report order. A new kind: a class with
# the task_api.EvalTask methods, one entry here, and its checks in gate/verdict.TASK_KINDS.
TASKS: tuple[Callable[[Suite, Path | None], EvalTask], ...] = (PerplexityTask.load, AccuracyTask.load)


def load_tasks(suite: Suite, data_dir: Path | None) -> list[EvalTask]:
    """Every kind's data, read and pinned before any model work (bad input raises here)."""
    return [load(suite, data_dir) for load in TASKS]


@dataclass
class Evaluation:
    suite: Suite
    tasks: list[EvalTask] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # {variant, runner, dataset|None, message}
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> build info (path, size)
    provenance: dict[str, Any] = field(default_factory=dict)
    resume: bool = True
    shard: tuple[int, int] | None = None
    identities: dict[str, Any] = field(default_factory=dict)  # "base_onnx", "variants": what was scored

    def context(self) -> RunContext:
        return RunContext(self.suite, self.resume, self.shard, self.errors, self.provenance)

    def kind(self, cls: type[Any]) -> Any:
        return next((t for t in self.tasks if isinstance(t, cls)), None)

    # What the reports read (terminal table, plots, samples), from the kinds that scored it.
    @property
    def runs(self) -> list[RunRecord]:
        ppl = self.kind(PerplexityTask)
        return ppl.runs if ppl else []

    @property
    def cols(self) -> dict[tuple[str, str, str], np.ndarray]:
        ppl = self.kind(PerplexityTask)
        return ppl.cols if ppl else {}

    @property
    def scored_windows(self) -> dict[tuple[str, str, str], list[int]]:
        ppl = self.kind(PerplexityTask)
        return ppl.scored_windows if ppl else {}

    @property
    def task_sets(self) -> list[TaskSet]:
        acc = self.kind(AccuracyTask)
        return acc.sets if acc else []

    @property
    def task_lanes(self) -> list[TaskLane]:
        acc = self.kind(AccuracyTask)
        return acc.lanes if acc else []


def evaluate(suite: Suite, data_dir: Path | None, progress: Progress | None = None,
             resume: bool = True, shard: tuple[int, int] | None = None,
             tasks: list[EvalTask] | None = None) -> Evaluation:
    """Score every runner and variant on every task. Config/input errors raise; a runner that fails
    to build or score is recorded in `errors` (its checks then fail) and the others still run.

    The torch reference is scored alone; the ORT base and every variant are scored together,
    request by request, so each variant is compared with the base's logits of the same window.
    With `resume`, results already journaled for the same runner, requests and code are reused
    (an interrupted or repeated run only scores what is missing). With `shard=(i, n)` only every
    n-th window (example) from i is scored; `merge` combines the n shards exactly. `tasks`: the
    kinds as `load_tasks` returned them for this suite and data (preflight's), not yet scored."""
    progress = progress or NullProgress()
    sweep_stale()
    tasks = load_tasks(suite, data_dir) if tasks is None else tasks
    source = resolve_and_tokenize(suite, tasks, progress)
    for task in tasks:
        task.check(shard)
    out = Evaluation(suite, tasks, provenance=provenance(source, tasks), resume=resume, shard=shard)
    out.identities["data"] = {label: sha for t in tasks for label, sha in t.bound().items()}
    out.provenance["data_dir"] = str(data_dir) if data_dir else None
    roles = suite.roles
    reference = None
    if roles.reference in suite.eval.runners:
        reference = _base_runner(out, KINDS[roles.reference], source, progress)
        if reference is not None:
            _score_group(out, [(roles.base_variant, reference)], progress)
    if roles.base in suite.eval.runners:
        kind = KINDS[roles.base]
        base = _base_runner(out, kind, source, progress)
        if base is not None:
            out.identities["base_onnx"] = base.identity["model"] if base.identity else None
        if reference is not None and base is not None and (shard is None or shard[0] == 0):
            for task in tasks:
                task.parity(reference, base, source, progress)
        del reference
        if base is None:  # nothing to compare the variants with: record them as not scored
            for variant in suite.variants:
                out.errors.append(error(variant.name, kind.name, None,
                                        f"not built: the {kind.name.upper()} base model failed (see its error)"))
            return out
        group = [(roles.base_variant, base)]
        for variant in suite.variants:
            runner = _guarded(out, variant.name, kind.name, lambda v=variant: _checked(
                _variant_runner(suite, source, v, out, data_dir, progress), out.tasks))
            if runner is not None:
                group.append((variant.name, runner))
        _score_group(out, group, progress)
    return out  # without the base runner no variant is scored: the gate then fails their checks


def resolve_and_tokenize(suite: Suite, tasks: list[EvalTask], progress: Progress) -> model_source.ModelSource:
    """The model's local folder (exported or downloaded once), its positions and variants checked,
    and every kind's requests built with its tokenizer: what both `evaluate` and `prepare` need."""
    with stage(progress, f"model {suite.model.source}: resolve (GGUF export / download when not cached)"):
        source = model_source.resolve(suite.model.source, suite.model.trust_remote_code)
    check_positions(suite, source.path)
    check_variants(suite.variants, source.path)
    with stage(progress, "tokenize datasets"):
        for task in tasks:
            task.tokenize(source)
    return source


def _score_group(out: Evaluation, group: Group, progress: Progress) -> None:
    """Every kind scores the group's lanes together: the first runner is the base, the others pair with it."""
    ctx = out.context()
    for task in out.tasks:
        task.score(group, ctx, progress)


def _base_runner(out: Evaluation, kind: RunnerKind, source: model_source.ModelSource, progress: Progress) -> Any:
    """The base model on `kind`'s runner (a Runner; the base runner's also names its `model` file),
    or None (its error recorded)."""
    with stage(progress, kind.stage):
        return _guarded(out, out.suite.roles.base_variant, kind.name,
                        lambda: _checked(kind.base(out.suite, source), out.tasks))


def _checked(runner: Runner, tasks: list[EvalTask]) -> Runner:
    """Refuse a runner whose logits are narrower than the tokenizer's vocabulary."""
    need = max((t.vocab_needed() for t in tasks), default=0)
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


def provenance(source: model_source.ModelSource, tasks: list[EvalTask]) -> dict[str, Any]:
    versions = package_versions(PACKAGES)
    return {
        "model": {"source": source.name, "kind": source.kind, "path": str(source.path),
                  "origin_sha256": source.origin_sha256, "tokenizer_sha256": source.tokenizer_id},
        "data": {label: rec for t in tasks for label, rec in t.data().items()},
        "packages": versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_info(),
    }


def to_document(ev: Evaluation) -> dict[str, Any]:
    """The results document, assembled by gate/results.document from every kind's contribution."""
    parts = [t.contribution(ev.shard) for t in ev.tasks]
    whole = Contribution(runs=[r for p in parts for r in p.runs], parity=[s for p in parts for s in p.parity],
                         tasks=next((p.tasks for p in parts if p.tasks is not None), None),
                         sections={k: v for p in parts for k, v in p.sections.items()})
    return results.document(ev.suite, whole.runs, parity=whole.parity, variants=ev.variants, errors=ev.errors,
                            identities=ev.identities, provenance=ev.provenance, shard=ev.shard, tasks=whole.tasks,
                            sections=whole.sections)
