"""Quantization methods and their settings: the AWQ architecture allow-list (refused before any model
work), symmetric / asymmetric int4, HQQ and the embedding / lm_head policy, on tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.errors import UsageError
from evalsuite.quant.support import check_variants

REPO = Path(__file__).resolve().parent.parent


def save_tiny_gemma(folder: Path) -> Path:
    from test_awq_search import tiny_family
    from tiny import make_tiny_tokenizer

    tiny_family("gemma").save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    make_tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("model_type", "refused"), [("llama", False), ("mistral", False), ("qwen2", False),
                                                     ("gemma", True), ("gemma2", True), ("phi3", True),
                                                     (None, True)],
                         ids=["llama", "mistral", "qwen2", "gemma", "gemma2", "phi3", "no-model-type"])
def test_awq_architecture_allow_list(model_type: str | None, refused: bool, tmp_path: Path) -> None:
    from evalsuite.config import VariantCfg

    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type} if model_type else {}))
    variants = (VariantCfg("r", "rtn"), VariantCfg("a", "awq"))
    if refused:
        with pytest.raises(UsageError, match=f"variant 'a': AWQ supports llama, mistral, qwen2 models, not "
                                             f"'{model_type or 'unknown'}'"):
            check_variants(variants, tmp_path)
    else:
        check_variants(variants, tmp_path)
    check_variants(variants[:1], tmp_path)  # RTN is never refused for the architecture


def test_cli_refuses_awq_on_gemma_before_model_work(tmp_path: Path, data_dir: Path) -> None:
    """Hostile case, as a user runs it: exit 2, one line, no traceback, nothing built or written."""
    model = save_tiny_gemma(tmp_path / "tiny-gemma")
    suite = tmp_path / "suite.toml"
    suite.write_text(f'[model]\nsource = "{model}"\n[eval]\ndatasets = ["wikitext2"]\nwindow = 64\nstride = 32\n'
                     'max_tokens = 200\nrunners = ["ort"]\n[[variants]]\nname = "awq-b32"\nmethod = "awq"\n'
                     '[thresholds]\nmax_rel_dppl = 1.0\n')
    cache, out = tmp_path / "cache", tmp_path / "r.json"
    env = {**os.environ, "EVALSUITE_CACHE": str(cache), "EVALSUITE_DATA_DIR": str(data_dir)}
    proc = subprocess.run([sys.executable, "-m", "evalsuite", "eval", "--config", str(suite), "--json-out", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "evalsuite: error: variant 'awq-b32': AWQ supports llama, mistral, qwen2 models, not 'gemma' (its scale "
        "fold would change the model); use method = 'rtn' or 'hqq'"]
    assert not out.exists()
    assert not (cache / "onnx").exists() and not (cache / "awq").exists()


V = "[[variants]]\nname = 'q'\n"
THRESH = "[thresholds]\nmax_rel_dppl = 1.0\n"


@pytest.mark.parametrize(("text", "match"), [
    pytest.param(V + "method = 'hqq'\nsymmetric = false\n", "HQQ cannot quantize the embedding", id="hqq-embedding"),
    pytest.param(V + "method = 'hqq'\nembedding = 'fp32'\n", "HQQ quantizes with zero points", id="hqq-symmetric"),
    pytest.param(V + "method = 'rtn'\nembedding = 'int8'\n", "must be one of", id="embedding-value"),
    pytest.param(V + "method = 'rtn'\nsymmetric = 'no'\n", "expected true or false", id="symmetric-type"),
    pytest.param(V + "method = 'gptq'\n", "must be one of", id="unknown-method"),
])
def test_bad_quant_settings_exit_2(text: str, match: str, tmp_path: Path) -> None:
    from evalsuite.config import load_suite
    from evalsuite.errors import ConfigError

    (tmp_path / "s.toml").write_text(text + THRESH)
    with pytest.raises(ConfigError, match=match):
        load_suite(tmp_path / "s.toml")


def test_quant_settings_load(tmp_path: Path) -> None:
    from evalsuite.config import load_suite

    (tmp_path / "s.toml").write_text(V + "method = 'hqq'\nsymmetric = false\nembedding = 'fp32'\nblock_size = 128\n"
                                     + THRESH)
    v = load_suite(tmp_path / "s.toml").variants[0]
    assert (v.method, v.symmetric, v.embedding, v.block_size) == ("hqq", False, "fp32", 128)


def nbits(folder: Path) -> dict[str, dict[str, object]]:
    """MatMulNBits nodes of a model: name -> {inputs: arrays, attrs}."""
    import onnx
    from onnx import numpy_helper

    from evalsuite.models.onnx_files import resolve_onnx

    model = onnx.load(str(resolve_onnx(folder)))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: {"inputs": [inits.get(i) for i in n.input[1:]],
                     "attrs": {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}}
            for n in model.graph.node if n.op_type == "MatMulNBits"}


def dequant(node: dict[str, object], symmetric: bool) -> object:
    """The [N, K] weight a MatMulNBits node computes with (HF layout)."""
    import numpy as np

    attrs = node["attrs"]
    b, scales, *zp = node["inputs"]  # type: ignore[misc]
    n, k, block = attrs["N"], attrs["K"], attrs["block_size"]  # type: ignore[index]
    kb = -(-k // block)
    codes = np.stack([b & 15, b >> 4], -1).reshape(n, kb * block).astype(np.float32)
    if symmetric:
        zero = np.full((n, kb), 8.0, np.float32)
    else:
        packed = zp[0].reshape(n, -1)
        zero = np.stack([packed & 15, packed >> 4], -1).reshape(n, -1)[:, :kb].astype(np.float32)
    return ((codes - np.repeat(zero, block, 1)) * np.repeat(scales.reshape(n, kb), block, 1))[:, :k]


def score(folder: Path) -> object:
    import numpy as np
    from test_onnx import score_stream

    from evalsuite.data.windows import plan_windows
    from evalsuite.models.ort_runner import OrtRunner

    tokens = np.random.default_rng(0).integers(0, 300, 100)
    return score_stream(OrtRunner(folder), tokens, plan_windows(100, 64, 32))


@pytest.mark.parametrize("embedding", ["quantize", "fp32"])
def test_asymmetric_rtn_is_onnxruntimes_grid_loads_and_scores(fp32_dir: Path, tiny_llama_dir: Path,
                                                              cache: Path, embedding: str) -> None:
    """Asymmetric int4 written by onnxruntime's quantizer: every MatMulNBits carries zero points and
    computes exactly grid.fake_quant(W, symmetric=False) of the fp32 weight (bit for bit); the model
    loads and scores finite NLL on CPU; the embedding policy decides the Gather."""
    import numpy as np
    import onnx
    from safetensors.torch import load_file

    from evalsuite.config import VariantCfg
    from evalsuite.quant.grid import fake_quant
    from evalsuite.quant.ort_quant import quantize_onnx

    v = VariantCfg("rtn-asym", "rtn", symmetric=False, embedding=embedding)  # type: ignore[arg-type]
    folder = quantize_onnx(fp32_dir, v, cache=cache)
    nodes = nbits(folder)
    down = next(n for name, n in nodes.items() if "layers.0/mlp/down_proj" in name)
    assert len(nodes) >= 2 * 4 + 1 and all(len(n["inputs"]) >= 3 for n in nodes.values())  # type: ignore[arg-type]
    hf = load_file(str(tiny_llama_dir / "model.safetensors"))["model.layers.0.mlp.down_proj.weight"]
    np.testing.assert_array_equal(dequant(down, symmetric=False), fake_quant(hf, 32, symmetric=False).numpy())
    assert np.isfinite(score(folder)[1:]).all()  # type: ignore[index]
    ops = {n.op_type for n in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node}
    assert ("GatherBlockQuantized" in ops) == (embedding == "quantize")


def test_symmetric_grid_is_the_same_through_builder_and_quantizer(fp32_dir: Path, tiny_llama_dir: Path,
                                                                  cache: Path) -> None:
    """Symmetric RTN: the builder's MatMulNBits weights equal onnxruntime's quantizer's, bit for bit."""
    import numpy as np

    from evalsuite.config import VariantCfg
    from evalsuite.models.onnx_build import build_onnx
    from evalsuite.quant.ort_quant import quantize_onnx
    from evalsuite.quant.variants import builder_options

    v = VariantCfg("rtn", "rtn")
    built = nbits(build_onnx(tiny_llama_dir, "int4", builder_options(v), cache=cache))
    ours = nbits(quantize_onnx(fp32_dir, v, cache=cache))
    assert set(built) == set(ours)
    for name in built:
        np.testing.assert_array_equal(dequant(built[name], True), dequant(ours[name], True))


def test_hqq_builds_and_scores(fp32_dir: Path, cache: Path) -> None:
    """HQQ through onnxruntime's HQQWeightOnlyQuantConfig: float zero points, configured accuracy level,
    finite NLL; its dequantized weights differ from RTN's (another method, not a relabelled RTN)."""
    import numpy as np

    from evalsuite.config import VariantCfg
    from evalsuite.quant.ort_quant import quantize_onnx

    v = VariantCfg("hqq", "hqq", symmetric=False, embedding="fp32", accuracy_level=1)
    nodes = nbits(quantize_onnx(fp32_dir, v, cache=cache))
    zp = next(iter(nodes.values()))["inputs"][2]  # type: ignore[index]
    assert zp is not None and zp.dtype == np.float32
    assert all(n["attrs"]["accuracy_level"] == 1 for n in nodes.values())  # type: ignore[index]
    assert np.isfinite(score(quantize_onnx(fp32_dir, v, cache=cache))[1:]).all()  # type: ignore[index]


def test_hqq_dequantized_twin_matches_the_native_graph(fp32_dir: Path, cache: Path) -> None:
    """HQQ's float zero points have no pre-packed onnxruntime kernel (the weight is dequantized on every
    call), so lanes score a twin with those weights dequantized once. Its weights are the kernel's own
    formula (q * s + (-s * z), checked against a numpy reference), its MatMulNBits with uint8 zero points
    stay, and its scores match the native graph within GEMM rounding (allclose 1e-4 nats per token: fp32
    GEMMs of different blocking on any CPU; measured ~1e-6 here)."""
    import numpy as np

    from evalsuite.config import VariantCfg
    from evalsuite.quant.dequant_twin import dequantize, dequantized_twin, needs_twin
    from evalsuite.quant.ort_quant import quantize_onnx

    native = quantize_onnx(fp32_dir, VariantCfg("hqq", "hqq", symmetric=False, embedding="fp32"), cache=cache)
    rtn = quantize_onnx(fp32_dir, VariantCfg("r", "rtn", symmetric=False, embedding="fp32"), cache=cache)
    assert needs_twin(native) and not needs_twin(rtn)  # uint8 zero points are pre-packed: left as they are
    twin, info = dequantized_twin(native, cache=cache)
    assert info["of"] == native.name and 0 <= info["max_abs_dlogprob_vs_native"] <= info["tolerance"]
    assert dequantized_twin(native, cache=cache)[0] == twin  # cached
    assert not nbits(twin)
    q, s, z = next(iter(nbits(native).values()))["inputs"]  # type: ignore[misc]
    n_rows, blocks, half = q.shape
    scale, zero = s.reshape(n_rows, blocks), z.reshape(n_rows, blocks)
    k = blocks * half * 2
    ref = np.empty((n_rows, k), np.float32)
    for row in range(n_rows):
        for col in range(k):
            b = col // (2 * half)
            byte = q[row, b, (col % (2 * half)) // 2]
            nibble = np.float32((byte >> 4) if col % 2 else (byte & 15))
            ref[row, col] = nibble * scale[row, b] + np.float32(-scale[row, b] * zero[row, b])
    np.testing.assert_array_equal(dequantize(q, s, z, k), ref)
    np.testing.assert_allclose(score(twin), score(native), rtol=0, atol=1e-4)  # type: ignore[arg-type]


def test_tied_embedding_is_materialized_and_quantized() -> None:
    """Tied weights (the builder feeds the Gather from a Transpose of lm_head's weight): the table is
    made a constant so the Gather can be quantized; the lookup matches the fp32 one to int4 precision."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    from evalsuite.quant.ort_quant import materialize_embedding

    w = np.random.default_rng(0).normal(size=(64, 40)).astype(np.float32)  # lm_head [hidden, vocab]
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
             helper.make_node("Gather", ["wt", "ids"], ["emb"]),
             helper.make_node("MatMul", ["emb", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, [5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [5, 40])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert materialize_embedding(model)
    assert [n.op_type for n in model.graph.node] == ["Gather", "MatMul"]
    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, op_types_to_quantize=("MatMul", "Gather"),
                                          quant_axes=(("MatMul", 0), ("Gather", 1)))
    q = MatMulNBitsQuantizer(model, algo_config=config)
    q.process()
    assert {n.op_type for n in q.model.model.graph.node} == {"GatherBlockQuantized", "MatMulNBits"}
    ids = np.array([0, 3, 7, 39, 12])
    sess = ort.InferenceSession(q.model.model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"ids": ids})[0]
    want = w.T[ids] @ w
    assert np.abs(got - want).max() < 0.2 * np.abs(want).max()  # int4 on both sides: coarse, not garbage


def test_bench_reports_awq_search_seconds_per_layer(tmp_path: Path) -> None:
    from evalsuite.bench import awq_search_timing, verdicts

    (tmp_path / "awq_info.json").write_text(json.dumps({
        "search_seconds": 12.0, "layer_seconds": [1.0, 2.0, 3.0],
        "calibration": {"dataset": "wikitext2:validation", "samples": 16, "seq_len": 512, "seed": 0}}))
    timing = awq_search_timing(tmp_path)
    assert timing["seconds_per_layer"] == 2.0 and timing["layers"] == 3
    b = {"cpu": {"model": "x", "cores": 2, "isa": []}, "overhead": {"ratio": 1.0}, "runners": [],
         "rss_long": {}, "awq_search": [{"variant": "awq", **timing}]}
    assert "AWQ search awq: 12 s, 3 layers, 2.00 s per layer (max 3.00), 16 x 512 calibration tokens" in \
        "\n".join(verdicts(b))


@pytest.mark.parametrize("method", ["rtn", "hqq"])
def test_lm_head_exclude_is_honoured_by_the_quantizer(fp32_dir: Path, cache: Path, method: str) -> None:
    import onnx

    from evalsuite.config import VariantCfg
    from evalsuite.quant.ort_quant import LM_HEAD, quantize_onnx

    v = VariantCfg("x", method, symmetric=False, embedding="fp32", lm_head="exclude")  # type: ignore[arg-type]
    graph = onnx.load(str(quantize_onnx(fp32_dir, v, cache=cache) / "model.onnx"), load_external_data=False).graph
    ops = {n.name: n.op_type for n in graph.node}
    assert ops[LM_HEAD] == "MatMul"
    assert sum(op == "MatMulNBits" for op in ops.values()) >= 8  # the decoder's linears are still int4
