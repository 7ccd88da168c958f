"""Roles as data: which runner is the reference, which lane is the base the candidates are compared
with, and which variants are candidates. The suite names them (`config.Suite.roles`), the results
document records them (`"roles"`), and the gate and the reports read them from there: no verdict,
report or plot code spells a runner or variant name (tests/test_layout.py enforces it).

Today's roles, and what a document without a `roles` record (schema 2 files written before it, such
as the committed `baselines/*.json`) is read with: the torch runner is the reference, the ORT runner
scores the base model and every candidate, and the unquantized model's variant is named "base".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

# The runners a suite can name (`[eval] runners`); each is one entry of `runners.KINDS`.
RunnerName = Literal["torch", "ort"]
RUNNER_NAMES: tuple[RunnerName, ...] = get_args(RunnerName)
REFERENCE_RUNNER: RunnerName = "torch"  # models/torch_runner.TorchRunner.name
BASE_RUNNER: RunnerName = "ort"  # models/ort_runner.OrtRunner.name
BASE_VARIANT = "base"  # the unquantized model, scored by every runner
FIELDS = ("reference", "base", "base_variant", "candidates")


@dataclass(frozen=True)
class Roles:
    reference: str = REFERENCE_RUNNER  # the runner every other runner's base run is checked against (parity)
    base: str = BASE_RUNNER  # the runner that scores the base model and every candidate
    base_variant: str = BASE_VARIANT  # the variant name of the unquantized model
    candidates: tuple[str, ...] = ()  # the quantized variants, in suite order

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "base": self.base, "base_variant": self.base_variant,
                "candidates": list(self.candidates)}

    @classmethod
    def from_json(cls, data: Any, runs: Iterable[Any] = ()) -> Roles:
        """A document's roles; today's defaults where it has none (candidates: the variants its runs
        name on the base runner). Call `problem` first on untrusted data."""
        if isinstance(data, dict):
            return cls(data["reference"], data["base"], data["base_variant"], tuple(data["candidates"]))
        seen = (r.get("variant") for r in runs if isinstance(r, dict) and r.get("runner") == BASE_RUNNER)
        return cls(candidates=tuple(dict.fromkeys(v for v in seen if isinstance(v, str) and v != BASE_VARIANT)))

    def comparator(self, runners: Iterable[str]) -> str:
        """The runner whose base run the candidates are compared with: the base runner when it ran,
        else the reference (then no candidate was scored, and their checks fail)."""
        return self.base if self.base in set(runners) else self.reference

    def parity(self, runners: Iterable[str]) -> bool:
        """Both the reference and the base runner ran: their base runs can be compared."""
        return {self.reference, self.base} <= set(runners)

    def lanes(self, runners: Iterable[str]) -> list[tuple[str, str]]:
        """Every (variant, runner) lane a run with `runners` scores: the base model on each runner,
        then each candidate on the base runner (none without it)."""
        names = list(runners)
        out = [(self.base_variant, r) for r in names]
        return out + ([(v, self.base) for v in self.candidates] if self.base in names else [])

    def is_base(self, variant: str) -> bool:
        return variant == self.base_variant

    def who(self, variant: str, runner: str) -> str:
        """How checks and tables name a lane: `base/<runner>` for the base model, else the variant."""
        return f"{variant}/{runner}" if self.is_base(variant) else variant


def problem(data: Any) -> str:
    """'' when `data` (a document's `roles`, absent allowed) is a roles record, else what is wrong."""
    if data is None:
        return ""
    if not isinstance(data, dict) or set(data) != set(FIELDS):
        return f"'roles' must be an object with exactly {', '.join(FIELDS)}"
    for key in FIELDS[:-1]:
        if not isinstance(data[key], str) or not data[key]:
            return f"roles.{key} is {data[key]!r}, not a name"
    names = data["candidates"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        return f"roles.candidates is {names!r}, not a list of names"
    if data["base_variant"] in names or len(set(names)) != len(names):
        return "roles.candidates repeats a name or holds the base variant"
    return ""


def of_document(doc: Any) -> Roles:
    """Who played which part in a results document: its `roles` record, or today's roles for a
    document written before it. A malformed record reads as today's too: `gate/results.validate`
    refuses it (one line, exit 2) before any check or report runs."""
    doc = doc if isinstance(doc, dict) else {}
    record = doc.get("roles")
    runs = doc.get("runs")
    return Roles.from_json(None if problem(record) else record, runs if isinstance(runs, list) else ())
