"""Log-likelihood requests as lm-evaluation-harness's HF backend scores them, on any runner.

Tokenization (lm-eval `HFLM._encode_pair`): trailing whitespace of the context moves to the
front of the continuation; the pair is encoded whole and the context alone (no special tokens,
lm-eval's default for causal models without `add_bos_token`), and the continuation's tokens are the
whole encoding past the context's length. An empty context is the prefix token (BOS/EOS). The model
is fed `(context + continuation)[-(max_length + 1):][:-1]`; the last `len(continuation)` positions'
log-softmax give the continuation's log-likelihood (float32, as lm-eval) and whether every
continuation token is the argmax (`is_greedy`, LAMBADA's accuracy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from evalsuite.data.task_prompts import Example
from evalsuite.errors import ScoringError


class LogitsRunner(Protocol):
    name: str

    def logits(self, input_ids: np.ndarray, k: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Tokenized:
    """One example's requests as token ids: `inputs[j]` fed, `targets[j]` scored (the last positions)."""

    inputs: tuple[np.ndarray, ...]
    targets: tuple[np.ndarray, ...]


def encode_pair(tokenizer: Any, context: str, continuation: str, prefix_token: int | None) -> tuple[list[int],
                                                                                                   list[int]]:
    if context == "":
        if prefix_token is None:
            raise ScoringError("an empty context needs a prefix token, and the tokenizer has no BOS or EOS")
        cont = encode(tokenizer, continuation)
        # lm-eval: a continuation that already starts with the prefix token is split after it
        return ([prefix_token], cont) if not cont or cont[0] != prefix_token else (cont[:1], cont[1:])
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prefix_token(tokenizer: Any) -> int | None:
    """lm-eval's `prefix_token_id`: BOS when the tokenizer has one, else EOS."""
    for tok in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return int(tok)
    return None


def tokenize_examples(tokenizer: Any, examples: Sequence[Example], max_length: int) -> list[Tokenized]:
    prefix = prefix_token(tokenizer)
    out = []
    for ex in examples:
        inputs, targets = [], []
        for req in ex.requests:
            ctx, cont = encode_pair(tokenizer, req.context, req.continuation, prefix)
            if not cont:
                raise ScoringError(f"example {ex.index}: continuation {req.continuation!r} has no tokens")
            whole = (ctx + cont)[-(max_length + 1):]
            if len(cont) > len(whole) - 1:
                raise ScoringError(f"example {ex.index}: continuation of {len(cont)} tokens does not fit "
                                   f"the model's {max_length} positions")
            inputs.append(np.asarray(whole[:-1], dtype=np.int64))
            targets.append(np.asarray(cont, dtype=np.int64))
        out.append(Tokenized(tuple(inputs), tuple(targets)))
    return out


def score_request(runner: LogitsRunner, inputs: np.ndarray, targets: np.ndarray) -> tuple[float, bool]:
    """(log P(targets | context), every target greedy) from the last len(targets) positions."""
    return reduce_logits(runner.name, runner.logits(inputs, int(targets.shape[0])), targets)


def reduce_logits(name: str, raw: np.ndarray, targets: np.ndarray) -> tuple[float, bool]:
    """lm-eval's reduction, bit for bit: float32 `log_softmax` over the vocabulary (torch), the
    targets' log-probabilities gathered and summed in float32, greedy = argmax of the log-softmax.
    (float64 would be more accurate: float32 rounding moves a 330-nat piqa choice by 1.9e-3 nats,
    but every lane reduces the same way, so lanes compare like with like and match lm-eval's logs.)"""
    import torch

    k = int(targets.shape[0])
    logits = np.ascontiguousarray(raw, dtype=np.float32)
    if logits.ndim != 2 or logits.shape[0] != k or not np.all(np.isfinite(logits)):
        raise ScoringError(f"the {name} model returned non-finite or mis-shaped logits "
                           f"({list(logits.shape)}) for a request of {k} continuation tokens")
    logp = torch.log_softmax(torch.from_numpy(logits), dim=-1)
    cont = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64))
    ll = float(logp.gather(1, cont[:, None]).squeeze(-1).sum())
    greedy = bool((logp.argmax(dim=-1) == cont).all())
    return ll, greedy


def shared_prefix(tok: Tokenized) -> int:
    """Input tokens every request of the example starts with and that no request scores: the context
    forwarded once (0 when there is a single request or nothing is shared)."""
    if len(tok.inputs) < 2:
        return 0
    first, n = tok.inputs[0], min(int(i.shape[0]) - int(t.shape[0]) for i, t in zip(tok.inputs, tok.targets,
                                                                                       strict=True))
    for other in tok.inputs[1:]:
        same = np.flatnonzero(first[:n] != other[:n])
        n = int(same[0]) if same.size else n
    return max(n, 0)


def score_example(runner: LogitsRunner, tok: Tokenized) -> np.ndarray:
    """float64 [n_requests, 2]: log-likelihood and is_greedy (1.0 / 0.0) per request. A context shared
    by every request is forwarded once, when the runner can: with every request's rest in the same
    masked forward (`logits_packed`), or with its KV cache extended per request (`prefix` / `extend`);
    the logits equal a whole forward's within float rounding (tests/test_tasks.py)."""
    shared = shared_prefix(tok)
    pairs = zip(tok.inputs, tok.targets, strict=True)
    packed = None
    if shared and hasattr(runner, "logits_packed"):  # every request in one masked forward (torch)
        packed = runner.logits_packed(tok.inputs[0][:shared], [i[shared:] for i in tok.inputs],
                                      [int(t.shape[0]) for t in tok.targets])
    if packed is not None:
        return np.asarray([reduce_logits(runner.name, lg, t) for lg, t in zip(packed, tok.targets, strict=True)],
                          dtype=np.float64)
    # ONNX Runtime: the context once, then each request over its KV cache (its GQA refuses batched past)
    state = runner.prefix(tok.inputs[0][:shared]) if shared and hasattr(runner, "prefix") else None
    if state is None:
        rows = [score_request(runner, i, t) for i, t in pairs]
    else:
        extend = runner.extend  # type: ignore[attr-defined]
        rows = [reduce_logits(runner.name, extend(state, i[shared:], int(t.shape[0])), t) for i, t in pairs]
    return np.asarray(rows, dtype=np.float64)


def forwarded_tokens(tokenized: Sequence[Tokenized]) -> int:
    """Tokens fed to the model for these examples: a shared context once, then each request's rest
    (lm-eval's HF backend feeds every request whole: `sum(len(inputs))`)."""
    total = 0
    for t in tokenized:
        shared = shared_prefix(t)
        total += shared + sum(int(i.shape[0]) - shared for i in t.inputs)
    return total


def score_examples(runner: LogitsRunner, tokenized: Sequence[Tokenized], indices: Sequence[int],
                   done: dict[int, np.ndarray] | None = None,
                   on_example: Callable[[int, np.ndarray], None] | None = None) -> dict[int, np.ndarray]:
    """Score the examples at `indices` (those in `done` are reused), calling `on_example` after each."""
    out = dict(done or {})
    for i in indices:
        if i in out:
            continue
        out[i] = score_example(runner, tokenized[i])
        if on_example is not None:
            on_example(i, out[i])
    return out
