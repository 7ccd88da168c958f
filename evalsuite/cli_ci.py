"""`evalsuite plan` and `evalsuite prepare`: the commands a CI matrix runs around `eval --shard` and
`merge` (ci_plan.py: the matrix and cache key; prepare.py: the build stage run once)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evalsuite.errors import ExitCode, UsageError


def add_ci_parsers(sub: Any, add_progress_args: Any) -> None:
    """`plan` and `prepare` (cli_args.py passes its progress options in: no import cycle)."""
    pl = sub.add_parser("plan", help="print what a CI matrix needs as JSON: the shards, the cache key, the shard "
                        "result files, the merge and gate commands (no model work)")
    pl.add_argument("--shards", type=int, required=True, metavar="N", help="number of parallel score jobs")
    pl.add_argument("--config", type=Path, help="suite TOML (default: the packaged default suite)")
    pl.add_argument("--data-dir", help="local corpora folder (else $EVALSUITE_DATA_DIR, else the hub)")
    pl.add_argument("--results-dir", default="results", help="folder of the shard result files (default results)")
    pl.add_argument("--get", metavar="FIELD", help="print only this field, dotted (cache.key, matrix): a string as "
                    "is, anything else as one line of JSON (for $GITHUB_OUTPUT)")
    pl.add_argument("--json-out", type=Path, help="also write the plan here")
    pr = sub.add_parser("prepare", help="export, build, AWQ-search and tokenize everything the suite caches, score "
                        "nothing; leave a relocatable cache for the score jobs")
    pr.add_argument("--config", type=Path, help="suite TOML (default: the packaged default suite)")
    pr.add_argument("--data-dir", help="local corpora folder (else $EVALSUITE_DATA_DIR, else the hub)")
    pr.add_argument("--verify", action="store_true", help="build nothing: check that this cache holds the suite's "
                    "prepared entries, intact (run it where the cache arrives); exit 2 if not")
    pr.add_argument("--fresh", action="store_true", help="rebuild every cache entry the suite uses")
    add_progress_args(pr)


def cmd_prepare(args: argparse.Namespace) -> int:
    import time

    from evalsuite.cache import cache_root, check_cache_root, fresh_builds
    from evalsuite.config import load_suite
    from evalsuite.data import corpora
    from evalsuite.preflight import Plan, preflight
    from evalsuite.prepare import prepare, verify

    start = time.perf_counter()
    suite = load_suite(args.config)
    data_dir = corpora.resolve_data_dir(args.data_dir)
    if args.verify:
        if args.fresh:
            raise UsageError("prepare --verify builds nothing; drop --fresh")
        got = verify(suite, data_dir)
        print(f"prepared cache {got['key']} verified: {got['entries']} entries, {got['bytes'] / 1e6:.1f} MB in "
              f"{cache_root()} ({time.perf_counter() - start:.1f} s)")
        return ExitCode.OK
    check_cache_root()
    preflight(Plan(suite, data_dir))
    from evalsuite.report.progress import make_progress

    with fresh_builds(args.fresh):
        doc = prepare(suite, data_dir, make_progress("none" if args.quiet else args.progress, "prepare"))
    size = sum(e["size"] for e in doc["entries"])
    print(f"prepared cache {doc['cache_key']}: {len(doc['entries'])} entries, {size / 1e6:.1f} MB in {cache_root()} "
          f"({doc['seconds']:.1f} s); nothing was scored")
    return ExitCode.OK


def resolve_shard(args: argparse.Namespace) -> None:
    """`--shard auto` from the CI's variables (ci_shard.py); `{index}` and `{count}` in --json-out name
    the shard, so one command line serves every job of a matrix."""
    import os
    import sys

    if args.shard == "auto":
        from evalsuite.ci_shard import auto_shard, describe

        args.shard = auto_shard(os.environ)
        print(f"evalsuite: --shard auto: shard {args.shard[0]}/{args.shard[1]} ({describe(os.environ)})",
              file=sys.stderr)
    out = getattr(args, "json_out", None)
    if out is not None and ("{index}" in str(out) or "{count}" in str(out)):
        index, count = args.shard
        args.json_out = Path(str(out).replace("{index}", str(index)).replace("{count}", str(count)))


def _field(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            top = ", ".join(sorted(doc))
            raise UsageError(f"--get {path}: the plan has no field '{part}' there; top-level fields: {top}")
        value = value[part]
    return value


def cmd_plan(args: argparse.Namespace) -> int:
    from evalsuite.cache import write_output
    from evalsuite.ci_plan import plan
    from evalsuite.cli_checks import check_writable
    from evalsuite.config import load_suite
    from evalsuite.data import corpora

    if args.json_out is not None:
        check_writable(args.json_out)
    suite = load_suite(args.config)
    doc = plan(suite, corpora.resolve_data_dir(args.data_dir), args.shards, args.config, args.results_dir)
    if args.get:
        value = _field(doc, args.get)
        print(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
    else:
        print(json.dumps(doc, indent=2))
    if args.json_out is not None:
        write_output(args.json_out, (json.dumps(doc, indent=2) + "\n").encode())
    return ExitCode.OK


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """`eval` / `gate --executor ray --shards N` (executor_ray.py; the `evalsuite[ray]` extra)."""
    from evalsuite.executor_ray import WORKER_CACHES

    g = p.add_argument_group("executor", "score the shards of the run as Ray tasks and merge them (evalsuite[ray])")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: score here; ray: one Ray task per shard, merged as 'merge' merges")
    g.add_argument("--shards", type=int, metavar="N", help="number of Ray tasks (with --executor ray)")
    g.add_argument("--address", metavar="ADDR", help="Ray cluster: HOST:PORT of its head ('ray start --head'), "
                   "ray://HOST:PORT or auto (default: $RAY_ADDRESS, else a local Ray for this run)")
    g.add_argument("--cpus-per-shard", type=float, metavar="C", help="CPUs each task asks Ray for (default 1; "
                   "Ray sets OMP_NUM_THREADS to it)")
    g.add_argument("--gpus-per-shard", type=float, metavar="G", help="GPUs each task asks Ray for (default 0; "
                   "Ray sets CUDA_VISIBLE_DEVICES; add --provider cuda)")
    g.add_argument("--retries", type=int, help="times Ray runs a shard again whose worker was lost (default 3)")
    g.add_argument("--worker-cache", choices=WORKER_CACHES, help="how each task's cache is seeded from "
                   "the prepared one: object (default): through Ray's object store; shared: copied from "
                   "$EVALSUITE_CACHE, a path every node reads")
