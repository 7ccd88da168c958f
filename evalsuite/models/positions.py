"""How many positions a model has, read before any model work: from an HF folder's `config.json`, a
given ONNX folder's `genai_config.json`, or a GGUF file's header (`<arch>.context_length`).

Every file is read as hostile: malformed JSON or a broken GGUF header is a ModelError (exit 2).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from evalsuite.errors import ModelError
from evalsuite.jsonio import read_json

HF_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
MAX_STRING = 1 << 24  # a GGUF metadata string (e.g. a tokenizer's chat template) is far shorter


def read_config(hf_dir: Path) -> dict[str, Any]:
    """An HF folder's config.json as an object (ModelError: one line, exit 2)."""
    doc: dict[str, Any] = read_json(Path(hf_dir) / "config.json", ModelError, "model config",
                                    "give a Hugging Face model folder with a valid config.json", dict)
    return doc


def genai_config(onnx_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = read_json(Path(onnx_dir) / "genai_config.json", ModelError, "GenAI config",
                                    "restore the ONNX folder's genai_config.json", dict)
    return doc


def limits(hf_dir: Path | None, onnx_dir: str | None = None, gguf: Path | None = None) -> list[tuple[int, str]]:
    """(positions, where) for every source that states them."""
    out: list[tuple[int, str]] = []
    if hf_dir is not None and (Path(hf_dir) / "config.json").is_file():
        doc = read_config(hf_dir)
        out += [(doc[k], f"config.json {k}") for k in HF_KEYS if _count(doc.get(k))]
    if onnx_dir and (Path(onnx_dir).expanduser() / "genai_config.json").is_file():
        doc = genai_config(Path(onnx_dir).expanduser())
        model = doc.get("model", doc)
        if isinstance(model, dict) and _count(model.get("context_length")):
            out.append((model["context_length"], "genai_config.json context_length"))
    if gguf is not None:
        length = gguf_context_length(gguf)
        if length is not None:
            out.append((length, f"{gguf.name} context_length"))
    return out


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_lengths(lengths: list[tuple[int, str, str]], positions: list[tuple[int, str]]) -> None:
    """Refuse any (length, what, option) longer than the model's positions: past them a model scores
    garbage (or a RoPE past its range) without failing."""
    for length, what, option in lengths:
        for limit, where in positions:
            if length > limit:
                raise ModelError(f"{what} {length} is longer than the model's {limit} positions ({where}); "
                                 f"use {option} {limit} or less")


def gguf_context_length(path: Path) -> int | None:
    """`<general.architecture>.context_length` from a GGUF header, None when the header has none."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ValueError("bad magic bytes")
            version = _read(fh, "<I")
            count_fmt = "<I" if version == 1 else "<Q"
            _read(fh, count_fmt)  # tensors
            values: dict[str, Any] = {}
            for _ in range(min(_read(fh, count_fmt), 1 << 16)):
                key = _string(fh, count_fmt)
                values[key] = _value(fh, _read(fh, "<I"), count_fmt)
                arch = values.get("general.architecture")
                if isinstance(arch, str) and f"{arch}.context_length" in values:
                    length = values[f"{arch}.context_length"]
                    return int(length) if isinstance(length, int) and length > 0 else None
    except (OSError, ValueError, struct.error, UnicodeDecodeError, OverflowError) as err:
        raise ModelError(f"cannot read the GGUF header of {path} ({err}); give a valid .gguf file") from None
    return None


def _read(fh: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("truncated header")
    return struct.unpack(fmt, data)[0]


def _string(fh: BinaryIO, count_fmt: str) -> str:
    n = _read(fh, count_fmt)
    if n > MAX_STRING:
        raise ValueError(f"metadata string of {n} bytes")
    data = fh.read(n)
    if len(data) != n:
        raise ValueError("truncated header")
    return data.decode("utf-8")


def _value(fh: BinaryIO, kind: int, count_fmt: str) -> Any:
    if kind in _SCALARS:
        return _read(fh, _SCALARS[kind])
    if kind == 8:
        return _string(fh, count_fmt)
    if kind == 9:  # array: skipped (token lists), never needed here
        item, n = _read(fh, "<I"), _read(fh, count_fmt)
        if item in _SCALARS:
            fh.seek(struct.calcsize(_SCALARS[item]) * n, 1)
            return None
        for _ in range(n):
            _value(fh, item, count_fmt)
        return None
    raise ValueError(f"unknown metadata type {kind}")
