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
from typing import Any, NoReturn

from evalsuite import __version__
from evalsuite.cli_checks import check_folder, check_writable
from evalsuite.cli_tools import cmd_bench, cmd_cache
from evalsuite.errors import EvalsuiteError, UsageError

EXIT_HELP = ("exit codes: 0 every check passed; 1 a check failed or scoring broke; 2 usage, config or input "
             "error; 130 interrupted (SIGINT); 143 terminated (SIGTERM). On 130/143 the builder subprocess is "
             "stopped, temp folders are removed and per-window results journaled so far are kept.")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so every cleanup path of Ctrl-C runs for it too."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evalsuite", description="Perplexity gate for quantized language models.",
                     epilog=EXIT_HELP)
    parser.add_argument("--version", action="version", version=f"evalsuite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ev = sub.add_parser("eval", help="score the model (and variants) on the datasets; print a table", epilog=EXIT_HELP)
    add_run_args(ev)
    gate = sub.add_parser("gate", help="score, then check every threshold; exit 1 when any fails", epilog=EXIT_HELP)
    add_run_args(gate)
    add_gate_args(gate)
    val = sub.add_parser("validate", help="check a suite and its inputs in seconds, without scoring; exit 0 or 2")
    add_run_args(val)
    val.add_argument("--baseline", type=Path, help="also check this baseline file (default: the suite's)")
    val.add_argument("--no-baseline", action="store_true", help="do not check the suite's baseline file")
    bn = sub.add_parser("bench", help="measure tokens/s, peak RSS and overhead over bare ONNX Runtime")
    bn.add_argument("--config", type=Path, help="suite TOML whose model and variants are measured")
    bn.add_argument("--data-dir", help="local corpora folder (else $EVALSUITE_DATA_DIR, else the hub)")
    bn.add_argument("--max-tokens", type=int, default=2048, help="tokens per runner (default 2048)")
    bn.add_argument("--threads", type=int, help="threads for every runner (default: all cores)")
    bn.add_argument("--eval-timing", action="store_true", help="also time the default gate, cold and warm cache")
    bn.add_argument("--json-out", type=Path, help="write the measurements here")
    mg = sub.add_parser("merge", help="combine --shard i/n result files into the numbers of one run")
    mg.add_argument("shards", nargs="+", type=Path, help="results JSON of every shard")
    mg.add_argument("--json-out", type=Path, required=True, help="write the merged results JSON here")
    add_cache_parser(sub)
    base = sub.add_parser("baseline", help="manage stored baselines")
    bsub = base.add_subparsers(dest="baseline_command", required=True, parser_class=_Parser)
    upd = bsub.add_parser("update", help="write a baseline file from a results JSON (or a fresh run)")
    add_run_args(upd)
    upd.add_argument("--results", type=Path, help="results JSON to store (default: run the suite now)")
    upd.add_argument("--out", type=Path, required=True, help="baseline file to write, e.g. baselines/x.json")
    from evalsuite.report.help_text import decorate

    return decorate(parser)


def add_cache_parser(sub: Any) -> None:
    cache = sub.add_parser("cache", help="list, verify or clear the cache ($EVALSUITE_CACHE, else ~/.cache/evalsuite)")
    csub = cache.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    csub.add_parser("ls", help="every entry with its size and last use")
    verify = csub.add_parser("verify", help="check every entry against its manifest; exit 1 if any is broken")
    verify.add_argument("--fast", action="store_true",
                        help="hash only files whose size/mtime/ctime changed (what every run does)")
    clear = csub.add_parser("clear", help="delete entries (all, or those unused for --older-than days)")
    clear.add_argument("--older-than", type=float, metavar="DAYS", help="only entries last used more than DAYS ago")


def add_gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, help="gate this results JSON instead of scoring again")
    p.add_argument("--baseline", type=Path, help="check every run against this stored baseline (overrides the suite's)")
    p.add_argument("--no-baseline", action="store_true", help="skip the suite's baseline regression checks")
    p.add_argument("--junit", type=Path, help="write JUnit XML (one testcase per check)")
    p.add_argument("--markdown", type=Path, help="write a Markdown summary (also $GITHUB_STEP_SUMMARY)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="suite TOML (default: the packaged default suite)")
    p.add_argument("--model", help="HF folder, .gguf file, hub id, or smollm2-135m-instruct | gemma3-270m")
    p.add_argument("--dataset", action="append",
                   help="dataset[:split] or path/to/mine.toml[:split]; repeatable (default: the suite's)")
    p.add_argument("--text", action="append", metavar="PATH",
                   help="a local UTF-8 text file scored as one stream, labelled by its file name; repeatable "
                   "(with --dataset or alone, replaces the suite's datasets)")
    p.add_argument("--per-document", action="store_true", default=None,
                   help="score each row/document separately from a prefix token (lm-eval rolling loglikelihood)")
    p.add_argument("--bos", action=argparse.BooleanOptionalAction, default=None,
                   help="put the tokenizer's BOS token before the stream (default: the suite's bos)")
    p.add_argument("--window", type=int, help="tokens fed per window")
    p.add_argument("--stride", type=int, help="new tokens scored per window (<= window)")
    p.add_argument("--max-tokens", type=int, help="truncate each token stream to its first N tokens")
    p.add_argument("--runner", action="append", choices=["torch", "ort"], help="repeatable")
    p.add_argument("--task", action="append", metavar="NAME", help="accuracy task (hellaswag, arc_easy, ... or "
                   "path/to/mine.toml); repeatable. --dataset, --text and --task together replace the suite's "
                   "whole selection: name only tasks to score only tasks")
    p.add_argument("--limit", type=int, help="score the first N examples of each task (lm-eval's --limit)")
    p.add_argument("--samples-out", type=Path, help="write every task example's scores as JSON lines here")
    p.add_argument("--provider", help="ONNX Runtime execution provider: cpu, cuda, dml (default cpu)")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and ONNX Runtime")
    p.add_argument("--batch-size", type=int, help="windows of equal shape per session.run / torch forward "
                   "(default from the suite, else 1)")
    p.add_argument("--torch-device", choices=["auto", "cpu", "cuda"],
                   help="device of the torch reference (default auto: cuda when --provider cuda and torch has CUDA)")
    p.add_argument("--data-dir", help="local corpora folder (else $EVALSUITE_DATA_DIR, else the hub)")
    p.add_argument("--json-out", type=Path, help="write the results JSON here")
    p.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="score only windows I, I+N, I+2N, ... (0-based); combine with 'evalsuite merge'")
    p.add_argument("--plot", type=Path, metavar="DIR", help="write PNG plots (ΔNLL along the text, KLD) here")
    p.add_argument("--fresh", action="store_true",
                   help="ignore per-window results stored by earlier (interrupted or identical) runs and "
                   "rebuild every cached model, ONNX build and token stream")
    p.add_argument("--reference", type=Path,
                   help="print a stored or published results file beside this run "
                   "(e.g. baselines/phi3-mini-published.json)")
    add_progress_args(p)


def add_progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=["auto", "rich", "plain", "none"], default="auto",
                   help="rich: bars; plain: a log line per stage start/end and a heartbeat at most every "
                   "$EVALSUITE_PROGRESS_INTERVAL s (30); auto (default): rich on a terminal, plain otherwise")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output (same as --progress none)")


def parse_shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise argparse.ArgumentTypeError(f"shard must be I/N with 0 <= I < N, e.g. 0/4; got '{text}'")
    return int(index), int(count)


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
    if getattr(args, "shard", None) is not None:
        from evalsuite.suite import per_document

        if any(per_document(out)):
            raise UsageError("--shard with per-document scoring is not supported (merge re-plans one stream); "
                             "score per-document datasets without --shard")
    return out


def score(args: argparse.Namespace, suite: Any) -> dict[str, Any]:
    """Run the suite and return the results document (printing the PPL table)."""

    from evalsuite.cache import check_cache_root, fresh_builds
    from evalsuite.data import corpora
    from evalsuite.gate import results
    from evalsuite.report import terminal
    from evalsuite.suite import evaluate, to_document

    check_cache_root()
    data_dir = corpora.resolve_data_dir(args.data_dir)
    reference = results.read(reference_path(args), "reference") if args.reference else None
    from evalsuite.report.progress import make_progress

    mode = "none" if getattr(args, "quiet", False) else getattr(args, "progress", "auto")
    with fresh_builds(args.fresh):  # --fresh: rebuild every cache entry and ignore the journal
        evaluation = evaluate(suite, data_dir, make_progress(mode, args.command), resume=not args.fresh,
                              shard=args.shard)
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
    if reference is not None:
        terminal.console().print(terminal.reference_table(reference, doc))
    return doc


def cmd_eval(args: argparse.Namespace) -> int:
    from evalsuite.gate import results

    suite = suite_from_args(args)
    for out in (args.json_out, args.samples_out):
        if out is not None:
            check_writable(out)
    run_preflight(args, suite)
    doc = score(args, suite)
    if args.json_out is not None:
        results.write(args.json_out, doc)
    return 1 if doc["errors"] else 0


def cmd_gate(args: argparse.Namespace) -> int:

    from evalsuite.config import load_suite
    from evalsuite.gate import results
    from evalsuite.gate.checks import baseline_checks
    from evalsuite.gate.task_checks import task_baseline_checks
    from evalsuite.gate.verdict import compare, verdict
    from evalsuite.report import ci, terminal

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
    run_preflight(args, suite, baseline_path)
    baseline = results.read(baseline_path, "baseline") if baseline_path else None
    if args.results:  # a stored document: bind it to the content the suite names now
        from evalsuite.data import corpora
        from evalsuite.identity import content_identity

        doc = results.read(args.results, "results")
        checks = compare(doc, suite, content_identity(suite, corpora.resolve_data_dir(args.data_dir)))
        doc = {**doc, "plots": stored_plots(args, doc)}
    else:
        doc = score(args, suite)
        checks = compare(doc, suite)
    if baseline is not None and baseline_path is not None:
        checks += baseline_checks(doc, baseline, suite.baseline, baseline_path.name)
        checks += task_baseline_checks(doc, baseline, suite.baseline, baseline_path.name)
    doc = {**doc, "checks": [c.to_json() for c in checks], "passed": verdict(checks)}
    configured = load_suite(args.config).model.source
    if args.model and suite.model.source != configured:
        print(f"evalsuite: note: --model {args.model} replaces the suite's model {configured}; its thresholds "
              "and baseline were set for that model (a baseline of another model fails the gate)", file=sys.stderr)
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
    return 0 if doc["passed"] else 1


def reference_path(args: argparse.Namespace) -> Path:
    """--reference as given, else from the installed package or project (baselines/...)."""
    from evalsuite.preflight import find_packaged

    return find_packaged(args.reference, *([args.config.resolve().parent] if args.config else []))


def run_preflight(args: argparse.Namespace, suite: Any, baseline: Path | None = None) -> list[str]:
    """The checks every command runs before any model work (and all that `validate` does)."""
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
    return preflight(Plan(suite, data_dir, scoring=not stored, baseline=baseline, inputs=tuple(inputs),
                          plot=getattr(args, "plot", None) is not None))


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
    for line in run_preflight(args, suite, baseline):
        print(f"ok  {line}")
    print(f"suite {args.config or 'default'} is valid ({time.perf_counter() - start:.1f} s); nothing was scored")
    return 0


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
    from evalsuite.gate.task_merge import merge_tasks
    from evalsuite.report import terminal
    from evalsuite.scoring import merge
    from evalsuite.scoring.lanes import RunResult

    check_writable(args.json_out)
    shards = [results.read(p, "shard") for p in args.shards]
    doc = {k: v for k, v in merge.merge(shards).items() if k != "tasks"}  # shard 0's section is partial
    tasks = merge_tasks(shards)  # after merge.merge: the shard set is checked
    if tasks is not None:
        doc = {**doc, "tasks": tasks}
    results.write(args.json_out, doc)
    terminal.console().print(terminal.results_table([RunResult(**r) for r in doc["runs"]]))
    return 1 if doc["errors"] else 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from evalsuite.gate import results

    check_writable(args.out)
    suite = suite_from_args(args)
    run_preflight(args, suite)
    doc = results.read(args.results, "results", strict=True) if args.results else score(args, suite)
    if doc.get("shard") or doc.get("complete") is not True or doc.get("errors"):
        raise UsageError("the results are a shard, incomplete or have scoring errors; a baseline must come from "
                         "a complete run (merge the shards first)")
    keep = ("schema_version", "created", "policy", "binding", "runs", "parity", "variants", "tasks", "provenance")
    results.write(args.out, {"baseline": True, **{k: doc[k] for k in keep if k in doc}})
    print(f"wrote baseline {args.out} ({len(doc['runs'])} runs)")
    return 0


COMMANDS = {"eval": cmd_eval, "gate": cmd_gate, "baseline": cmd_baseline, "merge": cmd_merge, "bench": cmd_bench,
            "cache": cmd_cache, "validate": cmd_validate}


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
        return COMMANDS[args.command](args)
    except EvalsuiteError as err:
        print(f"evalsuite: error: {err}", file=sys.stderr)
        return err.exit_code
    except Terminated:
        print("evalsuite: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("evalsuite: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:  # --help / --version
        return int(exit_.code or 0)
    except Exception as err:  # an unexpected failure is a failed run, never a pass
        if os.environ.get("EVALSUITE_DEBUG"):
            raise
        print(f"evalsuite: internal error: {type(err).__name__}: {err} (set EVALSUITE_DEBUG=1 for "
              "the traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())
