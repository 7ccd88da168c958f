"""The bench's peers rows: llama-perplexity's output read and timed (a stand-in binary with its
output format), lm-eval's child failing, and peers that are absent named as not measured."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from evalsuite import bench_peers


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_llama_perplexity_output_is_read(tmp_path: Path) -> None:
    fake = _script(tmp_path / "llama-perplexity", "import sys\nargs = sys.argv\n"
                   "assert args[args.index('-c') + 1] == '512' and args[args.index('--chunks') + 1] == '4'\n"
                   "print('[1]25.1,[2]26.0,[3]24.9,[4]25.3')\nprint('Final estimate: PPL = 25.3117 +/- 0.41', "
                   "file=sys.stderr)\n")
    out = bench_peers.llama_perplexity(str(fake), tmp_path / "m.gguf", "some text", 2, 512, 4)
    assert out["ppl"] == 25.3117 and out["scored_tokens"] == 4 * 256 and out["tokens_per_s"] > 0


@pytest.mark.parametrize("body", ["import sys\nsys.exit(3)\n", "print('no estimate here')\n"], ids=["exit", "no-ppl"])
def test_llama_perplexity_failure_is_an_error_entry(tmp_path: Path, body: str) -> None:
    out = bench_peers.llama_perplexity(str(_script(tmp_path / "llama", body)), tmp_path / "m.gguf", "t", 2, 512, 4)
    assert out["error"].startswith("llama-perplexity failed") and "seconds" not in out


def test_absent_peers_are_named_not_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bench_peers.LMEVAL_ENV, raising=False)
    monkeypatch.setenv(bench_peers.LLAMA_ENV, str(tmp_path / "no-such-binary"))
    out = bench_peers.peers(tmp_path, "text", "text", 2, 512, 4)
    assert "not measured" in out["lmeval_rolling"]["error"] and "not measured" in out["llama"]["error"]
    monkeypatch.setenv(bench_peers.LLAMA_ENV, str(_script(tmp_path / "llama", "print(1)\n")))
    monkeypatch.setenv(bench_peers.LLAMA_GGUF_ENV, str(tmp_path / "missing.gguf"))
    assert bench_peers.LLAMA_GGUF_ENV in bench_peers.peers(tmp_path, "t", "t", 2, 512, 4)["llama"]["error"]


def test_a_failing_lmeval_child_is_an_error_entry(tmp_path: Path) -> None:
    python = _script(tmp_path / "python", "import sys\nprint('ModuleNotFoundError: lm_eval', file=sys.stderr)\n"
                     "sys.exit(1)\n")
    out = bench_peers.lmeval_rolling(str(python), tmp_path, "text", 2, 512)
    assert out["error"] == "lm-eval child failed (exit 1): ModuleNotFoundError: lm_eval"


def test_peer_lines_are_ratios() -> None:
    p = {"window": 512, "lmeval_rolling": {"tokens_per_s": 100.0, "tokens": 2048},
         "llama": {"gguf": "m.gguf", "seconds": 20.0, "ppl": 25.0, "chunks": 20}}
    lines = bench_peers.peer_lines(p, {"ORT base": 300.0, "torch reference": 150.0}, 12.0)
    assert "ORT base: 300 tok/s = 3.00 x lm-eval" in lines[1] and "1.50 x lm-eval" in lines[2]
    assert "= 0.60 x its time" in lines[3]
