"""Is a results document exactly the configured run? Checked before any threshold, pure (no I/O).

A document carries `binding`: what the suite asked for (`suite`: window policy, datasets, runners,
model settings, every variant's settings, parity sampling) and what was scored (`content`: the
model's origin and tokenizer sha256 (every tokenizer file), the ORT base's identity, every
variant's identity: the content hash of a given ONNX file and its data, or the build key of a
cached build; every dataset's text sha256). The gate fails, with a named check, on a shard or
incomplete document, on any binding mismatch, and on values no real run produces or that do not
follow from the document's other values (gate/consistency.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from evalsuite.config import DatasetCfg, Parity, Suite, VariantCfg, dataset_labels
from evalsuite.gate.checks import Check
from evalsuite.gate.consistency import implausible, problem
from evalsuite.models.onnx_build import execution_target
from evalsuite.roles import FIELDS, Roles, of_document
from evalsuite.schema import POLICY_KEYS, Policy


def variant_settings(v: VariantCfg) -> dict[str, Any]:
    """What determines a variant's numbers besides the model: its settings, not where a file lies
    (a given file is bound by its content hash instead)."""
    out = dataclasses.asdict(v)
    out.pop("path")
    if v.method != "awq":
        out.pop("calibration")
    return out


def dataset_settings(d: DatasetCfg, documents: bool) -> dict[str, Any]:
    """What determines a [[datasets]] entry's text besides the files' content (recorded by sha256 in
    the provenance): the kind of source and how rows become text, not where files lie."""
    out = dataclasses.asdict(d)
    for key in ("label", "text", "data_files", "sha256"):
        out.pop(key)
    out["kind"] = "text" if d.text is not None else "hub" if d.hub is not None else "data_files"
    out["documents"] = documents if d.documents is None else d.documents
    return out


def model_settings(suite: Suite) -> dict[str, Any]:
    """What determines the base's numbers besides the model's content. The base precision and the
    build target (fp16 / `-e cuda` builds score other numbers) are recorded only when not the
    default, so documents of CPU fp32 runs keep their binding."""
    out: dict[str, Any] = {"source": suite.model.source, "onnx_given": suite.model.onnx is not None,
                           "trust_remote_code": suite.model.trust_remote_code}
    if suite.model.base_precision != "fp32":
        out["base_precision"] = suite.model.base_precision
    target = execution_target(suite.eval.provider)
    if target != "cpu":
        out["execution"] = target
    if suite.eval.torch_device == "cuda":  # the torch reference's numbers (parity) on another device
        out["torch_device"] = "cuda"
    return out


def suite_binding(suite: Suite) -> dict[str, Any]:
    ev = suite.eval
    out: dict[str, Any] = {
        "policy": dataclasses.asdict(Policy.of(ev)),
        "datasets": dataset_labels(suite),
        "runners": list(ev.runners),
        "model": model_settings(suite),
        "variants": {v.name: variant_settings(v) for v in suite.variants},
    }
    # Only present when used, so documents of suites without them keep their binding.
    if ev.documents:
        out["documents"] = True
    if suite.datasets:
        out["sources"] = {d.run_label: dataset_settings(d, ev.documents) for d in suite.datasets}
    if suite.parity.sample_windows != Parity().sample_windows:  # which windows the parity logits come from
        out["parity_windows"] = suite.parity.sample_windows
    return out


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _check(name: str, who: str, ok: bool, detail: str) -> Check:
    return Check(name, who, "*", 1.0 if ok else None, 1.0, "min", ok, detail="" if ok else detail)


def integrity_checks(doc: dict[str, Any], suite: Suite, content: dict[str, Any] | None) -> list[Check]:
    """`content`: identities of what the suite names now (given when gating a stored document)."""
    binding = _table(doc, "binding")
    want = suite_binding(suite)
    have, scored = _table(binding, "suite"), _table(binding, "content")
    roles = roles_diff(doc, suite.roles)
    out = [complete_check(doc), policy_check(doc, want["policy"]), suite_check(have, want, roles)]
    out.append(model_check(have.get("model"), want["model"], scored, content, suite.roles.base_variant))
    out += [variant_check(name, have, settings, scored, content) for name, settings in want["variants"].items()]
    out.append(data_check(doc, suite, content))
    out += [plausible_check(doc), consistent_check(doc), duplicate_check(doc)]
    return out


def recorded_text(doc: dict[str, Any], label: str) -> tuple[str | None, str]:
    """The text sha256 a document says it scored as `label` (binding, else provenance: documents
    written before every dataset was bound), and why it cannot be trusted ('' when it can)."""
    bound = _table(_table(_table(doc, "binding"), "content"), "data").get(label)
    noted = _table(_table(_table(doc, "provenance"), "data"), label).get("text_sha256")
    if bound is not None and noted is not None and bound != noted:
        return None, f"the results record two texts for '{label}' (binding {str(bound)[:12]}..., provenance " \
                     f"{str(noted)[:12]}...)"
    then = bound if bound is not None else noted
    return (then, "") if isinstance(then, str) else (None, f"the results record no text sha256 for '{label}'")


def data_check(doc: dict[str, Any], suite: Suite, content: dict[str, Any] | None) -> Check:
    """Every dataset's text (its sha256) must be the text the suite names now: the pinned packaged text
    for a packaged label, the file's or hub rows' text for a custom one (`content`: recomputed)."""
    for label in dataset_labels(suite):
        then, why = recorded_text(doc, label)
        if then is None:
            return _check("binding_data", "*", False, why)
        now = then if content is None else content.get("data", {}).get(label)  # None: a fresh run, just loaded
        if now != then:
            return _check("binding_data", "*", False, f"'{label}' now has text {str(now)[:40]}..., the results "
                                                      f"scored {then[:12]}...")
    return _check("binding_data", "*", True, "")


def complete_check(doc: dict[str, Any]) -> Check:
    shard = doc.get("shard")
    if shard:
        why = f"shard {shard.get('index')}/{shard.get('count')} of a sharded run; merge all shards first"
    elif doc.get("errors"):
        why = "the run has scoring errors (see the scoring checks)"
    else:
        why = "the document is not marked complete"
    return _check("result_complete", "*", doc.get("complete") is True and not shard, why)


def policy_check(doc: dict[str, Any], want: dict[str, Any]) -> Check:
    policy = _table(doc, "policy")
    have = {k: policy.get(k) for k in POLICY_KEYS}
    diff = [f"{k} {have[k]} (suite: {want[k]})" for k in POLICY_KEYS if have[k] != want[k]]
    return _check("binding_policy", "*", not diff, "results scored with " + ", ".join(diff))


def roles_diff(doc: dict[str, Any], want: Roles) -> list[str]:
    """How the document's roles differ from the suite's: consistency re-derives numbers by the document's
    roles, so a document may not name another reference, base or candidates. One written before roles
    were recorded reads as today's (roles.of_document); its candidates are then only what its runs name."""
    have = of_document(doc)
    keys = FIELDS if isinstance(doc.get("roles"), dict) else FIELDS[:-1]  # FIELDS[-1]: the candidates
    return [f"roles.{k} {getattr(have, k)!r} (suite: {getattr(want, k)!r})" for k in keys
            if getattr(have, k) != getattr(want, k)]


def suite_check(have: dict[str, Any], want: dict[str, Any], roles: list[str] | None = None) -> Check:
    """Same datasets, runners and variant names (and roles) as the suite asks for (settings: variant_check)."""
    diff = [f"{key} {have.get(key)} (suite: {want.get(key)})" for key in ("datasets", "runners", "documents",
                                                                          "sources", "parity_windows")
            if have.get(key) != want.get(key)]
    diff += roles or []
    names, wanted = sorted(have.get("variants") or {}), sorted(want["variants"])
    if names != wanted:
        diff.append(f"variants {names} (suite: {wanted})")
    return _check("binding_suite", "*", not diff, "results are of another suite: " + "; ".join(diff))


def model_check(have: Any, want: dict[str, Any], scored: dict[str, Any], content: dict[str, Any] | None,
                who: str) -> Check:
    """The base model (`who`: the base variant's name) is the one the suite names, down to its content."""
    if have != want:
        return _check("binding_model", who, False, f"results were made for model settings {have}, the suite "
                                                   f"names {want}")
    if content is None:
        return _check("binding_model", who, True, "")
    now, then = content.get("model", {}), scored.get("model") or {}
    if now.get("origin_sha256") is None:
        return _check("binding_model", who, False, f"cannot verify the model's identity: {now.get('error')}")
    if now["origin_sha256"] != then.get("origin_sha256"):
        return _check("binding_model", who, False,
                      f"results scored model sha256 {str(then.get('origin_sha256'))[:12]}..., the suite's model is "
                      f"{now['origin_sha256'][:12]}...")
    tok = now.get("tokenizer_sha256")  # None: a GGUF, whose sha256 above covers its tokenizer
    if tok is not None and tok != then.get("tokenizer_sha256"):
        return _check("binding_model", who, False,
                      f"results scored tokenizer sha256 {str(then.get('tokenizer_sha256'))[:12]}..., the suite's "
                      f"model's tokenizer files are now {tok[:12]}...")
    if content.get("base_onnx") is not None and content["base_onnx"] != scored.get("base_onnx"):
        return _check("binding_model", who, False, "the ORT base ONNX file's content differs from the one scored")
    return _check("binding_model", who, True, "")


def variant_check(name: str, have: dict[str, Any], settings: dict[str, Any], scored: dict[str, Any],
                  content: dict[str, Any] | None) -> Check:
    then = (have.get("variants") or {}).get(name)
    if then != settings:
        return _check("binding_variant", name, False,
                      "no such variant in the results" if then is None else f"scored with settings {then}")
    now = (content or {}).get("variants", {}).get(name)
    if now is not None and now != (scored.get("variants") or {}).get(name):
        return _check("binding_variant", name, False, f"the file scored as '{name}' differs from the one configured "
                                                      f"now ({str(now)[:12]}...)")
    return _check("binding_variant", name, True, "")


def plausible_check(doc: dict[str, Any]) -> Check:
    for run in doc.get("runs", []):
        why = implausible(run)
        if why:
            who = f"{run.get('variant')}/{run.get('runner')} on {run.get('dataset')}"
            return _check("plausible_values", "*", False, f"{who}: {why}")
    return _check("plausible_values", "*", True, "")


def consistent_check(doc: dict[str, Any]) -> Check:
    why = problem(doc)
    return _check("consistent_values", "*", not why, why)


def duplicate_check(doc: dict[str, Any]) -> Check:
    seen: set[tuple[Any, ...]] = set()
    for run in doc.get("runs", []):
        key = (run.get("variant"), run.get("runner"), run.get("dataset"))
        if key in seen:
            return _check("unique_runs", "*", False, f"run {'/'.join(map(str, key))} appears more than once")
        seen.add(key)
    return _check("unique_runs", "*", True, "")
