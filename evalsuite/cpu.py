"""The CPU a number was computed on: model name and the ISA flags that change ONNX Runtime's MLAS
kernels (and so the last bits of int4 results).

MLAS picks its int4 (MatMulNBits) and fp32 GEMM kernels by instruction set at run time: AVX2,
AVX-512F, AVX-512 VNNI, AVX-VNNI and AMX each have their own tiling and accumulation order, so
the same model and tokens give logits that differ in the last bits between CPUs. Results record
this so a reader can tell why two runs differ; the journal key includes it so per-window records
from one CPU are never reused on another.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

MLAS_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
CPUINFO = Path("/proc/cpuinfo")


def parse_cpuinfo(text: str) -> dict[str, object]:
    """`{"model": str, "isa": [flags]}` from the text of /proc/cpuinfo (first processor)."""
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"model": model or platform.processor() or platform.machine(),
            "isa": [f for f in MLAS_FLAGS if f in flags]}


@functools.cache
def cpu_info() -> dict[str, object]:
    """This machine's CPU model, ISA flags relevant to MLAS, architecture and core count."""
    import os

    try:
        info = parse_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        info = {"model": platform.processor() or platform.machine(), "isa": []}
    return {**info, "machine": platform.machine(), "cores": os.cpu_count()}


def cpu_key() -> str:
    """Short label used in cache keys and logs, e.g. 'x86_64 avx2+avx512f+avx512_vnni'."""
    info = cpu_info()
    isa = info["isa"]
    flags = "+".join(isa) if isinstance(isa, list) and isa else "baseline"
    return f"{info['machine']} {flags}"
