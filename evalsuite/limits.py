"""Perplexity thresholds of the suite config: `[thresholds]`, its `.variants.NAME` and their
`.datasets.D` tables (typed, frozen; `config.py` loads them). `max_*`: the value must be <= it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal


@dataclass(frozen=True)
class Limits:
    """Thresholds of one variant x dataset. `max_*`: the value must be <= it. Absent: not checked."""

    max_abs_dppl: float | None = None  # PPL(variant) - PPL(ORT base), in PPL units
    max_rel_dppl: float | None = None  # (PPL(variant) - PPL(ORT base)) / PPL(ORT base)
    max_kld_mean: float | None = None  # mean KL(base || variant) per token, nats
    min_same_top: float | None = None  # share of tokens whose argmax matches the base's
    max_top1_drop: float | None = None  # top-1 accuracy(base) - top-1 accuracy(variant), a fraction
    # How ΔPPL checks use the paired 95% interval: "point" (default) compares the estimate;
    # "lower" fails only when even the lower bound exceeds the limit (significant degradation);
    # "upper" fails unless the upper bound is within the limit (strict: must be shown to pass).
    interval: Literal["point", "lower", "upper"] | None = None

    def __post_init__(self) -> None:
        for name in ("max_abs_dppl", "max_kld_mean"):
            check_range(name, getattr(self, name), 0.0, None, "a non-negative number")
        check_range("max_rel_dppl", self.max_rel_dppl, 0.0, None, "a fraction > 0 (0.05 = 5 %)", open_low=True)
        for name in ("min_same_top", "max_top1_drop"):
            check_range(name, getattr(self, name), 0.0, 1.0, "a fraction in [0, 1]")

    def own(self) -> Limits:
        """Just the limit values (subclasses add nested tables)."""
        return Limits(**{f.name: getattr(self, f.name) for f in fields(Limits)})

    def merged(self, over: Limits | None) -> Limits:
        """`over`'s values where set, else ours."""
        if over is None:
            return self.own()
        mine, theirs = self.own(), over.own()
        return Limits(**{f.name: getattr(theirs, f.name) if getattr(theirs, f.name) is not None
                         else getattr(mine, f.name) for f in fields(Limits)})

    def any(self) -> bool:
        """True when at least one limit is set (`interval` only says how ΔPPL limits are read)."""
        return any(getattr(self, f.name) is not None for f in fields(Limits) if f.name != "interval")


def check_range(name: str, value: float | None, low: float, high: float | None, what: str,
                 open_low: bool = False) -> None:
    if value is None:
        return
    bad = value != value or value < low or (open_low and value == low) or (high is not None and value > high)
    if bad:
        raise ValueError(f"{name} must be {what}, got {value}")


@dataclass(frozen=True)
class VariantLimits(Limits):
    datasets: dict[str, Limits] = field(default_factory=dict)

    def for_dataset(self, dataset: str) -> Limits:
        return self.own().merged(self.datasets.get(dataset))


@dataclass(frozen=True)
class Thresholds(Limits):
    """Defaults for every variant x dataset, then `[thresholds.variants.NAME]` and its `.datasets.D`."""

    variants: dict[str, VariantLimits] = field(default_factory=dict)

    def limits(self, variant: str, dataset: str) -> Limits:
        over = self.variants.get(variant)
        return self.own().merged(over.for_dataset(dataset) if over else None)
