"""Custom datasets end to end on the tiny model: `eval --text`, a `[[datasets]]` parquet file gated
like the built-ins, per-document scoring against a direct transformers computation, bad input."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalsuite.cli import build_parser, main, suite_from_args

DOCS = [
    "the quick brown fox jumps over the lazy dog .",
    " a stitch in time saves nine . ",
    "perplexity measures how surprised a language model is by text .\n",
    "the lazy dog . " * 6,
]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))


def run_eval(args: list[str], out: Path) -> dict:
    assert main(["eval", *args, "--json-out", str(out)]) == 0
    return json.loads(out.read_text())


def test_eval_text_file_scores_like_a_parquet_row(tiny_llama_dir: Path, tmp_path: Path) -> None:
    text = "\n\n".join(DOCS)
    (tmp_path / "my.txt").write_text(text)
    common = ["--model", str(tiny_llama_dir), "--runner", "torch", "--window", "32", "--stride", "16", "--bos"]
    doc = run_eval([*common, "--text", str(tmp_path / "my.txt")], tmp_path / "a.json")
    run = doc["runs"][0]
    assert run["dataset"] == "my" and run["bos"] is True
    assert doc["provenance"]["data"]["my"]["file_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    # with BOS the whole text is scored: words and bytes are lm-eval's counts of the document
    assert run["metrics"]["words"] == len(re.split(r"\s+", text)) and run["metrics"]["bytes"] == len(text.encode())
    assert math.isclose(run["metrics"]["word_ppl"], math.exp(run["nll_sum"] / run["metrics"]["words"]),
                        rel_tol=1e-12)
    # the same rows as a parquet file through `datasets`, joined the same way: the same tokens and windows
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "d.parquet")
    (tmp_path / "s.toml").write_text('[eval]\ndatasets = []\n[[datasets]]\nlabel = "pq"\ndata_files = "d.parquet"\n')
    other = run_eval([*common, "--config", str(tmp_path / "s.toml")], tmp_path / "b.json")["runs"][0]
    assert other["dataset"] == "pq" and other["tokens_scored"] == run["tokens_scored"]
    # same process, CPU, shapes and windows: identical numbers
    assert other["nll_sum"] == run["nll_sum"]


def direct_document_nll(model_dir: Path, docs: list[str]) -> tuple[float, int]:
    """Sum over documents of -log p(doc tokens | BOS) by one transformers forward pass per document."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for d in docs:
        ids = torch.tensor([[tok.bos_token_id, *tok(d, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
        total -= float(logp.gather(1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
    return total, count


def test_per_document_scoring_is_lm_eval_rolling(tiny_llama_dir: Path, tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "d.parquet")
    (tmp_path / "s.toml").write_text('[eval]\ndatasets = []\n[[datasets]]\ndata_files = "d.parquet"\n')
    args = ["--model", str(tiny_llama_dir), "--runner", "torch", "--config", str(tmp_path / "s.toml"),
            "--window", "128", "--stride", "128", "--per-document"]
    doc = run_eval(args, tmp_path / "r.json")
    run = doc["runs"][0]
    want, count = direct_document_nll(tiny_llama_dir, DOCS)
    assert run["tokens_scored"] == count and run["windows"] == len(DOCS)
    # One window per document here; the direct pass feeds one more position (the last token), and
    # float32 logits of differently shaped inputs differ in the last bits (measured 2.6e-9 relative
    # on the sum): 1e-6 relative.
    assert math.isclose(run["nll_sum"], want, rel_tol=1e-6)
    assert run["metrics"]["words"] == sum(len(re.split(r"\s+", d)) for d in DOCS)
    assert doc["provenance"]["data"]["d"]["documents"] == len(DOCS)
    assert doc["binding"]["suite"]["documents"] is True
    # a one-stream run of the same file differs (documents see each other) and is bound differently
    stream = run_eval(args[:-1], tmp_path / "s.json")
    assert stream["runs"][0]["nll_sum"] != run["nll_sum"] and "documents" not in stream["binding"]["suite"]


GATE_SUITE = """
[model]
source = "{model}"
[eval]
datasets = []
window = 32
stride = 16
runners = ["torch", "ort"]
[[datasets]]
label = "mine"
data_files = "d.parquet"
[[variants]]
name = "rtn"
method = "rtn"
[thresholds]
max_rel_dppl = {limit}
"""


def test_gate_on_a_parquet_dataset(tiny_llama_dir: Path, tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": DOCS * 3}), tmp_path / "d.parquet")
    for limit, code in (("10.0", 0), ("1e-9", 1)):
        (tmp_path / "s.toml").write_text(GATE_SUITE.format(model=tiny_llama_dir, limit=limit))
        out = tmp_path / f"g{code}.json"
        assert main(["gate", "--config", str(tmp_path / "s.toml"), "--json-out", str(out)]) == code
        doc = json.loads(out.read_text())
        checks = {(c["name"], c["variant"], c["dataset"]): c["passed"] for c in doc["checks"]}
        assert checks[("result_present", "rtn", "mine")] and checks[("binding_suite", "*", "*")]
        assert checks[("rel_dppl", "rtn", "mine")] is (code == 0)
        assert doc["binding"]["suite"]["sources"]["mine"]["kind"] == "data_files"
    # the stored document, gated against a suite whose entry reads another column: binding fails
    other = GATE_SUITE.replace('data_files = "d.parquet"', 'data_files = "d.parquet"\ncolumn = "body"')
    (tmp_path / "s2.toml").write_text(other.format(model=tiny_llama_dir, limit="10.0"))
    out = tmp_path / "g2.json"
    assert main(["gate", "--config", str(tmp_path / "s2.toml"), "--results", str(tmp_path / "g0.json"),
                 "--json-out", str(out)]) == 1
    failed = [c for c in json.loads(out.read_text())["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["binding_suite", "binding_data"]  # column 'body' does not exist
    assert "sources" in failed[0]["detail"] and "unavailable: " in failed[1]["detail"]
    # same suite, but the parquet file changed since the run: the text's sha256 no longer binds
    (tmp_path / "s.toml").write_text(GATE_SUITE.format(model=tiny_llama_dir, limit="10.0"))
    assert main(["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "g0.json")]) == 0
    pq.write_table(pa.table({"text": DOCS * 2}), tmp_path / "d.parquet")
    assert main(["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "g0.json"),
                 "--json-out", str(out)]) == 1
    failed = [c for c in json.loads(out.read_text())["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["binding_data"] and "'mine' now has text" in failed[0]["detail"]


@pytest.mark.parametrize(("argv", "toml", "message"), [
    pytest.param(["--text", "{tmp}/nope.txt"], None, "not found", id="text-missing"),
    pytest.param(["--text", "{tmp}/empty.txt"], None, "is empty", id="text-empty"),
    pytest.param(["--text", "{tmp}/latin1.txt"], None, "is not UTF-8", id="text-not-utf8"),
    pytest.param(["--dataset", "{tmp}/nope.toml"], None, "dataset config", id="toml-missing"),
    pytest.param([], 'data_files = "d.parquet"\ncolumn = "body"', "has no column 'body'", id="no-column"),
    pytest.param([], 'data_files = "d.parquet"\nsplit = "test"', 'Unknown split "test"', id="no-split"),
    pytest.param([], 'data_files = "nope.parquet"', "not found", id="data-file-missing"),
])
def test_bad_input_exit_2(argv: list[str], toml: str | None, message: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("fine text\n")
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "d.parquet")
    args = ["eval", "--model", str(tmp_path / "no-model-needed"), *(a.format(tmp=tmp_path) for a in argv)]
    if toml is not None:
        (tmp_path / "s.toml").write_text(f"[eval]\ndatasets = []\n[[datasets]]\n{toml}\n")
        args += ["--config", str(tmp_path / "s.toml")]
    assert main([*args, "--json-out", str(tmp_path / "r.json")]) == 2  # before the (missing) model is looked at
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("flags", "bos"), [([], True), (["--no-bos"], False), (["--bos"], True)])
def test_bos_flags(tmp_path: Path, flags: list[str], bos: bool) -> None:
    (tmp_path / "s.toml").write_text("[eval]\nbos = true\n")
    suite = suite_from_args(build_parser().parse_args(["eval", "--config", str(tmp_path / "s.toml"), *flags]))
    assert suite.eval.bos is bos


def test_text_replaces_the_suite_datasets_and_default_binding_is_unchanged() -> None:
    from evalsuite.config import dataset_labels, load_suite
    from evalsuite.gate.binding import suite_binding

    suite = suite_from_args(build_parser().parse_args(["eval", "--text", "a/b/notes.md"]))
    assert dataset_labels(suite) == ["notes"] and suite.datasets[0].text == str(Path("a/b/notes.md").absolute())
    both = suite_from_args(build_parser().parse_args(["eval", "--text", "x.txt", "--dataset", "ptb"]))
    assert dataset_labels(both) == ["ptb", "x"]
    # results and baselines of suites without custom datasets keep their binding (no new keys)
    assert {"documents", "sources"}.isdisjoint(suite_binding(load_suite(None)))


@pytest.mark.parametrize(("theirs", "passed"), [
    pytest.param({"text_sha256": "a"}, True, id="same-text"),
    pytest.param({"text_sha256": "b"}, False, id="other-text-same-label"),
    pytest.param({"text_sha256": "a", "documents": 12}, False, id="per-document-vs-stream"),
])
def test_baseline_matches_only_the_same_data(theirs: dict, passed: bool) -> None:
    from evalsuite.config import BaselineCfg
    from evalsuite.gate.checks import baseline_checks

    run = {"variant": "base", "runner": "torch", "dataset": "wikitext2", "window": 512, "stride": 256,
           "bos": False, "max_tokens": None, "ppl": 20.0}
    model = {"origin_sha256": "o" * 64, "tokenizer_sha256": "t" * 64}
    doc = {"runs": [run], "provenance": {"model": model, "data": {"wikitext2": {"text_sha256": "a"}}}}
    base = {"runs": [run], "provenance": {"model": model, "data": {"wikitext2": theirs}}}
    check = baseline_checks(doc, base, BaselineCfg(), "b.json")[-1]
    assert check.name == "baseline_rel_regression" and check.passed is passed
    assert passed or "scored other data as 'wikitext2'" in check.detail
