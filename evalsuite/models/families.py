"""Known ways an ONNX export and the transformers reference can disagree, found from the two models'
structure (no scoring). The parity check (gate/checks.py) names them when it fails, and a definite
mismatch that the suite's windows reach fails the gate on its own (`parity_export`).

- Sliding-window attention: transformers restricts a layer's attention to the last `sliding_window`
  tokens (all layers for Mistral; the `sliding_attention` entries of `layer_types` for Gemma 3 and
  Qwen2 with `use_sliding_window`). The ONNX model applies it through GroupQueryAttention's
  `local_window_size` (-1: full attention). Measured with onnxruntime-genai 0.18: the Mistral
  builder writes -1 on every layer, so windows longer than `sliding_window` score differently.
- Gemma's embedding scale: transformers multiplies embeddings by sqrt(hidden_size) in float32; the
  builder (onnxruntime-genai 0.18) rounds it to two decimals (Gemma 3 270M: 25.30 for 25.2982, 7e-5
  too large). Measured on Gemma 3 270M, 1,023-token windows: |ΔPPL|/PPL 2.4e-5, max |Δlogit| up to
  0.044; with transformers' scale set to 25.30 the logits agree to 9.4e-5. Named when a parity
  check fails (a note: the parity numbers measure its effect).
- LongRoPE (Phi-3 128k): the RoPE factors switch from short to long once a sequence passes
  `original_max_position_embeddings`; a window that crosses it is where an export can go wrong
  (a note for a failing parity check, not a mismatch by itself).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.models.positions import read_config

GQA = "GroupQueryAttention"
EMBED_MUL = "/model/embed_tokens/Mul"
_LAYER = re.compile(r"layers\.(\d+)/")


def reference_windows(config: dict[str, Any]) -> list[int | None]:
    """Per layer, the sliding window transformers applies (None: full attention), from config.json."""
    layers = int(config.get("num_hidden_layers", 0))
    window = config.get("sliding_window")
    if not isinstance(window, int) or window <= 0:
        return [None] * layers
    types = config.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return [window if t == "sliding_attention" else None for t in types]
    if config.get("model_type") == "qwen2":  # transformers 5 writes layer_types; older configs: this flag
        return [window] * layers if config.get("use_sliding_window") else [None] * layers
    return [window] * layers


def onnx_windows(model: Path) -> dict[int, int | None]:
    """Per layer, GroupQueryAttention's `local_window_size` in the ONNX graph (None: -1, full)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    out: dict[int, int | None] = {}
    for node in proto.graph.node:
        match = _LAYER.search(node.name)
        if node.op_type != GQA or match is None:
            continue
        size = next((a.i for a in node.attribute if a.name == "local_window_size"), -1)
        out[int(match.group(1))] = size if size > 0 else None
    return out


def export_mismatches(hf_dir: Path, model: Path, window: int) -> list[str]:
    """Sliding windows that transformers and the ONNX graph apply differently, where a `window`-token
    scoring window reaches them. Empty when the graph has no GroupQueryAttention to inspect."""
    config = read_config(hf_dir)
    ref, got = reference_windows(config), onnx_windows(model)
    if not got:
        return []
    bad = [i for i, w in enumerate(ref) if i in got and w != got[i]
           and min(x for x in (w, got[i], window) if x is not None) < window]
    if not bad:
        return []
    layers = ",".join(str(i) for i in bad[:6]) + ("..." if len(bad) > 6 else "")
    want = sorted({str(ref[i]) if ref[i] else "none" for i in bad})
    have = sorted({str(got[i]) if got[i] else "none" for i in bad})
    return [f"sliding window not applied as in transformers: layers {layers} use sliding window "
            f"{'/'.join(want)} in transformers but {'/'.join(have)} in the ONNX model, and {window}-token "
            "windows reach past it; score with --window within the sliding window or re-export the model"]


def embedding_scale(model: Path) -> float | None:
    """The constant the ONNX graph multiplies the token embeddings by (None: no such Mul)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model), load_external_data=False)
    mul = next((n for n in proto.graph.node if n.op_type == "Mul" and n.name == EMBED_MUL), None)
    if mul is None:
        return None
    name = mul.input[1]
    for init in proto.graph.initializer:
        if init.name == name and init.data_location != onnx.TensorProto.EXTERNAL:
            return float(numpy_helper.to_array(init).reshape(-1)[0])
    for node in proto.graph.node:
        if node.op_type == "Constant" and name in node.output:
            return float(numpy_helper.to_array(node.attribute[0].t).reshape(-1)[0])
    return None


def parity_notes(hf_dir: Path, window: int, model: Path | None = None) -> list[str]:
    """Model features that make a parity failure likely to come from the export (for its message)."""
    config = read_config(hf_dir)
    notes = _scale_note(config, model) if model is not None else []
    return notes + _longrope_note(config, window)


def _scale_note(config: dict[str, Any], model: Path) -> list[str]:
    if not str(config.get("model_type", "")).startswith("gemma") or not isinstance(config.get("hidden_size"), int):
        return []
    want = float(np.float32(np.sqrt(np.float32(config["hidden_size"]))))
    got = embedding_scale(model)
    if got is None or abs(got - want) <= 1e-6 * want:
        return []
    return [f"the ONNX model scales embeddings by {got:g}, transformers by sqrt(hidden_size) = {want:.6g} "
            f"({(got - want) / want:+.1e} relative; the builder rounds it to 2 decimals)"]


def _longrope_note(config: dict[str, Any], window: int) -> list[str]:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    orig = config.get("original_max_position_embeddings") or rope.get("original_max_position_embeddings")
    kind = rope.get("rope_type") or rope.get("type")
    if kind == "longrope" and isinstance(orig, int) and window > orig:
        return [f"LongRoPE switches to its long factors past original_max_position_embeddings={orig}, "
                f"inside these {window}-token windows"]
    return []
