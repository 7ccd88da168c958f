"""Accuracy task metrics as lm-evaluation-harness defines them, declared as data, plus the paired
comparisons of a variant with the base on the same examples. Pure numpy on per-request scores.

Per example the lane holds float64 [n_choices, 2]: log-likelihood and is_greedy per choice.
- acc: argmax of the log-likelihoods is the gold (lm-eval: np.argmax, so the first of tied maxima);
  LAMBADA's acc: every continuation token greedy.
- acc_norm: argmax of log-likelihood / len(choice) in characters (lm-eval's `completion_len`);
  acc_bytes: / its UTF-8 bytes.
- perplexity (LAMBADA): exp(-mean log-likelihood over examples).
- stderr: lm-eval's `mean_stderr` (sample standard deviation / sqrt(n)) for means; for perplexity
  the delta method ppl * sd(ll) / sqrt(n) (lm-eval bootstraps it; the delta method is deterministic).
Paired (variant vs base, same examples): Δ of every per-example metric with a 95 % interval from the
per-example differences (mean ± 1.96 sd / sqrt(n)); the flip rate (share of examples whose chosen
answer differs); the mean KL(base || variant) of the softmax over the choices' log-likelihoods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evalsuite.data.task_prompts import Example as PromptExample

Z95 = 1.959963984540054
Scores = Sequence[np.ndarray]  # per example: float64 [n_choices, 2] (ll, is_greedy)


@dataclass(frozen=True)
class Example:
    """What the metrics need of an example: the gold, its choices' lengths, single continuation or not
    (stored in results documents so every metric can be re-derived from the per-request scores)."""

    gold: int
    chars: tuple[int, ...]
    nbytes: tuple[int, ...]
    single: bool

    def to_json(self) -> list[Any]:
        return [self.gold, list(self.chars), list(self.nbytes), self.single]

    @classmethod
    def from_json(cls, item: Any) -> Example:
        gold, chars, nbytes, single = item
        return cls(int(gold), tuple(int(c) for c in chars), tuple(int(b) for b in nbytes), bool(single))


def outline(ex: PromptExample) -> Example:
    return Example(ex.gold, tuple(len(c) for c in ex.choices), tuple(len(c.encode("utf-8")) for c in ex.choices),
                   len(ex.requests) == 1)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    aggregation: Literal["mean", "perplexity"]
    per_example: Callable[[Example, np.ndarray], float]


def _pick(values: np.ndarray) -> int:
    return int(np.argmax(values))


def acc(ex: Example, s: np.ndarray) -> float:
    if ex.single:  # a single continuation (LAMBADA): correct when it is the greedy decode
        return float(s[0, 1] == 1.0)
    return float(_pick(s[:, 0]) == ex.gold)


def acc_norm(ex: Example, s: np.ndarray) -> float:
    return float(_pick(s[:, 0] / np.array(ex.chars, dtype=np.float64)) == ex.gold)


def acc_bytes(ex: Example, s: np.ndarray) -> float:
    return float(_pick(s[:, 0] / np.array(ex.nbytes, dtype=np.float64)) == ex.gold)


def loglik(ex: Example, s: np.ndarray) -> float:
    return float(s[ex.gold, 0])


METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("acc", True, "mean", acc),
    MetricSpec("acc_norm", True, "mean", acc_norm),
    MetricSpec("acc_bytes", True, "mean", acc_bytes),
    MetricSpec("perplexity", False, "perplexity", loglik),
)}


def per_example(name: str, examples: Sequence[Example], scores: Scores) -> np.ndarray:
    spec = METRICS[name]
    return np.array([spec.per_example(e, s) for e, s in zip(examples, scores, strict=True)], dtype=np.float64)


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def aggregate(name: str, values: np.ndarray) -> tuple[float, float]:
    """(value, standard error) of a metric over its per-example values."""
    n = values.size
    if METRICS[name].aggregation == "perplexity":
        ppl = math.exp(-float(np.mean(values)))
        return ppl, ppl * _sd(values) / math.sqrt(n)
    return float(np.mean(values)), _sd(values) / math.sqrt(n)


def solo(names: Sequence[str], examples: Sequence[Example], scores: Scores) -> dict[str, float]:
    """Every declared metric with `_stderr`, over the examples scored."""
    out: dict[str, float] = {}
    for name in names:
        value, err = aggregate(name, per_example(name, examples, scores))
        out[name] = value
        if err == err:  # nan with a single example: no error bar
            out[f"{name}_stderr"] = err
    return out


def choice(ex: Example, s: np.ndarray) -> int:
    """The answer a lane gives: the argmax choice, or LAMBADA's greedy flag."""
    return int(s[0, 1]) if ex.single else _pick(s[:, 0])


def choice_kl(base: np.ndarray, cand: np.ndarray) -> float:
    """KL(base || candidate) of the softmax over the choices' log-likelihoods, nats."""
    lp = base - np.logaddexp.reduce(base)
    lq = cand - np.logaddexp.reduce(cand)
    return float(np.sum(np.exp(lp) * (lp - lq)))


def paired(names: Sequence[str], examples: Sequence[Example], base: Scores, cand: Scores) -> dict[str, float]:
    """Δ (candidate - base) of each mean metric with its paired 95 % interval, flips and choice KL."""
    n = len(examples)
    out: dict[str, float] = {}
    for name in names:
        if METRICS[name].aggregation != "mean":
            continue
        d = per_example(name, examples, cand) - per_example(name, examples, base)
        half = Z95 * _sd(d) / math.sqrt(n)
        out[f"d{name}"] = float(np.mean(d))
        if half == half:
            out[f"d{name}_ci95_low"], out[f"d{name}_ci95_high"] = out[f"d{name}"] - half, out[f"d{name}"] + half
    flips = sum(choice(e, b) != choice(e, c) for e, b, c in zip(examples, base, cand, strict=True))
    out["flips"] = float(flips)
    out["flip_rate"] = flips / n
    if any(not e.single for e in examples):
        out["choice_kl_mean"] = float(np.mean([choice_kl(b[:, 0], c[:, 0]) for b, c in zip(base, cand, strict=True)]))
    return out


def parity(examples: Sequence[Example], reference: Scores, cand: Scores) -> dict[str, float]:
    """ORT base vs the torch reference: max |Δ log-likelihood| over every request, same answers."""
    max_dll = max(float(np.max(np.abs(r[:, 0] - c[:, 0]))) for r, c in zip(reference, cand, strict=True))
    same = sum(choice(e, r) == choice(e, c) for e, r, c in zip(examples, reference, cand, strict=True))
    return {"max_abs_dll": max_dll, "answer_agree": same / len(examples)}
