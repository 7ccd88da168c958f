"""Summary metrics from per-token columns (see tokenstats.py). Pure numpy, float64.

Uncertainty treats windows as the independent units (tokens inside a window are correlated):
- `nll_se`: cluster-robust standard error of the mean NLL over windows (ratio estimator);
  `ppl_ci95` = exp(mean ± 1.96 se).
- Paired ΔPPL between a variant and its base on the same tokens: a paired bootstrap over windows
  (2,000 resamples, fixed seed): each resample draws windows with replacement and recomputes both
  PPLs on the same draw; the 2.5/97.5 percentiles give `dppl_ci95` and `ln_ratio_ci95`.
"""

from __future__ import annotations

import math

import numpy as np

from evalsuite.data.windows import Window
from evalsuite.scoring.tokenstats import PAIRED, SOLO

BOOTSTRAP = 2000
SEED = 0


def window_sums(values: np.ndarray, windows: list[Window]) -> tuple[np.ndarray, np.ndarray]:
    """Per-window sum of `values` [n_tokens] and per-window target counts."""
    sums = np.array([np.sum(values[w.first_target : w.end], dtype=np.float64) for w in windows])
    counts = np.array([w.n_targets for w in windows], dtype=np.float64)
    return sums, counts


def nll_se(nll: np.ndarray, windows: list[Window]) -> float:
    sums, counts = window_sums(nll, windows)
    n = len(windows)
    if n < 2:
        scored = np.concatenate([nll[w.first_target : w.end] for w in windows])
        return float(np.std(scored, ddof=1) / math.sqrt(scored.size)) if scored.size > 1 else float("nan")
    mean = sums.sum() / counts.sum()
    resid = sums - mean * counts
    return float(math.sqrt(n / (n - 1) * np.sum(resid**2)) / counts.sum())


def solo_metrics(cols: np.ndarray, windows: list[Window]) -> dict[str, float]:
    scored = np.concatenate([cols[w.first_target : w.end] for w in windows])
    c = {name: scored[:, j] for j, name in enumerate(SOLO)}
    se = nll_se(cols[:, 0], windows)
    mean = float(np.mean(c["nll"]))
    return {
        "nll_se": se,
        "ppl_ci95_low": math.exp(mean - 1.96 * se),
        "ppl_ci95_high": math.exp(mean + 1.96 * se),
        "top1_acc": float(np.mean(c["top1"])),
        "top5_acc": float(np.mean(c["top5"])),
    }


def unit_metrics(nll_sum: float, words: int, nbytes: int) -> dict[str, float]:
    """Tokenizer-independent units (lm-evaluation-harness definitions): word and byte perplexity,
    bits per byte. `words`/`nbytes` count the original text the scored tokens cover."""
    out = {"words": float(words), "bytes": float(nbytes)}
    if words > 0:
        out["word_ppl"] = math.exp(nll_sum / words)
    if nbytes > 0:
        out["byte_ppl"] = math.exp(nll_sum / nbytes)
        out["bits_per_byte"] = nll_sum / nbytes / math.log(2)
    return out


def paired_metrics(cols: np.ndarray, base_nll: np.ndarray, windows: list[Window]) -> dict[str, float]:
    """Distribution metrics of a variant against the base it was paired with, plus ΔPPL intervals."""
    scored = np.concatenate([cols[w.first_target : w.end] for w in windows])
    c = {name: scored[:, j] for j, name in enumerate(PAIRED)}
    kl = c["kl"]
    out = {
        "kld_mean": float(np.mean(kl)),
        "kld_median": float(np.median(kl)),
        "kld_p90": float(np.percentile(kl, 90)),
        "kld_p99": float(np.percentile(kl, 99)),
        "kld_max": float(np.max(kl)),
        "same_top": float(np.mean(c["same_top"])),
        "dp_mean": float(np.mean(c["dp"])),
        "dp_rms": float(np.sqrt(np.mean(c["dp"] ** 2))),
    }
    return {**out, **paired_interval(cols[:, 0], base_nll, windows)}


def paired_interval(nll: np.ndarray, base_nll: np.ndarray, windows: list[Window]) -> dict[str, float]:
    sv, counts = window_sums(nll, windows)
    sb, _ = window_sums(base_nll, windows)
    rng = np.random.default_rng(SEED)
    draws = rng.multinomial(len(windows), np.full(len(windows), 1.0 / len(windows)), size=BOOTSTRAP)
    tok = draws @ counts  # [B] tokens per resample
    ln_v, ln_b = (draws @ sv) / tok, (draws @ sb) / tok
    dppl = np.exp(ln_v) - np.exp(ln_b)
    ln_ratio = ln_v - ln_b
    return {
        "dppl": math.exp(sv.sum() / counts.sum()) - math.exp(sb.sum() / counts.sum()),
        "dppl_ci95_low": float(np.percentile(dppl, 2.5)),
        "dppl_ci95_high": float(np.percentile(dppl, 97.5)),
        "ln_ratio": float((sv.sum() - sb.sum()) / counts.sum()),
        "ln_ratio_ci95_low": float(np.percentile(ln_ratio, 2.5)),
        "ln_ratio_ci95_high": float(np.percentile(ln_ratio, 97.5)),
    }
