from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny import save_tiny_llama

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HF folder (safetensors + tokenizer) of the tiny random Llama; built once per test session."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An evalsuite cache folder shared by the tests that build the tiny model's ONNX files."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def fp32_dir(tiny_llama_dir: Path, cache: Path) -> Path:
    """The tiny Llama's fp32 ONNX build (the builder runs once per test session)."""
    from evalsuite.models.onnx_build import build_onnx

    return build_onnx(tiny_llama_dir, "fp32", cache=cache)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real corpora beside the repo (../shared/data) or $EVALSUITE_DATA_DIR."""
    path = Path(os.environ.get("EVALSUITE_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "wikitext-2-raw" / "wiki.test.raw").is_file():
        pytest.fail(f"real data not found at {path}; set EVALSUITE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def ci_suite(tiny_llama_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CI-matrix tests' tiny suite (tests/ci_suite.py)."""
    from ci_suite import write_suite

    return write_suite(tmp_path_factory.mktemp("ci-suite"), tiny_llama_dir, data_dir)


@pytest.fixture(scope="session")
def prepared_cache(ci_suite: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache filled by `evalsuite prepare` for `ci_suite` (export, builds, tokens; nothing scored)."""
    from evalsuite.cli import main

    folder = tmp_path_factory.mktemp("prepared") / "cache"
    before = {k: os.environ.get(k) for k in ("EVALSUITE_CACHE", "EVALSUITE_DATA_DIR")}
    os.environ.update(EVALSUITE_CACHE=str(folder), EVALSUITE_DATA_DIR=str(data_dir))
    try:
        assert main(["prepare", "--config", str(ci_suite), "--quiet"]) == 0
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return folder
