"""Issue 23 (hostile round): the gate never passes wrongly. Every case runs the real CLI in a
subprocess and asserts the exit code and, for refusals, the one-line message.

Principle 1 (p1): everything that changes a number or a verdict is bound, and `gate --results`
recomputes every identity it can from disk (weights, every tokenizer file, data).
Principle 2 (p2): what can be re-derived is re-derived (PPL from NLL, counts, policies, a shard's
windows), and implausible values in any file the gate reads refuse that file (baselines, shards)
or fail the gate (results being gated).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_gate import GOOD, SUITE, TEXTS, retarget

REPO = Path(__file__).resolve().parent.parent
Doc = dict[str, Any]
WIKI_VALIDATION = "b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e"


def cli(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("EVALSUITE_DEBUG", None)
    if cache is not None:
        env["EVALSUITE_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "evalsuite", *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "internal error" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def gate_results(tmp_path: Path, doc: Doc, suite: str = SUITE, *extra: str) -> tuple[int, set[str]]:
    (tmp_path / "s.toml").write_text(suite)
    (tmp_path / "r.json").write_text(json.dumps(doc))
    out = tmp_path / "out.json"
    out.unlink(missing_ok=True)
    proc = cli("gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r.json"),
               "--json-out", str(out), "--no-baseline", *extra)
    failed = {c["name"] for c in json.loads(out.read_text())["checks"] if not c["passed"]} if out.exists() else set()
    return proc.returncode, failed


# ---- case 1: a packaged label means the packaged text ------------------------------------------------

def test_p1_custom_dataset_cannot_take_packaged_label(tmp_path: Path, data_dir: Path) -> None:
    mine = tmp_path / "wikitext2.toml"  # WikiText-2 *validation* under the packaged name
    mine.write_text('name = "wikitext2"\nrows = "lines_blank_empty"\njoin = "\\n\\n"\n[splits.test]\n'
                    'hub_split = "validation"\nfile = "wikitext-2-raw/wiki.valid.raw"\n')
    proc = cli("eval", "--model", "x", "--dataset", str(mine), "--data-dir", str(data_dir), "--runner", "torch")
    assert proc.returncode == 2
    one_line(proc, "dataset label 'wikitext2' is the name of a packaged dataset")
    (tmp_path / "ptb.txt").write_text("some other text\n")
    for argv in (["--text", str(tmp_path / "ptb.txt")],
                 ["--config", str(tmp_path / "s.toml")]):
        (tmp_path / "s.toml").write_text('[eval]\ndatasets = []\n[[datasets]]\ntext = "other.txt"\nlabel = "ptb"\n')
        proc = cli("validate", "--model", "x", *argv)
        assert proc.returncode == 2
        one_line(proc, "dataset label 'ptb' is the name of a packaged dataset")


def test_p1_results_under_packaged_label_must_hold_the_packaged_text(tmp_path: Path) -> None:
    assert gate_results(tmp_path, GOOD) == (0, set())
    doc = copy.deepcopy(GOOD)  # results of WikiText-2 validation text recorded as 'wikitext2'
    doc["binding"]["content"]["data"]["wikitext2"] = WIKI_VALIDATION
    doc["provenance"]["data"]["wikitext2"]["text_sha256"] = WIKI_VALIDATION
    assert gate_results(tmp_path, doc) == (1, {"binding_data"})
    del doc["binding"]["content"]["data"]["wikitext2"], doc["provenance"]["data"]["wikitext2"]
    assert gate_results(tmp_path, doc) == (1, {"binding_data"})  # no record of the text: fails closed


def test_p2_binding_and_provenance_must_name_the_same_text(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    doc["provenance"]["data"]["ptb"]["text_sha256"] = "0" * 64
    assert gate_results(tmp_path, doc) == (1, {"binding_data"})


# ---- case 2: every tokenizer file is bound, recomputed from disk at gate --results ------------------

@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, data_dir: Path) -> dict[str, Path]:
    """A real results file of the tiny Llama (a copy, so its files can be rewritten) on ptb, torch only."""
    import shutil

    root = tmp_path_factory.mktemp("scored")
    model = Path(shutil.copytree(tiny_llama_dir, root / "model"))
    (root / "s.toml").write_text('[eval]\ndatasets = ["ptb"]\nrunners = ["torch"]\nmax_tokens = 96\nwindow = 32\n'
                                 f'stride = 16\n[model]\nsource = "{model}"\n')
    proc = cli("eval", "--config", str(root / "s.toml"), "--data-dir", str(data_dir), "--json-out",
               str(root / "r.json"), "-q", cache=root / "cache")
    assert proc.returncode == 0, proc.stderr
    return {"model": model, "suite": root / "s.toml", "results": root / "r.json", "cache": root / "cache"}


def gate_scored(scored: dict[str, Path], results: Path | None = None) -> subprocess.CompletedProcess[str]:
    return cli("gate", "--config", str(scored["suite"]), "--results", str(results or scored["results"]),
               "--no-baseline", cache=scored["cache"])


@pytest.mark.parametrize("edit", ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "vocab.json"])
def test_p1_tokenizer_file_rewrite_fails_gate_results(scored: dict[str, Path], edit: str) -> None:
    assert gate_scored(scored).returncode == 0
    path = scored["model"] / edit
    before = path.read_bytes() if path.exists() else None
    try:
        if edit == "tokenizer.json":  # same weights, another tokenizer: rewrite a merge rule
            tok = json.loads(path.read_text())
            tok["model"]["merges"] = tok["model"]["merges"][::-1]
            path.write_text(json.dumps(tok))
        elif edit == "tokenizer_config.json":
            cfg = json.loads(path.read_text())
            cfg["add_bos_token"] = not cfg.get("add_bos_token", False)
            path.write_text(json.dumps(cfg))
        else:  # a tokenizer file that was not there when the results were scored
            path.write_text("{}")
        proc = gate_scored(scored)
        assert proc.returncode == 1
        assert "tokenizer" in proc.stdout and "same model" in proc.stdout
    finally:
        path.unlink() if before is None else path.write_bytes(before)
    assert gate_scored(scored).returncode == 0


def test_p1_every_dataset_text_recorded_in_the_content_binding(scored: dict[str, Path]) -> None:
    doc = json.loads(scored["results"].read_text())
    assert doc["binding"]["content"]["data"] == {"ptb": TEXTS["ptb"]}
    assert doc["binding"]["content"]["model"]["tokenizer_sha256"] == doc["provenance"]["model"]["tokenizer_sha256"]


# ---- case 4: implausible baselines are refused ------------------------------------------------------

@pytest.mark.parametrize("ppl", [-5.0, 1e300, 0.0, float("nan")])
@pytest.mark.parametrize("consistent", [False, True], ids=["ppl-only", "with-nll"])
def test_p2_implausible_baseline_is_refused(tmp_path: Path, ppl: float, consistent: bool) -> None:
    base = {"baseline": True, **copy.deepcopy(GOOD)}
    run = base["runs"][1]
    if consistent and ppl > 0 and math.isfinite(ppl):
        retarget(run, ppl)
    else:
        run["ppl"] = ppl
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "r.json").write_text(json.dumps(GOOD))
    (tmp_path / "s.toml").write_text(SUITE)
    proc = cli("gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r.json"),
               "--baseline", str(tmp_path / "b.json"))
    assert proc.returncode == 2
    if math.isnan(ppl):  # a NaN literal is not JSON: the strict reader (jsonio.py) refuses the file itself
        one_line(proc, f"baseline file {tmp_path / 'b.json'}", "NaN")
    else:
        one_line(proc, f"baseline file {tmp_path / 'b.json'}", "base/ort on wikitext2", "PPL")


# ---- cases 8 and 9: shards are re-derived before merging ------------------------------------------

def make_shards(n_tokens: int = 40, count: int = 2) -> list[Doc]:
    """Shard documents as `eval --shard i/n` writes them, for one base/torch run on ptb."""
    from evalsuite.data.windows import plan_windows, shard_windows
    from evalsuite.scoring.lanes import summarize
    from evalsuite.scoring.metrics import solo_metrics

    windows = plan_windows(n_tokens, 16, 8)
    cols = np.full((n_tokens, 3), np.nan)
    cols[1:] = np.stack([2.0 + 0.01 * np.arange(1, n_tokens), np.ones(n_tokens - 1), np.ones(n_tokens - 1)], 1)
    docs = []
    for i in range(count):
        idx = shard_windows(list(range(len(windows))), i, count)
        picked = [windows[j] for j in idx]
        run = summarize(cols[:, 0], picked, seconds=1.0, metrics=solo_metrics(cols, picked), model="m",
                        variant="base", runner="torch", dataset="ptb", split="test", window=16, stride=8, bos=False,
                        max_tokens=None, tokens_in_stream=n_tokens).to_json()
        run["shard_windows"] = idx
        run["shard_cols"] = [cols[windows[j].first_target : windows[j].end].tolist() for j in idx]
        docs.append({"schema_version": 2, "binding": {}, "complete": False, "shard": {"index": i, "count": count},
                     "provenance": {"data": {}}, "errors": [], "parity": [], "variants": {},
                     "policy": {"window": 16, "stride": 8, "bos": False, "max_tokens": None}, "runs": [run]})
    return docs


def merge(tmp_path: Path, docs: list[Doc]) -> subprocess.CompletedProcess[str]:
    paths = []
    for i, doc in enumerate(docs):
        paths.append(tmp_path / f"shard{i}.json")
        paths[-1].write_text(json.dumps(doc))
    return cli("merge", *map(str, paths), "--json-out", str(tmp_path / "m.json"))


def test_p2_honest_shards_merge_to_the_whole_run(tmp_path: Path) -> None:
    proc = merge(tmp_path, make_shards())
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "m.json").read_text())["runs"][0]
    nll = 2.0 + 0.01 * np.arange(1, 40)
    assert run["tokens_scored"] == 39 and math.isclose(run["ppl"], math.exp(nll.mean()), rel_tol=1e-12)


def claim_window_0(docs: list[Doc]) -> None:  # case 9: shard 1 also claims shard 0's window 0
    run0, run1 = docs[0]["runs"][0], docs[1]["runs"][0]
    run1["shard_windows"] = [0, *run1["shard_windows"]]
    run1["shard_cols"] = [[[9.0, 0.0, 0.0] for _ in row] for row in run0["shard_cols"][:1]] + run1["shard_cols"]


def edited_summary(docs: list[Doc]) -> None:  # the summary is not its rows'
    retarget(docs[1]["runs"][0], docs[1]["runs"][0]["ppl"] * 0.5)


def no_shard_windows(docs: list[Doc]) -> None:
    del docs[1]["runs"][0]["shard_windows"]


def no_count(docs: list[Doc]) -> None:
    del docs[1]["shard"]["count"]


def string_indices(docs: list[Doc]) -> None:
    docs[1]["runs"][0]["shard_windows"] = [str(i) for i in docs[1]["runs"][0]["shard_windows"]]


def string_shard_index(docs: list[Doc]) -> None:
    docs[1]["shard"]["index"] = "1"


def window_999(docs: list[Doc]) -> None:
    docs[1]["runs"][0]["shard_windows"][-1] = 999


def short_rows(docs: list[Doc]) -> None:
    docs[1]["runs"][0]["shard_cols"][0] = docs[1]["runs"][0]["shard_cols"][0][:-1]


def nan_row(docs: list[Doc]) -> None:
    docs[1]["runs"][0]["shard_cols"][0][0][0] = float("nan")


def no_cols(docs: list[Doc]) -> None:
    del docs[0]["runs"][0]["shard_cols"]


def forged_stream(docs: list[Doc]) -> None:  # a stream length that plans a billion windows
    docs[1]["runs"][0]["tokens_in_stream"] = 10**12


@pytest.mark.parametrize(("mutate", "needle"), [
    pytest.param(claim_window_0, "holds windows [0, 1, 3]", id="9-claims-window-0"),
    pytest.param(edited_summary, "its rows give", id="9-summary-not-its-rows"),
    pytest.param(no_shard_windows, "holds windows None", id="8-no-shard-windows"),
    pytest.param(no_count, "records shard 1/None", id="8-no-count"),
    pytest.param(string_indices, "holds windows ['1', '3']", id="8-string-window-indices"),
    pytest.param(string_shard_index, "records shard '1'/2", id="8-string-shard-index"),
    pytest.param(window_999, "holds windows [1, 999]", id="8-window-999"),
    pytest.param(short_rows, "are not 8 rows of 3 finite numbers", id="8-short-rows"),
    pytest.param(nan_row, "NaN", id="8-nan-row"),  # refused as JSON by the strict reader (jsonio.py)
    pytest.param(no_cols, "no per-window rows", id="8-no-cols"),
    pytest.param(forged_stream, "shard", id="8-forged-stream-length"),
])
def test_p2_shard_windows_rederived_from_its_index(tmp_path: Path, mutate: Any, needle: str) -> None:
    docs = make_shards()
    mutate(docs)
    proc = merge(tmp_path, docs)
    assert proc.returncode == 2
    one_line(proc, needle)
    assert not (tmp_path / "m.json").exists()


def test_p2_shard_holding_a_run_twice_says_so(tmp_path: Path) -> None:
    docs = make_shards()
    docs[1]["runs"].append(copy.deepcopy(docs[1]["runs"][0]))
    proc = merge(tmp_path, docs)
    assert proc.returncode == 2
    one_line(proc, "shard 1/2: run base/torch/ptb appears twice in the file")
    docs = make_shards()
    docs[1]["runs"] = []
    proc = merge(tmp_path, docs)
    assert proc.returncode == 2
    one_line(proc, "run base/torch/ptb is in 1 of the 2 shards")


# ---- more cases: results documents re-derived (exit 1, named check) -------------------------------

def policy_of_one_run(doc: Doc) -> None:  # the document says 512/256, one run was scored 256/128
    doc["runs"][2].update(window=256, stride=128)


def variant_other_stream(doc: Doc) -> None:  # the variant scored a longer stream than the base
    doc["runs"][2].update(tokens_in_stream=2048, tokens_scored=2047, windows=7)
    retarget(doc["runs"][2], doc["runs"][2]["ppl"])


def ppl_not_from_nll(doc: Doc) -> None:
    doc["runs"][2]["ppl"] = 20.5  # nll untouched: exp(nll_sum / tokens) is still 21.5


def nll_mean_not_sum(doc: Doc) -> None:
    doc["runs"][2]["nll_mean"] = 1.0


def window_count(doc: Doc) -> None:
    doc["runs"][0]["windows"] = 2  # a 1024-token stream at 512/256 has 3 windows


def absurd_ppl(doc: Doc) -> None:  # consistent, but no language model's
    retarget(doc["runs"][0], 1e300)


def negative_nll(doc: Doc) -> None:
    doc["runs"][2].update(nll_sum=-5.0, nll_mean=-5.0 / 1023, ppl=math.exp(-5.0 / 1023))


def parity_twice(doc: Doc) -> None:  # a second (good) record after a bad one
    doc["parity"].append(copy.deepcopy(doc["parity"][0]))


def parity_out_of_range(doc: Doc) -> None:
    doc["parity"][0]["top1_agree"] = 1.5


def parity_other_windows(doc: Doc) -> None:  # the suite samples 2 windows: the first and the last
    doc["parity"][0]["windows"] = [1]


def interval_without_estimate(doc: Doc) -> None:  # a ΔPPL interval that does not hold its estimate
    doc["runs"][2]["metrics"] = {"dppl_ci95_low": -2.0, "dppl_ci95_high": -1.0}


def provenance_other_model(doc: Doc) -> None:  # what baselines compare is not what the binding says
    doc["provenance"]["model"]["origin_sha256"] = "9" * 64


@pytest.mark.parametrize(("mutate", "check"), [
    pytest.param(policy_of_one_run, "consistent_values", id="run-policy-vs-document"),
    pytest.param(variant_other_stream, "consistent_values", id="variant-tokens-vs-base"),
    pytest.param(ppl_not_from_nll, "consistent_values", id="ppl-not-exp-nll"),
    pytest.param(nll_mean_not_sum, "consistent_values", id="nll-mean-not-sum"),
    pytest.param(window_count, "consistent_values", id="window-count"),
    pytest.param(absurd_ppl, "plausible_values", id="absurd-ppl-consistent"),
    pytest.param(negative_nll, "plausible_values", id="negative-nll"),
    pytest.param(parity_twice, "consistent_values", id="parity-record-twice"),
    pytest.param(parity_out_of_range, "consistent_values", id="parity-out-of-range"),
    pytest.param(parity_other_windows, "consistent_values", id="parity-windows"),
    pytest.param(interval_without_estimate, "consistent_values", id="interval-vs-estimate"),
    pytest.param(provenance_other_model, "consistent_values", id="provenance-vs-binding-model"),
])
def test_p2_results_values_rederived(tmp_path: Path, mutate: Any, check: str) -> None:
    doc = copy.deepcopy(GOOD)
    mutate(doc)
    code, failed = gate_results(tmp_path, doc)
    assert code == 1 and check in failed, failed


@pytest.mark.parametrize(("setting", "check"), [
    pytest.param(SUITE.replace("min_top1_agree = 0.99\n", "min_top1_agree = 0.99\nsample_windows = 4\n"),
                 "binding_suite", id="parity-sample-windows"),
    pytest.param(SUITE.replace("[eval]\n", '[eval]\ntorch_device = "cuda"\n'), "binding_model", id="torch-device-cuda"),
])
def test_p1_suite_settings_that_change_a_verdict_are_bound(tmp_path: Path, setting: str, check: str) -> None:
    assert setting != SUITE
    code, failed = gate_results(tmp_path, GOOD, setting)
    assert code == 1 and check in failed, failed
