"""Verdict integrity: the gate never passes on results that are not exactly the configured run.
One table-driven case per way a wrong PASS used to get through (issue 13), each asserting the exit
code and the name of the failing check."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_gate import GOOD, SUITE, retarget

from evalsuite.cli import main

Doc = dict[str, Any]


def shard(doc: Doc) -> None:  # case 1: a --shard i/n file (part of the windows scored)
    doc["shard"], doc["complete"] = {"index": 0, "count": 4}, False


def other_policy(doc: Doc) -> None:  # case 2: another window policy than the suite's
    doc["policy"]["window"] = 256
    for r in doc["runs"]:
        r["window"] = 256


def no_tokens(doc: Doc) -> None:  # case 2: nothing scored
    doc["runs"][2]["tokens_scored"] = 0


def negative_ppl(doc: Doc) -> None:  # case 2: impossible PPL (would make ΔPPL hugely negative)
    doc["runs"][2]["ppl"] = -3.0


def zero_ppl(doc: Doc) -> None:
    doc["runs"][5]["ppl"] = 0.0


def negative_kld(doc: Doc) -> None:  # case 2: KL divergence is never negative
    doc["runs"][2]["metrics"] = {"kld_mean": -0.1}


def duplicated_run(doc: Doc) -> None:  # case 2: the first of two runs used to win silently
    bad = copy.deepcopy(doc["runs"][2])
    retarget(bad, 99.0)
    doc["runs"].append(bad)


def other_variant_settings(doc: Doc) -> None:  # the variant was built with other settings
    doc["binding"]["suite"]["variants"]["rtn"]["block_size"] = 128


def other_suite(doc: Doc) -> None:  # results of a suite with another dataset list
    doc["binding"]["suite"]["datasets"] = ["wikitext2"]


def other_model(doc: Doc) -> None:  # case 5: results of a different model
    doc["binding"]["content"]["model"]["origin_sha256"] = "f" * 64


def gpu_run(doc: Doc) -> None:  # scored with `--provider cuda` (-e cuda builds, CUDA kernels)
    doc["binding"]["suite"]["model"]["execution"] = "cuda"


def fp16_base(doc: Doc) -> None:  # scored against an fp16 ORT base
    doc["binding"]["suite"]["model"]["base_precision"] = "fp16"


CASES = [
    pytest.param(shard, "result_complete", id="1-shard-results"),
    pytest.param(other_policy, "binding_policy", id="2-other-policy"),
    pytest.param(no_tokens, "plausible_values", id="2-tokens-scored-0"),
    pytest.param(negative_ppl, "plausible_values", id="2-negative-ppl"),
    pytest.param(zero_ppl, "plausible_values", id="2-zero-ppl"),
    pytest.param(negative_kld, "plausible_values", id="2-negative-kld"),
    pytest.param(duplicated_run, "unique_runs", id="2-duplicated-run"),
    pytest.param(other_variant_settings, "binding_variant", id="8-other-variant-settings"),
    pytest.param(other_suite, "binding_suite", id="other-suite"),
    pytest.param(other_model, "binding_model", id="5-other-model"),
    pytest.param(gpu_run, "binding_model", id="gpu-run-cpu-suite"),
    pytest.param(fp16_base, "binding_model", id="fp16-base-fp32-suite"),
]


def gate(tmp_path: Path, doc: Doc, suite: str = SUITE, *extra: str) -> int:
    (tmp_path / "s.toml").write_text(suite)
    (tmp_path / "r.json").write_text(json.dumps(doc))
    return main(["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r.json"),
                 "--json-out", str(tmp_path / "out.json"), *extra])


def failing(tmp_path: Path) -> set[str]:
    return {c["name"] for c in json.loads((tmp_path / "out.json").read_text())["checks"] if not c["passed"]}


def test_good_document_passes(tmp_path: Path) -> None:
    assert gate(tmp_path, GOOD) == 0


@pytest.mark.parametrize(("mutate", "check"), CASES)
def test_wrong_results_fail_with_a_named_check(tmp_path: Path, mutate: Callable[[Doc], None], check: str) -> None:
    doc = copy.deepcopy(GOOD)
    mutate(doc)
    assert gate(tmp_path, doc) == 1
    assert check in failing(tmp_path)


def test_gate_shard_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # case 1
    assert gate(tmp_path, GOOD, SUITE, "--shard", "0/4") == 2
    assert "merge" in capsys.readouterr().err


BAD_SUITES = [  # cases 3 and 4, and out-of-range values: exit 2 at load, naming the key
    pytest.param('[[variants]]\nname = "v"\nmethod = "rtn"\n[thresholds.variants.v]\ninterval = "upper"\n',
                 "no threshold for variant 'v'", id="3-interval-only"),
    pytest.param(SUITE + '[thresholds.variants.rtn.datasets."wikitext2:test"]\nmax_abs_dppl = 9.0\n',
                 "wikitext2:test] names no configured dataset; use one of: wikitext2, ptb", id="4-test-split-key"),
    pytest.param(SUITE + "[thresholds.variants.rtn.datasets.wikitxt2]\nmax_abs_dppl = 9.0\n",
                 "wikitxt2] names no configured dataset", id="4-misspelled-key"),
    pytest.param(SUITE.replace("max_rel_dppl = 0.10", "max_rel_dppl = 0.0"), "max_rel_dppl must be a fraction > 0",
                 id="rel-dppl-0"),
    pytest.param(SUITE.replace("max_abs_dppl = 2.0", "max_abs_dppl = -1.0"), "max_abs_dppl must be a non-negative",
                 id="abs-dppl-negative"),
    pytest.param(SUITE + "[thresholds.variants.rtn.datasets.wikitext2]\nmin_same_top = 1.5\n",
                 "min_same_top must be a fraction in [0, 1]", id="same-top-1.5"),
    pytest.param(SUITE + "[baseline]\nmax_rel_change = 0.0\n", "max_rel_change must be a fraction > 0",
                 id="rel-change-0"),
]


@pytest.mark.parametrize(("suite", "message"), BAD_SUITES)
def test_bad_thresholds_exit_2(tmp_path: Path, suite: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(tmp_path, GOOD, suite) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_per_dataset_thresholds_left_without_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = SUITE.replace("[thresholds]\nmax_abs_dppl = 2.0\nmax_rel_dppl = 0.10\n", "")
    (tmp_path / "s.toml").write_text(suite)
    assert main(["gate", "--config", str(tmp_path / "s.toml"), "--dataset", "wikitext2", "--results", "x"]) == 2
    assert "no threshold for variant 'rtn' on 'wikitext2'" in capsys.readouterr().err


def baseline_of(doc: Doc, tmp_path: Path, **changes: Any) -> Path:
    base = copy.deepcopy(doc)
    base["provenance"]["model"].update(changes)
    model = base["binding"]["content"]["model"]  # the baseline's binding names the same model
    model.update({k: v for k, v in changes.items() if k in model})
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"baseline": True, **base}))
    return path


def test_baseline_of_another_model_fails(tmp_path: Path) -> None:  # case 5
    other = baseline_of(GOOD, tmp_path, origin_sha256="9" * 64, source="other-model")
    assert gate(tmp_path, GOOD, SUITE, "--baseline", str(other)) == 1
    assert failing(tmp_path) == {"baseline_model"}


def test_two_sided_baseline_catches_improvement(tmp_path: Path) -> None:  # case 5
    path = baseline_of(GOOD, tmp_path)
    halved = copy.deepcopy(GOOD)
    for r in halved["runs"]:
        retarget(r, r["ppl"] / 2)
    assert gate(tmp_path, halved, SUITE, "--baseline", str(path)) == 0  # one-sided: an "improvement" passes
    assert gate(tmp_path, halved, SUITE + "[baseline]\nmax_rel_change = 0.2\n", "--baseline", str(path)) == 1
    assert failing(tmp_path) == {"baseline_rel_change"}


def test_model_override_with_the_suites_baseline(tmp_path: Path, tiny_llama_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # case 5
    from test_gate import binding

    baseline = baseline_of(GOOD, tmp_path)
    doc = copy.deepcopy(GOOD)
    from evalsuite.models.source import tokenizer_sha256

    doc["binding"] = binding(SUITE.replace("[eval]", f'[model]\nsource = "{tiny_llama_dir}"\n\n[eval]'),
                             str(tiny_llama_dir))
    doc["binding"]["content"]["model"]["tokenizer_sha256"] = tokenizer_sha256(str(tiny_llama_dir))
    doc["provenance"]["model"] = {"source": str(tiny_llama_dir), **doc["binding"]["content"]["model"]}
    assert gate(tmp_path, doc, SUITE, "--model", str(tiny_llama_dir), "--baseline", str(baseline)) == 1
    assert failing(tmp_path) == {"baseline_model"}
    assert f"--model {tiny_llama_dir} replaces the suite's model" in capsys.readouterr().err


def test_merge_refuses_shards_of_different_variant_settings(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # case 8
    paths = []
    for i in range(2):
        doc = copy.deepcopy(GOOD)
        doc["shard"], doc["complete"] = {"index": i, "count": 2}, False
        if i == 1:
            doc["binding"]["suite"]["variants"]["rtn"]["block_size"] = 128
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(doc))
    assert main(["merge", *map(str, paths), "--json-out", str(tmp_path / "m.json")]) == 2
    assert "binding.suite.variants.rtn.block_size (32 vs 128)" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("kind", ["shard", "incomplete"])
def test_baseline_update_refuses_partial_results(tmp_path: Path, kind: str) -> None:  # case 9
    doc = copy.deepcopy(GOOD)
    if kind == "shard":
        shard(doc)
    else:
        doc["complete"] = False
    (tmp_path / "r.json").write_text(json.dumps(doc))
    assert main(["baseline", "update", "--results", str(tmp_path / "r.json"), "--out", str(tmp_path / "b.json")]) == 2
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("runner", ["torch", "ort"])
def test_window_past_the_models_positions_is_refused(tmp_path: Path, tiny_llama_dir: Path, data_dir: Path,
                                                     runner: str, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # case 10
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "c"))
    code = main(["eval", "--model", str(tiny_llama_dir), "--runner", runner, "--dataset", "ptb", "--window", "600",
                 "--stride", "300", "--max-tokens", "1300", "--data-dir", str(data_dir),
                 "--json-out", str(tmp_path / "r.json")])
    assert code == 2
    assert "window 600 is longer than the model's 512 positions" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "c" / "onnx").exists()  # refused before any build
