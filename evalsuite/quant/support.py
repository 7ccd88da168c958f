"""What each quantization method supports, checked before any model work (exit 2 on a refusal).

AWQ folds per-channel scales into the previous op (a norm's weight, or a linear's output rows). That is
function-preserving only for plain RMSNorm `x / rms(x) * w` feeding separate q/k/v and gate/up
linears, with nothing between the attention output and the residual. Verified (fold invariance on
tiny random models of each family, tests/test_awq_search.py, and before every save, `awq_build.py`):
Llama (SmolLM2), Mistral, Qwen2. Refused: Gemma / Gemma2 (RMSNorm is `x * (1 + w)`, Gemma2 also
normalises the attention output: max |Δlogit| 0.13 / 0.70 after folding scales alone), Phi-3 (fused
qkv_proj / gate_up_proj, not searched here) and every family not listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.errors import UsageError
from evalsuite.models.positions import read_config

AWQ_ARCHITECTURES = ("llama", "mistral", "qwen2")


def model_type(hf_dir: Path) -> str | None:
    cfg = Path(hf_dir) / "config.json"
    if not cfg.is_file():
        return None
    value = read_config(Path(hf_dir)).get("model_type")
    return value if isinstance(value, str) else None


def check_variants(variants: tuple[Any, ...], hf_dir: Path) -> None:
    """Refuse (UsageError, exit 2) a variant whose method cannot handle this model or its settings."""
    awq = [v for v in variants if v.method == "awq"]
    if awq:
        kind = model_type(hf_dir)
        if kind not in AWQ_ARCHITECTURES:
            raise UsageError(f"variant '{awq[0].name}': AWQ supports {', '.join(AWQ_ARCHITECTURES)} models, not "
                             f"'{kind or 'unknown'}' (its scale fold would change the model); "
                             "use method = 'rtn' or 'hqq'")
