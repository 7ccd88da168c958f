"""Batched windows: the same numbers as one window at a time, within stated tolerances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evalsuite.data.windows import plan_windows
from evalsuite.models.onnx_build import build_onnx
from evalsuite.models.onnx_files import check_loadable
from evalsuite.models.ort_runner import OrtRunner
from evalsuite.models.torch_runner import TorchRunner
from evalsuite.scoring.lanes import batch_groups, new_lane, score_lanes

# Batching changes the GEMM row count M (b x m instead of m), so MLAS and torch may tile and sum in
# another order on other CPUs and shapes. Measured here (tiny model, 2-core AMD EPYC with AVX-512
# VNNI, batch 3 and 8): 0 difference in every column for ORT fp32, ORT int4 (NLL, KL, Δp) and torch.
# 1e-5 nats per token is ~1e-6 relative in PPL, 100x under the 1e-4 ORT-vs-torch parity tolerance.
BATCH_ATOL = 1e-5


def test_batch_groups_follow_window_shapes() -> None:
    windows = plan_windows(1000, 128, 64)  # first window 128 targets, then 64s, last ragged
    groups = batch_groups(windows, list(range(len(windows))), 4)
    assert groups[0] == [0]  # the first window (all positions scored) runs alone
    assert all(len(g) <= 4 for g in groups) and [i for g in groups for i in g] == list(range(len(windows)))
    for g in groups:
        assert len({(windows[i].n_inputs, windows[i].n_targets) for i in g}) == 1
    assert batch_groups(windows, [1, 3, 5, 7, 9], 2) == [[1, 3], [5, 7], [9]]  # a shard's indices
    assert batch_groups(windows, list(range(len(windows))), 1) == [[i] for i in range(len(windows))]


def lanes_of(runners: list[object], n: int) -> list:  # type: ignore[type-arg]
    return [new_lane(r, f"v{i}", i > 0, n) for i, r in enumerate(runners)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def builds(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("batch-cache")
    fp32 = build_onnx(tiny_llama_dir, "fp32", cache=cache)
    int4 = build_onnx(tiny_llama_dir, "int4", {"block_size": "32", "accuracy_level": "4", "is_symmetric": "true"},
                      cache=cache)
    return fp32, int4


@pytest.mark.parametrize("batch", [3, 8])
def test_batched_scoring_matches_one_window_at_a_time(builds: tuple[Path, Path], tiny_llama_dir: Path,
                                                      batch: int) -> None:
    fp32, int4 = builds
    tokens = np.random.default_rng(3).integers(0, 300, 700)
    windows = plan_windows(700, 96, 48)
    runners = [OrtRunner(fp32, threads=2), OrtRunner(int4, threads=2)]
    one, many = lanes_of(runners, 700), lanes_of(runners, 700)
    score_lanes(one, tokens, windows, list(range(len(windows))))
    score_lanes(many, tokens, windows, list(range(len(windows))), batch_size=batch)
    for a, b in zip(one, many, strict=True):
        assert a.error is None and b.error is None
        np.testing.assert_allclose(b.cols[1:], a.cols[1:], rtol=0, atol=BATCH_ATOL)  # NLL, top-k, KL, Δp
    ref_one, ref_many = lanes_of([TorchRunner(tiny_llama_dir, threads=2)], 700), \
        lanes_of([TorchRunner(tiny_llama_dir, threads=2)], 700)
    score_lanes(ref_one, tokens, windows, list(range(len(windows))))
    score_lanes(ref_many, tokens, windows, list(range(len(windows))), batch_size=batch)
    np.testing.assert_allclose(ref_many[0].cols[1:, 0], ref_one[0].cols[1:, 0], rtol=0, atol=BATCH_ATOL)


def test_cuda_build_target_is_part_of_the_key(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`-e cuda` builds (fp16 and int4) run without a GPU; their cache entries differ from the CPU ones
    and they load in ONNX Runtime (scoring them needs onnxruntime-gpu and a GPU)."""
    cpu = build_onnx(tiny_llama_dir, "fp32", cache=tmp_path)
    cuda = build_onnx(tiny_llama_dir, "fp16", cache=tmp_path, execution="cuda")
    assert cpu != cuda and (cuda / "model.onnx").is_file()
    assert '"execution": "cuda"' in (cuda / "evalsuite_build.json").read_text()
    int4 = {"block_size": "32", "accuracy_level": "4", "is_symmetric": "true"}
    int4_cpu = build_onnx(tiny_llama_dir, "int4", int4, cache=tmp_path)
    int4_cuda = build_onnx(tiny_llama_dir, "int4", int4, cache=tmp_path, execution="cuda")
    assert len({cpu, cuda, int4_cpu, int4_cuda}) == 4  # four builds, four cache entries
    assert '"execution": "cuda"' in (int4_cuda / "evalsuite_build.json").read_text()
    for folder in (cuda, int4_cuda):  # a sound graph: ONNX Runtime's CPU provider opens it
        check_loadable(folder / "model.onnx")
