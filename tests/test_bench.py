"""`evalsuite bench` measures what it says: each child's own memory, full batches, honest labels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.bench import BATCHES, batch_stream_length, verdicts
from evalsuite.data.windows import plan_windows
from evalsuite.scoring.lanes import batch_groups


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's; elsewhere ru_maxrss")
def test_child_peak_rss_is_its_own_not_the_parents() -> None:
    """ru_maxrss survives fork + exec, so every child of a 3.5 GB parent reported >= 3.5 GB."""
    ballast = bytearray(600 * 2**20)
    ballast[:: 4096] = b"\x01" * len(ballast[:: 4096])  # touch every page: 600 MB resident here
    code = "from evalsuite.bench import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child_mb = float(out.stdout)
    assert 5 < child_mb < 300, child_mb  # python + numpy, far under this process's 600 MB ballast
    del ballast


@pytest.mark.parametrize(("window", "stride", "at_least"), [
    (512, 256, 2048), (1024, 512, 1024), (512, 512, 100), (96, 48, 5000), (512, 256, 2561)],
    ids=["default-suite", "gemma-suite", "stride-equals-window", "many-groups", "exact-fit"])
def test_batch_stream_fills_every_batch(window: int, stride: int, at_least: int) -> None:
    n = batch_stream_length(window, stride, at_least)
    assert at_least <= n <= max(at_least, window + 1) + 2 * BATCHES[-1] * stride  # the shortest that fits
    windows = plan_windows(n, window, stride)
    for batch in BATCHES:
        groups = batch_groups(windows, list(range(len(windows))), batch)
        # Every group is a full batch; only a first window of its own shape may run alone.
        assert all(len(g) == batch or g == [0] for g in groups), (batch, [len(g) for g in groups])
        assert sum(len(g) for g in groups) >= BATCHES[-1]


def test_batch_rows_are_compared_with_batch_one_not_with_fp32() -> None:
    runners = [{"runner": "ORT base", "tokens_per_s": 700.0}, {"runner": "ORT rtn", "tokens_per_s": 350.0}]
    for lane, speeds in (("ORT base", (600.0, 900.0)), ("torch reference", (300.0, 150.0))):
        runners += [{"runner": f"{lane}, batch {n} (2561 tok)", "lane": lane, "batch": n, "tokens_per_s": v}
                    for n, v in zip((1, 8), speeds, strict=True)]
    b = {"cpu": {"model": "x", "cores": 2, "isa": []}, "overhead": {"ratio": 1.0}, "runners": runners,
         "rss_long": {}, "batch_tokens": 2561}
    text = "\n".join(verdicts(b))
    assert "ORT rtn: 350 tok/s = 0.50 x fp32" in text
    assert "batch 8 (2561 tok): 900" not in text and "x fp32 (faster" not in text
    assert "ORT base: batch 1 600 tok/s; batch 8 900 tok/s = 1.50 x batch 1 (2561 tokens)" in text
    assert "torch reference: batch 1 300 tok/s; batch 8 150 tok/s = 0.50 x batch 1 (2561 tokens)" in text


def test_ceiling_counts_the_models_matmul_flops_on_the_plan(fp32_dir: object) -> None:
    """The ceiling's FLOPs follow from the graph's weight shapes and the window plan (decoder on every
    forwarded token, lm_head on scored ones), and its lines name each lane's fraction."""
    from pathlib import Path

    from evalsuite.bench_ceiling import ceiling, ceiling_lines, weight_shapes
    from evalsuite.models.onnx_files import resolve_onnx

    model = resolve_onnx(Path(str(fp32_dir)))
    shapes, head = weight_shapes(model)
    assert shapes and head is not None and head[1] >= 256  # the tiny Llama: its linears and a vocab-wide head
    plan = plan_windows(100, 64, 32)
    scored = sum(w.end - w.first_target for w in plan)
    c = ceiling(model, 64, 32, len(plan), scored, 1)
    want = (len(plan) * sum(2 * 64 * k * n for k, n in shapes) + 2 * scored * head[0] * head[1]) / scored / 1e9
    assert c["gflop_per_scored_token"] == pytest.approx(want) and c["tokens_per_s"] > 0 and c["gflops"] > 0
    lines = ceiling_lines(c, [{"runner": "ORT base", "tokens_per_s": c["tokens_per_s"] / 2}])
    assert "= 0.50 of the fp32 ceiling (MISSES the 0.8 target)" in lines[1]


def test_read_pass_bound_counts_the_suites_extra_time_in_passes() -> None:
    from evalsuite.bench_ceiling import read_pass, read_pass_line

    bound = read_pass(64, 4096, repeats=2)
    assert bound["mb"] == 64 * 4096 * 4 / 1e6 and bound["seconds"] > 0
    assert bound["gb_per_s"] == pytest.approx(bound["mb"] / 1e3 / bound["seconds"])
    fixed = {**bound, "seconds": 0.05}
    line = read_pass_line(fixed, {"suite_seconds": 3.0, "bare_seconds": 2.5}, windows=2)
    assert "+250 ms per window" in line and "+5.0 passes" in line  # (3.0 - 2.5) / 2 windows / 0.05 s


def test_task_speed_rows_and_a_failing_lmeval_child(tiny_llama_dir: object, fp32_dir: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Task rows on the tiny model (2 HellaSwag examples): both lanes timed both ways, the suite path
    forwards fewer tokens than lm-eval's whole requests; a Python without lm-eval is one error line."""
    from pathlib import Path

    from evalsuite.bench_tasks import LMEVAL_ENV, task_lines, task_speed

    monkeypatch.setenv(LMEVAL_ENV, sys.executable)  # this venv has no lm_eval: the child fails cleanly
    t = task_speed(Path(str(tiny_llama_dir)), Path(str(fp32_dir)), 1, 2)
    assert t["examples"] == 2 and t["requests"] == 8 and t["forwarded_tokens"] < t["lmeval_forwarded_tokens"]
    assert set(t["lanes"]) == {"torch reference", "ORT base"}
    assert all(lane["examples_per_s"] > 0 and lane["whole_request_examples_per_s"] > 0 for lane in t["lanes"].values())
    assert "lm-eval child failed" in t["lmeval"]["error"]
    lines = task_lines(t)
    assert len(lines) == 4 and "lm-eval HF: lm-eval child failed" in lines[-1]


def test_bench_refuses_a_missing_lmeval_python_before_model_work(tmp_path: object) -> None:
    import os

    env = os.environ | {"EVALSUITE_LMEVAL_PYTHON": "/nonexistent/python"}
    proc = subprocess.run([sys.executable, "-m", "evalsuite", "bench"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 2 and "EVALSUITE_LMEVAL_PYTHON" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_stage_timing_reads_start_and_done_lines_and_skips_the_rest() -> None:
    from evalsuite.bench_stages import parse

    events = [(0.9, "some warning"), (1.0, "[gate] tokenize datasets: start"),
              (1.5, "[gate] tokenize datasets: 3/9 tok, 0 s, ETA 1 s"), (2.5, "[gate] tokenize datasets: done in 1 s"),
              (2.6, "[gate] score base/ort · wikitext2: start (2,047 tok)"),
              (6.6, "[gate] score base/ort · wikitext2: done in 4 s, 2,047/2,047 tok"),
              (6.7, "[gate] task arc_easy · base/ort: start (40 examples)"),
              (9.7, "[gate] task arc_easy · base/ort: done in 3 s, 40/40 examples")]
    run = parse(events, 10.0, 1)
    assert [(s.label, round(s.seconds, 6)) for s in run.stages] == [
        ("tokenize datasets", 1.5), ("score base/ort · wikitext2", 4.0), ("task arc_easy · base/ort", 3.0)]
    assert (run.before_first, run.to_first_window, round(run.after_last, 6), run.exit) == (1.0, 2.6, 0.3, 1)
    none = parse([(0.5, "[eval] resolve: start")], 2.0, 2)  # a stage that never ended, nothing scored
    assert (none.stages, none.to_first_window, none.before_first, none.after_last) == ([], None, 0.5, 0.0)


def test_stage_timing_of_a_real_child(tmp_path: Path) -> None:
    """`timed` runs evalsuite itself: a usage error has no stages and exits 2."""
    from evalsuite.bench_stages import timed

    run = timed(["eval", "--config", str(tmp_path / "missing.toml")])
    assert run.exit == 2 and run.stages == [] and run.seconds > 0
