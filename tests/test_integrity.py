"""Hostile caches and processes: corrupt journal records, concurrent shards on one cache, corrupt
cache entries, SIGTERM mid-build. Nothing stale, corrupted or half-written is ever scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_reliability import evalsuite, finish

from evalsuite.data.windows import plan_windows
from evalsuite.scoring.journal import Journal

TORCH_ARGS = ["eval", "--runner", "torch", "--dataset", "wikitext2", "--window", "64", "--threads", "1"]


def run_doc(path: Path) -> dict:
    return json.loads(path.read_text())["runs"][0]


def test_corrupt_journal_record_is_discarded_with_a_warning(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    windows = plan_windows(40, 8, 4)
    path = tmp_path / "j.nll"
    j = Journal(path, windows)
    for i in range(3):
        j.append(i, np.full(windows[i].n_targets, float(i)))
    j.close()
    blob = bytearray(path.read_bytes())
    blob[(8 + 8 * 8 + 8) + 8 + 3] ^= 0x01  # one bit of window 1's payload (record 0 is 80 bytes)
    path.write_bytes(bytes(blob))
    again = Journal(path, windows)
    assert sorted(again.done) == [0, 2]  # window 1 is scored again, never used
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and "corrupt" in err
    again.append(1, np.ones(4))
    again.close()
    assert sorted(Journal(path, windows).done) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # the bad record was removed from the file


def test_scaled_journal_column_is_never_used(tmp_path: Path) -> None:
    windows = plan_windows(40, 8, 4)
    path = tmp_path / "j.nll"
    j = Journal(path, windows, width=2)
    j.append(0, np.ones((8, 2)))
    j.close()
    blob = bytearray(path.read_bytes())
    vals = np.frombuffer(bytes(blob[8 : 8 + 128]), "<f8").reshape(8, 2).copy()
    vals[:, 1] *= 0.1
    blob[8 : 8 + 128] = vals.tobytes()
    path.write_bytes(bytes(blob))
    assert Journal(path, windows, width=2).done == {}


def test_journal_key_holds_version_and_scoring_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.scoring.journal as journal

    windows, tokens = plan_windows(40, 8, 4), np.arange(40)
    before = journal.journal_path({"runner": "x"}, tokens, windows)
    monkeypatch.setattr(journal, "_fingerprint", ["a changed metrics.py"])
    assert journal.journal_path({"runner": "x"}, tokens, windows) != before
    monkeypatch.setattr(journal, "__version__", "9.9.9")
    monkeypatch.setattr(journal, "_fingerprint", [])
    assert journal.journal_path({"runner": "x"}, tokens, windows) != before


def test_concurrent_shards_on_one_cache_are_exact(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    args = [*TORCH_ARGS, "--model", str(tiny_llama_dir), "--max-tokens", "4000", "--stride", "16"]
    cache = tmp_path / "cache"
    shards = [evalsuite([*args, "--shard", f"{i}/2", "--json-out", str(tmp_path / f"s{i}.json")], cache, data_dir)
              for i in range(2)]
    for proc in shards:
        finish(proc)
    finish(evalsuite([*args, "--json-out", str(tmp_path / "warm.json")], cache, data_dir))
    finish(evalsuite([*args, "--fresh", "--json-out", str(tmp_path / "fresh.json")], cache, data_dir))
    warm, fresh = run_doc(tmp_path / "warm.json"), run_doc(tmp_path / "fresh.json")
    assert warm["reused_tokens"] == warm["tokens_scored"] > 0  # every window came from the two shards
    assert warm["nll_sum"] == fresh["nll_sum"] and warm["ppl"] == fresh["ppl"]  # bit for bit
    assert warm["metrics"] == fresh["metrics"]
