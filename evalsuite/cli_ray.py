"""`eval|gate --executor ray`: the driver's side around executor_ray.py: the prepared cache checked
here, the shard jobs' command lines (the run options as given), the merged document printed as `eval`
prints a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Run options the driver sets itself for the shard jobs (or refuses: executor_ray.options).
DRIVER_SET = {"config", "data_dir", "json_out", "shard", "progress", "quiet", "samples_out", "plot", "fresh",
              "reference"}
FORWARDED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def shard_argv(args: argparse.Namespace) -> list[str]:
    """The run options of `args` as `evalsuite eval` takes them, for the shard jobs (every option
    add_run_args defines and the driver does not set, as given)."""
    from evalsuite.cli_args import add_run_args

    probe = argparse.ArgumentParser(add_help=False)
    add_run_args(probe)
    out: list[str] = []
    for action in probe._actions:
        value = getattr(args, action.dest, action.default)
        if action.dest in DRIVER_SET or value is None or value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            out.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:
            out.append(flag)
        elif isinstance(action, argparse._AppendAction):
            out += [x for v in value for x in (flag, str(v))]
        else:
            out += [flag, str(value)]
    return out


def score_ray(args: argparse.Namespace, opts: Any) -> dict[str, Any]:
    """`--executor ray`: the prepared cache is checked here, the shards scored on Ray, the merged
    document printed as `eval` prints a run and returned (executor_ray.py)."""
    import os
    import sys
    import uuid

    from evalsuite.cache import cache_root
    from evalsuite.config import load_suite
    from evalsuite.data import corpora
    from evalsuite.executor_ray import ShardJob, score_on_ray
    from evalsuite.prepare import PREPARED, verify
    from evalsuite.report import terminal
    from evalsuite.schema import RunRecord

    data_dir = corpora.resolve_data_dir(args.data_dir)
    got = verify(load_suite(args.config), data_dir)  # what `prepare --config` filled, before any model work
    entries = [rec["path"] for rec in json.loads(Path(got["manifest"]).read_text())["entries"]]
    conf = ["--config", str(Path(args.config).resolve())] if args.config else []
    data = ["--data-dir", str(data_dir.resolve())] if data_dir else []
    env = {k: v for k, v in os.environ.items() if k in FORWARDED_ENV or (
        k.startswith("EVALSUITE_") and k != "EVALSUITE_CACHE" and not k.startswith("EVALSUITE_SHARD_"))}
    job = ShardJob(index=0, count=opts.shards, eval_argv=("eval", *conf, *data, *shard_argv(args), "--quiet"),
                   verify_argv=("prepare", *conf, *data, "--verify"), cwd=os.getcwd(), env=tuple(sorted(env.items())),
                   run_id=uuid.uuid4().hex[:12],
                   source=str(cache_root().resolve()) if opts.worker_cache == "shared" else None,
                   entries=(*entries, f"{PREPARED}/{got['key']}.json"))
    quiet = args.quiet or args.progress == "none"
    if not quiet:
        print(f"evalsuite: ray: run {job.run_id}: {opts.shards} shards, {opts.cpus:g} CPU / {opts.gpus:g} GPU each, "
              f"cache {got['key']} ({got['entries']} entries, {got['bytes'] / 1e6:.1f} MB) by {opts.worker_cache}",
              file=sys.stderr)
    doc = score_on_ray(opts, job, cache_root(), quiet)
    terminal.print_results(terminal.console(), [RunRecord.from_json(r) for r in doc["runs"]])
    for err in doc["errors"]:
        print(f"evalsuite: {err['variant']}/{err['runner']}: {err['message']}", file=sys.stderr)
    if args.command != "gate":
        terminal.print_accuracy(terminal.console(), doc, [])
    return doc
