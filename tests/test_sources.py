"""Datasets beyond the packaged two: text files, dataset TOMLs anywhere, local files through `datasets`'
file builders, hub datasets through `datasets.load_dataset` (tested on local folders of the hub's
layout: the hub is not reachable here), lm-eval word counts, per-document token streams and plans."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from evalsuite import tomlio
from evalsuite.config import DatasetCfg, Suite, dataset_labels, load_suite, run_label
from evalsuite.data import corpora, documents, sources
from evalsuite.data.windows import Window, plan_documents, plan_windows
from evalsuite.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))


def lm_eval_count_words(doc: str) -> int:
    """lm-evaluation-harness 0.4 `Task.count_words` (lm_eval/api/task.py), verbatim."""
    return len(re.split(r"\s+", doc))


@pytest.mark.parametrize(("doc", "want"), [
    pytest.param("a b c", 3, id="plain"),
    pytest.param(" = Title = \n", 5, id="wikitext-heading"),  # '', '=', 'Title', '=', ''
    pytest.param("\n\nfoo  bar\n", 4, id="leading-and-trailing"),
    pytest.param("foo", 1, id="one-word"),
    pytest.param(" ", 2, id="whitespace-only"),
])
def test_word_counts_equal_lm_eval(doc: str, want: int) -> None:
    # str.split() (the old count) drops the empty strings at the edges; lm-eval counts them.
    assert corpora.lm_eval_words(doc) == lm_eval_count_words(doc) == want
    ends = np.array([0, len(doc)])  # BOS, then one token covering the whole document
    assert corpora.span_counts(doc, ends, 1, 2) == (want, len(doc.encode("utf-8")))


def test_text_file(tmp_path: Path) -> None:
    f = tmp_path / "my corpus.txt"
    f.write_bytes("héllo\r\nwörld\n".encode())
    text = sources.text_file(str(f), "mine")
    assert text.text == "héllo\r\nwörld\n"  # byte-identical: no newline translation
    assert text.meta["file_sha256"] == text.sha256 == __import__("hashlib").sha256(f.read_bytes()).hexdigest()
    assert text.label == "mine" and text.rows == (text.text,)
    assert DatasetCfg(text=str(f)).run_label == "my-corpus"
    with pytest.raises(DataError, match=r"sha256 .* the suite pins"):
        sources.text_file(str(f), "mine", "0" * 64)


@pytest.mark.parametrize(("content", "message"), [
    pytest.param(None, "not found", id="missing"),
    pytest.param(b"", "is empty", id="empty"),
    pytest.param(b" \n\t\n", "is empty", id="whitespace"),
    pytest.param(b"caf\xe9 latin-1\n", r"not UTF-8 \(byte 3", id="latin-1"),
])
def test_bad_text_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    f = tmp_path / "t.txt"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(DataError, match=message):
        sources.text_file(str(f), "t")


ROWS = ["first row", "", " second  row \n", "third"]


def write_files(folder: Path) -> dict[str, list[str]]:
    pq.write_table(pa.table({"text": ROWS, "n": [1, 2, 3, 4]}), folder / "d.parquet")
    (folder / "d.jsonl").write_text("".join(json.dumps({"body": r}) + "\n" for r in ROWS))
    csv_rows = [r for r in ROWS if r]  # an empty CSV cell reads as null (refused: not text)
    pacsv.write_csv(pa.table({"text": csv_rows}), folder / "d.csv")
    (folder / "d.txt").write_text("line one\nline two\n")
    return {"d.parquet": ROWS, "d.jsonl": ROWS, "d.csv": csv_rows, "d.txt": ["line one", "line two"]}


@pytest.mark.parametrize("name", ["d.parquet", "d.jsonl", "d.csv", "d.txt"])
def test_local_files_through_datasets_builders(tmp_path: Path, name: str) -> None:
    want = write_files(tmp_path)[name]
    column = "body" if name == "d.jsonl" else "text"
    text = sources.data_files_text((str(tmp_path / name),), None, "train", column, "\n\n", "mine")
    assert list(text.rows) == want and text.text == "\n\n".join(want)
    assert text.meta["rows"] == len(want) and len(text.meta["file_sha256"][name]) == 64


def test_data_files_errors(tmp_path: Path) -> None:
    write_files(tmp_path)
    f = (str(tmp_path / "d.parquet"),)
    with pytest.raises(DataError, match=r"has no column 'sentence'; columns: text, n"):
        sources.data_files_text(f, None, "train", "sentence", " ", "x")
    with pytest.raises(DataError, match=r"Unknown split \"test\".*fix data_files"):
        sources.data_files_text(f, None, "test", "text", " ", "x")
    with pytest.raises(DataError, match="row 0 is int, not text"):
        sources.data_files_text(f, None, "train", "n", " ", "x")
    with pytest.raises(DataError, match="not found"):
        sources.data_files_text((str(tmp_path / "nope.parquet"),), None, "train", "text", " ", "x")
    (tmp_path / "d.bin").write_bytes(b"x")
    with pytest.raises(DataError, match="cannot tell the format"):
        sources.data_files_text((str(tmp_path / "d.bin"),), None, "train", "text", " ", "x")


def hub_layout(root: Path, sentences: list[str]) -> Path:
    """A local folder laid out like the hub's parquet conversion of ptb_text_only
    (revision refs/convert/parquet: penn_treebank/<split>/0000.parquet, column `sentence`)."""
    (root / "penn_treebank" / "test").mkdir(parents=True)
    pq.write_table(pa.table({"sentence": sentences}), root / "penn_treebank" / "test" / "0000.parquet")
    return root


def test_ptb_hub_source_is_the_parquet_conversion(data_dir: Path, tmp_path: Path) -> None:
    spec = corpora.load_spec("ptb")
    assert spec.hub is not None and spec.hub.path == "ptb_text_only"
    assert (spec.hub.revision, spec.hub.data_dir, spec.hub.column) == ("refs/convert/parquet", "penn_treebank",
                                                                      "sentence")
    # The hub rows are the stripped lines (what ptb_text_only's loader yields); a local copy of the
    # conversion's layout goes through the very `load_dataset(path, config, split, revision, data_dir)`
    # call and gives the local file's text byte for byte.
    lines = (data_dir / "ptb" / "ptb.test.txt").read_text(encoding="utf-8").splitlines()
    repo = hub_layout(tmp_path / "ptb_text_only", [line.strip() for line in lines])
    local_spec = dataclasses.replace(spec, hub=dataclasses.replace(spec.hub, path=str(repo)))
    from_hub = corpora.spec_text(local_spec, "test", None)
    assert from_hub.text == corpora.load_text("ptb", data_dir).text
    assert from_hub.source.startswith("hub:")


def test_hub_entry(tmp_path: Path) -> None:
    repo = hub_layout(tmp_path / "repo", ["a b", "c d"])
    text = sources.hub_text(str(repo), None, "test", "sentence", "refs/convert/parquet", "penn_treebank", " ", "h")
    assert text.text == "a b c d" and text.rows == ("a b", "c d")
    with pytest.raises(DataError, match=r"Unknown split \"validation\""):
        sources.hub_text(str(repo), None, "validation", "sentence", None, "penn_treebank", " ", "h")
    with pytest.raises(DataError, match="has no column 'text'; columns: sentence"):
        sources.hub_text(str(repo), None, "test", "text", None, "penn_treebank", " ", "h")
    with pytest.raises(DataError, match="cannot load"):
        sources.hub_text(str(tmp_path / "missing"), None, "test", "text", None, None, " ", "h")


def test_dataset_toml_anywhere(tmp_path: Path) -> None:
    (tmp_path / "corp").mkdir()
    (tmp_path / "corp" / "dev.txt").write_text(" one \n two \n")
    toml = tmp_path / "corp" / "mine.toml"
    toml.write_text('name = "mine"\nrows = "lines_stripped"\njoin = " "\ndefault_split = "dev"\n'
                    '[splits.dev]\nhub_split = "validation"\nfile = "dev.txt"\n')
    text = sources.spec_file_text(str(toml), None, run_label(str(toml)))
    assert text.text == "one two" and text.label == "mine"
    with pytest.raises(DataError, match="has no split 'test'"):
        sources.spec_file_text(f"{toml}:test", None, "mine")
    with pytest.raises(DataError, match="not found"):
        sources.spec_file_text(str(tmp_path / "nope.toml"), None, "nope")
    toml.write_text(toml.read_text().replace('file = "dev.txt"', 'file = "dev.txt"\nsha256 = "' + "0" * 64 + '"'))
    with pytest.raises(DataError, match="restore the canonical file"):
        sources.spec_file_text(str(toml), None, "mine")


def test_labels_and_config(tmp_path: Path) -> None:
    assert run_label("wikitext2:validation") == "wikitext2:validation" and run_label("ptb:test") == "ptb"
    assert run_label("dir/mine.toml") == "mine" and run_label("/a/b/mine.toml:dev") == "mine:dev"
    (tmp_path / "datasets_cfg").mkdir()
    (tmp_path / "datasets_cfg" / "sib.toml").write_text("")
    (tmp_path / "suite.toml").write_text(
        '[eval]\ndatasets = ["wikitext2", "sib:dev", "cfg/x.toml"]\n'
        '[[datasets]]\ntext = "my.txt"\n'
        '[[datasets]]\nlabel = "pq"\ndata_files = "d.parquet"\ncolumn = "body"\ndocuments = true\n'
        '[[datasets]]\nhub = {path = "org/name", name = "cfg", split = "test"}\n'
        '[[datasets]]\nlabel = "two"\ndata_files = ["a.jsonl", "b.jsonl"]\n')
    suite = load_suite(tmp_path / "suite.toml")
    assert dataset_labels(suite) == ["wikitext2", "sib:dev", "x", "my", "pq", "name-cfg", "two"]
    # paths are relative to the suite file; a bare name not packaged is found in datasets_cfg/ beside it
    assert suite.eval.datasets[1] == f"{tmp_path / 'datasets_cfg' / 'sib.toml'}:dev"
    assert suite.eval.datasets[2] == str(tmp_path / "cfg" / "x.toml")
    assert suite.datasets[0].text == str(tmp_path / "my.txt")
    assert suite.datasets[1].files() == (str(tmp_path / "d.parquet"),)
    assert suite.datasets[3].files() == (str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"))


@pytest.mark.parametrize(("toml", "message"), [
    pytest.param('[[datasets]]\ntext = "a.txt"\ndata_files = "b.parquet"\n', "exactly one of", id="two-sources"),
    pytest.param('[[datasets]]\nlabel = "x"\n', "exactly one of", id="no-source"),
    pytest.param('[[datasets]]\ntext = "a.txt"\nlabel = "a:b"\n', "no ':'", id="bad-label"),
    pytest.param('[eval]\ndatasets = ["ptb"]\n[[datasets]]\ntext = "ptb.txt"\n', "'ptb' is used twice",
                 id="duplicate-label"),
    pytest.param('[[datasets]]\ntext = "a.txt"\nsha256 = "abc"\n', "64 lowercase hex", id="bad-pin"),
    pytest.param('[[datasets]]\ndata_files = []\n', "names no file", id="no-files"),
    pytest.param('[[datasets]]\ntxt = "a.txt"\n', "did you mean 'text'", id="typo"),
    pytest.param('[eval]\ndatasets = []\n', "at least one dataset", id="none"),
])
def test_bad_dataset_entries(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "s.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_suite(tmp_path / "s.toml")


def test_threshold_keys_accept_custom_labels(tmp_path: Path) -> None:
    base = ('[eval]\ndatasets = []\n[[datasets]]\ntext = "my.txt"\n[[variants]]\nname = "v"\nmethod = "rtn"\n'
            "[thresholds]\nmax_rel_dppl = 0.1\n")
    (tmp_path / "ok.toml").write_text(base + "[thresholds.variants.v.datasets.my]\nmax_rel_dppl = 0.2\n")
    suite = load_suite(tmp_path / "ok.toml")
    assert suite.thresholds.limits("v", "my").max_rel_dppl == 0.2
    (tmp_path / "bad.toml").write_text(base + "[thresholds.variants.v.datasets.mine]\nmax_rel_dppl = 0.2\n")
    with pytest.raises(ConfigError, match="use one of: my"):
        load_suite(tmp_path / "bad.toml")


def test_plan_documents_never_crosses_a_document() -> None:
    bounds = [(0, 5), (5, 6), (6, 20)]  # 4 targets, a prefix-only document, 13 targets
    got = plan_documents(bounds, window=8, stride=8)
    assert got[0] == Window(0, 1, 5)
    assert got[1:] == [Window(6 + w.start, 6 + w.first_target, 6 + w.end) for w in plan_windows(14, 8, 8)]
    targets = [t for w in got for t in range(w.first_target, w.end)]
    assert targets == [*range(1, 5), *range(7, 20)]  # every token but the prefixes, once
    assert all(s <= w.start and w.end <= e for w in got for s, e in bounds if s <= w.first_target < e)
    with pytest.raises(DataError, match="no document"):
        plan_documents([(0, 1)], 8, 8)


def lm_eval_rolling_windows(tokens: list[int], prefix: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """lm-evaluation-harness `utils.get_rolling_token_windows(..., context_len=1)` +
    `make_disjoint_window`, transcribed: (input, predicted) pairs."""
    out = []
    first = min(max_len, len(tokens))
    out.append(([prefix, *tokens[: first - 1]], tokens[:first]))
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_len)
        end = done + n
        out.append((tokens[end - max_len - 1 : end - 1], tokens[end - n : end]))
        done += n
    return out


def test_documents_plan_equals_lm_eval_rolling_windows(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    rows = ("the quick brown fox jumps over the lazy dog . " * 3, "", "a stitch in time saves nine .")
    text = corpora.Text("d", "test", "\n\n".join(rows), "x", "test", rows=rows)
    ids, ends, docs = documents.tokenize_documents(text, tok, "tok")
    assert docs[:, 0].tolist() == [0, 2]  # the empty row has no token: skipped
    window = 16
    windows = plan_documents(documents.clipped_bounds(docs, len(ids)), window, window)
    ours = [(ids[w.start : w.end - 1].tolist(), ids[w.first_target : w.end].tolist()) for w in windows]
    theirs = [pair for r in (0, 2) for pair in lm_eval_rolling_windows(
        tok(rows[r], add_special_tokens=False)["input_ids"], tok.bos_token_id, window)]
    assert ours == theirs
    words, nbytes, count = documents.document_counts(text, ends, docs, len(ids))
    assert (words, nbytes, count) == (sum(lm_eval_count_words(rows[r]) for r in (0, 2)),
                                      sum(len(rows[r].encode()) for r in (0, 2)), 2)


def test_suite_dataclass_roundtrip() -> None:
    suite = tomlio.load(Suite, {"datasets": [{"text": "a.txt", "documents": True}]}, "s")
    assert suite.datasets[0].documents is True and dataset_labels(suite)[-1] == "a"
