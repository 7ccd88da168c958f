"""Tiny randomly initialised models of every supported architecture, built from configs (no downloads).

Same shapes as tests/tiny.py's Llama (hidden 128, 4 heads / 2 KV heads of 32, intermediate 256) so
int4 block 32 divides every matrix, and each family keeps what makes it different:
- llama: the reference architecture (SmolLM2's).
- phi3: Phi-3 mini 4k (fused qkv / gate_up weights, original = max positions: no LongRoPE).
- phi3-longrope: Phi-3 128k style LongRoPE with original_max_position_embeddings = 64, short and
  long factors far apart so a window that crosses 64 positions is visibly different.
- qwen2: q/k/v biases.
- mistral: sliding window 16 on every layer.
- gemma3: 3 layers, two sliding (window 16, RoPE theta 1e4) and one global (theta 1e6), q/k norms,
  (1 + w) RMSNorm, tied embeddings scaled by sqrt(hidden).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiny import make_tiny_tokenizer

HEAD = 32
SLIDING = 16
LONGROPE_ORIGINAL = 64
FAMILIES = ("llama", "phi3", "phi3-longrope", "qwen2", "mistral", "gemma3")


def _common() -> dict[str, Any]:
    return dict(vocab_size=320, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=0, eos_token_id=1, pad_token_id=1, tie_word_embeddings=False)


def family_config(family: str) -> Any:
    import transformers as T

    if family == "llama":
        return T.LlamaConfig(**_common())
    if family == "phi3":
        return T.Phi3Config(**_common(), original_max_position_embeddings=512)
    if family == "phi3-longrope":
        rope = {"rope_type": "longrope", "rope_theta": 10000.0,
                "short_factor": [1.0 + 0.1 * i for i in range(HEAD // 2)],
                "long_factor": [1.0 + 2.0 * i for i in range(HEAD // 2)],
                "original_max_position_embeddings": LONGROPE_ORIGINAL}
        return T.Phi3Config(**_common(), original_max_position_embeddings=LONGROPE_ORIGINAL, rope_parameters=rope)
    if family == "qwen2":
        return T.Qwen2Config(**_common())
    if family == "mistral":
        return T.MistralConfig(**_common(), sliding_window=SLIDING)
    if family == "gemma3":
        common = {**_common(), "num_hidden_layers": 3, "tie_word_embeddings": True}
        return T.Gemma3TextConfig(**common, head_dim=HEAD, sliding_window=SLIDING, query_pre_attn_scalar=HEAD,
                                  layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    raise ValueError(family)


def save_tiny_family(family: str, folder: Path, seed: int = 0) -> Path:
    """Write the family's tiny model (safetensors) + the byte-level tokenizer to `folder`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(family)).eval()
    with torch.no_grad():  # random init gives near-uniform logits; widen them as tests/tiny.py does
        head = model.get_output_embeddings()
        if not model.config.tie_word_embeddings:
            head.weight.mul_(8.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    make_tiny_tokenizer().save_pretrained(folder)
    return folder
