"""`evalsuite validate` and the checks every command runs before model work; --help contents;
`gate --results` honouring --plot and --reference; packaged reference files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gate import GOOD, SUITE

from evalsuite.cli import main
from evalsuite.config import load_suite

VALIDATE = [
    pytest.param([], 0, "is valid", id="default-suite"),
    pytest.param(["--model", "{tiny}", "--no-baseline"], 0, "Hugging Face folder", id="tiny-folder"),
    pytest.param(["--provider", "cudaa"], 2, "execution provider cudaa is not available", id="bad-provider"),
    pytest.param(["--dataset", "wikitext3"], 2, "unknown dataset 'wikitext3'", id="unknown-dataset"),
    pytest.param(["--model", "{tmp}/no-model"], 2, "model not found", id="missing-model"),
    pytest.param(["--model", "{tmp}/fake.gguf"], 2, "not a GGUF file", id="not-a-gguf"),
    pytest.param(["--baseline", "{tmp}/none.json"], 2, "baseline file not found", id="missing-baseline"),
    pytest.param(["--baseline", "{tmp}/fake.gguf"], 2, "is not valid JSON", id="unreadable-baseline"),
    pytest.param(["--window", "8", "--stride", "9"], 2, "stride must be between", id="bad-stride"),
    pytest.param(["--config", "{tmp}/typo.toml"], 2, "unknown key 'strid'", id="unknown-key"),
    pytest.param(["--reference", "{tmp}/none.json"], 2, "reference file not found", id="missing-reference"),
]


@pytest.fixture
def paths(tmp_path: Path, tiny_llama_dir: Path) -> dict[str, str]:
    (tmp_path / "typo.toml").write_text("[eval]\nstrid = 3\n")
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    return {"tmp": str(tmp_path), "tiny": str(tiny_llama_dir)}


@pytest.mark.parametrize(("argv", "code", "message"), VALIDATE)
def test_validate(argv: list[str], code: int, message: str, paths: dict[str, str], data_dir: Path,
                  capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    assert main(["validate", "--data-dir", str(data_dir), *(a.format(**paths) for a in argv)]) == code
    out, err = capsys.readouterr()
    assert message in (out if code == 0 else err)
    if code:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    else:
        assert "sha256 ok" in out and "nothing was scored" in out
    assert not (tmp_path / "cache").exists()  # no export, build or token cache: no model work


@pytest.mark.parametrize("command", ["eval", "gate", ["baseline", "update", "--out", "{tmp}/b.json"]],
                         ids=["eval", "gate", "baseline-update"])
def test_bad_provider_fails_before_model_work(command: str | list[str], paths: dict[str, str], data_dir: Path,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    argv = [command] if isinstance(command, str) else [a.format(**paths) for a in command]
    argv += ["--model", paths["tiny"], "--provider", "cudaa", "--data-dir", str(data_dir)]
    assert main(argv + (["--no-baseline"] if argv[0] == "gate" else [])) == 2
    assert "cudaa is not available" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_missing_plot_extra_fails_at_startup(paths: dict[str, str], data_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    assert main(["eval", "--model", paths["tiny"], "--data-dir", str(data_dir), "--plot", str(tmp_path)]) == 2
    assert "pip install 'evalsuite[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_gate_results_honours_plot_reference_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the project folder: the Phi-3 reference resolves from the package (or project)."""
    (tmp_path / "s.toml").write_text(SUITE)
    (tmp_path / "r.json").write_text(json.dumps(GOOD))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    code = main(["gate", "--config", "s.toml", "--results", "r.json", "--plot", "plots", "--markdown", "g.md",
                 "--junit", "j.xml", "--reference", "baselines/phi3-mini-published.json"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Reference" in out and "phi" in out.lower()
    assert (tmp_path / "plots" / "quality.png").stat().st_size > 1000
    assert "![quality](plots/quality.png)" in (tmp_path / "g.md").read_text()
    assert (tmp_path / "j.xml").is_file()


@pytest.mark.parametrize("argv", [["eval"], ["gate"], ["validate"], ["bench"], ["merge"], ["baseline", "update"]],
                         ids=lambda a: "-".join(a))
def test_help_teaches(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    examples = out.split("examples:")[1].split("exit codes:")[0]
    assert len([ln for ln in examples.splitlines() if ln.strip().startswith("evalsuite")]) == 2
    for text in ("exit codes:", "  2 ", "143", "EVALSUITE_CACHE", "EVALSUITE_DATA_DIR", "EVALSUITE_DEBUG"):
        assert text in out, text
    if argv[0] in ("eval", "gate", "validate"):
        flat = " ".join(out.split())
        ev = load_suite(None).eval  # the packaged default suite
        for default in (f"[eval] window; default suite: {ev.window}", f"[eval] stride; default suite: {ev.stride}",
                        f"[eval] max_tokens; default suite: {ev.max_tokens}"):
            assert default in flat, default
