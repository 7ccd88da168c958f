"""`evalsuite bench` and `evalsuite cache`: the commands that measure and tend, not score and gate."""

from __future__ import annotations

import argparse

from evalsuite.cli_checks import check_writable
from evalsuite.errors import ExitCode, UsageError


def cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    from rich.table import Table

    from evalsuite.bench import bench
    from evalsuite.config import load_suite
    from evalsuite.data import corpora
    from evalsuite.gate import results
    from evalsuite.report import terminal

    if args.max_tokens < 2:
        raise UsageError(f"--max-tokens must be at least 2, got {args.max_tokens}")
    if args.task_examples < 0:
        raise UsageError(f"--task-examples must be 0 or more, got {args.task_examples}")
    check_lmeval_python()
    if args.json_out is not None:
        check_writable(args.json_out)
    suite = load_suite(args.config)
    if args.threads:
        suite = dataclasses.replace(suite, eval=dataclasses.replace(suite.eval, threads=args.threads))
    data_dir = corpora.resolve_data_dir(args.data_dir)
    timing = ["--max-tokens", "2048"] + (["--config", str(args.config)] if args.config else [])
    b = bench(suite, data_dir, args.max_tokens, timing if args.eval_timing else None, args.task_examples)
    table = Table(title=f"Benchmark: {b['dataset']}, {b['tokens']} tokens, window {b['window']}, "
                        f"stride {b['stride']}, {b['threads']} threads")
    for col in ("runner", "tok/s", "peak RSS MB", "PPL"):
        table.add_column(col, justify="left" if col == "runner" else "right")
    for r in [*b["runners"], b["rss_long"], b["rss_wide"]]:
        table.add_row(r["runner"], f"{r.get('tokens_per_s', 0):.0f}", f"{r.get('peak_rss_mb', 0):.0f}",
                      f"{r.get('ppl', 0):.4f}" if "ppl" in r else r.get("error", ""))
    console = terminal.console()
    console.print(table)
    for line in b["verdicts"]:
        console.print(f"• {line}")
    if args.json_out is not None:
        results.write(args.json_out, b)
    return ExitCode.OK


def cmd_cache(args: argparse.Namespace) -> int:
    import time

    from evalsuite import cache

    root = cache.cache_root()
    found = cache.entries()
    if args.cache_command == "ls":
        for e in found:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_use))
            print(f"{e.kind:8} {e.size / 1e6:10.1f} MB  {used}  {e.path.name}")
        print(f"{len(found)} entries, {sum(e.size for e in found) / 1e6:.1f} MB in {root}")
        return ExitCode.OK
    if args.cache_command == "verify":
        broken = [(e, p) for e in found if (p := cache.entry_problem(e, full=not args.fast)) is not None]
        for e, problem in broken:
            print(f"BROKEN {e.kind}/{e.path.name}: {problem}")
        print(f"{len(found) - len(broken)} of {len(found)} entries verified in {root}")
        return ExitCode.GATE_FAILED if broken else ExitCode.OK
    if args.older_than is not None and args.older_than < 0:
        raise UsageError(f"--older-than must be a number of days >= 0, got {args.older_than}")
    cutoff = time.time() - 86400 * (args.older_than or 0)
    gone = [e for e in found if args.older_than is None or e.last_use < cutoff]
    for e in gone:
        cache.remove(e)
    cache.sweep_stale(root)
    print(f"removed {len(gone)} entries, {sum(e.size for e in gone) / 1e6:.1f} MB from {root}")
    return ExitCode.OK


def check_lmeval_python() -> None:
    """$EVALSUITE_LMEVAL_PYTHON, when set, must be an executable (a scratch venv's python)."""
    import os
    from pathlib import Path

    from evalsuite.bench_tasks import LMEVAL_ENV

    python = os.environ.get(LMEVAL_ENV)
    if python and not (Path(python).is_file() and os.access(python, os.X_OK)):
        raise UsageError(f"${LMEVAL_ENV} is {python!r}, not an executable; point it at the python of a venv "
                         "with lm-eval 0.4 installed, or unset it")
