"""Suite config of accuracy tasks: `[[tasks]]`, `[task_thresholds]` and `[task_parity]` (typed, frozen).

Limits are absolute accuracy points as fractions (0.02 = 2 points) or a share of examples. The most
specific setting wins: `[[tasks]] variants.NAME`, then the task's own keys, then
`[task_thresholds.variants.NAME]`, then `[task_thresholds]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Literal

TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _fraction(name: str, value: float | None) -> None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")


@dataclass(frozen=True)
class TaskLimits:
    max_acc_drop: float | None = None  # acc(base) - acc(variant), absolute (0.02 = 2 points)
    max_acc_norm_drop: float | None = None  # the same for acc_norm
    max_flip_rate: float | None = None  # share of examples whose chosen answer differs from the base's
    # How the drop limits use the paired 95 % interval (as ΔPPL's): "point" (default), "lower" (fail only
    # when even the interval's optimistic end exceeds the limit), "upper" (must be shown to pass).
    interval: Literal["point", "lower", "upper"] | None = None

    def __post_init__(self) -> None:
        for f in ("max_acc_drop", "max_acc_norm_drop", "max_flip_rate"):
            _fraction(f, getattr(self, f))

    def own(self) -> TaskLimits:
        return TaskLimits(**{f.name: getattr(self, f.name) for f in fields(TaskLimits)})

    def over(self, base: TaskLimits) -> TaskLimits:
        """Our values where set, else `base`'s."""
        mine, theirs = self.own(), base.own()
        return TaskLimits(**{f.name: getattr(mine, f.name) if getattr(mine, f.name) is not None
                             else getattr(theirs, f.name) for f in fields(TaskLimits)})

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(TaskLimits) if f.name != "interval")


@dataclass(frozen=True)
class TaskCfg(TaskLimits):
    name: str = ""  # a stock task (data/tasks.py STOCK) or a task TOML path (relative to the suite file)
    limit: int | None = None  # the first N examples of the split, in its order (lm-eval's --limit)
    variants: dict[str, TaskLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name:
            raise ValueError("a [[tasks]] entry needs a name (a stock task or a task TOML path)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"task '{self.name}': limit must be at least 1 (or absent: the whole split), "
                             f"got {self.limit}")

    @property
    def label(self) -> str:
        """The name results carry: the stock name, or a task TOML's file stem."""
        if self.name.endswith(".toml") or "/" in self.name:
            return self.name.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".toml")
        return self.name


@dataclass(frozen=True)
class TaskThresholds(TaskLimits):
    variants: dict[str, TaskLimits] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskParity:
    """ORT base vs the torch reference on the same requests."""

    max_abs_dll: float | None = 1e-3  # max |Δ log-likelihood| over every request, nats
    min_answer_agree: float | None = 0.995  # share of examples with the same chosen answer

    def __post_init__(self) -> None:
        if self.max_abs_dll is not None and not self.max_abs_dll >= 0:
            raise ValueError(f"max_abs_dll must be a non-negative number, got {self.max_abs_dll}")
        _fraction("min_answer_agree", self.min_answer_agree)


def task_limits(defaults: TaskThresholds, task: TaskCfg, variant: str) -> TaskLimits:
    chain = [task.variants.get(variant), task, defaults.variants.get(variant), defaults]
    out = TaskLimits()
    for level in chain:
        if level is not None:
            out = out.over(level)
    return out


def check_tasks(tasks: tuple[TaskCfg, ...], defaults: TaskThresholds, variants: list[str]) -> None:
    """Labels unique, variant keys known, and every variant x task with at least one limit."""
    labels = [t.label for t in tasks]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ValueError(f"task '{twice[0]}' is configured twice; give each task once")
    for label in labels:
        if not TASK_NAME.fullmatch(label):
            raise ValueError(f"task name '{label}' must be letters, digits, '_', '.', '-'")
    for where, table in [("task_thresholds", defaults.variants), *((f"tasks.{t.label}", t.variants) for t in tasks)]:
        unknown = sorted(set(table) - set(variants))
        if unknown:
            raise ValueError(f"[{where}.variants.{unknown[0]}] names no declared variant; "
                             f"declared: {', '.join(variants) or 'none'}")
    for t in tasks:
        for v in variants:
            if not task_limits(defaults, t, v).any():
                raise ValueError(f"no task threshold for variant '{v}' on task '{t.label}'; set "
                                 f"[task_thresholds] or max_acc_drop / max_flip_rate in its [[tasks]] entry")


def cli_tasks(configured: tuple[TaskCfg, ...], names: list[str] | None, limit: int | None) -> tuple[TaskCfg, ...]:
    """`--task NAME` (repeatable) replaces the suite's tasks, keeping a configured entry's limits;
    `--limit N` sets every task's limit. A task TOML named on the command line is relative to the
    working directory."""
    from dataclasses import replace
    from pathlib import Path

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 (the first N examples of each task), got {limit}")
    tasks = configured
    if names:
        known = {t.label: t for t in configured}
        picked = []
        for name in dict.fromkeys(names):
            if name.endswith(".toml") or "/" in name:
                name = str(Path(name).expanduser().absolute())
            entry = known.get(TaskCfg(name=name).label)
            picked.append(replace(entry, name=name) if entry is not None else TaskCfg(name=name))
        tasks = tuple(picked)
    return tuple(replace(t, limit=limit) for t in tasks) if limit is not None else tasks
