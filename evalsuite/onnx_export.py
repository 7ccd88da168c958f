"""ONNX models: build them with onnxruntime-genai's model builder, or accept an existing folder.

Builds run `python -m onnxruntime_genai.models.builder` in a subprocess (the builder edits sys.path
and holds the whole model in memory; a subprocess isolates both) into a temp folder that is renamed
into the cache only after the result loads and passes `check_model`. Cache key: hash of the source
folder's weights/config/tokenizer, precision, builder options and package versions.

Existing folders: a GenAI layout (`genai_config.json` naming the model file, plus external data)
or any folder / file with a `model.onnx` taking `input_ids`, `attention_mask` and optionally
`position_ids` and empty `past_key_values.N.key/value`. Before ONNX Runtime opens a model, every
external-data location must resolve inside the model's folder (no `../`, no absolute paths).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .cache import atomic_dir, cache_root, file_sha256, key_of, package_versions
from .errors import ModelError

BUILDER = "onnxruntime_genai.models.builder"
VERSIONED = ("onnxruntime", "onnxruntime-genai", "onnx", "onnx-ir", "transformers", "torch")
FORBIDDEN_OPTIONS = ("prune_lm_head", "exclude_lm_head")  # perplexity needs logits at every position
_hash_memo: dict[tuple[str, float], str] = {}


def source_hash(hf_dir: Path) -> str:
    """Hash of the files a build reads (weights, configs, tokenizer); memoised per process."""
    files = sorted(p for p in hf_dir.iterdir() if p.is_file() and p.suffix in (".safetensors", ".json", ".model"))
    stamp = (str(hf_dir.resolve()), max((p.stat().st_mtime for p in files), default=0.0))
    if stamp not in _hash_memo:
        _hash_memo[stamp] = key_of([(p.name, file_sha256(p)) for p in files])
    return _hash_memo[stamp]


def versions() -> dict[str, str | None]:
    return package_versions(VERSIONED)


def build_onnx(hf_dir: Path, precision: str = "fp32", options: dict[str, str] | None = None,
               cache: Path | None = None) -> Path:
    """Folder with the built `model.onnx` (+ data, genai_config.json); built once per cache key."""
    options = dict(options or {})
    bad = [k for k in options if k in FORBIDDEN_OPTIONS]
    if bad:
        raise ModelError(f"builder option '{bad[0]}' removes per-position logits, which perplexity needs; drop it")
    key = key_of({"source": source_hash(hf_dir), "precision": precision, "options": options, "v": versions()})
    out = (cache or cache_root()) / "onnx" / key
    if (out / "evalsuite_build.json").is_file():
        return out
    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory(prefix="evalsuite-builder-") as scratch:
        seconds = _run_builder(hf_dir, tmp, precision, options, Path(scratch))
        check_model(tmp)
        info = {"source": str(hf_dir), "precision": precision, "options": options, "versions": versions(),
                "build_seconds": round(seconds, 2)}
        (tmp / "evalsuite_build.json").write_text(json.dumps(info, indent=2))
    return out


def _run_builder(hf_dir: Path, out: Path, precision: str, options: dict[str, str], scratch: Path) -> float:
    cmd = [sys.executable, "-m", BUILDER, "-i", str(hf_dir), "-o", str(out), "-p", precision, "-e", "cpu",
           "-c", str(scratch)]
    if options:
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in sorted(options.items()))]
    start = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=scratch)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1][:300] if lines else f"exit code {proc.returncode}"
        raise ModelError(f"the ONNX model builder failed for {hf_dir.name} ({precision}, "
                         f"{options or 'default options'}): {last}; check the model and builder options")
    return time.perf_counter() - start


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
        try:
            name = json.loads(cfg.read_text())["model"]["decoder"]["filename"]
        except (ValueError, KeyError, TypeError):
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


def check_model(folder: Path) -> None:
    """Open the model with ONNX Runtime and check it returns logits at every position."""
    from .ort_runner import OrtRunner

    OrtRunner(folder, threads=1)
