"""content_hash.known_sha256: a cache entry's file hash comes from its manifest only while the file's stat
stamp is the one the manifest recorded; any change to the file (a new stamp) means reading it again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from evalsuite import cache, content_hash


def _entry(tmp_path: Path) -> Path:
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"weights" * 1000)
    cache.write_manifest(folder)
    return folder


def test_manifest_sha_is_used_while_the_stamp_matches(tmp_path: Path) -> None:
    folder = _entry(tmp_path)
    manifest = folder / cache.MANIFEST
    doc = json.loads(manifest.read_text())
    doc["files"]["weights.bin"]["sha256"] = "f" * 64  # a recorded hash the bytes do not have
    manifest.write_text(json.dumps(doc))
    assert content_hash.known_sha256(folder / "weights.bin") == "f" * 64  # not read: the stamp is unchanged


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    folder = _entry(tmp_path)
    path = folder / "weights.bin"
    before = content_hash.known_sha256(path)
    assert before == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"WEIGHTS" * 1000)  # same size, new bytes: mtime/ctime move
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert content_hash.known_sha256(path) == hashlib.sha256(b"WEIGHTS" * 1000).hexdigest()


def test_files_outside_entries_and_odd_manifests_are_hashed(tmp_path: Path) -> None:
    loose = tmp_path / "model.gguf"
    loose.write_bytes(b"gguf")
    assert content_hash.known_sha256(loose) == hashlib.sha256(b"gguf").hexdigest()
    folder = _entry(tmp_path)
    for bad in ("not json", json.dumps({"files": []}), json.dumps({"files": {"weights.bin": "x"}})):
        (folder / cache.MANIFEST).write_text(bad)
        (folder / "weights.bin").write_bytes(b"other" * 1400)  # a new stamp each time (size differs)
        assert content_hash.known_sha256(folder / "weights.bin") == hashlib.sha256(b"other" * 1400).hexdigest()
