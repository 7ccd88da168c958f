"""Bad input through `main(argv)`: one line on stderr, exit 2, no traceback, no result file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.cli import main

CASES = [
    pytest.param(["eval", "--dataset", "wikitext3"], "unknown dataset 'wikitext3'", id="unknown-dataset"),
    pytest.param(["eval", "--data-dir", "{tmp}/nope"], "does not exist", id="missing-data-dir"),
    pytest.param(["eval", "--data-dir", "{tmp}"], "missing data file", id="missing-data-file"),
    pytest.param(["eval", "--data-dir", "{bad}"], "sha256", id="sha-mismatch"),
    pytest.param(["eval", "--window", "0"], "window must be a positive", id="window-0"),
    pytest.param(["eval", "--stride", "0"], "stride must be between", id="stride-0"),
    pytest.param(["eval", "--window", "8", "--stride", "9"], "stride must be between", id="stride>window"),
    pytest.param(["eval", "--max-tokens", "1"], "at least 2", id="max-tokens-1"),
    pytest.param(["eval", "--model", "{tmp}/no-model"], "model not found", id="model-not-found"),
    pytest.param(["eval", "--model", "{tmp}/fake.gguf"], "not a GGUF file", id="not-a-gguf"),
    pytest.param(["eval", "--model", "{tmp}"], "no config.json", id="folder-no-config"),
    pytest.param(["eval", "--window", "abc"], "invalid int value", id="bad-int"),
    pytest.param(["eval", "--frobnicate"], "unrecognized arguments", id="unknown-flag"),
    pytest.param(["nope"], "invalid choice", id="unknown-command"),
    pytest.param(["eval", "--config", "{tmp}/bad.toml"], "malformed TOML", id="malformed-toml"),
    pytest.param(["eval", "--config", "{tmp}/typo.toml"], "unknown key 'strid'", id="unknown-key"),
    pytest.param(["eval", "--json-out", "{tmp}/no/such/dir/r.json"], "not writable", id="unwritable-out"),
    pytest.param(["eval", "--batch-size", "0"], "batch_size must be between 1 and 256", id="batch-size-0"),
    pytest.param(["eval", "--provider", "cudaa"], "cudaa is not available", id="provider-typo"),
    pytest.param(["eval", "--provider", "cuda"], "install 'evalsuite[gpu]'", id="provider-unavailable"),
    pytest.param(["eval", "--runner", "torch", "--torch-device", "cuda"], "no CUDA device", id="torch-no-cuda"),
]


@pytest.fixture
def tmp(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    (tmp_path / "bad.toml").write_text("[eval\nwindow = 3\n")
    (tmp_path / "typo.toml").write_text("[eval]\nstrid = 3\n")
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    bad = tmp_path / "bad-data"
    shutil.copytree(data_dir, bad)
    (bad / "wikitext-2-raw" / "wiki.test.raw").chmod(0o644)
    with open(bad / "wikitext-2-raw" / "wiki.test.raw", "a") as fh:
        fh.write("extra line\n")
    return {"tmp": str(tmp_path), "bad": str(bad)}


@pytest.mark.parametrize(("argv", "message"), CASES)
def test_bad_input_exit_2(
    argv: list[str], message: str, tmp: dict[str, str], data_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    out_file = tmp_path / "results.json"
    args = [a.format(**tmp) for a in argv]
    if args[0] == "eval" and "--json-out" not in args:
        args += ["--json-out", str(out_file)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not out_file.exists()


def test_help_is_fast_and_imports_no_heavy_modules() -> None:
    code = ("import sys; from evalsuite.cli import main; main(['--help']); "
            "heavy = {'torch', 'transformers', 'onnxruntime'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")


def test_help_lists_every_named_exit_code() -> None:
    """`ExitCode` is the one list of exit codes; `--help` shows each (the values are CI's interface)."""
    from evalsuite.errors import EvalsuiteError, ExitCode, ScoringError
    from evalsuite.report.help_text import EXIT_CODES

    assert [int(c) for c in ExitCode] == [0, 1, 2, 130, 143]
    assert all(f"  {int(c)} " in EXIT_CODES for c in ExitCode)
    assert EvalsuiteError.exit_code is ExitCode.USAGE and ScoringError.exit_code is ExitCode.GATE_FAILED
