"""Inputs that used to fail late (after minutes of scoring) or with an 'internal error': each one
now gives one line on stderr and exit 2 before any scoring (no journal is written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.cli import main

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "baselines" / "smollm2-135m-instruct.json"
SUITE_TOML = {
    "sample-windows-0": "[parity]\nsample_windows = 0\n",
    "threads--1": "[eval]\nthreads = -1\n",
    "markup-name": "[[variants]]\nname = '[/x]'\nmethod = 'rtn'\n[thresholds]\nmax_kld_mean = 1.0\n",
}


def results_with(tmp: Path, edit: str) -> Path:
    doc = json.loads(BASELINE.read_text())
    if edit == "missing-key":
        del doc["runs"][0]["ppl"]
    else:
        doc["runs"][1]["metrics"]["kld_mean"] = "0.01"
    path = tmp / f"{edit}.json"
    path.write_text(json.dumps(doc))
    return path


CASES = [
    pytest.param(["--max-tokens", "2"], "at least 3", id="max-tokens-2"),
    pytest.param(["--max-tokens", "100", "--window", "32", "--stride", "12", "--shard", "7/8"],
                 "--shard 7/8 leaves 0 token(s) of ptb to score (7 windows)", id="shard-past-windows"),
    pytest.param(["--config", "{tmp}/sample-windows-0.toml"], "sample_windows must be at least 1", id="sample-0"),
    pytest.param(["--config", "{tmp}/threads--1.toml"], "threads must be at least 1", id="threads-neg"),
    pytest.param(["--config", "{tmp}/markup-name.toml"], "may hold only letters", id="markup-name"),
    pytest.param(["--plot", "{tmp}/a-file"], "is a file, not a folder", id="plot-is-file"),
    pytest.param(["--json-out", "{tmp}"], "is a folder", id="json-out-is-dir"),
    # A path is never looked up as a dataset name; it must name an existing dataset TOML (whose data
    # files are relative paths beside it, no '..').
    pytest.param(["--dataset", "../../x"], "dataset config", id="dataset-path"),
    pytest.param(["cache=file"], "is not usable", id="cache-is-file"),
    pytest.param(["cache=under-file"], "is not usable", id="cache-under-file"),
    pytest.param(["cache=onnx-file"], "a file blocks the folder", id="cache-entry-blocked"),
    pytest.param(["gate", "--results", "{tmp}/missing-key.json"], "runs[0] has no 'ppl'", id="results-missing-key"),
    pytest.param(["gate", "--results", "{tmp}/string.json"], "runs[1].metrics.kld_mean is '0.01'",
                 id="results-string-number"),
    pytest.param(["gate", "summary=dir", "--results", str(BASELINE)], "$GITHUB_STEP_SUMMARY", id="summary-is-dir"),
]


@pytest.mark.parametrize(("argv", "message"), CASES)
def test_exit_2_before_scoring(argv: list[str], message: str, tiny_llama_dir: Path, data_dir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    for name, text in SUITE_TOML.items():
        (tmp_path / f"{name}.toml").write_text(text)
    (tmp_path / "a-file").write_text("x")
    results_with(tmp_path, "missing-key"), results_with(tmp_path, "string")
    args = [a.format(tmp=tmp_path) for a in argv]
    if args and args[0] == "cache=file":
        monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "a-file"))
    elif args and args[0] == "cache=under-file":
        monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "a-file" / "cache"))
    elif args and args[0] == "cache=onnx-file":
        cache.mkdir()
        (cache / "onnx").write_text("x")
    if "summary=dir" in args:
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))
    args = [a for a in args if "=" not in a or a.startswith("-")]
    if not args or args[0] != "gate":
        args = ["eval", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset", "ptb", *args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    # Plain progress lines ("[eval] stage: start") may precede the one error line in a log.
    assert len([ln for ln in err.strip().splitlines() if not ln.startswith("[")]) == 1, err
    assert not (cache / "journal").exists()  # nothing was scored


def test_dataset_files_stay_inside_the_data_dir() -> None:
    import tomllib

    from evalsuite import tomlio
    from evalsuite.data.corpora import DatasetSpec
    from evalsuite.errors import ConfigError

    spec = tomllib.loads((REPO / "datasets_cfg" / "ptb.toml").read_text())
    tomlio.load(DatasetSpec, spec, "ptb.toml")
    for bad in ("/etc/services", "../../etc/services", "ptb/../../x"):
        split = next(iter(spec["splits"]))
        hostile = {**spec, "splits": {**spec["splits"], split: {**spec["splits"][split], "file": bad}}}
        with pytest.raises(ConfigError, match="inside the data dir"):
            tomlio.load(DatasetSpec, hostile, "x.toml")

