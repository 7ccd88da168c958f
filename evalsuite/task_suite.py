"""Accuracy tasks in the pipeline: load and pin task data before any model work, tokenize the
requests once, and score them on every lane the perplexity pipeline builds (the torch reference,
the ORT base, every variant), journaling each example's scores so a killed run resumes.

Every lane scores the same requests of the same examples; with `--shard i/n` a lane scores
examples i, i+n, i+2n, ... (the windows' rule), and `merge` puts them back together.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.config import Suite
from evalsuite.data import tasks as task_data
from evalsuite.data.custom_task import load_custom_task
from evalsuite.data.windows import Window, shard_windows
from evalsuite.errors import ModelError, ScoringError
from evalsuite.roles import Roles
from evalsuite.schema import error
from evalsuite.scoring import loglik
from evalsuite.scoring.journal import Journal, code_fingerprint
from evalsuite.stages import NullProgress
from evalsuite.task_api import Contribution, Group, Progress, RunContext
from evalsuite.task_config import TaskCfg


@dataclass
class TaskSet:
    cfg: TaskCfg
    data: task_data.TaskData
    tokenized: list[loglik.Tokenized] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.cfg.label


@dataclass
class TaskLane:
    """One lane's scores on one task: example index -> float64 [n_choices, 2]."""

    variant: str
    runner: str
    task: str
    scores: dict[int, np.ndarray]
    seconds: float
    reused: int  # examples taken from the journal


def load_tasks(cfgs: Sequence[TaskCfg]) -> list[TaskSet]:
    """Every configured task's data, pinned and checked, before any model work."""
    out = []
    for cfg in cfgs:
        if cfg.name.endswith(".toml") or "/" in cfg.name:
            data = load_custom_task(Path(cfg.name), cfg.limit)
        else:
            data = task_data.load_task(cfg.name, cfg.limit)
        out.append(TaskSet(cfg, data))
    return out


def tokenize_tasks(sets: Sequence[TaskSet], tokenizer: Any, max_length: int) -> None:
    for ts in sets:
        try:
            ts.tokenized = loglik.tokenize_examples(tokenizer, ts.data.examples, max_length)
        except ScoringError as err:
            raise ModelError(f"task {ts.label}: {err}") from None


def example_indices(n: int, shard: tuple[int, int] | None) -> list[int]:
    everything = list(range(n))
    return everything if shard is None else shard_windows(everything, *shard)


def journal_for(runner: Any, ts: TaskSet) -> Journal | None:
    from evalsuite import __version__
    from evalsuite.cache import cache_root, key_of

    identity = getattr(runner, "identity", None)
    if identity is None:
        return None
    fed = [[t.tolist() for t in tok.inputs] + [t.tolist() for t in tok.targets] for tok in ts.tokenized]
    key = {"runner": identity, "requests": key_of(fed), "evalsuite": __version__, "code": code_fingerprint(),
           "task_code": task_code_fingerprint(), "format": 1}
    slots = [Window(0, 0, len(tok.inputs)) for tok in ts.tokenized]  # n_targets = requests of the example
    return Journal(cache_root() / "journal" / f"task-{key_of(key)}.ll", slots, width=2)


def task_code_fingerprint() -> str:
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for rel in ("scoring/loglik.py",):
        digest.update((root / rel).read_bytes())
    return digest.hexdigest()


def score_task_lanes(group: Sequence[tuple[str, Any]], sets: Sequence[TaskSet], progress: Any = None,
                     resume: bool = True, shard: tuple[int, int] | None = None, roles: Roles | None = None
                     ) -> tuple[list[TaskLane], list[dict[str, Any]]]:
    """Score every task on every runner of `group`; errors are returned, not raised (fail closed)."""
    roles = roles or Roles()
    progress = progress or NullProgress()
    lanes, errors = [], []
    for ts in sets:
        indices = example_indices(len(ts.tokenized), shard)
        for variant, runner in group:
            who = roles.who(variant, runner.name)
            progress.start(f"task {ts.label} · {who}", len(indices), "examples")
            try:
                lanes.append(_score_lane(variant, runner, ts, indices, progress, resume))
            except ScoringError as err:
                errors.append(error(variant, runner.name, f"task:{ts.label}", str(err)))
            finally:
                progress.stop()
    return lanes, errors


def _score_lane(variant: str, runner: Any, ts: TaskSet, indices: list[int], progress: Any,
                resume: bool) -> TaskLane:
    journal = journal_for(runner, ts) if resume else None
    done: dict[int, np.ndarray] = {}
    if journal is not None:
        n_req = [len(t.inputs) for t in ts.tokenized]
        done = {i: v.reshape(n_req[i], 2) for i, v in journal.done.items() if i in set(indices)}
    reused = len(done)
    progress.advance(reused)

    def record(i: int, values: np.ndarray) -> None:
        if journal is not None:
            journal.append(i, values.reshape(-1))
        progress.advance(1)

    start = time.perf_counter()
    try:
        scores = loglik.score_examples(runner, ts.tokenized, indices, done, record)
    finally:
        if journal is not None:
            journal.close()
    return TaskLane(variant, runner.name, ts.label, {i: scores[i] for i in indices},
                    time.perf_counter() - start, reused)


def max_positions(hf_dir: Path) -> int:
    """lm-eval's `max_length` for an HF model: the config's positions, else 2048."""
    import json

    try:
        cfg = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 2048
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = cfg.get(key) if isinstance(cfg, dict) else None
        if isinstance(value, int) and value > 1:
            return value
    return 2048


def prepare(sets: Sequence[TaskSet], hf_dir: Path) -> None:
    """Tokenize every task's requests with the model's tokenizer (the same for every lane)."""
    if not sets:
        return
    from transformers import AutoTokenizer

    from evalsuite.quiet import quiet_transformers

    quiet_transformers()
    tokenize_tasks(sets, AutoTokenizer.from_pretrained(hf_dir), max_positions(hf_dir))


def task_document(sets: Sequence[TaskSet], lanes: Sequence[TaskLane], shard: tuple[int, int] | None
                  ) -> dict[str, Any]:
    """The results document's `tasks` section (task_results.py); metrics derived unless sharded."""
    from evalsuite.gate.task_results import TASKS_SCHEMA, run_record, with_metrics
    from evalsuite.scoring.task_metrics import outline

    by_label = {ts.label: ts for ts in sets}
    runs = [run_record(lane.task, lane.variant, lane.runner, lane.scores, lane.seconds, lane.reused,
                       loglik.forwarded_tokens([by_label[lane.task].tokenized[i] for i in lane.scores]),
                       shard is not None) for lane in lanes]
    section = {"schema": TASKS_SCHEMA, "tasks": [task_identity(ts, outline) for ts in sets], "runs": runs}
    return section if shard is not None else with_metrics(section)


def task_identity(ts: TaskSet, outline: Any) -> dict[str, Any]:
    from evalsuite.gate.task_results import task_record

    spec = ts.data.spec
    return task_record(ts.label, ts.cfg.name, spec.metrics, ts.cfg.limit, spec.split, ts.data.origin, spec.note,
                       ts.data.sha256, ts.data.identity(), task_data.PROMPT_VERSION,
                       [outline(e) for e in ts.data.examples])


def task_content(suite: Suite) -> dict[str, dict[str, Any]]:
    """What each configured task's data, requests and outline hash to now (for `gate --results`)."""
    from evalsuite.errors import EvalsuiteError
    from evalsuite.scoring.task_metrics import outline

    out: dict[str, dict[str, Any]] = {}
    for cfg in suite.tasks:
        try:
            (ts,) = load_tasks([cfg])
        except EvalsuiteError as err:
            out[cfg.label] = {"error": str(err)}
            continue
        rec = task_identity(ts, outline)
        out[cfg.label] = {k: rec[k] for k in ("data_sha256", "requests_sha256", "outline_sha256", "prompt_version")}
    return out


class AccuracyTask:
    """The accuracy kind (task_api.EvalTask): every configured task's examples on every lane."""

    name = "accuracy"

    def __init__(self, suite: Suite) -> None:
        self.sets = load_tasks(suite.tasks)
        self.lanes: list[TaskLane] = []

    @classmethod
    def load(cls, suite: Suite, data_dir: Path | None) -> AccuracyTask:
        return cls(suite)  # packaged task data and task TOMLs name their own files

    def tokenize(self, source: Any) -> None:
        prepare(self.sets, source.path)

    def check(self, shard: tuple[int, int] | None) -> None:
        pass  # a shard with no example of a task scores none of it; merge puts the shards together

    def vocab_needed(self) -> int:
        return 0

    def data(self) -> dict[str, dict[str, Any]]:
        return {}  # each task's data identity is in the tasks section (task_identity)

    def bound(self) -> dict[str, str]:
        return {}

    def parity(self, reference: Any, base: Any, source: Any, progress: Progress) -> list[dict[str, Any]]:
        return []  # the reference and base lanes' log-likelihoods are compared by gate/task_checks.py

    def score(self, group: Group, ctx: RunContext, progress: Progress) -> None:
        if self.sets:
            lanes, errors = score_task_lanes(group, self.sets, progress, ctx.resume, ctx.shard, ctx.suite.roles)
            self.lanes += lanes
            ctx.errors += errors

    def contribution(self, shard: tuple[int, int] | None) -> Contribution:
        return Contribution(tasks=task_document(self.sets, self.lanes, shard) if self.sets else None)
