"""Command line. `main(argv)` returns the exit code; every EvalsuiteError becomes one line + code.

Exit codes: 0 pass, 1 failed check or scoring error, 2 usage/config/input error, 130 interrupted
(SIGINT, Ctrl-C), 143 terminated (SIGTERM, what CI runners send on cancel or timeout). Both stop the
builder subprocess, remove temp folders and keep the per-window results journaled so far.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import Any

from evalsuite.cli_args import build_parser
from evalsuite.cli_checks import check_folder, check_writable
from evalsuite.cli_ci import cmd_plan, cmd_prepare
from evalsuite.cli_tools import cmd_bench, cmd_cache
from evalsuite.errors import EvalsuiteError, ExitCode, UsageError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so every cleanup path of Ctrl-C runs for it too."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def cli_ref(ref: str) -> str:
    """A dataset TOML named on the command line is relative to the working directory."""
    from evalsuite.config import is_path_ref

    name, sep, split = ref.partition(":")
    return str(Path(name).expanduser().absolute()) + sep + split if is_path_ref(name) else ref


def suite_from_args(args: argparse.Namespace) -> Any:
    from evalsuite.config import DEFAULT_SUITE, DatasetCfg, anchor_paths, load_suite, model_path

    suite = load_suite(args.config)
    ev = suite.eval
    # What the command line names to score (--dataset, --text, --task) replaces the suite's whole selection
    picked = bool(args.dataset or args.text or args.task)
    overrides = {
        "datasets": tuple(cli_ref(r) for r in args.dataset or ()) if picked else None,
        "bos": args.bos, "documents": args.per_document,
        "window": args.window, "stride": args.stride, "max_tokens": args.max_tokens,
        "runners": tuple(dict.fromkeys(args.runner)) if args.runner else None,
        "provider": args.provider, "threads": args.threads, "batch_size": args.batch_size,
        "torch_device": args.torch_device,
    }
    if args.max_tokens is not None and args.max_tokens < 3:
        raise UsageError(f"--max-tokens must be at least 3 (at least 2 scored tokens are needed for an error "
                         f"bar), got {args.max_tokens}")
    if getattr(args, "plot", None) is not None:
        check_folder(args.plot, "--plot")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    try:  # the dataclasses re-validate: e.g. --dataset leaving a dataset without any threshold
        ev = dataclasses.replace(ev, **{k: v for k, v in overrides.items() if v is not None})
        model = suite.model  # --model is relative to the working directory, the suite's paths to its file
        if args.model:
            model = dataclasses.replace(model, source=model_path(Path.cwd(), args.model))
        entries = suite.datasets  # --dataset / --text replace both [eval] datasets and [[datasets]]
        if picked:
            entries = tuple(DatasetCfg(text=str(Path(t).expanduser().absolute())) for t in args.text or ())
        from evalsuite.task_config import cli_tasks

        tasks = () if picked and not args.task else cli_tasks(suite.tasks, args.task, args.limit)
        out = dataclasses.replace(suite, eval=ev, model=model, datasets=entries, tasks=tasks)
        out = anchor_paths(out, (args.config or DEFAULT_SUITE).resolve().parent)
    except ValueError as err:
        raise UsageError(f"{err}; change the command-line options or the suite") from None
    if args.command == "gate" and args.model and out.model.source != suite.model.source:
        print(f"evalsuite: note: --model {args.model} replaces the suite's model {suite.model.source}; its "
              "thresholds and baseline were set for that model (a baseline of another model fails the gate)",
              file=sys.stderr)
    return out


def score(args: argparse.Namespace, suite: Any, ray: Any = None, loaded: Any = None) -> dict[str, Any]:
    """Run the suite (here, or its shards on Ray: `ray` = executor_ray.RayOptions) and return the
    results document (printing the PPL table). `loaded`: the task kinds preflight already loaded."""
    from evalsuite.cache import check_cache_root
    from evalsuite.gate import results
    from evalsuite.report import terminal

    check_cache_root()
    reference = results.read(reference_path(args), "reference") if args.reference else None
    if ray is not None:
        from evalsuite.cli_ray import score_ray

        doc = score_ray(args, ray)
    else:
        doc = score_here(args, suite, loaded)
    if reference is not None:
        terminal.console().print(terminal.reference_table(reference, doc))
    return doc


def score_here(args: argparse.Namespace, suite: Any, loaded: Any = None) -> dict[str, Any]:
    from evalsuite.cache import fresh_builds
    from evalsuite.data import corpora
    from evalsuite.report import terminal
    from evalsuite.report.progress import make_progress
    from evalsuite.suite import evaluate, to_document

    data_dir = corpora.resolve_data_dir(args.data_dir)

    mode = "none" if getattr(args, "quiet", False) else getattr(args, "progress", "auto")
    with fresh_builds(args.fresh):  # --fresh: rebuild every cache entry and ignore the journal
        evaluation = evaluate(suite, data_dir, make_progress(mode, args.command), resume=not args.fresh,
                              shard=args.shard, tasks=loaded or None)
    terminal.print_results(terminal.console(), evaluation.runs)
    for err in evaluation.errors:
        print(f"evalsuite: {err['variant']}/{err['runner']}: {err['message']}", file=sys.stderr)
    doc = to_document(evaluation)
    if args.command != "gate":  # the gate prints it with each row's verdict
        terminal.print_accuracy(terminal.console(), doc, [])
    if getattr(args, "samples_out", None) is not None:
        from evalsuite.report.samples import write_samples

        write_samples(args.samples_out, doc.get("tasks"), {t.label: t.data.examples for t in evaluation.task_sets})
    if getattr(args, "plot", None) is not None:
        from evalsuite.report.plots import write_plots
        from evalsuite.report.summary_plot import write_summary_plot

        doc["plots"] = [str(p) for p in [*write_plots(evaluation, args.plot), *write_summary_plot(doc, args.plot)]]
    return doc


def cmd_eval(args: argparse.Namespace) -> int:
    from evalsuite.executor_ray import options
    from evalsuite.gate import results

    ray = options(args)  # --executor ray misuse: one line, before the suite is read
    suite = suite_from_args(args)
    for out in (args.json_out, args.samples_out):
        if out is not None:
            check_writable(out)
    plan = run_preflight(args, suite)
    doc = score(args, suite, ray, plan.loaded)
    if args.json_out is not None:
        results.write(args.json_out, doc)
    return ExitCode.GATE_FAILED if doc["errors"] else ExitCode.OK


def cmd_gate(args: argparse.Namespace) -> int:

    from evalsuite.executor_ray import options
    from evalsuite.gate import results
    from evalsuite.gate.checks import baseline_checks
    from evalsuite.gate.task_checks import task_baseline_checks
    from evalsuite.gate.verdict import compare, verdict
    from evalsuite.report import ci, terminal

    ray = options(args)  # before the --shard check: --executor ray names its own reason to refuse --shard
    if args.shard is not None:
        raise UsageError("gate --shard would judge a part of the run; score each shard with 'evalsuite eval "
                         "--shard I/N --json-out', merge them with 'evalsuite merge', then 'gate --results MERGED'")
    suite = suite_from_args(args)
    for out in (args.json_out, args.junit, args.markdown, args.samples_out):
        if out is not None:
            check_writable(out)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        check_writable(Path(os.environ["GITHUB_STEP_SUMMARY"]), "$GITHUB_STEP_SUMMARY")
    baseline_path = args.baseline or (resolve_baseline(suite.baseline.file, args.config)
                                      if suite.baseline.file and not args.no_baseline else None)
    plan = run_preflight(args, suite, baseline_path)
    baseline = results.read(baseline_path, "baseline") if baseline_path else None
    if args.results:  # a stored document: bind it to the content the suite names now
        from evalsuite.data import corpora
        from evalsuite.identity import content_identity

        doc = results.read(args.results, "results")
        checks = compare(doc, suite, content_identity(suite, corpora.resolve_data_dir(args.data_dir)))
        doc = {**doc, "plots": stored_plots(args, doc)}
    elif ray is not None:  # merged shards: bound to what the suite names now, as `gate --results` binds them
        from evalsuite.data import corpora
        from evalsuite.identity import content_identity

        doc = score(args, suite, ray)
        checks = compare(doc, suite, content_identity(suite, corpora.resolve_data_dir(args.data_dir)))
    else:
        doc = score(args, suite, loaded=plan.loaded)
        checks = compare(doc, suite)
    if baseline is not None and baseline_path is not None:
        checks += baseline_checks(doc, baseline, suite.baseline, baseline_path.name)
        checks += task_baseline_checks(doc, baseline, suite.baseline, baseline_path.name)
    doc = {**doc, "checks": [c.to_json() for c in checks], "passed": verdict(checks)}
    console = terminal.console()
    if doc.get("variants"):
        console.print(terminal.quality_table(doc, checks))
    terminal.print_accuracy(console, doc, checks)
    console.print(terminal.checks_table(checks))
    if args.results and args.reference:  # a scoring run prints it beside its own table
        console.print(terminal.reference_table(results.read(reference_path(args), "reference"), doc))
    console.print(("[bold green]" if doc["passed"] else "[bold red]") + ci.verdict_line(checks))
    from evalsuite.report.outputs import write_gate_outputs

    write_gate_outputs(doc, checks, args.json_out, args.junit, args.markdown, os.environ.get("GITHUB_STEP_SUMMARY"))
    return ExitCode.OK if doc["passed"] else ExitCode.GATE_FAILED


def reference_path(args: argparse.Namespace) -> Path:
    """--reference as given, else from the installed package or project (baselines/...)."""
    from evalsuite.preflight import find_packaged

    return find_packaged(args.reference, *([args.config.resolve().parent] if args.config else []))


def run_preflight(args: argparse.Namespace, suite: Any, baseline: Path | None = None) -> Any:
    """The checks every command runs before any model work (and all that `validate` does): the
    preflight.Plan, with the lines of what passed (`done`) and the task kinds it loaded (`loaded`)."""
    from evalsuite.data import corpora
    from evalsuite.preflight import Plan, preflight

    stored = getattr(args, "results", None)
    inputs = [("results", stored)] if stored else []
    if getattr(args, "reference", None):
        inputs.append(("reference", reference_path(args)))
    data_dir = None if stored else corpora.resolve_data_dir(args.data_dir)
    if getattr(args, "progress", None) is not None:
        from evalsuite.report.progress import heartbeat_interval

        heartbeat_interval()  # a bad EVALSUITE_PROGRESS_INTERVAL fails here, not after the first stage
    plan = Plan(suite, data_dir, scoring=not stored, baseline=baseline, inputs=tuple(inputs),
                plot=getattr(args, "plot", None) is not None)
    preflight(plan)
    return plan


def stored_plots(args: argparse.Namespace, doc: dict[str, Any]) -> list[str]:
    """gate --results --plot: the plot a results document allows (per-token plots need scoring)."""
    if args.plot is None:
        return list(doc.get("plots") or [])
    from evalsuite.report.summary_plot import write_summary_plot

    written = [str(p) for p in write_summary_plot(doc, args.plot)]
    if not written:
        print(f"evalsuite: note: {args.results} has no variant runs to plot; no plot written to {args.plot}",
              file=sys.stderr)
    return written


def cmd_validate(args: argparse.Namespace) -> int:
    import time

    start = time.perf_counter()
    suite = suite_from_args(args)
    baseline = args.baseline or (resolve_baseline(suite.baseline.file, args.config)
                                 if suite.baseline.file and not args.no_baseline else None)
    for out in (args.json_out, args.samples_out):
        if out is not None:
            check_writable(out)
    for line in run_preflight(args, suite, baseline).done:
        print(f"ok  {line}")
    print(f"suite {args.config or 'default'} is valid ({time.perf_counter() - start:.1f} s); nothing was scored")
    return ExitCode.OK


def resolve_baseline(name: str, config: Path | None) -> Path:
    """A suite's baseline path: absolute, or relative to the suite file's folder, the project root /
    installed package (for the packaged default suite), then the working directory."""
    from evalsuite.config import DEFAULT_SUITE

    suite_dir = (config or DEFAULT_SUITE).resolve().parent
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [suite_dir / path, suite_dir.parent / path,  # the suite's
                                                     Path(__file__).resolve().parent / path, Path.cwd() / path]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise UsageError(f"baseline file {name} not found (looked in {', '.join(str(c.parent) for c in candidates)}); "
                         "fix [baseline] file or pass --no-baseline")
    return found


def cmd_merge(args: argparse.Namespace) -> int:

    from evalsuite.gate import results
    from evalsuite.gate.task_merge import merge_shards
    from evalsuite.report import terminal
    from evalsuite.schema import RunRecord

    check_writable(args.json_out)
    doc = merge_shards([results.read(p, "shard") for p in args.shards])
    results.write(args.json_out, doc)
    terminal.console().print(terminal.results_table([RunRecord.from_json(r) for r in doc["runs"]]))
    return ExitCode.GATE_FAILED if doc["errors"] else ExitCode.OK


def cmd_baseline(args: argparse.Namespace) -> int:
    from evalsuite.gate import results

    check_writable(args.out)
    suite = suite_from_args(args)
    plan = run_preflight(args, suite)
    doc = results.read(args.results, "results", strict=True) if args.results else score(args, suite,
                                                                                          loaded=plan.loaded)
    if doc.get("shard") or doc.get("complete") is not True or doc.get("errors"):
        raise UsageError("the results are a shard, incomplete or have scoring errors; a baseline must come from "
                         "a complete run (merge the shards first)")
    keep = ("schema_version", "created", "policy", "roles", "binding", "runs", "parity", "variants", "tasks",
            "provenance")
    results.write(args.out, {"baseline": True, **{k: doc[k] for k in keep if k in doc}})
    print(f"wrote baseline {args.out} ({len(doc['runs'])} runs)")
    return ExitCode.OK


COMMANDS = {"eval": cmd_eval, "gate": cmd_gate, "baseline": cmd_baseline, "merge": cmd_merge, "bench": cmd_bench,
            "cache": cmd_cache, "validate": cmd_validate,
            "plan": cmd_plan, "prepare": cmd_prepare}


def main(argv: list[str] | None = None) -> int:
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: signals cannot be handled here
        return _main(argv)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "shard", None) is not None and args.command != "gate":  # gate refuses any shard
            from evalsuite.cli_ci import resolve_shard

            resolve_shard(args)
        return COMMANDS[args.command](args)
    except EvalsuiteError as err:
        print(f"evalsuite: error: {err}", file=sys.stderr)
        return err.exit_code
    except Terminated:
        print("evalsuite: terminated (SIGTERM)", file=sys.stderr)
        return ExitCode.TERMINATED
    except KeyboardInterrupt:
        print("evalsuite: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except SystemExit as exit_:  # --help / --version
        return int(exit_.code or ExitCode.OK)
    except Exception as err:  # an unexpected failure is a failed run, never a pass
        if os.environ.get("EVALSUITE_DEBUG"):
            raise
        print(f"evalsuite: internal error: {type(err).__name__}: {err} (set EVALSUITE_DEBUG=1 for "
              "the traceback)", file=sys.stderr)
        return ExitCode.GATE_FAILED


def entry() -> None:
    sys.exit(main())
