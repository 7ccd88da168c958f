"""The task checks can fail: on the tiny Llama, a variant identical to the base passes every task
check (0 flips, Δacc 0) and a deliberately broken one (its lm_head scrambled) fails the flip-rate
limit on MMLU (one-token letter choices: a random model's preference is its logits there, where
on copa the choices' token counts decide); a results file with a task's scores edited fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evalsuite.cli import main as main_cli


def broken_copy(fp32_dir: Path, out: Path) -> Path:
    """The fp32 build with its lm_head columns permuted: every token scored with another token's row."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_dir / "model.onnx"))
    (head,) = [i for i in model.graph.initializer if i.name.startswith("lm_head")]
    weight = numpy_helper.to_array(head)  # [hidden, vocab]
    perm = np.random.default_rng(0).permutation(weight.shape[1])
    head.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weight[:, perm]), head.name))
    out.mkdir()
    for f in fp32_dir.iterdir():
        if f.suffix not in (".onnx", ".data"):
            shutil.copy(f, out / f.name)
    onnx.save_model(model, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return out


def test_identical_variant_passes_and_broken_variant_fails_task_checks(
        tiny_llama_dir: Path, fp32_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same = shutil.copytree(fp32_dir, tmp_path / "same")
    broken = broken_copy(fp32_dir, tmp_path / "broken")
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'[model]\nsource = "{tiny_llama_dir}"\nonnx = "{fp32_dir}"\n[eval]\ndatasets = ["ptb"]\nwindow = 64\n'
        'stride = 32\nmax_tokens = 64\nrunners = ["torch", "ort"]\n'
        f'[[variants]]\nname = "same"\nmethod = "onnx"\npath = "{same}"\n'
        f'[[variants]]\nname = "broken"\nmethod = "onnx"\npath = "{broken}"\n'
        '[thresholds]\nmax_rel_dppl = 100.0\n'
        '[[tasks]]\nname = "copa"\nlimit = 20\n[[tasks]]\nname = "mmlu_abstract_algebra"\nlimit = 30\n'
        '[task_thresholds]\nmax_acc_drop = 0.15\nmax_flip_rate = 0.1\n')
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    out = tmp_path / "r.json"
    assert main_cli(["gate", "--config", str(suite), "--json-out", str(out), "--progress", "none"]) == 1
    doc = json.loads(out.read_text())
    checks = [c for c in doc["checks"] if c["dataset"] in ("copa", "mmlu_abstract_algebra")]
    failed = {(c["name"], c["variant"]) for c in checks if not c["passed"]}
    assert failed and {v for _, v in failed} == {"broken"}, failed  # only the broken variant fails
    assert ("task_flip_rate", "broken") in failed
    same_runs = [r for r in doc["tasks"]["runs"] if r["variant"] == "same"]
    assert all(r["metrics"]["flips"] == 0 and r["metrics"]["dacc"] == 0 for r in same_runs)
    # ORT base vs torch on the tiny model: the same answers, |Δll| far inside the limit
    assert all(c["passed"] for c in checks if c["name"].startswith("task_parity"))

    # Tamper: the broken variant's copa scores replaced by the base's -> its stored metrics no
    # longer follow from its scores: the gate fails task_consistent (and keeps failing).
    base = next(r for r in doc["tasks"]["runs"] if (r["task"], r["variant"], r["runner"]) == ("copa", "base", "ort"))
    for r in doc["tasks"]["runs"]:
        if (r["task"], r["variant"]) == ("copa", "broken"):
            r["scores"] = base["scores"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    gated = tmp_path / "g.json"
    assert main_cli(["gate", "--config", str(suite), "--results", str(edited), "--json-out", str(gated),
                     "--progress", "none"]) == 1
    bad = {c["name"] for c in json.loads(gated.read_text())["checks"] if not c["passed"]}
    assert "task_consistent" in bad
