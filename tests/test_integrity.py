"""Hostile caches and processes: corrupt journal records, concurrent shards on one cache, corrupt
cache entries, SIGTERM mid-build. Nothing stale, corrupted or half-written is ever scored."""

from __future__ import annotations

import json
import os
import signal
import time
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


def flip_byte(path: Path, offset: int) -> None:
    """Flip one byte in place and put the modification time back (a hostile, silent edit)."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_manifest_catches_every_edit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evalsuite.cache import build_entry, reuse, verify_entry

    def make() -> Path:
        with build_entry(tmp_path / "entry") as tmp:
            (tmp / "weights.bin").write_bytes(bytes(range(256)) * 64)
            (tmp / "sub").mkdir()
            (tmp / "sub" / "config.json").write_text("{}")
        return tmp_path / "entry"

    entry = make()
    assert verify_entry(entry) is None and reuse(entry)
    edits = {
        "flip": lambda: flip_byte(entry / "weights.bin", 1000),
        "truncate": lambda: os.truncate(entry / "weights.bin", 100),
        "delete": lambda: (entry / "sub" / "config.json").unlink(),
        "extra": lambda: (entry / "extra.onnx").write_bytes(b"x"),
        "manifest": lambda: (entry / ".evalsuite_manifest.json").write_text("{"),
    }
    for name, edit in edits.items():
        edit()
        assert verify_entry(entry) is not None, name
        assert not reuse(entry), name  # moved aside: the caller rebuilds
        assert not entry.exists() and not list(tmp_path.glob(".entry*")), name
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and str(entry) in err, (name, err)
        entry = make()
    assert verify_entry(entry, full=True) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupt_token_cache_heals(damage: str, tiny_llama_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    args = [*TORCH_ARGS, "--model", str(tiny_llama_dir), "--max-tokens", "300", "--stride", "64"]
    cache = tmp_path / "cache"
    finish(evalsuite([*args, "--json-out", str(tmp_path / "clean.json")], cache, data_dir))
    (npz,) = (cache / "tokens").glob("*.npz")
    if damage == "flip":
        flip_byte(npz, npz.stat().st_size // 2)
    else:
        os.truncate(npz, npz.stat().st_size // 2 if damage == "truncate" else 0)
    for _ in journal_files(cache):
        _.unlink()  # the token stream itself must be right: rescore from it
    proc = evalsuite([*args, "--json-out", str(tmp_path / "healed.json")], cache, data_dir)
    err = proc.communicate(timeout=600)[1].decode()
    assert proc.returncode == 0, err
    assert f"cache entry {npz}" in err and "rebuilt" in err
    assert run_doc(tmp_path / "healed.json")["nll_sum"] == run_doc(tmp_path / "clean.json")["nll_sum"]
    finish(evalsuite([*args, "--json-out", str(tmp_path / "again.json")], cache, data_dir))  # healed for good


def journal_files(cache: Path) -> list[Path]:
    return list((cache / "journal").glob("*.nll"))


def test_corrupt_onnx_build_is_rebuilt_and_fresh_rebuilds(tiny_llama_dir: Path, data_dir: Path,
                                                         tmp_path: Path) -> None:
    (tmp_path / "suite.toml").write_text('[eval]\nrunners = ["ort"]\n')  # no variants: one build
    args = ["eval", "--config", str(tmp_path / "suite.toml"), "--dataset", "ptb", "--window", "64", "--stride", "64",
            "--threads", "1", "--model", str(tiny_llama_dir), "--max-tokens", "300"]
    cache = tmp_path / "cache"
    finish(evalsuite([*args, "--json-out", str(tmp_path / "clean.json")], cache, data_dir))
    (build,) = (cache / "onnx").iterdir()
    biggest = max((p for p in build.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    flip_byte(biggest, biggest.stat().st_size // 2)
    for path in journal_files(cache):
        path.unlink()  # without the journal, the corrupt weights would be scored
    proc = evalsuite([*args, "--json-out", str(tmp_path / "healed.json")], cache, data_dir)
    err = proc.communicate(timeout=600)[1].decode()
    assert proc.returncode == 0, err
    assert err.count(f"cache entry {build}") == 1 and "rebuilt" in err
    assert run_doc(tmp_path / "healed.json")["nll_sum"] == run_doc(tmp_path / "clean.json")["nll_sum"]
    inode = biggest.stat().st_ino
    finish(evalsuite([*args, "--fresh", "--json-out", str(tmp_path / "fresh.json")], cache, data_dir))
    assert biggest.stat().st_ino != inode  # --fresh rebuilt the build too
    assert run_doc(tmp_path / "fresh.json")["nll_sum"] == run_doc(tmp_path / "clean.json")["nll_sum"]
    assert not list((cache / "onnx").glob(".*"))  # nothing left aside


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_onnx_build_stops_the_builder(sig: int, code: int, tiny_llama_dir: Path, data_dir: Path,
                                                    tmp_path: Path) -> None:
    import psutil

    (tmp_path / "suite.toml").write_text('[eval]\nrunners = ["ort"]\n')
    cache = tmp_path / "cache"
    proc = evalsuite(["eval", "--config", str(tmp_path / "suite.toml"), "--dataset", "ptb", "--max-tokens", "300",
                      "--model", str(tiny_llama_dir), "--json-out", str(tmp_path / "r.json")], cache, data_dir)
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 300
    while not children and proc.poll() is None and time.monotonic() < deadline:
        children = [c for c in psutil.Process(proc.pid).children(recursive=True)
                    if "onnxruntime_genai" in " ".join(c.cmdline())]
        time.sleep(0.05)
    assert children, "the builder never started"
    assert list((cache / "onnx").glob(".*.tmp"))  # mid-build
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(("evalsuite: terminated", "evalsuite: interrupted"))
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []  # no builder survives its parent
    assert not [p for p in (cache / "onnx").iterdir()]  # neither a .tmp folder nor a half build
    assert not (tmp_path / "r.json").exists()


def test_stale_temp_entries_are_swept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from evalsuite.cache import sweep_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old, new = tmp_path / "onnx" / f".abc.{dead.stdout.strip()}.x.tmp", tmp_path / "tokens" / ".k.npz.y.tmp"
    live, legacy = tmp_path / "awq" / f".def.{os.getpid()}.z.tmp", tmp_path / "onnx" / ".ghi.w.tmp"
    for folder in (old, live, legacy):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(b"half")
        os.utime(folder, (time.time() - 7200, time.time() - 7200))
    new.parent.mkdir()
    new.write_bytes(b"half")
    sweep_stale(tmp_path)
    assert not old.exists() and not legacy.exists()  # over an hour old, writer gone
    assert new.exists()  # a recent one may belong to a live process on another machine
    assert live.exists()  # a long build (AWQ search) of a live process is left alone


def test_cache_subcommand_ls_verify_clear(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from test_reliability import REPO

    from evalsuite.cache import build_entry

    cache = tmp_path / "cache"
    finish(evalsuite([*TORCH_ARGS, "--model", str(tiny_llama_dir), "--max-tokens", "300", "--stride", "64"],
                     cache, data_dir))
    with build_entry(cache / "onnx" / "abc") as tmp:
        (tmp / "model.onnx").write_bytes(b"\0" * 1000)

    def cache_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "EVALSUITE_CACHE": str(cache), "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-m", "evalsuite", "cache", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    ls = cache_cmd("ls")
    assert ls.returncode == 0 and "3 entries" in ls.stdout and "onnx" in ls.stdout and "tokens" in ls.stdout
    assert cache_cmd("verify").returncode == 0
    (npz,) = (cache / "tokens").glob("*.npz")
    flip_byte(npz, 200)
    flip_byte(cache / "onnx" / "abc" / "model.onnx", 10)
    bad = cache_cmd("verify")
    assert bad.returncode == 1 and f"tokens/{npz.name}" in bad.stdout and "onnx/abc" in bad.stdout
    old = time.time() - 3 * 86400
    os.utime(npz, (old, old))
    assert "removed 1 entries" in cache_cmd("clear", "--older-than", "2").stdout
    assert not npz.exists() and (cache / "onnx" / "abc").exists()
    assert "removed 2 entries" in cache_cmd("clear").stdout
    assert "0 entries" in cache_cmd("ls").stdout
