"""What a suite names *now*, computed without exporting, building or scoring: the identities that
`gate --results` compares with what a stored results document says was scored (gate/binding.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from evalsuite.config import Suite, custom_labels, run_label
from evalsuite.data import corpora
from evalsuite.errors import DataError, ModelError
from evalsuite.models import source as model_source
from evalsuite.ppl_task import load_texts
from evalsuite.task_suite import task_content


def content_identity(suite: Suite, data_dir: Path | None = None) -> dict[str, Any]:
    """Identities of what `suite` names now, computed without exporting, building or scoring: the
    model's origin sha256, a given ORT base's and every given ONNX variant's content hash. Gating
    a stored results file compares them with what the file says was scored (gate/binding.py)."""
    from evalsuite.models.onnx_files import content_sha256, resolve_onnx

    out: dict[str, Any] = {"model": {}, "base_onnx": None, "variants": {}}
    try:
        out["model"]["origin_sha256"] = model_source.origin_sha256(suite.model.source)
        out["model"]["tokenizer_sha256"] = model_source.tokenizer_sha256(suite.model.source)
    except ModelError as err:
        out["model"] = {"error": str(err)}
    if suite.model.onnx:
        try:
            out["base_onnx"] = content_sha256(resolve_onnx(Path(suite.model.onnx)))
        except ModelError as err:
            out["base_onnx"] = f"unavailable: {err}"
    for v in suite.variants:
        if v.method == "onnx" and v.path is not None:
            try:
                out["variants"][v.name] = content_sha256(resolve_onnx(Path(v.path)))
            except ModelError as err:
                out["variants"][v.name] = f"unavailable: {err}"
    out["data"] = data_identity(suite, data_dir)
    if suite.tasks:
        out["tasks"] = task_content(suite)
    return out


def data_identity(suite: Suite, data_dir: Path | None) -> dict[str, str]:
    """sha256 of each dataset's text now: a packaged one's pinned text sha256 (what its label means;
    no data is read), a custom one's from its files read again (a hub source is loaded)."""
    custom, out = set(custom_labels(suite)), {}
    for ref in suite.eval.datasets:
        if run_label(ref) not in custom:
            pinned = corpora.packaged_text_sha256(ref)
            if pinned is None:  # a packaged TOML without a text pin: read its text
                custom.add(run_label(ref))
            else:
                out[run_label(ref)] = pinned
    if not custom:
        return out
    try:
        only = dataclasses.replace(suite, eval=dataclasses.replace(
            suite.eval, datasets=tuple(d for d in suite.eval.datasets if run_label(d) in custom)))
        for text in load_texts(only, data_dir):
            out[text.label] = text.sha256
    except DataError as err:
        return out | {label: f"unavailable: {err}" for label in custom}
    return out
