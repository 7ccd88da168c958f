"""Command line. `main(argv)` returns the exit code; every EvalsuiteError becomes one line + code.

Exit codes: 0 pass, 1 failed check or scoring error, 2 usage/config/input error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .errors import EvalsuiteError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evalsuite", description="Perplexity gate for quantized language models.")
    parser.add_argument("--version", action="version", version=f"evalsuite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ev = sub.add_parser("eval", help="score the model (and variants) on the datasets; print a table")
    add_run_args(ev)
    return parser


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="suite TOML (default: the packaged default suite)")
    p.add_argument("--model", help="HF folder, .gguf file, hub id, or 'smollm2-135m-instruct'")
    p.add_argument("--dataset", action="append", help="dataset[:split]; repeatable (default: the suite's)")
    p.add_argument("--window", type=int, help="tokens fed per window")
    p.add_argument("--stride", type=int, help="new tokens scored per window (<= window)")
    p.add_argument("--max-tokens", type=int, help="truncate each token stream to its first N tokens")
    p.add_argument("--runner", action="append", choices=["torch", "ort"], help="repeatable")
    p.add_argument("--provider", help="ONNX Runtime execution provider: cpu, cuda, dml (default cpu)")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and ONNX Runtime")
    p.add_argument("--data-dir", help="local corpora folder (else $EVALSUITE_DATA_DIR, else the hub)")
    p.add_argument("--json-out", type=Path, help="write the results JSON here")


def suite_from_args(args: argparse.Namespace) -> Any:
    from .config import load_suite

    suite = load_suite(args.config)
    ev = suite.eval
    overrides = {
        "datasets": tuple(args.dataset) if args.dataset else None,
        "window": args.window, "stride": args.stride, "max_tokens": args.max_tokens,
        "runners": tuple(dict.fromkeys(args.runner)) if args.runner else None,
        "provider": args.provider, "threads": args.threads,
    }
    if args.max_tokens is not None and args.max_tokens < 2:
        raise UsageError(f"--max-tokens must be at least 2, got {args.max_tokens}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    ev = dataclasses.replace(ev, **{k: v for k, v in overrides.items() if v is not None})
    model = dataclasses.replace(suite.model, source=args.model) if args.model else suite.model
    return dataclasses.replace(suite, eval=ev, model=model)


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from . import data, report, results
    from .suite import evaluate

    suite = suite_from_args(args)
    data_dir = data.resolve_data_dir(args.data_dir)
    console = Console(stderr=True)
    if args.json_out is not None:
        check_writable(args.json_out)
    evaluation = evaluate(suite, data_dir, report.RichProgress(console))
    report.print_results(Console(), evaluation.runs)
    if args.json_out is not None:
        results.write(args.json_out, results.to_document(evaluation))
    return 0


def check_writable(path: Path) -> None:
    """Fail before scoring, not after minutes of work, when the output cannot be written."""
    parent = path.expanduser().resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {parent} is missing or not writable; "
                         "choose another output path")


COMMANDS = {"eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except EvalsuiteError as err:
        print(f"evalsuite: error: {err}", file=sys.stderr)
        return err.exit_code
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
