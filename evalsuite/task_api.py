"""The seam every kind of evaluation plugs into: lm-evaluation-harness's `Task` (requests -> one
model API -> `process_results` / `aggregation` / `higher_is_better`), with evalsuite's guarantees.

A task kind is one class with the `EvalTask` methods below plus one entry in the pipeline's
registry (`suite.TASKS`). The pipeline (suite.py) knows no kind by name: it loads every kind's data
before any model work, tokenizes every kind's requests once with the model's tokenizer, builds
the runners once, and hands each group of lanes (the torch reference alone; the ORT base with
every variant paired to it) to every kind in registry order. What a kind scores goes through the
shared runners (`scoring.lanes.Runner`), the per-request journal (`scoring.journal`) and, for
shards, `merge`; what it adds to the results document comes back as a `Contribution`.

The two kinds today:
- perplexity (`ppl_task.py`): requests are windows over token streams; reduction is
  `scoring/metrics.py` (per-token columns -> PPL and its intervals); checks are
  `gate/checks.PPL_LIMITS` rows and the integrity checks of `gate/binding.py`.
- accuracy tasks (`task_suite.py`): requests are context/continuation pairs grouped by example;
  reduction is `scoring/task_metrics.METRICS` (each metric declared once with its direction and
  aggregation); checks are `gate/task_checks.py`.
Each kind's checks are one entry of `gate/verdict.TASK_KINDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from evalsuite.config import Suite
from evalsuite.models.source import ModelSource
from evalsuite.schema import RunRecord
from evalsuite.scoring.lanes import Runner


class Progress(Protocol):
    """Stages of the run (stages.stage): total 0 when no count is known (e.g. an ONNX build)."""

    def start(self, label: str, total: int, unit: str = "tok") -> None: ...
    def advance(self, n: int) -> None: ...
    def stop(self) -> None: ...


Group = Sequence[tuple[str, Runner]]  # (variant name, runner): the first is the base, the rest pair with it


@dataclass
class RunContext:
    """What every kind's scoring shares within one `evaluate` call."""

    suite: Suite
    resume: bool  # reuse journaled requests of the same runner, requests and code
    shard: tuple[int, int] | None  # score only every n-th request unit from i (windows, examples)
    errors: list[dict[str, Any]]  # scoring errors, in scoring order ({variant, runner, dataset, message})
    provenance: dict[str, Any]  # the document's provenance (a kind may record its wall times there)


@dataclass
class Contribution:
    """What one kind adds to the results document (gate/results.document assembles them)."""

    runs: list[RunRecord] = field(default_factory=list)  # perplexity runs (the document's `runs`)
    parity: list[dict[str, Any]] = field(default_factory=list)  # logit parity of the base vs the reference
    tasks: dict[str, Any] | None = None  # the accuracy `tasks` section
    # A new kind's own top-level sections, by name (its checks read them). `merge` refuses shard
    # documents holding a section it cannot combine, so a partial section never passes as whole.
    sections: dict[str, Any] = field(default_factory=dict)


class EvalTask(Protocol):
    """One kind of evaluation, loaded for one suite (its data already read and pinned)."""

    name: str

    def tokenize(self, source: ModelSource) -> None:
        """Build the requests with the model's tokenizer (the same for every lane)."""
        ...

    def check(self, shard: tuple[int, int] | None) -> None:
        """Raise UsageError before any scoring when the requests cannot be scored as asked."""
        ...

    def vocab_needed(self) -> int:
        """The fewest logits a runner must output to score these requests (0: no requirement)."""
        ...

    def data(self) -> dict[str, dict[str, Any]]:
        """Provenance of each scored text, by label (the document's `provenance.data`)."""
        ...

    def bound(self) -> dict[str, str]:
        """Content hash of each scored text, by label (the document's `binding.content.data`)."""
        ...

    def parity(self, reference: Runner, base: Runner, source: ModelSource, progress: Progress) -> list[dict[str, Any]]:
        """Compare the base with the reference beyond their scores (logits), or return []."""
        ...

    def score(self, group: Group, ctx: RunContext, progress: Progress) -> None:
        """Score every request on every lane of `group`; record failures in ctx.errors (fail closed)."""
        ...

    def contribution(self, shard: tuple[int, int] | None) -> Contribution:
        """What was scored, as the results document's sections."""
        ...
