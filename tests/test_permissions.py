"""Output files and cache folders get the modes a plain open()/mkdir() would (umask respected), not
the 0600 / 0700 of temporary files: a CI artifact step running as another user can read them."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_gate import GOOD, SUITE

from evalsuite.cache import atomic_dir, atomic_write_text
from evalsuite.cli import main


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=["umask-022", "umask-027", "umask-077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_file_and_folder_modes(tmp_path: Path, umask: int) -> None:
    atomic_write_text(tmp_path / "out.json", "{}")
    with atomic_dir(tmp_path / "entry") as tmp:
        (tmp / "f").write_text("x")
    assert mode(tmp_path / "out.json") == 0o666 & ~umask
    assert mode(tmp_path / "entry") == 0o777 & ~umask


def test_gate_outputs_are_readable_by_others(tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s.toml").write_text(SUITE)
    (tmp_path / "r.json").write_text(json.dumps(GOOD))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    outs = [tmp_path / n for n in ("out.json", "j.xml", "g.md")]
    assert main(["gate", "--config", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r.json"),
                 "--json-out", str(outs[0]), "--junit", str(outs[1]), "--markdown", str(outs[2])]) == 0
    assert [mode(p) for p in outs] == [0o666 & ~umask] * 3
