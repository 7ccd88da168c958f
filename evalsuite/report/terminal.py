"""Terminal output with rich: progress bar and results table. The only module that prints."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from evalsuite.roles import of_document
from evalsuite.schema import RunRecord


def console(stderr: bool = False) -> Console:
    """A console that keeps tables readable when output is piped (CI logs): 160 columns."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


class RichProgress:
    """suite.Progress backed by a rich progress bar (done/total, rate, ETA; a pulsing bar without a total)."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.task: TaskID | None = None
        self.done, self.unit = 0, "tok"

    def start(self, label: str, total: int, unit: str = "tok") -> None:
        self.stop()
        self.bar.start()
        self.done, self.unit = 0, unit
        self.task = self.bar.add_task(label, total=total or None, rate="")  # no total: a pulsing bar

    def advance(self, n: int) -> None:
        assert self.task is not None
        self.done += n
        task = self.bar.tasks[-1]
        rate = f"{self.done / task.elapsed:.3g} {self.unit}/s" if task.elapsed else ""
        self.bar.update(self.task, advance=n, rate=rate)

    def stop(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.bar.stop()


def results_table(runs: list[RunRecord], title: str = "Perplexity") -> Table:
    table = Table(title=title)
    for col, justify in (("model", "left"), ("dataset", "left"), ("variant", "left"), ("runner", "left"),
                         ("PPL", "right"), ("tokens", "right"), ("tok/s", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        speed = "cached" if r.reused_tokens >= r.tokens_scored else f"{r.tokens_per_s:.0f}"
        table.add_row(r.model, r.dataset, r.variant, r.runner, f"{r.ppl:.4f}", f"{r.tokens_scored:,}", speed)
    return table


def print_results(console: Console, runs: list[RunRecord], extra: list[Any] | None = None) -> None:
    console.print(results_table(runs))
    for item in extra or []:
        console.print(item)


def quality_table(doc: dict[str, Any], checks: list[Any]) -> Table:
    """The published-table layout: variant, dataset, base PPL, quantized PPL, difference, verdict."""
    from evalsuite.report.ci import QUALITY_COLUMNS, quality_cells, quality_rows

    table = Table(title="Quantization quality (vs ORT base)")
    for col in QUALITY_COLUMNS:
        table.add_column(col, justify="left" if col in ("variant", "dataset", "result") else "right")
    for row in quality_rows(doc, checks):
        cells = quality_cells(row)
        table.add_row(*cells[:-1], ("[green]" if row["passed"] else "[red]") + cells[-1])
    return table


def accuracy_table(doc: dict[str, Any], checks: list[Any]) -> Table:
    """One row per task x lane: acc and acc_norm ± stderr, LAMBADA perplexity, and for variants the
    paired Δacc with its 95 % interval, flips, choice KL and the verdict (report/task_table.py)."""
    from rich.markup import escape

    from evalsuite.report.task_table import NUMERIC, TASK_COLUMNS, task_cells, task_rows

    table = Table(title="Accuracy tasks (variants vs the base on the same examples)")
    for col in TASK_COLUMNS:
        table.add_column(col, justify="right" if col in NUMERIC else "left")
    for row in task_rows(doc, checks):
        cells = [escape(c) for c in task_cells(row)]
        colour = "" if row["passed"] is None else "[green]" if row["passed"] else "[red]"
        table.add_row(*cells[:-1], colour + cells[-1])
    return table


def print_accuracy(console: Console, doc: dict[str, Any], checks: list[Any]) -> None:
    """The accuracy table when the document holds tasks (`eval`: no checks, so no verdicts)."""
    from evalsuite.report.task_table import task_rows

    if task_rows(doc, checks):
        console.print(accuracy_table(doc, checks))


def checks_table(checks: list[Any]) -> Table:
    from evalsuite.report.ci import BOOLEAN, NAMES, bound, fmt

    table = Table(title="Checks")
    for col in ("check", "variant", "dataset", "value", "threshold", "margin", "result"):
        table.add_column(col, justify="right" if col in ("value", "threshold", "margin") else "left")
    for c in checks:
        margin = "—" if c.margin is None or c.name in BOOLEAN else fmt(c.name, c.margin)
        result = "[green]PASS" if c.passed else f"[red]FAIL[/red] {c.detail}".rstrip()
        table.add_row(NAMES.get(c.name, c.name), c.variant, c.dataset, fmt(c.name, c.value), bound(c),
                      margin, result)
    return table


def reference_table(reference: dict[str, Any], doc: dict[str, Any] | None) -> Table:
    """Published/stored figures (base, quantized, difference) beside this run's numbers per dataset."""
    table = Table(title=f"Reference: {reference.get('provenance', {}).get('source', 'baseline')}")
    for col in ("model", "dataset", "base PPL", "quantized PPL", "difference", "this run: base → variants"):
        table.add_column(col, justify="left" if col in ("model", "dataset") or col.startswith("this") else "right")
    ours: dict[str, list[str]] = {}
    roles, published = of_document(doc), of_document(reference).base_variant
    for r in (doc or {}).get("runs", []):
        if r["runner"] == roles.base or roles.is_base(r["variant"]):
            ours.setdefault(r["dataset"], []).append(f"{r['variant']}/{r['runner']} {r['ppl']:.2f}")
    by_key: dict[tuple[str, str], dict[str, float]] = {}
    for r in reference.get("runs", []):
        by_key.setdefault((r["model"], r["dataset"]), {})[r["variant"]] = r["ppl"]
    for (model, ds), v in by_key.items():
        base, quant = v.get(published), next((p for k, p in v.items() if k != published), None)
        diff = f"{quant - base:+.2f}" if base is not None and quant is not None else "—"
        table.add_row(model, ds, f"{base:.2f}" if base else "—", f"{quant:.2f}" if quant else "—", diff,
                      ", ".join(ours.get(ds, [])) or "—")
    policy = reference.get("policy", {}).get("description")
    if policy:
        table.caption = policy
    return table
