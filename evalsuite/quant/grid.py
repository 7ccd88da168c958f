"""The int4 grid of ONNX Runtime's MatMulNBits quantizer, emulated in torch.

The model builder quantizes every MatMul weight with onnxruntime's `quantize_matmul_4bits` (MLAS
blockwise quantization). Measured against that kernel (tests/test_awq_search.py), its symmetric
mode is: blocks of `block_size` consecutive input channels per output channel (rows of an HF
`nn.Linear` weight `[out, in]`; a ragged last block is zero-padded); `vmax` = the block's max if
|max| > |min|, else its min (so on a tie the negative extreme wins); `scale = vmax / -8`;
`r = 1 / scale`; stored code `q = clamp(roundf(w * r + 8), 0, 15)` with both float32 operations
rounded separately and `roundf` rounding halves away from zero; dequantized `(q - 8) * scale`.
That is not `round(w / scale)`: an exact half rounds up (2.5 -> 3, -2.5 -> -2) and a value a few
ulps under a half can round up after the `+ 8` (measured: 2 of 4.2M random weights differ).
So the largest-magnitude value is represented exactly (code -8) and the grid is [-8, 7] x scale.

Asymmetric mode (zero points, `is_symmetric=False`; MLAS `range2scalezp`): lo = min(block min, 0),
hi = max(block max, 0), `scale = (hi - lo) / 15`, zero point `zp = roundf(-lo / scale)` clamped to
[0, 15] (`lo` itself when scale is 0), `q = clamp(roundf(w * r + zp), 0, 15)`, dequantized
`(q - zp) * scale`. Also bit-equal to the quantizer (tests/test_awq_search.py).
"""

from __future__ import annotations

from typing import Any


def padded_blocks(weight: Any, block_size: int) -> Any:
    """[out, in] -> [out, ceil(in/block), block], the last block zero-padded (as onnxruntime does:
    SmolLM2's 576-wide inputs make 4.5 blocks of 128; zeros never change a block's max or min sign)."""
    import torch

    out_f, in_f = weight.shape
    pad = -in_f % block_size
    if pad:
        weight = torch.nn.functional.pad(weight, (0, pad))
    return weight.reshape(out_f, -1, block_size)


def fake_quant(weight: Any, block_size: int, symmetric: bool = True) -> Any:
    """Dequantized int4 weight [out, in] (float32), exactly as ONNX Runtime would compute it."""
    out_f, in_f = weight.shape
    return fake_quant_blocks(padded_blocks(weight, block_size), symmetric).reshape(out_f, -1)[:, :in_f]


def _roundf(t: Any) -> Any:
    """C roundf (halves away from zero) for t >= 0; values below 0 only ever clamp to code 0."""
    import torch

    floor = torch.floor(t)
    return floor + (t - floor >= 0.5).to(t.dtype)  # t - floor is exact


def fake_quant_blocks(blocks: Any, symmetric: bool = True) -> Any:
    """Same on [..., block_size] float32 blocks (last axis = one block)."""
    import torch

    hi, lo = blocks.amax(dim=-1, keepdim=True), blocks.amin(dim=-1, keepdim=True)
    if not symmetric:
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
        scale = (hi - lo) / 15.0
        zp_fp = torch.where(scale != 0, 0.0 - lo / torch.where(scale == 0, 1.0, scale), lo)
        zp = torch.where(zp_fp < 0, 0.0, torch.where(zp_fp > 15.0, 15.0, _roundf(zp_fp)))
        recip = torch.where(scale == 0, torch.zeros_like(scale), 1.0 / scale)
        q = _roundf(blocks * recip + zp).clamp_(0.0, 15.0)
        return q.sub_(zp).mul_(scale)
    vmax = torch.where(hi.abs() > lo.abs(), hi, lo)
    scale = vmax / -8.0
    recip = torch.where(scale == 0, torch.zeros_like(scale), 1.0 / scale)
    t = blocks * recip + 8.0  # two float32 roundings (eager torch does not fuse them), as in MLAS
    return _roundf(t).clamp_(0.0, 15.0).sub_(8.0).mul_(scale)
