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
