"""`evalsuite prepare`: builds and tokenizes, scores nothing, and leaves a cache that works as is in
another folder (checked on arrival by `prepare --verify`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from evalsuite.cli import main

# Build records that say where an entry was built from: provenance, read by nothing.
PROVENANCE_FILES = {"evalsuite_build.json", "evalsuite_source.json", "evalsuite_normalised.json"}


def listing(cache: Path) -> list[str]:
    """Every path in the cache except the per-window journal (what a rebuild would change)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if p.relative_to(cache).parts[0] not in ("journal",) and not p.name.endswith(".lock"))


def run(cache: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    return main(list(argv))


def comparable(doc: dict) -> dict:
    """A results document without what differs between any two runs (time, paths, wall seconds)."""
    runs = [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_s", "reused_tokens")}
            for r in doc["runs"]]
    return {"runs": runs, "binding": doc["binding"], "parity": doc["parity"], "errors": doc["errors"]}


def test_prepare_scores_nothing_and_writes_its_manifest(prepared_cache: Path) -> None:
    (manifest,) = (prepared_cache / "prepared").glob("*.json")
    doc = json.loads(manifest.read_text())
    kinds = sorted(e["kind"] for e in doc["entries"])
    assert kinds == ["onnx", "onnx", "tokens"]  # the fp32 base, the rtn int4 build, the text's tokens
    assert all(not Path(e["path"]).is_absolute() for e in doc["entries"])
    assert not (prepared_cache / "journal").exists() or not any((prepared_cache / "journal").iterdir())


def test_a_moved_cache_rebuilds_nothing_and_scores_the_same(prepared_cache: Path, ci_suite: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    moved, home = tmp_path / "elsewhere" / "cache", tmp_path / "home"
    shutil.copytree(prepared_cache, moved, symlinks=True)
    shutil.copytree(prepared_cache, home, symlinks=True)
    before = listing(moved)
    away = prepared_cache.with_name("cache.away")
    prepared_cache.rename(away)  # nothing may still point into the folder prepare filled
    try:
        assert run(moved, monkeypatch, "prepare", "--config", str(ci_suite), "--verify") == 0
        assert "verified: 3 entries" in capsys.readouterr().out
        assert run(moved, monkeypatch, "eval", "--config", str(ci_suite), "--shard", "0/2", "-q",
                   "--json-out", str(tmp_path / "s0.json")) == 0
    finally:
        away.rename(prepared_cache)
    assert "rebuilt" not in capsys.readouterr().err
    assert listing(moved) == before  # no export, build or tokenization happened
    for path in moved.rglob("*"):
        if path.is_symlink():
            assert not Path(os.readlink(path)).is_absolute(), path
        elif path.is_file() and path.name not in PROVENANCE_FILES:
            assert str(prepared_cache).encode() not in path.read_bytes(), path
    # The shard from the moved cache merges with one scored where the cache was first filled.
    assert run(home, monkeypatch, "eval", "--config", str(ci_suite), "--shard", "1/2", "-q",
               "--json-out", str(tmp_path / "s1.json")) == 0
    assert main(["merge", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"),
                 "--json-out", str(tmp_path / "merged.json")]) == 0
    assert run(home, monkeypatch, "eval", "--config", str(ci_suite), "-q",
               "--json-out", str(tmp_path / "full.json")) == 0
    merged, full = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("merged", "full"))
    assert comparable(merged)["runs"] == comparable(full)["runs"]  # bit for bit
    assert comparable(merged)["binding"] == comparable(full)["binding"]


def test_verify_on_arrival_refuses_another_suite_an_empty_or_a_broken_cache(
        prepared_cache: Path, ci_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    other = ci_suite.with_name("other.toml")
    other.write_text(ci_suite.read_text().replace('method = "rtn"', 'method = "rtn"\nblock_size = 64'))
    cases = [(prepared_cache, other, "was prepared for another suite"),
             (tmp_path / "empty", ci_suite, "holds no prepared suite")]
    broken = tmp_path / "broken"
    shutil.copytree(prepared_cache, broken, symlinks=True)
    weights = max((p for p in (broken / "onnx").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(weights, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02\x03")
    cases.append((broken, ci_suite, "does not match its sha256"))
    for cache, suite, message in cases:
        assert run(cache, monkeypatch, "prepare", "--config", str(suite), "--verify") == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "empty").exists()  # verify builds nothing, not even the cache folder
