"""The gate's checks as data: thresholds, parity and baseline checks on a results document. Pure.

Every check has a direction: `max` means the value must be <= the threshold, `min` means >=.
A check whose inputs are missing (no run, a scoring error) fails: the gate fails closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from evalsuite.config import BaselineCfg, Suite
from evalsuite.limits import Limits
from evalsuite.roles import Roles, of_document
from evalsuite.schema import POLICY_KEYS, RUN_KEY

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "rel_dppl"
    variant: str
    dataset: str
    value: float | None  # None: the input was missing
    threshold: float
    direction: Direction
    passed: bool
    reference: float | None = None  # e.g. the base PPL the variant is compared with
    detail: str = ""

    @property
    def margin(self) -> float | None:
        """Distance to the threshold, positive when passing."""
        if self.value is None:
            return None
        return self.threshold - self.value if self.direction == "max" else self.value - self.threshold

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "margin": self.margin}


def make_check(name: str, variant: str, dataset: str, value: float | None, threshold: float,
               direction: Direction, reference: float | None = None, detail: str = "") -> Check:
    if value is None or value != value:  # missing or NaN: fail closed
        return Check(name, variant, dataset, None, threshold, direction, False, reference,
                     detail or "missing input")
    ok = value <= threshold if direction == "max" else value >= threshold
    return Check(name, variant, dataset, value, threshold, direction, ok, reference, detail)


def find_run(doc: dict[str, Any], variant: str, runner: str, dataset: str) -> dict[str, Any] | None:
    for run in doc.get("runs", []):
        if (run["variant"], run["runner"], run["dataset"]) == (variant, runner, dataset):
            return run
    return None


def error_for(doc: dict[str, Any], variant: str, dataset: str) -> str:
    for err in doc.get("errors", []):
        if err["variant"] == variant and err.get("dataset") in (None, dataset):
            return f"error: {err['message']}"
    return ""


@dataclass(frozen=True)
class Pair:
    """What a variant's perplexity checks read on one dataset: the base run on the comparator runner,
    the variant's run (either None when missing) and the ΔPPL the limits compare (point or bound)."""

    base: dict[str, Any] | None
    run: dict[str, Any] | None
    dppl: float | None

    def metric(self, name: str) -> float | None:
        return (self.run or {}).get("metrics", {}).get(name)

    def base_metric(self, name: str) -> float | None:
        return (self.base or {}).get("metrics", {}).get(name)

    @property
    def base_ppl(self) -> float | None:
        return self.base["ppl"] if self.base else None


@dataclass(frozen=True)
class CheckSpec:
    """A perplexity limit: check `name` compares `value(pair)` with the `Limits` field `limit`;
    `reference(pair)` is the number shown beside it (e.g. the base PPL)."""

    name: str
    limit: str  # Limits field
    direction: Direction
    value: Callable[[Pair], float | None]
    reference: Callable[[Pair], float | None] = lambda pair: None


def _rel_dppl(p: Pair) -> float | None:
    return p.dppl / p.base["ppl"] if p.dppl is not None and p.base else None


def _top1_drop(p: Pair) -> float | None:
    base, mine = p.base_metric("top1_acc"), p.metric("top1_acc")
    return base - mine if base is not None and mine is not None else None


# The perplexity checks of one variant x dataset, in the order they are reported. A new check: a
# `Limits` field (limits.py) and one row here (its label: report/ci.py NAMES).
PPL_LIMITS: tuple[CheckSpec, ...] = (
    CheckSpec("abs_dppl", "max_abs_dppl", "max", lambda p: p.dppl, lambda p: p.base_ppl),
    CheckSpec("rel_dppl", "max_rel_dppl", "max", _rel_dppl, lambda p: p.base_ppl),
    CheckSpec("kld_mean", "max_kld_mean", "max", lambda p: p.metric("kld_mean")),
    CheckSpec("same_top", "min_same_top", "min", lambda p: p.metric("same_top")),
    CheckSpec("top1_drop", "max_top1_drop", "max", _top1_drop, lambda p: p.base_metric("top1_acc")),
)


def variant_checks(doc: dict[str, Any], variant: str, ds: str, base_runner: str, limits: Limits,
                   roles: Roles) -> list[Check]:
    base, run = find_run(doc, roles.base_variant, base_runner, ds), find_run(doc, variant, roles.base, ds)
    detail = "" if base and run else (error_for(doc, variant, ds) or "no result for this variant/dataset")
    dppl, how = _dppl(base, run, limits.interval or "point")
    pair, detail = Pair(base, run, dppl), detail or how
    return [make_check(spec.name, variant, ds, spec.value(pair), threshold, spec.direction, spec.reference(pair),
                       detail)
            for spec in PPL_LIMITS if (threshold := getattr(limits, spec.limit)) is not None]


def _dppl(base: dict[str, Any] | None, run: dict[str, Any] | None, interval: str) -> tuple[float | None, str]:
    """ΔPPL to compare with the limits: the estimate, or a bound of its paired 95% interval."""
    if not base or not run:
        return None, ""
    point = run["ppl"] - base["ppl"]
    if interval == "point":
        return point, ""
    key = "dppl_ci95_low" if interval == "lower" else "dppl_ci95_high"
    bound = run.get("metrics", {}).get(key)
    if bound is None:
        return None, f"no paired interval recorded for interval = '{interval}'"
    return bound, f"{interval} bound of 95% CI (estimate {point:+.4g})"


def parity_checks(doc: dict[str, Any], suite: Suite, ds: str) -> list[Check]:
    p, roles = suite.parity, suite.roles
    name = roles.base_variant
    ref_run, base_run = find_run(doc, name, roles.reference, ds), find_run(doc, name, roles.base, ds)
    stats = next((s for s in doc.get("parity", []) if s["dataset"] == ds), None)
    detail = "" if ref_run and base_run else (error_for(doc, name, ds) or "torch or ORT base run missing")
    out = []
    if p.max_rel_dppl is not None:
        rel = (abs(base_run["ppl"] - ref_run["ppl"]) / ref_run["ppl"]) if ref_run and base_run else None
        ref = ref_run["ppl"] if ref_run else None
        out.append(make_check("parity_rel_dppl", name, ds, rel, p.max_rel_dppl, "max", ref, detail))
    causes = "; ".join([*(stats or {}).get("export_mismatches", []), *(stats or {}).get("notes", [])])
    sdetail = "" if stats else (detail or "no logit comparison recorded")
    if p.max_abs_dlogit is not None:
        val = stats["max_abs_dlogit"] if stats else None
        out.append(make_check("parity_max_abs_dlogit", name, ds, val, p.max_abs_dlogit, "max", None, sdetail))
    if p.min_top1_agree is not None:
        val = stats["top1_agree"] if stats else None
        out.append(make_check("parity_top1_agree", name, ds, val, p.min_top1_agree, "min", None, sdetail))
    out = [_with_cause(c, causes) for c in out]
    if stats and stats.get("export_mismatches"):  # a known wrong export fails even where numbers look close
        out.append(make_check("parity_export", name, ds, float(len(stats["export_mismatches"])), 0.0, "max",
                              None, "; ".join(stats["export_mismatches"])))
    return out


def _with_cause(check: Check, causes: str) -> Check:
    """A failing parity check names the known export/reference differences (models/families.py)."""
    if check.passed or not causes:
        return check
    return Check(check.name, check.variant, check.dataset, check.value, check.threshold, check.direction,
                 False, check.reference, "; ".join(x for x in (check.detail, f"likely cause: {causes}") if x))


def baseline_checks(doc: dict[str, Any], baseline: dict[str, Any], cfg: BaselineCfg, name: str) -> list[Check]:
    """Each run's PPL vs the stored baseline run with the same variant, runner, dataset, policy and
    variant settings, for the same model (origin and tokenizer sha256). A baseline of another model
    or window policy cannot be compared: one failing check says so. With `max_rel_change` set the
    comparison is two-sided: a PPL that drops by more than it fails too."""
    model = baseline_model_check(doc, baseline, name)
    if not model.passed:
        return [model]
    ours = {tuple(r[k] for k in POLICY_KEYS) for r in doc.get("runs", [])}
    theirs = {tuple(r.get(k) for k in POLICY_KEYS) for r in baseline.get("runs", [])}
    if ours and not ours & theirs:
        return [model, make_check("baseline_rel_regression", "*", "*", None, cfg.max_rel_regression, "max",
                                  detail=f"baseline {name} was recorded with (window, stride, bos, max_tokens) "
                                         f"{sorted(theirs, key=str)[0]}, this run used {sorted(ours, key=str)[0]}; "
                                         "update the baseline or pass --no-baseline")]
    out, roles = [model], of_document(doc)
    for run in doc.get("runs", []):
        match, why = _baseline_match(doc, baseline, run, name, roles)
        rel = (run["ppl"] - match["ppl"]) / match["ppl"] if match else None
        who = roles.who(run["variant"], run["runner"])
        ref = match["ppl"] if match else None
        out.append(make_check("baseline_rel_regression", who, run["dataset"], rel, cfg.max_rel_regression, "max",
                              ref, why))
        if cfg.max_rel_change is not None:
            out.append(make_check("baseline_rel_change", who, run["dataset"], None if rel is None else abs(rel),
                                  cfg.max_rel_change, "max", ref,
                                  why if rel is None or abs(rel) <= cfg.max_rel_change
                                  else f"PPL moved {100 * rel:+.2f}%: baseline {name} no longer describes this model"))
    return out


def baseline_model_check(doc: dict[str, Any], baseline: dict[str, Any], name: str) -> Check:
    keys = ("origin_sha256", "tokenizer_sha256")
    ours = doc.get("provenance", {}).get("model", {})
    theirs = baseline.get("provenance", {}).get("model", {})
    diff = [k for k in keys if not ours.get(k) or ours.get(k) != theirs.get(k)]
    detail = (f"baseline {name} was recorded for model {theirs.get('source')} ({str(theirs.get(diff[0]))[:12]}...), "
              f"this run scored {ours.get('source')} ({str(ours.get(diff[0]))[:12]}...); pass --baseline FILE for "
              "this model or --no-baseline") if diff else ""
    return Check("baseline_model", "*", "*", 0.0 if diff else 1.0, 1.0, "min", not diff, detail=detail)


def _baseline_match(doc: dict[str, Any], baseline: dict[str, Any], run: dict[str, Any],
                    name: str, roles: Roles) -> tuple[dict[str, Any] | None, str]:
    key = (*RUN_KEY, *POLICY_KEYS)
    match = next((b for b in baseline.get("runs", []) if all(b.get(k) == run[k] for k in key)), None)
    if match is None:
        return None, f"no entry in baseline {name} with this policy"
    ours_data, theirs_data = (d.get("provenance", {}).get("data", {}).get(run["dataset"], {}) for d in (doc, baseline))
    for k in ("text_sha256", "documents"):  # a custom text under a packaged label, or per-document vs one stream
        if ours_data.get(k) != theirs_data.get(k):
            return None, f"baseline {name} scored other data as '{run['dataset']}' ({k} differs)"
    if not roles.is_base(run["variant"]):
        ours = doc.get("binding", {}).get("suite", {}).get("variants", {}).get(run["variant"])
        theirs = baseline.get("binding", {}).get("suite", {}).get("variants", {}).get(run["variant"])
        if ours != theirs:
            return None, f"baseline {name} holds '{run['variant']}' with other settings ({theirs})"
    return match, f"baseline {name}"
