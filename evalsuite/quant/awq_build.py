"""Build the AWQ-transformed fp32 HF folder of a variant (cached), ready for the int4 builder.

Calibration: `samples` windows of `seq_len` tokens from a non-test split (default WikiText-2
validation), at offsets drawn with `numpy.random.default_rng(seed)`: deterministic. The cache key
covers the source weights, calibration, block size, grid and package versions; the folder keeps
the searched plan (`awq_plan.json` + `.safetensors`) beside the transformed weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.cache import build_entry, cache_root, key_of, reuse
from evalsuite.config import Calibration, VariantCfg
from evalsuite.data import corpora
from evalsuite.errors import DataError, ModelError
from evalsuite.models.onnx_build import source_hash, versions
from evalsuite.models.source import ModelSource
from evalsuite.stages import stage

N_GRID = 20


def calibration_ids(source: ModelSource, cal: Calibration, data_dir: Path | None) -> np.ndarray:
    """int64 [samples, seq_len] token windows from the calibration split."""
    from transformers import AutoTokenizer

    text = corpora.load_text(cal.dataset, data_dir)
    tokens, _ = corpora.tokenize(text, AutoTokenizer.from_pretrained(source.path), source.tokenizer_id, False)
    if tokens.shape[0] < cal.seq_len + 1:
        raise DataError(f"calibration split {cal.dataset} has {tokens.shape[0]} tokens, fewer than seq_len "
                        f"{cal.seq_len}; lower seq_len")
    starts = np.random.default_rng(cal.seed).integers(0, tokens.shape[0] - cal.seq_len, size=cal.samples)
    return np.stack([tokens[s : s + cal.seq_len] for s in starts])


def awq_folder(source: ModelSource, v: VariantCfg, data_dir: Path | None, progress: Any = None) -> Path:
    """The AWQ-transformed fp32 HF folder of `v` (cached), calibrated on text from `data_dir`
    (None: the hub), as `corpora.load_text` finds it."""
    key = key_of({"source": source_hash(source.path), "calibration": vars(v.calibration),
                  "block": v.block_size, "symmetric": v.symmetric, "grid": N_GRID, "v": versions(), "algo": 4})
    out = cache_root() / "awq" / key
    if reuse(out):
        return out
    ids = calibration_ids(source, v.calibration, data_dir)
    with build_entry(out) as tmp:
        _search_and_save(source, ids, v, tmp, progress)
    return out


def _search_and_save(source: ModelSource, ids: np.ndarray, v: VariantCfg, out: Path, progress: Any = None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalsuite.quant.awq import FOLD_TOLERANCE, apply_awq, fold_error, search_awq

    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, use_safetensors=True).eval()
    vocab = model.get_input_embeddings().num_embeddings
    if int(ids.max()) >= vocab:
        raise ModelError(f"calibration token id {int(ids.max())} is outside the model's {vocab}-row embedding; "
                         "the model and tokenizer do not belong together")
    start = time.perf_counter()
    layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    with stage(progress, f"{v.name}: AWQ search", layers, "layers") as advance:
        plan = search_awq(model, torch.from_numpy(ids), v.block_size, N_GRID, symmetric=v.symmetric, on_layer=advance)
    seconds = time.perf_counter() - start
    calib = torch.from_numpy(ids)
    drift = fold_error(model, plan, calib)
    if not drift <= FOLD_TOLERANCE:  # also NaN
        raise ModelError(f"AWQ scale folding changed the fp32 model's logits by {drift:.3g} (> {FOLD_TOLERANCE}) on "
                         "the calibration batch, so this model's norms are not plain RMSNorm; use method = 'rtn'")
    apply_awq(model, plan)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(source.path).save_pretrained(out)
    plan.save(out)
    gain = [s.loss_awq / s.loss_rtn for s in plan.steps if s.loss_rtn > 0]
    info = {"calibration": vars(v.calibration), "block_size": v.block_size, "symmetric": v.symmetric,
            "n_grid": N_GRID,
            "search_seconds": round(seconds, 1), "fold_max_abs_dlogit": drift, "layer_seconds": plan.layer_seconds,
            "scale_groups": len(plan.steps),
            "mean_loss_ratio_awq_over_rtn": float(np.mean(gain)) if gain else None}
    (out / "awq_info.json").write_text(json.dumps(info, indent=2))
