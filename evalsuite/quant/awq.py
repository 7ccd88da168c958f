"""AWQ (activation-aware weight quantization, Lin et al. 2023) for Llama-family models, CPU, torch.

Search and apply are separate: `search_awq` returns an `AwqPlan` (per-channel scales and per-block
clip values, as data), `apply_awq` replays a plan on a model. Both are deterministic.

Per decoder layer, on the calibration activations that reach it (outputs of the already
transformed previous layers):
1. Scales. For each group of linears sharing an input — input RMSNorm -> q/k/v (loss on the
   attention block output), post-attention RMSNorm -> gate/up (loss on the MLP output),
   up -> down (loss on down's output) and v -> o when v and o have the same width (not under
   grouped-query attention, e.g. SmolLM2's 9 heads / 3 KV heads) — try s = mean|x|^α per input
   channel, α in {0, 1/n_grid, ..., (n_grid-1)/n_grid}, normalised by sqrt(max·min); quantize
   W·s with the exact int4 grid (`grid.py`), divide by s, keep the α with the lowest output
   MSE. Fold: the previous op's weight (or output rows) / s, the linears' input columns x s. This
   leaves the fp32 function unchanged and moves quantization error off salient channels.
2. Clips. For every linear but q/k: per output channel and block, shrink the block's max |w| by
   ratios 1, 1-1/n_grid, ..., 0.5 and keep the one whose quantized partial output (that block's
   inputs only) has the lowest MSE; apply by clamping the fp32 weights to ±max.

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

LOSS_SEQS = 2  # calibration sequences used for the scale-search losses (statistics use all of them)
CLIP_TOKENS = 512  # tokens sampled for the clip search (llm-awq's n_sample_token)
OC_CHUNK = 64  # output channels per clip-search chunk (bounds memory)


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

    def save(self, folder: Path) -> None:
        """`awq_plan.json` (structure) + `awq_plan.safetensors` (tensors). No pickle."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"scale.{i}": s.contiguous() for i, s in enumerate(self.scales)}
        tensors |= {f"clip.{name}": c.contiguous() for name, c in self.clips.items()}
        save_file(tensors, str(folder / "awq_plan.safetensors"))
        meta = {"block_size": self.block_size, "n_grid": self.n_grid, "clips": sorted(self.clips),
                "steps": [vars(s) | {"linears": list(s.linears)} for s in self.steps]}
        (folder / "awq_plan.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> AwqPlan:
        from safetensors.torch import load_file

        meta = json.loads((folder / "awq_plan.json").read_text())
        tensors = load_file(str(folder / "awq_plan.safetensors"))
        steps = [ScaleStep(**(s | {"linears": tuple(s["linears"])})) for s in meta["steps"]]
        return cls(meta["block_size"], meta["n_grid"], steps, [tensors[f"scale.{i}"] for i in range(len(steps))],
                   {name: tensors[f"clip.{name}"] for name in meta["clips"]})


def decoder_layers(model: Any) -> Any:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(layers[0], "self_attn") or not hasattr(layers[0].mlp, "gate_proj"):
        raise ModelError(f"AWQ supports Llama-architecture models (q/k/v/o, gate/up/down, RMSNorms); "
                         f"{type(model).__name__} is not one; use method = 'rtn'")
    return layers


def search_awq(model: Any, calib_ids: Any, block_size: int, n_grid: int = 20,
               on_layer: Callable[[int], None] | None = None) -> AwqPlan:
    """Search scales and clips on calibration token ids [n_samples, seq_len] (int64). The model is
    left unchanged. Deterministic: no sampling beyond fixed strides. `on_layer(1)` after each layer."""
    import copy

    import torch

    decoder_layers(model)
    work = copy.deepcopy(model).float().eval()
    layers = decoder_layers(work)
    plan = AwqPlan(block_size, n_grid)
    with torch.inference_mode():
        x = work.model.embed_tokens(calib_ids)
        rope = work.model.rotary_emb(x, torch.arange(calib_ids.shape[1])[None])  # cos/sin [1, seq, d]
        for i, layer in enumerate(layers):
            prefix = f"model.layers.{i}"
            for step, scale in _search_layer_scales(layer, prefix, x, rope, block_size, n_grid):
                _apply_scale(work, step, scale)
                plan.steps.append(step)
                plan.scales.append(scale)
            x_next, inputs = _forward_capturing(layer, prefix, x, rope)  # fp32 output of the scaled layer
            for name, inp in inputs.items():
                plan.clips[name] = _search_clip(_module(work, name).weight, inp, block_size, n_grid)
            x = x_next
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


def _module(model: Any, name: str) -> Any:
    return model.get_submodule(name)


def _layer_forward(layer: Any, x: Any, rope: Any) -> Any:
    out = layer(x, attention_mask=None, position_embeddings=rope, use_cache=False)
    return out[0] if isinstance(out, tuple) else out


def _attn(layer: Any, h: Any, rope: Any) -> Any:
    return layer.self_attn(hidden_states=h, position_embeddings=rope, attention_mask=None)[0]


def _search_layer_scales(layer: Any, prefix: str, x: Any, rope: Any, block: int, n_grid: int) -> Any:
    """Yield (ScaleStep, scales) for each group of the layer, in the order they must be applied."""
    # Each group's input is recomputed after the previous group's scales were folded in.
    attn, mlp = layer.self_attn, layer.mlp
    yield _search_group(f"{prefix}.input_layernorm", [f"{prefix}.self_attn.{n}_proj" for n in "qkv"],
                        [attn.q_proj, attn.k_proj, attn.v_proj], layer.input_layernorm(x),
                        lambda t: _attn(layer, t, rope), block, n_grid)
    if attn.v_proj.weight.shape[0] == attn.o_proj.weight.shape[1]:  # v -> o only without GQA
        ctx = _capture_input(attn.o_proj, lambda: _attn(layer, layer.input_layernorm(x), rope))
        yield _search_group(f"{prefix}.self_attn.v_proj", [f"{prefix}.self_attn.o_proj"], [attn.o_proj], ctx,
                            attn.o_proj, block, n_grid)
    h2 = layer.post_attention_layernorm(x + _attn(layer, layer.input_layernorm(x), rope))
    yield _search_group(f"{prefix}.post_attention_layernorm", [f"{prefix}.mlp.gate_proj", f"{prefix}.mlp.up_proj"],
                        [mlp.gate_proj, mlp.up_proj], h2, mlp, block, n_grid)
    inter = mlp.act_fn(mlp.gate_proj(h2)) * mlp.up_proj(h2)
    yield _search_group(f"{prefix}.mlp.up_proj", [f"{prefix}.mlp.down_proj"], [mlp.down_proj], inter,
                        mlp.down_proj, block, n_grid)


def _capture_input(module: Any, run: Any) -> Any:
    seen: list[Any] = []

    def hook(_m: Any, args: tuple[Any, ...]) -> None:
        seen.append(args[0])

    handle = module.register_forward_pre_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


def _search_group(prev: str, names: list[str], linears: list[Any], inp: Any, fn: Any, block: int,
                  n_grid: int) -> tuple[ScaleStep, Any]:
    """Grid-search α for one group. inp: the group's input [n, seq, C]; fn: input -> group output."""
    import torch

    sub = inp[:LOSS_SEQS]
    target = fn(sub)
    x_mean = inp.abs().reshape(-1, inp.shape[-1]).mean(0)  # [C] activation magnitude per channel
    originals = [lin.weight.detach().clone() for lin in linears]
    best: tuple[float, float, Any] = (float("inf"), 0.0, torch.ones_like(x_mean))
    loss_rtn = float("nan")
    try:
        for k in range(n_grid):
            alpha = k / n_grid
            s = x_mean.pow(alpha).clamp(min=1e-4)
            s = s / (s.max() * s.min()).sqrt()
            for lin, w in zip(linears, originals, strict=True):
                lin.weight.copy_(fake_quant(w * s, block) / s)
            loss = float((fn(sub) - target).float().pow(2).mean())
            loss_rtn = loss if k == 0 else loss_rtn
            if loss < best[0]:
                best = (loss, alpha, s.clone())
    finally:
        for lin, w in zip(linears, originals, strict=True):
            lin.weight.copy_(w)
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


def _forward_capturing(layer: Any, prefix: str, x: Any, rope: Any) -> tuple[Any, dict[str, Any]]:
    """The layer's output and the inputs [tokens, in] of its clipped linears (all but q/k), sampled
    at evenly spaced tokens, from one forward."""
    import torch

    names = {"self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
    seen: dict[str, Any] = {}

    def keep(name: str) -> Any:
        def hook(_m: Any, args: tuple[Any, ...]) -> None:  # returning None keeps the input unchanged
            seen.setdefault(name, args[0].reshape(-1, args[0].shape[-1]))
        return hook

    hooks = [layer.get_submodule(n).register_forward_pre_hook(keep(n)) for n in names]
    try:
        out = _layer_forward(layer, x, rope)
    finally:
        for hk in hooks:
            hk.remove()
    total = next(iter(seen.values())).shape[0]
    pick = torch.linspace(0, total - 1, min(CLIP_TOKENS, total)).long()  # evenly spaced, deterministic
    return out, {f"{prefix}.{n}": t[pick] for n, t in seen.items()}


def _search_clip(weight: Any, inp: Any, block: int, n_grid: int) -> Any:
    """Best max |w| per (output channel, block): float32 [out, ceil(in/block)]."""
    import torch

    out_f = weight.shape[0]
    x = padded_blocks(inp, block).transpose(0, 1)  # [G, t, B]; zero inputs in a padded tail
    best_all = []
    for lo in range(0, out_f, OC_CHUNK):
        w = padded_blocks(weight[lo : lo + OC_CHUNK], block)  # [o, G, B]
        ref = torch.bmm(x, w.permute(1, 2, 0))  # [G, t, o]: each block's partial outputs
        max0 = w.abs().amax(-1, keepdim=True)  # [o, G, 1]
        best, best_err = max0.clone(), torch.full_like(max0, float("inf"))
        for k in range(n_grid // 2):
            max_val = max0 * (1 - k / n_grid)
            q = fake_quant_blocks(torch.clamp(w, -max_val, max_val))
            err = (torch.bmm(x, q.permute(1, 2, 0)) - ref).pow(2).mean(1).T[..., None]  # [o, G, 1]
            better = err < best_err
            best_err, best = torch.where(better, err, best_err), torch.where(better, max_val, best)
        best_all.append(best[..., 0])
    return torch.cat(best_all).float()


def _apply_clip(weight: Any, max_val: Any, block: int) -> None:
    in_f = weight.shape[1]
    bound = max_val.repeat_interleave(block, dim=1)[:, :in_f]  # [out, in]: each block's bound per column
    weight.copy_(weight.clamp(min=-bound, max=bound))
