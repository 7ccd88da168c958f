"""Normalise a Hugging Face `config.json` for the onnxruntime-genai model builder.

The builder runs in a subprocess with its own expectations of the config, which transformers 5 no
longer meets. Measured with onnxruntime-genai 0.18 and transformers 5.23:
- `quantization_config: null` (left by a GGUF export) -> `AttributeError: 'NoneType' object has no
  attribute 'get'`: the key is dropped.
- per-layer-type `rope_parameters` (Gemma 3: `{"full_attention": {...}, "sliding_attention": {...}}`)
  -> `KeyError: 'rope_type'`: flattened to the global layers' parameters, with the local layers'
  base frequency as `rope_local_base_freq` (the field the builder's Gemma 3 path reads).
- `rope_parameters` of type `longrope` (Phi-3 128k) -> `KeyError: 'type'`: the legacy `type` key is
  added; `original_max_position_embeddings` is copied to the top level when only the RoPE
  parameters carry it (the builder picks its LongRoPE model by comparing it with
  `max_position_embeddings`).

The source folder is never modified: when something needs translating, the builder reads a copy in
the cache (`<cache>/hfconfig/<key>/`: the rewritten `config.json`, every other file linked).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from evalsuite.cache import atomic_dir, key_of
from evalsuite.errors import ModelError

GLOBAL_LAYERS = "full_attention"
LOCAL_LAYERS = "sliding_attention"


def normalise(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Pure: the config the builder can read, and one line per change (empty: nothing to change)."""
    out = copy.deepcopy(config)
    changes: list[str] = []
    if "quantization_config" in out and out["quantization_config"] is None:
        del out["quantization_config"]
        changes.append("dropped quantization_config: null")
    rope = out.get("rope_parameters")
    if isinstance(rope, dict) and rope and all(isinstance(v, dict) for v in rope.values()):
        changes += _flatten_layer_types(out, rope)
        rope = out["rope_parameters"]
    if isinstance(rope, dict) and rope.get("rope_type") == "longrope":
        if "type" not in rope:
            rope["type"] = "longrope"
            changes.append("rope_parameters.type = 'longrope' (legacy key the builder reads)")
        omax = rope.get("original_max_position_embeddings")
        if "original_max_position_embeddings" not in out and isinstance(omax, int):
            out["original_max_position_embeddings"] = omax
            changes.append(f"original_max_position_embeddings = {omax} (from rope_parameters)")
    return out, changes


def _flatten_layer_types(out: dict[str, Any], rope: dict[str, dict[str, Any]]) -> list[str]:
    """Per-layer-type RoPE -> the global layers' parameters + `rope_local_base_freq` for local ones."""
    unknown = sorted(set(rope) - {GLOBAL_LAYERS, LOCAL_LAYERS})
    if unknown:
        raise ModelError(f"rope_parameters for layer type '{unknown[0]}' cannot be translated for the ONNX "
                         "builder; give an ONNX model built elsewhere ([model] onnx)")
    glob = rope.get(GLOBAL_LAYERS) or rope[LOCAL_LAYERS]
    local = rope.get(LOCAL_LAYERS)
    if "rope_theta" not in glob or (local is not None and "rope_theta" not in local):
        raise ModelError("per-layer-type rope_parameters without rope_theta; fix the model's config.json")
    if local is not None and local.get("rope_type", "default") != "default":
        raise ModelError(f"the sliding-attention layers use RoPE type '{local['rope_type']}', which the ONNX "
                         "builder cannot apply to local layers; give an ONNX model built elsewhere ([model] onnx)")
    flat = {**glob, "rope_type": glob.get("rope_type", "default")}
    changes = [f"rope_parameters: per-layer-type -> {GLOBAL_LAYERS} ({flat['rope_type']}, "
               f"theta {flat['rope_theta']})"]
    out["rope_theta"] = flat["rope_theta"]
    if local is not None:
        flat["rope_local_base_freq"] = local["rope_theta"]
        out["rope_local_base_freq"] = local["rope_theta"]
        changes.append(f"rope_local_base_freq = {local['rope_theta']} (from {LOCAL_LAYERS})")
    out["rope_parameters"] = flat
    return changes


def config_changes(hf_dir: Path) -> list[str]:
    """What `builder_input` would change in `hf_dir`'s config (part of the build cache key)."""
    return normalise(_read(hf_dir))[1]


def builder_input(hf_dir: Path, cache: Path) -> Path:
    """The folder the builder should read: `hf_dir` itself, or a normalised copy in `cache`."""
    config, changes = normalise(_read(hf_dir))
    if not changes:
        return hf_dir
    # A source inside the cache (a GGUF export) is named and linked relative to it: a cache moved to
    # another folder or machine as a whole (evalsuite prepare, a CI cache) keeps working links.
    root, src = cache.resolve(), hf_dir.resolve()
    inside = root in src.parents
    out = cache / "hfconfig" / key_of({"source": src.relative_to(root).as_posix() if inside else str(src),
                                       "config": config})
    if (out / "config.json").is_file():
        return out
    with atomic_dir(out) as tmp:
        for item in hf_dir.iterdir():
            if item.name != "config.json":
                target = item.resolve()
                os.symlink(os.path.relpath(target, tmp.resolve()) if inside else target, tmp / item.name)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "evalsuite_normalised.json").write_text(json.dumps({"source": str(hf_dir), "changes": changes},
                                                                  indent=2))
    return out


def _read(hf_dir: Path) -> dict[str, Any]:
    from evalsuite.models.positions import read_config

    return read_config(hf_dir)
