"""A warm ORT-only run imports neither transformers nor torch (its token streams are cached, the
vocabulary size comes from tokenizer.json), and that size equals transformers' `len(tokenizer)`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from evalsuite.models.tokenizer import LazyTokenizer


def test_vocab_size_from_tokenizer_json_equals_transformers(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    from evalsuite.models import source as model_source

    real = model_source.resolve(model_source.DEFAULT_MODEL).path
    for folder in (tiny_llama_dir, real):
        lazy = LazyTokenizer(folder)
        assert len(lazy) == len(AutoTokenizer.from_pretrained(folder)) and not lazy.loaded
        assert lazy("a b", add_special_tokens=False)["input_ids"] and lazy.loaded  # loads on first real use


def test_warm_ort_only_eval_imports_no_torch(tiny_llama_dir: Path, fp32_dir: Path, data_dir: Path,
                                             tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(f'[model]\nsource = "{tiny_llama_dir}"\nonnx = "{fp32_dir}"\n[eval]\ndatasets = ["ptb"]\n'
                     'window = 64\nstride = 32\nmax_tokens = 128\nrunners = ["ort"]\n')
    script = ("import sys\nfrom evalsuite.cli import main\n"
              f"code = main(['eval', '--config', {str(suite)!r}, '--progress', 'none',"
              f" '--data-dir', {str(data_dir)!r}])\n"
              "print(code, sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    env = {"EVALSUITE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    outs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600,
                           check=False).stdout.strip().splitlines()[-1] for _ in range(2)]
    assert outs[0].startswith("0 ") and "transformers" in outs[0]  # cold: the text was tokenized
    assert outs[1] == "0 []", outs[1]  # warm: cached tokens, nothing heavy imported
