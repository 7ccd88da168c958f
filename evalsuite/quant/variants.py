"""Quantized variants as ONNX folders: built on demand (RTN, AWQ) or given (an existing folder).

RTN: the model builder's int4 MatMulNBits quantization of the fp32 HF folder (symmetric, embedding
quantized; block size and accuracy level from the config; lm_head quantized or excluded). AWQ: `awq.py`
searches scales and clips on calibration text, `awq_build.py` applies them to an fp32 copy of the model
and saves it as an HF folder in the cache, and the same int4 writer quantizes that folder (see awq.py
for why). Asymmetric grids, an fp32 embedding and HQQ are written by onnxruntime's own quantizer from
the fp32 ONNX model (`ort_quant.py`); the symmetric grid is the same bit for bit either way. Each build
is cached by content hash (source, options, calibration, package versions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.cache import key_of
from evalsuite.config import Suite, VariantCfg
from evalsuite.models.onnx_build import build_onnx, execution_target, source_hash
from evalsuite.models.onnx_files import external_files, resolve_onnx
from evalsuite.models.source import ModelSource
from evalsuite.stages import stage


def builder_options(v: VariantCfg) -> dict[str, str]:
    """Builder --extra_options for an int4 variant. Symmetric only: the builder's asymmetric
    (is_symmetric=false) output fails to load in onnxruntime-genai 0.18 (uint8 Gather type error)."""
    opts = {"block_size": str(v.block_size), "accuracy_level": str(v.accuracy_level), "is_symmetric": "true"}
    if v.lm_head == "exclude":
        opts["nodes_to_exclude"] = "/lm_head/MatMul"
    return opts


def build_variant(source: ModelSource, v: VariantCfg, suite: Suite, data_dir: Path | None,
                  progress: Any = None) -> dict[str, Any]:
    """Build (or find) the variant's ONNX folder; return its build info (path, size, method...).
    `progress` (suite.Progress, optional) sees the AWQ search per layer and the builder as stages."""
    if v.method == "onnx":
        assert v.path is not None
        # A file is scored as that file (never swapped for model.onnx beside it); a folder by its
        # GenAI config or model.onnx.
        folder = resolve_onnx(Path(v.path))
        info: dict[str, Any] = {"method": "onnx", "given": v.path}
    elif v.method in ("rtn", "hqq"):
        folder, info = _int4(source.path, v, execution_target(suite.eval.provider), progress)
    else:
        from evalsuite.quant.awq_build import awq_folder

        hf = awq_folder(source, v, data_dir, progress)
        folder, info = _int4(hf, v, execution_target(suite.eval.provider), progress)
        info |= {"awq_hf_folder": str(hf), "calibration": vars(v.calibration)}
    keyed = {k: val for k, val in info.items() if k != "runtime_twin"}  # its measured rounding is CPU-dependent
    info |= {"path": str(folder), "size_mb": info.get("runtime_twin", {}).get("native_size_mb") or weights_mb(folder),
             "key": key_of([source_hash(source.path), keyed])}
    return info


def uses_builder(v: VariantCfg) -> bool:
    """The GenAI builder writes symmetric RTN/AWQ int4 with the embedding quantized; all else goes through
    onnxruntime's MatMulNBitsQuantizer."""
    return v.method in ("rtn", "awq") and v.symmetric and v.embedding == "quantize"


def _int4(hf: Path, v: VariantCfg, execution: str, progress: Any) -> tuple[Path, dict[str, Any]]:
    """The variant's int4 ONNX model: the GenAI builder's where it writes this grid, else onnxruntime's
    quantizer over the fp32 build (asymmetric, fp32 embedding, HQQ)."""
    with stage(progress, f"{v.name}: int4 ONNX build (cached after the first run)"):
        if uses_builder(v):
            return (build_onnx(hf, "int4", builder_options(v), execution=execution),
                    {"method": v.method, "options": builder_options(v)})
        from evalsuite.quant.ort_quant import quant_options, quantize_onnx

        folder = quantize_onnx(build_onnx(hf, "fp32", execution=execution), v)
        info: dict[str, Any] = {"method": v.method, "writer": "onnxruntime", "options": quant_options(v)}
        from evalsuite.quant.dequant_twin import dequantized_twin, needs_twin

        if execution == "cpu" and needs_twin(folder):  # float zero points (HQQ): see dequant_twin.py
            native = folder
            folder, twin = dequantized_twin(native)
            info["runtime_twin"] = twin | {"native_path": str(native), "native_size_mb": weights_mb(native)}
    return folder, info


def weights_mb(path: Path) -> float:
    """Size on disk of the model file and the external data it references (MB = 1e6 bytes)."""
    model = resolve_onnx(path)
    files = [model, *external_files(model)]
    return round(sum(p.stat().st_size for p in set(files) if p.is_file()) / 1e6, 2)

