"""Is a results document (or a baseline) internally consistent? Pure: no I/O.

Everything that follows from other values of the same file is derived again and compared:
PPL = exp(nll_sum / tokens_scored) and nll_mean = nll_sum / tokens_scored, each run's window policy
vs the document's, every run on a dataset scoring the same stream (tokens, windows) as the others,
the window count of a one-stream run vs the planner's, the ΔPPL interval around its estimate,
parity records (one per dataset, values in range). Values no real run produces (non-finite, PPL
<= 1 or above PPL_MAX, negative NLL or KLD) are named too.

Tolerance: REL_TOL = 1e-9 relative. The stored numbers are float64 and JSON round-trips them
exactly; recomputing exp/division on them is exact on one machine and within an ulp or two of
libm on another (~1e-16), so 1e-9 only absorbs rounding, never a real edit (an edit that keeps
PPL within 1e-9 changes no verdict: every threshold and tolerance is >= 1e-6).
"""

from __future__ import annotations

import math
from typing import Any

from evalsuite.data.windows import window_count
from evalsuite.roles import of_document
from evalsuite.schema import POLICY_KEYS, STREAM_FIELDS, documents_problem, plan_of

REL_TOL = 1e-9
# PPL above this is no language model's: 3800x worse than guessing uniformly over a 262,144-token
# vocabulary (the largest of the supported families); a stored value beyond it is an edit or a bug.
PPL_MAX = 1e9


def num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


def implausible(run: dict[str, Any]) -> str:
    """Why a run's numbers cannot come from a real run, or ''."""
    ppl, tokens = num(run.get("ppl")), num(run.get("tokens_scored"))
    if ppl is None or not math.isfinite(ppl) or not 1.0 < ppl <= PPL_MAX:
        return f"PPL {run.get('ppl')!r} (must be a finite number > 1 and <= {PPL_MAX:g})"
    if "tokens_scored" in run and (tokens is None or tokens < 1):
        return f"tokens_scored {run.get('tokens_scored')!r} (must be >= 1)"
    metrics = table(run.get("metrics"))
    for key, value in metrics.items():
        if num(value) is None or not math.isfinite(float(value)):
            return f"metrics.{key} {value!r} (must be a finite number)"
    kld = num(metrics.get("kld_mean"))
    if "kld_mean" in metrics and (kld is None or not kld >= 0):
        return f"KLD {metrics.get('kld_mean')!r} (must be >= 0)"
    for key in ("same_top", "top1_acc"):
        val = num(metrics.get(key))
        if key in metrics and (val is None or not 0.0 <= val <= 1.0):
            return f"{key} {metrics.get(key)!r} (must be in [0, 1])"
    return ""


def nll_problem(run: dict[str, Any]) -> str:
    """PPL and the mean NLL must follow from nll_sum and tokens_scored (as scoring/lanes.summarize)."""
    total, tokens, mean, ppl = (num(run.get(k)) for k in ("nll_sum", "tokens_scored", "nll_mean", "ppl"))
    if total is None or tokens is None or ppl is None:
        return ""  # a reference-only (published) document: the PPL alone
    if not math.isfinite(total) or total < 0:
        return f"nll_sum {total!r} (a sum of negative log-probabilities is finite and >= 0)"
    if tokens < 1:
        return ""  # implausible() names it
    if mean is None or not close(mean, total / tokens):
        return f"nll_mean {mean!r} is not nll_sum / tokens_scored = {total / tokens!r}"
    if not close(ppl, math.exp(total / tokens)):
        return f"PPL {ppl!r} is not exp(nll_sum / tokens_scored) = {math.exp(total / tokens)!r}"
    return ""


def stream_problem(run: dict[str, Any], policy: dict[str, Any], one_stream: bool) -> str:
    """The run's policy is the document's; its counts are those of its stream's window plan."""
    for key in POLICY_KEYS:
        if key in run and key in policy and run[key] != policy[key]:
            return f"{key} {run[key]!r} but the document's policy says {policy[key]!r}"
    n, scored, windows = (integer(run.get(k)) for k in ("tokens_in_stream", "tokens_scored", "windows"))
    if n is None or scored is None or windows is None:
        return ""
    if not 1 <= scored <= n - 1:
        return f"tokens_scored {scored} of a {n}-token stream (at most {n - 1} can be scored)"
    window, stride = integer(run.get("window")), integer(run.get("stride"))
    if one_stream and window is not None and stride is not None:
        if not 1 <= stride <= window:
            return f"stride {stride} with window {window}"
        planned = window_count(n, window, stride)
        if (windows, scored) != (planned, n - 1):
            return (f"{windows} windows / {scored} tokens scored, but a {n}-token stream has {planned} windows "
                    f"and {n - 1} targets")
    return ""


def plan_problem(run: dict[str, Any], sharded: bool) -> str:
    """A per-document run's counts are those of the plan of the documents it records."""
    n, scored, windows = (integer(run.get(k)) for k in ("tokens_in_stream", "tokens_scored", "windows"))
    window, stride = integer(run.get("window")), integer(run.get("stride"))
    if run.get("documents") is None or None in (n, scored, windows, window, stride):
        return ""
    why = documents_problem(run) if isinstance(run["documents"], list) else "documents is not a list"
    if why or sharded:
        return why
    plan = plan_of(run)
    if not 1 <= plan.stride <= plan.window:
        return f"stride {stride} with window {window}"
    if (windows, scored) != (plan.count(), plan.targets()):
        return (f"{windows} windows / {scored} tokens scored, but its {len(run['documents'])} documents have "
                f"{plan.count()} windows and {plan.targets()} targets")
    return ""


def interval_problem(run: dict[str, Any], base: dict[str, Any] | None) -> str:
    """The paired ΔPPL interval holds its own estimate, PPL(variant) - PPL(base)."""
    metrics = table(run.get("metrics"))
    low, high = num(metrics.get("dppl_ci95_low")), num(metrics.get("dppl_ci95_high"))
    if low is None or high is None or base is None or num(base.get("ppl")) is None:
        return ""
    point = float(run["ppl"]) - float(base["ppl"])
    slack = 1e-6 * float(base["ppl"])  # the interval is centred on the mean per-token log ratio
    if not low - slack <= point <= high + slack:
        return f"ΔPPL interval [{low!r}, {high!r}] does not hold its estimate {point!r}"
    return ""


def run_problem(doc: dict[str, Any], run: dict[str, Any], first: dict[str, Any] | None) -> str:
    one_stream = not (doc.get("shard") or _documents(doc, run.get("dataset")))
    policy = table(doc.get("policy"))
    why = (implausible(run) or nll_problem(run) or stream_problem(run, policy, one_stream)
           or plan_problem(run, bool(doc.get("shard"))))
    if not why and first is not None:
        diff = [k for k in STREAM_FIELDS if k in run and k in first and run[k] != first[k]]
        if diff:
            why = (f"{diff[0]} {run[diff[0]]!r}, but {first.get('variant')}/{first.get('runner')} on the same "
                   f"dataset has {first[diff[0]]!r} (every run of a dataset scores the same stream)")
    roles = of_document(doc)
    if not why and run.get("variant") != roles.base_variant:
        base = next((r for r in doc.get("runs", []) if (r.get("variant"), r.get("runner"), r.get("dataset"))
                     == (roles.base_variant, roles.base, run.get("dataset"))), None)
        why = interval_problem(run, base)
    return why


def _documents(doc: dict[str, Any], label: Any) -> bool:
    data = (doc.get("provenance") or {}).get("data") or {}
    return bool(isinstance(data, dict) and isinstance(data.get(label), dict) and data[label].get("documents"))


def parity_problem(doc: dict[str, Any]) -> str:
    seen: set[Any] = set()
    datasets = {r.get("dataset") for r in doc.get("runs", [])}
    for i, rec in enumerate(doc.get("parity") or []):
        ds = rec.get("dataset")
        if ds in seen:
            return f"parity[{i}]: a second parity record for '{ds}'"
        seen.add(ds)
        if datasets and ds not in datasets:
            return f"parity[{i}]: dataset '{ds}' has no run"
        dlogit, agree = num(rec.get("max_abs_dlogit")), num(rec.get("top1_agree"))
        if dlogit is None or not math.isfinite(dlogit) or dlogit < 0:
            return f"parity[{i}].max_abs_dlogit {rec.get('max_abs_dlogit')!r} (must be finite and >= 0)"
        if agree is None or not 0.0 <= agree <= 1.0:
            return f"parity[{i}].top1_agree {rec.get('top1_agree')!r} (must be in [0, 1])"
        why = parity_windows_problem(doc, rec)
        if why:
            return f"parity[{i}]: {why}"
    return ""


def parity_windows_problem(doc: dict[str, Any], rec: dict[str, Any]) -> str:
    """The windows a parity record compared are the evenly spaced ones scoring/parity.parity_stats picks."""
    name = of_document(doc).base_variant
    base = next((r for r in doc.get("runs", []) if r.get("variant") == name and r.get("dataset") ==
                 rec.get("dataset") and isinstance(r.get("windows"), int)), None)
    if "windows" not in rec or base is None or doc.get("shard"):
        return ""
    n = ((doc.get("binding") or {}).get("suite") or {}).get("parity_windows", 2)
    total = base["windows"]
    if not isinstance(n, int) or n < 1:
        return f"parity_windows {n!r} in the binding"
    picks = sorted({round(i * (total - 1) / max(1, n - 1)) for i in range(min(n, total))})
    return "" if rec["windows"] == picks else f"compared windows {rec['windows']!r}, the suite's sampling is {picks}"


def model_problem(doc: dict[str, Any]) -> str:
    """The model the binding says was scored is the one the provenance (what baselines compare) names."""
    bound = ((doc.get("binding") or {}).get("content") or {}).get("model") or {}
    noted = (doc.get("provenance") or {}).get("model") or {}
    for key in ("origin_sha256", "tokenizer_sha256"):
        if key in bound and key in noted and bound[key] != noted[key]:
            return f"binding and provenance name different models ({key} {str(bound[key])[:12]}... vs " \
                   f"{str(noted[key])[:12]}...)"
    return ""


def problem(doc: dict[str, Any]) -> str:
    """The first internal inconsistency or implausible value of `doc`, naming the run; '' when none."""
    first_of: dict[Any, dict[str, Any]] = {}
    for run in doc.get("runs", []):
        ds = run.get("dataset")
        why = run_problem(doc, run, first_of.get(ds))
        first_of.setdefault(ds, run)
        if why:
            return f"{run.get('variant')}/{run.get('runner')} on {ds}: {why}"
    return parity_problem(doc) or model_problem(doc)
