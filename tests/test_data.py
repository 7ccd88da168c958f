"""Dataset configs, the row/joining rules, local-file checks and the token cache."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from evalsuite.data import corpora as data
from evalsuite.errors import DataError


def test_row_rules_match_hub_loaders() -> None:
    lines = [" \n", " = Title = \n", " \n", " Text here . \n"]
    # wikitext: blank lines become "", other rows keep their newline
    assert data.rows_from_lines(lines, "lines_blank_empty") == ["", " = Title = \n", "", " Text here . \n"]
    # ptb_text_only: each line stripped
    assert data.rows_from_lines([" a b \n", " c d \n"], "lines_stripped") == ["a b", "c d"]


@pytest.mark.parametrize(("name", "join"), [("wikitext2", "\n\n"), ("ptb", " ")])
def test_specs_load(name: str, join: str) -> None:
    spec = data.load_spec(name)
    assert spec.join == join and spec.default_split == "test"
    assert all(len(s.sha256) == 64 for s in spec.splits.values())
    assert all(len(s.text_sha256 or "") == 64 for s in spec.splits.values())  # what the label means


def test_real_texts_are_joined_rows(data_dir: Path) -> None:
    wiki = data.load_text("wikitext2", data_dir)
    raw = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    rows = [line if line.strip() else "" for line in raw.splitlines(keepends=True)]
    assert wiki.text == "\n\n".join(rows)
    assert wiki.meta["rows"] == 4358
    assert wiki.sha256 == hashlib.sha256(wiki.text.encode()).hexdigest()
    ptb = data.load_text("ptb", data_dir)
    assert ptb.text.startswith("no it was n't black monday but while")
    assert ptb.meta["rows"] == 3761 and "  " not in ptb.text[:2000]


def test_split_reference(data_dir: Path) -> None:
    assert data.load_text("wikitext2:validation", data_dir).split == "validation"
    with pytest.raises(DataError, match="no split 'train'"):
        data.load_text("wikitext2:train", data_dir)


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'wikitext3'.*known datasets: ptb, wikitext2"):
        data.load_spec("wikitext3")


def test_sha_mismatch_and_missing_file(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "ptb").mkdir()
    with pytest.raises(DataError, match="missing data file"):
        data.load_text("ptb", tmp_path)
    original = (data_dir / "ptb" / "ptb.test.txt").read_bytes()
    (tmp_path / "ptb" / "ptb.test.txt").write_bytes(original[:-10] + b"tampered!\n")
    with pytest.raises(DataError, match=r"sha256 .* expected .* restore the canonical file"):
        data.load_text("ptb", tmp_path)
    shutil.copy(data_dir / "ptb" / "ptb.test.txt", tmp_path / "ptb" / "ptb.test.txt")
    assert data.load_text("ptb", tmp_path).text.startswith("no it was")


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.resolve_data_dir(str(tmp_path / "nope"))


def test_token_cache(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path))
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    text = data.Text("x", "test", "the quick brown fox", "abc", "test")
    first, ends = data.tokenize(text, tok, "tok-1", bos=False)
    assert first.tolist() == tok("the quick brown fox", add_special_tokens=False)["input_ids"]
    assert ends[-1] == len("the quick brown fox")
    assert len(list((tmp_path / "tokens").glob("*.npz"))) == 1
    again, ends_again = data.tokenize(text, tok, "tok-1", bos=False)
    assert again.tolist() == first.tolist() and ends_again.tolist() == ends.tolist()
    with_bos, bos_ends = data.tokenize(text, tok, "tok-1", bos=True)
    assert with_bos.tolist() == [tok.bos_token_id, *first.tolist()] and bos_ends[0] == 0
    assert len(list((tmp_path / "tokens").glob("*.npz"))) == 2


def test_word_and_byte_counts_of_scored_span() -> None:
    import numpy as np

    text = "héllo wörld  foo\nbar"
    # tokens: "hé" "llo" " wörld" "  foo" "\nbar"  (end offsets in characters)
    ends = np.array([2, 5, 11, 16, 20])
    # token 0 is context only: the scored span is text[2:20] = "llo wörld  foo\nbar"
    assert data.span_counts(text, ends, 1, 5) == (4, len("llo wörld  foo\nbar".encode()))
    # with BOS first (end offset 0) the whole text is scored
    assert data.span_counts(text, np.array([0, *ends]), 1, 6) == (4, len(text.encode()))
    assert data.span_counts(text, ends, 1, 3) == (2, len("llo wörld".encode()))
