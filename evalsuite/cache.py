"""Content-addressed cache directory, hashing and atomic writes.

Root: `$EVALSUITE_CACHE`, else `~/.cache/evalsuite`. Entries are written to a temporary sibling and
renamed into place, so a reader never sees a half-written entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError


def cache_root() -> Path:
    env = os.environ.get("EVALSUITE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "evalsuite"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(folder: Path) -> str:
    """Hash of every file's relative path and bytes below `folder` (sorted; stable across machines)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def key_of(obj: Any) -> str:
    """Short stable hash of a JSON-serialisable description (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions (None when missing): part of cache keys and provenance."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def shared_mode(kind: int) -> int:
    """The mode a plain open()/mkdir() would give (0o666 / 0o777 minus the umask): temp files and
    folders are created 0600 / 0700, which a CI artifact step running as another user cannot read."""
    mask = os.umask(0o022)
    os.umask(mask)
    return kind & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), shared_mode(0o666))
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    try:
        atomic_write_bytes(path, text.encode())
    except OSError as err:
        raise EvalsuiteError(
            f"cannot write {path}: {err.strerror}; choose a writable output path"
        ) from None


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp dir beside `final`; on success rename it to `final`, on error remove it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    tmp.chmod(shared_mode(0o777))
    try:
        yield tmp
        if final.exists():  # another process won the race; keep its copy
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
