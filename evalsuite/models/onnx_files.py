"""ONNX model files on disk: find the model file of a folder, check its external data stays inside
the folder and is complete, and check a model opens with what every runner needs. Knows nothing of
runners or builds (both import it).

Existing folders: a GenAI layout (`genai_config.json` naming the model file, plus external data)
or any folder / file with a `model.onnx` taking `input_ids`, `attention_mask` and optionally
`position_ids` and empty `past_key_values.N.key/value`. Before ONNX Runtime opens a model, every
external-data location must resolve inside the model's folder (no `../`, no absolute paths).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from evalsuite.errors import ModelError


def resolve_onnx(path: Path) -> Path:
    """The `.onnx` file of a model folder (GenAI layout or plain `model.onnx`) or file."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".onnx":
        return path
    if not path.is_dir():
        raise ModelError(f"ONNX model not found: {path}; give a folder with model.onnx (or genai_config.json)")
    name = "model.onnx"
    cfg = path / "genai_config.json"
    if cfg.is_file():
        from evalsuite.models.positions import genai_config

        try:
            name = genai_config(path)["model"]["decoder"]["filename"]
            assert isinstance(name, str) and name
        except (KeyError, TypeError, AssertionError):
            raise ModelError(f"{cfg} is malformed (no model.decoder.filename); restore the GenAI config") from None
    model = path / name
    if not model.is_file():
        raise ModelError(f"{model} is missing; the ONNX folder must hold the model file {name}")
    return model


def check_external_data(model: Path) -> None:
    """Every external-data location must be a file inside the model's folder and long enough."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except (DecodeError, ValueError, OSError) as err:
        raise ModelError(f"{model} is truncated or not an ONNX model ({type(err).__name__}); "
                         "rebuild or re-download it") from None
    root = model.parent.resolve()
    for tensor in _external_tensors(proto):
        info = {e.key: e.value for e in tensor.external_data}
        loc = info.get("location", "")
        target = (root / loc).resolve()
        if os.path.isabs(loc) or root not in target.parents:
            raise ModelError(f"{model.name}: tensor {tensor.name} points outside the model folder ('{loc}'); "
                             "refusing to open it")
        if not target.is_file():
            raise ModelError(f"{model.name}: external data file {loc} is missing; copy it next to {model.name}")
        end = int(info.get("offset", 0)) + int(info.get("length", 0))
        if target.stat().st_size < end:
            raise ModelError(f"{model.name}: external data file {loc} is truncated ({target.stat().st_size} "
                             f"bytes, needs {end}); re-download it")


def _external_tensors(proto: Any) -> list[Any]:
    import onnx

    graph = proto.graph
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                tensors.append(attr.t)
    return [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


def check_loadable(model: Path) -> None:
    """Open `model` in ONNX Runtime (CPU) and check it takes `input_ids` and returns `logits` of rank 3."""
    import onnxruntime as ort

    check_external_data(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ModelError(f"ONNX Runtime cannot load {model}: {str(err).splitlines()[0][:240]}; "
                         "rebuild the model or check the onnxruntime version") from None
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if "input_ids" not in inputs or "logits" not in outputs or len(outputs["logits"].shape) != 3:
        raise ModelError(f"{model.name} does not take input_ids and return per-position logits [batch, seq, vocab]; "
                         "rebuild it as a decoder-only language model with its lm_head")


def external_files(model: Path) -> list[Path]:
    """The external-data files `model` references (unique, in first-use order)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    names: dict[str, None] = {}
    for tensor in _external_tensors(proto):
        loc = {e.key: e.value for e in tensor.external_data}.get("location", "")
        names.setdefault(loc, None)
    return [model.parent / loc for loc in names]


def content_sha256(model: Path) -> str:
    """Identity of what ONNX Runtime scores: the model file's bytes and each external-data file's
    (name and bytes). A file, never a folder or a path: two different files never share it."""
    import hashlib

    from evalsuite.content_hash import known_sha256

    check_external_data(model)
    digest = hashlib.sha256()
    for path in [model, *external_files(model)]:
        digest.update(path.name.encode())
        digest.update(known_sha256(path).encode())
    return digest.hexdigest()
