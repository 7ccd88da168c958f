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
def data_dir() -> Path:
    """The real corpora beside the repo (../shared/data) or $EVALSUITE_DATA_DIR."""
    path = Path(os.environ.get("EVALSUITE_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "wikitext-2-raw" / "wiki.test.raw").is_file():
        pytest.fail(f"real data not found at {path}; set EVALSUITE_DATA_DIR")
    return path
