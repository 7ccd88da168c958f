"""Distribution metrics and uncertainty: KL, same-top, streaming vs full-logits, CI coverage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evalsuite.data.windows import plan_windows
from evalsuite.scoring.lanes import new_lane, score_lanes
from evalsuite.scoring.metrics import nll_se, paired_interval, paired_metrics, solo_metrics
from evalsuite.scoring.tokenstats import PAIRED, paired_stats, solo_stats


def test_model_against_itself() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(50, 300)).astype(np.float32)
    targets = rng.integers(0, 300, 50)
    cols = paired_stats(logits, logits, targets)
    assert np.all(cols[:, PAIRED.index("kl")] == 0.0)
    assert np.all(cols[:, PAIRED.index("same_top")] == 1.0)
    assert np.all(cols[:, PAIRED.index("dp")] == 0.0)
    np.testing.assert_array_equal(cols[:, :3], solo_stats(logits, targets))


def test_top_k_columns() -> None:
    logits = np.array([[0.0, 5.0, 1.0, 2.0, 3.0, 4.0, -1.0]], dtype=np.float32)
    assert solo_stats(logits, np.array([1]))[0, 1:].tolist() == [1.0, 1.0]  # argmax
    assert solo_stats(logits, np.array([3]))[0, 1:].tolist() == [0.0, 1.0]  # rank 3
    assert solo_stats(logits, np.array([0]))[0, 1:].tolist() == [0.0, 0.0]  # rank 6


class Perturbed:
    """A runner whose logits are another's plus fixed noise: a stand-in for a quantized variant."""

    name = "noisy"
    identity = None

    def __init__(self, inner: object, scale: float) -> None:
        self.inner, self.scale = inner, scale
        self.vocab_size = inner.vocab_size  # type: ignore[attr-defined]

    def logits(self, input_ids: np.ndarray, k: int) -> np.ndarray:
        base = self.inner.logits(input_ids, k)  # type: ignore[attr-defined]
        rng = np.random.default_rng(int(input_ids.sum()))
        return base + rng.normal(0, self.scale, size=base.shape).astype(np.float32)


def test_streaming_kl_matches_full_logits(tiny_llama_dir: Path) -> None:
    """Window-by-window KL from score_lanes == KL from each window's full stored logits (fp64)."""
    from evalsuite.models.torch_runner import TorchRunner

    base = TorchRunner(tiny_llama_dir)
    noisy = Perturbed(base, 0.5)
    tokens = np.random.default_rng(3).integers(0, 300, 400)
    windows = plan_windows(400, 96, 40)
    lanes = [new_lane(base, "base", False, 400), new_lane(noisy, "noisy", True, 400)]
    score_lanes(lanes, tokens, windows, list(range(len(windows))))
    want = np.full(400, np.nan)
    for w in windows:  # the reference keeps the whole window's logits
        inputs = tokens[w.start : w.end - 1]
        lb = base.logits(inputs, w.n_targets).astype(np.float64)
        lv = noisy.logits(inputs, w.n_targets).astype(np.float64)
        lb -= np.log(np.exp(lb - lb.max(1, keepdims=True)).sum(1, keepdims=True)) + lb.max(1, keepdims=True)
        lv -= np.log(np.exp(lv - lv.max(1, keepdims=True)).sum(1, keepdims=True)) + lv.max(1, keepdims=True)
        want[w.first_target : w.end] = (np.exp(lb) * (lb - lv)).sum(1)
    got = lanes[1].cols[:, PAIRED.index("kl")]
    # tokenstats exponentiates in float32 (sums in float64): ~1e-7 relative per term, measured up
    # to 4.3e-7 relative on these KLs; 2e-6 still catches any real formula error (>= 1e-3 here)
    np.testing.assert_allclose(got[1:], want[1:], rtol=2e-6, atol=1e-10)
    assert got[1:].mean() > 0.01
    metrics = paired_metrics(lanes[1].cols, lanes[0].cols[:, 0], windows)
    assert metrics["kld_mean"] == pytest.approx(float(np.mean(want[1:])), rel=2e-6)
    assert 0.0 < metrics["same_top"] < 1.0


def _coverage(n_windows: int, tails: str, reps: int = 2000, mu: float = 0.05) -> float:
    """Share of simulated runs whose 95 % ln-ratio interval covers the true mu. Windows laid out like
    the default suite (window 512, stride 256, a ragged last window); each window has its own true
    shift (window-level heterogeneity: normal, or heavy-tailed Student t with 4 df) plus token noise."""
    rng = np.random.default_rng(n_windows)
    windows = plan_windows(512 + 256 * (n_windows - 1) - 40, 512, 256)
    assert len(windows) == n_windows
    counts = np.array([w.n_targets for w in windows])
    base, nll = np.zeros(windows[-1].end), np.zeros(windows[-1].end)
    hits = 0
    for _ in range(reps):
        effect = rng.standard_normal(n_windows) if tails == "normal" else rng.standard_t(4, n_windows) / np.sqrt(2)
        sums = counts * (mu + 0.03 * effect) + np.sqrt(counts) * 0.6 * rng.standard_normal(n_windows)
        for w, total in zip(windows, sums, strict=True):
            nll[w.first_target : w.end] = total / w.n_targets
        ci = paired_interval(nll, base, windows)
        hits += ci["ln_ratio_ci95_low"] <= mu <= ci["ln_ratio_ci95_high"]
    return hits / reps


@pytest.mark.parametrize("tails", ["normal", "heavy"])
@pytest.mark.parametrize("n_windows", [7, 8, 16, 100])
def test_paired_interval_coverage(n_windows: int, tails: str) -> None:
    """Measured (2,000 seeded runs each; sampling error ±0.5 %): normal 94.1 / 93.8 / 95.8 / 94.7 %,
    heavy-tailed 94.6 / 94.4 / 93.8 / 94.8 % at 7 / 8 / 16 / 100 windows (the percentile bootstrap it
    replaces covered ~86 % at 7-8 windows)."""
    assert _coverage(n_windows, tails) >= 0.93


def test_single_window_has_no_interval() -> None:
    windows = plan_windows(40, 64, 32)
    ci = paired_interval(np.full(40, 2.0), np.full(40, 1.0), windows)
    assert "dppl_ci95_low" not in ci and ci["ln_ratio"] == pytest.approx(1.0)


def test_standard_error_and_accuracy() -> None:
    windows = plan_windows(201, 50, 50)
    cols = np.full((201, 3), np.nan)
    cols[1:, 0] = 2.0
    cols[1:, 1] = np.arange(200) % 2  # top-1 right half the time
    cols[1:, 2] = 1.0
    m = solo_metrics(cols, windows)
    assert m["nll_se"] == 0.0 and m["ppl_ci95_low"] == m["ppl_ci95_high"] == pytest.approx(math.exp(2.0))
    assert (m["top1_acc"], m["top5_acc"]) == (0.5, 1.0)
    noisy = cols[:, 0] + np.random.default_rng(1).normal(0, 1, 201)
    assert nll_se(noisy, windows) > 0


def test_exp32_matches_float64_exp_with_or_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """tokenstats' float32 exp (ONNX Runtime's MLAS kernel; numpy's without ONNX Runtime): within 3e-7
    relative (2.5 float32 epsilons) of exp in float64 over the range shifted logits take (<= 0).
    Measured here: MLAS 7.2e-8, numpy 1.9e-7."""
    from evalsuite.scoring import tokenstats

    x = -np.linspace(0.0, 87.0, 262_144, dtype=np.float32).reshape(4, -1)
    exact = np.exp(x.astype(np.float64))
    for session in ("ort", None):
        if session is None:
            monkeypatch.setattr(tokenstats, "_EXP", [None])
        got = tokenstats.exp32(x)
        assert (tokenstats._EXP[0] is None) == (session is None)  # ONNX Runtime is installed in the tests
        assert got.dtype == np.float32 and got.shape == x.shape
        assert float(np.max(np.abs(got / exact - 1.0))) <= 3e-7
