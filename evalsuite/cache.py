"""Content-addressed cache directory, hashing and atomic writes.

Root: `$EVALSUITE_CACHE`, else `~/.cache/evalsuite`. Entries are written to a temporary sibling and
renamed into place, so a reader never sees a half-written entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError, UsageError


def cache_root() -> Path:
    env = os.environ.get("EVALSUITE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "evalsuite"


def check_cache_root() -> None:
    """The cache (and its entry folders) must be usable folders: fail before any work otherwise."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        for kind in ("models", "onnx", "awq", "tokens", "journal"):
            if (root / kind).exists() and not (root / kind).is_dir():
                raise NotADirectoryError(0, "a file blocks the folder", str(root / kind))
        fd, probe = tempfile.mkstemp(dir=root, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = err.filename or root
        raise UsageError(f"cache folder {root} is not usable ({where}: {err.strerror}); set $EVALSUITE_CACHE "
                         "to a writable folder") from None


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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
    write_output(path, text.encode())


def write_output(path: Path, data: bytes) -> None:
    """An output file, complete or absent: written beside, renamed; any OSError (a full disk, a file
    size limit) is one line and exit 2, with nothing left at `path` or beside it."""
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise EvalsuiteError(f"cannot write {path}: {err.strerror or type(err).__name__}; free space or choose a "
                             "writable output path") from None


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp dir beside `final`; on success rename it to `final`, on error remove it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp"))
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


# --- Integrity: manifests, verification on reuse, --fresh, stale temp sweep -------------------------

MANIFEST = ".evalsuite_manifest.json"
ENTRY_KINDS = ("models", "onnx", "awq")  # folders; "tokens" holds self-verifying .npz files
STALE_SECONDS = 3600
_fresh: list[bool] = [False]
_built: set[Path] = set()  # entries (re)built by this process: --fresh never discards them twice


def warn(message: str) -> None:
    print(f"evalsuite: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def fresh_builds(on: bool) -> Iterator[None]:
    """While active with `on`, every cache entry met is rebuilt once (the --fresh flag)."""
    before = _fresh[0]
    _fresh[0] = on
    try:
        yield
    finally:
        _fresh[0] = before


def fresh_wanted(path: Path) -> bool:
    return _fresh[0] and path.resolve() not in _built


def stat_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def write_manifest(folder: Path) -> None:
    """Record every file's size, sha256 and stat stamp (size, mtime_ns, ctime_ns) below `folder`."""
    files = {rel: {"size": p.stat().st_size, "sha256": file_sha256(p), "stamp": stat_stamp(p)}
             for rel, p in _files(folder).items()}
    atomic_write_bytes(folder / MANIFEST, json.dumps({"version": 1, "files": files}, indent=1).encode())


def verify_entry(folder: Path, full: bool = False) -> str | None:
    """None when `folder` matches its manifest, else what is wrong. Sizes are always checked; a
    file's sha256 only when its stat stamp changed since the manifest was written, or with `full`."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
        assert isinstance(recorded, dict)
    except FileNotFoundError:
        return "has no manifest (incomplete, or built by an older evalsuite)"
    except (ValueError, KeyError, TypeError, AssertionError, OSError):
        return "has an unreadable manifest"
    on_disk = _files(folder)
    odd = sorted(set(recorded) ^ set(on_disk))
    if odd:
        return f"file {odd[0]} is {'missing' if odd[0] in recorded else 'not in the manifest'}"
    restamp = False
    for rel, path in on_disk.items():
        rec = recorded[rel]
        stamp = stat_stamp(path)
        if stamp[0] != rec.get("size"):
            return f"file {rel} is {stamp[0]} bytes, the manifest says {rec.get('size')}"
        if full or stamp != rec.get("stamp"):
            if file_sha256(path) != rec.get("sha256"):
                return f"file {rel} does not match its sha256"
            restamp = restamp or stamp != rec.get("stamp")
            rec["stamp"] = stamp
    if restamp:  # verified the slow way: record the new stamps so the next run takes the fast path
        with contextlib.suppress(OSError):
            atomic_write_bytes(folder / MANIFEST, json.dumps({"version": 1, "files": recorded}, indent=1).encode())
    return None


def manifest_digest(folder: Path) -> str | None:
    """sha256 over a (verified) entry's file names and hashes: the identity of what was built."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        return key_of(sorted((rel, rec["sha256"]) for rel, rec in files.items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def discard(path: Path) -> None:
    """Move a cache entry aside (atomically, so no reader sees it half-deleted), then delete it."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.discarded-{time.time_ns()}.tmp")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # another process moved it first
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            aside.unlink()


def reuse(folder: Path) -> bool:
    """True when `folder` is a verified cache entry (its last use is recorded). A broken entry is
    moved aside with one warning line and False returned: the caller rebuilds it. So is every entry
    under --fresh, once per process."""
    if not folder.exists():
        return False
    if fresh_wanted(folder):
        discard(folder)
        return False
    problem = verify_entry(folder) if folder.is_dir() else "is not a folder"
    if problem is not None:
        warn(f"cache entry {folder} {problem}; moved aside and rebuilt")
        discard(folder)
        return False
    with contextlib.suppress(OSError):
        os.utime(folder / MANIFEST)  # last use, for `evalsuite cache ls/clear`
    return True


@contextlib.contextmanager
def build_entry(final: Path) -> Iterator[Path]:
    """`atomic_dir` that writes the entry's manifest before the rename."""
    with atomic_dir(final) as tmp:
        yield tmp
        write_manifest(tmp)
    _built.add(final.resolve())


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """An .npz that carries the sha256 of its arrays (its manifest), written atomically."""
    import io

    import numpy as np

    out = io.BytesIO()
    np.savez(out, allow_pickle=False, sha256=np.frombuffer(_arrays_digest(arrays), np.uint8), **arrays)
    atomic_write_bytes(path, out.getvalue())
    _built.add(path.resolve())


def read_npz(path: Path) -> dict[str, Any] | None:
    """The arrays of an .npz written by `write_npz`, or None when it is unreadable or its digest fails."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    digest = arrays.pop("sha256", None)
    if digest is None or digest.tobytes() != _arrays_digest(arrays):
        return None
    return arrays


def _arrays_digest(arrays: dict[str, Any]) -> bytes:
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.digest()


def _owner_alive(tmp: Path) -> bool:
    """Temp names carry their writer's pid (`.NAME.PID.RANDOM.tmp`): is that process still running?"""
    match = re.search(r"\.(\d+)\.[^./]+\.tmp$", tmp.name)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_stale(root: Path | None = None, max_age: float = STALE_SECONDS) -> None:
    """Remove temp entries (`.*.tmp`) older than `max_age` seconds left by killed processes (a
    long build of a process still alive on this machine, e.g. an AWQ search, is left alone)."""
    root = root or cache_root()
    now = time.time()
    for kind in (*ENTRY_KINDS, "tokens", "journal"):
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if now - path.lstat().st_mtime > max_age and not _owner_alive(path):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink()


# --- `evalsuite cache ls | verify | clear` -------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    kind: str  # models, onnx, awq, tokens, journal
    path: Path
    size: int  # bytes
    last_use: float  # epoch seconds: manifest touched on each reuse; file mtime for tokens/journal


def entries(root: Path | None = None) -> list[Entry]:
    """Every cache entry (temp folders and lock files excluded), oldest use first."""
    root = root or cache_root()
    out = []
    for kind in (*ENTRY_KINDS, "tokens", "journal"):
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") or path.suffix == ".lock":
                continue
            with contextlib.suppress(OSError):
                out.append(_entry(kind, path))
    return sorted(out, key=lambda e: e.last_use)


def _entry(kind: str, path: Path) -> Entry:
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        stamp = path / MANIFEST if (path / MANIFEST).is_file() else path
        return Entry(kind, path, size, stamp.stat().st_mtime)
    st = path.stat()
    return Entry(kind, path, st.st_size, st.st_mtime)


def entry_problem(entry: Entry, full: bool = True) -> str | None:
    """What is wrong with an entry (None: fine). Journal records verify themselves when read."""
    if entry.kind in ENTRY_KINDS:
        return verify_entry(entry.path, full) if entry.path.is_dir() else "is not a folder"
    if entry.kind == "tokens":
        return None if read_npz(entry.path) is not None else "is unreadable or fails its sha256"
    return None


def remove(entry: Entry) -> None:
    discard(entry.path)
    if entry.kind == "journal":
        with contextlib.suppress(OSError):
            Path(str(entry.path) + ".lock").unlink()
