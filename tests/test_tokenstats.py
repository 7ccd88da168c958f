"""tokenstats against a float64 reference: rank groups, argmax, chunking, the exp fallback, bad rows."""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite.errors import ScoringError
from evalsuite.scoring import tokenstats
from evalsuite.scoring.tokenstats import GROUP, PAIRED, paired_stats, solo_stats

# 320: below 2 GROUP (every column its own group); 2 GROUP + 300: groups plus a tail; 4 GROUP: no tail
VOCABS = (320, 2 * GROUP + 300, 4 * GROUP)


def reference(base: np.ndarray, variant: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """PAIRED columns in float64 by brute force (rank: every token beating the target counted)."""
    lb, lv = base.astype(np.float64), variant.astype(np.float64)
    lb = lb - np.log(np.exp(lb - lb.max(1, keepdims=True)).sum(1, keepdims=True)) - lb.max(1, keepdims=True)
    lv = lv - np.log(np.exp(lv - lv.max(1, keepdims=True)).sum(1, keepdims=True)) - lv.max(1, keepdims=True)
    idx = np.arange(targets.shape[0])
    rank = (variant > variant[idx, targets][:, None]).sum(1)
    kl = (np.exp(lb) * (lb - lv)).sum(1)
    dp = np.exp(lv[idx, targets]) - np.exp(lb[idx, targets])
    same = variant.argmax(1) == base.argmax(1)
    return np.column_stack([-lv[idx, targets], rank == 0, rank < 5, kl, dp, same]).astype(np.float64)


def logits(vocab: int, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base and variant logits with a few strong tokens, often in one rank group (columns j + i GROUP),
    ties at the max, and targets of every rank from 0 to 7 and beyond."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 3, size=(rows, vocab)).astype(np.float32)
    for r in range(rows):
        step = GROUP if (r % 2 and vocab >= 2 * GROUP) else 1 + r % 7  # same group, or spread
        strong = (r * 13 + step * np.arange(8)) % vocab
        base[r, strong] = 20.0 - np.arange(8, dtype=np.float32) // (1 + r % 3)  # ties when r % 3
    variant = base + rng.normal(0, 0.3, size=base.shape).astype(np.float32)
    variant[::4] = base[::4]  # identical rows: same_top 1, kl and dp 0
    order = np.argsort(-variant, axis=1, kind="stable")
    targets = order[np.arange(rows), np.arange(rows) % 9]
    targets[-3:] = rng.integers(0, vocab, 3)
    return base, variant, targets


@pytest.mark.parametrize("vocab", VOCABS)
def test_columns_match_float64_reference(vocab: int) -> None:
    base, variant, targets = logits(vocab, 61, vocab)
    got, want = paired_stats(base, variant, targets), reference(base, variant, targets)
    # measured max |error|: nll 1.7e-8 (the target's raw logit; 7.2e-7 when it was the shifted one),
    # kl 2.8e-8, dp 9.5e-9 nats
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=0, atol=1e-7)  # nll
    np.testing.assert_array_equal(got[:, [1, 2, 5]], want[:, [1, 2, 5]])  # top1, top5, same_top
    np.testing.assert_allclose(got[:, 3], want[:, 3], rtol=0, atol=1e-7)  # kl
    np.testing.assert_allclose(got[:, 4], want[:, 4], rtol=0, atol=1e-7)  # dp
    np.testing.assert_array_equal(got[:, :3], solo_stats(variant, targets))


def test_rank_groups_count_ties_and_shared_groups() -> None:
    """Five tokens beating the target all in one group: top5 0; four of them: top5 1."""
    vocab = 3 * GROUP
    x = np.zeros((4, vocab), dtype=np.float32)
    x[:, [7, 7 + GROUP, 7 + 2 * GROUP, 8, 8 + GROUP]] = 5.0  # two groups hold all five
    x[1, 8 + GROUP] = 0.0  # four beat the target
    x[2, [9, 8 + GROUP]] = 4.0  # a tie with the target does not beat it: four beat it
    x[3] = 5.0  # every token ties: rank 0
    targets = np.array([9, 9, 9, 9])
    cols = solo_stats(x, targets)
    assert cols[:, 1].tolist() == [0.0, 0.0, 0.0, 1.0] and cols[:, 2].tolist() == [0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("vocab", VOCABS)
def test_chunking_and_thread_count_do_not_change_results(vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    base, variant, targets = logits(vocab, 37, 1)
    want = paired_stats(base, variant, targets)
    monkeypatch.setattr(tokenstats, "CHUNK_BYTES", 4 * vocab * 3)  # 3-row chunks, a ragged last one
    np.testing.assert_array_equal(paired_stats(base, variant, targets), want)
    assert solo_stats(variant[:0], targets[:0]).shape == (0, 3)


def test_numpy_exp_fallback_agrees_with_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ONNX Runtime numpy's exp is used: within the same tolerances of the float64 reference."""
    base, variant, targets = logits(2 * GROUP + 300, 29, 2)
    want = reference(base, variant, targets)
    monkeypatch.setattr(tokenstats, "_EXP", [None])
    got = paired_stats(base, variant, targets)
    assert tokenstats._EXP == [None]
    np.testing.assert_allclose(got[:, [0, 3, 4]], want[:, [0, 3, 4]], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(got[:, [1, 2, 5]], want[:, [1, 2, 5]])


def test_exp32_writes_into_out() -> None:
    x = -np.linspace(0.0, 30.0, 3 * 1000, dtype=np.float32).reshape(3, -1)
    out = np.empty_like(x)
    assert tokenstats.exp32(x, out) is out
    np.testing.assert_allclose(out, np.exp(x.astype(np.float64)), rtol=3e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("vocab", (320, 4 * GROUP))
def test_first_non_finite_row_is_named(bad: float, vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenstats, "CHUNK_BYTES", 4 * vocab * 4)  # 4-row chunks
    base, variant, targets = logits(vocab, 23, 3)
    variant[13, vocab - 1] = bad
    variant[21, 0] = bad  # a later chunk
    base[17, 5] = bad
    with pytest.raises(ScoringError, match="at scored row 13;"):
        solo_stats(variant, targets)
    with pytest.raises(ScoringError, match="at scored row 13;"):
        paired_stats(base, variant, targets)
    with pytest.raises(ScoringError, match="at scored row 17;"):
        paired_stats(base, np.zeros_like(base), targets)
    assert PAIRED.index("kl") == 3
