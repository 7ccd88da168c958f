"""The PyTorch reference runner on the tiny random Llama, against direct transformers computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evalsuite.data.windows import plan_windows
from evalsuite.models.torch_runner import TorchRunner
from evalsuite.scoring.lanes import score_stream, summarize


@pytest.fixture(scope="module")
def runner(tiny_llama_dir: Path) -> TorchRunner:
    return TorchRunner(tiny_llama_dir, threads=2)


def tokens(n: int, vocab: int = 300, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n, dtype=np.int64)


def test_window_nll_matches_full_log_softmax(runner: TorchRunner) -> None:
    """The runner's last-k logits (logits_to_keep), reduced as the lanes reduce them, against a full forward."""
    import torch

    from evalsuite.scoring.tokenstats import solo_stats

    ids = tokens(40)
    got = solo_stats(runner.logits(ids[:30], 10), ids[21:31])[:, 0]  # last 10 positions of a 30-token input
    with torch.inference_mode():
        logits = runner.model(torch.from_numpy(ids[:30])[None]).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    want = -logp[torch.arange(20, 30), torch.from_numpy(ids[21:31])].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)  # fp32 logits, fp64 softmax


def test_stream_matches_transformers_loss(runner: TorchRunner) -> None:
    """Sum of per-target NLL over windows == sum of HF `labels=` losses with exact label counts."""
    import torch

    ids = tokens(200)
    windows = plan_windows(200, 64, 24)
    nll = score_stream(runner, ids, windows)
    total = 0.0
    with torch.inference_mode():
        for w in windows:
            inp = torch.from_numpy(ids[w.start : w.end])[None]  # inputs plus the last target
            labels = inp.clone()
            labels[0, : w.first_target - w.start] = -100  # context-only positions
            loss = runner.model(inp, labels=labels).loss.item()  # mean over w.n_targets shifted labels
            total += loss * w.n_targets
    result = summarize(nll, windows, seconds=1.0, model="tiny", variant="base", runner="torch",
                       dataset="synthetic", split="test", window=64, stride=24, bos=False, max_tokens=None,
                       tokens_in_stream=200)
    assert result.tokens_scored == 199
    assert math.isclose(result.nll_sum, total, rel_tol=1e-5)
    assert math.isclose(result.ppl, math.exp(total / 199), rel_tol=1e-5)


def test_vocab_size(runner: TorchRunner) -> None:
    assert runner.vocab_size == 320
