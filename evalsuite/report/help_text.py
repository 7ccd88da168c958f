"""What `--help` teaches beyond the options: where each default comes from, two examples per
command, exit codes and environment variables. Applied to the parser after it is built
(`decorate`), so cli.py keeps only the options themselves."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_CODES = ("exit codes:\n  0    every check passed (eval: every run scored)\n"
              "  1    a check failed, or scoring broke (the gate fails closed)\n"
              "  2    usage, config or input error (one line, before any model work)\n"
              "  130  interrupted (SIGINT)\n  143  terminated (SIGTERM)")
ENVIRONMENT = ("environment:\n"
               "  EVALSUITE_CACHE              cache folder for exports, builds, tokens, journals "
               "(default ~/.cache/evalsuite)\n"
               "  EVALSUITE_DATA_DIR           local corpora folder (wikitext-2-raw/, ptb/); unset: the hub\n"
               "  EVALSUITE_DEBUG              1: show the traceback of an internal error\n"
               "  EVALSUITE_PROGRESS_INTERVAL  seconds between plain-log heartbeats (default 30)\n"
               "  GITHUB_STEP_SUMMARY          gate appends its Markdown summary to this file")
EXAMPLES = {
    "eval": ["evalsuite eval --max-tokens 1024 --json-out results/run.json",
             "evalsuite eval --model ./my-hf-folder --dataset wikitext2 --runner ort --progress plain"],
    "gate": ["evalsuite gate --json-out results/gate.json --junit results/gate.xml --markdown results/gate.md",
             "evalsuite gate --results results/run.json --plot plots/ --reference baselines/phi3-mini-published.json"],
    "validate": ["evalsuite validate", "evalsuite validate --config my-suite.toml --data-dir ../shared/data"],
    "merge": ["evalsuite merge s0.json s1.json --json-out merged.json",
              "evalsuite eval --shard 0/2 --json-out s0.json   # then --shard 1/2, then merge"],
    "plan": ["evalsuite plan --shards 4", "evalsuite plan --shards 4 --get matrix   # a GitHub strategy.matrix"],
    "prepare": ["evalsuite prepare   # builds and tokenization once, no scoring",
                "evalsuite prepare --verify   # a cache that arrived from the prepare job"],
    "bench": ["evalsuite bench", "evalsuite bench --max-tokens 4096 --threads 2 --json-out results/bench.json"],
    "baseline": ["evalsuite baseline update --out baselines/my-model.json",
                 "evalsuite baseline update --results results/run.json --out baselines/my-model.json"],
    "update": ["evalsuite baseline update --out baselines/my-model.json",
               "evalsuite baseline update --results results/run.json --out baselines/my-model.json"],
}
# Run options whose default is the suite's setting: (suite key, how the default suite sets it).
SUITE_KEYS = {"window": "[eval] window", "stride": "[eval] stride", "max_tokens": "[eval] max_tokens",
              "dataset": "[eval] datasets", "runner": "[eval] runners", "provider": "[eval] provider",
              "threads": "[eval] threads", "model": "[model] source"}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks; options wrap as usual."""


def suite_defaults() -> dict[str, str]:
    """The packaged default suite's values, as text, for the options it sets."""
    from evalsuite.config import load_suite

    s = load_suite(None)
    ev = s.eval
    return {"window": str(ev.window), "stride": str(ev.stride),
            "max_tokens": "all tokens" if ev.max_tokens is None else str(ev.max_tokens),
            "dataset": ", ".join(ev.datasets), "runner": ", ".join(ev.runners), "provider": ev.provider,
            "threads": "all cores" if ev.threads is None else str(ev.threads), "model": s.model.source}


def epilog(command: str) -> str:
    lines = ["defaults: options left out take the suite's value ([eval], [model] in --config; without",
             "  --config the packaged default_suite.toml); the option's help names the default suite's value.",
             "", "examples:", *(f"  {e}" for e in EXAMPLES.get(command, [])), "", EXIT_CODES, "", ENVIRONMENT]
    return "\n".join(lines)


def _annotate(parser: argparse.ArgumentParser, defaults: dict[str, str]) -> None:
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or action.default == argparse.SUPPRESS:
            continue
        if action.dest in SUITE_KEYS and action.dest in defaults and action.default is None:
            bare = action.help.split(" (default")[0]
            action.help = f"{bare} (default: the suite's {SUITE_KEYS[action.dest]}; default suite: " \
                          f"{defaults[action.dest]})"
        elif "(default" not in action.help and action.default not in (None, False) and action.option_strings:
            action.help += f" (default: {action.default})"


def decorate(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add defaults, examples, exit codes and environment to every command's --help."""
    defaults = suite_defaults()
    extra = f"{EXIT_CODES}\n\n{ENVIRONMENT}"
    if not (parser.epilog and "exit codes" in parser.epilog):
        parser.epilog = f"{parser.epilog}\n\n{extra}" if parser.epilog else extra
    else:
        parser.epilog = f"{parser.epilog}\n\n{ENVIRONMENT}"
    parser.formatter_class = Formatter
    for name, sub in _subparsers(parser):
        sub.formatter_class = Formatter
        sub.epilog = epilog(name)
        _annotate(sub, defaults)
        decorate_children(sub, defaults)
    return parser


def decorate_children(parser: argparse.ArgumentParser, defaults: dict[str, str]) -> None:
    for name, sub in _subparsers(parser):
        sub.formatter_class = Formatter
        sub.epilog = epilog(name)
        _annotate(sub, defaults)


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, Any]]:
    return [(name, sub) for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()]
