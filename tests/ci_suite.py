"""A tiny-model suite for the CI-matrix tests (plan, prepare, the shipped CI examples): torch, the
ORT base and one RTN variant on a 30k-character text, so a cold `evalsuite prepare` is two ONNX builds."""

from __future__ import annotations

from pathlib import Path

SUITE = """[model]
source = "{model}"
[eval]
datasets = []
window = 64
stride = 32
max_tokens = 900
runners = ["torch", "ort"]
threads = 1
[[datasets]]
label = "wiki-valid"
text = "corpus.txt"
[[variants]]
name = "rtn"
method = "rtn"
[thresholds]
max_rel_dppl = 10.0
max_kld_mean = 10.0
[parity]
max_rel_dppl = 1e-3
"""


def write_suite(folder: Path, model: Path, data_dir: Path) -> Path:
    """`folder/suite.toml` and its `corpus.txt` (the first 30k characters of WikiText-2 validation)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (data_dir / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8")[:30_000]
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    (folder / "suite.toml").write_text(SUITE.format(model=model))
    return folder / "suite.toml"
