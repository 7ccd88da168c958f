"""A user's own multiple-choice task: a small TOML naming a data file (JSONL, parquet, CSV, read by
`datasets`' file builders) or a hub dataset, the prompt, the choices and the gold answer.

    # mine.toml (paths relative to this file)
    data_files = "mine.jsonl"
    context = "Question: {question}\\nAnswer:"   # str.format over the row's columns
    choices = "options"                          # a column holding a list of strings ...
    # choice_columns = ["a", "b", "c"]           # ... or one column per choice
    gold = "label"                               # an index, or a string equal to one of the choices
    target_delimiter = " "                       # put before each choice (lm-eval's default)
    metrics = ["acc", "acc_norm"]

Every row is checked before any model work: a missing column, an empty file, a gold answer outside
the choices is one line (exit 2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evalsuite import tomlio
from evalsuite.data.task_prompts import Example, multiple_choice
from evalsuite.data.tasks import TaskData, TaskSpec
from evalsuite.errors import ConfigError, DataError

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class CustomTaskHub:
    path: str
    name: str | None = None
    split: str = "validation"
    revision: str | None = None


@dataclass(frozen=True)
class CustomTask:
    context: str
    gold: str
    data_files: str | None = None
    hub: CustomTaskHub | None = None
    format: Literal["json", "parquet", "csv"] | None = None
    split: str = "train"
    choices: str | None = None
    choice_columns: tuple[str, ...] = ()
    target_delimiter: str = " "
    metrics: tuple[Literal["acc", "acc_norm", "acc_bytes"], ...] = ("acc", "acc_norm")

    def __post_init__(self) -> None:
        if (self.data_files is None) == (self.hub is None):
            raise ValueError("give exactly one of data_files and hub")
        if (self.choices is None) == (not self.choice_columns):
            raise ValueError("give exactly one of choices (a list column) and choice_columns")
        if not self.metrics:
            raise ValueError("metrics names no metric")


def load_custom_task(path: Path, limit: int | None) -> TaskData:
    cfg = tomlio.load(CustomTask, tomlio.read_toml(path), path.name)
    rows, sha, origin = _rows(cfg, path)
    if not rows:
        raise DataError(f"task {path.name}: {origin} has no rows; give a file with at least one example")
    chosen = rows if limit is None else rows[:limit]
    examples = tuple(_example(cfg, i, row, path.name) for i, row in enumerate(chosen))
    spec = TaskSpec(path.stem, "custom", tuple(cfg.metrics), str(path), sha, len(rows), ("", None, cfg.split),
                    cfg.split, note="user task")
    return TaskData(spec, examples, sha, origin, limit)


def _rows(cfg: CustomTask, toml: Path) -> tuple[list[dict[str, Any]], str, str]:
    import datasets

    from evalsuite.quiet import quiet_datasets

    quiet_datasets()

    try:
        if cfg.hub is not None:
            ds = datasets.load_dataset(cfg.hub.path, cfg.hub.name, split=cfg.hub.split, revision=cfg.hub.revision)
            origin = f"hub {cfg.hub.path}:{cfg.hub.split}"
        else:
            file = (toml.parent / Path(cfg.data_files or "").expanduser()).resolve()
            if not file.is_file():
                raise DataError(f"task {toml.name}: data file {file} not found; check data_files")
            fmt = cfg.format or FORMATS.get(file.suffix.lower())
            if fmt is None:
                raise ConfigError(f"task {toml.name}: cannot tell the format of {file.name}; set format")
            if file.stat().st_size == 0:
                raise DataError(f"task {toml.name}: {file} is empty; give a file with at least one example")
            ds = datasets.load_dataset(fmt, data_files={cfg.split: str(file)}, split=cfg.split)
            origin = f"file {file}"
    except (DataError, ConfigError):
        raise
    except Exception as err:
        raise DataError(f"task {toml.name}: cannot read its data ({str(err).splitlines()[0][:160]}); "
                        "check data_files / hub and format") from None
    rows = [dict(r) for r in ds]
    body = json.dumps(rows, ensure_ascii=False, sort_keys=True, default=str).encode()
    return rows, hashlib.sha256(body).hexdigest(), origin


def _example(cfg: CustomTask, i: int, row: dict[str, Any], where: str) -> Example:
    try:
        context = cfg.context.format(**row)
    except KeyError as err:
        raise DataError(f"task {where}: row {i} has no column {err} named in context; "
                        f"columns: {', '.join(row)}") from None
    except (ValueError, IndexError) as err:
        raise DataError(f"task {where}: context template is malformed ({err}); use {{column}} fields") from None
    choices = _choices(cfg, i, row, where)
    return multiple_choice(i, context, choices, _gold(cfg, i, row, choices, where), cfg.target_delimiter)


def _choices(cfg: CustomTask, i: int, row: dict[str, Any], where: str) -> list[str]:
    columns = [cfg.choices] if cfg.choices is not None else list(cfg.choice_columns)
    missing = [c for c in columns if c not in row]
    if missing:
        raise DataError(f"task {where}: row {i} has no column '{missing[0]}'; columns: {', '.join(row)}")
    values = row[columns[0]] if cfg.choices is not None else [row[c] for c in columns]
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, str) and v for v in values):
        raise DataError(f"task {where}: row {i}'s choices are {values!r}; give at least two non-empty strings")
    return values


def _gold(cfg: CustomTask, i: int, row: dict[str, Any], choices: list[str], where: str) -> int:
    if cfg.gold not in row:
        raise DataError(f"task {where}: row {i} has no gold column '{cfg.gold}'; columns: {', '.join(row)}")
    value = row[cfg.gold]
    if isinstance(value, str) and value in choices:
        return choices.index(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(choices):
        raise DataError(f"task {where}: row {i}'s gold {value!r} is not a choice index in "
                        f"[0, {len(choices) - 1}] nor one of its choices; fix the data")
    return value
