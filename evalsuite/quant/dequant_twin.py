"""A runtime twin for int4 models with float zero points (HQQ): the same weights, dequantized once.

onnxruntime 1.32's CPU MatMulNBits has no pre-packed kernel for float zero points: every call takes
`ComputeBUnpacked`, which dequantizes the whole weight matrix (a loop the source itself calls "naive")
and then runs an fp32 SGEMM. On SmolLM2-135M that costs ~225 ms per `session.run` whatever the number
of tokens (231 ms for one token against 6 ms for the RTN model with uint8 zero points), which makes an
HQQ task lane ~10x slower than the others (task lanes run one short call per choice).

The twin replaces each such MatMulNBits by a MatMul on the fp32 weight that kernel computes,
`q * scale + (-scale * zero_point)` per block (onnxruntime's `Dequantize4BitsKernelReOrder`), and keeps
every other node. The arithmetic is the kernel's (dequantize, then fp32 GEMM); only the GEMM's
blocking differs, so logits move by rounding only (measured: max |d logit| 7e-4 at logit scale 36).
Each build is checked against the native graph on a fixed probe and refused above `TOLERANCE` nats of
log-softmax; the measured difference is recorded in the twin's build info and the variant's.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from evalsuite.cache import build_entry, cache_root, key_of, reuse
from evalsuite.errors import ModelError
from evalsuite.models.onnx_build import check_model, versions
from evalsuite.models.onnx_files import resolve_onnx
from evalsuite.quant.ort_quant import COPIED  # the files beside model.onnx every int4 folder keeps

TOLERANCE = 1e-2  # max |d log-softmax| (nats) twin vs native on the probe; rounding gives ~1e-3
PROBE_TOKENS = 64


def has_float_zero_points(model: Any) -> bool:
    """True when some MatMulNBits node of the (loaded, weights not needed) model has float zero points."""
    from onnx import TensorProto

    inits = {t.name: t for t in model.graph.initializer}
    return any(node.op_type == "MatMulNBits" and len(node.input) > 3 and node.input[3] in inits
               and inits[node.input[3]].data_type != TensorProto.UINT8 for node in model.graph.node)


def needs_twin(folder: Path) -> bool:
    import onnx

    return has_float_zero_points(onnx.load(str(resolve_onnx(folder)), load_external_data=False))


def dequantized_twin(folder: Path, cache: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The cached twin of the int4 folder and what it was checked to (build info excerpt)."""
    key = key_of({"native": folder.name, "v": versions(), "twin": 1})
    out = (cache or cache_root()) / "onnx" / f"twin-{key}"
    if not reuse(out):
        with build_entry(out) as tmp:
            start = time.perf_counter()
            _write_twin(resolve_onnx(folder), tmp / "model.onnx")
            for name in COPIED:
                if (folder / name).is_file():
                    shutil.copy2(folder / name, tmp / name)
            check_model(tmp)
            diff = probe_difference(resolve_onnx(folder), tmp / "model.onnx")
            if not diff <= TOLERANCE:
                raise ModelError(f"the dequantized twin of {folder} differs from it by {diff:.3g} nats "
                                   f"(limit {TOLERANCE}); report this with your onnxruntime version")
            info = {"native": str(folder), "writer": "evalsuite dequantized twin",
                    "max_abs_dlogprob_vs_native": diff, "probe_tokens": PROBE_TOKENS,
                    "versions": versions(), "build_seconds": round(time.perf_counter() - start, 2)}
            (tmp / "evalsuite_build.json").write_text(json.dumps(info, indent=2))
    info = json.loads((out / "evalsuite_build.json").read_text())
    return out, {"of": folder.name, "max_abs_dlogprob_vs_native": info["max_abs_dlogprob_vs_native"],
                 "tolerance": TOLERANCE}


def dequantize(q: Any, scale: Any, zero: Any, k: int) -> Any:
    """fp32 weight (N, K) of a 4-bit MatMulNBits initializer set: q (N, blocks, block/2) packed low
    nibble first; scale and float zero (N * blocks); as onnxruntime's kernel: q * s + (-s * z)."""
    import numpy as np

    n, blocks, half = q.shape
    vals = np.stack([q & 0x0F, q >> 4], axis=-1).reshape(n, blocks, 2 * half).astype(np.float32)
    s = scale.reshape(n, blocks, 1).astype(np.float32)
    adjust = (-s) * zero.reshape(n, blocks, 1).astype(np.float32)
    return (vals * s + adjust).reshape(n, blocks * 2 * half)[:, :k]


def _write_twin(src: Path, dst: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    nodes: list[Any] = []
    dropped: set[str] = set()
    added: list[Any] = []
    for node in model.graph.node:
        zp = inits.get(node.input[3]) if node.op_type == "MatMulNBits" and len(node.input) > 3 else None
        if zp is None or zp.data_type == TensorProto.UINT8:
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("bits", 4) != 4 or any(node.input[4:]):
            raise ModelError(f"{node.name}: only 4-bit MatMulNBits without g_idx or bias can be twinned")
        weight = dequantize(numpy_helper.to_array(inits[node.input[1]]), numpy_helper.to_array(inits[node.input[2]]),
                            numpy_helper.to_array(zp), int(attrs["K"]))
        name = f"{node.input[1]}.dequantized"
        added.append(numpy_helper.from_array(weight.T.copy(), name))  # MatMul's B is (K, N)
        dropped.update(node.input[1:4])
        nodes.append(helper.make_node("MatMul", [node.input[0], name], list(node.output), name=f"{node.name}.twin"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [t for t in model.graph.initializer if t.name not in dropped]
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *added])
    onnx.save(model, str(dst), save_as_external_data=True, location="model.onnx.data",
              all_tensors_to_one_file=True)


def probe_difference(native: Path, twin: Path) -> float:
    """max |d log-softmax| between the two models on a fixed token sequence (ids 1..PROBE_TOKENS of the
    vocabulary), both run by onnxruntime on the CPU."""
    import numpy as np

    from evalsuite.models.ort_runner import OrtRunner

    ids = np.arange(1, PROBE_TOKENS + 1, dtype=np.int64)
    out = []
    for path in (native, twin):
        logits = OrtRunner(path, "cpu", None).logits(ids, PROBE_TOKENS).astype(np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        out.append(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))
    return float(np.abs(out[0] - out[1]).max())
