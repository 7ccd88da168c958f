"""Config normaliser before the ONNX builder (models/hf_config.py): one test per translated field,
the source folder untouched, the copy in the cache. Synthetic configs: exact."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from evalsuite.errors import ModelError
from evalsuite.models.hf_config import builder_input, config_changes, normalise

GEMMA3_ROPE = {"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
               "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}
LONGROPE = {"rope_type": "longrope", "rope_theta": 10_000.0, "short_factor": [1.0, 1.5], "long_factor": [2.0, 4.0],
            "original_max_position_embeddings": 64}


def test_quantization_config_null_is_dropped() -> None:
    out, changes = normalise({"quantization_config": None, "hidden_size": 8})
    assert out == {"hidden_size": 8}
    assert changes == ["dropped quantization_config: null"]


def test_a_real_quantization_config_is_kept() -> None:
    cfg = {"quantization_config": {"quant_method": "awq", "bits": 4}}
    assert normalise(cfg) == (cfg, [])


def test_per_layer_type_rope_parameters_are_flattened() -> None:
    out, changes = normalise({"rope_parameters": GEMMA3_ROPE, "sliding_window": 512})
    assert out["rope_parameters"] == {"rope_type": "default", "rope_theta": 1_000_000.0,
                                      "rope_local_base_freq": 10_000.0}
    assert out["rope_theta"] == 1_000_000.0
    assert out["rope_local_base_freq"] == 10_000.0
    assert out["sliding_window"] == 512
    assert len(changes) == 2 and "full_attention" in changes[0] and "rope_local_base_freq" in changes[1]


def test_a_single_layer_type_is_flattened_without_local_frequency() -> None:
    out, _ = normalise({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                               "rope_theta": 1e6}}})
    assert out["rope_parameters"] == {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}
    assert "rope_local_base_freq" not in out


@pytest.mark.parametrize("rope, match", [
    ({"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_type": "linear", "factor": 2.0,
                                                                    "rope_theta": 1e4}}, "sliding-attention"),
    ({"full_attention": {"rope_theta": 1e6}, "chunked_attention": {"rope_theta": 1e4}}, "chunked_attention"),
    ({"full_attention": {"rope_type": "default"}}, "without rope_theta"),
], ids=["scaled-local-layers", "unknown-layer-type", "no-theta"])
def test_untranslatable_rope_is_refused(rope: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        normalise({"rope_parameters": rope})


def test_longrope_gets_the_legacy_type_key() -> None:
    out, changes = normalise({"rope_parameters": dict(LONGROPE), "original_max_position_embeddings": 64})
    assert out["rope_parameters"]["type"] == "longrope"
    assert changes == ["rope_parameters.type = 'longrope' (legacy key the builder reads)"]


def test_longrope_original_positions_are_copied_to_the_top_level() -> None:
    out, changes = normalise({"rope_parameters": dict(LONGROPE)})
    assert out["original_max_position_embeddings"] == 64
    assert any("original_max_position_embeddings = 64" in c for c in changes)


def test_a_transformers5_llama_config_needs_nothing() -> None:
    cfg = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "quantization_config": {"bits": 4}}
    assert normalise(cfg) == (cfg, [])


def _folder(tmp_path: Path, config: dict[str, Any]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(config))
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "tokenizer.json").write_text("{}")
    return src


def test_builder_reads_a_normalised_copy_and_the_source_is_untouched(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"quantization_config": None, "rope_parameters": GEMMA3_ROPE})
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in src.iterdir()}
    cache = tmp_path / "cache"
    copy = builder_input(src, cache)
    assert copy != src and cache in copy.parents
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in src.iterdir()} == before
    cfg = json.loads((copy / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["rope_local_base_freq"] == 10_000.0
    assert (copy / "model.safetensors").resolve() == (src / "model.safetensors").resolve()
    assert (copy / "model.safetensors").read_bytes() == b"weights"
    assert builder_input(src, cache) == copy  # reused
    assert len(config_changes(src)) == 3


def test_nothing_to_translate_means_the_source_folder_itself(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"rope_parameters": {"rope_type": "default", "rope_theta": 1e4}})
    assert builder_input(src, tmp_path / "cache") == src
    assert not (tmp_path / "cache").exists()


def test_unreadable_config_is_a_model_error(tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        builder_input(src, tmp_path / "cache")


def test_normalised_copy_of_a_cache_entry_survives_moving_the_cache(tmp_path: Path) -> None:
    """A GGUF export lives in the cache: its normalised copy links relative to it (evalsuite prepare)."""
    import shutil

    cache = tmp_path / "a"
    (cache / "models").mkdir(parents=True)
    src = _folder(cache / "models", {"quantization_config": None, "rope_parameters": GEMMA3_ROPE})
    copy = builder_input(src, cache)
    assert not Path(os.readlink(copy / "model.safetensors")).is_absolute()
    shutil.move(str(cache), tmp_path / "b")
    moved = builder_input(tmp_path / "b" / "models" / src.name, tmp_path / "b")
    assert moved.name == copy.name and (moved / "model.safetensors").read_bytes() == b"weights"
