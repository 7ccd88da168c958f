"""Terminal output with rich: progress bar and results table. The only module that prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from .evaluate import RunResult


class RichProgress:
    """suite.Progress backed by a rich progress bar (tokens, tokens/s, ETA)."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} tok/s"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.task: TaskID | None = None
        self.done = 0

    def start(self, label: str, total: int) -> None:
        self.bar.start()
        self.done = 0
        self.task = self.bar.add_task(label, total=total, rate="-")

    def advance(self, n: int) -> None:
        assert self.task is not None
        self.done += n
        task = self.bar.tasks[-1]
        rate = f"{self.done / task.elapsed:.0f}" if task.elapsed else "-"
        self.bar.update(self.task, advance=n, rate=rate)

    def stop(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.bar.stop()


def results_table(runs: list[RunResult], title: str = "Perplexity") -> Table:
    table = Table(title=title)
    for col, justify in (("model", "left"), ("dataset", "left"), ("variant", "left"), ("runner", "left"),
                         ("PPL", "right"), ("tokens", "right"), ("tok/s", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        table.add_row(r.model, r.dataset, r.variant, r.runner, f"{r.ppl:.4f}", f"{r.tokens_scored:,}",
                      f"{r.tokens_per_s:.0f}")
    return table


def print_results(console: Console, runs: list[RunResult], extra: list[Any] | None = None) -> None:
    console.print(results_table(runs))
    for item in extra or []:
        console.print(item)
