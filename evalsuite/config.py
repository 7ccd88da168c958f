"""The suite config: typed frozen dataclasses loaded strictly from TOML (see tomlio.py).

The default suite ships inside the package (`default_suite.toml`); `--config FILE` replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import tomlio
from .model_source import DEFAULT_MODEL

DEFAULT_SUITE = Path(__file__).resolve().parent / "default_suite.toml"
RunnerName = Literal["torch", "ort"]


@dataclass(frozen=True)
class ModelCfg:
    source: str = DEFAULT_MODEL
    trust_remote_code: bool = False


@dataclass(frozen=True)
class EvalCfg:
    datasets: tuple[str, ...] = ("wikitext2", "ptb")
    window: int = 512
    stride: int = 256
    max_tokens: int | None = None  # absent = whole split
    bos: bool = False
    runners: tuple[RunnerName, ...] = ("torch", "ort")
    provider: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets must name at least one dataset")
        if self.max_tokens is not None and self.max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2, got {self.max_tokens}")


@dataclass(frozen=True)
class Calibration:
    dataset: str = "wikitext2:validation"  # never a test split
    samples: int = 32
    seq_len: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset.endswith(":test") or ":" not in self.dataset:
            raise ValueError(f"calibration dataset must name a non-test split like "
                             f"'wikitext2:validation' or 'ptb:train', got '{self.dataset}'")
        if self.samples < 1 or self.seq_len < 2:
            raise ValueError("calibration samples must be >= 1 and seq_len >= 2")


@dataclass(frozen=True)
class VariantCfg:
    name: str
    method: Literal["rtn", "awq"]
    bits: Literal[4] = 4
    block_size: Literal[16, 32, 64, 128, 256] = 32
    accuracy_level: Literal[0, 1, 2, 3, 4] = 4
    lm_head: Literal["quantize", "exclude"] = "quantize"
    calibration: Calibration = field(default_factory=Calibration)


@dataclass(frozen=True)
class Suite:
    model: ModelCfg = field(default_factory=ModelCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    variants: tuple[VariantCfg, ...] = ()

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique, '{dupes[0]}' repeats")


def load_suite(path: Path | None) -> Suite:
    path = path or DEFAULT_SUITE
    return tomlio.load(Suite, tomlio.read_toml(path), path.name)
