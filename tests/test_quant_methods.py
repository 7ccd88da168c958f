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
