"""Gate reports as text: the Markdown summary (JUnit XML: junit.py). No rich here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.gate.checks import Check
from evalsuite.roles import of_document

NAMES = {
    "abs_dppl": "ΔPPL",
    "rel_dppl": "ΔPPL %",
    "parity_rel_dppl": "ORT vs torch ΔPPL %",
    "parity_max_abs_dlogit": "ORT vs torch max |Δlogit|",
    "parity_top1_agree": "ORT vs torch top-1 agree",
    "parity_export": "ONNX export matches transformers",
    "baseline_rel_regression": "vs baseline ΔPPL %",
    "kld_mean": "KLD mean (nats)",
    "same_top": "same top token",
    "top1_drop": "top-1 acc drop",
    "scoring": "scoring",
    "result_complete": "complete run (no shard)",
    "result_present": "result present",
    "binding_policy": "same window policy",
    "binding_suite": "same suite",
    "binding_model": "same model",
    "binding_variant": "same variant",
    "binding_data": "same data",
    "consistent_values": "consistent values",
    "plausible_values": "plausible values",
    "unique_runs": "unique runs",
    "baseline_model": "baseline of this model",
    "baseline_rel_change": "vs baseline |ΔPPL| %",
    # accuracy tasks (gate/task_checks.py); result_present is reused with the task label as dataset
    "task_results": "task results present",
    "binding_tasks": "task results bound",
    "binding_task_data": "task data bound",
    "task_consistent": "task numbers re-derived",
    "task_parity_max_abs_dll": "ORT vs torch task |Δll|",
    "task_parity_answer_agree": "same task answers",
    "task_acc_drop": "task acc drop",
    "task_baseline_acc_drop": "vs baseline task acc drop",
    "task_acc_norm_drop": "task acc_norm drop",
    "task_flip_rate": "flip rate",
}
# Shares: AGREE ones unsigned (94.50%), the others signed (+2.5%: an accuracy drop in points).
AGREE = {"parity_top1_agree", "same_top", "task_parity_answer_agree", "task_flip_rate"}
PERCENT = {"rel_dppl", "parity_rel_dppl", "baseline_rel_regression", "baseline_rel_change", "top1_drop",
           "task_acc_drop", "task_acc_norm_drop", "task_baseline_acc_drop"} | AGREE
# Yes/no checks (gate/binding.py, result_present, task integrity): value 1 when satisfied, None when not.
BOOLEAN = {"result_complete", "result_present", "binding_policy", "binding_suite", "binding_model", "binding_variant",
           "binding_data", "consistent_values", "plausible_values", "unique_runs", "baseline_model",
           "task_results", "binding_tasks", "binding_task_data", "task_consistent"}


def fmt(name: str, value: float | None) -> str:
    if name in BOOLEAN:
        return "yes" if value else "no"
    if value is None:
        return "—"
    if name in PERCENT:
        return f"{100 * value:.2f}%" if name in AGREE else f"{100 * value:+.4g}%"
    return f"{value:+.4g}" if name.endswith("dppl") else f"{value:.4g}"


def bound(check: Check) -> str:
    if check.name in BOOLEAN:
        return "yes"
    op = "≤" if check.direction == "max" else "≥"
    return f"{op} {fmt(check.name, check.threshold).lstrip('+')}"


def verdict_line(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.passed]
    if not checks:
        return "FAIL: no checks ran (configure variants, parity or a baseline)"
    if not failed:
        return f"PASS: all {len(checks)} checks passed"
    first = failed[0]
    return f"FAIL: {len(failed)} of {len(checks)} checks failed (first: {first.variant}/{first.dataset} " \
           f"{NAMES.get(first.name, first.name)})"


def quality_rows(doc: dict[str, Any], checks: list[Check]) -> list[dict[str, Any]]:
    """One row per variant x dataset in the published-table layout (base PPL, variant PPL, ΔPPL with
    its paired 95 % interval, KLD, same-top, size, verdict). Values are None where a run is missing."""
    from evalsuite.gate.checks import find_run

    roles = of_document(doc)
    base_runner = roles.comparator(r["runner"] for r in doc["runs"] if roles.is_base(r["variant"]))
    rows = []
    for name, info in (doc.get("variants") or {}).items():
        for ds in sorted({r["dataset"] for r in doc["runs"]}):
            base, run = find_run(doc, roles.base_variant, base_runner, ds), find_run(doc, name, roles.base, ds)
            mine = [c for c in checks if c.variant == name and c.dataset == ds]
            row: dict[str, Any] = {"variant": name, "dataset": ds, "size_mb": info.get("size_mb"),
                                   "passed": bool(mine) and all(c.passed for c in mine)}
            if base and run:
                m = run.get("metrics", {})
                row |= {"base_ppl": base["ppl"], "ppl": run["ppl"], "dppl": run["ppl"] - base["ppl"],
                        "rel": (run["ppl"] - base["ppl"]) / base["ppl"], "ci": (m.get("dppl_ci95_low"),
                        m.get("dppl_ci95_high")), "kld": m.get("kld_mean"), "same_top": m.get("same_top")}
            rows.append(row)
    return rows


def quality_cells(row: dict[str, Any]) -> list[str]:
    """Text cells for QUALITY_COLUMNS (shared by the rich table and the Markdown summary)."""
    if "ppl" not in row:
        return [row["variant"], row["dataset"], *["—"] * 7, "PASS" if row["passed"] else "FAIL"]
    lo, hi = row["ci"]
    ci = f"[{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else "—"
    return [row["variant"], row["dataset"], f"{row['base_ppl']:.4f}", f"{row['ppl']:.4f}",
            f"{row['dppl']:+.4f} ({100 * row['rel']:+.2f}%)", ci,
            f"{row['kld']:.4f}" if row["kld"] is not None else "—",
            f"{100 * row['same_top']:.1f}%" if row["same_top"] is not None else "—",
            f"{row['size_mb']:.1f}" if row["size_mb"] is not None else "—", "PASS" if row["passed"] else "FAIL"]


QUALITY_COLUMNS = ("variant", "dataset", "base PPL", "variant PPL", "ΔPPL", "ΔPPL 95% CI", "KLD mean", "same top",
                   "size MB", "result")


MD_SPECIAL = "\\`*_[]<>|~&"  # what can start markup inside a cell


def md_cell(value: object) -> str:
    """Text safe inside a Markdown table cell: Markdown punctuation (`|` above all) backslash-escaped,
    line breaks as <br>, so a cell never splits a row or turns into markup."""
    text = str(value)
    text = "".join(f"\\{ch}" if ch in MD_SPECIAL else ch for ch in text)
    return "<br>".join(part.strip() for part in text.splitlines()) if "\n" in text or "\r" in text else text


def md_row(cells: list[object]) -> str:
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def speed_cell(run: dict[str, Any]) -> str:
    """tok/s as the terminal shows it: "cached" when every scored token came from the journal."""
    if run.get("reused_tokens", 0) >= run.get("tokens_scored", 0) > 0:
        return "cached"
    return f"{run.get('tokens_per_s', 0.0):.0f}"


def policy_line(pol: dict[str, Any]) -> str:
    bos = "BOS unknown" if "bos" not in pol else "BOS token prepended" if pol["bos"] else "no BOS token"
    max_tokens = pol.get("max_tokens")
    return (f"Window {pol.get('window')}, stride {pol.get('stride')}, {bos}, "
            + ("all tokens." if max_tokens is None else f"first {max_tokens} tokens."))


def task_lines(doc: dict[str, Any], checks: list[Check]) -> list[str]:
    """The "Accuracy tasks" table (report/task_table.py): none when the document has no tasks."""
    from evalsuite.report.task_table import NUMERIC, TASK_COLUMNS, task_cells, task_rows

    rows = task_rows(doc, checks)
    if not rows:
        return []
    align = "|" + "".join("---:|" if col in NUMERIC else "---|" for col in TASK_COLUMNS)
    return ["", "### Accuracy tasks", "", md_row(list(TASK_COLUMNS)), align,
            *[md_row(list(task_cells(r))) for r in rows]]


def markdown(doc: dict[str, Any], checks: list[Check]) -> str:
    lines = ["## evalsuite gate", "", f"**{md_cell(verdict_line(checks))}**", "",
             "| model | dataset | variant | runner | PPL | tokens | tok/s |", "|---|---|---|---|---:|---:|---:|"]
    for r in doc.get("runs", []):
        lines.append(md_row([r["model"], r["dataset"], r["variant"], r["runner"], f"{r['ppl']:.4f}",
                             r["tokens_scored"], speed_cell(r)]))
    rows = quality_rows(doc, checks)
    if rows:
        lines += ["", md_row(list(QUALITY_COLUMNS)), "|---|---|" + "---:|" * 7 + "---|"]
        lines += [md_row(list(quality_cells(r))) for r in rows]
    lines += task_lines(doc, checks)
    lines += ["", "| check | variant | dataset | value | threshold | margin | result | detail |",
              "|---|---|---|---:|---:|---:|---|---|"]
    for c in checks:
        margin = "—" if c.margin is None or c.name in BOOLEAN else fmt(c.name, c.margin)
        lines.append(md_row([NAMES.get(c.name, c.name), c.variant, c.dataset, fmt(c.name, c.value), bound(c),
                             margin, "PASS" if c.passed else "FAIL", c.detail or ""]))
    for plot in doc.get("plots", []):
        lines += ["", f"![{md_cell(Path(plot).stem)}]({Path(plot).as_posix().replace(' ', '%20')})"]
    lines += ["", md_cell(policy_line(doc.get("policy", {})))]
    return "\n".join(lines) + "\n"
