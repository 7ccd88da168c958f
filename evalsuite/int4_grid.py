"""The int4 grid of ONNX Runtime's MatMulNBits quantizer, emulated bit for bit in torch.

How the model builder quantizes (onnxruntime-genai 0.18, `--precision int4`, default method): it
emits float MatMuls, then `to_nbits` runs onnxruntime's `MatMulNBitsQuantizer(algo_config=None)`,
i.e. `DefaultWeightOnlyQuantizer.qbits_block_quant`, which calls the MLAS kernel
`quantize_matmul_4bits(packed, W[K, N], scales, zero_points, block_size, N, K, is_symmetric)` on the
float32 MatMul weight (the HF `nn.Linear.weight[out, in]` transposed). Blocks run along K: for every
output channel, `block_size` consecutive input channels (one block = a run of a row of the HF
weight); K is zero-padded up to a multiple of `block_size`.

Symmetric (`is_symmetric=true`, what we ship), per block, all in float32:
    vmax  = max if |max| > |min| else min      (signed extreme; on a tie the negative one wins)
    scale = vmax / -8                           (so vmax itself gets code -8 exactly)
    r     = 1 / scale   (0 if scale == 0)
    q     = clamp(roundf(w * r + 8), 0, 15)     (two float32 roundings: the product, then + 8;
                                                 roundf = half away from zero)
    dequantized w = (q - 8) * scale             codes -8..7, stored as uint4 q with implicit zp 8
Note `roundf(w * r + 8)` is not `round(w / scale)`: ties go up (2.5 -> 3, -2.5 -> -2) and values a
few ulps under x.5 round up after the `+ 8` (2.4999998 -> 3). `fake_quant` reproduces all of that;
tests/test_awq.py checks it against the kernel with max abs diff 0 (including constructed ties).

Asymmetric (`is_symmetric=false`): `min = min(min, 0)`, `max = max(max, 0)`,
`scale = (max - min) / 15`, `zp = clamp(roundf(-min / scale), 0, 15)` stored as packed uint4,
`q = clamp(roundf(w / scale + zp), 0, 15)`. The builder then types the model UINT4, and the
resulting model fails to load in onnxruntime-genai 0.18 (uint8 Gather type error), so only the
symmetric grid matters here.
"""

from __future__ import annotations

import torch

QMIN, QMAX, ZERO = 0, 15, 8  # stored uint4 range and the implicit symmetric zero point


def _blocks(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """[out, in] -> [out, n_blocks, block_size] float32, zero-padding `in` like the quantizer."""
    out_f, in_f = weight.shape
    pad = -in_f % block_size
    w = weight.detach().float()
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(out_f, (in_f + pad) // block_size, block_size)


def block_scales(blocks: torch.Tensor) -> torch.Tensor:
    """Symmetric scales [..., 1] for blocks [..., block_size]: signed extreme / -8."""
    hi = blocks.amax(dim=-1, keepdim=True)
    lo = blocks.amin(dim=-1, keepdim=True)
    vmax = torch.where(hi.abs() > lo.abs(), hi, lo)
    return vmax / -8.0


def quantize_blocks(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored uint4 codes q [..., block_size] (int64, 0..15) and scales [..., 1] (float32)."""
    scale = block_scales(blocks)
    recip = torch.where(scale != 0, 1.0 / scale, torch.zeros_like(scale))
    t = blocks * recip  # float32 product, rounded (no FMA: separate eager ops)
    t = t + float(ZERO)  # float32 sum, rounded
    floor = torch.floor(t)
    # roundf (half away from zero) for t >= 0, exactly: the fractional part is exact in float32.
    # t < 0 (w * r a few ulps under -8) gives <= 0 either way and is clamped to 0.
    q = floor + (t - floor >= 0.5).to(t.dtype)
    return q.clamp(QMIN, QMAX).to(torch.int64), scale


def fake_quant_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """Dequantized blocks [..., block_size] float32: (q - 8) * scale."""
    q, scale = quantize_blocks(blocks)
    return (q - ZERO).to(torch.float32) * scale


def quantize(weight: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HF weight [out, in] -> (codes int64 [out, n_blocks, block_size] in 0..15, scales [out, n_blocks])."""
    q, scale = quantize_blocks(_blocks(weight, block_size))
    return q, scale[..., 0]


def fake_quant(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """Dequantized int4 weight [out, in] (float32), exactly as ONNX Runtime's quantizer produces it."""
    out_f, in_f = weight.shape
    deq = fake_quant_blocks(_blocks(weight, block_size))  # [out, n_blocks, block_size]
    return deq.reshape(out_f, -1)[:, :in_f]
