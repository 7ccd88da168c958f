"""The results schema, spelled once: the window policy and a perplexity run's record.

Every reader derives from here instead of listing the fields again: `gate/results.py` validates a
document with `RUN_FIELDS` (types derived from `RunRecord`'s annotations) and assembles it,
`scoring/merge.py` checks that every shard of a run scored the same stream with `RUN_META`,
`gate/consistency.py`, `gate/binding.py` and `gate/checks.py` compare window policies by
`POLICY_KEYS` (the fields of `Policy`). A run travels as a `RunRecord` inside the pipeline and as
`RunRecord.to_json()` in a document; `RunRecord.from_json` reads one back (after validation).

The window plan travels with each run: a one-stream run's plan follows from `tokens_in_stream`,
`window` and `stride`; a per-document run also records `documents`, the token counts of the
documents its stream lays end to end. `plan_of(run)` plans the same windows again from either, so a
merge, a check or a plot never re-plans a per-document stream as one stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import NoneType
from typing import Any

from evalsuite.data.windows import Plan

SCHEMA_VERSION = 2  # 2: `binding` (what the suite asked for and what was scored)
# The packages whose versions every results document records (`provenance.packages`).
PACKAGES = ("evalsuite", "torch", "transformers", "onnxruntime", "onnxruntime-genai", "numpy", "tokenizers")
WINDOW_POLICY = (
    "sliding windows: each window feeds <= window tokens; logits[i] predict token[i+1]; the first "
    "window scores all its positions, each later one the next `stride` tokens; every token after "
    "the first of the stream is scored exactly once; NLL summed in float64; PPL = exp(mean NLL)"
)


@dataclass(frozen=True)
class Policy:
    """How a stream is cut into windows (data/windows.py); recorded in the document and every run."""

    window: int
    stride: int
    bos: bool
    max_tokens: int | None

    @classmethod
    def of(cls, settings: Any) -> Policy:
        """The policy of anything carrying its fields (`config.EvalCfg`, a `RunRecord`)."""
        return cls(*(getattr(settings, k) for k in POLICY_KEYS))

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "description": WINDOW_POLICY}


POLICY_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Policy))


# What each RunRecord field is: "meta" (what was scored: the same in every shard of a run),
# "plan" (the rest of the window plan, when it does not follow from the meta fields), "summary"
# (follows from the per-token rows), "timing", "cache", "metrics", "shard".
_META, _SUMMARY, _TIMING = {"kind": "meta"}, {"kind": "summary"}, {"kind": "timing"}
_CACHE, _METRICS, _SHARD, _PLAN = {"kind": "cache"}, {"kind": "metrics"}, {"kind": "shard"}, {"kind": "plan"}


@dataclass(frozen=True)
class RunRecord:
    """One runner's perplexity run of one variant on one dataset (scoring/lanes.summarize)."""

    model: str = field(metadata=_META)
    variant: str = field(metadata=_META)
    runner: str = field(metadata=_META)
    dataset: str = field(metadata=_META)
    split: str = field(metadata=_META)
    window: int = field(metadata=_META)
    stride: int = field(metadata=_META)
    bos: bool = field(metadata=_META)
    max_tokens: int | None = field(metadata=_META)
    tokens_in_stream: int = field(metadata=_META)
    tokens_scored: int = field(metadata=_SUMMARY)
    windows: int = field(metadata=_SUMMARY)
    nll_sum: float = field(metadata=_SUMMARY)
    nll_mean: float = field(metadata=_SUMMARY)
    ppl: float = field(metadata=_SUMMARY)
    seconds: float = field(metadata=_TIMING)
    tokens_per_s: float = field(metadata=_TIMING)  # over the tokens scored in this run (journal-reused ones excluded)
    reused_tokens: int = field(default=0, metadata=_CACHE)  # targets taken from the per-window journal
    metrics: dict[str, float] = field(default_factory=dict, metadata=_METRICS)  # see scoring/metrics.py
    # Per-document scoring: each document's token count, end to end (absent: the stream is one plan).
    documents: list[int] | None = field(default=None, metadata=_PLAN)
    # A shard's run only (`--shard i/n`): the plan indices it scored and each one's per-token rows,
    # so `merge` can recombine the shards exactly. Absent from the JSON of an unsharded run.
    shard_windows: list[int] | None = field(default=None, compare=False, repr=False, metadata=_SHARD)
    shard_cols: list[list[list[float]]] | None = field(default=None, compare=False, repr=False, metadata=_SHARD)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.variant, self.runner, self.dataset

    @property
    def plan(self) -> Plan:
        return Plan(self.tokens_in_stream, self.window, self.stride,
                    None if self.documents is None else tuple(self.documents))

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in FIELD_NAMES if name != "documents"}
        out["metrics"] = dict(self.metrics)
        if self.documents is not None:
            out["documents"] = list(self.documents)
        if self.shard_windows is not None:
            out["shard_windows"], out["shard_cols"] = list(self.shard_windows), self.shard_cols
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        """A validated run's JSON (gate/results.validate) back as a record; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _kind(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata["kind"])


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunRecord) if _kind(f) != "shard")
RUN_KEY = ("variant", "runner", "dataset")  # a run's name: at most one per document
# What was scored, the same in every shard of a run (`documents` only in per-document runs).
RUN_META = tuple(f.name for f in dataclasses.fields(RunRecord) if _kind(f) in ("meta", "plan"))
TIMING_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord) if _kind(f) == "timing")
# Every run of a dataset scores the same stream with the same plan: these agree across its runs.
STREAM_FIELDS = ("tokens_in_stream", "tokens_scored", "windows", "split")

# JSON types of each annotation RunRecord uses (ints are accepted where a float is declared).
_NUM, _INT, _OPT_INT = (int, float), (int,), (int, NoneType)
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": _INT, "float": _NUM, "bool": (bool,), "int | None": _OPT_INT, "dict[str, float]": (dict,),
    "list[int] | None": (list, NoneType),
}
# A `reference_only` document (published numbers) needs only a run's name and its PPL.
REFERENCE_FIELDS = (*RUN_KEY, "ppl")
# Field -> JSON types, the reference fields first (the order validation reports problems in).
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    f.name: JSON_TYPES[str(f.type)]
    for f in sorted((f for f in dataclasses.fields(RunRecord) if f.name in FIELD_NAMES),
                    key=lambda f: f.name not in REFERENCE_FIELDS)
}
# Fields a (not reference-only) run must have: those without a default.
REQUIRED_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name in FIELD_NAMES
                        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
ERROR_FIELDS: dict[str, tuple[type, ...]] = {
    "variant": (str,), "runner": (str,), "message": (str,), "dataset": (str, NoneType),
}
PARITY_FIELDS: dict[str, tuple[type, ...]] = {"dataset": (str,), "max_abs_dlogit": _NUM, "top1_agree": _NUM}


def error(variant: str, runner: str, dataset: str | None, message: str) -> dict[str, Any]:
    """One `errors` entry: a lane that failed to build or score (its checks then fail)."""
    return {"variant": variant, "runner": runner, "dataset": dataset, "message": message}


def plan_of(run: dict[str, Any]) -> Plan:
    """The window plan a validated run's JSON scored (see the module docstring)."""
    docs = run.get("documents")
    return Plan(run["tokens_in_stream"], run["window"], run["stride"], None if docs is None else tuple(docs))


def documents_problem(run: dict[str, Any]) -> str:
    """'' when a run's `documents` (absent allowed) is a list of positive token counts, else why not."""
    docs = run.get("documents")
    if docs is None:
        return ""
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in docs):
        return "documents is not a list of positive token counts"
    if sum(docs) != run.get("tokens_in_stream"):
        return f"documents add up to {sum(docs)} tokens, not tokens_in_stream {run.get('tokens_in_stream')!r}"
    return ""
