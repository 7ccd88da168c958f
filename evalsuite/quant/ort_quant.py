"""int4 models written by onnxruntime's own weight-only quantizer (`MatMulNBitsQuantizer`).

Used where the GenAI builder cannot: asymmetric int4 (its `is_symmetric=false` output fails to load in
onnxruntime-genai 0.18), an fp32 embedding, and HQQ (`HQQWeightOnlyQuantConfig`, onnxruntime's
implementation: half-quadratic optimisation of scales and float zero points per block, no calibration
data). Input: the builder's fp32 ONNX folder of the (possibly AWQ-transformed) HF model. The
quantizer turns every MatMul weight into MatMulNBits (blocks of `block_size` input channels; RTN /
AWQ with the grid of `grid.py`, symmetric or with zero points, at the configured accuracy level).

Embedding policy (`embedding`): "quantize" makes the token embedding a GatherBlockQuantized with the
same int4 grid; with tied weights the builder feeds the Gather from a Transpose of the lm_head weight,
which the quantizer skips, so the transposed table is first materialised as its own initializer.
"fp32" leaves the Gather (and, tied, the fp32 table) untouched. `lm_head = "exclude"` keeps the
output projection in fp32. HQQ has no Gather quantizer in onnxruntime (float zero points), so HQQ
variants must set `embedding = "fp32"` (config check). Built once per cache key (fp32 model content,
settings, package versions), written to a temporary folder and renamed into place after it loads.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from evalsuite.cache import build_entry, cache_root, key_of, reuse
from evalsuite.config import VariantCfg
from evalsuite.models.onnx_build import check_model, versions
from evalsuite.models.onnx_files import resolve_onnx

LM_HEAD = "/lm_head/MatMul"
COPIED = ("genai_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
          "chat_template.jinja")


def quant_options(v: VariantCfg) -> dict[str, Any]:
    """Everything that decides the quantized model (part of its cache key and build info)."""
    return {"method": v.method, "bits": v.bits, "block_size": v.block_size, "symmetric": v.symmetric,
            "accuracy_level": v.accuracy_level, "embedding": v.embedding, "lm_head": v.lm_head}


def quantize_onnx(fp32_dir: Path, v: VariantCfg, cache: Path | None = None) -> Path:
    """Folder with the int4 `model.onnx` (+ data) of `v` made from the fp32 ONNX folder; cached."""
    key = key_of({"fp32": fp32_dir.name, "options": quant_options(v), "v": versions(), "writer": 1})
    out = (cache or cache_root()) / "onnx" / key
    if reuse(out):  # verified against its manifest; a broken entry is moved aside and rebuilt
        return out
    with build_entry(out) as tmp:
        start = time.perf_counter()
        _quantize(resolve_onnx(fp32_dir), v, tmp)
        for name in COPIED:
            if (fp32_dir / name).is_file():
                shutil.copy2(fp32_dir / name, tmp / name)
        check_model(tmp)
        info = {"source": str(fp32_dir), "precision": "int4", "writer": "onnxruntime MatMulNBitsQuantizer",
                "options": quant_options(v), "versions": versions(),
                "build_seconds": round(time.perf_counter() - start, 2)}
        (tmp / "evalsuite_build.json").write_text(json.dumps(info, indent=2))
    return out


def _quantize(model_file: Path, v: VariantCfg, out: Path) -> None:
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # per-node INFO
    model = onnx.load(str(model_file))
    ops = ("MatMul", "Gather") if v.embedding == "quantize" else ("MatMul",)
    if v.embedding == "quantize":
        materialize_embedding(model)
    axes = (("MatMul", 0), ("Gather", 1))
    config: Any
    if v.method == "hqq":
        config = HQQWeightOnlyQuantConfig(block_size=v.block_size, bits=v.bits, op_types_to_quantize=ops,
                                          quant_axes=axes)
    else:
        config = DefaultWeightOnlyQuantConfig(block_size=v.block_size, is_symmetric=v.symmetric,
                                              accuracy_level=v.accuracy_level, op_types_to_quantize=ops,
                                              quant_axes=axes, bits=v.bits)
    exclude = [LM_HEAD] if v.lm_head == "exclude" else []
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=exclude, algo_config=config)
    quantizer.process()
    if v.method == "hqq":  # onnxruntime's HQQ writer sets no accuracy level; use the configured one
        _set_accuracy_level(quantizer.model.model, v.accuracy_level)
    quantizer.model.save_model_to_file(str(out / "model.onnx"), use_external_data_format=True)


def materialize_embedding(model: Any) -> bool:
    """Give the token-embedding Gather its own constant table when it reads a Transpose of an initializer
    (tied weights), so the quantizer can quantize it; the Transpose goes when nothing else reads it."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type != "Gather" or node.input[0] in inits:
            continue
        src = producers.get(node.input[0])
        if src is None or src.op_type != "Transpose" or src.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in src.attribute if a.name == "perm"), None)
        table = numpy_helper.to_array(inits[src.input[0]]).transpose(perm)
        name = f"{src.input[0]}.embedding"
        graph.initializer.append(numpy_helper.from_array(table.copy(), name))
        node.input[0] = name
        if not any(src.output[0] in n.input for n in graph.node):
            graph.node.remove(src)
        return True
    return False


def _set_accuracy_level(model: Any, level: int) -> None:
    from onnx import helper

    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("accuracy_level", level)])
