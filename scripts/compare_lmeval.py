"""Compare evalsuite's task samples (`--samples-out`) with lm-evaluation-harness's `--log_samples`.

    python scripts/compare_lmeval.py SAMPLES.jsonl LM_EVAL_OUT_DIR [--runner torch] [--variant base]

For each task found in both (lm-eval files `samples_<task>[_local]_<date>.jsonl`), on the examples
both scored: the requests must be identical strings; per-choice log-likelihoods are compared (max
|Δ|), and acc / acc_norm counts; an example whose answer differs is listed with the margin between
its two best choices in lm-eval's numbers (the acceptance allows only margins within 1e-4 nats).
Prints a Markdown table and exits 1 when a request differs, |Δll| > 1e-4 or an answer differs
outside a 1e-4 tie.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

TOL = 1e-4


def lmeval_files(folder: Path) -> dict[str, Path]:
    out = {}
    for f in sorted(folder.rglob("samples_*.jsonl")):
        m = re.match(r"samples_(.+?)(?:_local)?_\d{4}-\d\d-\d\dT", f.name)
        if m:
            out[m.group(1)] = f
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def margin(lls: list[float], norm: list[float] | None = None) -> float:
    vals = sorted(norm or lls, reverse=True)
    return vals[0] - vals[1] if len(vals) > 1 else float("inf")


def request_args(t: dict[str, Any]) -> list[list[str]]:
    return [[a["arg_0"], a["arg_1"]] for a in t["arguments"].values()]


def compare_task(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], by_requests: bool = False) -> dict[str, Any]:
    """`by_requests`: pair examples by their request strings instead of doc_id (MMLU: lm-eval logs one
    file per subject, evalsuite one task over all subjects)."""
    by_id = {json.dumps(o["arguments"]) if by_requests else o["doc_id"]: o for o in ours}
    n, same_args, max_dll, flips = 0, True, 0.0, []
    counts = {m: [0, 0] for m in ("acc", "acc_norm") if theirs and m in theirs[0]}
    for t in theirs:
        o = by_id.get(json.dumps(request_args(t)) if by_requests else t["doc_id"])
        if o is None:
            continue
        n += 1
        args = request_args(t)
        same_args &= args == o["arguments"]
        lls = [float(r[0]) for r in t["filtered_resps"]]
        max_dll = max(max_dll, max(abs(a - b) for a, b in zip(lls, o["loglikelihoods"], strict=True)))
        for m in counts:
            if m in t and m in o:
                counts[m][0] += int(o[m])
                counts[m][1] += int(t[m])
                if int(o[m]) != int(t[m]):
                    chars = [len(a[1]) - (1 if a[1].startswith(" ") else 0) for a in args]
                    norm = [x / c for x, c in zip(lls, chars, strict=True)] if m == "acc_norm" else None
                    flips.append((t["doc_id"], m, margin(lls, norm)))
    return {"examples": n, "same_requests": same_args, "max_abs_dll": max_dll, "counts": counts, "differ": flips}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("samples", type=Path)
    ap.add_argument("lmeval", type=Path)
    ap.add_argument("--runner", default="torch")
    ap.add_argument("--variant", default="base")
    a = ap.parse_args()
    ours: dict[str, list[dict[str, Any]]] = {}
    for line in read_jsonl(a.samples):
        if line["runner"] == a.runner and line["variant"] == a.variant:
            ours.setdefault(line["task"], []).append(line)
    bad = False
    print("| task | examples | requests identical | max \\|Δll\\| | acc (evalsuite / lm-eval) | "
          "acc_norm (evalsuite / lm-eval) | answers that differ (margin, nats) |")
    print("|---|---:|---|---:|---:|---:|---|")
    files = lmeval_files(a.lmeval)
    groups: dict[str, list[dict[str, Any]]] = {}
    for task, path in files.items():
        group = "mmlu" if task.startswith("mmlu_") and task not in ours and "mmlu" in ours else task
        groups.setdefault(group, []).extend(read_jsonl(path))
    for task, theirs in groups.items():
        if task not in ours:
            continue
        r = compare_task(ours[task], theirs, by_requests=task == "mmlu")
        c = r["counts"]
        norm = f"{c['acc_norm'][0]} / {c['acc_norm'][1]}" if "acc_norm" in c else "—"
        differ = ", ".join(f"doc {d} {m} ({g:.2e})" for d, m, g in r["differ"]) or "none"
        acc = f"{c['acc'][0]} / {c['acc'][1]}" if "acc" in c else "—"
        print(f"| {task} | {r['examples']} | {'yes' if r['same_requests'] else 'NO'} | {r['max_abs_dll']:.2e} | "
              f"{acc} | {norm} | {differ} |")
        bad |= not r["same_requests"] or r["max_abs_dll"] > TOL or any(g > TOL for _, _, g in r["differ"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
