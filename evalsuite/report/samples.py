"""`--samples-out FILE`: one JSON line per task example and lane, like lm-eval's `--log_samples`.

Each line: task, variant, runner, doc index, gold, the requests ([context, continuation] per
choice), their log-likelihoods and is_greedy flags, the chosen answer and every per-example metric.
Written atomically after scoring (complete or absent)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalsuite.cache import atomic_write_text
from evalsuite.data.task_prompts import Example
from evalsuite.gate.task_results import lane_scores, outlines
from evalsuite.scoring import task_metrics as tm


def sample_lines(section: dict[str, Any], examples: dict[str, Sequence[Example]]) -> list[str]:
    shapes, names = outlines(section), {t["task"]: t["metrics"] for t in section.get("tasks", [])}
    out = []
    for run in section.get("runs", []):
        task = run["task"]
        indices = run.get("indices") or range(len(run["scores"]))
        for i, s in zip(indices, lane_scores(run), strict=True):
            ex, shape = examples[task][i], shapes[task][i]
            line = {"task": task, "variant": run["variant"], "runner": run["runner"], "doc_id": ex.index,
                    "gold": ex.gold, "arguments": [[r.context, r.continuation] for r in ex.requests],
                    "loglikelihoods": s[:, 0].tolist(), "is_greedy": [bool(g) for g in s[:, 1]],
                    "choice": tm.choice(shape, s),
                    **{m: tm.METRICS[m].per_example(shape, s) for m in names[task]}}
            out.append(json.dumps(line, ensure_ascii=False))
    return out


def write_samples(path: Path, section: dict[str, Any] | None, examples: dict[str, Sequence[Example]]) -> int:
    lines = sample_lines(section, examples) if section else []
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)
