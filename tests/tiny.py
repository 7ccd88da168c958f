"""A tiny randomly initialised Llama (and a matching byte-level tokenizer) built from a config.

No downloads. Shapes are small but keep every structural feature of the real model: grouped-query
attention (4 heads, 2 KV heads), RMSNorm, SwiGLU MLP, tied-free lm_head. Hidden sizes are multiples
of 32 so int4 block sizes 32 and 128... (hidden 128, intermediate 256) divide them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT = (
    "the quick brown fox jumps over the lazy dog . a stitch in time saves nine . "
    "perplexity measures how surprised a language model is by text . "
) * 8


def make_tiny_llama(seed: int = 0, vocab_size: int = 320) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
    )
    model = LlamaForCausalLM(config).eval()
    # Random init gives near-uniform logits; widen them so perplexity differences are visible.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def make_tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def save_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """Write model (safetensors) + tokenizer to `folder`; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    make_tiny_llama(seed).save_pretrained(folder, safe_serialization=True)
    make_tiny_tokenizer().save_pretrained(folder)
    return folder
