"""`evalsuite prepare`: the build stage of a CI matrix, run once; `prepare --verify`: its check on arrival.

`prepare` does every piece of cached work of a run and no scoring: the model's resolution (GGUF export,
hub download), tokenization of every dataset and calibration split, the ORT base's ONNX build, every
variant's AWQ search and int4 build. It then writes `<cache>/prepared/<cache key>.json` (the key of
`evalsuite plan`): every entry it used, by its path relative to the cache and the digest of its manifest.

The cache is relocatable: entries are named by content hashes, not paths; what they record about
where they were built (`evalsuite_build.json`'s `source`, a GGUF export's `evalsuite_source.json`) is
provenance no reader acts on; links inside the cache are relative (models/hf_config.py). A score job
restores the folder anywhere, points `$EVALSUITE_CACHE` at it and runs `prepare --verify`: the suite's
key must have a prepared manifest there (a cache prepared for another suite or other versions is a
usage error), and every entry must match its manifest (each file whose stat changed in transit is
hashed again), all before any model work. `eval --shard` then rebuilds nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from evalsuite import cache
from evalsuite.ci_plan import cache_key, key_inputs
from evalsuite.config import Suite
from evalsuite.errors import EvalsuiteError, UsageError
from evalsuite.stages import NullProgress, stage

PREPARED = "prepared"
SCHEMA = 1


def prepared_path(key: str, root: Path | None = None) -> Path:
    return (root or cache.cache_root()) / PREPARED / f"{key}.json"


def prepare(suite: Suite, data_dir: Path | None, progress: Any = None) -> dict[str, Any]:
    """Build and tokenize everything `suite` caches (no scoring); write and return its prepared manifest."""
    from evalsuite.quant.variants import build_variant
    from evalsuite.runners import build_base_onnx
    from evalsuite.suite import load_tasks, resolve_and_tokenize

    progress = progress or NullProgress()
    began, wall = time.time(), time.perf_counter()
    key, inputs = cache_key(suite, data_dir), key_inputs(suite, data_dir)
    cache.sweep_stale()
    tasks = load_tasks(suite, data_dir)  # accuracy requests are tokenized per run (not cached): checked here
    source = resolve_and_tokenize(suite, tasks, progress)
    outside = [p for p in (suite.model.onnx, *(v.path for v in suite.variants)) if p]
    if suite.roles.base in suite.eval.runners:
        with stage(progress, "ORT base: ONNX build (cached after the first run)"):
            build_base_onnx(suite, source)
        for variant in suite.variants:
            build_variant(source, variant, suite, data_dir, progress)
    root = cache.cache_root()
    if root.resolve() not in source.path.resolve().parents:
        outside.append(str(source.path))
    # Every entry this run reused or wrote: reuse() stamps a folder's manifest, tokenize() its .npz.
    used = [e for e in cache.entries() if e.kind != "journal" and e.last_use >= began - 1]
    doc = {"schema": SCHEMA, "cache_key": key, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "seconds": round(time.perf_counter() - wall, 2), "entries": [_record(root, e) for e in used],
           "outside_cache": sorted(set(outside)), "key_inputs": inputs}
    cache.write_output(prepared_path(key), (json.dumps(doc, indent=1) + "\n").encode())
    return doc


def _record(root: Path, e: cache.Entry) -> dict[str, Any]:
    digest = cache.manifest_digest(e.path) if e.kind in cache.ENTRY_KINDS else cache.file_sha256(e.path)
    return {"path": e.path.relative_to(root).as_posix(), "kind": e.kind, "size": e.size, "digest": digest}


def verify(suite: Suite, data_dir: Path | None) -> dict[str, Any]:
    """Check on arrival that this cache holds `suite`'s prepared entries, intact (see the module doc)."""
    root = cache.cache_root()
    key = cache_key(suite, data_dir)
    path = prepared_path(key, root)
    if not path.is_file():
        others = sorted(p.stem for p in (root / PREPARED).glob("*.json")) if (root / PREPARED).is_dir() else []
        if others:
            raise UsageError(f"the cache {root} was prepared for another suite or other package versions "
                             f"({', '.join(others[:3])}), not this one ({key}); restore the cache saved under "
                             f"{key} or run 'evalsuite prepare' with this suite here")
        raise UsageError(f"the cache {root} holds no prepared suite ({PREPARED}/{key}.json is missing); run "
                         "'evalsuite prepare' first or restore the folder it filled into $EVALSUITE_CACHE")
    try:
        doc = json.loads(path.read_text())
        entries = doc["entries"]
        assert doc["cache_key"] == key and isinstance(entries, list)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise UsageError(f"{path} is not a prepared manifest of this suite; run 'evalsuite prepare' again") from None
    size = 0
    for rec in entries:
        problem = _problem(root, rec)
        if problem is not None:
            raise EvalsuiteError(f"prepared cache entry {rec.get('path')} in {root} {problem}; restore the cache "
                                 "again or run 'evalsuite prepare' here")
        size += int(rec.get("size") or 0)
    return {"key": key, "entries": len(entries), "bytes": size, "manifest": str(path)}


def _problem(root: Path, rec: Any) -> str | None:
    rel = rec.get("path") if isinstance(rec, dict) else None
    if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts or not rel:
        return "is not a path inside the cache"
    path = root / rel
    if not path.exists():
        return "is missing"
    if rec.get("kind") in cache.ENTRY_KINDS:
        problem = cache.verify_entry(path) if path.is_dir() else "is not a folder"
        if problem is None and cache.manifest_digest(path) != rec.get("digest"):
            problem = "is another build than the one prepared (its manifest digest differs)"
        return problem
    if cache.read_npz(path) is None or cache.file_sha256(path) != rec.get("digest"):
        return "is unreadable or fails its sha256"
    return None
