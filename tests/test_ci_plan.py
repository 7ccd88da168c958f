"""`evalsuite plan --shards N`: the matrix, cache key, shard files and commands, without model work."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from evalsuite.cli import main

SUITE = """[model]
source = "{model}"
[eval]
datasets = ["wikitext2"]
window = {window}
stride = 32
max_tokens = 600
[[variants]]
name = "rtn"
method = "rtn"
block_size = {block}
[[variants]]
name = "awq"
method = "awq"
[variants.calibration]
dataset = "wikitext2:validation"
samples = 2
seq_len = 64
[thresholds]
max_rel_dppl = {limit}
"""


def suite_file(folder: Path, model: Path, window: int = 64, block: int = 32, limit: float = 10.0) -> Path:
    path = folder / f"suite-{window}-{block}-{limit}-{model.name}.toml"
    path.write_text(SUITE.format(model=model, window=window, block=block, limit=limit))
    return path


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["plan", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def env(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    return tmp_path


def test_plan_prints_matrix_files_and_commands(tiny_llama_dir: Path, env: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from evalsuite.cli_args import build_parser

    suite = suite_file(env, tiny_llama_dir)
    doc = plan(capsys, "--shards", "3", "--config", str(suite))
    files = [f"results/shard-{i}-of-3.json" for i in range(3)]
    assert doc["shards"] == 3 and doc["shard_files"] == files
    assert [(m["index"], m["total"], m["shard"], m["results"]) for m in doc["matrix"]["include"]] == \
        [(i, 3, f"{i}/3", f) for i, f in enumerate(files)]
    assert doc["cache"]["key"].startswith("evalsuite-") and doc["cache"]["inputs"]["variants"].keys() == {"rtn", "awq"}
    cmds = doc["commands"]
    assert shlex.split(cmds["merge"]) == ["evalsuite", "merge", *files, "--json-out", "results/merged.json"]
    assert "--results results/merged.json" in cmds["gate"] and "--junit" in cmds["gate"]
    assert "--shard auto" in cmds["shard"] and "shard-{index}-of-{count}.json" in cmds["shard"]
    for line in [*cmds.values(), *(m["command"] for m in doc["matrix"]["include"])]:
        argv = shlex.split(line)
        assert argv[0] == "evalsuite"
        build_parser().parse_args(argv[1:])  # every command is one the CLI accepts
    assert not (env / "cache").exists()  # no export, build or tokenization
    assert main(["plan", "--shards", "3", "--config", str(suite), "--get", "cache.key"]) == 0
    assert capsys.readouterr().out == doc["cache"]["key"] + "\n"
    assert main(["plan", "--shards", "3", "--config", str(suite), "--get", "matrix"]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and json.loads(line) == doc["matrix"]


def test_cache_key_follows_what_decides_the_cached_entries(tiny_llama_dir: Path, env: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    def key(path: Path) -> str:
        return plan(capsys, "--shards", "2", "--config", str(path))["cache"]["key"]

    base = key(suite_file(env, tiny_llama_dir))
    assert key(suite_file(env, tiny_llama_dir)) == base
    # What only decides scoring (window, thresholds) or the matrix keeps the prepared cache.
    assert key(suite_file(env, tiny_llama_dir, window=48)) == base
    assert key(suite_file(env, tiny_llama_dir, limit=2.0)) == base
    assert plan(capsys, "--shards", "4", "--config", str(suite_file(env, tiny_llama_dir)))["cache"]["key"] == base
    # A variant setting or the model's content changes it; the model's path alone does not.
    assert key(suite_file(env, tiny_llama_dir, block=64)) != base
    moved = env / "moved-model"
    shutil.copytree(tiny_llama_dir, moved)
    assert key(suite_file(env, moved)) == base
    with open(moved / "config.json", "a") as fh:
        fh.write("\n")
    assert key(suite_file(env, moved)) != base


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--shards", "0"], "--shards must be at least 1", id="zero-shards"),
    pytest.param(["--shards", "two"], "invalid int value", id="not-a-number"),
    pytest.param([], "--shards", id="missing-shards"),
    pytest.param(["--shards", "2", "--get", "cache.nope"], "no field 'nope'", id="unknown-field"),
    pytest.param(["--shards", "2", "--config", "{tmp}/none.toml"], "none.toml", id="missing-config"),
    pytest.param(["--shards", "2", "--results-dir", ""], "--results-dir must name a folder", id="empty-dir"),
])
def test_plan_bad_input_exit_2(args: list[str], message: str, env: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *(a.format(tmp=env) for a in args)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1 and not captured.out
