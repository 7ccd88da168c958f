"""AWQ (activation-aware weight quantization, Lin et al. 2023) for Llama-family models, CPU, torch.

Search and apply are separate: `search_awq` returns an `AwqPlan` (per-channel scales and per-block
clip values, as data), `apply_awq` replays a plan on a model. Both are deterministic.

Per decoder layer, one forward over all calibration samples (in chunks of CHUNK_SEQS sequences) of
the activations that reach it (outputs of the already transformed previous layers) captures, with
hooks, the Gram matrix X^T X and mean |x| of each linear input: q/k/v, o, gate/up and down. Since
every fold below is function-preserving, the inputs of later groups are those of this one forward
(earlier code recomputed them by hand and fed down_proj's search with gate/up outputs of the
*unfolded* norm through the *folded* weights: 7 % off on the tiny model, far more with outlier
channels; tests/test_awq_search.py checks the captured input against a fresh forward).
1. Scales. For each group of linears sharing an input — input RMSNorm -> q/k/v, post-attention
   RMSNorm -> gate/up, up -> down and v -> o when v and o have the same width (not under
   grouped-query attention, e.g. SmolLM2's 9 heads / 3 KV heads) — try s = mean|x|^α per input
   channel, α in {0, 1/n_grid, ..., (n_grid-1)/n_grid}, normalised by sqrt(max·min); quantize
   W·s with the exact int4 grid (`grid.py`, symmetric or with zero points), divide by s, keep the α
   with the lowest MSE of the group's linear outputs over *all* calibration tokens (AWQ's objective,
   Lin et al. eq. 4), computed exactly from the Gram matrix: ||X ΔW^T||² = sum((ΔW G) ⊙ ΔW). That
   costs out x C² per α whatever the number of tokens. Fold: the previous op's weight (or output
   rows) / s, the linears' input columns x s. This leaves the fp32 function unchanged and moves
   quantization error off salient channels.
2. Clips. For every linear but q/k: per output channel and block, shrink the block's max |w| by
   ratios 1, 1-1/n_grid, ..., 0.55 and keep the one whose quantized partial output (that block's
   inputs only, all calibration tokens, from the block's Gram matrix) has the lowest squared error;
   apply by clamping the fp32 weights to ±max.

Why the builder gets transformed fp32 weights instead of an AutoAWQ checkpoint: the builder's
symmetric RTN *is* the grid searched here (`fake_quant` equals onnxruntime's quantizer bit for bit,
tests/test_awq_search.py), so building int4 from the scaled+clamped fp32 folder yields exactly the AWQ
quantization that the search optimised. An AutoAWQ checkpoint stores asymmetric uint4 with zero
points, which the builder would emit as the zero-point MatMulNBits layout that fails to load here
(the is_symmetric=false uint8 Gather error), and would add a second, lossy format conversion.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.errors import ModelError
from evalsuite.quant.grid import fake_quant, fake_quant_blocks, padded_blocks
from evalsuite.quant.support import AWQ_ARCHITECTURES

FOLD_TOLERANCE = 1e-2  # max |Δlogit| the scale fold may cause (measured: ~1e-4 on SmolLM2, Gemma 0.13)
FOLD_CHECK_SEQS = 2  # calibration sequences the fold check runs the whole model on (2 x 2 full forwards)
CHUNK_SEQS = 8  # calibration sequences per forward chunk (bounds activation memory; losses use all)
CLIPPED = {"self_attn.v_proj": "attn_in", "self_attn.o_proj": "o_in", "mlp.gate_proj": "mlp_in",
           "mlp.up_proj": "mlp_in", "mlp.down_proj": "down_in"}  # clip-searched linears (all but q/k) -> input


@dataclass
class ScaleStep:
    prev: str  # module name whose output is divided by the scales
    linears: tuple[str, ...]  # modules whose input columns are multiplied by them
    alpha: float
    loss_rtn: float  # output MSE with plain int4 (alpha = 0 means s = 1)
    loss_awq: float  # output MSE with the chosen scales


@dataclass
class AwqPlan:
    block_size: int
    n_grid: int
    steps: list[ScaleStep] = field(default_factory=list)
    scales: list[Any] = field(default_factory=list)  # torch float32 [C] per step
    clips: dict[str, Any] = field(default_factory=dict)  # linear name -> float32 [out, in/block]
    symmetric: bool = True  # the int4 grid searched: symmetric (code 8 = 0) or with zero points
    layer_seconds: list[float] = field(default_factory=list)  # search time per decoder layer

    def save(self, folder: Path) -> None:
        """`awq_plan.json` (structure) + `awq_plan.safetensors` (tensors). No pickle."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"scale.{i}": s.contiguous() for i, s in enumerate(self.scales)}
        tensors |= {f"clip.{name}": c.contiguous() for name, c in self.clips.items()}
        save_file(tensors, str(folder / "awq_plan.safetensors"))
        meta = {"block_size": self.block_size, "n_grid": self.n_grid, "symmetric": self.symmetric,
                "layer_seconds": self.layer_seconds, "clips": sorted(self.clips),
                "steps": [vars(s) | {"linears": list(s.linears)} for s in self.steps]}
        (folder / "awq_plan.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> AwqPlan:
        from safetensors.torch import load_file

        meta = json.loads((folder / "awq_plan.json").read_text())
        tensors = load_file(str(folder / "awq_plan.safetensors"))
        steps = [ScaleStep(**(s | {"linears": tuple(s["linears"])})) for s in meta["steps"]]
        return cls(meta["block_size"], meta["n_grid"], steps, [tensors[f"scale.{i}"] for i in range(len(steps))],
                   {name: tensors[f"clip.{name}"] for name in meta["clips"]}, meta.get("symmetric", True),
                   meta.get("layer_seconds", []))


def decoder_layers(model: Any) -> Any:
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in AWQ_ARCHITECTURES:
        raise ModelError(f"AWQ supports {', '.join(AWQ_ARCHITECTURES)} models, not '{kind}' (its scale fold would "
                         "change the model); use method = 'rtn' or 'hqq'")
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(layers[0], "self_attn") or not hasattr(layers[0].mlp, "gate_proj"):
        raise ModelError(f"AWQ supports Llama-architecture models (q/k/v/o, gate/up/down, RMSNorms); "
                         f"{type(model).__name__} is not one; use method = 'rtn'")
    return layers


def search_awq(model: Any, calib_ids: Any, block_size: int, n_grid: int = 20, symmetric: bool = True,
               on_layer: Callable[[int], None] | None = None) -> AwqPlan:
    """Search scales and clips on calibration token ids [n_samples, seq_len] (int64). The model is
    left unchanged. Deterministic: no sampling. `on_layer(1)` after each layer (progress)."""
    import copy
    import time

    import torch

    decoder_layers(model)
    work = copy.deepcopy(model).float().eval()
    layers = decoder_layers(work)
    plan = AwqPlan(block_size, n_grid, symmetric=symmetric)
    with torch.inference_mode():
        x = work.model.embed_tokens(calib_ids)
        rope = work.model.rotary_emb(x[:1], torch.arange(calib_ids.shape[1])[None])  # cos/sin [1, seq, d]
        for i, layer in enumerate(layers):
            start = time.perf_counter()
            stats, x_next = layer_inputs(layer, x, rope)  # one forward of the unchanged layer, all samples
            input_scale: dict[str, Any] = {}
            for prev, names, key in _groups(layer, f"model.layers.{i}"):
                weight = torch.cat([_module(work, n).weight for n in names])
                step, scale = _search_scales(prev, names, weight, stats[key], block_size, n_grid, symmetric)
                _apply_scale(work, step, scale)
                plan.steps.append(step)
                plan.scales.append(scale)
                input_scale |= dict.fromkeys(names, scale)
            for name, key in CLIPPED.items():
                full = f"model.layers.{i}.{name}"
                st, s = stats[key], input_scale.get(full)
                gram = st.gram if s is None else st.gram / (s[:, None] * s[None, :])  # input after the fold: x / s
                plan.clips[full] = _search_clip(_module(work, full).weight, gram, block_size, n_grid, symmetric)
            x = x_next  # folding is exact, so the scaled layer's output is the unchanged layer's output
            plan.layer_seconds.append(round(time.perf_counter() - start, 3))
            if on_layer is not None:
                on_layer(1)
    return plan


def apply_awq(model: Any, plan: AwqPlan) -> None:
    """Replay a plan in place: fold every scale, then clamp weights to the searched clip values."""
    import torch

    decoder_layers(model)
    with torch.no_grad():
        for step, scale in zip(plan.steps, plan.scales, strict=True):
            _apply_scale(model, step, scale)
        for name, max_val in plan.clips.items():
            _apply_clip(_module(model, name).weight, max_val, plan.block_size)


def fold_error(model: Any, plan: AwqPlan, calib_ids: Any, seqs: int = FOLD_CHECK_SEQS) -> float:
    """max |Δlogit| between the model and a copy with the plan's scales folded in (no clipping), on the
    first `seqs` calibration sequences: 0 up to fp32 re-association when the fold is exact."""
    import copy

    import torch

    folded = copy.deepcopy(model)
    apply_awq(folded, AwqPlan(plan.block_size, plan.n_grid, plan.steps, plan.scales, {}, plan.symmetric))
    worst = 0.0
    with torch.inference_mode():
        for i in range(min(seqs, calib_ids.shape[0])):
            a, b = model(calib_ids[i : i + 1]).logits, folded(calib_ids[i : i + 1]).logits
            worst = max(worst, float((a - b).abs().max()))
    return worst


def _module(model: Any, name: str) -> Any:
    return model.get_submodule(name)


def _layer_forward(layer: Any, x: Any, rope: Any) -> Any:
    out = layer(x, attention_mask=None, position_embeddings=rope, use_cache=False)
    return out[0] if isinstance(out, tuple) else out


@dataclass
class InputStats:
    """What the losses need of one linear input over all calibration tokens."""

    gram: Any  # float32 [C, C]: X^T X
    abs_mean: Any  # float32 [C]: mean |x| per channel
    tokens: int


def layer_inputs(layer: Any, x: Any, rope: Any, chunk: int = CHUNK_SEQS) -> tuple[dict[str, InputStats], Any]:
    """Inputs of q/k/v, o, gate/up and down as `InputStats`, captured by hooks on one forward of the layer
    over all calibration samples (in chunks of `chunk` sequences), and the layer's output."""
    import torch

    taps = {"attn_in": layer.self_attn.q_proj, "o_in": layer.self_attn.o_proj, "mlp_in": layer.mlp.gate_proj,
            "down_in": layer.mlp.down_proj}
    acc: dict[str, list[Any]] = {}

    def keep(key: str) -> Any:
        def hook(_m: Any, args: tuple[Any, ...]) -> None:  # returning None keeps the input unchanged
            t = args[0].reshape(-1, args[0].shape[-1])
            gram, absum = (t.T @ t).double(), t.abs().sum(0, dtype=torch.float64)
            if key in acc:
                acc[key][0] += gram
                acc[key][1] += absum
                acc[key][2] += t.shape[0]
            else:
                acc[key] = [gram, absum, t.shape[0]]
        return hook

    hooks = [mod.register_forward_pre_hook(keep(key)) for key, mod in taps.items()]
    try:
        out = torch.cat([_layer_forward(layer, x[i : i + chunk], rope) for i in range(0, x.shape[0], chunk)])
    finally:
        for hk in hooks:
            hk.remove()
    return {k: InputStats(g.float(), (a / n).float(), n) for k, (g, a, n) in acc.items()}, out


def _groups(layer: Any, prefix: str) -> list[tuple[str, list[str], str]]:
    """(previous op, linears sharing its output, input key) for each scale group, in fold order."""
    attn = layer.self_attn
    groups = [(f"{prefix}.input_layernorm", [f"{prefix}.self_attn.{n}_proj" for n in "qkv"], "attn_in")]
    if attn.v_proj.weight.shape[0] == attn.o_proj.weight.shape[1]:  # v -> o only without GQA
        groups.append((f"{prefix}.self_attn.v_proj", [f"{prefix}.self_attn.o_proj"], "o_in"))
    groups.append((f"{prefix}.post_attention_layernorm", [f"{prefix}.mlp.gate_proj", f"{prefix}.mlp.up_proj"],
                   "mlp_in"))
    groups.append((f"{prefix}.mlp.up_proj", [f"{prefix}.mlp.down_proj"], "down_in"))
    return groups


def _search_scales(prev: str, names: list[str], weight: Any, st: InputStats, block: int, n_grid: int,
                   symmetric: bool) -> tuple[ScaleStep, Any]:
    """Grid-search α for one group: weight [out, C] (the group's linears stacked), st: their input.
    Loss: mean squared error of the linears' outputs over all calibration tokens, computed exactly from
    the Gram matrix: ||X ΔW^T||² = sum((ΔW G) ⊙ ΔW) with ΔW = Q(W·s)/s - W."""
    import torch

    norm = float(st.tokens * weight.shape[0])
    best: tuple[float, float, Any] = (float("inf"), 0.0, torch.ones_like(st.abs_mean))
    loss_rtn = float("nan")
    for k in range(n_grid):
        alpha = k / n_grid
        s = st.abs_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        delta = fake_quant(weight * s, block, symmetric).div_(s).sub_(weight)
        loss = float(((delta @ st.gram) * delta).sum()) / norm
        loss_rtn = loss if k == 0 else loss_rtn
        if loss < best[0]:
            best = (loss, alpha, s)
    return ScaleStep(prev, tuple(names), best[1], loss_rtn, best[0]), best[2].float()


def _apply_scale(model: Any, step: ScaleStep, scale: Any) -> None:
    prev = _module(model, step.prev)
    if hasattr(prev, "variance_epsilon") or prev.weight.ndim == 1:  # RMSNorm: output channels = weight
        prev.weight.div_(scale)
    else:  # a Linear whose output rows feed the group
        prev.weight.div_(scale[:, None])
        if getattr(prev, "bias", None) is not None:
            prev.bias.div_(scale)
    for name in step.linears:
        _module(model, name).weight.mul_(scale[None, :])


def block_grams(gram: Any, block: int) -> Any:
    """[C, C] -> [G, block, block]: the Gram matrix of each input block (a ragged tail zero-padded)."""
    import torch

    pad = -gram.shape[0] % block
    if pad:
        gram = torch.nn.functional.pad(gram, (0, pad, 0, pad))
    g = gram.shape[0] // block
    return gram.reshape(g, block, g, block).diagonal(dim1=0, dim2=2).permute(2, 0, 1).contiguous()


def _search_clip(weight: Any, gram: Any, block: int, n_grid: int, symmetric: bool) -> Any:
    """Best max |w| per (output channel, block): float32 [out, ceil(in/block)]. Error of a block: the squared
    error of its partial outputs over all calibration tokens, Δ G_block Δ^T (exact, from the Gram)."""
    import torch

    gb = block_grams(gram, block)  # [G, B, B]
    w = padded_blocks(weight, block)  # [o, G, B]
    max0 = w.abs().amax(-1, keepdim=True)  # [o, G, 1]
    best, best_err = max0.clone(), torch.full_like(max0, float("inf"))
    for k in range(n_grid // 2):
        max_val = max0 * (1 - k / n_grid)
        d = fake_quant_blocks(torch.clamp(w, -max_val, max_val), symmetric).sub_(w).transpose(0, 1)  # [G, o, B]
        err = (torch.bmm(d, gb) * d).sum(-1).T[..., None]  # [o, G, 1]
        better = err < best_err
        best_err, best = torch.where(better, err, best_err), torch.where(better, max_val, best)
    return best[..., 0].float()


def _apply_clip(weight: Any, max_val: Any, block: int) -> None:
    in_f = weight.shape[1]
    bound = max_val.repeat_interleave(block, dim=1)[:, :in_f]  # [out, in]: each block's bound per column
    weight.copy_(weight.clamp(min=-bound, max=bound))
