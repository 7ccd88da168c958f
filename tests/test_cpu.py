"""CPU provenance: model name and the ISA flags that select MLAS kernels."""

from __future__ import annotations

import pytest

from evalsuite.cpu import cpu_info, cpu_key, parse_cpuinfo

AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse avx avx2 fma\n\nprocessor\t: 1\n"
VNNI = "model name\t: AMD EPYC 9B14\nflags\t\t: avx avx2 avx512f avx512bw avx512_vnni avx_vnni\n"


@pytest.mark.parametrize(("text", "model", "isa"), [
    (AVX2, "AMD EPYC 7B12", ["avx2"]),
    (VNNI, "AMD EPYC 9B14", ["avx2", "avx512f", "avx512_vnni", "avx_vnni"]),
    ("flags : amx_tile avx2 amx_int8\n", None, ["avx2", "amx_tile", "amx_int8"]),
], ids=["avx2-only", "avx512-vnni", "amx-no-model"])
def test_parse_cpuinfo(text: str, model: str | None, isa: list[str]) -> None:
    info = parse_cpuinfo(text)
    assert info["isa"] == isa
    if model is not None:
        assert info["model"] == model
    assert isinstance(info["model"], str) and info["model"]


def test_this_machine_is_described() -> None:
    info = cpu_info()
    assert info["machine"] and isinstance(info["cores"], int)
    assert cpu_key().startswith(str(info["machine"]))
